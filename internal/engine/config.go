// Package engine is ferry's runtime: one kgo client per consumer group, a poll
// loop that fills per-partition queues, one goroutine per assigned partition
// that cuts batches and runs them on a shared worker pool, and the commit
// machinery. The public ferry package adapts its types onto this one.
//
// See DESIGN.md at the repository root for how an offset travels and which
// goroutine owns what.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ferrykit/ferry/event"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Delivery is a topic's delivery mode.
type Delivery int

// Delivery modes. Only AtLeastOnce and AtMostOnce are run by this package so
// far; the ferry package refuses the others at construction.
const (
	AtLeastOnce Delivery = iota
	AtMostOnce
	ExactlyOnce
)

// Worker is what the engine drives for one assigned partition. The ferry
// package builds one per assignment from the user's consumer.
type Worker interface {
	// Consume processes one batch. attempt is 1 on first delivery.
	Consume(ctx context.Context, recs []*kgo.Record, attempt int) error
	// Initialized runs once before the first batch.
	Initialized(ctx context.Context) error
	// Revoked runs after the partition was revoked or lost.
	Revoked(ctx context.Context) error
	// Shutdown runs when the app stops while the partition is owned.
	Shutdown(ctx context.Context) error
	// EOF runs when the partition's end was reached and all of it processed.
	EOF(ctx context.Context) error
}

// NewWorker builds the worker of a freshly assigned partition.
type NewWorker func(p *Partition) Worker

// Topic is the engine's view of one routed topic.
type Topic struct {
	Name        string
	NewWorker   NewWorker
	MaxMessages int
	MaxWait     time.Duration
	StartLatest bool
	Manual      bool
	Delivery    Delivery
	// Backoff returns the wait before retry attempt n+1 after n failures.
	Backoff func(failures int) time.Duration
	// QueueBytes bounds the bytes buffered per partition before fetching
	// of that partition pauses.
	QueueBytes int
	// DeadLetterRecord, if set, builds the record that carries a message
	// which failed for good to the topic's dead-letter topic (named
	// DeadLetterTopic). The engine produces it after MaxRetries retries —
	// inside the transaction under exactly-once — and when a consumer asks.
	DeadLetterRecord func(r *kgo.Record, cause error, attempts int) *kgo.Record
	DeadLetterTopic  string
	// MaxRetries is how many times a failing message is retried before it
	// is dead-lettered; negative retries forever.
	MaxRetries int
	// Parallel, if positive, processes the partition's messages
	// concurrently, up to Parallel in flight, one lane at a time (see
	// scheduler.go). Zero processes the partition sequentially.
	Parallel int
	// Lanes decides which messages must run one after another.
	Lanes Lanes
	// StartOffsets, if set, chooses where newly assigned partitions start.
	// It gets the group's committed offset of each (-1 for none) and
	// returns the offsets to start from instead; partitions it leaves out
	// start as usual. It runs after the committed offsets are fetched and
	// before fetching begins, and the partitions' workers are built only
	// after it succeeded. An error is logged and the call retried every
	// second until it succeeds or the assignment ends.
	StartOffsets func(ctx context.Context, committed map[int32]int64) (map[int32]int64, error)
}

// Lanes decides which messages of a parallel partition must run one after
// another (in one lane, in offset order).
type Lanes struct {
	// Lane names a message's lane. A nil Lane puts messages with equal
	// keys in one lane and gives each message with a nil key a lane of
	// its own.
	Lane func(r *kgo.Record) string
	// Unordered gives every message a lane of its own.
	Unordered bool
}

// MessageError tells ferry which message of a batch failed: the messages
// before it count as processed (they are marked), the retry starts at it,
// and only it goes to the dead-letter topic.
type MessageError struct {
	Message *kgo.Record
	Err     error
}

func (e *MessageError) Error() string {
	return fmt.Sprintf("%s/%d@%d: %v", e.Message.Topic, e.Message.Partition, e.Message.Offset, e.Err)
}

func (e *MessageError) Unwrap() error { return e.Err }

// ErrTransactional is returned by sync commits in an exactly-once group:
// its offsets are committed by its transactions.
var ErrTransactional = errors.New("ferry: offsets of an exactly-once topic are committed by its transactions")

// ErrMarkTooFarAhead refuses a mark, in a parallel partition, of a message
// not delivered yet and further ahead of the oldest unfinished one than the
// commit's record of finished messages can describe (K4, K7).
var ErrMarkTooFarAhead = errors.New("ferry: marked message too far ahead of the oldest unfinished one")

// ErrNotOwned, returned (wrapped) by a worker, says another member owns the
// partition now, as something outside Kafka (a fencing token in a
// database) found out: the partition is dropped as if its assignment were
// lost, without a retry.
var ErrNotOwned = errors.New("ferry: partition owned by another member")

// ErrNoDeadLetter is returned when a message is dead-lettered on a topic
// routed without a dead-letter topic.
var ErrNoDeadLetter = errors.New("ferry: no dead-letter topic configured for this topic")

// Clock is the time source for commit intervals and retry backoff.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// Group is the configuration of one consumer group.
type Group struct {
	Name            string
	Topics          map[string]*Topic
	Brokers         []string
	ClientID        string
	Logger          *slog.Logger
	CommitInterval  time.Duration
	ShutdownTimeout time.Duration
	ConnectTimeout  time.Duration
	// Slots is the worker pool shared by every group of an app: a batch runs
	// only while it holds a slot.
	Slots chan struct{}
	Clock Clock
	// ClientOpts are extra kgo options (TLS, SASL, group protocol…).
	ClientOpts []kgo.Opt
	// OnEvent, if set, is told about every state change and unit of work
	// (X1); nil costs one check per unit of work.
	OnEvent func(event.Event)
	// TimeConsume: note when each batch (unit) starts, so Stats can say
	// since when a Consume call has been running (health, X4). It costs
	// one clock read per batch; without it and without OnEvent, none.
	TimeConsume bool
	// Produce writes records outside transactions (dead letters, and
	// Batch.Produce of non-transactional topics), waiting for the acks. A
	// record too large for its topic fails with ErrMessageTooLarge.
	Produce func(ctx context.Context, recs ...*kgo.Record) error
	// Limits sizes the record batches of the group's transactional
	// producer by each topic's max.message.bytes (E5); nil for none.
	Limits *TopicLimits
	// Txn, if set, makes the group exactly-once: it runs in transactions.
	Txn *Txn

	live atomic.Pointer[group] // the running group, for Stats
}
