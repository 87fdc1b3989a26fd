package engine

// Ownership: the state machine of one assignment (owned → revoking or
// stopping → released, lost or closed), and the marks and commits it
// allows. A mark is accepted only while the partition is owned (M2); a
// lost partition is never committed for (A7).

import (
	"context"

	"github.com/ferrykit/ferry/offsets"
	"github.com/twmb/franz-go/pkg/kgo"
)

// state is where a partition is in its life. Transitions happen under
// Partition.mu; every transition away from owned closes Partition.stop.
type state int

const (
	owned    state = iota // batches flow, marks accepted
	revoking              // revocation in progress: no new batch, marks accepted
	stopping              // app shutting down: no new batch, marks accepted
	released              // handed back after revocation: marks refused
	lost                  // assignment lost: marks refused, never committed
	closed                // taken by the final commit at shutdown: marks refused
)

func (s state) marksAccepted() bool { return s <= stopping }

// setState moves the partition to s, closing stop when it leaves owned.
// Callers hold p.mu.
func (p *Partition) setStateLocked(s state) {
	if p.state == owned && s != owned {
		p.stopReason = s
		close(p.stop)
		p.clearQueueLocked() // never taken now; stop counting it
		p.news = nil         // a partition let go is not resumed
	}
	p.state = s
	p.markReadyLocked() // a stopped partition builds no consumer to wait for
}

func (p *Partition) markReadyLocked() {
	if !p.readyClosed {
		p.readyClosed = true
		close(p.ready)
	}
}

// Owned reports whether marks are still accepted.
func (p *Partition) Owned() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.marksAccepted()
}

// Revoked reports whether the partition was revoked or lost (M5). It is
// already true while the revocation waits for in-flight work.
func (p *Partition) Revoked() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == revoking || p.state == released || p.state == lost
}

// CommittedMetadata is the metadata committed with the offset this
// assignment started from (M8).
func (p *Partition) CommittedMetadata() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.committedMD
}

// Mark stores r's offset+1 with metadata for the next commit. It reports
// false, storing nothing, when the partition is no longer owned or r belongs
// to another partition (M2).
func (p *Partition) Mark(r *kgo.Record, metadata string) bool {
	ok, _ := p.mark(r, metadata)
	return ok
}

