package ferrypg_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrypg"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
)

var fastRetry = ferrypg.TopicOptions(ferry.Retry(ferry.ExponentialBackoff(10*time.Millisecond, 50*time.Millisecond)))

// D1: the handler's writes and the partition's next offset commit in one
// transaction; an error or a panic rolls both back and the batch is
// retried, so every message's effect is in the database once.
func TestD1WritesAndOffsetCommitTogether(t *testing.T) {
	db := database(t)
	c := ferrytest.New(t)
	tp := ferrytest.NewTopic(t, c, 1)
	ferrytest.Fill(t, c, tp, 0, 60)
	fx := newEffects(t, db)
	table, group := name("offsets"), name("g")

	var failedOnce, panickedOnce atomic.Bool
	var attempts sync.Map // first offset of a failing batch → attempts seen
	start(t, c, ferrypg.Route(group, tp, db, func(ctx context.Context, b *ferrypg.Batch) error {
		if err := fx.insert(ctx, b); err != nil {
			return err
		}
		for _, m := range b.Messages {
			switch {
			case m.Offset == 25 && failedOnce.CompareAndSwap(false, true):
				attempts.Store(int64(25), b.Attempt)
				return errors.New("the database write after the insert failed")
			case m.Offset == 45 && panickedOnce.CompareAndSwap(false, true):
				panic("handler bug")
			}
		}
		return nil
	}, ferrypg.Table(table), fastRetry, ferrypg.TopicOptions(ferry.MaxMessages(10))))

	waitStored(t, db, table, group, tp, 0, 60)
	fx.exactlyOnce(t, 0, 0, 60)
	if !failedOnce.Load() || !panickedOnce.Load() {
		t.Fatal("the failing batches never ran")
	}
	// Kafka's committed offset follows the database (for lag tools).
	err := ferrytest.WaitFor(ferrytest.Context(t, 30*time.Second), func() bool {
		got, err := c.Committed(context.Background(), group, tp)
		return err == nil && got[0] == 60
	})
	if err != nil {
		t.Fatal("the group's committed offset did not follow the database to 60")
	}
}

// D2: a partition starts from the offset stored in the database, whatever
// Kafka's committed offset says — behind it or ahead of it — and Kafka's
// committed offset follows the database, even for a partition with nothing
// left to consume.
func TestD2StartsFromTheDatabaseOffset(t *testing.T) {
	db := database(t)
	c := ferrytest.New(t)
	tp := ferrytest.NewTopic(t, c, 3)
	for p := range int32(3) {
		ferrytest.Fill(t, c, tp, p, 30)
	}
	fx := newEffects(t, db)
	table, group := name("offsets"), name("g")

	// The database says 10, 25 and 30 (the end); Kafka says 25, 5 and 5.
	if _, err := db.Exec(ferrytest.Context(t, 10*time.Second), `CREATE TABLE `+table+` (
	consumer_group text        NOT NULL,
	topic          text        NOT NULL,
	partition      integer     NOT NULL,
	next_offset    bigint      NOT NULL,
	owner_token    bigint      NOT NULL,
	updated_at     timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (consumer_group, topic, partition))`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ferrytest.Context(t, 10*time.Second), `INSERT INTO `+table+
		` (consumer_group, topic, partition, next_offset, owner_token) VALUES ($1, $2, 0, 10, 7), ($1, $2, 1, 25, 7), ($1, $2, 2, 30, 7)`, group, tp); err != nil {
		t.Fatal(err)
	}
	var kafka kadm.Offsets
	kafka.Add(kadm.Offset{Topic: tp, Partition: 0, At: 25, LeaderEpoch: -1})
	kafka.Add(kadm.Offset{Topic: tp, Partition: 1, At: 5, LeaderEpoch: -1})
	kafka.Add(kadm.Offset{Topic: tp, Partition: 2, At: 5, LeaderEpoch: -1})
	if err := c.Admin().CommitAllOffsets(ferrytest.Context(t, 10*time.Second), group, kafka); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	first := map[int32]int64{}
	start(t, c, ferrypg.Route(group, tp, db, func(ctx context.Context, b *ferrypg.Batch) error {
		mu.Lock()
		if _, ok := first[b.Partition]; !ok {
			first[b.Partition] = b.Messages[0].Offset
		}
		mu.Unlock()
		return fx.insert(ctx, b)
	}, ferrypg.Table(table)))

	waitStored(t, db, table, group, tp, 0, 30)
	waitStored(t, db, table, group, tp, 1, 30)
	mu.Lock()
	defer mu.Unlock()
	if first[0] != 10 || first[1] != 25 {
		t.Fatalf("partitions started at %v, want the database's 0→10 and 1→25", first)
	}
	fx.exactlyOnce(t, 0, 10, 30)
	fx.exactlyOnce(t, 1, 25, 30)
	fx.exactlyOnce(t, 2, 30, 30)
	err := ferrytest.WaitFor(ferrytest.Context(t, 30*time.Second), func() bool {
		got, err := c.Committed(context.Background(), group, tp)
		return err == nil && got[0] == 30 && got[1] == 30 && got[2] == 30
	})
	if err != nil {
		got, _ := c.Committed(context.Background(), group, tp)
		t.Fatalf("the group's committed offsets are %v, want every partition at the database's 30", got)
	}
}

