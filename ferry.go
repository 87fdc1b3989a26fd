// Package ferry runs Kafka consumers: it turns consumer groups into
// per-partition consumers, hands them batches, and manages offsets so that
// each topic gets the delivery guarantee it was routed with.
//
// # Routing and consumers
//
// An App routes topics, each within a consumer group, to consumers. ferry
// builds one Consumer per assigned partition and calls its Consume method
// with batches of that partition, in offset order, one batch at a time.
// Different partitions run in parallel on a bounded pool of workers
// (Concurrency, default 5). A topic routed with Parallel(n) also runs the
// messages of one partition concurrently, up to n at once, one key at a
// time: its committed offset stops below the oldest unfinished message, and
// what finished above it travels in the commit's metadata so that the next
// owner skips it.
//
//	app, err := ferry.New(
//		ferry.Brokers("127.0.0.1:9092"),
//		ferry.RouteFunc("billing", "invoices", func(ctx context.Context, b *ferry.Batch) error {
//			return store(ctx, b.Messages)
//		}),
//	)
//	if err != nil { ... }
//	err = app.Run(ctx) // returns after a graceful drain once ctx is cancelled
//
// # Delivery modes
//
// At-least-once (the default) processes a batch, then marks its last message
// as consumed; marks are committed every CommitInterval, on revocation and on
// shutdown. Nothing is lost; a crash between processing and the next commit
// redelivers. At-most-once commits each batch before Consume sees it:
// nothing is redelivered, a crash or error loses the rest of the batch.
// Exactly-once commits what the consumer produced through Batch.Produce and
// the batch's offsets in one Kafka transaction: an error, panic, crash or
// rebalance aborts it, and read_committed readers see each output once.
//
// # Offsets
//
// A mark names the next offset to consume. Marks are kept per partition and
// committed only while this member owns the partition: after a revocation
// or a lost assignment, marks return false and are dropped, and a lost
// partition is never committed for. On revocation ferry waits for in-flight
// batches of the revoked partitions, commits their marks synchronously, runs
// the Revoked hooks and only then lets the partitions go, so a clean hand-off
// redelivers nothing.
//
// When Consume fails (or panics), nothing past the last mark is committed;
// the partition pauses, and after a backoff (1 s doubling to 30 s by
// default) it is retried from its first unmarked message. Other partitions
// keep flowing.
//
// With ManualOffsets the consumer marks through its Claim — Karafka's
// mark_as_consumed / mark_as_consumed! / commit_offsets contract; see Claim
// for what each call blocks on and returns.
//
// Offsets may also live outside Kafka: StartOffsets lets a topic choose
// where each assigned partition starts, and a consumer that learns from its
// own store that another member owns its partition returns ErrNotOwned.
// Package ferrypg (a module of its own) builds exactly-once effects in
// PostgreSQL on the two: the consumer's writes and the partition's offset
// commit in one database transaction (S4).
//
// # Operating a running app
//
// Stats, Ready and Healthy report what the app does; OnEvent tells every
// change as it happens. An operator can hold a partition with Pause until
// Resume, and move it with Seek — past a message that never succeeds, or
// back to process messages again; package dashboard puts both behind
// buttons when asked to.
package ferry

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ferrykit/ferry/internal/engine"
)

var (
	// ErrUnreachable is returned by Run when no broker answered within
	// ConnectTimeout (O1); the error says how long Run tried and the last
	// failure.
	ErrUnreachable = engine.ErrUnreachable
	// ErrShutdownTimeout is returned by Run when in-flight work outlived
	// ShutdownTimeout; what did not finish was not committed (A4).
	ErrShutdownTimeout = engine.ErrShutdownTimeout
	// ErrRunning is returned by Run when the App is already running.
	ErrRunning = errors.New("ferry: app already running")
	// ErrNotOwned, returned by Consume (wrapped or not), says another member
	// owns the partition now — something outside Kafka, such as a fencing
	// token in a database, found out before Kafka told this member. ferry
	// drops the partition as if its assignment were lost (A7): no retry,
	// nothing more marked or committed for it, until it is assigned again.
	ErrNotOwned = engine.ErrNotOwned
)

// PanicError is the error a recovered panic in a consumer becomes (A6); it
// carries the stack where the panic happened. Its message is the panic's
// value alone ("panic: ..."), which is what a dead letter's ferry-error
// header holds; ferry logs the stack.
type PanicError = engine.PanicError

// App is a configured set of routes. Create it with New and start it with
// Run.
type App struct {
	cfg      config
	producer *producer
	groups   []*engine.Group
	mu       sync.Mutex
	running  bool
}

