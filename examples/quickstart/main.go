// Quickstart: route one topic to a function and run until interrupted.
//
//	go run ./examples/quickstart                      # on an embedded cluster
//	FERRY_BROKERS=127.0.0.1:9092 go run ./examples/quickstart
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// ferrytest.Start uses FERRY_BROKERS when set, else an embedded cluster.
	cluster, err := ferrytest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	if err := cluster.CreateTopic(ctx, "greetings", 3); err != nil {
		log.Fatal(err)
	}
	for i := range 10 {
		rec := &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("hello %d", i))}
		if err := cluster.Produce(ctx, "greetings", rec); err != nil {
			log.Fatal(err)
		}
	}

	app, err := ferry.New(
		ferry.Brokers(cluster.Brokers()...),
		ferry.RouteFunc("greeters", "greetings", func(ctx context.Context, b *ferry.Batch) error {
			for _, m := range b.Messages {
				fmt.Printf("%s/%d@%d %s\n", m.Topic, m.Partition, m.Offset, m.Value)
			}
			return nil // marks the batch; ferry commits it
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("consuming; Ctrl-C to stop")
	if err := app.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
