package ferry_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// cluster starts the suite's cluster: FERRY_BROKERS when set, else embedded.
func cluster(t *testing.T, opts ...kfake.Opt) *ferrytest.Cluster {
	t.Helper()
	c, err := ferrytest.Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// embedded starts an embedded cluster even when FERRY_BROKERS is set: for
// tests that inject faults through kfake.
func embedded(t *testing.T, opts ...kfake.Opt) *ferrytest.Cluster {
	t.Helper()
	c, err := ferrytest.StartEmbedded(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func topic(t *testing.T, c *ferrytest.Cluster, partitions int32) string {
	t.Helper()
	name := ferrytest.UniqueName("t")
	if err := c.CreateTopic(ctxFor(t, 20*time.Second), name, partitions); err != nil {
		t.Fatal(err)
	}
	return name
}

func produceN(t *testing.T, c *ferrytest.Cluster, topic string, partition int32, n int) {
	t.Helper()
	if _, err := c.ProduceN(ctxFor(t, 30*time.Second), topic, partition, n); err != nil {
		t.Fatal(err)
	}
}

// testLogger writes to the test log when -v, else discards, and keeps a copy
// for assertions.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func testLogger(t *testing.T) (*slog.Logger, *logSink) {
	sink := &logSink{}
	var w io.Writer = sink
	if testing.Verbose() && os.Getenv("FERRY_TEST_LOG") != "" {
		w = io.MultiWriter(sink, os.Stderr)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), sink
}

// delivery is one batch as a consumer saw it.
type delivery struct {
	topic     string
	partition int32
	offsets   []int64
	attempt   int
	at        time.Time
}

// recorder records every batch handed to any of its consumers.
type recorder struct {
	mu      sync.Mutex
	batches []delivery
	seen    map[string]map[int32]map[int64]int // topic → partition → offset → times
	changed chan struct{}
}

func newRecorder() *recorder {
	return &recorder{seen: make(map[string]map[int32]map[int64]int), changed: make(chan struct{}, 1)}
}

func (r *recorder) record(b *ferry.Batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := delivery{topic: b.Topic, partition: b.Partition, attempt: b.Attempt, at: time.Now()}
	for _, m := range b.Messages {
		d.offsets = append(d.offsets, m.Offset)
		if r.seen[m.Topic] == nil {
			r.seen[m.Topic] = make(map[int32]map[int64]int)
		}
		if r.seen[m.Topic][m.Partition] == nil {
			r.seen[m.Topic][m.Partition] = make(map[int64]int)
		}
		r.seen[m.Topic][m.Partition][m.Offset]++
	}
	r.batches = append(r.batches, d)
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// distinct counts distinct offsets seen for a topic.
func (r *recorder) distinct(topic string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, offs := range r.seen[topic] {
		n += len(offs)
	}
	return n
}

// duplicates counts extra deliveries of already seen offsets.
func (r *recorder) duplicates(topic string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, offs := range r.seen[topic] {
		for _, k := range offs {
			n += k - 1
		}
	}
	return n
}

// times reports how often one offset was delivered.
func (r *recorder) times(topic string, partition int32, offset int64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[topic][partition][offset]
}

// sawAttempt reports whether some batch was delivered with Attempt n.
func (r *recorder) sawAttempt(n int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.batches {
		if d.attempt == n {
			return true
		}
	}
	return false
}

func (r *recorder) snapshot() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.batches...)
}

// waitDistinct waits until n distinct offsets of topic were seen.
func (r *recorder) waitDistinct(t *testing.T, topic string, n int, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for r.distinct(topic) < n {
		select {
		case <-r.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("saw %d distinct messages of %s, want %d", r.distinct(topic), topic, n)
		}
	}
}

func (r *recorder) fn() ferry.ConsumerFunc {
	return func(_ context.Context, b *ferry.Batch) error {
		r.record(b)
		return nil
	}
}

// running starts app.Run in the background; stop cancels it and returns
// Run's error.
type running struct {
	app    *ferry.App
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, opts ...ferry.Option) *running {
	t.Helper()
	app, err := ferry.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{app: app, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(90 * time.Second):
			t.Error("app did not stop")
		}
	})
	return r
}

func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // let Cleanup see it too
		return err
	case <-time.After(90 * time.Second):
		t.Fatal("app did not stop within 90s")
		return nil
	}
}

// base returns options every test app uses.
func base(t *testing.T, c *ferrytest.Cluster) []ferry.Option {
	log, _ := testLogger(t)
	return []ferry.Option{
		ferry.Brokers(c.Brokers()...),
		ferry.Logger(log),
		ferry.CommitInterval(200 * time.Millisecond),
		ferry.ClientOptions(kgo.SessionTimeout(6 * time.Second)),
	}
}

func opts(t *testing.T, c *ferrytest.Cluster, more ...ferry.Option) []ferry.Option {
	return append(base(t, c), more...)
}
