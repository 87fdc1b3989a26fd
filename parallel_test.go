package ferry_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/event"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/ferrykit/ferry/offsets"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produceKeyed writes one message per key to partition 0 of the scenario's
// topic, with values "0", "1", …; a key "" is a nil key.
func (s *scenario) produceKeyed(keys ...string) {
	s.t.Helper()
	recs := make([]*kgo.Record, len(keys))
	for i, k := range keys {
		recs[i] = &kgo.Record{Partition: 0, Value: []byte(strconv.Itoa(i))}
		if k != "" {
			recs[i].Key = []byte(k)
		}
	}
	if err := s.c.Produce(ctxFor(s.t, 30*time.Second), s.topic, recs...); err != nil {
		s.t.Fatal(err)
	}
}

// wantOnlyDeadLetter fails the test unless dead holds one message: the one
// at offset of the input.
func wantOnlyDeadLetter(t *testing.T, dead []*kgo.Record, offset int64) {
	t.Helper()
	var from []string
	for _, r := range dead {
		from = append(from, header(r, ferry.HeaderOriginalOffset))
	}
	if len(dead) != 1 || from[0] != strconv.FormatInt(offset, 10) {
		t.Fatalf("dead-letter topic holds messages of offsets %v, want offset %d only", from, offset)
	}
}

// distinctKeys returns n keys, k0 … k<n-1>: one message each.
func distinctKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	return keys
}

// lanesProbe watches a parallel consumer: how many messages run at once,
// whether two batches of one key ever overlap, and the order each key's
// messages ran in.
type lanesProbe struct {
	mu       sync.Mutex
	inflight int
	maxIn    int
	running  map[string]bool
	order    map[string][]int64
	overlap  []string
	mixed    []string
}

func newLanesProbe() *lanesProbe {
	return &lanesProbe{running: map[string]bool{}, order: map[string][]int64{}}
}

// run wraps a handler: it records the batch around fn.
func (p *lanesProbe) run(b *ferry.Batch, fn func()) {
	key := string(b.Messages[0].Key)
	keyed := b.Messages[0].Key != nil
	p.mu.Lock()
	for _, m := range b.Messages {
		if string(m.Key) != key || (m.Key != nil) != keyed {
			p.mixed = append(p.mixed, fmt.Sprintf("batch mixes keys %q and %q", key, m.Key))
		}
		p.order[key] = append(p.order[key], m.Offset)
	}
	if keyed && p.running[key] {
		p.overlap = append(p.overlap, key)
	}
	p.running[key] = keyed
	p.inflight += len(b.Messages)
	p.maxIn = max(p.maxIn, p.inflight)
	p.mu.Unlock()
	fn()
	p.mu.Lock()
	p.running[key] = false
	p.inflight -= len(b.Messages)
	p.mu.Unlock()
}

// K1: messages of one key run one at a time in offset order while different
// keys run concurrently, beyond the app's Concurrency of 5 and within the
// configured number in flight; each nil-key message runs on its own.
func TestParallelKeepsKeyOrderAndRunsKeysConcurrently(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	var keys []string
	for i := range 440 {
		if i%11 == 10 {
			keys = append(keys, "") // nil key
		} else {
			keys = append(keys, "k"+strconv.Itoa(i%20))
		}
	}
	s.produceKeyed(keys...)
	probe := newLanesProbe()
	var nilBatches, nilSingles atomic.Int32
	fn := func(_ context.Context, b *ferry.Batch) error {
		probe.run(b, func() { time.Sleep(5 * time.Millisecond) })
		if b.Messages[0].Key == nil {
			nilBatches.Add(1)
			if len(b.Messages) == 1 {
				nilSingles.Add(1)
			}
		}
		s.rec.record(b)
		return nil
	}
	app := s.start(s.route(fn, ferry.Parallel(32)))
	s.waitSeen(440)
	s.stop(app)
	s.wantCommitted(map[int32]int64{0: 440})

	if d := s.rec.duplicates(s.topic); d != 0 {
		t.Errorf("%d messages processed more than once", d)
	}
	probe.mu.Lock()
	defer probe.mu.Unlock()
	if len(probe.overlap) > 0 || len(probe.mixed) > 0 {
		t.Errorf("keys ran concurrently with themselves: %v; %v", probe.overlap, probe.mixed)
	}
	for key, offs := range probe.order {
		if key != "" && !slices.IsSorted(offs) {
			t.Errorf("key %s ran out of offset order: %v", key, offs)
		}
	}
	if probe.maxIn <= 5 || probe.maxIn > 32 {
		t.Errorf("at most %d messages ran at once, want more than Concurrency's 5 and at most 32", probe.maxIn)
	}
	if nilSingles.Load() != nilBatches.Load() || nilBatches.Load() != 40 {
		t.Errorf("%d of %d nil-key batches held one message, want all 40 alone", nilSingles.Load(), nilBatches.Load())
	}
}

