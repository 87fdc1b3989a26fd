package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
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

// The fetch-ahead budget bounds the bytes the poll loop lets pile up in the
// queues of partitions that are not paused. Past it the poll loop stops
// polling, and kgo stops fetching after one buffered response: backpressure
// without discarding fetched data. The budget follows how fast the
// consumers drain the queues: what they take in aheadSpan at their recent
// rate, between minAhead and fetchAhead. Consumers that drain less than
// minAhead in slowSpan (about 50 MB/s) are slow, until they drain twice
// that: their budget is minAhead; before each poll the records left of the
// previous one are copied out of their fetch (see detach) and the poll
// waits for the batches in flight that still hold it (waitUnpinned), so
// they hold about what a plain poll loop would — the fetch in hand plus
// kgo's one buffered fetch — not fixed budgets' worth.
const (
	fetchAhead = 16 << 20
	minAhead   = 1 << 20
	aheadSpan  = 100 * time.Millisecond
	slowSpan   = 20 * time.Millisecond
	rateEvery  = 50 * time.Millisecond // how often the drain rate is sampled
	// stallWait: when nothing drained for this long and a partition has
	// run out of records, the poll loop polls even over budget, so a stuck
	// partition's queue never holds up the others (B3); that partition
	// stops fetching once its queue reaches QueueBytes.
	stallWait = 50 * time.Millisecond
)

// fetchMaxBytes is ferry's default for kgo's FetchMaxBytes, the most one
// fetch response from a broker carries (a partition's first record batch
// comes whole even when larger). A consumer holds about two responses per
// broker — the one its consumers work through and the one kgo reads or
// buffers — and a fast consumer's short tails keep the previous one until
// the next arrives (cutLocked), which spares the GC a quarter of its runs:
// smaller responses keep that within the memory a plain poll loop with
// kgo's defaults holds (docs/BENCHMARKS.md, "Memory"). Callers may set
// their own with ClientOptions.
const fetchMaxBytes = 5 << 20

// addAhead counts bytes into or out of the fetch-ahead total.
func (g *group) addAhead(delta int) {
	if n := g.ahead.Add(int64(delta)); delta < 0 && n < g.limit.Load() {
		select {
		case g.room <- struct{}{}:
		default:
		}
	}
}

// drain counts bytes a consumer took from an unpaused queue.
func (g *group) drain(bytes int) {
	g.drained.Add(int64(bytes))
	g.lastDrain.Store(time.Now().UnixNano())
	g.addAhead(-bytes)
}

// budget samples the drain rate and returns the fetch-ahead budget it
// allows. Only the poll loop calls it.
func (g *group) budget(now time.Time) int64 {
	if dt := now.Sub(g.rateAt); dt >= rateEvery {
		d := g.drained.Load()
		inst := float64(d-g.rateBase) / dt.Seconds()
		switch {
		case g.rateAt.IsZero(): // the first sample only starts the clock
		case !g.measured:
			g.rate, g.measured = inst, true
		default:
			g.rate = (g.rate + inst) / 2
		}
		g.rateAt, g.rateBase = now, d
	}
	// Slow below minAhead per slowSpan; fast again only above twice that,
	// so a consumer draining at about the threshold does not switch
	// between the two ways at every sample.
	slow := g.measured && g.rate*slowSpan.Seconds() < minAhead
	if g.slow.Load() {
		slow = g.rate*slowSpan.Seconds() < 2*minAhead
	}
	b := int64(minAhead)
	if !slow {
		b = min(max(int64(g.rate*aheadSpan.Seconds()), minAhead), fetchAhead)
	}
	g.limit.Store(b)
	g.slow.Store(slow)
	return b
}

// pinWait bounds how long a slow consumer's poll waits for the batches
// that hold the previous poll's fetches (waitUnpinned).
const pinWait = 100 * time.Millisecond

// pin notes that a batch handed to a consumer holds records still in the
// memory of poll gen's fetches (0: it holds copies only). It returns gen if
// the consumers are slow and that is the newest poll — the one the poll
// loop may wait for — else 0; pass the result to unpin when the batch is
// done.
func (g *group) pin(gen uint64) uint64 {
	if gen == 0 || !g.slow.Load() {
		return 0
	}
	g.pinMu.Lock()
	defer g.pinMu.Unlock()
	if gen != g.gen {
		return 0
	}
	g.pinned++
	return gen
}

// unpin notes that a batch pin counted has finished.
func (g *group) unpin(gen uint64) {
	if gen == 0 {
		return
	}
	g.pinMu.Lock()
	defer g.pinMu.Unlock()
	if gen == g.gen {
		if g.pinned--; g.pinned == 0 {
			select {
			case g.room <- struct{}{}:
			default:
			}
		}
	}
}

