package ferry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ferrykit/ferry/event"
	"github.com/ferrykit/ferry/internal/security"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
)

// ErrInvalidConfig is wrapped by every configuration error New returns (O2).
var ErrInvalidConfig = errors.New("ferry: invalid configuration")

// Option configures an App.
type Option func(*config)

// TopicOption configures one routed topic.
type TopicOption func(*topicConfig)

// Delivery is a topic's delivery guarantee (contract S1–S3, docs/CONTRACT.md).
type Delivery int

const (
	// AtLeastOnce processes, then commits: nothing is lost, a crash may
	// redeliver what was processed but not yet committed (S2). Default.
	AtLeastOnce Delivery = iota
	// AtMostOnce commits each batch before processing it: nothing is
	// redelivered, a crash or error loses the rest of that batch (S1).
	AtMostOnce
	// AtMostOncePerMessage is AtMostOnce one message at a time: each
	// message's offset is committed before it is processed, so a crash
	// loses at most the message in hand. It costs one synchronous commit
	// round trip per message (typically a few hundred to a few thousand
	// messages per second per partition); MaxMessages is ignored.
	AtMostOncePerMessage
	// ExactlyOnce commits the outputs a consumer produces through
	// Batch.Produce and the input offsets in one Kafka transaction (S3).
	// It needs TransactionalID, and a consumer group of its own.
	ExactlyOnce
)

func (d Delivery) String() string {
	switch d {
	case AtLeastOnce:
		return "at-least-once"
	case AtMostOnce:
		return "at-most-once"
	case AtMostOncePerMessage:
		return "at-most-once per message"
	case ExactlyOnce:
		return "exactly-once"
	}
	return fmt.Sprintf("Delivery(%d)", int(d))
}

// StartOffset is where a partition without a committed offset starts (B6).
type StartOffset int

const (
	// Earliest starts at the oldest retained message. Default.
	Earliest StartOffset = iota
	// Latest starts after the newest message at assignment time.
	Latest
)

// Clock is the time source for commit intervals and retry backoff; tests
// inject a fake one. It defaults to the real clock.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

type config struct {
	brokers         []string
	clientID        string
	logger          *slog.Logger
	concurrency     int
	commitInterval  time.Duration
	shutdownTimeout time.Duration
	connectTimeout  time.Duration
	clock           Clock
	clientOpts      []kgo.Opt
	onEvent         []func(event.Event)
	stallTimeout    time.Duration
	failingTimeout  time.Duration
	consumeStall    time.Duration
	tls             *tls.Config    // nil: plaintext
	tlsErr          error          // from the environment or TLSFiles
	sasl            sasl.Mechanism // nil: no authentication
	saslErr         error
	transactionalID string
	routes          []route
	errs            []error
}

type route struct {
	group, topic string
	newConsumer  NewConsumer
	cfg          topicConfig
}

type topicConfig struct {
	maxMessages   int
	maxWait       time.Duration
	start         StartOffset
	delivery      Delivery
	manualOffsets bool
	backoff       Backoff
	queueBytes    int
	deadLetter    string
	maxRetries    int
	maxRetriesSet bool
	middleware    []Middleware
	txnBatches    int
	txnBatchesSet bool
	txnInterval   time.Duration
	parallel      int
	parallelSet   bool
	order         []Order
	startOffsets  func(ctx context.Context, topic string, committed map[int32]int64) (map[int32]int64, error)
}

func defaultConfig() config {
	var brokers []string
	if env := os.Getenv("FERRY_BROKERS"); env != "" {
		for _, b := range strings.Split(env, ",") {
			if b = strings.TrimSpace(b); b != "" {
				brokers = append(brokers, b)
			}
		}
	}
	tlsCfg, tlsErr := security.TLSFromEnv(os.Getenv)
	mech, saslErr := security.SASLFromEnv(os.Getenv)
	return config{
		brokers:         brokers,
		tls:             tlsCfg,
		tlsErr:          tlsErr,
		sasl:            mech,
		saslErr:         saslErr,
		clientID:        "ferry",
		logger:          slog.Default(),
		concurrency:     5,
		commitInterval:  5 * time.Second,
		shutdownTimeout: 60 * time.Second,
		connectTimeout:  10 * time.Second,
		clock:           realClock{},
		stallTimeout:    time.Minute,
		failingTimeout:  5 * time.Minute,
		consumeStall:    5 * time.Minute,
	}
}

