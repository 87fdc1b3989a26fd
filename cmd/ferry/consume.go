package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ferrykit/ferry"
)

// runConsume prints every message of a topic, consumed through ferry with
// at-least-once delivery.
func runConsume(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("consume", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", "", "seed brokers, comma separated (default $FERRY_BROKERS)")
	topic := fs.String("topic", "", "topic to consume (required)")
	group := fs.String("group", "ferry-console", "consumer group")
	latest := fs.Bool("latest", false, "start at the end when the group has no commit")
	sleep := fs.Duration("sleep", 0, "pause after printing each batch, to watch draining on shutdown")
	shutdownTimeout := fs.Duration("shutdown-timeout", 60*time.Second, "graceful shutdown bound")
	sec := addSecurityFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	secure, err := sec.options()
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	if *topic == "" {
		return fmt.Errorf("consume: -topic is required")
	}
	var bad flagErrors
	bad.notNegative("sleep", *sleep)
	if err := bad.err(); err != nil {
		return err
	}
	opts := []ferry.Option{
		ferry.Logger(slog.New(slog.NewTextHandler(stderr, nil))),
		ferry.ShutdownTimeout(*shutdownTimeout),
	}
	opts = append(opts, secure...)
	if *brokers != "" {
		opts = append(opts, ferry.Brokers(strings.Split(*brokers, ",")...))
	}
	start := ferry.Earliest
	if *latest {
		start = ferry.Latest
	}
	var mu sync.Mutex
	print := func(_ context.Context, b *ferry.Batch) error {
		mu.Lock()
		for _, m := range b.Messages {
			fmt.Fprintf(stdout, "%s/%d@%d key=%q value=%q\n", m.Topic, m.Partition, m.Offset, m.Key, m.Value)
		}
		mu.Unlock()
		if *sleep > 0 {
			time.Sleep(*sleep) // deliberately ignores ctx: shows draining
		}
		return nil
	}
	opts = append(opts, ferry.RouteFunc(*group, *topic, print, ferry.InitialOffset(start)))
	app, err := ferry.New(opts...)
	if err != nil {
		return err
	}
	return app.Run(ctx)
}