// mark is Mark, with the reason a mark of an owned partition was refused.
func (p *Partition) mark(r *kgo.Record, metadata string) (bool, error) {
	if r.Topic != p.topic.Name || r.Partition != p.id {
		return false, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.g.eos && p.state != owned {
		// S3: a revoked partition's offsets are not this member's to
		// commit any more; the transaction the mark was meant to join
		// aborts, and the new owner processes the messages again.
		p.g.txn.fail(p.g.txn.current(), errMarkAfterRevocation)
		return false, nil
	}
	if !p.state.marksAccepted() {
		return false, nil
	}
	if err := p.book.mark(r, metadata); err != nil {
		return false, err
	}
	if p.book.recordFull() {
		// K4: a mark made outside Consume (by another goroutine, or a
		// hook) may be what lets the committed offset catch up; no unit
		// ends to make the scheduler look again, so wake it to admit.
		poke(p.wake)
	}
	return true, nil
}

// MarkSync stores the mark and commits before returning (M3). It reports
// true only if the commit succeeded and the partition is still owned.
func (p *Partition) MarkSync(ctx context.Context, r *kgo.Record, metadata string) (bool, error) {
	if p.g.eos {
		return false, ErrTransactional
	}
	if ok, err := p.mark(r, metadata); !ok {
		return false, err
	}
	ok, err := p.CommitSync(ctx)
	if !ok || err != nil {
		return ok, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.book.covered(r.Offset), nil // K7
}

// Commit asks the commit loop to commit stored marks soon, without waiting.
// It reports whether the partition is still owned (M4).
func (p *Partition) Commit() bool {
	if !p.Owned() {
		return false
	}
	p.g.commitSoon()
	return true
}

// CommitSync commits stored marks and waits (M4). With nothing stored it
// succeeds while the partition is owned.
func (p *Partition) CommitSync(ctx context.Context) (bool, error) {
	if p.g.eos {
		return false, ErrTransactional
	}
	if !p.Owned() {
		return false, nil
	}
	errs := p.g.commit(ctx, "sync", p)
	if err := errs[p]; err != nil {
		return false, err
	}
	return p.Owned(), nil
}

// pending returns the mark a commit should send, if any. Lost and released
// partitions have nothing to commit (A7).
func (p *Partition) pending() (offsets.Mark, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pendingLocked()
}

func (p *Partition) pendingLocked() (offsets.Mark, bool) {
	if !p.state.marksAccepted() {
		return offsets.Mark{}, false
	}
	return p.book.pending()
}

// stored returns the newest mark, or the committed position, to send again
// when only the coordinator's answer is wanted (M3); false when there is
// no position at all yet.
func (p *Partition) stored() (offsets.Mark, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.book.stored()
	return m, m.Offset >= 0 && p.state.marksAccepted()
}

// committed returns the position Kafka acknowledged last.
func (p *Partition) committed() offsets.Mark {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.book.committed()
}

// lose drops the partition (A7): marks are refused from now on, nothing is
// committed for it, fetching is no longer held back for it and its
// context is cancelled. In-flight work may finish.
func (p *Partition) lose() {
	p.mu.Lock()
	if p.state.marksAccepted() {
		p.setStateLocked(lost)
		p.syncPauseLocked()
	}
	p.mu.Unlock()
	p.cancel()
}

// abandon gives up on a partition whose work outlived the shutdown timeout
// (A4): it refuses marks from now on — the stuck batch is never committed,
// even if it returns nil once its context is cancelled — and its context is
// cancelled. It returns what the batches that finished before stored, for
// the final commit.
func (p *Partition) abandon() (offsets.Mark, bool) {
	p.mu.Lock()
	m, ok := p.pendingLocked()
	p.state = lost
	p.mu.Unlock()
	p.cancel()
	return m, ok
}

// retire ends the partition's assignment — released at the end of a
// revocation, closed at shutdown — if it still accepts marks: they are
// refused from now on. It returns what was stored, for the partition's
// last commit, so every mark that returned true is in it (M2).
func (p *Partition) retire(to state) (offsets.Mark, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.pendingLocked()
	if p.state.marksAccepted() {
		p.state = to
		if to == released {
			p.syncPauseLocked()
		}
	}
	return m, ok
}

// loseToCommit drops the partition when the coordinator answered its
// commit with proof that this member no longer owns it, at once rather
// than when kgo's next heartbeat finds out.
func (p *Partition) loseToCommit(err error) {
	p.mu.Lock()
	if p.state.marksAccepted() {
		p.lostToCommit = true
	}
	p.mu.Unlock()
	p.lose()
	p.log.Warn("ferry: the group coordinator refused a commit: this member no longer owns the partition", "err", err)
}

// keptAfterLoss reports whether the partition was dropped after a refused
// commit while kgo, which has not let it go, still fetches it: kgo rejoined
// and kept it, so it needs a new instance (restartKept).
func (p *Partition) keptAfterLoss() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lostToCommit && !p.letGo
}

// resume is where a sequential partition continues: after its newest mark,
// or the first offset delivered.
func (p *Partition) resume() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tracker().Resume()
}

func (p *Partition) acknowledge(m offsets.Mark) {
	p.mu.Lock()
	p.book.acknowledge(m)
	p.mu.Unlock()
}

// setFailed stops a partition that cannot go on: its consumer could not be
// built, or another member owns it (ErrNotOwned).
func (p *Partition) setFailed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == owned {
		p.setStateLocked(lost)
	}
}