func defaultTopicConfig() topicConfig {
	return topicConfig{
		maxMessages: 100,
		maxWait:     time.Second,
		backoff:     ExponentialBackoff(time.Second, 30*time.Second),
		queueBytes:  32 << 20,
		txnInterval: DefaultTransactionInterval,
	}
}

// Brokers sets the seed brokers ("host:port"). Default: the comma-separated
// FERRY_BROKERS environment variable; with neither, or with an empty
// address among them, New fails with ErrInvalidConfig.
func Brokers(addrs ...string) Option {
	return func(c *config) { c.brokers = addrs }
}

// ClientID sets the Kafka client id. Default "ferry".
func ClientID(id string) Option {
	return func(c *config) { c.clientID = id }
}

// Logger sets the logger. Default slog.Default().
func Logger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// Concurrency sets how many partitions process at once across all groups
// of the app (B3), each holding one worker slot while it runs: a batch at
// a time, or with Parallel(n) up to n messages within its slot. Default 5.
// Order within a partition is kept whatever the value (B2).
func Concurrency(n int) Option {
	return func(c *config) { c.concurrency = n }
}

// CommitInterval sets how often marked offsets are committed, in one request
// per group (A2). Default 5 s. Revocation and shutdown commit at once
// whatever the interval.
func CommitInterval(d time.Duration) Option {
	return func(c *config) { c.commitInterval = d }
}

// ShutdownTimeout bounds a graceful shutdown (A4). Past it Run returns an
// error wrapping ErrShutdownTimeout; the batches that finished are still
// committed, the ones that did not finish never are.
// Default 60 s.
func ShutdownTimeout(d time.Duration) Option {
	return func(c *config) { c.shutdownTimeout = d }
}

// ConnectTimeout bounds how long Run waits for a first broker answer before
// failing with ErrUnreachable (O1). Default 10 s. Refused connections — a
// broker that is not up yet — are retried until then; brokers that refuse
// the app's credentials, certificates or ACLs fail Run at once with
// ErrAuthentication, ErrTLS or ErrNotAuthorized (T2, T3).
func ConnectTimeout(d time.Duration) Option {
	return func(c *config) { c.connectTimeout = d }
}

// WithClock sets the clock behind commit intervals and retry backoff.
func WithClock(clk Clock) Option {
	return func(c *config) { c.clock = clk }
}

// ClientOptions passes extra franz-go options to every client ferry creates
// (the group consumers and the producers): static membership
// (kgo.InstanceID), the KIP-848 group protocol (kgo.ServerSideBalancer, with
// a sticky or range balancer in kgo.Balancers), timeouts and fetch sizes
// (ferry asks for fetch responses of at most 5 MiB where kgo asks for
// 50 MiB, which bounds what a consumer holds per broker; kgo.FetchMaxBytes
// here sets another). Default: none. TLS and SASL have options of their
// own (TLS, SASL); a kgo.DialTLSConfig or kgo.SASL given here comes after
// theirs. Options that would break ferry's contract — autocommit, the
// isolation level, the partition callbacks — are overridden by ferry. See
// ExampleClientOptions.
func ClientOptions(opts ...kgo.Opt) Option {
	return func(c *config) { c.clientOpts = append(c.clientOpts, opts...) }
}

// Commit describes one commit request ferry made, for OnCommit: the
// event.Committed event.
type Commit = event.Committed

// OnCommit sets a function told about every commit request, for metrics
// and demos: OnEvent for event.Committed only. It runs on the committing
// goroutine: keep it fast.
func OnCommit(fn func(Commit)) Option {
	return func(c *config) {
		if fn == nil {
			c.errs = append(c.errs, errors.New("OnCommit: nil function"))
			return
		}
		c.onEvent = append(c.onEvent, func(e event.Event) {
			if cm, ok := e.(event.Committed); ok {
				fn(cm)
			}
		})
	}
}

