package verify

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Worker runs one worker process of a verify run: a ferry app consuming the
// input topic in the given mode and recording every processing — for
// at-least-once and at-most-once as lines appended (and fsynced) to its log
// file, in the order the mode dictates relative to the offset commit; for
// exactly-once as one output record per input, produced in the transaction.
func Worker(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", "", "seed brokers")
	mode := fs.String("mode", "alo", "amo, alo or eos")
	input := fs.String("input", "", "input topic")
	output := fs.String("output", "", "output topic (eos)")
	group := fs.String("group", "", "consumer group")
	logPath := fs.String("log", "", "processing log (amo, alo)")
	instance := fs.String("instance", "", "worker name: transactional id, and static member id with -static")
	static := fs.Bool("static", false, "join as a static member: a restart takes the slot back at once")
	work := fs.Duration("work", 20*time.Millisecond, "simulated work per batch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, err := ParseMode(*mode)
	if err != nil {
		return err
	}
	opts := []ferry.Option{
		ferry.Brokers(strings.Split(*brokers, ",")...),
		ferry.ClientID("ferry-verify-" + *instance),
		ferry.Logger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
		ferry.CommitInterval(time.Second),
		ferry.ShutdownTimeout(20 * time.Second),
		ferry.ClientOptions(kgo.SessionTimeout(10*time.Second), kgo.HeartbeatInterval(300*time.Millisecond)),
	}
	if *static {
		opts = append(opts, ferry.ClientOptions(kgo.InstanceID(*instance)))
	}
	topicOpts := []ferry.TopicOption{ferry.MaxMessages(50), ferry.MaxWait(100 * time.Millisecond),
		ferry.Retry(ferry.ConstantBackoff(200 * time.Millisecond))}
	var fn ferry.ConsumerFunc
	switch m {
	case ExactlyOnce:
		opts = append(opts, ferry.TransactionalID("ferry-verify-"+*instance))
		topicOpts = append(topicOpts, ferry.WithDelivery(ferry.ExactlyOnce))
		fn = func(ctx context.Context, b *ferry.Batch) error {
			out := make([]*kgo.Record, len(b.Messages))
			for i, msg := range b.Messages {
				out[i] = &kgo.Record{Topic: *output, Key: msg.Value, Value: msg.Value}
			}
			time.Sleep(*work)
			return b.Produce(ctx, out...)
		}
	default:
		if m == AtMostOnce {
			topicOpts = append(topicOpts, ferry.WithDelivery(ferry.AtMostOnce))
		}
		f, err := os.OpenFile(*logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		fn = func(_ context.Context, b *ferry.Batch) error {
			var sb strings.Builder
			for _, msg := range b.Messages {
				sb.Write(msg.Value)
				sb.WriteByte('\n')
			}
			time.Sleep(*work) // the side effect happens mid-batch: kills land here
			if _, err := f.WriteString(sb.String()); err != nil {
				return err
			}
			return f.Sync()
		}
	}
	opts = append(opts, ferry.RouteFunc(*group, *input, fn, topicOpts...))
	app, err := ferry.New(opts...)
	if err != nil {
		return err
	}
	if err := app.Run(ctx); err != nil {
		return fmt.Errorf("worker %s: %w", *instance, err)
	}
	return nil
}
