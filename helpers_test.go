package ferry_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// cluster is the suite's cluster: FERRY_BROKERS when set, else embedded.
func cluster(t *testing.T, opts ...kfake.Opt) *ferrytest.Cluster {
	t.Helper()
	return ferrytest.New(t, opts...)
}

// embedded is an embedded cluster even when FERRY_BROKERS is set: for
// tests that inject faults through kfake.
func embedded(t *testing.T, opts ...kfake.Opt) *ferrytest.Cluster {
	t.Helper()
	return ferrytest.NewEmbedded(t, opts...)
}

func ctxFor(t *testing.T, d time.Duration) context.Context { return ferrytest.Context(t, d) }

func topic(t *testing.T, c *ferrytest.Cluster, partitions int32) string {
	t.Helper()
	return ferrytest.NewTopic(t, c, partitions)
}

func produceN(t *testing.T, c *ferrytest.Cluster, topic string, partition int32, n int) {
	t.Helper()
	ferrytest.Fill(t, c, topic, partition, n)
}

// logOf keeps, in order, what an app reported through a hook.
type logOf[T any] struct {
	mu    sync.Mutex
	items []T
}

func (l *logOf[T]) add(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.items = append(l.items, v)
}

// snapshot returns what was reported so far.
func (l *logOf[T]) snapshot() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.items)
}

// testLogger returns a logger and what it wrote, for assertions; the test
// shows what it wrote if it fails.
func testLogger(t *testing.T) (*slog.Logger, *ferrytest.Log) {
	l := &ferrytest.Log{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(l.String())
		}
	})
	return l.Logger(), l
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

// running is an app running in the background (ferrytest.Run).
type running struct {
	*ferrytest.Running
	app *ferry.App
}

func start(t *testing.T, opts ...ferry.Option) *running {
	t.Helper()
	app, err := ferry.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return &running{ferrytest.Run(t, app), app}
}

// stop cancels the app and returns Run's error.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	return r.Stop()
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
