package engine

import (
	"sync"
	"time"

	"github.com/ferrykit/ferry/event"

	"github.com/ferrykit/ferry/offsets"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A parallel partition (Topic.Parallel > 0, K1–K9) is run by a scheduler on
// the partition's goroutine. It admits fetched records from the queue, puts
// each in its lane (its key, a user's lane function, or a lane of its own),
// and starts units — a run of one lane's waiting messages, at most
// MaxMessages and never more than Parallel messages of the partition in
// flight — each on a goroutine of its own. Messages of one lane run one unit
// at a time, in offset order; a failed unit holds back its lane only, for
// its backoff (K5).
//
// Where a message waits: in the partition's queue until admitted, then in
// its lane's pending list until its unit starts. Who decides it may run: the
// scheduler, the only goroutine that touches lanes. Who may commit it: the
// partition's offsets.Window (under Partition.mu) says which offsets
// finished; the commit sends one past the finished prefix and records the
// rest in the commit's metadata (K2, K3).
//
// The partition holds one slot of the app's worker pool while it has
// anything in flight, so Concurrency bounds how many partitions process at
// once and Parallel how many messages each runs: up to Concurrency ×
// Parallel handlers at once.

// parallelState is a parallel partition's offset state, guarded by
// Partition.mu.
type parallelState struct {
	window    offsets.Window
	user      string       // the user's metadata, from the newest mark or the committed record
	epoch     int32        // leader epoch of a message below the committed position
	committed offsets.Mark // what Kafka acknowledged, with its full metadata
	wide      bool         // admission waits: a wider record might not fit (K4)
	moved     bool         // an operator's seek is to be committed, even backwards (O5)
	// retried holds the messages of running units past their first
	// attempt, with that attempt (Claim.DeadLetter's count); a message
	// missing from it runs its first.
	retried map[int64]int
}

// pendingLocked returns the mark a commit should send: one past the
// finished prefix, with what finished above it in the metadata.
func (s *parallelState) pendingLocked() (offsets.Mark, bool) {
	next := s.window.Next()
	if next < 0 {
		return offsets.Mark{}, false
	}
	md, err := offsets.EncodeMetadata(s.user, next, s.window.Finished())
	if err != nil {
		// Admission keeps the window within MaxSpan, so only user
		// metadata too long for Kafka gets here; the broker refuses it
		// and the commit error is logged.
		md = s.user
	}
	m := offsets.Mark{Offset: next, Epoch: s.epoch, Metadata: md}
	c := s.committed
	return m, s.moved || next > c.Offset || (next == c.Offset && md != c.Metadata)
}

// doneLocked records that r finished.
func (s *parallelState) doneLocked(r *kgo.Record) {
	if _, advanced := s.window.Done(r.Offset); advanced {
		s.epoch = r.LeaderEpoch
	}
}

// markLocked records a mark of r (K7). A message not delivered yet counts
// as finished at once and is skipped when it arrives, as a sequential
// partition's mark moves its position past it (M2) — unless it lies further
// ahead than the record of finished messages can describe (K4).
func (s *parallelState) markLocked(r *kgo.Record) error {
	w := &s.window
	if w.IsDone(r.Offset) || w.Len() > 0 && r.Offset <= w.Last() {
		s.doneLocked(r) // delivered (or never will be: a gap)
		return nil
	}
	if w.SpanWith(r.Offset) > offsets.MaxSpan(s.user) || !w.MarkAhead(r.Offset) {
		return ErrMarkTooFarAhead
	}
	return nil
}

// coveredLocked reports whether the acknowledged commit records offset as
// done: below the committed offset or in its record (K7).
func (s *parallelState) coveredLocked(offset int64) bool {
	c := s.committed
	if offset < c.Offset {
		return true
	}
	_, finished, err := offsets.DecodeMetadata(c.Metadata, c.Offset)
	if err != nil {
		return false
	}
	for _, o := range finished {
		if o == offset {
			return true
		}
	}
	return false
}

// restoreLocked starts the window from the committed position and the
// record in its metadata, and returns the user's part of the metadata (K3).
func (s *parallelState) restoreLocked(m offsets.Mark, log func(msg string, args ...any)) string {
	user, finished, err := offsets.DecodeMetadata(m.Metadata, m.Offset)
	if err != nil {
		log("ferry: cannot read the record of finished messages in the committed metadata; they are processed again", "err", err)
	}
	s.window.Restore(m.Offset, finished)
	s.user = user
	s.committed = m
	return user
}

// lane is the messages that must run one after another.
type lane struct {
	key      string
	named    bool          // kept in scheduler.lanes under key
	pending  []*kgo.Record // admitted, waiting, in offset order
	busy     bool          // a unit of it is running
	waiting  bool          // waiting out a retry backoff
	queued   bool          // in scheduler.ready
	failures int           // failed attempts of its first message
	gen      int           // the scheduler's gen when it began waiting out a backoff
}

// unit is one run of a lane's messages handed to the consumer.
type unit struct {
	lane    *lane
	recs    []*kgo.Record
	attempt int
	began   time.Time // for events and health; zero when neither wants it
	ended   bool
	err     error
	// failed is the index of the message the failure is blamed on;
	// deadLettered, that it went to the dead-letter topic.
	failed       int
	deadLettered bool
}

type scheduler struct {
	p     *Partition
	w     Worker
	lanes map[string]*lane
	ready []*lane // lanes with messages to start, oldest first

	inflight int // messages in running units
	admitted int // messages admitted and not finished
	bytes    int // their approximate size
	limit    int // bound on admitted (K8)

	failing int // lanes whose first message failed (health)

	slot     bool // holds a slot of the app's worker pool
	started  int  // messages started since the slot was taken
	draining bool // giving the slot back to a full pool: start nothing

	running []*unit // started, oldest first; a finished one leaves once it is the oldest (health)

	done    []*kgo.Record // finished, to be marked done by applyDone
	results chan *unit
	wakeups chan *lane // a lane's backoff elapsed
	wg      sync.WaitGroup
	gen     int // counts operator seeks (O5): lanes waiting from before are dropped
}

func newScheduler(p *Partition, w Worker) *scheduler {
	n := p.topic.Parallel
	return &scheduler{
		p:       p,
		w:       w,
		lanes:   make(map[string]*lane),
		limit:   max(4*n, 2*p.topic.MaxMessages),
		results: make(chan *unit, n),
		wakeups: make(chan *lane),
	}
}

// runParallel is the partition goroutine's loop for a parallel partition.
// It returns once the partition stopped and nothing is in flight.
func (p *Partition) runParallel(w Worker) {
	s := newScheduler(p, w)
	stop := p.stop
	for {
		if stop != nil {
			select {
			case <-stop:
				stop = nil // K6: start nothing more; wait for what runs
			default:
				s.admit()
				s.start()
			}
		}
		if stop != nil && s.inflight == 0 && p.held.Load() && p.seekPending() {
			s.seek() // O5
			continue
		}
		if s.inflight == 0 {
			s.release()
			if stop == nil {
				break
			}
			if s.admitted == 0 {
				p.maybeEOF(w)
			}
		}
		select {
		case u := <-s.results:
			s.finish(u)
			s.finishReady() // one admission and start for every unit that ended meanwhile
			s.applyDone()
		case l := <-s.wakeups:
			if l.gen == s.gen { // else dropped by a seek
				l.waiting = false
				s.markReady(l)
			}
		case <-p.wake:
		case <-stop:
		}
	}
	s.wg.Wait() // backoff waits end with p.stop
}

// admit moves queued records into their lanes while the partition has room
// (K8) and the record of finished messages would still fit (K4).
func (s *scheduler) admit() {
	p := s.p
	room := s.limit - s.admitted
	if room <= 0 || s.bytes >= p.topic.QueueBytes {
		return
	}
	p.mu.Lock()
	if p.state != owned || p.queued == 0 {
		if p.state == owned && p.par.wide {
			p.setWideLocked(false) // nothing waits for room in the record
		}
		news := p.newsLocked()
		p.mu.Unlock()
		p.tell(news)
		return
	}
	k := p.admissibleLocked(room, s.admitted == 0)
	if k == 0 {
		if !p.par.wide {
			p.setWideLocked(true)
			p.log.Warn("ferry: the record of messages finished out of order would not fit in the commit metadata; taking no new messages until the oldest unfinished one finishes",
				"oldest_unfinished", p.par.window.Next())
		}
		news := p.newsLocked()
		p.mu.Unlock()
		p.tell(news)
		return
	}
	if p.par.wide {
		p.setWideLocked(false)
	}
	recs := p.cutLocked(k)
	fresh := recs[:0:0]
	for _, r := range recs {
		if skip, _ := p.par.window.Add(r.Offset); !skip {
			fresh = append(fresh, r) // K3: skipped ones finished before
		}
	}
	news := p.newsLocked()
	p.mu.Unlock()
	p.tell(news)
	for _, r := range fresh {
		l := s.laneOf(r)
		l.pending = append(l.pending, r)
		s.admitted++
		s.bytes += recordSize(r)
		s.markReady(l)
	}
}

// setWideLocked notes that admission stops (or goes on again) because the
// record of finished messages would not fit (K4): Stats shows it, and a
// subscriber gets a Paused (Resumed) event.
func (p *Partition) setWideLocked(wide bool) {
	p.par.wide = wide
	if p.g.observed() {
		p.pauseNewsLocked(wide, event.PauseRecord)
	}
}

// admissibleLocked counts the queued records, up to room, that keep the
// window within the span a record is sure to fit in (K4). With nothing
// outstanding one is always admissible, so the partition moves on.
func (p *Partition) admissibleLocked(room int, empty bool) int {
	span := offsets.MaxSpan(p.par.user)
	n := 0
	for _, c := range p.chunks {
		for _, r := range c.recs {
			if n == room {
				return n
			}
			if p.par.window.SpanWith(r.Offset) > span && !(n == 0 && empty && p.par.window.Len() == 0) {
				return n
			}
			n++
		}
	}
	return n
}

// laneOf returns r's lane (K1).
func (s *scheduler) laneOf(r *kgo.Record) *lane {
	lanes := s.p.topic.Lanes
	if lanes.Unordered {
		return &lane{}
	}
	var key string
	if lanes.Lane == nil {
		if r.Key == nil {
			return &lane{} // a nil key promises no order
		}
		if l := s.lanes[string(r.Key)]; l != nil {
			return l
		}
		key = string(r.Key)
	} else {
		err := guard(func() error { key = lanes.Lane(r); return nil })
		if err != nil {
			s.p.log.Error("ferry: lane function panicked; the message runs in a lane of its own", "offset", r.Offset, "err", err)
			return &lane{}
		}
	}
	l := s.lanes[key]
	if l == nil {
		l = &lane{key: key, named: true}
		s.lanes[key] = l
	}
	return l
}

func (s *scheduler) markReady(l *lane) {
	if !l.busy && !l.waiting && !l.queued && len(l.pending) > 0 {
		l.queued = true
		s.ready = append(s.ready, l)
	}
}

// start starts units of ready lanes while fewer than Parallel messages are
// in flight (K1).
func (s *scheduler) start() {
	t := s.p.topic
	for !s.draining && !s.p.held.Load() && s.inflight < t.Parallel && len(s.ready) > 0 {
		if !s.slot && (!s.acquire() || s.p.held.Load()) {
			return // stopped, or paused or moved while waiting for the slot
		}
		l := s.ready[0]
		s.ready[0] = nil
		s.ready = s.ready[1:]
		l.queued = false
		// The room left is shared with the other ready lanes: a unit's
		// messages run one after another, so a long unit would hold room
		// other lanes could run in.
		room := t.Parallel - s.inflight
		k := min(len(l.pending), t.MaxMessages, max(1, room/(1+len(s.ready))))
		u := &unit{lane: l, recs: l.pending[:k:k], attempt: l.failures + 1, began: s.p.g.started()}
		if s.p.g.cfg.TimeConsume {
			if u.began.IsZero() {
				u.began = time.Now()
			}
			if s.running = append(s.running, u); len(s.running) == 1 {
				s.p.busySince.Store(u.began.UnixNano())
			}
		}
		l.pending = l.pending[k:]
		l.busy = true
		s.inflight += k
		s.p.inFlight.Store(int64(s.inflight))
		s.started += k
		if u.attempt > 1 {
			s.noteRetried(u.recs, u.attempt)
		}
		s.wg.Add(1)
		go s.run(u)
	}
	// B3: a partition that keeps its slot busy gives it back now and then
	// when others may be waiting for one.
	if s.slot && s.started >= slotBatches*t.Parallel && len(s.p.g.slots) == cap(s.p.g.slots) {
		s.draining = true
	}
}

// noteRetried notes the attempt of a retried unit's messages while it runs
// (0: it ended). Only retries pay for it.
func (s *scheduler) noteRetried(recs []*kgo.Record, attempt int) {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.par.retried == nil {
		p.par.retried = make(map[int64]int)
	}
	for _, r := range recs {
		if attempt == 0 {
			delete(p.par.retried, r.Offset)
		} else {
			p.par.retried[r.Offset] = attempt
		}
	}
}

// attemptOf returns the attempt a message of the partition is in: its
// unit's in a parallel partition, else the current batch's.
func (p *Partition) attemptOf(r *kgo.Record) int {
	if p.par == nil {
		return p.failures + 1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n, ok := p.par.retried[r.Offset]; ok {
		return n
	}
	return 1
}

// acquire takes a slot of the app's worker pool. It reports false if the
// partition stopped meanwhile.
func (s *scheduler) acquire() bool {
	select {
	case s.p.g.slots <- struct{}{}:
		s.slot, s.started = true, 0
		return true
	case <-s.p.stop:
		return false
	}
}

func (s *scheduler) release() {
	if s.slot {
		<-s.p.g.slots
		s.slot, s.draining = false, false
	}
}

// run consumes one unit on its own goroutine. A message still failing after
// MaxRetries goes to the dead-letter topic from here (E1).
func (s *scheduler) run(u *unit) {
	defer s.wg.Done()
	p := s.p
	u.err = guard(func() error { return s.w.Consume(p.ctx, u.recs, u.attempt) })
	if u.err != nil {
		u.failed = s.blame(u)
		t := p.topic
		if u.failed < len(u.recs) && t.DeadLetterRecord != nil && t.MaxRetries >= 0 && u.attempt > t.MaxRetries {
			u.deadLettered = p.sendDeadLetter(u.recs[u.failed], u.err, u.attempt)
		}
	}
	s.results <- u // room for every unit in flight
}

// blame finds the message a failed unit is blamed on: the one a
// *MessageError names, else the first the consumer did not mark — marks
// count in automatic mode too (M10), as in a sequential partition — or
// len(u.recs) when it marked them all.
func (s *scheduler) blame(u *unit) int {
	if i := namedIndex(u.recs, u.err); i >= 0 {
		return i
	}
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	for i, r := range u.recs {
		if !s.p.par.window.IsDone(r.Offset) {
			return i
		}
	}
	return len(u.recs)
}

// finish applies a unit's outcome: its finished messages are done (with
// manual offsets only those the consumer marked, and those before a
// message a *MessageError names); a failed message waits out its backoff in
// front of its lane, or moves on once dead-lettered (K5).
func (s *scheduler) finish(u *unit) {
	p, l := s.p, u.lane
	p.consumed(u.recs, u.attempt, u.began, u.err)
	if u.attempt > 1 {
		s.noteRetried(u.recs, 0)
	}
	if p.g.cfg.TimeConsume {
		s.ended(u)
	}
	l.busy = false
	s.inflight -= len(u.recs)
	p.inFlight.Store(int64(s.inflight))
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
		s.bytes -= recordSize(r)
	}
	s.done = append(s.done, done...)
	if len(back) > 0 {
		l.pending = append(back, l.pending...) // back is capped: this copies
	}
	if u.err != nil && !u.deadLettered && len(back) > 0 {
		s.retryLater(l, u)
	}
	s.markReady(l)
	if l.named && len(l.pending) == 0 && !l.waiting && !l.busy {
		delete(s.lanes, l.key)
	}
}

// ended drops finished units from the front of the running ones: the
// partition has been consuming since the oldest still running started.
func (s *scheduler) ended(u *unit) {
	u.ended = true
	i := 0
	for i < len(s.running) && s.running[i].ended {
		s.running[i] = nil
		i++
	}
	s.running = s.running[i:]
	if len(s.running) == 0 {
		s.running = nil // let the backing array go
		s.p.busySince.Store(0)
	} else if i > 0 {
		s.p.busySince.Store(s.running[0].began.UnixNano())
	}
}

// setFailures sets a lane's count of failed attempts; the partition is
// failing (health) while any lane is.
func (s *scheduler) setFailures(l *lane, n int) {
	switch {
	case n == l.failures:
		return
	case n == 0:
		if s.failing--; s.failing == 0 {
			s.p.failingSince.Store(0)
		}
	case l.failures == 0:
		if s.failing++; s.failing == 1 {
			s.p.failingSince.Store(time.Now().UnixNano())
		}
	}
	l.failures = n
}

// applyDone marks the finished messages done in the window, all under one
// lock. A lost partition's completions are dropped (K6).
func (s *scheduler) applyDone() {
	p := s.p
	p.mu.Lock()
	if p.state.marksAccepted() {
		for _, r := range s.done {
			p.par.doneLocked(r)
		}
	}
	p.processed.Store(p.par.window.Next()) // lag counts from the oldest unfinished message
	p.mu.Unlock()
	clear(s.done)
	s.done = s.done[:0]
}

// finishReady finishes the units that ended, without waiting.
func (s *scheduler) finishReady() {
	for {
		select {
		case u := <-s.results:
			s.finish(u)
		default:
			return
		}
	}
}

// retryLater holds a failed lane back for its backoff; other lanes go on.
func (s *scheduler) retryLater(l *lane, u *unit) {
	p := s.p
	delay := p.topic.Backoff(l.failures)
	r := l.pending[0]
	if p.g.observed() {
		p.g.emit(event.RetryScheduled{Group: p.g.cfg.Name, Topic: p.topic.Name, Partition: p.id,
			Offset: r.Offset, Attempt: u.attempt + 1, Delay: delay})
	}
	p.log.Error("ferry: message failed; retrying it after backoff, other keys go on",
		append([]any{"offset", r.Offset, "attempt", u.attempt, "backoff", delay}, errAttrs(u.err)...)...)
	l.waiting, l.gen = true, s.gen
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-p.g.clock.After(delay):
			select {
			case s.wakeups <- l:
			case <-p.stop:
			}
		case <-p.stop:
		}
	}()
}
