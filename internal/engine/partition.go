package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

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
	closed                // final commit done at shutdown: marks refused
)

func (s state) marksAccepted() bool { return s <= stopping }

// chunk is one fetch's records of the partition, queued as kgo returned
// them: batches are cut from chunks without copying when they fit in one.
type chunk struct {
	recs     []*kgo.Record
	at       time.Time // arrival, for MaxWait
	bytes    int       // approximate size of the records left, for QueueBytes
	per      int       // average record size
	detached bool      // recs are copies that no longer hold the fetch in memory (detach)
}

// take removes the chunk's first k records and returns their bytes.
func (c *chunk) take(k int) int {
	c.recs = c.recs[k:]
	b := c.bytes
	if len(c.recs) > 0 {
		b = min(k*c.per, c.bytes)
	}
	c.bytes -= b
	return b
}

// Partition is one assigned topic-partition: its queue, its offsets and the
// goroutine that runs its worker. The poll loop pushes into it; its own
// goroutine takes batches out; rebalance callbacks change its state.
type Partition struct {
	g     *group
	topic *Topic
	id    int32
	log   *slog.Logger

	// ctx is handed to the worker. It is cancelled when the partition is
	// lost or the shutdown deadline passes, not on revocation or graceful
	// shutdown (in-flight work finishes then).
	ctx    context.Context
	cancel context.CancelFunc

	mu          sync.Mutex
	state       state
	tracker     *offsets.Tracker
	committedMD string
	chunks      []chunk
	queued      int // records in chunks
	queuedBytes int
	caughtUp    bool // the newest fetch reached the end of the partition
	eofSent     bool
	pausedFull  bool  // fetching paused because the queue is full
	pausedRetry bool  // fetching paused while waiting to retry
	pausedInKgo bool  // what kgo was last told
	seek        int64 // offset the poll loop must seek to; -1 for none
	txnFirst    int64 // exactly-once: first offset given to it; -1 before
	readyClosed bool
	stopReason  state
	// lostToCommit: lost because a commit's answer said the member was
	// gone, not through kgo; letGo: kgo revoked or lost it since.
	lostToCommit bool
	letGo        bool
	// resync: a restart after lostToCommit; records are refused until
	// the partition is positioned at the group's committed offset.
	resync bool

	ready     chan struct{}      // closed once committed offsets are known
	wake      chan struct{}      // poked when records arrive
	stop      chan struct{}      // closed when no new batch may start
	idle      chan struct{}      // closed by the worker once it ran its last batch
	hooks     chan struct{}      // closed by the revoker: the Revoked hook may run
	round     chan []*kgo.Record // exactly-once: this partition's share of a round
	roundDone chan roundResult   // exactly-once: its outcome
	done      chan struct{}      // closed when the worker goroutine exits
	prev      *Partition         // the previous instance of this partition, if still finishing

	// par is the offset state of a parallel partition (scheduler.go);
	// nil for a sequential one.
	par *parallelState

	// Owned by the worker goroutine.
	failures int

	// For Stats and health (observe.go).
	end          atomic.Int64 // how far the partition can be read, as of the latest fetch; -1 unknown
	processed    atomic.Int64 // the offset after the last processed message; -1 unknown
	failingSince atomic.Int64 // unix nanoseconds of the first failure in a row; 0 when not failing
}

func newPartition(g *group, t *Topic, id int32, prev *Partition) *Partition {
	ctx, cancel := context.WithCancel(context.WithoutCancel(g.runCtx))
	p := &Partition{
		g:         g,
		topic:     t,
		id:        id,
		log:       g.log.With("topic", t.Name, "partition", id),
		ctx:       ctx,
		cancel:    cancel,
		tracker:   offsets.New(offsets.Mark{Offset: -1, Epoch: -1}),
		seek:      -1,
		txnFirst:  -1,
		ready:     make(chan struct{}),
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		idle:      make(chan struct{}),
		hooks:     make(chan struct{}),
		round:     make(chan []*kgo.Record),
		roundDone: make(chan roundResult, 1),
		done:      make(chan struct{}),
		prev:      prev,
	}
	p.end.Store(-1)
	p.processed.Store(-1)
	if t.Parallel > 0 {
		p.par = &parallelState{epoch: -1, committed: offsets.Mark{Offset: -1, Epoch: -1}}
	}
	return p
}

