package ferrypg_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrypg"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// database connects to the PostgreSQL server named by FERRY_POSTGRES
// (scripts/postgres up). Without it the test is skipped — except under
// CI=true, where scripts/test starts one and a missing server is a failure.
func database(t *testing.T) *pgxpool.Pool {
	t.Helper()
	url := os.Getenv("FERRY_POSTGRES")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but FERRY_POSTGRES is not set: scripts/test starts PostgreSQL with scripts/postgres")
		}
		t.Skip("FERRY_POSTGRES not set: start a server with scripts/postgres up and export FERRY_POSTGRES")
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pool.Ping(ferrytest.Context(t, 10*time.Second)); err != nil {
		t.Fatalf("PostgreSQL at FERRY_POSTGRES does not answer: %v", err)
	}
	return pool
}

// name returns a fresh SQL identifier.
func name(prefix string) string {
	return strings.ReplaceAll(ferrytest.UniqueName(prefix), "-", "_")
}

// effects is a table the tests' handlers write one row per message into,
// so a test can count how often each message's effect was committed.
type effects struct {
	db    *pgxpool.Pool
	table string
}

func newEffects(t *testing.T, db *pgxpool.Pool) *effects {
	t.Helper()
	e := &effects{db: db, table: name("effects")}
	if _, err := db.Exec(ferrytest.Context(t, 10*time.Second), `CREATE TABLE `+e.table+
		` (topic text NOT NULL, partition integer NOT NULL, "offset" bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return e
}

// insert writes one row per message of b in its transaction.
func (e *effects) insert(ctx context.Context, b *ferrypg.Batch) error {
	rows := make([][]any, len(b.Messages))
	for i, m := range b.Messages {
		rows[i] = []any{m.Topic, m.Partition, m.Offset}
	}
	_, err := b.Tx.CopyFrom(ctx, pgx.Identifier{e.table}, []string{"topic", "partition", "offset"}, pgx.CopyFromRows(rows))
	return err
}

// counts returns how many rows each offset of a partition has.
func (e *effects) counts(t *testing.T, partition int32) map[int64]int {
	t.Helper()
	rows, err := e.db.Query(ferrytest.Context(t, 10*time.Second),
		`SELECT "offset", count(*) FROM `+e.table+` WHERE partition = $1 GROUP BY "offset"`, partition)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[int64]int)
	var off int64
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&off, &n}, func() error { out[off] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// exactlyOnce fails unless offsets [from, to) of a partition each have one
// row and no other offset has any.
func (e *effects) exactlyOnce(t *testing.T, partition int32, from, to int64) {
	t.Helper()
	counts := e.counts(t, partition)
	var bad []string
	for off := from; off < to; off++ {
		if counts[off] != 1 {
			bad = append(bad, fmt.Sprintf("%d×%d", off, counts[off]))
		}
	}
	for off, n := range counts {
		if off < from || off >= to {
			bad = append(bad, fmt.Sprintf("%d×%d (outside [%d,%d))", off, n, from, to))
		}
	}
	if len(bad) > 0 {
		t.Fatalf("partition %d: want each of offsets [%d,%d) once, got %v", partition, from, to, bad)
	}
}

// stored returns the offsets table's next offset for a partition, -2 when
// there is no row (or no table yet).
func stored(t *testing.T, db *pgxpool.Pool, table, group, topic string, partition int32) int64 {
	t.Helper()
	// A context of its own, not ferrytest.Context: waitStored calls this
	// every 20 ms, and each of those would stay registered until the test
	// ends.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var next int64 = -2
	var exists bool
	if err := db.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if !exists {
		return next
	}
	err := db.QueryRow(ctx, `SELECT next_offset FROM `+table+
		` WHERE consumer_group = $1 AND topic = $2 AND partition = $3`, group, topic, partition).Scan(&next)
	if err != nil && err != pgx.ErrNoRows {
		t.Fatal(err)
	}
	return next
}

// waitStored waits, up to 60 s, until a partition's stored offset reaches
// want.
func waitStored(t *testing.T, db *pgxpool.Pool, table, group, topic string, partition int32, want int64) {
	t.Helper()
	var got int64
	err := ferrytest.WaitFor(ferrytest.Context(t, 60*time.Second), func() bool {
		got = stored(t, db, table, group, topic, partition)
		return got >= want
	})
	if err != nil {
		t.Fatalf("stored offset of %s/%d is %d after 60 s, want %d", topic, partition, got, want)
	}
}

// running is an app running in the background (ferrytest.Run), with what
// it logged.
type running struct {
	*ferrytest.Running
	log *ferrytest.Log
}

func start(t *testing.T, c *ferrytest.Cluster, more ...ferry.Option) *running {
	t.Helper()
	log := &ferrytest.Log{}
	opts := append([]ferry.Option{
		ferry.Brokers(c.Brokers()...),
		ferry.Logger(log.Logger()),
		ferry.CommitInterval(200 * time.Millisecond),
		ferry.ClientOptions(kgo.SessionTimeout(6 * time.Second)),
	}, more...)
	app, err := ferry.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return &running{ferrytest.Run(t, app), log}
}