// OnEvent subscribes fn to everything the app reports: batches consumed
// and failed, retries, dead letters, commits, rebalances, pauses, fetch
// errors and shutdown — the types of package event (X1). It may be given
// several times; each subscriber sees every event, in the order given.
// fn runs synchronously where the event happens (see package event: an
// App.Pause's Paused event may run on the caller's goroutine), never under
// a lock ferry waits for: keep it fast. Without a subscriber ferry builds
// no events.
func OnEvent(fn func(event.Event)) Option {
	return func(c *config) {
		if fn == nil {
			c.errs = append(c.errs, errors.New("OnEvent: nil function"))
			return
		}
		c.onEvent = append(c.onEvent, fn)
	}
}

// FetchStallTimeout sets how long fetching may go without any answer from
// the brokers before the app reports itself unhealthy (Healthy, /healthz,
// X4). Fetches are answered at least every half second while partitions
// are assigned, even when there is nothing new; partitions that are all
// paused, being revoked (a revocation waits for in-flight batches) or shut
// down, or a poll loop waiting for slow consumers do not count as a stall.
// Default 1 minute.
func FetchStallTimeout(d time.Duration) Option {
	return func(c *config) { c.stallTimeout = d }
}

// FailingTimeout sets how long a partition may keep failing — every
// attempt since then returned an error — before the app reports itself
// unhealthy (X4). A success, or a dead letter that moves the partition
// on, ends the failing. Default 5 minutes.
func FailingTimeout(d time.Duration) Option {
	return func(c *config) { c.failingTimeout = d }
}

// ConsumeStallTimeout sets how long one Consume call may run before the app
// reports itself unhealthy (Healthy, /healthz, X4): a handler that hangs —
// no error, never returns — holds its partition forever while fetching,
// commits and the group all look fine. It counts from the start of the
// running batch; with Parallel, from the start of the oldest message still
// in flight. Set it above the longest batch your consumer can legitimately
// take (retries happen between calls and do not count). Default 5
// minutes; 0 turns the check off, and with it the one clock read per batch
// it costs. PartitionStats.ConsumingSince shows the running call either way
// while it is on.
func ConsumeStallTimeout(d time.Duration) Option {
	return func(c *config) { c.consumeStall = d }
}

// TransactionalID sets the transactional id of exactly-once topics; ferry
// appends the consumer group's name. Keep it stable per instance and unique
// across instances (say, the pod name): a restarted instance with the same
// id fences its predecessor's unfinished transaction at start, before it
// reads its offsets. An instance whose id changed cannot: partitions whose
// offsets the dead transaction holds wait until the broker times it out —
// within the transaction timeout, TransactionInterval plus 10 s by
// default (set another with ClientOptions(kgo.TransactionTimeout(d))), plus
// up to the broker's check interval for timed-out transactions (10 s). A
// transaction that outlives the timeout (a consumer slower than that) is
// aborted by the broker and retried. An instance fenced by another one
// with the same id stops: Run returns the error. Required when any topic
// is ExactlyOnce.
func TransactionalID(id string) Option {
	return func(c *config) { c.transactionalID = id }
}

// TransactionBatches caps how many batches per partition one transaction
// of an ExactlyOnce topic spans: it ends after about n batches per assigned
// partition or when TransactionInterval elapses, whichever comes first.
// Default: no cap (the interval alone decides). With TransactionInterval(0),
// a transaction spans one poll of about n batches per partition (1 if
// unset). Fewer batches per transaction commit more often (slower, less
// latency) and redo less after an abort; see docs/BENCHMARKS.md.
func TransactionBatches(n int) TopicOption {
	return func(t *topicConfig) { t.txnBatches = n; t.txnBatchesSet = true }
}

// DefaultTransactionInterval is how long an exactly-once transaction stays
// open by default: the commit interval Kafka Streams uses under
// exactly-once. Measured in docs/BENCHMARKS.md: with it, consume→produce
// runs at least as fast as at-least-once; with one poll per transaction it
// runs several times slower on a real broker, since each commit writes
// markers and an offset record and waits for them.
const DefaultTransactionInterval = 100 * time.Millisecond

