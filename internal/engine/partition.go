package engine

// A partition's parts, one file each: queue.go (where a fetched message
// waits), ownership.go (its state machine, and who may mark and commit it),
// book.go (its offsets: a tracker, or a window of finished messages),
// scheduler.go (lanes and units, on slots of the app's worker pool) with its
// two policies, sequential.go (one lane of batches) and parallel.go (lanes
// by key), retry.go (what
// a failed batch does) and txn.go (exactly-once rounds). This file holds the
// Partition itself and its goroutine: build the consumer, run the scheduler
// or the rounds, run the closing hook.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/ferrykit/ferry/event"
	"github.com/twmb/franz-go/pkg/kgo"
)

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
	book        offsetBook // its offsets (book.go), by kind
	committedMD string
	q           queue // fetched records waiting to be admitted (queue.go)
	pausedRetry bool  // fetching paused while waiting to retry
	pausedInKgo bool  // what kgo was last told
	seek        int64 // offset the poll loop must seek to; -1 for none
	readyClosed bool
	stopReason  state
	// lostToCommit: lost because a commit's answer said the member was
	// gone, not through kgo; letGo: kgo revoked or lost it since.
	lostToCommit bool
	letGo        bool
	// start: where a partition with no committed offset starts; -1
	// unknown (A8).
	start int64
	// resync: a restart after lostToCommit; records are refused until
	// the partition is positioned at the group's committed offset.
	resync bool

	ready chan struct{} // closed once committed offsets are known
	wake  chan struct{} // poked when records arrive
	stop  chan struct{} // closed when no new batch may start
	idle  chan struct{} // closed by the worker once it ran its last batch
	hooks chan struct{} // closed by the revoker: the Revoked hook may run
	share roundShare    // exactly-once: its part in the group's rounds (txn.go)
	done  chan struct{} // closed when the worker goroutine exits
	prev  *Partition    // the previous instance of this partition, if still finishing

	// Owned by the worker goroutine.
	failures int

	// news: events that happened under mu, reported once it is released
	// (observe.go); nil unless someone subscribed.
	news []event.Event
	// telling is held by the goroutine reporting news (tell), so that
	// they are reported in the order noted. Never taken under mu.
	telling sync.Mutex

	// Operator control (control.go), under mu: pausedUser holds the
	// partition until resumed (O4); seekReq is a seek waiting for nothing
	// to be in flight (O5). held is either, read without the lock before a
	// batch starts; seekWake ends a retry's backoff for a seek.
	pausedUser bool
	seekReq    *seekRequest
	held       atomic.Bool
	seekWake   chan struct{}

	// For Stats and health (observe.go).
	end          atomic.Int64 // how far the partition can be read, as of the latest fetch; -1 unknown
	processed    atomic.Int64 // the offset after the last processed message; -1 unknown
	failingSince atomic.Int64 // unix nanoseconds of the first failure in a row; 0 when not failing
	busySince    atomic.Int64 // unix nanoseconds the running Consume started; 0 when none (or not timed)
	inFlight     atomic.Int64 // messages handed to Consume and not finished
}

func newPartition(g *group, t *Topic, id int32, prev *Partition) *Partition {
	ctx, cancel := context.WithCancel(context.WithoutCancel(g.runCtx))
	p := &Partition{
		g:        g,
		topic:    t,
		id:       id,
		log:      g.log.With("topic", t.Name, "partition", id),
		ctx:      ctx,
		cancel:   cancel,
		book:     newOffsetBook(t.Parallel > 0),
		q:        newQueue(g, t),
		seek:     -1,
		start:    -1,
		ready:    make(chan struct{}),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		idle:     make(chan struct{}),
		hooks:    make(chan struct{}),
		share:    newRoundShare(),
		done:     make(chan struct{}),
		seekWake: make(chan struct{}, 1),
		prev:     prev,
	}
	p.end.Store(-1)
	p.processed.Store(-1)
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
	if p.g.eos {
		p.runRounds(w)
	} else {
		p.schedule(w)
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

// maybeEOF runs the EOF hook once each time the partition is caught up and
// everything fetched was processed.
func (p *Partition) maybeEOF(w Worker) {
	p.mu.Lock()
	due := p.state == owned && p.q.claimEOF()
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