// D4: the offsets table is created if missing, under the configured name
// (schema-qualified too), with the documented columns.
func TestD4OffsetsTableCreatedIfMissing(t *testing.T) {
	db := database(t)
	c := ferrytest.New(t)
	tp := ferrytest.NewTopic(t, c, 1)
	ferrytest.Fill(t, c, tp, 0, 5)
	schema, table, group := name("s"), name("offsets"), name("g")
	if _, err := db.Exec(ferrytest.Context(t, 10*time.Second), `CREATE SCHEMA `+schema); err != nil {
		t.Fatal(err)
	}
	qualified := schema + "." + table
	start(t, c, ferrypg.Route(group, tp, db, func(context.Context, *ferrypg.Batch) error { return nil },
		ferrypg.Table(qualified)))
	waitStored(t, db, qualified, group, tp, 0, 5)

	rows, err := db.Query(ferrytest.Context(t, 10*time.Second), `SELECT column_name || ' ' || data_type FROM information_schema.columns
WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, schema, table)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"consumer_group text", "topic text", "partition integer", "next_offset bigint",
		"owner_token bigint", "updated_at timestamp with time zone"}
	if !slices.Equal(cols, want) {
		t.Fatalf("columns %v, want the documented %v", cols, want)
	}
}

// D4, O2: a table name that is not a plain identifier, and the other bad
// settings, fail at ferry.New.
func TestBadSettingsFailAtNew(t *testing.T) {
	h := func(context.Context, *ferrypg.Batch) error { return nil }
	var db ferrypg.DB = fakeDB{}
	for name, opt := range map[string]ferry.Option{
		"table with a quote":      ferrypg.Route("g", "t", db, h, ferrypg.Table(`x"; DROP TABLE y`)),
		"three-part table name":   ferrypg.Route("g", "t", db, h, ferrypg.Table("a.b.c")),
		"no database":             ferrypg.Route("g", "t", nil, h),
		"no handler":              ferrypg.Route("g", "t", db, nil),
		"retries, no topic":       ferrypg.Route("g", "t", db, h, ferrypg.MaxRetries(2)),
		"negative retries":        ferrypg.Route("g", "t", db, h, ferrypg.DeadLetter("dlq"), ferrypg.MaxRetries(-1)),
		"parallel":                ferrypg.Route("g", "t", db, h, ferrypg.TopicOptions(ferry.Parallel(4))),
		"ferry retries, no topic": ferrypg.Route("g", "t", db, h, ferrypg.TopicOptions(ferry.MaxRetries(2))),
	} {
		if _, err := ferry.New(ferry.Brokers("127.0.0.1:1"), opt); !errors.Is(err, ferry.ErrInvalidConfig) {
			t.Errorf("%s: New returned %v, want ErrInvalidConfig", name, err)
		}
	}
	if _, err := ferry.New(ferry.Brokers("127.0.0.1:1"), ferrypg.Route("g", "t", db, h, ferrypg.Table("ops.kafka_offsets"))); err != nil {
		t.Errorf("a good route: %v", err)
	}
}

type fakeDB struct{}

func (fakeDB) Begin(context.Context) (pgx.Tx, error) { return nil, errors.New("not a database") }