// TransactionInterval keeps each transaction of an ExactlyOnce topic open,
// polling and consuming, for up to d — or until TransactionBatches batches
// per partition, if that is set too. Default DefaultTransactionInterval
// (100 ms). Consumers see a transaction's batches one after another;
// nothing is visible to read_committed readers, nor committed, until it
// ends, so d is added to the latency of outputs (up to d, plus the commit)
// and an abort (an error, a rebalance, a crash) redoes up to d of work.
// TransactionInterval(0) makes every poll its own transaction: lowest
// latency, but a commit per poll, which is slow (see docs/BENCHMARKS.md).
func TransactionInterval(d time.Duration) TopicOption {
	return func(t *topicConfig) { t.txnInterval = d }
}

// Route sends a topic, consumed by a consumer group, to consumers built by
// newConsumer — one per assigned partition (B4).
func Route(group, topic string, newConsumer NewConsumer, opts ...TopicOption) Option {
	return func(c *config) {
		r := route{group: group, topic: topic, newConsumer: newConsumer, cfg: defaultTopicConfig()}
		for i, o := range opts {
			if o == nil {
				c.errs = append(c.errs, fmt.Errorf("route %q/%q: topic option %d is nil", group, topic, i+1))
				continue
			}
			o(&r.cfg)
		}
		c.routes = append(c.routes, r)
	}
}

// RouteFunc routes a topic to a stateless function. It is Route with a
// factory that returns fn for every partition.
func RouteFunc(group, topic string, fn ConsumerFunc, opts ...TopicOption) Option {
	var newConsumer NewConsumer
	if fn != nil {
		newConsumer = func(*Claim) Consumer { return fn }
	}
	return Route(group, topic, newConsumer, opts...)
}

// MaxMessages caps a batch (B1). Default 100.
func MaxMessages(n int) TopicOption {
	return func(t *topicConfig) { t.maxMessages = n }
}

// MaxWait is the longest a message waits for its batch to fill (B1): a batch
// is handed over when MaxMessages are queued, when its oldest message waited
// MaxWait, or at once when the fetch reached the end of the partition.
// Default 1 s.
func MaxWait(d time.Duration) TopicOption {
	return func(t *topicConfig) { t.maxWait = d }
}

// InitialOffset sets where partitions without a committed offset start (B6).
// Default Earliest. Unless the topic has ManualOffsets (or is ExactlyOnce,
// whose offsets travel in transactions), ferry commits that start position
// as soon as the partition is assigned (A8): a restart after a first batch
// that failed resumes there rather than at the newest message again.
func InitialOffset(s StartOffset) TopicOption {
	return func(t *topicConfig) { t.start = s }
}

// WithDelivery sets the topic's delivery guarantee. Default AtLeastOnce.
func WithDelivery(d Delivery) TopicOption {
	return func(t *topicConfig) { t.delivery = d }
}

// ManualOffsets turns off marking after each successful batch (M1): the
// consumer marks through its Claim. Periodic, revocation and shutdown
// commits of its marks still happen. A retry resumes right after the last
// mark (M7).
func ManualOffsets() TopicOption {
	return func(t *topicConfig) { t.manualOffsets = true }
}

// Retry sets the backoff between attempts of a failing partition (A5).
// Default ExponentialBackoff(1 s, 30 s).
func Retry(b Backoff) TopicOption {
	return func(t *topicConfig) { t.backoff = b }
}

// QueueBytes bounds the bytes fetched ahead for one partition; past it
// fetching of that partition pauses until its consumer catches up. Default
// 32 MiB. The fetch that fills the queue is queued whole, so a partition
// holds up to QueueBytes plus one fetch: below 1 MiB, the group fetches at
// most its topics' smallest QueueBytes of a partition at once (kgo's
// FetchMaxPartitionBytes, which ClientOptions may set instead). The app
// also stops polling while the queues of all unpaused partitions of a group
// hold what their consumers drain in about 100 ms (between 1 and 16 MiB;
// 1 MiB for consumers slower than about 50 MB/s), so this bound only bites
// for a partition that is stuck while others flow (B3). Pausing costs a
// refetch and, with an idle broker, up to kgo's FetchMaxWait before the
// partition flows again: a small value cut throughput by 10–20 % in our
// benchmarks.
func QueueBytes(n int) TopicOption {
	return func(t *topicConfig) { t.queueBytes = n }
}

