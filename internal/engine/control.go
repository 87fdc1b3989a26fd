package engine

// Operator control of one assigned partition: a pause that holds until it
// is resumed (O4), and a seek that moves the partition to another offset
// (O5). Both act on the partition instance of this assignment: a partition
// revoked or lost and assigned again starts unpaused, where the group's
// committed offset says.
//
// A pause stops fetching (kgo) and starting batches: the queue is dropped
// and fetched again from its first message on resume, so a paused
// partition holds no fetched memory; what a parallel partition already
// admitted to its lanes waits there. A batch that started finishes. A
// retry's own pause and resume leave it paused.
//
// A seek is applied by the partition's own goroutine once nothing is in
// flight (the batch or the units running finish first, and none starts
// meanwhile): the queue and a parallel partition's lanes are dropped, the
// offsets start over at the new position (a parallel partition sought
// forwards keeps what finished above it), kgo is told to fetch from there,
// and the position is committed before Seek returns — also with manual
// offsets: the operator's position stands for the consumer's marks, so a
// restart resumes there too.

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferrykit/ferry/event"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Errors of the operator calls.
var (
	// ErrNotAssigned: the partition is not assigned to this member (or is
	// being revoked), or the group does not route the topic.
	ErrNotAssigned = errors.New("ferry: partition not assigned to this app")
	// ErrOffsetOutOfRange: a seek to an offset outside the partition's
	// first and end offsets.
	ErrOffsetOutOfRange = errors.New("ferry: offset out of range")
)

// seekRequest is a Seek waiting for the partition's goroutine.
type seekRequest struct {
	ctx    context.Context
	offset int64
	done   chan error // buffered: the outcome, sent once
}

// ownedPartition returns the partition of the running group if this member owns it.
func (cfg *Group) ownedPartition(topic string, id int32) (*group, *Partition, error) {
	g := cfg.live.Load()
	if g == nil {
		return nil, nil, fmt.Errorf("%w: group %q is not running", ErrNotAssigned, cfg.Name)
	}
	p := g.partition(topic, id)
	if p == nil || p.isStopping() {
		return nil, nil, fmt.Errorf("%w: %s/%d is not assigned to this member of group %q", ErrNotAssigned, topic, id, cfg.Name)
	}
	return g, p, nil
}

// lockOwned is ownedPartition, then the partition's lock, taken if it is
// still owned: the caller unlocks it. Without it, the error says why.
func (cfg *Group) lockOwned(topic string, id int32) (*group, *Partition, error) {
	g, p, err := cfg.ownedPartition(topic, id)
	if err != nil {
		return nil, nil, err
	}
	if err := p.lockIfOwned(); err != nil {
		return nil, nil, err
	}
	return g, p, nil
}

// lockIfOwned takes p.mu if the partition is still owned; else it returns
// ErrNotAssigned, without the lock.
func (p *Partition) lockIfOwned() error {
	p.mu.Lock()
	if p.state != owned {
		p.mu.Unlock()
		return notAssigned(p)
	}
	return nil
}

func notAssigned(p *Partition) error {
	return fmt.Errorf("%w: %s/%d is no longer assigned to this member of group %q", ErrNotAssigned, p.topic.Name, p.id, p.g.cfg.Name)
}

// Pause stops consuming the partition until Resume (O4). It returns at
// once; a batch already started finishes.
func (cfg *Group) Pause(topic string, id int32) error {
	g, p, err := cfg.lockOwned(topic, id)
	if err != nil {
		return err
	}
	if p.pausedUser {
		p.mu.Unlock()
		return nil
	}
	p.pausedUser = true
	p.setHeldLocked()
	p.syncPauseLocked()
	refetch := false
	if first := p.q.first(); first >= 0 {
		p.clearQueueLocked()
		p.requeueLocked(first)
		refetch = true
	}
	if g.observed() {
		p.pauseNewsLocked(true, event.PauseUser)
	}
	news := p.newsLocked()
	p.mu.Unlock()
	p.tell(news)
	if refetch {
		g.wantSeek()
	}
	p.log.Info("ferry: partition paused until resumed")
	return nil
}

// Resume ends a Pause (O4); a partition that is not paused is left alone.
func (cfg *Group) Resume(topic string, id int32) error {
	g, p, err := cfg.lockOwned(topic, id)
	if err != nil {
		return err
	}
	if !p.pausedUser {
		p.mu.Unlock()
		return nil
	}
	p.pausedUser = false
	p.setHeldLocked()
	p.syncPauseLocked()
	if g.observed() {
		p.pauseNewsLocked(false, event.PauseUser)
	}
	news := p.newsLocked()
	p.mu.Unlock()
	p.tell(news)
	poke(p.wake)
	p.log.Info("ferry: partition resumed")
	return nil
}

