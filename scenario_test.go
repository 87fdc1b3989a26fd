package ferry_test

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
)

// scenario is the world one test acts in: a cluster, a fresh topic, a fresh
// consumer group and a recorder of every batch consumed. A test reads as its
// behaviour:
//
//	s := newScenario(t, cluster(t), 1)
//	s.produce(0, 250)
//	app := s.start(s.route(s.rec.fn(), ferry.MaxMessages(100)))
//	s.waitSeen(250)
//	s.stop(app)
//	s.wantCommitted(map[int32]int64{0: 250})
//
// Use embedded(t) instead of cluster(t) for tests that inject faults through
// kfake, and s.c, s.topic, s.group where a test needs the parts.
type scenario struct {
	t     *testing.T
	c     *ferrytest.Cluster
	topic string
	group string
	rec   *recorder
	// reach: what its apps need, besides the suite's base options, to
	// reach c (a secured cluster's TLS and SASL options).
	reach []ferry.Option
}

// newScenario creates a topic of the given partitions on c and names a group.
func newScenario(t *testing.T, c *ferrytest.Cluster, partitions int32) *scenario {
	t.Helper()
	return &scenario{t: t, c: c, topic: topic(t, c, partitions), group: ferrytest.UniqueName("g"), rec: newRecorder()}
}

// topicWithLimit creates a one-partition topic with the given
// max.message.bytes (0: the cluster's default).
func topicWithLimit(t *testing.T, c *ferrytest.Cluster, maxMessageBytes int) string {
	t.Helper()
	name := ferrytest.UniqueName("t")
	var cfg map[string]string
	if maxMessageBytes > 0 {
		cfg = map[string]string{"max.message.bytes": strconv.Itoa(maxMessageBytes)}
	}
	if err := c.CreateTopicWithConfigs(ctxFor(t, 20*time.Second), name, 1, cfg); err != nil {
		t.Fatal(err)
	}
	return name
}

// newScenarioWithLimit is a scenario on a one-partition topic whose
// max.message.bytes is maxMessageBytes.
func newScenarioWithLimit(t *testing.T, c *ferrytest.Cluster, maxMessageBytes int) *scenario {
	t.Helper()
	return &scenario{t: t, c: c, topic: topicWithLimit(t, c, maxMessageBytes), group: ferrytest.UniqueName("g"), rec: newRecorder()}
}

// anotherGroup returns a scenario on the same topic with a consumer group and
// a recorder of its own.
func (s *scenario) anotherGroup() *scenario {
	return &scenario{t: s.t, c: s.c, topic: s.topic, group: ferrytest.UniqueName("g"), rec: newRecorder(), reach: s.reach}
}

// messages returns a keeper of every message consumed that records through
// the scenario's recorder.
func (s *scenario) messages() *messages { return &messages{rec: s.rec} }

// produce writes n messages with values "0", "1", … to one partition.
func (s *scenario) produce(partition int32, n int) {
	s.t.Helper()
	produceN(s.t, s.c, s.topic, partition, n)
}

// produceEach writes n messages to each of the first partitions partitions.
func (s *scenario) produceEach(partitions int32, n int) {
	s.t.Helper()
	for p := range partitions {
		s.produce(p, n)
	}
}

// route routes the scenario's topic, in its group, to fn.
func (s *scenario) route(fn ferry.ConsumerFunc, opts ...ferry.TopicOption) ferry.Option {
	return ferry.RouteFunc(s.group, s.topic, fn, opts...)
}

// routeTo routes the scenario's topic, in its group, to consumers built by
// newConsumer.
func (s *scenario) routeTo(newConsumer ferry.NewConsumer, opts ...ferry.TopicOption) ferry.Option {
	return ferry.Route(s.group, s.topic, newConsumer, opts...)
}

// start runs an app with the suite's base options and more; it is stopped
// at the end of the test if the test does not stop it.
func (s *scenario) start(more ...ferry.Option) *running {
	s.t.Helper()
	return start(s.t, opts(s.t, s.c, append(slices.Clone(s.reach), more...)...)...)
}