// K2, K3, K5: a failing message holds the committed offset, never passed;
// what finished above it is recorded in the commit's metadata, and the next
// owner processes only the failed message.
func TestParallelCommitWaitsForUnfinishedAndNextOwnerSkipsFinished(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produceKeyed(distinctKeys(50)...)
	fn := func(_ context.Context, b *ferry.Batch) error {
		s.rec.record(b)
		if b.Messages[0].Offset == 10 {
			return errors.New("offset 10 fails")
		}
		return nil
	}
	app := s.start(s.route(fn, ferry.Parallel(8), ferry.Retry(ferry.ConstantBackoff(time.Hour))))
	s.waitSeen(50)
	s.waitCommitted(map[int32]int64{0: 10})
	md, err := s.c.CommittedMetadata(ctxFor(t, 10*time.Second), s.group, s.topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	user, finished, err := offsets.DecodeMetadata(md, 10)
	var want []int64
	for o := int64(11); o < 50; o++ {
		want = append(want, o)
	}
	if err != nil || user != "" || !slices.Equal(finished, want) {
		t.Fatalf("committed record %q: user %q, finished %v, %v; want 11–49 finished", md, user, finished, err)
	}
	s.stop(app) // the waiting retry is not in flight: shutdown does not wait for it

	if got := s.rerun(50, ferry.Parallel(8)); !slices.Equal(got, []int64{10}) {
		t.Errorf("the next owner processed %v, want only offset 10", got)
	}
}

// K5, E1: a failing message is retried after its backoff holding back only
// its key; after MaxRetries it is dead-lettered and its key moves on.
func TestParallelRetryHoldsOnlyItsKeyThenDeadLetters(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	dlq := topic(t, s.c, 1)
	keys := make([]string, 20)
	for i := range keys {
		keys[i] = []string{"a", "b"}[i%2]
	}
	s.produceKeyed(keys...)
	var mu sync.Mutex
	var order []string // key:offset/attempt
	fn := func(_ context.Context, b *ferry.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range b.Messages {
			order = append(order, fmt.Sprintf("%s%d/%d", m.Key, m.Offset, b.Attempt))
			if m.Offset == 0 {
				return ferry.FailedAt(m, errors.New("poison"))
			}
		}
		return nil
	}
	app := s.start(s.route(fn, ferry.Parallel(8), ferry.DeadLetter(dlq), ferry.MaxRetries(2),
		ferry.Retry(ferry.ConstantBackoff(500*time.Millisecond))))
	dead := readAll(t, s.c, dlq, 1)
	s.waitCommitted(map[int32]int64{0: 20})
	s.stop(app)
	wantOnlyDeadLetter(t, dead, 0)
	mu.Lock()
	defer mu.Unlock()
	pos := func(s string) int { return slices.Index(order, s) }
	if pos("a0/3") < 0 || pos("a0/4") >= 0 {
		t.Fatalf("offset 0 attempts: %v, want exactly 3", order)
	}
	for i := 1; i < 20; i += 2 {
		if p := pos(fmt.Sprintf("b%d/1", i)); p < 0 || p > pos("a0/2") {
			t.Errorf("b%d ran at %d, want before the first retry of a0 (at %d): order %v", i, p, pos("a0/2"), order)
		}
	}
	prev := pos("a0/3")
	for i := 2; i < 20; i += 2 {
		p := pos(fmt.Sprintf("a%d/1", i))
		if p < prev {
			t.Errorf("a%d ran at %d, want after a%d (at %d): order %v", i, p, i-2, prev, order)
		}
		prev = p
	}
}

// K6, K3: partitions handed from one member to another while slow messages
// run in parallel: revocation and shutdown wait for what is in flight and
// commit it with its record, so no message is processed twice.
func TestParallelCleanHandOffProcessesNothingTwice(t *testing.T) {
	s := newScenario(t, cluster(t), 2)
	for p := range int32(2) {
		recs := make([]*kgo.Record, 150)
		for i := range recs {
			recs[i] = &kgo.Record{Partition: p, Key: []byte("k" + strconv.Itoa(i%40)), Value: []byte(strconv.Itoa(i))}
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(s.c.Brokers()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctxFor(t, 30*time.Second), append([]*kgo.Record(nil), setTopic(recs, s.topic)...)...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		cl.Close()
	}
	var bySecond atomic.Int32
	member := func(second bool) ferry.ConsumerFunc {
		return func(_ context.Context, b *ferry.Batch) error {
			time.Sleep(time.Duration(len(b.Messages)) * 60 * time.Millisecond)
			s.rec.record(b)
			if second {
				bySecond.Add(int32(len(b.Messages)))
			}
			return nil
		}
	}
	first := s.start(s.route(member(false), ferry.Parallel(4)))
	s.rec.waitDistinct(t, s.topic, 40, 30*time.Second)
	second := s.start(s.route(member(true), ferry.Parallel(4))) // a partition moves to it
	s.rec.waitDistinct(t, s.topic, 150, 30*time.Second)
	s.stop(first) // the second member takes every partition
	s.waitSeen(300)
	s.waitCommitted(map[int32]int64{0: 150, 1: 150})
	s.stop(second)
	if d := s.rec.duplicates(s.topic); d != 0 {
		t.Errorf("%d messages processed twice across the hand-offs", d)
	}
	if bySecond.Load() == 0 || bySecond.Load() == 300 {
		t.Errorf("the second member processed %d of 300 messages: no hand-off happened while work was in flight", bySecond.Load())
	}
}

// offsets lists every offset the recorder saw, in the order seen.
func (r *recorder) offsets() []int64 {
	var out []int64
	for _, d := range r.snapshot() {
		out = append(out, d.offsets...)
	}
	return out
}

func setTopic(recs []*kgo.Record, topic string) []*kgo.Record {
	for _, r := range recs {
		r.Topic = topic
	}
	return recs
}

// K7, K3: with manual offsets a mark is per message: the commit stops below
// the one message never marked, MarkAsConsumedSync reports true once the
// commit covers its message, and the next owner processes only the unmarked
// message.
func TestParallelManualMarksArePerMessage(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produceKeyed(distinctKeys(30)...)
	syncResult := make(chan string, 1)
	consumer := scripted{consume: func(ctx context.Context, claim *ferry.Claim, b *ferry.Batch) error {
		s.rec.record(b)
		for _, m := range b.Messages {
			switch m.Offset {
			case 5: // never marked
			case 20:
				ok, err := claim.MarkWithMetadataSync(ctx, m, "cursor")
				md, _ := s.c.CommittedMetadata(ctx, s.group, s.topic, 0)
				at, _ := s.c.Committed(ctx, s.group, s.topic)
				user, finished, _ := offsets.DecodeMetadata(md, at[0])
				covered := at[0] > 20 || slices.Contains(finished, 20)
				syncResult <- fmt.Sprintf("%v %v covered=%v user=%s", ok, err, covered, user)
			default:
				claim.MarkWithMetadata(m, "cursor") // the newest mark's metadata is committed
			}
		}
		return nil
	}}
	app := s.start(s.routeTo(consumer.factory(), ferry.ManualOffsets(), ferry.Parallel(4)))
	if got := <-syncResult; got != "true <nil> covered=true user=cursor" {
		t.Errorf("MarkWithMetadataSync: %s; want true, covered by the commit, with the metadata", got)
	}
	s.waitSeen(30)
	s.waitCommitted(map[int32]int64{0: 5})
	s.stop(app)

	again := newRecorder()
	var startedWith atomic.Value
	next := scripted{
		initialized: func(claim *ferry.Claim) { startedWith.Store(claim.CommittedMetadata()) },
		consume: func(_ context.Context, claim *ferry.Claim, b *ferry.Batch) error {
			again.record(b)
			for _, m := range b.Messages {
				claim.MarkAsConsumed(m)
			}
			return nil
		},
	}
	app = s.start(s.routeTo(next.factory(), ferry.ManualOffsets(), ferry.Parallel(4)))
	s.waitCommitted(map[int32]int64{0: 30})
	s.stop(app)
	if got := again.offsets(); !slices.Equal(got, []int64{5}) {
		t.Errorf("the next owner processed %v, want only the unmarked offset 5", got)
	}
	if md := startedWith.Load(); md != "cursor" {
		t.Errorf("next owner's CommittedMetadata = %q, want the user's own \"cursor\" (M8)", md)
	}
}

// K4: while one message is stuck, the partition takes new messages only as
// far as the record of finished ones fits in the commit metadata; the
// committed record stays within 4,096 bytes; once the message finishes the
// partition drains.
func TestParallelStopsTakingWhenTheRecordWouldNotFit(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	const n = 30000
	s.produce(0, n)
	release := make(chan struct{})
	var processed atomic.Int64
	fn := func(ctx context.Context, b *ferry.Batch) error {
		for _, m := range b.Messages {
			if m.Offset == 0 {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		processed.Add(int64(len(b.Messages)))
		return nil
	}
	var events eventLog
	app := s.start(ferry.OnEvent(events.add), s.route(fn, ferry.Parallel(64)))
	span := offsets.MaxSpan("")
	// Processing comes within 200 messages of what a record can describe,
	// however slowly on a loaded machine, then settles there.
	if err := ferrytest.WaitFor(ctxFor(t, 60*time.Second), func() bool { return processed.Load() >= span-200 }); err != nil {
		t.Fatalf("%d messages processed while offset 0 was stuck, want just under the %d a record can describe", processed.Load(), span)
	}
	var stalled int64
	if err := ferrytest.WaitFor(ctxFor(t, 60*time.Second), func() bool {
		before := processed.Load()
		time.Sleep(time.Second)
		stalled = processed.Load()
		return stalled == before
	}); err != nil {
		t.Fatal("processing never settled while offset 0 was stuck")
	}
	if stalled >= span {
		t.Errorf("%d messages processed while offset 0 was stuck, want just under the %d a record can describe", stalled, span)
	}
	s.waitCommitted(map[int32]int64{0: 0})
	if err := ferrytest.WaitFor(ctxFor(t, 20*time.Second), func() bool {
		md, _ := s.c.CommittedMetadata(ctxFor(t, 5*time.Second), s.group, s.topic, 0)
		_, finished, _ := offsets.DecodeMetadata(md, 0)
		return int64(len(finished)) == stalled && len(md) <= offsets.MaxMetadata
	}); err != nil {
		md, _ := s.c.CommittedMetadata(ctxFor(t, 5*time.Second), s.group, s.topic, 0)
		t.Fatalf("committed metadata of %d bytes does not record the %d finished messages", len(md), stalled)
	}
	// X1, X4: the stop is seen, in Stats and as an event.
	if p, _ := partitionStats(app.app); !p.RecordFull {
		t.Errorf("Stats while admission stopped: %+v, want RecordFull", p)
	}
	record := event.Paused{Group: s.group, Topic: s.topic, Partition: 0, Reason: event.PauseRecord}
	if p := eventsOf[event.Paused](&events); !slices.Contains(p, record) {
		t.Errorf("Paused events %+v, want %+v", p, record)
	}
	close(release)
	s.waitCommitted(map[int32]int64{0: n})
	if p, _ := partitionStats(app.app); p.RecordFull {
		t.Errorf("Stats once the stuck message finished: %+v, want no RecordFull", p)
	}
	s.stop(app)
	if got := processed.Load(); got != n {
		t.Errorf("processed %d messages, want %d", got, n)
	}
	if r := eventsOf[event.Resumed](&events); !slices.Contains(r, event.Resumed(record)) {
		t.Errorf("Resumed events %+v, want %+v", r, event.Resumed(record))
	}
}

// O2: Parallel's invalid values and combinations are refused at New.
func TestParallelInvalidConfig(t *testing.T) {
	fn := func(context.Context, *ferry.Batch) error { return nil }
	tests := []struct {
		name string
		opts []ferry.TopicOption
	}{
		{"zero in flight", []ferry.TopicOption{ferry.Parallel(0)}},
		{"two orders", []ferry.TopicOption{ferry.Parallel(4, ferry.ByKey, ferry.Unordered)}},
		{"exactly-once", []ferry.TopicOption{ferry.Parallel(4), ferry.WithDelivery(ferry.ExactlyOnce)}},
		{"at-most-once", []ferry.TopicOption{ferry.Parallel(4), ferry.WithDelivery(ferry.AtMostOnce)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ferry.New(ferry.Brokers("127.0.0.1:1"), ferry.TransactionalID("x"), ferry.RouteFunc("g", "t", fn, tt.opts...))
			if !errors.Is(err, ferry.ErrInvalidConfig) {
				t.Fatalf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// K8: one key stuck on its first message while thousands of its messages
// follow: the partition admits a bounded number to its lanes, then its
// queue fills and its fetching pauses, instead of buffering the backlog.
// The fetch taken when the queue fills is queued whole, so a fetch holds at
// most QueueBytes of a partition: 16 KiB are about 60 of these messages,
// and the queue holds a few times that, not the backlog.
func TestParallelMemoryIsBoundedWhileAKeyIsStuck(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	fn, stuck, release := s.holdFirst()
	s.produceKeyed("stuck")
	for range 30 { // the backlog is there before the first fetch: one fetch could take it all
		recs := make([]*kgo.Record, 100)
		for i := range recs {
			recs[i] = &kgo.Record{Partition: 0, Key: []byte("stuck"), Value: make([]byte, 200)}
			rand.Read(recs[i].Value) // incompressible: a fetch's bytes are the queue's
		}
		if err := s.c.Produce(ctxFor(t, 30*time.Second), s.topic, recs...); err != nil {
			t.Fatal(err)
		}
	}
	app := s.start(s.route(fn, ferry.Parallel(4), ferry.MaxMessages(10), ferry.QueueBytes(16<<10)))
	<-stuck
	var p ferry.PartitionStats
	if err := ferrytest.WaitFor(ctxFor(t, 30*time.Second), func() bool {
		if g := app.app.Stats().Groups; len(g) == 1 && len(g[0].Partitions) == 1 {
			p = g[0].Partitions[0]
		}
		return p.Paused
	}); err != nil {
		t.Fatalf("fetching never paused while a key was stuck: %+v", p)
	}
	if p.Queued == 0 || p.Queued > 1000 {
		t.Errorf("%d messages queued while paused, want some, and far fewer than the 3,000 behind the stuck one", p.Queued)
	}
	close(release)
	s.waitSeen(3001)
	s.stop(app)
}

// K6, A7: a partition lost while one message is in flight: the message may
// finish, but its completion is dropped (its mark reports false); the
// member that gets the partition back processes that message again and
// skips the ones finished and committed before the loss.
func TestParallelLostPartitionDropsCompletions(t *testing.T) {
	c := embedded(t)
	s := newScenario(t, c, 1)
	s.produceKeyed(distinctKeys(20)...)
	blocked, release := make(chan struct{}), make(chan struct{})
	var first, markAfterLoss atomic.Bool
	var claim atomic.Pointer[ferry.Claim]
	consumer := scripted{
		initialized: func(cl *ferry.Claim) { claim.CompareAndSwap(nil, cl) },
		consume: func(_ context.Context, cl *ferry.Claim, b *ferry.Batch) error {
			s.rec.record(b)
			if b.Messages[0].Offset == 5 && first.CompareAndSwap(false, true) {
				close(blocked)
				<-release
				markAfterLoss.Store(cl.MarkAsConsumed(b.Messages[0]))
			}
			return nil
		},
	}
	app := s.start(ferry.ClientOptions(kgo.HeartbeatInterval(100*time.Millisecond)),
		s.routeTo(consumer.factory(), ferry.Parallel(4)))
	<-blocked
	s.waitSeen(20)
	s.waitCommitted(map[int32]int64{0: 5})
	loseOnce(c, s.group, false)
	if err := ferrytest.WaitFor(ctxFor(t, 15*time.Second), func() bool { return claim.Load().Revoked() }); err != nil {
		t.Fatal("the assignment was never lost")
	}
	close(release)
	s.waitCommitted(map[int32]int64{0: 20})
	s.stop(app)
	if markAfterLoss.Load() {
		t.Error("MarkAsConsumed returned true after the partition was lost")
	}
	for o := int64(0); o < 20; o++ {
		want := 1
		if o == 5 {
			want = 2
		}
		if got := s.rec.times(s.topic, 0, o); got != want {
			t.Errorf("offset %d processed %d times, want %d", o, got, want)
		}
	}
}

// K1: ByLane groups by the user's value instead of the key, and Unordered
// runs every message on its own.
func TestParallelLaneChoices(t *testing.T) {
	for _, tc := range []struct {
		name  string
		order ferry.Order
		lane  func(m *ferry.Message) string // what must run in order
	}{
		{"by lane", ferry.ByLane(func(m *ferry.Message) string { return string(m.Value[len(m.Value)-1:]) }),
			func(m *ferry.Message) string { return string(m.Value[len(m.Value)-1:]) }},
		{"unordered", ferry.Unordered, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScenario(t, cluster(t), 1)
			s.produceKeyed(slices.Repeat([]string{"same-key"}, 200)...) // the key says nothing here
			var mu sync.Mutex
			running, maxRunning := 0, 0
			order := map[string][]int64{}
			var mixed bool
			fn := func(_ context.Context, b *ferry.Batch) error {
				mu.Lock()
				running++
				maxRunning = max(maxRunning, running)
				for _, m := range b.Messages {
					if tc.lane != nil {
						order[tc.lane(m)] = append(order[tc.lane(m)], m.Offset)
						mixed = mixed || tc.lane(m) != tc.lane(b.Messages[0])
					}
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				running--
				mu.Unlock()
				s.rec.record(b)
				return nil
			}
			app := s.start(s.route(fn, ferry.Parallel(16, tc.order)))
			s.waitSeen(200)
			s.stop(app)
			mu.Lock()
			defer mu.Unlock()
			if maxRunning < 2 {
				t.Errorf("at most %d batches ran at once for messages of one key, want them spread", maxRunning)
			}
			if mixed {
				t.Error("a batch mixed lanes")
			}
			for lane, offs := range order {
				if !slices.IsSorted(offs) {
					t.Errorf("lane %s ran out of offset order: %v", lane, offs)
				}
			}
		})
	}
}

// K5, A6: a panic is a failure of that message only: retried after its
// backoff, then dead-lettered, while other keys flow.
func TestParallelPanicRetriesThenDeadLetters(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	dlq := topic(t, s.c, 1)
	s.produceKeyed("a", "b", "b", "b")
	var attempts atomic.Int32
	fn := func(_ context.Context, b *ferry.Batch) error {
		if b.Messages[0].Offset == 0 {
			attempts.Add(1)
			panic("bad record")
		}
		s.rec.record(b)
		return nil
	}
	app := s.start(s.route(fn, ferry.Parallel(4), ferry.DeadLetter(dlq), ferry.MaxRetries(1),
		ferry.Retry(ferry.ConstantBackoff(50*time.Millisecond))))
	dead := readAll(t, s.c, dlq, 1)
	s.waitCommitted(map[int32]int64{0: 4})
	s.stop(app)
	wantOnlyDeadLetter(t, dead, 0)
	if attempts.Load() != 2 {
		t.Errorf("the panicking message ran %d times, want 2 (1 + MaxRetries 1)", attempts.Load())
	}
	if got := s.rec.offsets(); len(got) != 3 {
		t.Errorf("the other key's messages ran as %v, want offsets 1–3 once", got)
	}
}

// K9: with one distinct key a unit is that key's run of waiting messages,
// up to MaxMessages, as a sequential batch — not one message per call.
func TestParallelOneKeyRunsInBatches(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produceKeyed(slices.Repeat([]string{"only"}, 1000)...)
	app := s.start(s.route(s.rec.fn(), ferry.Parallel(128), ferry.MaxMessages(100)))
	s.waitSeen(1000)
	s.stop(app)
	longest := 0
	for _, d := range s.rec.snapshot() {
		longest = max(longest, len(d.offsets))
	}
	if calls := len(s.rec.snapshot()); calls > 100 || longest != 100 {
		t.Errorf("1,000 messages of one key in %d calls, the longest %d; want batches of up to 100", calls, longest)
	}
}

// E2, K5: a message a parallel consumer dead-letters itself, on a retry,
// carries the attempt it was in (the one its batch reports), not 1.
func TestParallelDeadLetterCarriesTheAttempt(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	dlq := topic(t, s.c, 1)
	s.produceKeyed("a", "b")
	attempts := make(chan int, 1)
	fn := func(ctx context.Context, b *ferry.Batch) error {
		m := b.Messages[0]
		switch {
		case m.Offset != 0:
			return nil
		case b.Attempt == 1:
			return errors.New("downstream unavailable")
		}
		attempts <- b.Attempt
		return b.Claim().DeadLetter(ctx, m, errors.New("given up"))
	}
	app := s.start(s.route(fn, ferry.Parallel(4), ferry.MaxMessages(1), ferry.DeadLetter(dlq),
		ferry.Retry(ferry.ConstantBackoff(50*time.Millisecond))))
	dead := readAll(t, s.c, dlq, 1)
	s.waitCommitted(map[int32]int64{0: 2})
	s.stop(app)
	want := strconv.Itoa(recv(t, attempts))
	if len(dead) != 1 || header(dead[0], ferry.HeaderAttempts) != want || want != "2" {
		t.Errorf("dead letter's %s header %q, want the batch's attempt %s (2)", ferry.HeaderAttempts, header(dead[0], ferry.HeaderAttempts), want)
	}
}

// K5, M10, E1: in automatic mode a parallel consumer that marks each message
// as it goes and then fails, without naming the message, is blamed on its
// first unmarked message — as a sequential consumer is: the retry resumes
// there, and after MaxRetries only that message is dead-lettered. The
// messages it marked are neither dead-lettered nor processed again.
func TestParallelMarksInConsumeNameTheFailedMessage(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	dlq := topic(t, s.c, 1)
	s.produceKeyed(slices.Repeat([]string{"one"}, 10)...) // one key: its messages run in units of several
	var mu sync.Mutex
	processed := map[int64]int{}
	fn := func(_ context.Context, b *ferry.Batch) error {
		for _, m := range b.Messages {
			if m.Offset == 5 {
				return errors.New("cannot process offset 5")
			}
			mu.Lock()
			processed[m.Offset]++
			mu.Unlock()
			b.Claim().MarkAsConsumed(m)
		}
		return nil
	}
	app := s.start(s.route(fn, ferry.Parallel(10), ferry.MaxMessages(10), ferry.DeadLetter(dlq), ferry.MaxRetries(1),
		ferry.Retry(ferry.ConstantBackoff(50*time.Millisecond))))
	s.waitCommitted(map[int32]int64{0: 10})
	dead := readAll(t, s.c, dlq, 1)
	s.stop(app)
	var deadOffsets []string
	for _, d := range dead {
		deadOffsets = append(deadOffsets, header(d, ferry.HeaderOriginalOffset))
	}
	if !slices.Equal(deadOffsets, []string{"5"}) {
		t.Errorf("dead-letter topic holds offsets %v, want only the failing 5", deadOffsets)
	}
	mu.Lock()
	defer mu.Unlock()
	for o := int64(0); o < 10; o++ {
		if want := map[bool]int{true: 0, false: 1}[o == 5]; processed[o] != want {
			t.Errorf("offset %d processed %d times, want %d (marked messages are not retried)", o, processed[o], want)
		}
	}
}

// M2, M3, K7: in a parallel partition, marking a message not delivered yet
// counts it as finished, as a sequential partition's mark moves past it: the
// mark returns true, the sync one once the commit covers it, and the message
// is skipped when it arrives while its neighbours are processed. A mark
// further ahead than the commit's record can describe is refused with
// ErrMarkTooFarAhead, not reported as a lost partition.
func TestParallelMarkOfAMessageNotDeliveredYet(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produceKeyed("a", "b", "c", "d", "e")
	var claim atomic.Pointer[ferry.Claim]
	consumer := scripted{
		initialized: func(cl *ferry.Claim) { claim.Store(cl) },
		consume: func(_ context.Context, cl *ferry.Claim, b *ferry.Batch) error {
			s.rec.record(b)
			for _, m := range b.Messages {
				cl.MarkAsConsumed(m)
			}
			return nil
		},
	}
	app := s.start(s.routeTo(consumer.factory(), ferry.Parallel(4), ferry.ManualOffsets()))
	s.waitSeen(5)
	s.waitCommitted(map[int32]int64{0: 5})
	cl := claim.Load()
	ahead := func(o int64) *ferry.Message { return &ferry.Message{Topic: s.topic, Partition: 0, Offset: o} }
	ctx := ctxFor(t, 15*time.Second)
	if ok, err := cl.MarkAsConsumedSync(ctx, ahead(5)); !ok || err != nil {
		t.Fatalf("MarkAsConsumedSync of the next message, not delivered yet = %v, %v; want true, nil", ok, err)
	}
	s.waitCommitted(map[int32]int64{0: 6})
	if !cl.MarkAsConsumed(ahead(7)) {
		t.Fatal("MarkAsConsumed of a message two ahead, not delivered yet = false; want true")
	}
	if ok, err := cl.MarkAsConsumedSync(ctx, ahead(10_000_000)); ok || !errors.Is(err, ferry.ErrMarkTooFarAhead) {
		t.Errorf("MarkAsConsumedSync 10,000,000 offsets ahead = %v, %v; want false, ErrMarkTooFarAhead", ok, err)
	}
	if cl.MarkAsConsumed(ahead(10_000_000)) {
		t.Error("MarkAsConsumed 10,000,000 offsets ahead = true; want false")
	}
	s.produceKeyed("f", "g", "h", "i") // offsets 5 to 8
	s.waitCommitted(map[int32]int64{0: 9})
	s.stop(app)
	for o, want := range map[int64]int{5: 0, 6: 1, 7: 0, 8: 1} {
		if got := s.rec.times(s.topic, 0, o); got != want {
			t.Errorf("offset %d processed %d times, want %d", o, got, want)
		}
	}
}
