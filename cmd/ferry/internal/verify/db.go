package verify

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrypg"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// rows is the table the eos-db workers insert one row per input into.
func (f *fleet) rows() string { return f.run + "_rows" }

// freeze stops a worker with SIGSTOP for d, then lets it go on (SIGCONT).
func (f *fleet) freeze(ctx context.Context, slot int, d time.Duration) error {
	f.mu.Lock()
	cmd := f.procs[slot]
	f.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return nil // it died meanwhile; reap restarts it
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGCONT) }()
	select {
	case <-ctx.Done():
		return fmt.Errorf("deadline passed while a worker was frozen")
	case <-time.After(d):
		return nil
	}
}

// rowsDB is the verifier's view of the eos-db rows: it creates the table
// and, at the end, counts rows per input.
type rowsDB struct {
	pool  *pgxpool.Pool
	table string
}

func openRows(ctx context.Context, url, table string) (*rowsDB, error) {
	if url == "" {
		return nil, errors.New("the eos-db mode needs PostgreSQL: set FERRY_POSTGRES (scripts/postgres up prints a URL)")
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE `+pgx.Identifier{table}.Sanitize()+` (id integer NOT NULL)`); err != nil {
		pool.Close()
		return nil, fmt.Errorf("PostgreSQL at %s: %w", url, err)
	}
	return &rowsDB{pool: pool, table: table}, nil
}

func (db *rowsDB) close() { db.pool.Close() }

// count adds, per input, the rows the workers committed.
func (db *rowsDB) count(ctx context.Context, counts []int) error {
	rows, err := db.pool.Query(ctx, `SELECT id, count(*) FROM `+pgx.Identifier{db.table}.Sanitize()+` GROUP BY id`)
	if err != nil {
		return err
	}
	var id, n int
	_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error {
		if id < 0 || id >= len(counts) {
			return fmt.Errorf("row for input %d, which was never produced", id)
		}
		counts[id] += n
		return nil
	})
	return err
}

// rowsRoute is an eos-db worker's route: one row per input, inserted in the
// batch's transaction, which also stores the partition's offset.
func rowsRoute(ctx context.Context, url, table, group, input string, work time.Duration, opts ...ferry.TopicOption) (ferry.Option, func(), error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	ident := pgx.Identifier{table}
	route := ferrypg.Route(group, input, pool, func(ctx context.Context, b *ferrypg.Batch) error {
		ids := make([][]any, len(b.Messages))
		for i, m := range b.Messages {
			var id int
			if _, err := fmt.Sscan(string(m.Value), &id); err != nil {
				return err
			}
			ids[i] = []any{id}
		}
		if _, err := b.Tx.CopyFrom(ctx, ident, []string{"id"}, pgx.CopyFromRows(ids)); err != nil {
			return err
		}
		time.Sleep(work) // inside the transaction: kills and freezes land here
		return nil
	}, ferrypg.TopicOptions(opts...))
	return route, pool.Close, nil
}

// PostgresReachable reports whether the PostgreSQL server at url answers
// within a few seconds.
func PostgresReachable(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}
