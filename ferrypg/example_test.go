package ferrypg_test

import (
	"context"
	"log"
	"os"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrypg"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Invoices are stored exactly once: each batch's rows and the partition's
// offset commit in one transaction, and a member that lost the partition
// cannot commit.
func ExampleRoute() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	app, err := ferry.New(
		ferry.Brokers("127.0.0.1:9092"),
		ferrypg.Route("billing", "invoices", pool, func(ctx context.Context, b *ferrypg.Batch) error {
			for _, m := range b.Messages {
				if _, err := b.Tx.Exec(ctx, "INSERT INTO invoices (id, body) VALUES ($1, $2)", m.Key, m.Value); err != nil {
					return err // the batch's rows and offset roll back; it is retried
				}
			}
			return nil
		}, ferrypg.DeadLetter("invoices.dlq"), ferrypg.TopicOptions(ferry.MaxMessages(500))),
	)
	if err != nil {
		log.Fatal(err)
	}
	if err := app.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