// nextGen starts the next poll's generation: batches holding the fetches
// of earlier polls no longer count. Only the poll loop calls it.
func (g *group) nextGen() {
	g.pinMu.Lock()
	g.gen++
	g.pinned = 0
	g.pinMu.Unlock()
}

// waitUnpinned holds a slow consumer's next poll until the batches in
// flight that hold records of the previous poll's fetches have finished
// (the records still queued were copied out of them: detachQueued). Then
// those fetches are freed before kgo reads the next one, which it starts as
// soon as the poll took the one it buffered: otherwise three fetches would
// be in memory at once — the one pinned, the one polled and the one kgo
// reads — where a plain poll loop has two. It waits at most what the
// records queued take to drain at the measured rate (pinBound), so the
// consumers do not run dry meanwhile, nor a stuck batch holds the others up
// (B3); seeks are applied meanwhile. It reports false when ctx ended.
func (g *group) waitUnpinned(ctx context.Context, wait time.Duration) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		g.pinMu.Lock()
		pinned := g.pinned
		g.pinMu.Unlock()
		if pinned <= 0 || wait <= 0 {
			return true
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		}
		select {
		case <-ctx.Done():
			return false
		case <-g.room:
		case <-timer.C:
			return true
		case <-g.seekCh:
			g.applySeeks()
		}
	}
}

// pinBound is how long the next poll may wait for pinned batches: what
// the records queued take to drain at the measured rate, at most pinWait.
func (g *group) pinBound() time.Duration {
	if g.rate <= 0 {
		return 0
	}
	return min(pinWait, time.Duration(float64(max(g.ahead.Load(), 0))/g.rate*float64(time.Second)))
}

// waitForRoom blocks the poll loop while more than the budget is queued,
// applying seeks meanwhile — unless a partition starves behind a queue that
// does not drain (stallWait). It reports false when ctx ended.
func (g *group) waitForRoom(ctx context.Context) bool {
	var stall *time.Timer
	defer func() {
		if stall != nil {
			stall.Stop()
		}
	}()
	for {
		now := time.Now()
		if g.ahead.Load() < g.budget(now) {
			return true
		}
		g.alive() // consumers are the bottleneck, not fetching
		idle := now.Sub(time.Unix(0, g.lastDrain.Load()))
		if idle >= stallWait && g.starving() {
			return true
		}
		wait := max(stallWait-idle, time.Millisecond)
		if stall == nil {
			stall = time.NewTimer(wait)
		} else {
			stall.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return false
		case <-g.room:
		case <-stall.C:
		case <-g.seekCh:
			g.applySeeks()
		}
	}
}

// starving reports whether an owned, fetching partition has less than a
// batch queued while its fetches have not reached the end of it.
func (g *group) starving() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, p := range g.parts {
		p.mu.Lock()
		s := p.state == owned && !p.pausedInKgo && !p.caughtUp && p.queued < p.topic.MaxMessages
		p.mu.Unlock()
		if s {
			return true
		}
	}
	return false
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
	// ferry's defaults, then the caller's options, then ferry's own, which
	// its guarantees rest on and which therefore win.
	opts := []kgo.Opt{
		kgo.WithLogger(newKgoLogger(g.log, cfg.Name)),
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
	if b := minQueueBytes(cfg.Topics); b < 1<<20 {
		opts = append(opts, kgo.FetchMaxPartitionBytes(int32(b)))
	}
	if cfg.Txn != nil {
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
		opts = append(opts, kgo.TransactionTimeout(DefaultTransactionTimeout+cfg.Txn.Interval))
	}
	opts = append(opts, cfg.ClientOpts...)
	opts = append(opts,
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.ConsumerGroup(cfg.Name),
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
	if cfg.Txn == nil {
		// An exactly-once member subscribes only after fencing its
		// predecessor (fence).
		opts = append(opts, kgo.ConsumeTopics(topics...))
	}
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

// pollLoop fetches and fills partition queues until ctx is cancelled, or
// until an ACL denies the group or a topic (T3). It is also the only
// goroutine that seeks, so no record fetched before a seek can slip past it.
func (g *group) pollLoop(ctx context.Context) error {
	for {
		g.applySeeks()
		if !g.waitForRoom(ctx) {
			return nil
		}
		if g.slow.Load() {
			// A slow consumer: what is left of the previous fetch
			// (under the budget) is copied so that fetch can go once
			// the batches in flight that hold it finish.
			if g.ahead.Load() > 0 {
				g.mu.RLock()
				for _, p := range g.parts {
					p.detachQueued()
				}
				g.mu.RUnlock()
			}
			if !g.waitUnpinned(ctx, g.pinBound()) {
				return nil
			}
		}
		pctx, cancel := context.WithCancel(ctx)
		g.pollMu.Lock()
		g.pollCancel = cancel
		if g.seekWanted {
			cancel()
		}
		g.pollMu.Unlock()

		fetches := g.cl.PollRecords(pctx, 0)

		g.pollMu.Lock()
		g.pollCancel = nil
		g.pollMu.Unlock()
		cancel()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		g.nextGen() // what this poll pushes
		if err := g.logFetchErrors(fetches); err != nil {
			return err
		}
		if onlyErrors(fetches) {
			select {
			case <-ctx.Done():
			case <-time.After(errorPause):
			}
		}
		now := time.Now()
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			p := g.partition(fp.Topic, fp.Partition)
			if p == nil {
				return
			}
			if len(fp.Records) == 0 {
				p.end.Store(endOf(fp)) // lag (X2)
				return
			}
			if p.keptAfterLoss() {
				g.restartKept(p)
				return
			}
			p.push(fp.Records, endOf(fp), now)
		})
	}
}

