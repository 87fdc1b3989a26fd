// Package ferrypg gives a ferry topic exactly-once effects in PostgreSQL: the
// consumer's writes and the partition's next offset commit in one database
// transaction, and a partition starts from the offset stored in the
// database, whatever Kafka's committed offset says.
//
//	pool, _ := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
//	app, err := ferry.New(
//		ferry.Brokers("127.0.0.1:9092"),
//		ferrypg.Route("billing", "invoices", pool, func(ctx context.Context, b *ferrypg.Batch) error {
//			for _, m := range b.Messages {
//				if _, err := b.Tx.Exec(ctx, "INSERT INTO invoices (id, body) VALUES ($1, $2)", m.Key, m.Value); err != nil {
//					return err
//				}
//			}
//			return nil
//		}),
//	)
//
// # How a batch commits
//
// For each batch ferry begins a transaction, calls the handler with it, then
// — in the same transaction — writes the partition's next offset into the
// offsets table, on the condition that the row still carries this member's
// owner token, and commits. A handler error or panic rolls everything back
// and the batch is retried from its first message after the topic's backoff
// (nothing of it is in the database). Only after the database commit is the
// offset marked in Kafka, so the group's committed offset follows for lag
// tools; it is never where a partition starts while the database has a row.
//
// # Where a partition starts
//
// On every assignment ferry bumps the partition's owner token in the offsets
// table and reads its next offset in the same statement, before anything is
// fetched (ferry.StartOffsets); the partition starts there. A partition
// with nothing stored yet — no row, or a row still at -1 because its first
// assignment never committed — starts from Kafka's committed offset, else
// the topic's InitialOffset. Messages below the stored offset that still
// reach the handler — after a commit whose outcome was unknown, say — are
// skipped.
//
// # Fencing
//
// A member that lost a partition — its session expired while a handler was
// stuck, or the process was paused — may still hold a batch in progress.
// Its offset write names the token it read on assignment; the new owner's
// assignment bumped it, so the write matches no row, the transaction is
// rolled back and the partition is dropped (ferry.ErrNotOwned) until it is
// assigned again. Whoever commits first wins: if the old owner's commit
// lands before the new owner's bump, the bump waits for it on the row's lock
// and the new owner starts after that batch. Nothing is applied twice.
//
// The offset write comes last in the transaction, so the row is locked only
// while a batch commits. A member frozen in exactly that moment holds the
// new owner's assignment until it wakes or its connection drops; to bound
// that, give the pool's connections an idle_in_transaction_session_timeout
// (pgxpool.Config.ConnConfig.RuntimeParams) longer than your slowest batch.
//
// # The offsets table
//
// Created if missing (name set with Table, default ferry_offsets):
//
//	CREATE TABLE ferry_offsets (
//		consumer_group text        NOT NULL,
//		topic          text        NOT NULL,
//		partition      integer     NOT NULL,
//		next_offset    bigint      NOT NULL, -- the next offset to consume; -1 before the first commit
//		owner_token    bigint      NOT NULL, -- bumped on every assignment
//		updated_at     timestamptz NOT NULL DEFAULT now(),
//		PRIMARY KEY (consumer_group, topic, partition)
//	)
//
// To move a group, update next_offset while it is stopped; to rewind, the
// same. Deleting a row makes the partition start from Kafka's committed
// offset again. ferry.App's Seek moves Kafka's position, not the row: after
// a Seek back, messages below next_offset are skipped as already applied,
// and a Seek forward reaches the row with the next batch's commit — until
// then the partition's next assignment starts where the row says.
//
// # Dead letters
//
// With DeadLetter, a message still failing after MaxRetries retries is
// produced to the dead-letter topic and acknowledged first, and only then
// does a transaction move the offset row past it. A crash in between
// dead-letters it once more on the next attempt: the dead-letter topic may
// hold a message twice (the ferry-original-* headers tell duplicates
// apart), but the offset row never moves past a message whose dead letter
// was not written.
//
// # Combinations
//
// Delivery is always at-least-once towards Kafka (the database gives the
// exactly-once): ferrypg sets the topic's delivery, ManualOffsets, dead
// letter and StartOffsets itself and overrides them if given through
// TopicOptions. Batch.Produce writes to Kafka outside the database
// transaction, at least once. Processing one partition's messages in
// parallel (ferry.Parallel) is refused at ferry.New: one transaction covers
// one batch, in offset order, and the stored offset is a single position,
// where a parallel partition finishes messages out of order and resumes
// from the finished offsets its Kafka commit metadata records.
package ferrypg

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/ferrykit/ferry"
	"github.com/jackc/pgx/v5"
)

// DB begins database transactions; *pgxpool.Pool is one. It must be safe
// for concurrent use: ferry uses it from every partition's goroutine.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Handler processes a batch inside its database transaction, b.Tx. Return
// nil to commit the batch's writes with its offset; an error (or a panic)
// rolls both back and the batch is retried. Returning ferry.FailedAt(msg,
// err) commits the messages before msg first, so the retry starts at msg.
type Handler func(ctx context.Context, b *Batch) error

