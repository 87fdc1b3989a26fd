package engine

// One consumer group: its state, Run (the kgo client, with the options
// ferry's guarantees rest on, then connecting) and run (the group's loops,
// then the graceful shutdown, A4). Its other parts, one file each: ahead.go
// (the fetch-ahead budget), poll.go (the poll loop), assign.go (the
// assignment callbacks), start.go (where new partitions start), commit.go
// (commits), connect.go (connecting), topics.go (the topic watcher) and
// txn.go (the round loop of exactly-once groups).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Sentinel errors the ferry package re-exports.
var (
	// ErrShutdownTimeout: in-flight work did not finish within the
	// shutdown timeout; what did not finish was not committed (A4).
	ErrShutdownTimeout = errors.New("ferry: shutdown timed out")
)

type tp struct {
	topic     string
	partition int32
}

// group runs one consumer group: one kgo client, one poll loop, one commit
// loop and one goroutine per assigned partition.
type group struct {
	cfg    *Group
	log    *slog.Logger
	cl     *kgo.Client               // set once the client exists; kgo's callbacks may run before
	sess   *kgo.GroupTransactSession // exactly-once groups only, set with cl
	eos    bool                      // an exactly-once group: fixed before the client starts
	txn    *txnState
	limits *TopicLimits // topics' max.message.bytes for the transactional producer (E5)
	slots  chan struct{}
	clock  Clock
	runCtx context.Context

	// saslClosed counts connections the brokers closed in answer to SASL
	// authentication: a refusal, for connect to report.
	saslClosed saslClosings

	// rebalanceMu serialises ferry's view of rebalances with shutdown.
	rebalanceMu sync.Mutex

	mu       sync.RWMutex // guards parts and shutting
	parts    map[tp]*Partition
	shutting bool
	workers  sync.WaitGroup // partition goroutines

	commitMu  sync.Mutex    // one commit at a time; revocation commits under it too
	final     map[tp]sent   // under commitMu: what partitions let go (revoked, closed or given up at shutdown) stored, for their last commit
	commitNow chan struct{} // poked by Partition.Commit

	joined    atomic.Bool  // assigned since the last join, for readiness (X4)
	lastAlive atomic.Int64 // unix nanoseconds of the last fetch answered (X4)

	ahead atomic.Int64  // bytes queued in partitions that are not paused
	room  chan struct{} // poked when ahead drops below limit
	limit atomic.Int64  // the fetch-ahead budget now (see budget)

	// The consumers' drain rate, for the fetch-ahead budget: drained and
	// lastDrain are written by partitions, the rest by the poll loop only.
	drained   atomic.Int64 // bytes taken from unpaused queues into batches
	lastDrain atomic.Int64 // when bytes were last drained, Unix nanoseconds
	rate      float64      // bytes per second, smoothed
	measured  bool         // rate has been measured
	slow      atomic.Bool  // the consumers drain less than minAhead in slowSpan
	rateAt    time.Time    // when rate was last sampled
	rateBase  int64        // drained at rateAt

	// Fetch pins, for a slow consumer's poll (see waitUnpinned): gen
	// numbers the polls (written by the poll loop under pinMu); pinned
	// counts the batches in flight that hold records still in the memory
	// of poll gen's fetches.
	pinMu  sync.Mutex
	gen    uint64
	pinned int

	pollMu     sync.Mutex
	pollCancel context.CancelFunc // cancels the poll in progress
	seekWanted bool               // a partition asked the poll loop to seek
	seekCh     chan struct{}      // poked with seekWanted

	fetchLogs logLimit // repeated fetch errors are logged once per interval
}

// topic returns a routed topic's configuration, or nil.
func (g *group) topic(name string) *Topic { return g.cfg.Topics[name] }

// partition returns the current instance of a partition, or nil.
func (g *group) partition(topic string, id int32) *Partition {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.parts[tp{topic, id}]
}

