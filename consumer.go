package ferry

import (
	"context"
	"log/slog"

	"github.com/ferrykit/ferry/internal/engine"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Message is one Kafka record as ferry delivers it (B5): Topic, Partition,
// Offset, Key, Value (nil for a tombstone, empty but non-nil when empty),
// Headers (repeated keys kept, in order), Timestamp and LeaderEpoch. It is
// franz-go's record, handed over without copying.
type Message = kgo.Record

// Header is a message header.
type Header = kgo.RecordHeader

// Consumer processes batches of one topic-partition. ferry builds one
// Consumer per assigned partition (see NewConsumer) and reuses it for every
// batch of that partition until the partition is revoked or the app stops,
// so it may keep state such as a buffer (B4). Consume is never called
// concurrently for one partition, and batch N+1 is handed over only after
// Consume returned for batch N (B2) — unless the topic is routed with
// Parallel: then batches of different lanes (keys) run concurrently, and
// only batches of one lane follow each other (K1).
//
// Returning nil marks the batch's last message as consumed (automatic
// offsets, A1). Returning an error, or panicking, retries the partition from
// its first unmarked message after a backoff (A5, A6); with Parallel, only
// the failed message's lane waits and retries (K5).
type Consumer interface {
	Consume(ctx context.Context, batch *Batch) error
}

// ConsumerFunc adapts a function to Consumer.
type ConsumerFunc func(ctx context.Context, batch *Batch) error

// Consume calls f.
func (f ConsumerFunc) Consume(ctx context.Context, batch *Batch) error { return f(ctx, batch) }

// NewConsumer builds the consumer of a freshly assigned partition. It runs
// once per assignment, on the partition's own goroutine.
type NewConsumer func(claim *Claim) Consumer

// Optional hooks a Consumer may implement. Each runs on the partition's
// goroutine, never concurrently with Consume. An error is logged.
type (
	// InitializedHook runs once, before the first batch of an assignment.
	InitializedHook interface {
		Initialized(ctx context.Context) error
	}
	// RevokedHook runs after the partition was revoked (after in-flight
	// work finished and its marks were committed, A3) or lost (A7). Marks
	// made here are committed when the partition was revoked, dropped when
	// it was lost (M9).
	RevokedHook interface {
		Revoked(ctx context.Context) error
	}
	// ShutdownHook runs when the app stops while the partition is owned,
	// after the last batch finished. Marks made here are in the final
	// commit (M9).
	ShutdownHook interface {
		Shutdown(ctx context.Context) error
	}
	// EOFHook runs when everything fetched was processed and the fetch had
	// reached the end of the partition. It runs once each time the
	// partition catches up.
	EOFHook interface {
		EOF(ctx context.Context) error
	}
)

// Batch is a run of messages of one topic-partition in offset order, at most
// MaxMessages long (B1).
type Batch struct {
	Topic     string
	Partition int32
	Messages  []*Message
	// Attempt is 1 on first delivery and counts up while the partition
	// retries after errors (A5).
	Attempt int

	claim *Claim
}

// Claim returns the handle of the partition this batch belongs to, for
// marking and committing offsets.
func (b *Batch) Claim() *Claim { return b.claim }

// Produce writes records on the consumer's behalf. Outside exactly-once it
// waits until they are acknowledged; pass many records at once for
// throughput. Under ExactlyOnce it returns as soon as they are buffered in
// the batch's Kafka transaction: ferry flushes them before committing the
// transaction — together with the batch's offsets (S3) — and they become
// visible to read_committed readers only if it commits; if one fails, the
// transaction aborts and the batch is retried.
func (b *Batch) Produce(ctx context.Context, recs ...*Message) error {
	return b.claim.p.Produce(ctx, recs...)
}

// Last returns the batch's last message.
func (b *Batch) Last() *Message { return b.Messages[len(b.Messages)-1] }

// worker adapts a Consumer, its middleware and its optional hooks to the
// engine.
type worker struct {
	c     Consumer // hooks are looked up here
	chain Consumer // c wrapped in the topic's middleware
	claim *Claim
}

func newWorker(newConsumer NewConsumer, mw []Middleware) engine.NewWorker {
	return func(p *engine.Partition) engine.Worker {
		claim := &Claim{p: p}
		c := newConsumer(claim)
		if c == nil {
			return nil
		}
		return &worker{c: c, chain: wrap(c, mw), claim: claim}
	}
}

func (w *worker) Consume(ctx context.Context, recs []*kgo.Record, attempt int) error {
	return w.chain.Consume(ctx, &Batch{
		Topic:     w.claim.Topic(),
		Partition: w.claim.Partition(),
		Messages:  recs,
		Attempt:   attempt,
		claim:     w.claim,
	})
}

func (w *worker) Initialized(ctx context.Context) error {
	if h, ok := w.c.(InitializedHook); ok {
		return h.Initialized(ctx)
	}
	return nil
}

func (w *worker) Revoked(ctx context.Context) error {
	if h, ok := w.c.(RevokedHook); ok {
		return h.Revoked(ctx)
	}
	return nil
}

func (w *worker) Shutdown(ctx context.Context) error {
	if h, ok := w.c.(ShutdownHook); ok {
		return h.Shutdown(ctx)
	}
	return nil
}

func (w *worker) EOF(ctx context.Context) error {
	if h, ok := w.c.(EOFHook); ok {
		return h.EOF(ctx)
	}
	return nil
}

// ErrTransactional is returned by the Sync calls of a Claim of an
// ExactlyOnce topic: its offsets reach Kafka only with its transactions.
var ErrTransactional = engine.ErrTransactional

// ErrMarkTooFarAhead is returned by MarkAsConsumedSync (and makes
// MarkAsConsumed return false) in a Parallel partition for a message not
// delivered yet and further ahead of the oldest unfinished message than the
// commit's record of finished messages can describe, about 24,000 offsets
// (K4). Nothing is stored.
var ErrMarkTooFarAhead = engine.ErrMarkTooFarAhead

// Claim is a consumer's handle on the topic-partition it was built for: the
// offset-management API of Karafka, ownership-safe (M2–M9).
//
//	call                      blocks  returns                          offset reaches Kafka
//	MarkAsConsumed            no      false once no longer owned (*)   next periodic, revoke or shutdown commit
//	MarkAsConsumedSync        yes     true iff committed and owned     before it returns
//	CommitOffsets             no      false iff no longer owned        soon (the commit loop is woken)
//	CommitOffsetsSync         yes     true iff committed and owned     before it returns
//	Revoked                   no      true once revoked or lost        —
//
// (*) or, in a Parallel partition, for a message too far ahead
// (ErrMarkTooFarAhead).
//
// In an ExactlyOnce topic with ManualOffsets, marks join the Kafka
// transaction in progress: it commits the marked offsets with the outputs.
// Unmarked messages come again after a failed transaction (right after the
// last committed mark, M7), a rebalance or a restart. A mark on a revoked
// partition returns false and aborts the transaction; the Sync calls return
// ErrTransactional.
//
// A Claim is safe for use from several goroutines.
type Claim struct {
	p *engine.Partition
}

// Topic returns the claimed topic.
func (c *Claim) Topic() string { return c.p.Topic() }

// Group returns the consumer group the partition is consumed in.
func (c *Claim) Group() string { return c.p.Group() }

// Partition returns the claimed partition.
func (c *Claim) Partition() int32 { return c.p.ID() }

// Logger returns a logger carrying group, topic and partition.
func (c *Claim) Logger() *slog.Logger { return c.p.Logger() }

// MarkAsConsumed stores msg's offset+1 to be committed with the next commit
// and returns at once (M2). It returns false, storing nothing, if this
// consumer no longer owns the partition, if msg is from another partition,
// or in Parallel mode if msg lies too far ahead (see below). Marking an older message than one already marked moves the
// retry point back but never the committed offset (M6).
//
// Marking a message not delivered yet is allowed: in sequential mode the
// stored offset moves past it (and past everything before it); in Parallel
// mode, where a mark is per message (K7), that message alone counts as
// finished and is skipped when it arrives — unless it lies too far ahead
// (see ErrMarkTooFarAhead), when false is returned.
func (c *Claim) MarkAsConsumed(msg *Message) bool { return c.p.Mark(msg, "") }

// MarkWithMetadata is MarkAsConsumed with a metadata string committed along
// with the offset and readable on the next assignment (M8).
func (c *Claim) MarkWithMetadata(msg *Message, metadata string) bool {
	return c.p.Mark(msg, metadata)
}

// MarkAsConsumedSync stores msg's offset+1 and commits before returning
// (M3). It returns true only if the commit succeeded and the partition is
// still owned: use it to fence side effects such as a database commit. The
// answer always comes from the group coordinator — when the mark stores
// nothing new, the stored offset is committed again — so once another
// member owns the partition it never reports true. A commit refused because
// the coordinator no longer knows this member drops the partition at once,
// as a lost assignment (A7).
//
// It returns (bool, error) rather than a bare bool so callers can tell "not
// yours any more" (false, nil) from "the broker refused or could not be
// reached" (false, err), which may deserve a retry or an alert.
func (c *Claim) MarkAsConsumedSync(ctx context.Context, msg *Message) (bool, error) {
	return c.p.MarkSync(ctx, msg, "")
}

// MarkWithMetadataSync is MarkAsConsumedSync with commit metadata (M8).
func (c *Claim) MarkWithMetadataSync(ctx context.Context, msg *Message, metadata string) (bool, error) {
	return c.p.MarkSync(ctx, msg, metadata)
}

// CommitOffsets asks for the stored offsets to be committed without waiting
// (M4). It returns false if the partition is no longer owned; whether the
// commit succeeded can be seen later through Revoked.
func (c *Claim) CommitOffsets() bool { return c.p.Commit() }

// CommitOffsetsSync commits the stored offsets and waits (M4). With nothing
// new stored it commits the stored offset again, so its answer, like
// MarkAsConsumedSync's, is the group coordinator's: true while the
// partition is owned. Before anything was marked or committed for the
// partition there is no offset to send, and it reports whether this member
// still holds the partition as far as it knows.
func (c *Claim) CommitOffsetsSync(ctx context.Context) (bool, error) { return c.p.CommitSync(ctx) }

// Revoked reports whether the partition was revoked or lost (M5). It turns
// true as soon as a revocation begins, so a long Consume can stop early.
func (c *Claim) Revoked() bool { return c.p.Revoked() }

// CommittedMetadata returns the metadata committed with the offset this
// assignment started from, or "" (M8).
func (c *Claim) CommittedMetadata() string { return c.p.CommittedMetadata() }