// Order decides which messages of a parallel partition must run one after
// another, in offset order (see Parallel).
type Order struct {
	lane      func(msg *Message) string
	unordered bool
}

var (
	// ByKey runs messages with equal keys one at a time, in offset order
	// (the default). A message with a nil key carries no order: it runs in
	// a lane of its own, concurrently with anything. An empty key is a key
	// like any other.
	ByKey = Order{}
	// Unordered runs every message in a lane of its own: up to n at once
	// whatever their keys.
	Unordered = Order{unordered: true}
)

// ByLane runs messages for which lane returns the same string one at a
// time, in offset order — say, a customer id read from the value. lane runs
// on the partition's goroutine for every message: keep it fast. A panic in
// it puts the message in a lane of its own.
func ByLane(lane func(msg *Message) string) Order {
	return Order{lane: lane}
}

// Parallel processes each partition of the topic concurrently: up to n
// messages of one partition in flight, messages that share a lane — by
// default their key (ByKey) — one at a time in offset order (K1). Pass
// Unordered or ByLane(fn) to group otherwise. Default: off; the partition
// is processed sequentially, one batch at a time.
//
// In parallel mode Consume is called concurrently for one partition: each
// Batch holds consecutive messages of one lane (at most MaxMessages), so
// the Consumer must be safe for concurrent use. Batch.Attempt counts the
// attempts of the batch's first message. The Initialized, EOF, Revoked and
// Shutdown hooks still never run concurrently with Consume. A partition holds one
// worker slot of the app (Concurrency) while it has messages in flight, so
// up to Concurrency × n messages run at once across the app.
//
// Offsets: the committed offset is the lowest offset below which every
// message finished (K2); messages finished above it are recorded in the
// commit's metadata and skipped by the partition's next owner or after a
// restart (K3). A partition stops taking new messages while the oldest
// unfinished one is about 24,000 offsets behind the newest taken, the most
// that record describes within Kafka's 4,096-byte metadata limit (K4); with
// ManualOffsets a mark is per message (K7), so a message never marked holds
// the partition there, and a message marked before it was delivered counts
// as finished and is skipped. A failed message is retried after the topic's
// backoff, holding back its lane only; with a dead-letter topic it goes
// there after MaxRetries and its lane moves on (K5). Messages admitted to
// lanes are bounded per partition by 4 × n messages (at least
// 2 × MaxMessages) and QueueBytes bytes, on top of the QueueBytes queued
// (K8). After a crash, messages that finished but were not yet committed
// are processed again, as in sequential mode — and not necessarily in
// their original order across lanes.
//
// Parallel cannot be combined with AtMostOnce, AtMostOncePerMessage or
// ExactlyOnce; New refuses it (see DESIGN.md).
func Parallel(n int, order ...Order) TopicOption {
	return func(t *topicConfig) { t.parallel, t.order, t.parallelSet = n, order, true }
}

// StartOffsets lets fn choose where newly assigned partitions of the topic
// start, whatever the group committed — for consumers that keep their
// offsets elsewhere, such as in the database they write to (see package
// ferrypg). fn gets the group's committed offset of each newly assigned
// partition (-1 when it has none) and returns the offsets to start from;
// partitions it leaves out, or maps to a negative offset, start as usual
// (the committed offset, else InitialOffset).
//
// fn runs on every assignment, after Kafka's committed offsets are fetched
// and before fetching begins; the partitions' consumers are built only
// after it returned. Its ctx ends when the assignment is revoked. An error
// (or panic) is logged and fn is called again every second until it
// succeeds or the assignment ends; meanwhile the partitions are not
// consumed. Keep it well under the group's rebalance timeout. Default: none.
//
// The chosen offset counts as marked: a retry before the first mark
// resumes there, and the next commit stores it in the group when it is
// ahead of the committed offset, so lag tools see the position at once. A
// chosen offset behind the committed one never moves the group back; its
// committed offset follows once the consumer's marks pass it.
//
// StartOffsets cannot be combined with Parallel: New refuses it.
func StartOffsets(fn func(ctx context.Context, topic string, committed map[int32]int64) (map[int32]int64, error)) TopicOption {
	return func(t *topicConfig) { t.startOffsets = fn }
}