// Batch is a ferry batch with its database transaction.
type Batch struct {
	*ferry.Batch
	// Tx is the transaction the batch's offset commits in. Do not commit
	// or roll it back: ferry does once the handler returned.
	Tx pgx.Tx

	manual bool
	marked *ferry.Message
}

// MarkAsConsumed records, under ManualOffsets, that the batch's messages up
// to msg are processed: the offset after msg commits in this transaction.
// The newest mark of a batch wins. It reports false, recording nothing,
// without ManualOffsets or when msg is not in the batch. (Marks made through
// the batch's Claim reach Kafka but not the database, so they do not decide
// where the partition starts.)
func (b *Batch) MarkAsConsumed(msg *ferry.Message) bool {
	if !b.manual || msg == nil || msg.Topic != b.Topic || msg.Partition != b.Partition ||
		len(b.Messages) == 0 || msg.Offset < b.Messages[0].Offset || msg.Offset > b.Last().Offset {
		return false
	}
	b.marked = msg
	return true
}

// Option configures a Route.
type Option func(*config)

type config struct {
	table      string
	manual     bool
	deadLetter string
	maxRetries int
	retriesSet bool
	topicOpts  []ferry.TopicOption
}

// Table names the offsets table, optionally schema-qualified
// ("ops.kafka_offsets"). Default "ferry_offsets". Routes may share a table:
// rows are keyed by consumer group, topic and partition.
func Table(name string) Option { return func(c *config) { c.table = name } }

// ManualOffsets lets the handler decide how far a batch counts as processed
// with Batch.MarkAsConsumed; without a mark, the batch's writes commit and
// the stored offset stays where it was, so its messages come again after a
// restart or rebalance. Default: the whole batch, once the handler returns
// nil.
func ManualOffsets() Option { return func(c *config) { c.manual = true } }

// DeadLetter names a dead-letter topic: a message still failing after
// MaxRetries retries is produced to it (headers as ferry.DeadLetter), then
// the offset row moves past it (see the package doc). Default: none, a
// failing message is retried forever.
func DeadLetter(topic string) Option { return func(c *config) { c.deadLetter = topic } }

// MaxRetries sets how many retries a failing message gets before it is
// dead-lettered. Default 3; it requires DeadLetter.
func MaxRetries(n int) Option {
	return func(c *config) { c.maxRetries = n; c.retriesSet = true }
}

// TopicOptions passes ferry topic options to the route: MaxMessages,
// MaxWait, InitialOffset, Retry, QueueBytes, Use (middleware). Delivery,
// ManualOffsets, DeadLetter and StartOffsets are ferrypg's own and are
// overridden. Retries before a dead letter are this package's MaxRetries:
// ferry.MaxRetries given here is ignored with a DeadLetter and, as in
// ferry, refused at ferry.New without one.
func TopicOptions(opts ...ferry.TopicOption) Option {
	return func(c *config) { c.topicOpts = append(c.topicOpts, opts...) }
}

// identifier is one part of a table name ferrypg accepts.
var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

func (c *config) validate(db DB, h Handler) error {
	var errs []error
	if db == nil {
		errs = append(errs, errors.New("no database"))
	}
	if h == nil {
		errs = append(errs, errors.New("no handler"))
	}
	parts := strings.Split(c.table, ".")
	if len(parts) > 2 {
		errs = append(errs, fmt.Errorf("table %q: use name or schema.name", c.table))
	}
	for _, p := range parts {
		if !identifier.MatchString(p) {
			errs = append(errs, fmt.Errorf("table %q: %q is not a plain identifier (letters, digits, _; at most 63)", c.table, p))
			break
		}
	}
	if c.retriesSet && c.deadLetter == "" {
		errs = append(errs, errors.New("MaxRetries needs a DeadLetter topic (without one a failing message is retried forever)"))
	}
	if c.maxRetries < 0 {
		errs = append(errs, fmt.Errorf("MaxRetries %d: must be at least 0", c.maxRetries))
	}
	return errors.Join(errs...)
}

// Route routes a topic, consumed by a consumer group, to h with exactly-once
// effects in the database db (S4, D1–D5). Bad settings make ferry.New fail
// with an error wrapping ferry.ErrInvalidConfig.
func Route(group, topic string, db DB, h Handler, opts ...Option) ferry.Option {
	cfg := config{table: "ferry_offsets", maxRetries: 3}
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(db, h); err != nil {
		return ferry.ConfigError(fmt.Errorf("ferrypg route %q/%q: %w", group, topic, err))
	}
	r := newRoute(group, topic, db, h, cfg)
	topicOpts := append(append([]ferry.TopicOption(nil), cfg.topicOpts...),
		ferry.WithDelivery(ferry.AtLeastOnce),
		ferry.ManualOffsets(), // ferrypg marks once the database committed
		ferry.StartOffsets(r.start),
		ferry.DeadLetter(cfg.deadLetter),
	)
	if cfg.deadLetter != "" {
		// ferrypg dead-letters itself, in step with the offset row; the
		// engine's own step (which would not move the row) never fires.
		topicOpts = append(topicOpts, ferry.MaxRetries(math.MaxInt))
	}
	return ferry.Route(group, topic, r.newConsumer, topicOpts...)
}
