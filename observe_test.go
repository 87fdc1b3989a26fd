package ferry_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/event"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// eventLog keeps every event an app reported, in order.
type eventLog = logOf[event.Event]

// eventsOf returns the events of one type, in order.
func eventsOf[T event.Event](l *eventLog) []T {
	var out []T
	for _, e := range l.snapshot() {
		if t, ok := e.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

func consumedCount(l *eventLog) int {
	n := 0
	for _, b := range eventsOf[event.BatchConsumed](l) {
		n += b.Count
	}
	return n
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := ferrytest.WaitFor(ctxFor(t, within), cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// X1: a known workload — 50 messages on two partitions, one message that
// fails twice and is dead-lettered, a second member joining, a shutdown —
// reports exactly the events it caused.
func TestEventsReportAKnownWorkload(t *testing.T) {
	s := newScenario(t, cluster(t), 2)
	tp, group := s.topic, s.group
	dlt := topic(t, s.c, 1)
	s.produce(0, 20)
	s.produce(1, 30)
	poison := errors.New("poison")
	consume := ferry.ConsumerFunc(func(_ context.Context, b *ferry.Batch) error {
		if m := b.Messages[0]; m.Partition == 0 && m.Offset == 3 {
			return poison
		}
		return nil
	})
	topicOpts := []ferry.TopicOption{ferry.MaxMessages(1), ferry.DeadLetter(dlt), ferry.MaxRetries(1),
		ferry.Retry(ferry.ConstantBackoff(50 * time.Millisecond))}
	var first, second eventLog
	app := s.start(ferry.OnEvent(first.add), s.route(consume, topicOpts...))

	waitUntil(t, 30*time.Second, "49 messages consumed and one dead letter", func() bool {
		return consumedCount(&first) == 49 && len(eventsOf[event.DeadLettered](&first)) == 1
	})
	s.waitCommitted(map[int32]int64{0: 20, 1: 30})
	// The broker may show the commit a moment before its answer reaches
	// the app.
	var stats ferry.Stats
	waitUntil(t, 10*time.Second, "stats without lag", func() bool {
		stats = app.app.Stats()
		if len(stats.Groups) != 1 || len(stats.Groups[0].Partitions) != 2 {
			return false
		}
		for _, p := range stats.Groups[0].Partitions {
			if p.Lag != 0 {
				return false
			}
		}
		return true
	})
	for _, p := range stats.Groups[0].Partitions {
		want := map[int32]int64{0: 20, 1: 30}[p.Partition]
		if p.EndOffset != want || p.ProcessedOffset != want || p.Lag != 0 || p.ProcessingLag != 0 {
			t.Errorf("X2: %s/%d stats %+v, want end and processed %d, no lag", p.Topic, p.Partition, p, want)
		}
	}

	// A second member takes one partition (cooperative-sticky); then the
	// first stops.
	s.start(ferry.OnEvent(second.add), s.route(consume, topicOpts...))
	waitUntil(t, 60*time.Second, "the rebalance", func() bool {
		return len(eventsOf[event.Revoked](&first)) == 1 && len(eventsOf[event.Assigned](&second)) > 0
	})
	s.stop(app)

	if got := consumedCount(&first); got != 49 {
		t.Errorf("BatchConsumed counted %d messages, want 49", got)
	}
	for _, b := range eventsOf[event.BatchConsumed](&first) {
		if b.Group != group || b.Topic != tp || b.Count != 1 || b.Attempt != 1 || b.Lag < 0 {
			t.Errorf("BatchConsumed %+v", b)
		}
	}
	failed := eventsOf[event.ConsumeFailed](&first)
	if len(failed) != 2 || failed[0].Attempt != 1 || failed[1].Attempt != 2 {
		t.Fatalf("ConsumeFailed: %+v, want attempts 1 and 2", failed)
	}
	for _, f := range failed {
		if f.Partition != 0 || f.FirstOffset != 3 || !errors.Is(f.Err, poison) {
			t.Errorf("ConsumeFailed %+v", f)
		}
	}
	want := event.RetryScheduled{Group: group, Topic: tp, Partition: 0, Offset: 3, Attempt: 2, Delay: 50 * time.Millisecond}
	if got := eventsOf[event.RetryScheduled](&first); len(got) != 1 || got[0] != want {
		t.Errorf("RetryScheduled: %+v, want %+v", got, want)
	}
	if p, r := eventsOf[event.Paused](&first), eventsOf[event.Resumed](&first); len(p) != 1 || len(r) != 1 {
		t.Errorf("Paused %+v, Resumed %+v: want one each", p, r)
	}
	dead := eventsOf[event.DeadLettered](&first)
	if d := dead[0]; d.Partition != 0 || d.Offset != 3 || d.Attempts != 2 || d.DeadLetterTopic != dlt || !errors.Is(d.Err, poison) {
		t.Errorf("DeadLettered %+v", d)
	}
	// Partition 0's story, in order.
	var story []string
	for _, e := range first.snapshot() {
		switch e := e.(type) {
		case event.ConsumeFailed:
			story = append(story, "failed")
		case event.RetryScheduled:
			story = append(story, "retry")
		case event.Paused:
			story = append(story, "paused")
		case event.Resumed:
			story = append(story, "resumed")
		case event.DeadLettered:
			story = append(story, "dead-lettered")
		case event.BatchConsumed:
			if e.Partition == 0 && e.FirstOffset == 4 {
				story = append(story, "consumed 4")
			}
		}
	}
	if got, want := strings.Join(story, ", "), "failed, retry, paused, resumed, failed, dead-lettered, consumed 4"; got != want {
		t.Errorf("partition 0: %s\nwant %s", got, want)
	}

	assigned := eventsOf[event.Assigned](&first)
	if len(assigned[0].Partitions[tp]) != 2 {
		t.Errorf("first Assigned %+v, want both partitions", assigned[0])
	}
	if r := eventsOf[event.Revoked](&first); len(r[0].Partitions[tp]) != 1 {
		t.Errorf("Revoked %+v, want one partition", r[0])
	}
	final := map[int32]int64{}
	for _, cm := range eventsOf[event.Committed](&first) {
		if cm.Err != nil {
			t.Errorf("Committed %+v", cm)
		}
		for p, o := range cm.Offsets[tp] {
			final[p] = max(final[p], o)
		}
	}
	if final[0] != 20 || final[1] != 30 {
		t.Errorf("Committed offsets reach %v, want 20 and 30", final)
	}
	if sd := eventsOf[event.Shutdown](&first); len(sd) != 1 || sd[0].Err != nil || sd[0].Group != group {
		t.Errorf("Shutdown: %+v", sd)
	}
	if len(eventsOf[event.Lost](&first))+len(eventsOf[event.FetchFailed](&first)) != 0 {
		t.Errorf("unexpected Lost or FetchFailed events")
	}
}

// X2: lag comes from the fetches — end offset minus processed and minus
// committed — in the stats and in each BatchConsumed event.
func TestStatsAndEventsReportLag(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 50)
	release := make(chan struct{})
	var events eventLog
	app := s.start(ferry.OnEvent(events.add), s.route(func(context.Context, *ferry.Batch) error {
		<-release
		return nil
	}, ferry.MaxMessages(10)))

	var p ferry.PartitionStats
	waitUntil(t, 30*time.Second, "the first fetch", func() bool {
		st := app.app.Stats()
		if len(st.Groups[0].Partitions) == 0 {
			return false
		}
		p = st.Groups[0].Partitions[0]
		return p.EndOffset == 50
	})
	if p.ProcessedOffset != 0 || p.ProcessingLag != 50 {
		t.Errorf("while the first batch runs: %+v, want processed 0, processing lag 50", p)
	}
	close(release)
	waitUntil(t, 30*time.Second, "everything processed and committed", func() bool {
		p = app.app.Stats().Groups[0].Partitions[0]
		return p.Lag == 0 && p.ProcessingLag == 0
	})
	if p.EndOffset != 50 || p.CommittedOffset != 50 || p.ProcessedOffset != 50 {
		t.Errorf("after: %+v", p)
	}
	var lags []int64
	for _, b := range eventsOf[event.BatchConsumed](&events) {
		lags = append(lags, b.Lag)
	}
	if got, want := lags, []int64{40, 30, 20, 10, 0}; !slices.Equal(got, want) {
		t.Errorf("BatchConsumed lags %v, want %v", got, want)
	}
}

func httpGet(t *testing.T, h http.Handler, path string) (int, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// X4: ready once the group is joined and assigned; unhealthy while a
// partition has been failing longer than FailingTimeout, healthy again once
// it succeeds; neither once stopped.
func TestHealthFollowsJoinAndFailures(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	tp := s.topic
	s.produce(0, 5)
	var failing atomic.Bool
	failing.Store(true)
	// New and Run by hand: the test asks before Run and after it returns.
	app, err := ferry.New(opts(t, s.c, ferry.FailingTimeout(500*time.Millisecond),
		s.route(func(context.Context, *ferry.Batch) error {
			if failing.Load() {
				return errors.New("downstream unavailable")
			}
			return nil
		}, ferry.Retry(ferry.ConstantBackoff(50*time.Millisecond))))...)
	if err != nil {
		t.Fatal(err)
	}
	h := app.HealthHandler()
	if err := app.Ready(); !errors.Is(err, ferry.ErrNotReady) {
		t.Errorf("Ready before Run: %v", err)
	}
	if code, _ := httpGet(t, h, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before Run: %d", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitUntil(t, 30*time.Second, "ready", func() bool { return app.Ready() == nil })
	if code, body := httpGet(t, h, "/readyz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/readyz: %d %q", code, body)
	}
	waitUntil(t, 30*time.Second, "unhealthy", func() bool { return app.Healthy() != nil })
	err = app.Healthy()
	if !errors.Is(err, ferry.ErrUnhealthy) || !strings.Contains(err.Error(), tp+"/0 failing since") {
		t.Errorf("Healthy: %v", err)
	}
	if code, body := httpGet(t, h, "/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, tp+"/0") {
		t.Errorf("/healthz: %d %q", code, body)
	}
	failing.Store(false)
	waitUntil(t, 30*time.Second, "healthy again", func() bool { return app.Healthy() == nil })
	if code, _ := httpGet(t, h, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	if code, _ := httpGet(t, h, "/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the health handler: %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
	if app.Ready() == nil || app.Healthy() == nil {
		t.Errorf("a stopped app reports ready or healthy")
	}
}

// X4: fetches that go unanswered for FetchStallTimeout make the app
// unhealthy; answered again, it is healthy.
func TestHealthReportsStalledFetching(t *testing.T) {
	s := newScenario(t, embedded(t), 1) // blocks fetches through kfake
	c := s.c
	s.produce(0, 5)
	app := s.start(ferry.FetchStallTimeout(time.Second), s.route(s.rec.fn()))
	s.waitSeen(5)
	if err := app.app.Healthy(); err != nil {
		t.Fatalf("healthy while fetching: %v", err)
	}
	var stalled atomic.Bool
	stalled.Store(true)
	c.Fake.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		if !stalled.Load() {
			c.Fake.DropControl()
			return nil, nil, false
		}
		c.Fake.KeepControl()
		return nil, errors.New("fetch refused"), true
	})
	waitUntil(t, 30*time.Second, "unhealthy", func() bool { return app.app.Healthy() != nil })
	if err := app.app.Healthy(); !strings.Contains(err.Error(), "no fetch answered since") {
		t.Errorf("Healthy: %v", err)
	}
	stalled.Store(false)
	waitUntil(t, 30*time.Second, "healthy again", func() bool { return app.app.Healthy() == nil })
}

// franz-go's own log lines reach the app's logger: its info lines at debug.
func TestFranzGoLogsReachTheLogger(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 1)
	log, sink := testLogger(t) // at debug
	s.start(ferry.Logger(log), s.route(s.rec.fn()))
	s.waitSeen(1)
	if out := sink.String(); !strings.Contains(out, `level=DEBUG msg="franz-go: `) || !strings.Contains(out, "source=franz-go") {
		t.Errorf("no franz-go lines at debug in the log:\n%.2000s", out)
	}
}

// X1: a lost assignment and a fetch error franz-go does not retry are
// events too; the member is ready again once it is reassigned (X4).
func TestLostAndFetchFailedEvents(t *testing.T) {
	s := newScenario(t, embedded(t), 1) // loses the assignment and fails fetches through kfake
	c, tp, group := s.c, s.topic, s.group
	s.produce(0, 5)
	var events eventLog
	app := s.start(ferry.OnEvent(events.add),
		ferry.ClientOptions(kgo.HeartbeatInterval(100*time.Millisecond)), s.route(s.rec.fn()))
	s.waitSeen(5)

	loseOnce(c, group, false)
	waitUntil(t, 30*time.Second, "the loss and the next assignment", func() bool {
		lost := eventsOf[event.Lost](&events)
		return len(lost) == 1 && len(eventsOf[event.Assigned](&events)) == 2 && app.app.Ready() == nil
	})
	if lost := eventsOf[event.Lost](&events)[0]; lost.Group != group || !slices.Equal(lost.Partitions[tp], []int32{0}) {
		t.Errorf("Lost %+v", lost)
	}

	var failing atomic.Bool
	failing.Store(true)
	c.Fake.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !failing.Load() {
			c.Fake.DropControl()
			return nil, nil, false
		}
		c.Fake.KeepControl()
		r := req.(*kmsg.FetchRequest)
		resp := r.ResponseKind().(*kmsg.FetchResponse)
		for _, rt := range r.Topics {
			t := kmsg.NewFetchResponseTopic()
			t.Topic, t.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				p := kmsg.NewFetchResponseTopicPartition()
				p.Partition, p.ErrorCode = rp.Partition, kerr.TopicAuthorizationFailed.Code
				t.Partitions = append(t.Partitions, p)
			}
			resp.Topics = append(resp.Topics, t)
		}
		return resp, nil, true
	})
	// (The loss was reported as a fetch error of the whole client too,
	// with no topic: kgo's way to tell its poller the group failed.)
	var failed event.FetchFailed
	waitUntil(t, 30*time.Second, "a fetch error of the topic", func() bool {
		for _, f := range eventsOf[event.FetchFailed](&events) {
			if f.Topic == tp {
				failed = f
				return true
			}
		}
		return false
	})
	failing.Store(false)
	if failed.Partition != 0 || !errors.Is(failed.Err, kerr.TopicAuthorizationFailed) {
		t.Errorf("FetchFailed %+v", failed)
	}
}