// wantSeek wakes the poll loop so it applies pending seeks.
func (g *group) wantSeek() {
	g.pollMu.Lock()
	g.seekWanted = true
	if g.pollCancel != nil {
		g.pollCancel()
	}
	g.pollMu.Unlock()
	select {
	case g.seekCh <- struct{}{}:
	default:
	}
}

// applySeeks moves kgo's fetch position of every partition that asked for it.
// kgo ignores partitions it no longer consumes, so a seek racing a
// revocation is harmless.
func (g *group) applySeeks() {
	g.pollMu.Lock()
	wanted := g.seekWanted
	g.seekWanted = false
	g.pollMu.Unlock()
	if !wanted {
		return
	}
	set := make(map[string]map[int32]kgo.EpochOffset)
	g.mu.RLock()
	for _, p := range g.parts {
		p.mu.Lock()
		if p.seek >= 0 && p.state == owned {
			seekTo(set, p, kgo.EpochOffset{Epoch: -1, Offset: p.seek})
		}
		p.seek = -1
		p.mu.Unlock()
	}
	g.mu.RUnlock()
	if len(set) > 0 {
		g.cl.SetOffsets(set)
	}
}

// seekTo adds p's new fetch position to set, an argument for SetOffsets.
func seekTo(set map[string]map[int32]kgo.EpochOffset, p *Partition, to kgo.EpochOffset) {
	if set[p.topic.Name] == nil {
		set[p.topic.Name] = make(map[int32]kgo.EpochOffset)
	}
	set[p.topic.Name][p.id] = to
}

func (g *group) topic(name string) *Topic { return g.cfg.Topics[name] }

// partition returns the current instance of a partition, or nil.
func (g *group) partition(topic string, id int32) *Partition {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.parts[tp{topic, id}]
}

// onAssigned starts a partition goroutine per newly assigned partition. A
// partition lost earlier and still finishing is waited for by its successor.
func (g *group) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	g.rebalanceMu.Lock()
	defer g.rebalanceMu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shutting {
		return
	}
	for topic, ids := range assigned {
		t := g.topic(topic)
		if t == nil {
			continue
		}
		for _, id := range ids {
			k := tp{topic, id}
			prev := g.parts[k]
			if prev != nil && prev.Owned() {
				continue // already ours
			}
			p := newPartition(g, t, id, prev)
			g.parts[k] = p
			g.workers.Add(1)
			go func() {
				defer g.workers.Done()
				p.run()
			}()
		}
	}
	g.log.Info("ferry: partitions assigned", "assigned", partitionList(assigned))
	// kgo calls this after every join, also one that assigned nothing
	// new: a partition dropped after a refused commit and not revoked
	// since is still assigned, and is consumed again now from the
	// committed offset — not when its next records come (A7).
	for _, p := range g.parts {
		g.restartKeptLocked(p)
	}
}

// restartKept gives a new instance to a partition dropped after a refused
// commit that kgo kept: kgo rejoined without letting it go, so no
// assignment callback names it. The new instance starts from the group's
// committed offset. The assignment callback that ends kgo's rejoin does
// this at once (onAssigned); the poll loop, when the partition's records
// come first, too. It gives up when a rebalance is in progress; that
// rebalance's assignment, or the next fetch of the partition, tries again.
func (g *group) restartKept(old *Partition) {
	if !g.rebalanceMu.TryLock() {
		return
	}
	defer g.rebalanceMu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.restartKeptLocked(old)
}