// New validates the configuration and returns an App. It connects to
// nothing: every configuration error is reported here, wrapping
// ErrInvalidConfig (O2).
func New(opts ...Option) (*App, error) {
	cfg := defaultConfig()
	for i, o := range opts {
		if o == nil {
			cfg.errs = append(cfg.errs, fmt.Errorf("option %d is nil", i+1))
			continue
		}
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	limits := engine.NewTopicLimits()
	a := &App{cfg: cfg, producer: &producer{brokers: cfg.brokers, opts: cfg.kgoOpts(), limits: limits}}
	slots := make(chan struct{}, cfg.concurrency)
	onEvent := subscribers(cfg.onEvent)
	byName := make(map[string]*engine.Group)
	for _, r := range cfg.routes {
		g := byName[r.group]
		if g == nil {
			g = &engine.Group{
				Name:            r.group,
				Topics:          make(map[string]*engine.Topic),
				Brokers:         cfg.brokers,
				ClientID:        cfg.clientID,
				Logger:          cfg.logger,
				CommitInterval:  cfg.commitInterval,
				ShutdownTimeout: cfg.shutdownTimeout,
				ConnectTimeout:  cfg.connectTimeout,
				Slots:           slots,
				Clock:           cfg.clock,
				ClientOpts:      cfg.kgoOpts(),
				OnEvent:         onEvent,
				TimeConsume:     cfg.consumeStall > 0,
				Produce:         a.producer.produce,
				Limits:          limits,
			}
			if r.cfg.delivery == ExactlyOnce {
				g.Txn = &engine.Txn{ID: cfg.transactionalID + "-" + r.group, Batches: r.cfg.txnBatches, Interval: r.cfg.txnInterval}
			}
			byName[r.group] = g
			a.groups = append(a.groups, g)
		}
		t := r.cfg
		et := &engine.Topic{
			Name:        r.topic,
			NewWorker:   newWorker(r.newConsumer, t.middleware),
			MaxMessages: t.maxMessages,
			MaxWait:     t.maxWait,
			StartLatest: t.start == Latest,
			Manual:      t.manualOffsets,
			Delivery:    delivery(t.delivery),
			Backoff:     t.backoff.Delay,
			QueueBytes:  t.queueBytes,
			MaxRetries:  -1,
		}
		if t.parallel > 0 {
			et.Parallel = t.parallel
			if len(t.order) == 1 {
				et.Lanes = engine.Lanes{Lane: t.order[0].lane, Unordered: t.order[0].unordered}
			}
		}
		if fn := t.startOffsets; fn != nil {
			topic := r.topic
			et.StartOffsets = func(ctx context.Context, committed map[int32]int64) (map[int32]int64, error) {
				return fn(ctx, topic, committed)
			}
		}
		if t.delivery == AtMostOncePerMessage {
			et.MaxMessages = 1
		}
		if t.deadLetter != "" {
			et.DeadLetterRecord = deadLetterRecord(t.deadLetter, cfg.clock)
			et.DeadLetterTopic = t.deadLetter
			et.MaxRetries = 3
			if t.maxRetriesSet {
				et.MaxRetries = t.maxRetries
			}
		}
		g.Topics[r.topic] = et
	}
	return a, nil
}

func delivery(d Delivery) engine.Delivery {
	switch d {
	case AtMostOnce, AtMostOncePerMessage:
		return engine.AtMostOnce
	case ExactlyOnce:
		return engine.ExactlyOnce
	}
	return engine.AtLeastOnce
}

// Run consumes until ctx is cancelled, then shuts down gracefully: fetching
// stops, in-flight batches finish, Shutdown hooks run, one final commit is
// made and the members leave their groups (A4). It returns nil after a clean
// shutdown, an error wrapping ErrShutdownTimeout if draining outlived
// ShutdownTimeout, an error wrapping ErrUnreachable if no broker answered
// (O1), or one wrapping ErrAuthentication, ErrTLS or ErrNotAuthorized if the
// brokers turned the app away (T2, T3). If one group fails, the others are
// stopped too.
func (a *App) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return ErrRunning
	}
	a.running = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.running = false
		a.mu.Unlock()
	}()

	defer a.producer.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(a.groups))
	var wg sync.WaitGroup
	for i, g := range a.groups {
		wg.Go(func() {
			errs[i] = engine.Run(ctx, g)
			if errs[i] != nil {
				cancel() // one group failing stops the app
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