// Topic returns the partition's topic name.
func (p *Partition) Topic() string { return p.topic.Name }

// Group returns the consumer group's name.
func (p *Partition) Group() string { return p.g.cfg.Name }

// ID returns the partition number.
func (p *Partition) ID() int32 { return p.id }

// Logger returns a logger carrying the group, topic and partition.
func (p *Partition) Logger() *slog.Logger { return p.log }

// setState moves the partition to s, closing stop when it leaves owned.
// Callers hold p.mu.
func (p *Partition) setStateLocked(s state) {
	if p.state == owned && s != owned {
		p.stopReason = s
		close(p.stop)
		p.clearQueueLocked() // never taken now; stop counting it
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
	if r.Topic != p.topic.Name || r.Partition != p.id {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.g.eos && p.state != owned {
		// S3: a revoked partition's offsets are not this member's to
		// commit any more; the transaction the mark was meant to join
		// aborts, and the new owner processes the messages again.
		p.g.txn.fail(p.g.txn.current(), errMarkAfterRevocation)
		return false
	}
	if !p.state.marksAccepted() {
		return false
	}
	if p.par != nil {
		// K7: a mark is per message; the commit moves as the finished
		// prefix allows.
		p.par.user = metadata
		p.par.doneLocked(r)
		return true
	}
	p.tracker.Mark(offsets.Mark{Offset: r.Offset + 1, Epoch: r.LeaderEpoch, Metadata: metadata})
	return true
}

// MarkSync stores the mark and commits before returning (M3). It reports
// true only if the commit succeeded and the partition is still owned.
func (p *Partition) MarkSync(ctx context.Context, r *kgo.Record, metadata string) (bool, error) {
	if p.g.eos {
		return false, ErrTransactional
	}
	if !p.Mark(r, metadata) {
		return false, nil
	}
	ok, err := p.CommitSync(ctx)
	if !ok || err != nil || p.par == nil {
		return ok, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.par.coveredLocked(r.Offset), nil // K7
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
	if !p.state.marksAccepted() {
		return offsets.Mark{}, false
	}
	if p.par != nil {
		return p.par.pendingLocked()
	}
	return p.tracker.Pending()
}

// stored returns the newest mark, or the committed position, to send again
// when only the coordinator's answer is wanted (M3); false when there is
// no position at all yet.
func (p *Partition) stored() (offsets.Mark, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var m offsets.Mark
	switch {
	case p.par != nil && p.par.window.Next() >= 0:
		m, _ = p.par.pendingLocked()
	case p.par != nil:
		m = p.par.committed
	default:
		m = p.tracker.Stored()
	}
	return m, m.Offset >= 0 && p.state.marksAccepted()
}

// committed returns the position Kafka acknowledged last.
func (p *Partition) committed() offsets.Mark {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tracker.Committed()
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

// resume is where the partition continues: after its newest mark, or the
// first offset delivered.
func (p *Partition) resume() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tracker.Resume()
}

func (p *Partition) acknowledge(m offsets.Mark) {
	p.mu.Lock()
	p.tracker.Acknowledge(m)
	if p.par != nil && m.Offset >= p.par.committed.Offset {
		p.par.committed = m
	}
	p.mu.Unlock()
}

// push appends fetched records; it runs on the poll loop. Records for a
// partition that is not owned, or that arrive before a pending seek was
// applied, are dropped: they will be fetched again.
func (p *Partition) push(recs []*kgo.Record, end int64, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != owned || p.seek >= 0 || p.resync {
		return
	}
	p.markReadyLocked()
	p.end.Store(end)
	if p.processed.Load() < 0 {
		p.processed.Store(recs[0].Offset) // nothing processed before the first fetch
	}
	size := chunkSize(recs)
	p.chunks = append(p.chunks, chunk{recs: recs, at: now, bytes: size, per: size / len(recs)})
	p.queued += len(recs)
	p.addBytesLocked(size)
	p.caughtUp = end >= 0 && recs[len(recs)-1].Offset+1 >= end
	p.eofSent = false
	if p.queuedBytes >= p.topic.QueueBytes && !p.pausedFull {
		p.setFullLocked(true)
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// chunkSize estimates a chunk's memory from three sampled records: exact
// enough to bound memory, and it does not walk every record on the hot path.
func chunkSize(recs []*kgo.Record) int {
	n := len(recs)
	sample := recordSize(recs[0]) + recordSize(recs[n/2]) + recordSize(recs[n-1])
	return sample * n / 3
}

func recordSize(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value) + 64
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// syncPauseLocked tells kgo whether to fetch this partition.
func (p *Partition) syncPauseLocked() {
	want := (p.pausedFull || p.pausedRetry) && p.state == owned
	if want == p.pausedInKgo {
		return
	}
	tp := map[string][]int32{p.topic.Name: {p.id}}
	if want {
		p.g.cl.PauseFetchPartitions(tp)
	} else {
		p.g.cl.ResumeFetchPartitions(tp)
	}
	p.pausedInKgo = want
}

// takeLocked cuts the next batch if one is due (B1): MaxMessages are queued,
// the oldest queued record waited MaxWait, or the fetch reached the end of
// the partition. It returns nil when no batch is due.
func (p *Partition) takeLocked(now time.Time) []*kgo.Record {
	n := p.queued
	if n == 0 {
		return nil
	}
	max := p.topic.MaxMessages
	if n < max && !p.caughtUp && now.Sub(p.chunks[0].at) < p.topic.MaxWait {
		return nil
	}
	return p.cutLocked(min(n, max))
}

// cutLocked removes the first k queued records (k <= p.queued) and returns
// them.
func (p *Partition) cutLocked(k int) []*kgo.Record {
	max := p.topic.MaxMessages
	var batch []*kgo.Record
	if head := &p.chunks[0]; len(head.recs) >= k {
		batch = head.recs[:k:k] // no copy; capped so appends cannot reach the rest
		p.addBytesLocked(-head.take(k))
	} else {
		batch = make([]*kgo.Record, 0, k)
		for len(batch) < k {
			head := &p.chunks[0]
			n := min(k-len(batch), len(head.recs))
			batch = append(batch, head.recs[:n]...)
			p.addBytesLocked(-head.take(n))
			if len(head.recs) == 0 {
				p.dropHeadLocked()
			}
		}
	}
	if len(p.chunks) > 0 {
		if head := &p.chunks[0]; len(head.recs) == 0 {
			p.dropHeadLocked()
		} else if len(head.recs) < max && !head.detached {
			// A tail too short for a batch may wait for the next
			// fetch or MaxWait, and would keep the whole fetch in
			// memory meanwhile: copy the few records left out of it.
			head.recs, head.detached = detach(head.recs), true
		}
	}
	p.queued -= k
	if p.pausedFull && p.queuedBytes < p.topic.QueueBytes/2 {
		p.setFullLocked(false)
	}
	return batch
}

// dropHeadLocked forgets the emptied oldest chunk.
func (p *Partition) dropHeadLocked() {
	p.addBytesLocked(-p.chunks[0].bytes)
	p.chunks[0] = chunk{}
	p.chunks = p.chunks[1:]
	if len(p.chunks) == 0 {
		p.chunks = nil
	}
}

// clearQueueLocked forgets everything queued.
func (p *Partition) clearQueueLocked() {
	p.addBytesLocked(-p.queuedBytes)
	p.chunks, p.queued = nil, 0
	if p.pausedFull {
		p.setFullLocked(false)
	}
}

// addBytesLocked accounts queued bytes, in the partition and — unless the
// partition is paused for being full — in the group's fetch-ahead total.
func (p *Partition) addBytesLocked(delta int) {
	p.queuedBytes += delta
	if p.pausedFull {
		return
	}
	if delta < 0 {
		p.g.drain(-delta)
	} else {
		p.g.addAhead(delta)
	}
}

// setFullLocked pauses or resumes fetching of a partition whose queue is
// full. A full partition's bytes stop counting against the group's
// fetch-ahead budget, so one slow partition never stops the poll loop (B3).
func (p *Partition) setFullLocked(full bool) {
	if full == p.pausedFull {
		return
	}
	if full {
		p.g.addAhead(-p.queuedBytes)
	} else {
		p.g.addAhead(p.queuedBytes)
	}
	p.pausedFull = full
	p.syncPauseLocked()
}

// next waits for the next batch. It returns false once no new batch may
// start (revocation, loss, shutdown).
func (p *Partition) next() ([]*kgo.Record, bool) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		now := time.Now()
		p.mu.Lock()
		if p.state != owned {
			p.mu.Unlock()
			return nil, false
		}
		if batch := p.takeLocked(now); batch != nil {
			p.tracker.Start(batch[0].Offset)
			p.mu.Unlock()
			return batch, true
		}
		var due <-chan time.Time
		if p.queued > 0 {
			wait := p.topic.MaxWait - now.Sub(p.chunks[0].at)
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			due = timer.C
		}
		p.mu.Unlock()
		select {
		case <-p.wake:
		case <-due:
		case <-p.stop:
		}
	}
}

// run is the partition's goroutine: it builds the worker, feeds it batches
// until the partition stops, then runs the closing hook.
func (p *Partition) run() {
	defer close(p.done)
	if p.prev != nil {
		<-p.prev.done // one instance per partition at a time (B4)
		if p.resync {
			p.resyncFromGroup()
		}
		p.prev = nil
	}
	select {
	case <-p.ready:
	case <-p.stop:
	}
	w, err := p.newWorker()
	if err != nil {
		p.log.Error("ferry: cannot build consumer; the partition is not consumed until it is assigned again", "err", err)
		p.setFailed()
		close(p.idle)
		return
	}
	if err := guard(func() error { return w.Initialized(p.ctx) }); err != nil {
		p.log.Error("ferry: Initialized hook failed", "err", err)
	}
	switch {
	case p.g.eos:
		p.runRounds(w)
	case p.par != nil:
		p.runParallel(w)
	}
	for !p.g.eos && p.par == nil {
		batch, ok := p.next()
		if !ok {
			break
		}
		select {
		case p.g.slots <- struct{}{}:
		default:
			if p.g.limit.Load() == minAhead {
				// A slow consumer's batch may wait long for a
				// slot: it should not keep its fetch alive
				// meanwhile (see detachQueued).
				batch = detach(batch)
			}
			select {
			case p.g.slots <- struct{}{}:
			case <-p.stop:
				continue // never started: the next owner fetches it again
			}
		}
		failed := p.consumeHeld(w, batch)
		<-p.g.slots
		if failed != nil {
			p.retryLater(failed)
		}
	}
	close(p.idle)

	p.mu.Lock()
	reason := p.stopReason
	p.mu.Unlock()
	switch reason {
	case revoking:
		<-p.hooks // A3: the revoker commits first, then lets the hook run
		fallthrough
	case lost:
		if err := guard(func() error { return w.Revoked(p.ctx) }); err != nil {
			p.log.Error("ferry: Revoked hook failed", "err", err)
		}
	case stopping:
		if err := guard(func() error { return w.Shutdown(p.ctx) }); err != nil {
			p.log.Error("ferry: Shutdown hook failed", "err", err)
		}
	}
}

func (p *Partition) newWorker() (w Worker, err error) {
	err = guard(func() error {
		w = p.topic.NewWorker(p)
		if w == nil {
			return fmt.Errorf("consumer factory for topic %q returned nil", p.topic.Name)
		}
		return nil
	})
	return w, err
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

// slotBatches is how many due batches a partition runs in a row once it
// holds a worker slot, saving a hand-off per batch when it is busy while
// keeping the pool fair (B3).
const slotBatches = 8

// failure is a batch to retry after the backoff.
type failure struct {
	err    error
	batch  []*kgo.Record
	resume int64
	// skipped: the failing message was dead-lettered; continue right
	// after it without a backoff.
	skipped bool
}

// consumeHeld runs batches while the caller holds a worker slot: the given
// one, then any batch already due, up to slotBatches. It returns the failure
// to retry, if any.
func (p *Partition) consumeHeld(w Worker, batch []*kgo.Record) *failure {
	for held := 1; ; held++ {
		if f := p.consume(w, batch); f != nil {
			return f
		}
		if held == slotBatches {
			return nil
		}
		if batch = p.due(); batch == nil {
			return nil
		}
	}
}

// due takes the next batch if one is due now, without waiting.
func (p *Partition) due() []*kgo.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != owned {
		return nil
	}
	batch := p.takeLocked(time.Now())
	if batch != nil {
		p.tracker.Start(batch[0].Offset)
	}
	return batch
}

// consume runs one batch and applies its outcome: marks after success (A1),
// or the failure to retry (A5).
func (p *Partition) consume(w Worker, batch []*kgo.Record) *failure {
	attempt := p.failures + 1
	if p.topic.Delivery == AtMostOnce && !p.commitBefore(batch) {
		return &failure{err: errors.New("at-most-once: committing before processing failed"), batch: batch, resume: batch[0].Offset}
	}
	began := p.g.started()
	err := guard(func() error { return w.Consume(p.ctx, batch, attempt) })
	p.consumed(batch, attempt, began, err)
	if errors.Is(err, ErrNotOwned) {
		p.log.Warn("ferry: another member owns the partition now; it is dropped until it is assigned again", "err", err)
		p.setFailed()
		return nil
	}
	if err == nil || p.topic.Delivery == AtMostOnce {
		if err != nil {
			// S1: the offsets are already committed; the rest of the
			// batch is skipped, never redelivered.
			p.log.Error("ferry: consume failed; at-most-once skips the rest of the batch",
				append([]any{"first_offset", batch[0].Offset, "last_offset", batch[len(batch)-1].Offset}, errAttrs(err)...)...)
		}
		p.setFailures(0)
		if !p.topic.Manual {
			p.Mark(batch[len(batch)-1], "") // A1; refused if the partition was lost
		}
		p.maybeEOF(w)
		return nil
	}
	failed := p.failedRecord(batch, err)
	resume := p.resume()
	if failed != nil && failed.Offset == resume && p.topic.DeadLetterRecord != nil &&
		p.topic.MaxRetries >= 0 && attempt > p.topic.MaxRetries {
		if p.deadLetter(failed, err, attempt) {
			return &failure{err: err, batch: batch, resume: failed.Offset + 1, skipped: true}
		}
	}
	return &failure{err: err, batch: batch, resume: resume}
}

// namedIndex returns the index in batch of the message a *MessageError in
// err names, or -1.
func namedIndex(batch []*kgo.Record, err error) int {
	var me *MessageError
	if errors.As(err, &me) && me.Message != nil {
		for i, r := range batch {
			if r == me.Message || r.Offset == me.Message.Offset {
				return i
			}
		}
	}
	return -1
}

// failedRecord finds the message a failed batch is blamed on: the one a
// *MessageError names (the messages before it are marked as processed), else
// the first unmarked message, if it is in the batch.
func (p *Partition) failedRecord(batch []*kgo.Record, err error) *kgo.Record {
	if i := namedIndex(batch, err); i >= 0 {
		if i > 0 {
			p.Mark(batch[i-1], "")
		}
		return batch[i]
	}
	resume := p.resume()
	for _, r := range batch {
		if r.Offset == resume {
			return r
		}
	}
	return nil
}

// deadLetter dispatches a message that failed for good and marks it (E1).
// A failed dispatch leaves it unmarked, to be retried (E4).
func (p *Partition) deadLetter(r *kgo.Record, cause error, attempts int) bool {
	if !p.sendDeadLetter(r, cause, attempts) {
		return false
	}
	p.Mark(r, "")
	return true
}

// sendDeadLetter dispatches a message that failed for good, without marking
// it. It reports whether the dead-letter topic has it.
func (p *Partition) sendDeadLetter(r *kgo.Record, cause error, attempts int) bool {
	if err := p.dispatch(p.ctx, r, cause, attempts); err != nil {
		p.log.Error("ferry: dead-letter dispatch failed; the message stays unmarked and is retried",
			"offset", r.Offset, "dead_letter_topic", p.topic.DeadLetterTopic, "err", err)
		return false
	}
	p.deadLettered(r, cause, attempts)
	p.log.Warn("ferry: message dead-lettered after its last attempt",
		append([]any{"offset", r.Offset, "attempts", attempts, "dead_letter_topic", p.topic.DeadLetterTopic}, errAttrs(cause)...)...)
	return true
}

// DeadLetter sends r to the topic's dead-letter topic on the consumer's
// behalf (E2). It does not mark r.
func (p *Partition) DeadLetter(ctx context.Context, r *kgo.Record, cause error) error {
	if p.topic.DeadLetterRecord == nil {
		return ErrNoDeadLetter
	}
	if err := p.dispatch(ctx, r, cause, p.failures+1); err != nil {
		return err
	}
	p.deadLettered(r, cause, p.failures+1)
	return nil
}

// dispatch produces the dead letter for r and waits for it: inside the
// transaction in an exactly-once group (E1), else through the app's producer.
//
// A dead letter larger than the dead-letter topic accepts can never be
// produced as it is (E5): ferry then parks a reference to the message — the
// dead letter without its value, or if that is still too large, ferry's
// headers alone — with HeaderOmitted saying what was left out. The message
// itself stays in its topic at the offset the headers name.
func (p *Partition) dispatch(ctx context.Context, r *kgo.Record, cause error, attempts int) error {
	out := p.topic.DeadLetterRecord(r, cause, attempts)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := p.produceOne(ctx, out)
	if !errors.Is(err, ErrMessageTooLarge) {
		return err
	}
	p.log.Error("ferry: dead letter larger than its topic accepts; parking a reference to the message, without its value",
		"offset", r.Offset, "dead_letter_topic", out.Topic, "err", err)
	ref := *out
	ref.Value = nil
	ref.Headers = append(append([]kgo.RecordHeader(nil), out.Headers...),
		kgo.RecordHeader{Key: HeaderOmitted, Value: []byte(fmt.Sprintf("value (%d bytes)", len(r.Value)))})
	if err = p.produceOne(ctx, &ref); !errors.Is(err, ErrMessageTooLarge) {
		return err
	}
	ref.Key = nil
	ref.Headers = append(ownHeaders(out.Headers, len(r.Headers)),
		kgo.RecordHeader{Key: HeaderOmitted, Value: []byte(fmt.Sprintf("key (%d bytes), value (%d bytes), headers (%d)", len(r.Key), len(r.Value), len(r.Headers)))})
	return p.produceOne(ctx, &ref)
}

// HeaderOmitted is the header of a dead letter that had to leave parts of
// the message out to fit its topic (E5): it says which, and their sizes.
const HeaderOmitted = "ferry-omitted"

// ownHeaders returns the headers ferry added to a dead letter: those after
// the original message's n headers.
func ownHeaders(h []kgo.RecordHeader, n int) []kgo.RecordHeader {
	if n > len(h) {
		n = len(h)
	}
	return append([]kgo.RecordHeader(nil), h[n:]...)
}

// produceOne writes one record and waits: inside the transaction in an
// exactly-once group, else through the app's producer.
func (p *Partition) produceOne(ctx context.Context, r *kgo.Record) error {
	if p.g.eos {
		return p.g.limits.ProduceSync(ctx, p.g.cl, r)
	}
	return p.g.cfg.Produce(ctx, r)
}

// Produce writes records for the consumer: in an exactly-once group into
// the round's transaction without waiting (the round flushes them before it
// commits, and they become visible only if it does), else through the app's
// producer, waiting for the acks.
func (p *Partition) Produce(ctx context.Context, recs ...*kgo.Record) error {
	if p.g.eos {
		if !p.Owned() {
			return errors.New("ferry: partition no longer owned; its transaction aborts")
		}
		return p.g.produceTxn(ctx, recs...)
	}
	return p.g.cfg.Produce(ctx, recs...)
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

// retryLater handles a failed batch (A5): the partition stops fetching,
// forgets what it queued, seeks back to the first unmarked offset and waits
// out the backoff before fetching again.
func (p *Partition) retryLater(f *failure) {
	var delay time.Duration
	if f.skipped {
		p.setFailures(0)
	} else {
		p.setFailures(p.failures + 1)
		delay = p.topic.Backoff(p.failures)
	}
	p.mu.Lock()
	p.clearQueueLocked()
	p.pausedRetry = delay > 0
	p.syncPauseLocked()
	if p.state == owned {
		p.seek = f.resume
	}
	p.mu.Unlock()
	p.g.wantSeek()
	if f.skipped {
		return
	}
	p.log.Error("ferry: consume failed; retrying after backoff",
		append([]any{"attempt", p.failures, "first_offset", f.batch[0].Offset, "last_offset", f.batch[len(f.batch)-1].Offset,
			"resume_offset", f.resume, "backoff", delay}, errAttrs(f.err)...)...)
	p.retryScheduled(f.resume, delay)
	p.pausedForRetry()

	p.waitBackoff(delay)
}

// waitBackoff waits out a retry backoff (or the partition stopping), then
// lets the partition fetch again.
func (p *Partition) waitBackoff(delay time.Duration) {
	select {
	case <-p.g.clock.After(delay):
	case <-p.stop:
	}
	p.mu.Lock()
	p.pausedRetry = false
	p.syncPauseLocked()
	p.mu.Unlock()
	p.resumedAfterRetry()
}

// maybeEOF runs the EOF hook once each time the partition is caught up and
// everything fetched was processed.
func (p *Partition) maybeEOF(w Worker) {
	p.mu.Lock()
	due := p.caughtUp && p.queued == 0 && !p.eofSent && p.state == owned
	if due {
		p.eofSent = true
	}
	p.mu.Unlock()
	if due {
		if err := guard(func() error { return w.EOF(p.ctx) }); err != nil {
			p.log.Error("ferry: EOF hook failed", "err", err)
		}
	}
}

// PanicError is a recovered panic with the stack where it happened (A6).
// Its message is the panic's value only: the stack goes to the log (see
// errAttrs), not into dead-letter headers.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// errAttrs returns the log attributes of a consumer's error: the error, and
// the stack when it is (or wraps) a recovered panic (A6).
func errAttrs(err error) []any {
	attrs := []any{"err", err}
	var pe *PanicError
	if errors.As(err, &pe) {
		attrs = append(attrs, "stack", string(pe.Stack))
	}
	return attrs
}

// guard runs fn, turning a panic into a *PanicError.
func guard(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fn()
}

// detachQueued copies the records queued — unless the partition is paused
// for being full — out of their fetches (see detach), so the fetches can be
// freed while the records wait. The poll loop calls it before polling for a
// slow consumer, whose few leftover records would otherwise keep the
// previous fetch alive next to the new one.
func (p *Partition) detachQueued() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pausedFull {
		return
	}
	for i := range p.chunks {
		if c := &p.chunks[i]; !c.detached {
			c.recs, c.detached = detach(c.recs), true
		}
	}
}

// detach copies records — with their keys, values and headers — out of
// the memory of the fetch they came in: kgo decodes a fetch's records into
// one array and slices their keys and values out of the fetch's buffers, so
// a few records kept would keep the whole fetch alive.
func detach(recs []*kgo.Record) []*kgo.Record {
	size := 0
	for _, r := range recs {
		size += len(r.Key) + len(r.Value)
		for _, h := range r.Headers {
			size += len(h.Value)
		}
	}
	buf := make([]byte, 0, size)
	clip := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		buf = append(buf, b...)
		return buf[len(buf)-len(b) : len(buf) : len(buf)]
	}
	copies := make([]kgo.Record, len(recs))
	out := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		c := &copies[i]
		*c = *r
		c.Key, c.Value = clip(r.Key), clip(r.Value)
		if len(r.Headers) > 0 {
			c.Headers = make([]kgo.RecordHeader, len(r.Headers))
			for j, h := range r.Headers {
				c.Headers[j] = kgo.RecordHeader{Key: h.Key, Value: clip(h.Value)}
			}
		}
		out[i] = c
	}
	return out
}
