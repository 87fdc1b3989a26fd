package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/twmb/franz-go/pkg/kgo"
)

// SlowCase is a workload of a handler that waits on I/O: every message
// costs Wait, and with Tail every hundredth costs TailWait instead (a
// heavy-tailed latency).
type SlowCase struct {
	Name     string
	Keys     int // distinct keys, repeating in turn
	Wait     time.Duration
	Tail     bool
	TailWait time.Duration
}

// SlowCases are the slow-handler workloads of `ferry bench -slow`.
var SlowCases = []SlowCase{
	{Name: "1 ms, 10,000 keys", Keys: 10000, Wait: time.Millisecond},
	{Name: "1 ms, 100 keys", Keys: 100, Wait: time.Millisecond},
	{Name: "1 ms, 1 key", Keys: 1, Wait: time.Millisecond},
	{Name: "1 ms, 1 % 50 ms, 10,000 keys", Keys: 10000, Wait: time.Millisecond, Tail: true, TailWait: 50 * time.Millisecond},
}

// work is the handler's wait for one message.
func (c SlowCase) work(m *kgo.Record) {
	if c.Tail && m.Offset%100 == 99 {
		time.Sleep(c.TailWait)
		return
	}
	time.Sleep(c.Wait)
}

// ProduceKeyed creates a one-partition topic and writes n small messages
// whose keys are 0 … keys−1 in turn.
func ProduceKeyed(ctx context.Context, brokers []string, topic string, n, keys int) error {
	if err := CreateTopic(ctx, brokers, topic, 1); err != nil {
		return err
	}
	cl, err := newClient(brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i % keys)), Value: []byte(strconv.Itoa(i))}
	}
	return cl.ProduceSync(ctx, recs...).FirstErr()
}

// SlowSequential is ferry at its defaults: one batch at a time per
// partition, the handler waiting on each message in turn.
func SlowSequential(ctx context.Context, brokers []string, topic, group string, n int, c SlowCase) (Result, error) {
	return slowFerry(ctx, "ferry sequential", brokers, topic, group, n, func(b *ferry.Batch) {
		for _, m := range b.Messages {
			c.work(m)
		}
	})
}

// SlowParallel is ferry's parallel mode: up to inFlight messages of the
// partition at once, one key at a time.
func SlowParallel(ctx context.Context, brokers []string, topic, group string, n, inFlight int, c SlowCase) (Result, error) {
	return slowFerry(ctx, "ferry Parallel("+strconv.Itoa(inFlight)+")", brokers, topic, group, n, func(b *ferry.Batch) {
		for _, m := range b.Messages {
			c.work(m)
		}
	}, ferry.Parallel(inFlight))
}

// SlowFanOut is what a user writes today without the parallel mode: inside
// Consume, one goroutine per key of the batch (its messages in order), and
// wait for all of them before returning.
func SlowFanOut(ctx context.Context, brokers []string, topic, group string, n int, c SlowCase) (Result, error) {
	return slowFerry(ctx, "fan-out per batch", brokers, topic, group, n, func(b *ferry.Batch) {
		byKey := map[string][]*kgo.Record{}
		for _, m := range b.Messages {
			byKey[string(m.Key)] = append(byKey[string(m.Key)], m)
		}
		var wg sync.WaitGroup
		for _, msgs := range byKey {
			wg.Go(func() {
				for _, m := range msgs {
					c.work(m)
				}
			})
		}
		wg.Wait()
	})
}

func slowFerry(ctx context.Context, name string, brokers []string, topic, group string, n int, handle func(*ferry.Batch), topicOpts ...ferry.TopicOption) (Result, error) {
	w := newWindow(name, n)
	app, err := ferry.New(
		ferry.Brokers(brokers...),
		ferry.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		ferry.Route(group, topic, func(*ferry.Claim) ferry.Consumer {
			w.assigned()
			return ferry.ConsumerFunc(func(_ context.Context, b *ferry.Batch) error {
				handle(b)
				w.add(len(b.Messages))
				return nil
			})
		}, topicOpts...),
	)
	if err != nil {
		return Result{}, err
	}
	return runUntil(ctx, app, w)
}

// SlowParallelConsumer runs Confluent's Parallel Consumer (Java, KEY
// ordering, concurrency inFlight) through script (scripts/parallel-consumer)
// on the case. Its window runs from its first message to its last; the JVM's
// start and the group join are not counted.
func SlowParallelConsumer(ctx context.Context, script string, brokers []string, topic, group string, n, inFlight int, c SlowCase) (Result, error) {
	tail := int64(0)
	if c.Tail {
		tail = c.TailWait.Milliseconds()
	}
	cmd := exec.CommandContext(ctx, script, strings.Join(brokers, ","), topic, group, strconv.Itoa(n), strconv.Itoa(inFlight),
		strconv.FormatInt(c.Wait.Milliseconds(), 10), strconv.FormatInt(tail, 10))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("Parallel Consumer: %v\n%s", err, errb.String())
	}
	var firstMs, lastMs int64
	if _, err := fmt.Sscan(out.String(), &firstMs, &lastMs); err != nil {
		return Result{}, fmt.Errorf("Parallel Consumer printed %q: %v", out.String(), err)
	}
	return Result{
		Name:     "Parallel Consumer KEY(" + strconv.Itoa(inFlight) + ")",
		Messages: n,
		First:    time.Duration(firstMs) * time.Millisecond,
		Elapsed:  time.Duration(lastMs) * time.Millisecond,
	}, nil
}
