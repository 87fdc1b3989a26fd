package engine

import (
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Every partition outside an exactly-once group is run by a scheduler on
// the partition's goroutine. It admits fetched records from the queue, puts
// each in its lane, and starts units — a run of one lane's waiting messages,
// at most MaxMessages and never more than the partition's in-flight bound —
// while it holds a slot of the app's worker pool. Messages of one lane run
// one unit at a time, in offset order; a failed unit holds back its lane for
// its backoff.
//
// What differs between a sequential and a parallel partition is a policy
// (unitPolicy), not a second loop:
//
//   - sequential.go: one lane for all records; a unit is a batch cut by B1
//     (MaxMessages, MaxWait, end of the partition); run on the scheduler's
//     goroutine; offsets in an offsets.Tracker, whose partition-wide resume
//     point marks may move back (M6); a failure drops the queue and seeks
//     back to that point (A5, M7); at-most-once commits the batch before it
//     runs (S1).
//   - parallel.go: lanes by key or a user's lane function (K1); records
//     admitted in bulk when few wait to start (K8, K4); each unit on one of
//     the partition's workers; offsets in an offsets.Window of finished
//     messages (K2); a failure puts the lane's messages back and waits in
//     memory (K5).
//
// The scheduler owns the lanes, the ready list, the slot, the units in
// flight, health timing and the backoff timers; only its goroutine touches
// them. The partition's queue and offsets are under Partition.mu.
//
// The partition holds one slot of the app's worker pool while it has
// anything in flight, so Concurrency bounds how many partitions process at
// once; a partition that kept its slot for slotBatches units' worth of
// messages gives it back when the pool is full (B3).

// unitPolicy is what a kind of partition decides; the scheduler does the
// rest. Every method but consume runs on the scheduler's goroutine.
type unitPolicy interface {
	// admit moves due records from the partition's queue into lanes. It
	// returns how long until more may be due without a fetch (MaxWait),
	// or a negative duration for never.
	admit(s *scheduler) time.Duration
	// consume runs a unit: Consume, and what must happen right after it
	// on the same goroutine (the blame, a dead letter). It runs on the
	// worker the unit was handed to, or on the scheduler's goroutine when
	// the policy is inline.
	consume(s *scheduler, u *unit)
	// settle applies a finished unit's outcome: offsets, the lane's
	// failures, and what happens to the messages that did not finish
	// (retryAfter to hold the lane back).
	settle(s *scheduler, u *unit)
	// drop forgets every admitted message and failure, for an
	// operator's seek (O5); nothing is in flight.
	drop(s *scheduler)
}

// lane is the messages that must run one after another.
type lane struct {
	key      string
	named    bool          // kept in the parallel policy's lanes under key
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
	// retry is a sequential unit's failure: where the partition resumes;
	// held, that it did not run: an operator paused or moved the partition.
	retry *failure
	held  bool
}

type scheduler struct {
	p      *Partition
	w      Worker
	policy unitPolicy
	n      int  // bound on messages in flight
	inline bool // units run on the scheduler's goroutine, one at a time

	ready []*lane // lanes with messages to start, oldest first

	inflight int // messages in running units
	admitted int // messages admitted and not finished

	failing int // lanes whose first message failed (health)

	slot     bool // holds a slot of the app's worker pool
	started  int  // work started since the slot was taken: messages, or batches when inline
	turn     int  // how much work a slot is held for when the pool is full (B3)
	draining bool // giving the slot back to a full pool: start nothing

	running []*unit // started, oldest first; a finished one leaves once it is the oldest (health)

	results  chan *unit
	todo     chan *unit // units for idle workers (nil: stop)
	workers  int        // worker goroutines
	units    int        // units handed to workers and not finished
	wakeups  chan *lane // a lane's backoff elapsed
	wg       sync.WaitGroup
	timer    *time.Timer // MaxWait of the oldest queued record
	solo     unit        // the unit running inline
	spare    []*unit     // finished units, for reuse
	ending   []*unit     // units that ended, being finished (finishEnded)
	settling int         // how many of them are still to be settled after this one
	gen      int         // counts operator seeks (O5): lanes waiting from before are dropped
}

func newScheduler(p *Partition, w Worker, policy unitPolicy, n int, inline bool) *scheduler {
	s := &scheduler{
		p:       p,
		w:       w,
		policy:  policy,
		n:       n,
		inline:  inline,
		turn:    slotBatches,
		wakeups: make(chan *lane),
	}
	if !inline {
		s.results = make(chan *unit, n)
		s.todo = make(chan *unit, n)
		s.turn = slotBatches * n
	}
	return s
}

// schedule is the partition goroutine's loop outside exactly-once groups.
// It returns once the partition stopped and nothing is in flight.
func (p *Partition) schedule(w Worker) {
	var s *scheduler
	if p.topic.Parallel > 0 {
		s = newParallel(p, w)
	} else {
		s = newSequential(p, w)
	}
	s.loop()
}

func (s *scheduler) loop() {
	p := s.p
	stop := p.stop
	for {
		var due <-chan time.Time
		if stop != nil {
			select {
			case <-stop:
				stop = nil // K6: start nothing more; wait for what runs
			default:
				wait := s.policy.admit(s)
				if s.start() {
					continue // a unit ran inline: look again at once
				}
				due = s.after(wait)
			}
		}
		if stop != nil && s.inflight == 0 && p.held.Load() && p.seekPending() {
			s.seek() // O5
			continue
		}
		if s.inflight == 0 {
			drained := s.draining
			s.release()
			if stop == nil {
				break
			}
			if drained {
				continue // B3: the slot went back to a full pool; queue for it again
			}
			if s.admitted == 0 {
				p.maybeEOF(s.w)
			}
		}
		select {
		case u := <-s.results:
			s.finishEnded(u, stop != nil && !stopped(stop))
		case l := <-s.wakeups:
			if l.gen == s.gen { // else dropped by a seek
				l.waiting = false
				s.markReady(l)
			}
		case <-p.wake:
		case <-due:
		case <-stop:
		}
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.todo != nil {
		close(s.todo) // nothing runs: the idle workers end
	}
	s.wg.Wait() // backoff waits end with p.stop
}

// after returns a channel that fires after wait, or nil for a negative one.
func (s *scheduler) after(wait time.Duration) <-chan time.Time {
	if wait < 0 {
		return nil
	}
	if s.timer == nil {
		s.timer = time.NewTimer(wait)
	} else {
		s.timer.Reset(wait)
	}
	return s.timer.C
}

// add puts admitted records at the end of their lane.
func (s *scheduler) add(l *lane, recs ...*kgo.Record) {
	if len(l.pending) == 0 {
		l.pending = recs // a cut batch is capped: appending to it copies
	} else {
		l.pending = append(l.pending, recs...)
	}
	s.admitted += len(recs)
	s.markReady(l)
}

func (s *scheduler) markReady(l *lane) {
	if !l.busy && !l.waiting && !l.queued && len(l.pending) > 0 {
		l.queued = true
		s.ready = append(s.ready, l)
	}
}

// start starts units of ready lanes while fewer than n messages are in
// flight (K1). It reports whether a unit ran inline, to its end.
func (s *scheduler) start() bool {
	t := s.p.topic
	// An operator's pause or seek (O4, O5) holds back what was admitted;
	// a sequential batch is checked as it starts (holdBack), which also
	// sends it back to be fetched again.
	held := func() bool { return !s.inline && s.p.held.Load() }
	for !s.draining && !held() && s.inflight < s.n && len(s.ready) > 0 {
		if !s.slot && (!s.acquire() || held()) {
			return false // stopped, or paused or moved while waiting for the slot
		}
		l := s.ready[0]
		s.ready[0] = nil
		if len(s.ready) == 1 {
			s.ready = s.ready[:0] // keeps its array: no allocation per unit
		} else {
			s.ready = s.ready[1:]
		}
		l.queued = false
		// The room left is shared with the other ready lanes: a unit's
		// messages run one after another, so a long unit would hold room
		// other lanes could run in.
		room := s.n - s.inflight
		k := min(len(l.pending), t.MaxMessages, max(1, room/(1+len(s.ready))))
		var u *unit
		if s.inline {
			s.solo = unit{} // one unit at a time: no allocation per batch
			u = &s.solo
		} else if k := len(s.spare); k > 0 {
			u, s.spare[k-1], s.spare = s.spare[k-1], nil, s.spare[:k-1]
		} else {
			u = new(unit)
		}
		u.lane, u.recs, u.attempt, u.began = l, l.pending[:k:k], l.failures+1, s.p.g.started()
		if s.p.g.cfg.TimeConsume {
			if u.began.IsZero() {
				u.began = time.Now()
			}
			if s.running = append(s.running, u); len(s.running) == 1 {
				s.p.busySince.Store(u.began.UnixNano())
			}
		}
		l.pending = l.pending[k:]
		if len(l.pending) == 0 {
			l.pending = nil // let a cut batch's fetch go
		}
		l.busy = true
		s.inflight += k
		s.p.inFlight.Store(int64(s.inflight))
		if s.inline {
			s.started++
			s.policy.consume(s, u)
			s.finish(u)
			s.solo = unit{} // let the batch, and the fetch it was cut from, go
			s.checkDrain()
			return true
		}
		s.started += k
		s.hand(u)
	}
	s.checkDrain()
	return false
}

// checkDrain: B3, a partition that keeps its slot busy gives it back now
// and then when others may be waiting for one.
func (s *scheduler) checkDrain() {
	if s.slot && s.started >= s.turn && len(s.p.g.slots) == cap(s.p.g.slots) {
		s.draining = true
	}
}

// slotBatches is how many batches a sequential partition runs on one slot,
// and how many times its in-flight bound in messages a parallel one starts,
// before it gives the slot back to a full pool (B3).
const slotBatches = 8

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

// hand gives u to an idle worker, or to a new one when all are busy.
func (s *scheduler) hand(u *unit) {
	s.units++
	if s.units <= s.workers {
		s.todo <- u // an idle worker takes it; room for one per worker
		return
	}
	s.workers++
	s.wg.Add(1)
	go s.work(u)
}

// work runs units on a worker goroutine of the partition, until told to
// stop (a nil unit, or todo closed): a worker that finished a unit waits for
// the next instead of a goroutine starting per unit.
func (s *scheduler) work(u *unit) {
	defer s.wg.Done()
	for u != nil {
		s.policy.consume(s, u)
		s.results <- u // room for every unit in flight
		u = <-s.todo
	}
}

// retire lets the idle workers go.
func (s *scheduler) retire() {
	for ; s.workers > s.units; s.workers-- {
		s.todo <- nil
	}
}

// finish ends a unit: health timing, the in-flight count, then the policy
// settles its outcome.
func (s *scheduler) finish(u *unit) {
	s.leave(u)
	s.settle(u)
}

// leave takes a unit that ended out of the in-flight count.
func (s *scheduler) leave(u *unit) {
	s.inflight -= len(u.recs)
	s.p.inFlight.Store(int64(s.inflight))
}

// settle applies a unit's outcome once it left the in-flight count: health
// timing, then the policy settles it and its lane may run again.
func (s *scheduler) settle(u *unit) {
	if s.p.g.cfg.TimeConsume {
		s.ended(u)
	}
	u.lane.busy = false
	s.policy.settle(s, u)
	s.markReady(u.lane)
}

// finishEnded finishes u and the units that ended meanwhile. With more,
// their room goes to the lanes ready before their outcomes are settled:
// units that end together (handlers waiting the same time) are replaced at
// once, and the settling happens while the new ones run. Their own lanes
// stay busy until settled, so a lane still runs one unit at a time (K1) and
// a failure is put back before its lane runs again (K5).
func (s *scheduler) finishEnded(u *unit, more bool) {
	s.ending = append(s.ending, u)
	s.leave(u)
	for drained := false; !drained; {
		select {
		case u := <-s.results:
			s.ending = append(s.ending, u)
			s.leave(u)
		default:
			drained = true
		}
	}
	s.units -= len(s.ending) // their workers are idle
	if more {
		s.start()
	}
	for i, u := range s.ending {
		s.settling = len(s.ending) - 1 - i
		s.settle(u)
		s.reuse(u)
		s.ending[i] = nil
	}
	s.ending = s.ending[:0]
	if len(s.ready) == 0 && s.admitted == s.inflight {
		s.retire() // nothing waits: idle workers do not outlive the work
	}
}

// reuse keeps a finished unit for the next one started, unless health
// timing may still hold it in running.
func (s *scheduler) reuse(u *unit) {
	if s.p.g.cfg.TimeConsume || len(s.spare) >= s.n {
		return
	}
	*u = unit{}
	s.spare = append(s.spare, u)
}

// ended drops finished units from the front of the running ones: the
// partition has been consuming since the oldest still running started.
func (s *scheduler) ended(u *unit) {
	u.ended = true
	i := 0
	for i < len(s.running) && s.running[i].ended {
		i++
	}
	switch {
	case i == len(s.running):
		clear(s.running)
		s.running = s.running[:0] // kept: at most n units, reused
		s.p.busySince.Store(0)
	case i > 0:
		clear(s.running[:i])
		s.running = s.running[i:]
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
	if s.inline {
		s.p.failures = n // the partition's attempt, for Claim.DeadLetter
	}
}

// stopped reports whether stop is closed.
func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// retryAfter holds a failed lane back for delay on a timer goroutine; other
// lanes go on.
func (s *scheduler) retryAfter(l *lane, delay time.Duration) {
	p := s.p
	l.waiting, l.gen = true, s.gen
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-p.g.clock.After(delay):
		case <-p.stop:
			return
		}
		select {
		case s.wakeups <- l:
		case <-p.stop:
		}
	}()
}

// seek drops what the partition admitted and applies the operator's seek
// waiting (O5); nothing is in flight.
func (s *scheduler) seek() {
	p := s.p
	p.mu.Lock()
	req := p.takeSeekLocked()
	p.mu.Unlock()
	if req == nil {
		return
	}
	s.gen++ // lanes waiting out a backoff are dropped when it ends
	s.policy.drop(s)
	clear(s.ready)
	s.ready = s.ready[:0]
	s.admitted = 0
	if s.failing > 0 {
		s.failing = 0
		p.failingSince.Store(0)
	}
	s.release() // not held idle while the seek applies
	p.applySeek(req)
}