// ConfigError makes New fail with err, wrapped in ErrInvalidConfig along
// with every other configuration problem. Packages that build ferry options
// from settings of their own (ferrypg.Route) report bad settings with it.
func ConfigError(err error) Option {
	return func(c *config) { c.errs = append(c.errs, err) }
}

// validate reports every configuration problem at once (O2).
func (c *config) validate() error {
	errs := append([]error(nil), c.errs...)
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if c.tlsErr != nil {
		bad("TLS: %w", c.tlsErr)
	}
	if c.saslErr != nil {
		bad("SASL: %w", c.saslErr)
	}
	if len(c.brokers) == 0 {
		bad("no brokers: use ferry.Brokers or set FERRY_BROKERS")
	}
	for _, b := range c.brokers {
		if strings.TrimSpace(b) == "" {
			bad("broker address %q: empty (want host:port)", b)
		}
	}
	if c.logger == nil {
		bad("logger is nil")
	}
	if c.clock == nil {
		bad("clock is nil")
	}
	if c.concurrency < 1 {
		bad("concurrency %d: must be at least 1", c.concurrency)
	}
	if c.commitInterval <= 0 {
		bad("commit interval %s: must be positive", c.commitInterval)
	}
	if c.shutdownTimeout <= 0 {
		bad("shutdown timeout %s: must be positive", c.shutdownTimeout)
	}
	if c.connectTimeout <= 0 {
		bad("connect timeout %s: must be positive", c.connectTimeout)
	}
	if c.stallTimeout <= 0 {
		bad("fetch stall timeout %s: must be positive", c.stallTimeout)
	}
	if c.failingTimeout <= 0 {
		bad("failing timeout %s: must be positive", c.failingTimeout)
	}
	if c.consumeStall < 0 {
		bad("consume stall timeout %s: must not be negative (0 turns the check off)", c.consumeStall)
	}
	if len(c.routes) == 0 {
		bad("no routes: use ferry.Route")
	}
	seen := make(map[[2]string]bool)
	for _, r := range c.routes {
		where := fmt.Sprintf("route %q/%q", r.group, r.topic)
		switch {
		case r.group == "":
			bad("%s: empty group name", where)
		case r.topic == "":
			bad("%s: empty topic name", where)
		case topicNameProblem(r.topic) != "":
			bad("%s: illegal topic name: %s", where, topicNameProblem(r.topic))
		case seen[[2]string{r.group, r.topic}]:
			bad("%s: topic routed twice in one group", where)
		}
		seen[[2]string{r.group, r.topic}] = true
		if r.newConsumer == nil {
			bad("%s: no consumer", where)
		}
		t := r.cfg
		if t.maxMessages < 1 {
			bad("%s: MaxMessages %d: must be at least 1", where, t.maxMessages)
		}
		if t.maxWait <= 0 {
			bad("%s: MaxWait %s: must be positive", where, t.maxWait)
		}
		if t.start != Earliest && t.start != Latest {
			bad("%s: unknown initial offset %d", where, t.start)
		}
		switch t.delivery {
		case AtLeastOnce:
		case AtMostOnce, AtMostOncePerMessage:
			if t.manualOffsets {
				bad("%s: at-most-once commits every batch before Consume sees it; ManualOffsets has no effect with it", where)
			}
		case ExactlyOnce:
			if c.transactionalID == "" {
				bad("%s: exactly-once needs ferry.TransactionalID", where)
			}
			if t.txnBatchesSet && t.txnBatches < 1 {
				bad("%s: TransactionBatches %d: must be at least 1", where, t.txnBatches)
			}
			if t.txnInterval < 0 {
				bad("%s: TransactionInterval %s: must not be negative", where, t.txnInterval)
			}
		default:
			bad("%s: unknown delivery %s", where, t.delivery)
		}
		if !t.backoff.valid() {
			bad("%s: invalid backoff %+v: need 0 < Initial <= Max, Multiplier >= 1, 0 <= Jitter <= 1", where, t.backoff)
		}
		if t.queueBytes < 1 {
			bad("%s: QueueBytes %d: must be positive", where, t.queueBytes)
		}
		if t.maxRetriesSet && t.deadLetter == "" {
			bad("%s: MaxRetries needs a DeadLetter topic (without one ferry retries forever)", where)
		}
		if t.maxRetries < 0 {
			bad("%s: MaxRetries %d: must be at least 0", where, t.maxRetries)
		}
		if t.deadLetter != "" && topicNameProblem(t.deadLetter) != "" {
			bad("%s: illegal dead-letter topic name %q: %s", where, t.deadLetter, topicNameProblem(t.deadLetter))
		}
		if t.deadLetter != "" && t.deadLetter == r.topic {
			bad("%s: the dead-letter topic cannot be the topic itself", where)
		}
		if t.parallelSet {
			switch {
			case t.parallel < 1:
				bad("%s: Parallel %d: must be at least 1", where, t.parallel)
			case len(t.order) > 1:
				bad("%s: Parallel takes at most one Order", where)
			case len(t.order) == 1 && t.order[0].unordered && t.order[0].lane != nil:
				bad("%s: an Order is either Unordered or ByLane", where)
			}
			switch t.delivery {
			case AtMostOnce, AtMostOncePerMessage:
				bad("%s: Parallel works with at-least-once delivery only: at-most-once commits each batch before processing it, so there is no out-of-order completion to track", where)
			case ExactlyOnce:
				bad("%s: Parallel works with at-least-once delivery only: one Kafka transaction commits a partition's outputs and offsets together, so one message's failure would abort every other lane's work of that transaction", where)
			}
			if t.startOffsets != nil {
				bad("%s: Parallel cannot be combined with StartOffsets (ferrypg.Route): a parallel partition resumes from the offsets finished out of order that its commit metadata records, which a start chosen elsewhere would ignore; and a database transaction per batch stores a single position", where)
			}
		}
	}
	// An exactly-once group runs in transactions as a whole.
	eos := map[string][2]int{}
	for _, r := range c.routes {
		n := eos[r.group]
		n[0]++
		if r.cfg.delivery == ExactlyOnce {
			n[1]++
		}
		eos[r.group] = n
	}
	for group, n := range eos {
		if n[1] > 0 && n[1] < n[0] {
			bad("group %q mixes exactly-once and other topics: give the exactly-once topics a consumer group of their own", group)
		}
	}
	// ...so its topics must agree on how long a transaction spans.
	span := map[string]topicConfig{}
	for _, r := range c.routes {
		if r.cfg.delivery != ExactlyOnce {
			continue
		}
		if first, ok := span[r.group]; !ok {
			span[r.group] = r.cfg
		} else if first.txnBatches != r.cfg.txnBatches || first.txnInterval != r.cfg.txnInterval {
			bad("group %q: its exactly-once topics share transactions, so they need the same TransactionBatches and TransactionInterval", r.group)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

// maxTopicNameLen is Kafka's limit on a topic name's length.
const maxTopicNameLen = 249

// topicNameProblem says why Kafka would reject name as a topic name, or ""
// when it is legal: 1 to 249 characters among ASCII letters, digits, '.',
// '_' and '-', and neither "." nor "..".
func topicNameProblem(name string) string {
	switch {
	case name == "":
		return "empty"
	case name == "." || name == "..":
		return fmt.Sprintf("%q is reserved", name)
	case len(name) > maxTopicNameLen:
		return fmt.Sprintf("%d characters, the limit is %d", len(name), maxTopicNameLen)
	}
	for _, r := range name {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Sprintf("%q is not allowed (only ASCII letters, digits, '.', '_' and '-')", r)
		}
	}
	return ""
}

// kgoOpts returns the options every client ferry makes starts from: how
// to reach the brokers securely, then the caller's ClientOptions.
func (c *config) kgoOpts() []kgo.Opt {
	opts := security.Settings{TLS: c.tls, SASL: c.sasl}.Opts()
	return append(opts, c.clientOpts...)
}
