package verify

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Worker runs one worker process of a verify run: a ferry app consuming the
// input topic in the given mode and recording every processing — for
// at-least-once and at-most-once as lines appended (and fsynced) to its log
// file, in the order the mode dictates relative to the offset commit; for
// exactly-once as one output record per input, produced in the transaction;
// for exactly-once into PostgreSQL as one row per input, inserted in the
// transaction that stores the offset.
func Worker(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", "", "seed brokers")
	mode := fs.String("mode", "alo", "amo, alo, eos or eos-db")
	input := fs.String("input", "", "input topic")
	output := fs.String("output", "", "output topic (eos)")
	group := fs.String("group", "", "consumer group")
	logPath := fs.String("log", "", "processing log (amo, alo)")
	instance := fs.String("instance", "", "worker name: transactional id, and static member id with -static")
	static := fs.Bool("static", false, "join as a static member: a restart takes the slot back at once")
	work := fs.Duration("work", 20*time.Millisecond, "simulated work per batch")
	postgres := fs.String("postgres", "", "PostgreSQL URL (eos-db)")
	rows := fs.String("rows", "", "table of rows, one per input (eos-db)")
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
	case ExactlyOnceDB:
		route, closeDB, err := rowsRoute(ctx, *postgres, *rows, *group, *input, *work, topicOpts...)
		if err != nil {
			return err
		}
		defer closeDB()
		opts = append(opts, route)
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
		var processed processedLog
		if m == ParallelAtLeastOnce {
			// Keys' messages run concurrently; each line carries when it
			// was processed, for the per-key order check.
			topicOpts = append(topicOpts, ferry.Parallel(32))
			processed.timed = true
		}
		processed.f = f
		fn = func(_ context.Context, b *ferry.Batch) error {
			time.Sleep(*work) // the side effect happens mid-batch: kills land here
			return processed.write(b.Messages)
		}
	}
	if fn != nil {
		opts = append(opts, ferry.RouteFunc(*group, *input, fn, topicOpts...))
	}
	app, err := ferry.New(opts...)
	if err != nil {
		return err
	}
	if err := app.Run(ctx); err != nil {
		return fmt.Errorf("worker %s: %w", *instance, err)
	}
	return nil
}

// processedLog appends one line per processed message to a worker's log
// and fsyncs it; safe for the concurrent batches of a parallel topic.
type processedLog struct {
	f     *os.File
	timed bool // "id time" lines, time in Unix nanoseconds, increasing
	mu    sync.Mutex
	last  int64
}

func (l *processedLog) write(msgs []*ferry.Message) error {
	var sb strings.Builder
	l.mu.Lock()
	for _, msg := range msgs {
		sb.Write(msg.Value)
		if l.timed {
			l.last = max(time.Now().UnixNano(), l.last+1)
			sb.WriteByte(' ')
			sb.WriteString(strconv.FormatInt(l.last, 10))
		}
		sb.WriteByte('\n')
	}
	_, err := l.f.WriteString(sb.String())
	l.mu.Unlock()
	if err != nil {
		return err
	}
	return l.f.Sync()
}
