package engine

import (
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A sequential partition is the scheduler's one-lane case: every record in
// one lane, a unit is a batch (B1: cut when MaxMessages are queued, when the
// oldest queued message waited MaxWait, or at once when the fetch reached
// the end of the partition), one batch at a time (B2), run on the
// partition's goroutine itself — there is nothing to run beside it.
//
// Its offsets are an offsets.Tracker: a mark stores the next offset for the
// commit and moves the partition-wide resume point, even backwards (M6).
// A failed batch rewinds the whole partition to that point: the queue is
// dropped, the poll loop seeks back, fetching pauses for the backoff, and
// full batches are cut again from the refetch (A5, M7). Nothing of a failed
// partition waits in memory. At-most-once commits each batch before it runs
// (S1).

// batches is the policy of a sequential partition.
type batches struct {
	lane lane // the one lane
}

func newSequential(p *Partition, w Worker) *scheduler {
	return newScheduler(p, w, &batches{}, p.topic.MaxMessages, true)
}

// admit cuts the next batch once it is due (B1), the lane is idle and the
// partition holds a slot of the worker pool: records wait in the queue, not
// in the lane, so a retry can drop them, and a batch cut while it waited for
// a slot would keep its whole fetch in memory meanwhile (see detach), while
// the records left queued can be copied out of it. It returns how long
// until the oldest queued record's MaxWait.
func (pol *batches) admit(s *scheduler) time.Duration {
	l := &pol.lane
	p := s.p
	if l.busy || l.waiting || len(l.pending) > 0 || s.draining || p.held.Load() {
		return -1 // O4, O5: paused, or a seek waits
	}
	for {
		now := time.Now()
		p.mu.Lock()
		if p.state != owned {
			p.mu.Unlock()
			return -1
		}
		if !p.q.due(now) {
			wait := p.q.untilMaxWait(now)
			p.mu.Unlock()
			return wait // a slot taken meanwhile goes back: nothing runs
		}
		if !s.slot {
			p.mu.Unlock()
			if !s.acquire() {
				return -1 // stopped
			}
			continue // the queue may have been cleared meanwhile (a seek)
		}
		batch := p.takeLocked(now)
		p.tracker().Start(batch[0].Offset)
		p.q.pinCut()
		news := p.newsLocked()
		p.mu.Unlock()
		p.tell(news)
		s.add(l, batch...)
		return -1
	}
}

// consume runs one batch: at-most-once commits it first (S1); a failure is
// blamed, and dead-lettered after MaxRetries (E1), here.
func (pol *batches) consume(s *scheduler, u *unit) {
	pol.run(s, u)
	s.p.q.unpin() // the batch no longer keeps its fetch for the poll loop
}

func (pol *batches) run(s *scheduler, u *unit) {
	p, batch := s.p, u.recs
	if p.holdBack(batch) {
		u.held = true // O4, O5: paused or moved by an operator; fetched again
		return
	}
	if p.topic.Delivery == AtMostOnce && !p.commitBefore(batch) {
		u.err = errors.New("at-most-once: committing before processing failed")
		u.retry = &failure{err: u.err, batch: batch, resume: batch[0].Offset}
		return
	}
	u.err = guard(func() error { return s.w.Consume(p.ctx, batch, u.attempt) })
	p.consumed(batch, u.attempt, u.began, u.err)
	if u.err == nil || p.topic.Delivery == AtMostOnce || errors.Is(u.err, ErrNotOwned) {
		return
	}
	failed := p.failedRecord(batch, u.err)
	resume := p.resume()
	if failed != nil && failed.Offset == resume && p.topic.DeadLetterRecord != nil &&
		p.topic.MaxRetries >= 0 && u.attempt > p.topic.MaxRetries {
		if p.deadLetter(failed, u.err, u.attempt) {
			u.retry = &failure{err: u.err, batch: batch, resume: failed.Offset + 1, skipped: true}
			return
		}
	}
	u.retry = &failure{err: u.err, batch: batch, resume: resume}
}

// settle applies a batch's outcome: marks after success (A1), or the
// failure to retry (A5).
func (pol *batches) settle(s *scheduler, u *unit) {
	p, l, batch := s.p, u.lane, u.recs
	s.admitted -= len(batch)
	if u.held {
		return
	}
	if errors.Is(u.err, ErrNotOwned) {
		p.log.Warn("ferry: another member owns the partition now; it is dropped until it is assigned again", "err", u.err)
		p.setFailed()
		return
	}
	if u.retry == nil {
		if u.err != nil {
			// S1: the offsets are already committed; the rest of the
			// batch is skipped, never redelivered.
			p.log.Error("ferry: consume failed; at-most-once skips the rest of the batch",
				append([]any{"first_offset", batch[0].Offset, "last_offset", batch[len(batch)-1].Offset}, errAttrs(u.err)...)...)
		}
		s.setFailures(l, 0)
		if !p.topic.Manual {
			p.Mark(batch[len(batch)-1], "") // A1; refused if the partition was lost
		}
		return
	}
	f := u.retry
	if f.skipped {
		s.setFailures(l, 0)
	} else {
		s.setFailures(l, l.failures+1)
	}
	delay, wait := p.rewind(f, l.failures)
	if wait {
		// Nothing else of the partition can run meanwhile: it waits on
		// its own goroutine, without its slot.
		s.release()
		p.waitBackoff(delay)
	}
}

// drop forgets the batch cut and the failures, for an operator's seek (O5):
// the failing batch is behind or ahead of the new position, and starts
// over.
func (pol *batches) drop(s *scheduler) {
	pol.lane = lane{}
	s.p.q.unpin()
	s.p.setFailures(0)
}

// commitBefore marks the whole batch and commits it before processing (S1).
func (p *Partition) commitBefore(batch []*kgo.Record) bool {
	if !p.Mark(batch[len(batch)-1], "") {
		return false
	}
	ok, err := p.CommitSync(p.ctx)
	if err != nil {
		p.log.Error("ferry: at-most-once commit failed", "err", err)
	}
	return ok
}