// Seek moves the partition to offset (O5), which must lie between its first
// and end offsets. It waits until nothing of the partition is in flight,
// the new position is applied and committed. Exactly-once groups refuse it:
// their offsets move only in transactions.
func (cfg *Group) Seek(ctx context.Context, topic string, id int32, offset int64) error {
	g, p, err := cfg.ownedPartition(topic, id)
	if err != nil {
		return err
	}
	if g.eos {
		return fmt.Errorf("ferry: cannot seek %s/%d: %w; stop the group and reset its offsets instead", topic, id, ErrTransactional)
	}
	if err := g.inRange(ctx, topic, id, offset); err != nil {
		return err
	}
	req := &seekRequest{ctx: ctx, offset: offset, done: make(chan error, 1)}
	if err := p.lockIfOwned(); err != nil {
		return err
	}
	if old := p.seekReq; old != nil {
		old.done <- fmt.Errorf("ferry: seek of %s/%d to %d replaced by a seek to %d", topic, id, old.offset, offset)
	}
	p.seekReq = req
	p.setHeldLocked()
	p.mu.Unlock()
	poke(p.wake)
	poke(p.seekWake)
	select {
	case err := <-req.done:
		return err
	case <-p.stop:
		if p.cancelSeek(req) {
			return notAssigned(p)
		}
	case <-ctx.Done():
		if p.cancelSeek(req) {
			return fmt.Errorf("ferry: seek of %s/%d not applied: %w", topic, id, ctx.Err())
		}
	}
	return <-req.done // taken by the partition: its outcome comes
}

// inRange checks offset against the partition's first and end offsets (its
// high watermark), asked of the cluster.
func (g *group) inRange(ctx context.Context, topic string, id int32, offset int64) error {
	adm := kadm.NewClient(g.cl)
	bound := func(list func(context.Context, ...string) (kadm.ListedOffsets, error)) (int64, error) {
		listed, err := list(ctx, topic)
		if err != nil {
			return 0, err
		}
		o, ok := listed.Lookup(topic, id)
		if !ok {
			return 0, fmt.Errorf("ferry: %s/%d: no offsets listed", topic, id)
		}
		return o.Offset, o.Err
	}
	first, err := bound(adm.ListStartOffsets)
	if err != nil {
		return fmt.Errorf("ferry: cannot check the offsets of %s/%d: %w", topic, id, err)
	}
	end, err := bound(adm.ListEndOffsets)
	if err != nil {
		return fmt.Errorf("ferry: cannot check the offsets of %s/%d: %w", topic, id, err)
	}
	if offset < first || offset > end {
		return fmt.Errorf("%w: %d is outside %s/%d's offsets [%d, %d]", ErrOffsetOutOfRange, offset, topic, id, first, end)
	}
	return nil
}

// cancelSeek withdraws req unless the partition took it already.
func (p *Partition) cancelSeek(req *seekRequest) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seekReq != req {
		return false
	}
	p.seekReq = nil
	p.setHeldLocked()
	return true
}

func (p *Partition) setHeldLocked() { p.held.Store(p.pausedUser || p.seekReq != nil) }

// seekPending reports whether a seek waits for the partition's goroutine.
func (p *Partition) seekPending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seekReq != nil
}

// takeSeekLocked takes the seek waiting, if any.
func (p *Partition) takeSeekLocked() *seekRequest {
	req := p.seekReq
	if req != nil {
		p.seekReq = nil
		p.setHeldLocked()
	}
	return req
}

// requeueLocked asks the poll loop to fetch again from offset — records
// from there on were taken out of kgo but will not be consumed now —
// unless an earlier position is pending already.
func (p *Partition) requeueLocked(offset int64) {
	if p.seek < 0 || offset < p.seek {
		p.seek = offset
	}
}

// holdBack reports whether a sequential batch cut from the queue may not
// start: the partition was paused or a seek waits. The batch is fetched
// again from its first message (a seek moves the partition anyway).
func (p *Partition) holdBack(batch []*kgo.Record) bool {
	if !p.held.Load() {
		return false
	}
	p.mu.Lock()
	held := p.pausedUser || p.seekReq != nil
	if held {
		p.requeueLocked(batch[0].Offset)
	}
	p.mu.Unlock()
	if held {
		p.g.wantSeek()
	}
	return held
}

// applySeek moves the partition to req's offset. It runs on the partition's
// goroutine while nothing is in flight.
func (p *Partition) applySeek(req *seekRequest) {
	// Under commitMu no commit is on its way with an older mark whose
	// answer would land after the seek.
	p.g.commitMu.Lock()
	p.mu.Lock()
	if p.state != owned {
		p.mu.Unlock()
		p.g.commitMu.Unlock()
		req.done <- notAssigned(p)
		return
	}
	p.clearQueueLocked()
	if p.book.recordFull() {
		p.setWideLocked(false) // the record starts over
	}
	from := p.book.seek(req.offset) // where fetching resumes
	p.seek = from
	p.q.forgetEnd()
	p.processed.Store(from)
	news := p.newsLocked()
	p.mu.Unlock()
	p.g.commitMu.Unlock()
	p.tell(news)
	select { // a poke meant for this seek
	case <-p.seekWake:
	default:
	}
	p.g.wantSeek()
	err := p.g.commit(req.ctx, "seek", p)[p]
	if err != nil {
		p.log.Warn("ferry: partition moved by an operator; committing its new position failed, the next commit tries again", "offset", req.offset, "err", err)
		err = fmt.Errorf("ferry: %s/%d moved to %d, but committing it failed (the next commit tries again): %w", p.topic.Name, p.id, req.offset, err)
	} else {
		p.log.Info("ferry: partition moved by an operator", "offset", req.offset)
	}
	req.done <- err
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