// ManualOffsets: the handler's mark decides the offset stored with the
// batch's writes; after a restart the partition resumes right after it.
func TestManualOffsetsMarkInsideTheTransaction(t *testing.T) {
	db := database(t)
	c := ferrytest.New(t)
	tp := ferrytest.NewTopic(t, c, 1)
	ferrytest.Fill(t, c, tp, 0, 20)
	table, group := name("offsets"), name("g")

	seen := make(chan int64, 100)
	route := func() ferry.Option {
		return ferrypg.Route(group, tp, db, func(_ context.Context, b *ferrypg.Batch) error {
			seen <- b.Messages[0].Offset
			for _, m := range b.Messages {
				if m.Offset == 11 {
					b.MarkAsConsumed(m) // processed up to 11; 12… come again
				}
			}
			return nil
		}, ferrypg.Table(table), ferrypg.ManualOffsets(), ferrypg.TopicOptions(ferry.MaxMessages(20)))
	}
	app := start(t, c, route())
	waitStored(t, db, table, group, tp, 0, 12)
	if err := app.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, db, table, group, tp, 0); got != 12 {
		t.Fatalf("stored offset %d, want 12 (the mark)", got)
	}
	for len(seen) > 0 {
		<-seen
	}
	start(t, c, route())
	select {
	case off := <-seen:
		if off != 12 {
			t.Fatalf("after the restart the first batch starts at %d, want 12", off)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no batch after the restart")
	}
}

// A message that fails MaxRetries+1 times goes to the dead-letter topic, and
// only then does the offset row move past it; the messages before it in its
// batch commit (FailedAt), the ones after it follow.
func TestDeadLetterBeforeTheOffsetRowMovesPastIt(t *testing.T) {
	db := database(t)
	c := ferrytest.New(t)
	tp, dlq := ferrytest.NewTopic(t, c, 1), ferrytest.NewTopic(t, c, 1)
	ferrytest.Fill(t, c, tp, 0, 10)
	fx := newEffects(t, db)
	table, group := name("offsets"), name("g")

	var poisonAttempts atomic.Int32
	start(t, c, ferrypg.Route(group, tp, db, func(ctx context.Context, b *ferrypg.Batch) error {
		if err := fx.insert(ctx, b); err != nil {
			return err
		}
		for _, m := range b.Messages {
			if m.Offset == 4 {
				poisonAttempts.Add(1)
				return ferry.FailedAt(m, errors.New("cannot parse"))
			}
		}
		return nil
	}, ferrypg.Table(table), ferrypg.DeadLetter(dlq), ferrypg.MaxRetries(2), fastRetry))

	waitStored(t, db, table, group, tp, 0, 10)
	if got := poisonAttempts.Load(); got != 3 {
		t.Errorf("the poison message was tried %d times, want 3 (MaxRetries 2)", got)
	}
	counts := fx.counts(t, 0)
	if counts[4] != 0 {
		t.Errorf("the dead-lettered message's effect is in the database %d times", counts[4])
	}
	delete(counts, 4)
	for off := int64(0); off < 10; off++ {
		if off != 4 && counts[off] != 1 {
			t.Errorf("offset %d has %d rows, want 1", off, counts[off])
		}
	}
	var letters []string
	for _, r := range ferrytest.ReadAll(t, c, dlq, 1) {
		letters = append(letters, string(r.Value))
	}
	if !slices.Equal(letters, []string{"4"}) {
		t.Fatalf("dead-letter topic holds %q, want the poison message once", letters)
	}
}

// losingDB loses the answer to one commit once armed: the transaction
// commits, the caller hears an error — a connection dropped at the worst
// moment.
type losingDB struct {
	*pgxpool.Pool
	armed atomic.Bool
}

func (db *losingDB) Begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := db.Pool.Begin(ctx)
	return &losingTx{Tx: tx, db: db}, err
}

type losingTx struct {
	pgx.Tx
	db *losingDB
}

func (tx *losingTx) Commit(ctx context.Context) error {
	err := tx.Tx.Commit(ctx)
	if err == nil && tx.db.armed.CompareAndSwap(true, false) {
		return errors.New("connection reset by peer")
	}
	return err
}

// D5: a commit whose answer was lost is not applied twice: before the
// retry ferrypg reads the stored offset again and skips what committed.
func TestCommitWithLostAnswerIsNotRedone(t *testing.T) {
	pool := database(t)
	c := ferrytest.New(t)
	tp := ferrytest.NewTopic(t, c, 1)
	ferrytest.Fill(t, c, tp, 0, 30)
	fx := newEffects(t, pool)
	table, group := name("offsets"), name("g")
	db := &losingDB{Pool: pool}
	var once atomic.Bool
	start(t, c, ferrypg.Route(group, tp, db, func(ctx context.Context, b *ferrypg.Batch) error {
		if once.CompareAndSwap(false, true) {
			db.armed.Store(true) // this batch commits, but ferrypg hears an error
		}
		return fx.insert(ctx, b)
	}, ferrypg.Table(table), fastRetry, ferrypg.TopicOptions(ferry.MaxMessages(10))))

	waitStored(t, pool, table, group, tp, 0, 30)
	if db.armed.Load() {
		t.Fatal("no commit answer was lost")
	}
	fx.exactlyOnce(t, 0, 0, 30)
}
