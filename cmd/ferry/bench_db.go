package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/ferrykit/ferry/cmd/ferry/internal/bench"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/jackc/pgx/v5/pgxpool"
)

// benchDB measures exactly-once into PostgreSQL (ferrypg) against
// at-least-once with the same inserts and no offset row, and against the
// naive loop that inserts and then commits the Kafka offset — all in this
// process, rotating their order every round.
func benchDB(ctx context.Context, stdout io.Writer, seeds []string, topic string, messages, rounds int, url string, t *targets) error {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("PostgreSQL at -db: %w", err)
	}
	rows, err := bench.CreateRows(ctx, pool, strings.ReplaceAll(ferrytest.UniqueName("bench_rows"), "-", "_"))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "one row per message into PostgreSQL (COPY in the batch's transaction), batches of 100, table %s\n\n", rows.Table)
	type contender func(context.Context, []string, string, string, int, bench.Rows) (bench.Result, error)
	contenders := []contender{bench.DBExactlyOnce, bench.DBAtLeastOnce, bench.DBNaive}
	fmt.Fprintf(stdout, "%-6s %-28s %10s %10s\n", "round", "contender", "seconds", "msgs/s")
	var vsALO, vsNaive []float64
	for r := 1; r <= rounds; r++ {
		rate := make([]float64, len(contenders))
		for k := range contenders {
			i := (k + r - 1) % len(contenders) // rotate who goes first
			res, err := contenders[i](ctx, seeds, topic, ferrytest.UniqueName("db"), messages, rows)
			if err != nil {
				return err
			}
			rate[i] = res.Rate()
			fmt.Fprintf(stdout, "%-6d %-28s %10.3f %10.0f\n", r, res.Name, (res.Elapsed - res.First).Seconds(), res.Rate())
			runtime.GC()
		}
		vsALO = append(vsALO, rate[0]/rate[1])
		vsNaive = append(vsNaive, rate[0]/rate[2])
	}
	fmt.Fprintln(stdout)
	t.atLeast(stdout, "exactly-once into PostgreSQL / at-least-once with the same inserts", vsALO, 0.8)
	t.atLeast(stdout, "exactly-once into PostgreSQL / naive insert-then-commit loop", vsNaive, 0)
	return nil
}
