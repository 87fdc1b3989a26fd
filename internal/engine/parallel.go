package engine

import (
	"time"

	"github.com/ferrykit/ferry/event"
	"github.com/ferrykit/ferry/offsets"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A parallel partition (Topic.Parallel > 0, K1–K9) is the scheduler with
// lanes by key, a user's lane function, or a lane of its own, and up to
// Parallel messages in flight, each unit on one of the partition's workers
// (goroutines the scheduler hands units to). A failed unit holds back its
// lane only, for its backoff (K5).
//
// Where a message waits: in the partition's queue until admitted, then in
// its lane's pending list until its unit starts. Who decides it may run: the
// scheduler, the only goroutine that touches lanes. Who may commit it: the
// partition's book, a windowBook (book.go, under Partition.mu), says which
// offsets finished; the commit sends one past the finished prefix and
// records the rest in the commit's metadata (K2, K3).
//
// Up to Concurrency × Parallel handlers run at once.

// windowed is the policy of a parallel partition.
type windowed struct {
	lanes map[string]*lane
	spare []*lane // lanes that emptied, for reuse: with many keys a lane lives for one message
	bytes int     // approximate size of the admitted messages
	limit int     // bound on admitted messages (K8)
	done  []*kgo.Record
}

func newParallel(p *Partition, w Worker) *scheduler {
	n := p.topic.Parallel
	pol := &windowed{lanes: make(map[string]*lane), limit: max(4*n, 2*p.topic.MaxMessages)}
	return newScheduler(p, w, pol, n, false)
}

// admit moves queued records into their lanes while the partition has room
// (K8) and the record of finished messages would still fit (K4). There is
// no MaxWait: records are admitted, as many as there is room for, whenever
// fewer than n admitted messages wait to start or none of them can start.
func (pol *windowed) admit(s *scheduler) time.Duration {
	p := s.p
	room := pol.limit - s.admitted
	if room <= 0 || pol.bytes >= p.topic.QueueBytes {
		return -1
	}
	if s.admitted-s.inflight >= s.n && len(s.ready) > 0 {
		return -1 // enough waits to start: admit in bulk later, not one message per unit that ends
	}
	b := p.windowBook()
	p.mu.Lock()
	if p.state != owned || p.q.len() == 0 {
		if p.state == owned && b.wide {
			p.setWideLocked(false) // nothing waits for room in the record
		}
		news := p.newsLocked()
		p.mu.Unlock()
		p.tell(news)
		return -1
	}
	k := p.admissibleLocked(room, s.admitted == 0)
	if k == 0 {
		if !b.wide {
			p.setWideLocked(true)
			p.log.Warn("ferry: the record of messages finished out of order would not fit in the commit metadata; taking no new messages until the oldest unfinished one finishes",
				"oldest_unfinished", b.window.Next())
		}
		news := p.newsLocked()
		p.mu.Unlock()
		p.tell(news)
		return -1
	}
	if b.wide {
		p.setWideLocked(false)
	}
	recs := p.cutLocked(k)
	fresh := make([]*kgo.Record, 0, len(recs))
	for _, r := range recs {
		if skip, _ := b.window.Add(r.Offset); !skip {
			fresh = append(fresh, r) // K3: skipped ones finished before
		}
	}
	news := p.newsLocked()
	p.mu.Unlock()
	p.tell(news)
	for i, r := range fresh {
		s.add(pol.laneOf(s, r), fresh[i:i+1:i+1]...) // capped: a lane appending to it copies
		pol.bytes += recordSize(r)
	}
	return -1
}

// setWideLocked notes that admission stops (or goes on again) because the
// record of finished messages would not fit (K4): Stats shows it, and a
// subscriber gets a Paused (Resumed) event.
func (p *Partition) setWideLocked(wide bool) {
	p.windowBook().wide = wide
	if p.g.observed() {
		p.pauseNewsLocked(wide, event.PauseRecord)
	}
}

// admissibleLocked counts the queued records, up to room, that keep the
// window within the span a record is sure to fit in (K4). With nothing
// outstanding one is always admissible, so the partition moves on.
func (p *Partition) admissibleLocked(room int, empty bool) int {
	b := p.windowBook()
	span := offsets.MaxSpan(b.user)
	n := 0
	for r := range p.q.records {
		if n == room {
			return n
		}
		if b.window.SpanWith(r.Offset) > span && !(n == 0 && empty && b.window.Len() == 0) {
			return n
		}
		n++
	}
	return n
}

// laneOf returns r's lane (K1).
func (pol *windowed) laneOf(s *scheduler, r *kgo.Record) *lane {
	lanes := s.p.topic.Lanes
	if lanes.Unordered {
		return pol.newLane()
	}
	var key string
	if lanes.Lane == nil {
		if r.Key == nil {
			return pol.newLane() // a nil key promises no order
		}
		if l := pol.lanes[string(r.Key)]; l != nil {
			return l
		}
		key = string(r.Key)
	} else {
		err := guard(func() error { key = lanes.Lane(r); return nil })
		if err != nil {
			s.p.log.Error("ferry: lane function panicked; the message runs in a lane of its own", "offset", r.Offset, "err", err)
			return pol.newLane()
		}
	}
	l := pol.lanes[key]
	if l == nil {
		l = pol.newLane()
		l.key, l.named = key, true
		pol.lanes[key] = l
	}
	return l
}

// newLane returns an empty lane, reusing one that emptied.
func (pol *windowed) newLane() *lane {
	if n := len(pol.spare); n > 0 {
		l := pol.spare[n-1]
		pol.spare[n-1] = nil
		pol.spare = pol.spare[:n-1]
		return l
	}
	return new(lane)
}

// consume runs one unit on a worker. A message still failing after
// MaxRetries goes to the dead-letter topic from here (E1).
func (pol *windowed) consume(s *scheduler, u *unit) {
	p := s.p
	if u.attempt > 1 {
		p.noteRetried(u.recs, u.attempt)
	}
	u.err = guard(func() error { return s.w.Consume(p.ctx, u.recs, u.attempt) })
	if u.err != nil {
		u.failed = pol.blame(s, u)
		t := p.topic
		if u.failed < len(u.recs) && t.DeadLetterRecord != nil && t.MaxRetries >= 0 && u.attempt > t.MaxRetries {
			u.deadLettered = p.sendDeadLetter(u.recs[u.failed], u.err, u.attempt)
		}
	}
}

// noteRetried notes the attempt of a retried unit's messages while it runs
// (0: it ended). Only retries pay for it.
func (p *Partition) noteRetried(recs []*kgo.Record, attempt int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.windowBook()
	if b.retried == nil {
		b.retried = make(map[int64]int)
	}
	for _, r := range recs {
		if attempt == 0 {
			delete(b.retried, r.Offset)
		} else {
			b.retried[r.Offset] = attempt
		}
	}
}

// attemptOf returns the attempt a message of the partition is in: its
// unit's in a parallel partition, else the current batch's. The kind of
// book decides, though an attempt is retry state, not offsets: a
// sequential partition's is its worker's count (this runs on the worker's
// goroutine), a parallel one's is noted per message in its book, under
// the lock, as its units run on other goroutines.
func (p *Partition) attemptOf(r *kgo.Record) int {
	b, parallel := p.book.(*windowBook)
	if !parallel {
		return p.failures + 1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n, ok := b.retried[r.Offset]; ok {
		return n
	}
	return 1
}

// blame finds the message a failed unit is blamed on: the one a
// *MessageError names, else the first the consumer did not mark — marks
// count in automatic mode too (M10), as in a sequential partition — or
// len(u.recs) when it marked them all.
func (pol *windowed) blame(s *scheduler, u *unit) int {
	if i := namedIndex(u.recs, u.err); i >= 0 {
		return i
	}
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	b := s.p.windowBook()
	for i, r := range u.recs {
		if !b.window.IsDone(r.Offset) {
			return i
		}
	}
	return len(u.recs)
}

// settle applies a unit's outcome: its finished messages are done (with
// manual offsets only those the consumer marked, and those before a
// message a *MessageError names); a failed message waits out its backoff in
// front of its lane, or moves on once dead-lettered (K5).
func (pol *windowed) settle(s *scheduler, u *unit) {
	p, l := s.p, u.lane
	p.consumed(u.recs, u.attempt, u.began, u.err)
	if u.attempt > 1 {
		p.noteRetried(u.recs, 0)
	}
	var done, back []*kgo.Record
	switch {
	case u.err == nil:
		s.setFailures(l, 0)
		if !p.topic.Manual {
			done = u.recs
		}
	default:
		i := u.failed
		if !p.topic.Manual || namedIndex(u.recs, u.err) >= 0 {
			done = u.recs[:i]
		}
		if i < len(u.recs) {
			if u.deadLettered {
				s.setFailures(l, 0)
				done = append(done[:len(done):len(done)], u.recs[i])
				back = u.recs[i+1:]
			} else {
				s.setFailures(l, l.failures+1)
				back = u.recs[i:]
			}
		}
	}
	for _, r := range u.recs[:len(u.recs)-len(back)] {
		s.admitted--
		pol.bytes -= recordSize(r)
	}
	pol.done = append(pol.done, done...)
	if len(back) > 0 {
		l.pending = append(back, l.pending...) // back is capped: this copies
	}
	if u.err != nil && !u.deadLettered && len(back) > 0 {
		pol.retryLater(s, l, u)
	}
	if s.settling == 0 {
		pol.applyDone(s) // one lock for every unit that ended meanwhile
	}
	if len(l.pending) == 0 && !l.waiting && !l.busy {
		if l.named {
			delete(pol.lanes, l.key)
		}
		if len(pol.spare) < pol.limit { // about what is admitted at once
			*l = lane{}
			pol.spare = append(pol.spare, l)
		}
	}
}

// applyDone marks the finished messages done in the window, all under one
// lock. A lost partition's completions are dropped (K6).
func (pol *windowed) applyDone(s *scheduler) {
	p, b := s.p, s.p.windowBook()
	p.mu.Lock()
	if p.state.marksAccepted() {
		for _, r := range pol.done {
			b.done(r)
		}
	}
	p.processed.Store(b.window.Next()) // lag counts from the oldest unfinished message
	p.mu.Unlock()
	clear(pol.done)
	pol.done = pol.done[:0]
}

// retryLater holds a failed lane back for its backoff, its messages kept in
// memory; other lanes go on.
func (pol *windowed) retryLater(s *scheduler, l *lane, u *unit) {
	p := s.p
	delay := p.topic.Backoff(l.failures)
	r := l.pending[0]
	if p.g.observed() {
		p.g.emit(event.RetryScheduled{Group: p.g.cfg.Name, Topic: p.topic.Name, Partition: p.id,
			Offset: r.Offset, Attempt: u.attempt + 1, Delay: delay})
	}
	p.log.Error("ferry: message failed; retrying it after backoff, other keys go on",
		append([]any{"offset", r.Offset, "attempt", u.attempt, "backoff", delay}, errAttrs(u.err)...)...)
	s.retryAfter(l, delay)
}

// drop forgets every admitted message, for an operator's seek (O5).
func (pol *windowed) drop(s *scheduler) {
	clear(pol.lanes)
	pol.bytes = 0
	clear(pol.done)
	pol.done = pol.done[:0]
}
