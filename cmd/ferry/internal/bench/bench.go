// Package bench measures ferry's consumer runtime against a raw franz-go poll
// loop on the same cluster and topic, in one run. It backs `ferry bench`.
package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/event"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Result is one measured consumption of the whole topic. A contender run in
// a process of its own prints it as JSON (Child reads it back).
type Result struct {
	Name         string        `json:"name"`
	Messages     int           `json:"messages"`
	Elapsed      time.Duration `json:"elapsed_ns"`       // client start → last message processed
	Mallocs      uint64        `json:"mallocs"`          // heap allocations in that window, this process
	First        time.Duration `json:"join_ns"`          // client start → first partition assigned (the group join)
	FirstMessage time.Duration `json:"first_message_ns"` // client start → first message handed to the consumer
	CPU          time.Duration `json:"cpu_ns"`           // CPU time of the process (user+sys) in the window
	PeakRSS      int64         `json:"peak_rss_bytes"`   // the process's peak resident set (0: shared with others, not measured)
}

// CPUPerMsg is this process's CPU time per message: unlike msgs/s it hardly
// depends on what else the machine is doing.
func (r Result) CPUPerMsg() time.Duration { return r.CPU / time.Duration(r.Messages) }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Rate is messages per second from the first partition assignment to the
// last message processed: the consuming rate, fetches included, without the
// group join.
func (r Result) Rate() float64 { return float64(r.Messages) / (r.Elapsed - r.First).Seconds() }

// AllocsPerMsg is heap allocations per message.
func (r Result) AllocsPerMsg() float64 { return float64(r.Mallocs) / float64(r.Messages) }

// Produce creates topic with the given partitions and writes n messages of
// size random bytes, spread evenly: all the same value (which compresses to
// almost nothing, so fetches hold ~1 M records), or with distinct, distinct
// random values (incompressible, like most real payloads).
func Produce(ctx context.Context, brokers []string, topic string, partitions int32, n, size int, distinct bool) error {
	cl, err := newClient(brokers,
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20),
		kgo.MaxBufferedRecords(100_000),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := CreateTopic(ctx, brokers, topic, partitions); err != nil {
		return err
	}
	pool := make([]byte, size)
	if distinct {
		// Values are disjoint windows of a 64 MiB random pool: no two
		// in one producer batch are alike.
		pool = make([]byte, max(64<<20, size))
	}
	_, _ = rand.Read(pool)
	var failed atomic.Value
	var wg sync.WaitGroup
	for i := range n {
		at := (i * size) % (len(pool) - size + 1)
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: pool[at : at+size]}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return err
	}
	return nil
}

// window measures the time and allocations from a contender's start to
// its n-th message. Both contenders join a fresh group, so both pay the same
// join; large runs make it negligible.
type window struct {
	n       int64
	count   atomic.Int64
	first   atomic.Int64
	firstM  atomic.Int64
	start   time.Time
	cpu     time.Duration
	mallocs uint64
	done    chan Result
	name    string
}

func newWindow(name string, n int) *window {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return &window{n: int64(n), done: make(chan Result, 1), name: name, start: time.Now(), cpu: cpuTime(), mallocs: ms.Mallocs}
}

// assigned notes the first partition assignment.
func (w *window) assigned() {
	w.first.CompareAndSwap(0, int64(time.Since(w.start)))
}

func (w *window) add(k int) {
	w.assigned()
	w.firstM.CompareAndSwap(0, int64(time.Since(w.start)))
	if got := w.count.Add(int64(k)); got >= w.n && got-int64(k) < w.n {
		elapsed := time.Since(w.start)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		w.done <- Result{Name: w.name, Messages: int(w.n), Elapsed: elapsed, Mallocs: ms.Mallocs - w.mallocs, First: time.Duration(w.first.Load()), FirstMessage: time.Duration(w.firstM.Load()), CPU: cpuTime() - w.cpu}
	}
}

// touch does the trivial per-message work both contenders do.
func touch(recs []*kgo.Record) int {
	n := 0
	for _, r := range recs {
		n += len(r.Value)
	}
	return n
}

var sink atomic.Int64