// Run consumes as one member of the group until ctx is cancelled, then shuts
// down gracefully (A4). It returns nil after a clean shutdown.
func Run(ctx context.Context, cfg *Group) error {
	g := &group{
		cfg:       cfg,
		eos:       cfg.Txn != nil,
		txn:       &txnState{},
		limits:    cfg.Limits,
		log:       cfg.Logger.With("group", cfg.Name),
		slots:     cfg.Slots,
		clock:     cfg.Clock,
		runCtx:    ctx,
		parts:     make(map[tp]*Partition),
		commitNow: make(chan struct{}, 1),
		room:      make(chan struct{}, 1),
		seekCh:    make(chan struct{}, 1),
	}
	if g.limits == nil {
		g.limits = NewTopicLimits()
	}
	topics := make([]string, 0, len(cfg.Topics))
	for name := range cfg.Topics {
		topics = append(topics, name)
	}
	opts := g.clientOpts(topics)
	var cl *kgo.Client
	if cfg.Txn != nil {
		// S3: a transactional member; fences its predecessor with the
		// same transactional id, and is fenced itself by KIP-447.
		sess, err := kgo.NewGroupTransactSession(append(opts, kgo.TransactionalID(cfg.Txn.ID))...)
		if err != nil {
			return fmt.Errorf("ferry: group %q: %w", cfg.Name, err)
		}
		g.sess = sess
		cl = sess.Client()
	} else {
		var err error
		if cl, err = kgo.NewClient(opts...); err != nil {
			return fmt.Errorf("ferry: group %q: %w", cfg.Name, err)
		}
	}
	g.cl = cl
	cfg.live.Store(g)
	defer cfg.live.Store(nil)
	if err := g.connect(ctx); err != nil || ctx.Err() != nil {
		cl.Close()
		return err // nil when cancelled while connecting: nothing to drain
	}
	if g.sess != nil {
		if err := g.fence(ctx); err != nil || ctx.Err() != nil {
			cl.Close()
			return err
		}
		cl.AddConsumeTopics(topics...) // joins the group
	}
	return g.run(ctx)
}

// fetchMaxBytes is ferry's default for kgo's FetchMaxBytes, the most one
// fetch response from a broker carries (a partition's first record batch
// comes whole even when larger). A consumer holds about two responses per
// broker — the one its consumers work through and the one kgo reads or
// buffers — and a fast consumer's short tails keep the previous one until
// the next arrives (queue.trimHead), which spares the GC a quarter of its runs:
// smaller responses keep that within the memory a plain poll loop with
// kgo's defaults holds (docs/BENCHMARKS.md, "Memory"). Callers may set
// their own with ClientOptions.
const fetchMaxBytes = 5 << 20

// clientOpts is the kgo client's options: ferry's defaults, then the
// caller's options, then ferry's own, which its guarantees rest on and
// which therefore win.
func (g *group) clientOpts(topics []string) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.WithLogger(newKgoLogger(g.log, g.cfg.Name)),
		// A resumed or newly assigned partition waits for the fetch in
		// flight to its broker; keep that wait short (kgo's default is 5 s).
		kgo.FetchMaxWait(500 * time.Millisecond),
		// Fetch responses of at most fetchMaxBytes (kgo's default is
		// 50 MiB): see fetchMaxBytes.
		kgo.FetchMaxBytes(fetchMaxBytes),
		kgo.WithHooks(&g.saslClosed),
	}
	// K8: a partition's fetching pauses once its queue holds QueueBytes,
	// but the fetch already taken is queued whole: with kgo's 1 MiB per
	// partition it could hold many times a small QueueBytes. Fetching at
	// most QueueBytes of a partition at once keeps the queue within about
	// twice QueueBytes (a caller's FetchMaxPartitionBytes still wins).
	if b := minQueueBytes(g.cfg.Topics); b < 1<<20 {
		opts = append(opts, kgo.FetchMaxPartitionBytes(int32(b)))
	}
	if g.cfg.Txn != nil {
		// Kafka 4's transactions (KIP-890) answer a produce that arrives
		// while the previous transaction's markers are still being
		// written with CONCURRENT_TRANSACTIONS; kgo retries it after a
		// metadata refresh, which its default MetadataMinAge delays by
		// up to 5 s — a whole transaction stalled (measured: one 4.9 s
		// flush in 16 rounds on a busy broker).
		opts = append(opts, kgo.MetadataMinAge(250*time.Millisecond))
		// E5: what the topic accepts, the producer accepts (before
		// ClientOpts, so a user's ProducerBatchMaxBytes wins).
		opts = append(opts, g.limits.ProducerOpt())
		// A transaction runs for its interval, then ends.
		opts = append(opts, kgo.TransactionTimeout(DefaultTransactionTimeout+g.cfg.Txn.Interval))
	}
	opts = append(opts, g.cfg.ClientOpts...)
	opts = append(opts,
		kgo.SeedBrokers(g.cfg.Brokers...),
		kgo.ClientID(g.cfg.ClientID),
		kgo.ConsumerGroup(g.cfg.Name),
		kgo.DisableAutoCommit(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), // B8
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(g.assigned),
		kgo.OnPartitionsRevoked(g.revoked),
		kgo.OnPartitionsLost(g.lost),
		kgo.WithHooks(fetchHook{g}),
		kgo.OnOffsetsFetched(g.onFetched),
		kgo.AdjustFetchOffsetsFn(g.adjustOffsets),
	)
	if g.cfg.Txn == nil {
		// An exactly-once member subscribes only after fencing its
		// predecessor (fence).
		opts = append(opts, kgo.ConsumeTopics(topics...))
	}
	return opts
}