// startTransactional runs an app with a transactional id of its own, as
// exactly-once topics need.
func (s *scenario) startTransactional(more ...ferry.Option) *running {
	s.t.Helper()
	return s.start(append([]ferry.Option{ferry.TransactionalID(ferrytest.UniqueName("txn"))}, more...)...)
}

// restart runs the group again with a plain consumer until it has consumed
// n messages, stops it, and returns the first offset it was handed: where
// the group resumed.
func (s *scenario) restart(n int) int64 {
	s.t.Helper()
	rec := newRecorder()
	app := s.start(s.route(rec.fn()))
	rec.waitDistinct(s.t, s.topic, n, 30*time.Second)
	s.stop(app)
	return rec.snapshot()[0].offsets[0]
}

// rerun runs the group again with a plain consumer (with opts) until its
// committed offset of partition 0 is end, stops it, and returns the offsets
// it processed: what the group had not finished before.
func (s *scenario) rerun(end int64, opts ...ferry.TopicOption) []int64 {
	s.t.Helper()
	again := newRecorder()
	app := s.start(s.route(again.fn(), opts...))
	s.waitCommitted(map[int32]int64{0: end})
	s.stop(app)
	return again.offsets()
}

// stop stops an app and fails the test if Run returned an error.
func (s *scenario) stop(app *running) {
	s.t.Helper()
	if err := app.stop(s.t); err != nil {
		s.t.Fatalf("Run: %v", err)
	}
}

// waitSeen waits until the recorder saw n distinct messages of the topic.
func (s *scenario) waitSeen(n int) {
	s.t.Helper()
	s.rec.waitDistinct(s.t, s.topic, n, 30*time.Second)
}

// waitUntil waits up to 30 s until cond holds, failing the test with "never
// " + what otherwise.
func (s *scenario) waitUntil(what string, cond func() bool) {
	s.t.Helper()
	if err := ferrytest.WaitFor(ctxFor(s.t, 30*time.Second), cond); err != nil {
		s.t.Fatal("never " + what)
	}
}

// waitClosed waits up to 30 s until ch is closed, failing the test with
// "never " + what otherwise.
func (s *scenario) waitClosed(what string, ch <-chan struct{}) {
	s.t.Helper()
	waitClosed(s.t, ch, 30*time.Second, "never "+what)
}

// recordThen returns a consumer that records each batch, then runs fn.
func (s *scenario) recordThen(fn ferry.ConsumerFunc) ferry.ConsumerFunc {
	return func(ctx context.Context, b *ferry.Batch) error {
		s.rec.record(b)
		return fn(ctx, b)
	}
}

// committed returns the group's committed offsets of the topic now. It may
// run on a consumer's goroutine.
func (s *scenario) committed() map[int32]int64 {
	s.t.Helper()
	return committedOf(s.t, s.c, s.group, s.topic)
}

// waitCommittedAt waits until one partition's committed offset is want.
func (s *scenario) waitCommittedAt(partition int32, want int64) {
	s.t.Helper()
	waitCommitted(s.t, s.c, s.group, s.topic, partition, want)
}

// waitCommitted waits until the group's committed offsets of the topic are
// exactly want (partitions absent from want have no commit).
func (s *scenario) waitCommitted(want map[int32]int64) {
	s.t.Helper()
	var got map[int32]int64
	if err := ferrytest.WaitFor(ctxFor(s.t, 20*time.Second), func() bool {
		got, _ = s.c.Committed(ctxFor(s.t, 5*time.Second), s.group, s.topic)
		return maps.Equal(got, want)
	}); err != nil {
		s.t.Fatalf("committed offsets %v, want %v", got, want)
	}
}

// wantCommitted checks the group's committed offsets of the topic now.
func (s *scenario) wantCommitted(want map[int32]int64) {
	s.t.Helper()
	if got := s.committed(); !maps.Equal(got, want) {
		s.t.Fatalf("committed offsets %v, want %v", got, want)
	}
}
