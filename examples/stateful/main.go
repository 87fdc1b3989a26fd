// Stateful: one consumer instance per partition, with hooks. Each instance
// keeps a running total for its partition and reports it when the partition
// is revoked or the app stops.
//
//	go run ./examples/stateful
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// totals sums the integer values of one partition.
type totals struct {
	claim *ferry.Claim
	sum   int
}

func (t *totals) Consume(_ context.Context, b *ferry.Batch) error {
	for _, m := range b.Messages {
		n, err := strconv.Atoi(string(m.Value))
		if err != nil {
			return fmt.Errorf("offset %d: %w", m.Offset, err) // retried after a backoff
		}
		t.sum += n
	}
	return nil
}

func (t *totals) EOF(context.Context) error {
	fmt.Printf("partition %d caught up: total %d\n", t.claim.Partition(), t.sum)
	return nil
}

func (t *totals) Revoked(context.Context) error {
	fmt.Printf("partition %d moved to another member at total %d\n", t.claim.Partition(), t.sum)
	return nil
}

func (t *totals) Shutdown(context.Context) error {
	fmt.Printf("partition %d stopping at total %d\n", t.claim.Partition(), t.sum)
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cluster, err := ferrytest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	if err := cluster.CreateTopic(ctx, "amounts", 2); err != nil {
		log.Fatal(err)
	}
	for i := 1; i <= 100; i++ {
		rec := &kgo.Record{Key: []byte(strconv.Itoa(i % 7)), Value: []byte(strconv.Itoa(i))}
		if err := cluster.Produce(ctx, "amounts", rec); err != nil {
			log.Fatal(err)
		}
	}
	app, err := ferry.New(
		ferry.Brokers(cluster.Brokers()...),
		ferry.Route("ledger", "amounts", func(c *ferry.Claim) ferry.Consumer {
			return &totals{claim: c}
		}, ferry.MaxMessages(10)),
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("consuming; Ctrl-C to stop (the totals of both partitions add up to 5050)")
	if err := app.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