// restartKeptLocked is restartKept with rebalanceMu and mu held.
func (g *group) restartKeptLocked(old *Partition) {
	k := tp{old.topic.Name, old.id}
	if g.shutting || g.parts[k] != old || !old.keptAfterLoss() {
		return
	}
	p := newPartition(g, old.topic, old.id, old)
	p.resync = true
	g.parts[k] = p
	g.workers.Add(1)
	go func() {
		defer g.workers.Done()
		p.run()
	}()
	g.log.Info("ferry: partition consumed again after a refused commit", "topic", k.topic, "partition", k.partition)
}

// onFetched learns the committed offset and metadata of each newly assigned
// partition (M8) before its consumer is built. A partition the group has no
// committed offset for starts from a reset position, which ferry looks up
// itself, starts kgo at (adjustOffsets) and commits at once (A8).
func (g *group) onFetched(ctx context.Context, cl *kgo.Client, resp *kmsg.OffsetFetchResponse) error {
	type fetched struct {
		p        *Partition
		offset   int64
		epoch    int32
		metadata *string
	}
	var all []fetched
	unset := make(map[string][]*Partition) // topic → partitions with no committed offset
	learn := func(topic string, partition int32, offset int64, epoch int32, metadata *string) {
		p := g.partition(topic, partition)
		if p == nil {
			return
		}
		all = append(all, fetched{p, offset, epoch, metadata})
		if offset < 0 && !g.eos && !p.topic.Manual && p.topic.StartOffsets == nil {
			// Exactly-once groups commit in transactions only; with
			// manual offsets only the consumer's marks are committed;
			// a StartOffsets function chooses its topic's start.
			unset[topic] = append(unset[topic], p)
		}
	}
	for _, t := range resp.Topics {
		for _, rp := range t.Partitions {
			learn(t.Topic, rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata)
		}
	}
	for _, gr := range resp.Groups {
		for _, t := range gr.Topics {
			for _, rp := range t.Partitions {
				learn(t.Topic, rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata)
			}
		}
	}
	started := g.startPositions(ctx, cl, unset)
	for _, f := range all {
		if f.offset < 0 {
			f.p.learnStart() // A8: its start position, if known, is stored to commit
		} else {
			f.p.learnCommitted(f.offset, f.epoch, f.metadata)
		}
	}
	if started {
		g.commitSoon()
	}
	return nil
}

// startPositions looks up where partitions without a committed offset start
// (B6): the log start for earliest topics, the last stable offset for latest
// ones (what kgo itself would pick, reading committed data only), and
// records it in each partition. It reports whether it found any; a
// partition it cannot look up starts wherever kgo resets it, as before.
func (g *group) startPositions(ctx context.Context, cl *kgo.Client, unset map[string][]*Partition) bool {
	if len(unset) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.ConnectTimeout)
	defer cancel()
	var earliest, latest []string
	for topic := range unset {
		if g.topic(topic).StartLatest {
			latest = append(latest, topic)
		} else {
			earliest = append(earliest, topic)
		}
	}
	adm := kadm.NewClient(cl) // kgo may call back before g.cl is set
	found := false
	for _, q := range []struct {
		topics []string
		list   func(context.Context, ...string) (kadm.ListedOffsets, error)
	}{{earliest, adm.ListStartOffsets}, {latest, adm.ListCommittedOffsets}} {
		if len(q.topics) == 0 {
			continue
		}
		listed, err := q.list(ctx, q.topics...)
		if err != nil {
			g.log.Warn("ferry: cannot look up where new partitions start; their start is committed with their first batch", "topics", q.topics, "err", err)
			continue
		}
		for _, topic := range q.topics {
			for _, p := range unset[topic] {
				if o, ok := listed.Lookup(topic, p.id); ok && o.Err == nil && o.Offset >= 0 {
					p.setStart(o.Offset)
					found = true
				}
			}
		}
	}
	return found
}

// adjustOffsets starts partitions that have no committed offset where
// startPositions found they start — partitions of "latest" topics it could
// not look up start at the end of the partition (B6) — and lets topics with
// a StartOffsets function choose where their partitions start.
func (g *group) adjustOffsets(ctx context.Context, offs map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for topic, parts := range offs {
		t := g.topic(topic)
		if t == nil {
			continue
		}
		var committed map[int32]int64
		if t.StartOffsets != nil {
			committed = make(map[int32]int64, len(parts))
			for id, o := range parts {
				committed[id] = max(o.EpochOffset().Offset, -1)
			}
		}
		for id, o := range parts {
			if o.EpochOffset().Offset >= 0 {
				continue
			}
			if p := g.partition(topic, id); p != nil {
				if at := p.startOffset(); at >= 0 {
					parts[id] = kgo.NewOffset().At(at)
					continue
				}
			}
			if t.StartLatest {
				parts[id] = kgo.NewOffset().AtEnd()
			}
		}
		if t.StartOffsets != nil {
			if err := g.startOffsets(ctx, t, committed, parts); err != nil {
				return nil, err
			}
		}
	}
	return offs, nil
}

