package bench

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrypg"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Rows is the table the database contenders insert one row per message into:
// (partition, offset), copied in with COPY in the batch's transaction.
type Rows struct {
	Pool  *pgxpool.Pool
	Table string
}

// CreateRows creates a fresh rows table.
func CreateRows(ctx context.Context, pool *pgxpool.Pool, table string) (Rows, error) {
	_, err := pool.Exec(ctx, `CREATE TABLE `+pgx.Identifier{table}.Sanitize()+` (partition integer NOT NULL, "offset" bigint NOT NULL)`)
	return Rows{Pool: pool, Table: table}, err
}

// insert copies one row per record into the table inside tx.
func (r Rows) insert(ctx context.Context, tx pgx.Tx, recs []*kgo.Record) error {
	rows := make([][]any, len(recs))
	for i, m := range recs {
		rows[i] = []any{m.Partition, m.Offset}
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{r.Table}, []string{"partition", "offset"}, pgx.CopyFromRows(rows))
	return err
}

func quietFerry(brokers []string) []ferry.Option {
	return []ferry.Option{ferry.Brokers(brokers...), ferry.Logger(slog.New(slog.NewTextHandler(io.Discard, nil)))}
}

// DBExactlyOnce consumes the topic through ferrypg: each batch's rows and
// the partition's offset row commit in one transaction.
func DBExactlyOnce(ctx context.Context, brokers []string, topic, group string, n int, rows Rows) (Result, error) {
	w := newWindow("ferrypg exactly-once", n)
	app, err := ferry.New(append(quietFerry(brokers),
		ferrypg.Route(group, topic, rows.Pool, func(ctx context.Context, b *ferrypg.Batch) error {
			w.assigned()
			if err := rows.insert(ctx, b.Tx, b.Messages); err != nil {
				return err
			}
			// Counted before the commit: the batch is done once the
			// handler returns; a failed commit would retry it.
			w.add(len(b.Messages))
			return nil
		}, ferrypg.Table(rows.Table+"_offsets")))...)
	if err != nil {
		return Result{}, err
	}
	return runUntil(ctx, app, w)
}

// DBAtLeastOnce consumes the topic with ferry at-least-once and the same
// inserts, each batch in a transaction of its own with no offset row.
func DBAtLeastOnce(ctx context.Context, brokers []string, topic, group string, n int, rows Rows) (Result, error) {
	w := newWindow("ferry at-least-once + tx", n)
	app, err := ferry.New(append(quietFerry(brokers),
		ferry.RouteFunc(group, topic, func(ctx context.Context, b *ferry.Batch) error {
			w.assigned()
			return pgx.BeginFunc(ctx, rows.Pool, func(tx pgx.Tx) error {
				if err := rows.insert(ctx, tx, b.Messages); err != nil {
					return err
				}
				w.add(len(b.Messages)) // before the commit, as for ferrypg
				return nil
			})
		}))...)
	if err != nil {
		return Result{}, err
	}
	return runUntil(ctx, app, w)
}

// DBNaive is the loop most consumers start with: poll, insert each
// partition's records in a transaction, then commit the Kafka offsets
// synchronously — exactly-once only until the first crash between the two.
func DBNaive(ctx context.Context, brokers []string, topic, group string, n int, rows Rows) (Result, error) {
	w := newWindow("naive insert-then-commit", n)
	cl, err := newClient(brokers,
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { w.assigned() }),
	)
	if err != nil {
		return Result{}, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for {
		select {
		case r := <-w.done:
			return r, nil
		default:
		}
		fs := cl.PollRecords(ctx, 100)
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		var ferr error
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 || ferr != nil {
				return
			}
			ferr = pgx.BeginFunc(ctx, rows.Pool, func(tx pgx.Tx) error { return rows.insert(ctx, tx, p.Records) })
		})
		if ferr != nil {
			return Result{}, ferr
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			return Result{}, err
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) { w.add(len(p.Records)) })
	}
}