// minQueueBytes is the smallest QueueBytes of the topics (1 MiB if none is
// smaller).
func minQueueBytes(topics map[string]*Topic) int {
	b := 1 << 20
	for _, t := range topics {
		if t.QueueBytes > 0 {
			b = min(b, t.QueueBytes)
		}
	}
	return b
}

// run starts the poll (or round) loop, the commit loop and the topic
// watcher, then shuts the group down gracefully when ctx ends or the poll
// loop stops early (A4).
func (g *group) run(ctx context.Context) error {
	pollCtx, stopPoll := context.WithCancel(context.WithoutCancel(ctx))
	commitStop := make(chan struct{})
	polled := make(chan error, 1) // the poll (or round) loop's end
	go func() {
		if g.eos {
			polled <- g.roundLoop(pollCtx)
		} else {
			polled <- g.pollLoop(pollCtx)
		}
	}()
	var loops sync.WaitGroup
	loops.Add(2)
	go func() { defer loops.Done(); g.commitLoop(commitStop) }()
	go func() { defer loops.Done(); g.watchTopics(pollCtx) }() // B7

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-polled: // a broken transactional producer or a denied ACL ends it early
		g.log.Error("ferry: stopping the group", "err", runErr)
		polled <- nil
	}
	g.log.Info("ferry: shutting down", "timeout", g.cfg.ShutdownTimeout)
	g.joined.Store(false)
	stopBegan := time.Now()
	deadline := stopBegan.Add(g.cfg.ShutdownTimeout)

	// A4: fetching stops (a transaction in progress finishes first),
	// in-flight batches finish, Shutdown hooks run.
	stopPoll()
	select {
	case err := <-polled:
		runErr = errors.Join(runErr, err)
	case <-time.After(time.Until(deadline)):
	}
	g.mu.Lock()
	g.shutting = true
	parts := make([]*Partition, 0, len(g.parts))
	for _, p := range g.parts {
		parts = append(parts, p)
	}
	g.mu.Unlock()
	for _, p := range parts {
		p.mu.Lock()
		if p.state == owned {
			p.setStateLocked(stopping)
		}
		p.mu.Unlock()
	}
	drained := make(chan struct{})
	go func() { g.workers.Wait(); close(drained) }()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-drained:
	case <-timer.C:
		runErr = errors.Join(runErr, g.abandon(parts))
	}

	// One final synchronous commit of everything that finished. The
	// partitions refuse marks from here on, so a mark that returned true
	// — from a goroutine of the consumer's, say — is in it (M2).
	if !g.eos {
		g.retire(parts, closed)
	}
	cctx, cancel := context.WithDeadline(context.Background(), later(deadline, time.Now().Add(5*time.Second)))
	for p, err := range g.commit(cctx, "shutdown", nil) {
		g.log.Error("ferry: final commit failed", "topic", p.topic.Name, "partition", p.id, "err", err)
	}
	cancel()
	for _, p := range parts {
		p.mu.Lock()
		p.state = closed
		p.mu.Unlock()
	}
	close(commitStop)
	loops.Wait()
	if g.sess != nil {
		g.sess.Close()
	} else {
		g.cl.Close() // leaves the group; onRevoked sees only closed partitions
	}
	if runErr == nil {
		g.log.Info("ferry: stopped")
	}
	g.shutDown(stopBegan, runErr)
	return runErr
}

// abandon gives up on partitions whose work outlived the shutdown timeout:
// they refuse marks and their context is cancelled; what their finished
// batches marked is kept for the final commit (A4).
func (g *group) abandon(parts []*Partition) error {
	stuck := partitionList{}
	finished := make(map[tp]sent)
	for _, p := range parts {
		select {
		case <-p.done:
			continue
		default:
		}
		if m, ok := p.abandon(); ok {
			finished[tp{p.topic.Name, p.id}] = sent{p: p, mark: m, final: true}
		}
		stuck[p.topic.Name] = append(stuck[p.topic.Name], p.id)
	}
	g.commitMu.Lock()
	g.final = finished
	g.commitMu.Unlock()
	return fmt.Errorf("%w after %s: still running on %s; their unfinished batches were not committed",
		ErrShutdownTimeout, g.cfg.ShutdownTimeout, stuck)
}

// retire lets partitions go — released after a revocation, closed at
// shutdown: they refuse marks from now on, and what they stored goes into
// the next commit, their last.
func (g *group) retire(parts []*Partition, to state) {
	g.commitMu.Lock()
	defer g.commitMu.Unlock()
	for _, p := range parts {
		if m, ok := p.retire(to); ok {
			if g.final == nil {
				g.final = make(map[tp]sent)
			}
			g.final[tp{p.topic.Name, p.id}] = sent{p: p, mark: m, final: true}
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