// startOffsets asks the topic's StartOffsets function where its newly
// assigned partitions start, retrying every second until it answers or the
// assignment ends, and only then lets their workers be built.
func (g *group) startOffsets(ctx context.Context, t *Topic, committed map[int32]int64, parts map[int32]kgo.Offset) error {
	for {
		var start map[int32]int64
		err := guard(func() (err error) {
			start, err = t.StartOffsets(ctx, committed)
			return err
		})
		if err == nil {
			for id := range parts {
				p := g.partition(t.Name, id)
				off, ok := start[id]
				if ok && off >= 0 {
					parts[id] = kgo.NewOffset().At(off).WithEpoch(-1)
				}
				if p != nil {
					p.startAt(off, ok && off >= 0)
				}
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err() // the assignment ended meanwhile
		}
		g.log.Error("ferry: cannot choose where partitions start; retrying in 1 s", "topic", t.Name, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// onRevoked hands partitions back cleanly (A3): no new batches, in-flight
// batches finish, their marks are committed, the Revoked hooks run (and
// anything they mark is committed), then the partitions are released.
func (g *group) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	g.rebalanceMu.Lock()
	defer g.rebalanceMu.Unlock()
	var ps []*Partition
	g.mu.RLock()
	for topic, ids := range revoked {
		for _, id := range ids {
			if p := g.parts[tp{topic, id}]; p != nil {
				ps = append(ps, p)
			}
		}
	}
	g.mu.RUnlock()
	var leaving, stoppingNow []*Partition
	for _, p := range ps {
		p.mu.Lock()
		p.letGo = true
		switch p.state {
		case owned:
			p.setStateLocked(revoking)
			leaving = append(leaving, p)
		case stopping:
			// Revoked while the app shuts down: its Shutdown hook
			// runs instead of Revoked; still commit before letting go.
			stoppingNow = append(stoppingNow, p)
		}
		p.mu.Unlock()
	}
	if len(leaving)+len(stoppingNow) == 0 {
		return
	}
	for _, p := range leaving {
		<-p.idle
	}
	for _, p := range stoppingNow {
		<-p.done
	}
	g.commitAndLog(ctx, "revocation")
	for _, p := range leaving {
		close(p.hooks)
	}
	for _, p := range leaving {
		<-p.done
	}
	// The partitions are let go as their last commit takes their marks: a
	// mark made from now on — from a goroutine of the consumer's, say —
	// returns false, so every mark that returned true is in it (M2).
	if !g.eos {
		g.retire(slices.Concat(leaving, stoppingNow), released)
	}
	g.commitAndLog(ctx, "revocation hooks", leaving...)
	g.mu.Lock()
	for _, p := range leaving {
		p.mu.Lock()
		if p.state.marksAccepted() { // not retired above: exactly once
			p.state = released
			p.syncPauseLocked()
		}
		p.mu.Unlock()
		k := tp{p.topic.Name, p.id}
		if g.parts[k] == p {
			delete(g.parts, k)
		}
	}
	g.mu.Unlock()
	g.log.Info("ferry: partitions revoked", "revoked", partitionList(revoked))
}

// onLost drops partitions whose assignment was lost (A7): marks are refused
// from now on and nothing is committed for them. In-flight work may finish;
// it is not waited for, so the member can rejoin at once.
func (g *group) onLost(_ context.Context, _ *kgo.Client, lostParts map[string][]int32) {
	g.rebalanceMu.Lock()
	defer g.rebalanceMu.Unlock()
	g.mu.RLock()
	defer g.mu.RUnlock()
	ours := partitionList{} // kgo reports a failed join as a loss of nothing
	for topic, ids := range lostParts {
		for _, id := range ids {
			p := g.parts[tp{topic, id}]
			if p == nil {
				continue
			}
			p.mu.Lock()
			p.letGo = true
			owned := p.state.marksAccepted() // else its loss was logged already
			p.mu.Unlock()
			p.lose()
			if owned {
				ours[topic] = append(ours[topic], id)
			}
		}
	}
	if len(ours) > 0 {
		g.log.Warn("ferry: partitions lost; their uncommitted work will be redelivered", "lost", ours)
	}
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