// Contender says how a contender consumes: the group protocol, and the
// work its consumer does per message batch.
type Contender struct {
	// KIP848 joins with the consumer group protocol of KIP-848 instead of
	// the classic one.
	KIP848 bool
	// Work is time the consumer spends per batch of up to 100 messages,
	// standing for a handler that is slower than the fetches.
	Work time.Duration
	// TopicOptions are extra ferry options for the topic.
	TopicOptions []ferry.TopicOption
}

func (c Contender) clientOpts() []kgo.Opt {
	if !c.KIP848 {
		return nil
	}
	return []kgo.Opt{kgo.ServerSideBalancer(), kgo.Balancers(kgo.CooperativeStickyBalancer(), kgo.StickyBalancer())}
}

// rawWorkers is how many partitions the raw loop works on at once when
// Work is set: ferry's default Concurrency.
const rawWorkers = 5

// Raw consumes the topic with a plain franz-go loop: PollFetches, then
// MarkCommitRecords of each partition's last record, with AutoCommitMarks.
// With Work, each poll's partitions are worked on by up to five goroutines
// (ferry's default concurrency), each spending Work per 100 records, and
// the loop polls again when all are done.
func Raw(ctx context.Context, brokers []string, topic, group string, n int, c Contender) (Result, error) {
	w := newWindow("franz-go poll loop", n)
	cl, err := newClient(brokers, append([]kgo.Opt{
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.AutoCommitMarks(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { w.assigned() }),
	}, c.clientOpts()...)...)
	if err != nil {
		return Result{}, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	sem := make(chan struct{}, rawWorkers)
	var wg sync.WaitGroup
	for {
		select {
		case r := <-w.done:
			return r, nil
		default:
		}
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			if c.Work == 0 {
				sink.Add(int64(touch(p.Records)))
				cl.MarkCommitRecords(p.Records[len(p.Records)-1])
				w.add(len(p.Records))
				return
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				for recs := p.Records; len(recs) > 0; {
					k := min(len(recs), 100)
					sink.Add(int64(touch(recs[:k])))
					time.Sleep(c.Work)
					cl.MarkCommitRecords(recs[k-1])
					w.add(k)
					recs = recs[k:]
				}
			}()
		})
		wg.Wait()
	}
}

// Ferry consumes the topic with a ferry App at its defaults (at-least-once,
// batches of 100, 5 workers) and a trivial consumer, which spends c.Work
// per batch.
func Ferry(ctx context.Context, brokers []string, topic, group string, n int, c Contender) (Result, error) {
	return FerryWith(ctx, "ferry at-least-once", brokers, topic, group, n, nil, c)
}

// FerryWith is Ferry with more App options (an event subscriber, say),
// reported under name.
func FerryWith(ctx context.Context, name string, brokers []string, topic, group string, n int, appOpts []ferry.Option, c Contender) (Result, error) {
	w := newWindow(name, n)
	opts := []ferry.Option{
		ferry.Brokers(brokers...),
		ferry.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		ferry.ClientOptions(c.clientOpts()...),
		ferry.Route(group, topic, func(*ferry.Claim) ferry.Consumer {
			w.assigned()
			return ferry.ConsumerFunc(func(_ context.Context, b *ferry.Batch) error {
				sink.Add(int64(touch(b.Messages)))
				if c.Work > 0 {
					time.Sleep(c.Work)
				}
				w.add(len(b.Messages))
				return nil
			})
		}, c.TopicOptions...),
	}
	app, err := ferry.New(append(opts, appOpts...)...)
	if err != nil {
		return Result{}, err
	}
	return runUntil(ctx, app, w)
}

// CountEvents is the cheapest useful event subscriber: it counts each kind
// of event and the messages consumed. Its cost is what reporting costs.
func CountEvents() func(event.Event) {
	var batches, messages, others atomic.Int64
	return func(e event.Event) {
		switch e := e.(type) {
		case event.BatchConsumed:
			batches.Add(1)
			messages.Add(int64(e.Count))
		default:
			others.Add(1)
		}
	}
}

// runUntil runs app until its window has seen all its messages.
func runUntil(ctx context.Context, app *ferry.App, w *window) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- app.Run(ctx) }()
	select {
	case r := <-w.done:
		cancel()
		return r, <-runErr
	case err := <-runErr:
		return Result{}, fmt.Errorf("%s stopped early: %v", w.name, err)
	}
}