// X1 under exactly-once: a failed round, its retry and the committed
// transactions are events too, and the lag reaches zero (X2).
func TestEventsOfAnExactlyOnceGroup(t *testing.T) {
	s := newScenario(t, cluster(t), 1) // its topic is the input
	in, out := s.topic, topic(t, s.c, 1)
	s.produce(0, 20)
	var failed atomic.Bool
	before := failOnceAfterFive(&failed, nil)
	var events eventLog
	app := s.startTransactional(ferry.OnEvent(events.add), s.route(copier(out, before),
		ferry.WithDelivery(ferry.ExactlyOnce), ferry.MaxMessages(10), ferry.Retry(ferry.ConstantBackoff(100*time.Millisecond))))
	waitOutputs(t, s.c, out, 20)
	waitUntil(t, 30*time.Second, "the last transaction's offsets", func() bool {
		for _, cm := range eventsOf[event.Committed](&events) {
			if cm.Reason == "transaction" && cm.Offsets[in][0] == 20 {
				return true
			}
		}
		return false
	})
	waitUntil(t, 10*time.Second, "no lag", func() bool {
		ps := app.app.Stats().Groups[0].Partitions
		return len(ps) == 1 && ps[0].Lag == 0 && ps[0].ProcessingLag == 0
	})
	s.stop(app)
	if f := eventsOf[event.ConsumeFailed](&events); len(f) != 1 || f[0].FirstOffset != 0 || f[0].Attempt != 1 {
		t.Errorf("ConsumeFailed %+v", f)
	}
	if r := eventsOf[event.RetryScheduled](&events); len(r) != 1 || r[0].Offset != 0 || r[0].Attempt != 2 || r[0].Delay != 100*time.Millisecond {
		t.Errorf("RetryScheduled %+v", r)
	}
	if p, r := eventsOf[event.Paused](&events), eventsOf[event.Resumed](&events); len(p) != 1 || len(r) != 1 {
		t.Errorf("Paused %+v, Resumed %+v: want one each", p, r)
	}
	if n := consumedCount(&events); n != 20 {
		t.Errorf("BatchConsumed counted %d messages, want 20", n)
	}
}
