package ferry_test

// Black-box checks of the parallel mode's promises (K) that the other
// parallel tests leave open: the commit's invariants under a busy mix of
// keys, retries and nil keys, sampled while the partition runs; a shutdown
// past ShutdownTimeout; and what a revocation has done by the time the
// Revoked hook runs.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/event"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/ferrykit/ferry/offsets"
	"github.com/twmb/franz-go/pkg/kerr"
)

// committedRecord returns a partition's committed offset and the offsets
// its metadata records as finished above it, read in one request so the
// two belong together; ok is false while nothing is committed.
func (s *scenario) committedRecord(ctx context.Context, partition int32) (at int64, finished []int64, ok bool, err error) {
	resps, err := s.c.Admin().FetchOffsets(ctx, s.group)
	if errors.Is(err, kerr.GroupIDNotFound) { // before the group's first commit
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, err
	}
	r, found := resps.Lookup(s.topic, partition)
	if !found || r.Err != nil || r.At < 0 {
		return 0, nil, false, r.Err
	}
	_, finished, err = offsets.DecodeMetadata(r.Metadata, r.At)
	return r.At, finished, true, err
}

// doneSet is the set of offsets whose processing returned, written by a
// consumer before it returns.
type doneSet struct {
	mu   sync.Mutex
	done map[int64]bool
}

func (d *doneSet) add(o int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done == nil {
		d.done = map[int64]bool{}
	}
	d.done[o] = true
}

// unfinished returns the offsets below at and among finished that are not
// done.
func (d *doneSet) unfinished(at int64, finished []int64) []int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []int64
	for o := int64(0); o < at; o++ {
		if !d.done[o] {
			out = append(out, o)
		}
	}
	for _, o := range finished {
		if !d.done[o] {
			out = append(out, o)
		}
	}
	return out
}

// K2, K3, K5, K1: a busy parallel partition — 40 keys and nil keys, handlers
// of varying length, and a message in 97 that fails once — sampled every
// few milliseconds while it runs: the committed offset never passes a
// message whose processing has not returned, and the commit's record never
// names one. A failure retries only the message it names (the ones before
// it in its batch are not processed again), each key runs in offset order,
// and every message is processed once, the failing ones twice.
func TestParallelCommitNeverPassesUnfinishedUnderLoad(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	const n = 1500
	keys := make([]string, n)
	for i := range keys {
		if i%13 != 7 {
			keys[i] = "k" + strconv.Itoa(i%40)
		} // else a nil key
	}
	s.produceKeyed(keys...)
	fails := func(o int64) bool { return o%97 == 13 }

	var done doneSet
	var mu sync.Mutex
	calls := map[int64]int{}
	order := map[string][]int64{}
	fn := func(_ context.Context, b *ferry.Batch) error {
		for _, m := range b.Messages {
			mu.Lock()
			calls[m.Offset]++
			first := calls[m.Offset] == 1
			if m.Key != nil {
				order[string(m.Key)] = append(order[string(m.Key)], m.Offset)
			}
			mu.Unlock()
			time.Sleep(time.Duration(rand.IntN(6000)) * time.Microsecond)
			if fails(m.Offset) && first {
				return ferry.FailedAt(m, errors.New("fails once"))
			}
			done.add(m.Offset)
		}
		return nil
	}
	app := s.start(ferry.CommitInterval(25*time.Millisecond), s.route(fn, ferry.Parallel(8), ferry.MaxMessages(5),
		ferry.Retry(ferry.ConstantBackoff(30*time.Millisecond))))

	var samples, moved int
	last := int64(-1)
	ctx := ctxFor(t, 60*time.Second)
	for last < n {
		at, finished, ok, err := s.committedRecord(ctx, 0)
		if err != nil {
			t.Fatalf("reading the committed offset (after %d samples): %v", samples, err)
		}
		if ok {
			samples++
			if bad := done.unfinished(at, finished); len(bad) > 0 {
				t.Fatalf("committed offset %d with record %v while offsets %v had not finished", at, finished, bad)
			}
			if at != last {
				moved++
			}
			last = at
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.stop(app)
	t.Logf("%d samples, the committed offset seen at %d positions", samples, moved)

	mu.Lock()
	defer mu.Unlock()
	for o := int64(0); o < n; o++ {
		want := 1
		if fails(o) {
			want = 2
		}
		if calls[o] != want {
			t.Errorf("offset %d processed %d times, want %d", o, calls[o], want)
		}
	}
	for k, offs := range order {
		if !slices.IsSorted(offs) { // a retry repeats its offset, in place
			t.Errorf("key %s ran out of offset order: %v", k, offs)
		}
	}
}

// K6, K3, A4: a parallel partition shut down while one message outlives
// ShutdownTimeout: Run returns ErrShutdownTimeout, the messages that
// finished around the stuck one are committed in the record — even though
// the stuck one returns nil once its context is cancelled, it is not — and
// a restart processes the stuck message alone.
func TestParallelShutdownTimeoutCommitsWhatFinished(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produceKeyed(distinctKeys(20)...)
	stuck := make(chan struct{})
	fn := func(ctx context.Context, b *ferry.Batch) error {
		s.rec.record(b)
		if b.Messages[0].Offset == 3 {
			close(stuck)
			<-ctx.Done() // ignores shutdown until its context is cancelled, then claims success
		}
		return nil
	}
	app := s.start(ferry.CommitInterval(time.Hour), ferry.ShutdownTimeout(time.Second),
		s.route(fn, ferry.Parallel(4)))
	s.waitClosed("started offset 3", stuck)
	s.waitSeen(20)
	if err := app.stop(t); !errors.Is(err, ferry.ErrShutdownTimeout) {
		t.Fatalf("Run = %v, want ErrShutdownTimeout", err)
	}
	at, finished, ok, err := s.committedRecord(ctxFor(t, 10*time.Second), 0)
	var want []int64
	for o := int64(4); o < 20; o++ {
		want = append(want, o)
	}
	if err != nil || !ok || at != 3 || !slices.Equal(finished, want) {
		t.Fatalf("committed %d (committed: %v, %v) with record %v; want 3 with 4–19 finished", at, ok, err, finished)
	}

	if got := s.rerun(20, ferry.Parallel(4)); !slices.Equal(got, []int64{3}) {
		t.Errorf("the restart processed %v, want only the stuck offset 3", got)
	}
}

// K6, K3: a revocation of a parallel partition waits for every message in
// flight — here two held until the revocation begins — and commits them
// before the Revoked hook runs: in the hook nothing of the partition is in
// flight and the group's committed offset is past all 20 messages. The new
// owner processes nothing again. Classic, KIP-848 and eager balancing.
func TestParallelRevokedHookRunsAfterInFlightIsCommitted(t *testing.T) {
	for _, proto := range append(protocols(), eagerProtocol()) {
		t.Run(proto.name, func(t *testing.T) {
			s := newScenario(t, cluster(t, fastHeartbeats()), 2)
			s.produceEach(2, 20) // nil keys: every message in a lane of its own
			release := make(chan struct{})
			var mu sync.Mutex
			inflight := map[int32]int{}
			var seenInHook []string
			consumer := scripted{
				consume: func(_ context.Context, claim *ferry.Claim, b *ferry.Batch) error {
					mu.Lock()
					inflight[b.Partition] += len(b.Messages)
					mu.Unlock()
					if o := b.Messages[0].Offset; o == 0 || o == 10 {
						_ = ferrytest.WaitFor(ctxFor(t, 30*time.Second), func() bool { return claim.Revoked() || isClosed(release) })
						time.Sleep(200 * time.Millisecond) // still running after the revocation began
					}
					s.rec.record(b)
					mu.Lock()
					inflight[b.Partition] -= len(b.Messages)
					mu.Unlock()
					return nil
				},
				revoked: func(ctx context.Context, claim *ferry.Claim) {
					at, finished, ok, err := s.committedRecord(ctx, claim.Partition())
					mu.Lock()
					defer mu.Unlock()
					seenInHook = append(seenInHook, fmt.Sprintf("partition %d: %d in flight, committed %d %v (%v, %v)",
						claim.Partition(), inflight[claim.Partition()], at, finished, ok, err))
				},
			}
			route := s.routeTo(consumer.factory(), ferry.Parallel(8))
			first := s.start(route, ferry.CommitInterval(time.Hour), member(proto))
			s.waitUntil("saw the 36 messages not held", func() bool { return s.rec.distinct(s.topic) == 36 })
			second := s.start(route, ferry.CommitInterval(time.Hour), member(proto))
			s.waitUntil("saw a partition revoked", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(seenInHook) > 0
			})
			close(release)
			s.stop(first)
			s.waitCommitted(map[int32]int64{0: 20, 1: 20})
			s.stop(second)

			mu.Lock()
			defer mu.Unlock()
			for _, seen := range seenInHook {
				if !strings.Contains(seen, ": 0 in flight, committed 20 [] (true, <nil>)") {
					t.Errorf("in the Revoked hook, %s; want 0 in flight, committed 20", seen)
				}
			}
			if d := s.rec.duplicates(s.topic); d != 0 {
				t.Errorf("%d messages processed twice across the hand-off", d)
			}
		})
	}
}

// isClosed reports whether ch is closed.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// X1, K5, E1: a parallel partition's failure is told message by message: the
// failing message's two attempts are ConsumeFailed events naming it, one
// RetryScheduled names it with its delay, one DeadLettered names it and its
// attempts, and its key's next message is consumed only after it was
// dead-lettered; every other message is one BatchConsumed of attempt 1.
func TestParallelFailureEvents(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	dlt := topic(t, s.c, 1)
	s.produceKeyed(slices.Repeat([]string{"a", "b"}, 10)...)
	poison := errors.New("poison")
	fn := func(_ context.Context, b *ferry.Batch) error {
		if b.Messages[0].Offset == 4 {
			return poison
		}
		return nil
	}
	var events eventLog
	app := s.start(ferry.OnEvent(events.add), s.route(fn, ferry.Parallel(4), ferry.MaxMessages(1),
		ferry.DeadLetter(dlt), ferry.MaxRetries(1), ferry.Retry(ferry.ConstantBackoff(50*time.Millisecond))))
	s.waitCommitted(map[int32]int64{0: 20})
	waitUntil(t, 10*time.Second, "19 messages consumed", func() bool { return consumedCount(&events) == 19 })
	s.stop(app)

	failed := eventsOf[event.ConsumeFailed](&events)
	if len(failed) != 2 || failed[0].Attempt != 1 || failed[1].Attempt != 2 {
		t.Errorf("ConsumeFailed: %+v, want attempts 1 and 2", failed)
	}
	for _, f := range failed {
		if f.Group != s.group || f.Topic != s.topic || f.FirstOffset != 4 || f.LastOffset != 4 || f.Count != 1 || !errors.Is(f.Err, poison) {
			t.Errorf("ConsumeFailed %+v, want offset 4's poison", f)
		}
	}
	retry := event.RetryScheduled{Group: s.group, Topic: s.topic, Partition: 0, Offset: 4, Attempt: 2, Delay: 50 * time.Millisecond}
	if got := eventsOf[event.RetryScheduled](&events); len(got) != 1 || got[0] != retry {
		t.Errorf("RetryScheduled: %+v, want %+v", got, retry)
	}
	dead := eventsOf[event.DeadLettered](&events)
	if len(dead) != 1 || dead[0].Offset != 4 || dead[0].Attempts != 2 || dead[0].DeadLetterTopic != dlt || !errors.Is(dead[0].Err, poison) {
		t.Errorf("DeadLettered: %+v, want offset 4 after 2 attempts", dead)
	}
	var story []string
	for _, e := range events.snapshot() {
		switch e := e.(type) {
		case event.DeadLettered:
			story = append(story, "dead-lettered 4")
		case event.BatchConsumed:
			if e.Count != 1 || e.Attempt != 1 {
				t.Errorf("BatchConsumed %+v, want one message on its first attempt", e)
			}
			if e.FirstOffset == 6 {
				story = append(story, "consumed 6")
			}
		}
	}
	if got := strings.Join(story, ", "); got != "dead-lettered 4, consumed 6" {
		t.Errorf("key a's story: %s; want dead-lettered 4, consumed 6", got)
	}
}

// X4, X2, K5: a parallel partition whose one message keeps failing is
// failing — Stats says since when, and the app is unhealthy past
// FailingTimeout — while its other key flows; once the message succeeds
// the app is healthy again and the partition drains.
func TestParallelFailingMessageMakesTheAppUnhealthy(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produceKeyed(slices.Repeat([]string{"a", "b"}, 10)...)
	var failing atomic.Bool
	failing.Store(true)
	fn := func(_ context.Context, b *ferry.Batch) error {
		if b.Messages[0].Offset == 0 && failing.Load() {
			return errors.New("downstream unavailable")
		}
		return nil
	}
	app := s.start(ferry.FailingTimeout(300*time.Millisecond),
		s.route(s.recordThen(fn), ferry.Parallel(4), ferry.Retry(ferry.ConstantBackoff(50*time.Millisecond))))
	s.waitUntil("saw key b's ten messages", func() bool {
		for o := int64(1); o < 20; o += 2 {
			if s.rec.times(s.topic, 0, o) == 0 {
				return false
			}
		}
		return true
	})
	s.waitUntil("unhealthy", func() bool { return app.app.Healthy() != nil })
	if err := app.app.Healthy(); !errors.Is(err, ferry.ErrUnhealthy) || !strings.Contains(err.Error(), s.topic+"/0 failing since") {
		t.Errorf("Healthy: %v, want the partition failing", err)
	}
	if p, _ := s.partitionStats(app, 0); p.FailingSince.IsZero() {
		t.Errorf("Stats of the failing partition: %+v, want FailingSince", p)
	}
	failing.Store(false)
	s.waitCommitted(map[int32]int64{0: 20})
	s.waitUntil("healthy again", func() bool { return app.app.Healthy() == nil })
	if p, _ := s.partitionStats(app, 0); !p.FailingSince.IsZero() {
		t.Errorf("Stats once the message succeeded: %+v, want no FailingSince", p)
	}
	s.stop(app)
}

// startLog records when each message's processing began.
type startLog struct {
	mu     sync.Mutex
	starts map[int64]time.Time
}

func (l *startLog) began(b *ferry.Batch) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.starts == nil {
		l.starts = map[int64]time.Time{}
	}
	for _, m := range b.Messages {
		l.starts[m.Offset] = now
	}
}

// after returns the offsets whose processing began after t, ascending.
func (l *startLog) after(t time.Time) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int64
	for o, at := range l.starts {
		if at.After(t) {
			out = append(out, o)
		}
	}
	slices.Sort(out)
	return out
}

// busyPartition starts an app on a partition of 24 keys whose handler
// notes when each batch began, then runs work with the batch's first
// offset, with opts and MaxMessages(4) — so a sequential batch, or
// Parallel(4)'s four messages, is in flight and a backlog admitted behind —
// and returns once that work has begun.
func busyPartition(t *testing.T, opts []ferry.TopicOption, work func(offset int64), more ...ferry.Option) (*scenario, *running, *startLog) {
	t.Helper()
	s := newScenario(t, cluster(t), 1)
	s.produceKeyed(distinctKeys(24)...)
	starts := new(startLog)
	fn := func(_ context.Context, b *ferry.Batch) error {
		starts.began(b)
		work(b.Messages[0].Offset)
		return nil
	}
	app := s.start(append(more, s.route(s.recordThen(fn), append(opts, ferry.MaxMessages(4))...))...)
	s.waitSeen(4)
	return s, app, starts
}

// busyWork is a busy partition's usual work: 300 ms per batch.
func busyWork(int64) { time.Sleep(300 * time.Millisecond) }

// O4, K1: Pause on a busy partition — every slot in flight, a backlog
// admitted behind them — lets what runs finish and starts nothing more:
// the messages that end after Pause returned are not replaced (with
// parallel processing, no message starts), until Resume; then the rest
// comes, each message once.
func TestPauseBusyPartitionStartsNothingMore(t *testing.T) {
	for _, tc := range sequentialAndParallel {
		t.Run(tc.name, func(t *testing.T) {
			s, app, starts := busyPartition(t, tc.opts, busyWork)
			if err := app.app.Pause(s.group, s.topic, 0); err != nil {
				t.Fatal(err)
			}
			// What was handed over before Pause returned is in the handler
			// within moments; the work in flight ends 300 ms on.
			paused := time.Now().Add(100 * time.Millisecond)
			time.Sleep(time.Second)
			if late := starts.after(paused); len(late) > 0 {
				t.Fatalf("offsets %v began after Pause returned", late)
			}
			seen := s.rec.distinct(s.topic)
			if err := app.app.Resume(s.group, s.topic, 0); err != nil {
				t.Fatal(err)
			}
			s.waitCommitted(map[int32]int64{0: 24})
			s.stop(app)
			if seen >= 24 {
				t.Fatalf("all 24 messages were processed before the pause: the test paused nothing")
			}
			if d := s.rec.duplicates(s.topic); d != 0 {
				t.Errorf("%d messages processed twice across the pause", d)
			}
		})
	}
}

// O5, K2: Seek forwards on a busy partition waits for the work in flight,
// starting nothing meanwhile — not the backlog already admitted — commits
// the new position before it returns, and the partition goes on from it:
// the skipped messages never run.
func TestSeekBusyPartitionWaitsAndStartsNothingElse(t *testing.T) {
	for _, tc := range sequentialAndParallel {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var ended time.Time // when the last message processed so far ended
			s, app, starts := busyPartition(t, tc.opts, func(offset int64) {
				d := 300 * time.Millisecond
				if offset >= 20 {
					d = time.Second // the commit of the seek stays visible a while
				}
				time.Sleep(d)
				mu.Lock()
				ended = time.Now()
				mu.Unlock()
			})
			began := time.Now()
			if err := app.app.Seek(ctxFor(t, 30*time.Second), s.group, s.topic, 0, 20); err != nil {
				t.Fatal(err)
			}
			returned := time.Now()
			s.wantCommitted(map[int32]int64{0: 20}) // before Seek returned; 20..23 take a second
			mu.Lock()
			lastEnd := ended
			mu.Unlock()
			if lastEnd.IsZero() || lastEnd.After(returned) {
				t.Errorf("Seek returned before the work in flight ended (ended %v, returned %v)", lastEnd, returned)
			}
			for _, o := range starts.after(began.Add(100 * time.Millisecond)) {
				if o < 20 {
					t.Errorf("offset %d began while Seek waited or after it", o)
				}
			}
			s.waitCommitted(map[int32]int64{0: 24})
			s.stop(app)
			for o := int64(0); o < 24; o++ {
				want := 1
				if o >= 4 && o < 20 {
					want = 0
				}
				if got := s.rec.times(s.topic, 0, o); got != want {
					t.Errorf("offset %d processed %d times, want %d", o, got, want)
				}
			}
		})
	}
}

// K6, M9, A4, K7: shutting down a parallel partition with manual offsets
// waits for the message in flight — Run does not return meanwhile and the
// message's context stays live — then runs the Shutdown hook, which sees
// every message processed and marks them all (the buffered flush of a
// consumer that marks on shutdown); the final commit holds every mark.
func TestParallelShutdownHookFlushesAfterInFlightFinished(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produceKeyed(distinctKeys(20)...)
	inFlight, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var buffered []*ferry.Message
	var ctxErr error
	var flushed []string
	consumer := scripted{
		consume: func(ctx context.Context, _ *ferry.Claim, b *ferry.Batch) error {
			if b.Messages[0].Offset == 0 {
				close(inFlight)
				<-release
				mu.Lock()
				ctxErr = ctx.Err()
				mu.Unlock()
			}
			mu.Lock()
			buffered = append(buffered, b.Messages...)
			mu.Unlock()
			return nil
		},
		shutdown: func(_ context.Context, claim *ferry.Claim) {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range buffered {
				if !claim.MarkAsConsumed(m) {
					flushed = append(flushed, "refused "+strconv.FormatInt(m.Offset, 10))
				}
			}
			flushed = append(flushed, strconv.Itoa(len(buffered))+" marked")
		},
	}
	app := s.start(ferry.CommitInterval(time.Hour), s.routeTo(consumer.factory(), ferry.Parallel(4), ferry.ManualOffsets()))
	s.waitClosed("started offset 0", inFlight)
	s.waitUntil("processed the 19 others", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(buffered) == 19
	})
	stopped := make(chan error, 1)
	go func() { stopped <- app.stop(t) }()
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) while a message was in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Run = %v, want nil after a clean drain", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if ctxErr != nil {
		t.Errorf("the message in flight saw its context end (%v); it must be allowed to finish", ctxErr)
	}
	if got := strings.Join(flushed, ", "); got != "20 marked" {
		t.Errorf("Shutdown hook: %s; want the 20 messages marked", got)
	}
	s.wantCommitted(map[int32]int64{0: 20})
}

// K6, A4: shutting down a busy partition — every slot in flight, a backlog
// admitted behind them — lets what runs finish and starts nothing more; the
// final commit covers exactly what finished (with parallel processing, in
// its record), so a restart processes exactly the rest, each message once.
func TestShutdownBusyPartitionStartsNothingMore(t *testing.T) {
	for _, tc := range sequentialAndParallel {
		t.Run(tc.name, func(t *testing.T) {
			s, app, starts := busyPartition(t, tc.opts, busyWork, ferry.CommitInterval(time.Hour))
			stopping := time.Now()
			s.stop(app)
			if late := starts.after(stopping.Add(100 * time.Millisecond)); len(late) > 0 {
				t.Errorf("offsets %v began after the shutdown began", late)
			}
			first := s.rec.offsets()
			if len(first) >= 24 {
				t.Fatal("all 24 messages were processed: the shutdown stopped nothing")
			}

			second := s.rerun(24, tc.opts...)
			all := append(slices.Clone(first), second...)
			slices.Sort(all)
			var want []int64
			for o := range int64(24) {
				want = append(want, o)
			}
			if !slices.Equal(all, want) {
				t.Errorf("processed %v before the shutdown and %v after the restart; want each of 0–23 once", first, second)
			}
		})
	}
}

// K4, M8, K7: a user's long metadata leaves the record of finished messages
// less room: with 3,000 bytes of it on every mark and one message left
// unmarked, the partition stops taking messages within the span the rest
// can describe (MaxSpan), and the committed metadata — at most 4,096 bytes,
// which a real broker accepts — holds the user's string and every mark.
// Once the message is marked — from outside Consume, so no unit ends to
// follow the mark — the committed offset catches up and the partition takes
// the rest.
func TestParallelRecordRoomShrinksWithUserMetadata(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	user := strings.Repeat("u", 3000)
	span := offsets.MaxSpan(user)
	n := int(span) + 1000
	s.produce(0, n) // nil keys: every message in a lane of its own
	var claim atomic.Pointer[ferry.Claim]
	var first atomic.Pointer[ferry.Message]
	var processed atomic.Int64
	consumer := scripted{consume: func(_ context.Context, cl *ferry.Claim, b *ferry.Batch) error {
		claim.Store(cl)
		for _, m := range b.Messages {
			processed.Add(1)
			if m.Offset == 0 {
				first.Store(m) // not marked: it holds the commit
				continue
			}
			cl.MarkWithMetadata(m, user)
		}
		return nil
	}}
	app := s.start(s.routeTo(consumer.factory(), ferry.Parallel(64), ferry.ManualOffsets()))
	var stalled int64
	if err := ferrytest.WaitFor(ctxFor(t, 60*time.Second), func() bool {
		before := processed.Load()
		time.Sleep(500 * time.Millisecond)
		stalled = processed.Load()
		return stalled == before && stalled > 0
	}); err != nil {
		t.Fatal("processing never settled while offset 0 was unmarked")
	}
	if stalled > span || stalled < span-200 {
		t.Errorf("%d messages taken while offset 0 was unmarked, want up to the %d the record has room for", stalled, span)
	}
	var md string
	if err := ferrytest.WaitFor(ctxFor(t, 20*time.Second), func() bool {
		md, _ = s.c.CommittedMetadata(ctxFor(t, 5*time.Second), s.group, s.topic, 0)
		got, finished, _ := offsets.DecodeMetadata(md, 0)
		return got == user && int64(len(finished)) == stalled-1
	}); err != nil {
		got, finished, err := offsets.DecodeMetadata(md, 0)
		t.Fatalf("committed metadata of %d bytes: user's %d bytes, %d finished (%v); want the user's 3,000 bytes and %d finished",
			len(md), len(got), len(finished), err, stalled-1)
	}
	if len(md) > offsets.MaxMetadata {
		t.Errorf("committed metadata of %d bytes, over Kafka's default %d", len(md), offsets.MaxMetadata)
	}
	if !claim.Load().MarkAsConsumed(first.Load()) {
		t.Fatal("marking offset 0 was refused")
	}
	s.waitCommitted(map[int32]int64{0: int64(n)})
	s.stop(app)
}

// K3, K4, M8: user metadata that grows after messages were admitted —
// here too long to leave room for the record of what finished — never
// drops finished work from the commit: the commit keeps the user's
// metadata that last fitted, with the record, and a restart processes only
// what was not marked.
func TestParallelGrowingUserMetadataKeepsTheRecord(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	const n = 200
	long := strings.Repeat("x", 4080) // room for no record beside it
	s.produce(0, n)                   // nil keys: every message in a lane of its own
	var claim atomic.Pointer[ferry.Claim]
	var first atomic.Pointer[ferry.Message]
	var shortMarks atomic.Int64
	consumer := scripted{consume: func(ctx context.Context, cl *ferry.Claim, b *ferry.Batch) error {
		claim.Store(cl)
		for _, m := range b.Messages {
			switch {
			case m.Offset == 0:
				first.Store(m) // not marked yet: it holds the commit
			case m.Offset == n-1: // marked last, with the long metadata
				for shortMarks.Load() < n/2-1 {
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(time.Millisecond):
					}
				}
				cl.MarkWithMetadata(m, long)
			case m.Offset%2 == 1:
				cl.MarkWithMetadata(m, "short")
				shortMarks.Add(1)
			}
		}
		return nil
	}}
	app := s.start(s.routeTo(consumer.factory(), ferry.Parallel(8), ferry.ManualOffsets()))
	var odd []int64
	for o := int64(1); o < n; o += 2 {
		odd = append(odd, o)
	}
	var md string
	if err := ferrytest.WaitFor(ctxFor(t, 20*time.Second), func() bool {
		md, _ = s.c.CommittedMetadata(ctxFor(t, 5*time.Second), s.group, s.topic, 0)
		user, finished, _ := offsets.DecodeMetadata(md, 0)
		return user == "short" && slices.Equal(finished, odd)
	}); err != nil {
		user, finished, err := offsets.DecodeMetadata(md, 0)
		t.Fatalf("committed metadata of %d bytes: user's %d bytes, %d finished (%v); want the record of the %d odd offsets beside the metadata that fitted",
			len(md), len(user), len(finished), err, len(odd))
	}
	s.stop(app)

	// A restart processes the unmarked even offsets only.
	rec := newRecorder()
	again := s.start(s.route(rec.fn(), ferry.Parallel(8)))
	rec.waitDistinct(t, s.topic, n/2, 30*time.Second)
	time.Sleep(300 * time.Millisecond) // anything more would show now
	s.stop(again)
	for _, b := range rec.snapshot() {
		for _, o := range b.offsets {
			if o%2 == 1 {
				t.Errorf("offset %d processed again after the restart; it was marked and in the record", o)
			}
		}
	}
}

// K8, K1: one key stuck on its first message while its later messages
// come between messages of other keys: the other keys flow past it, but
// only as far as the partition's bound on admitted messages lets the stuck
// key's backlog grow; then its queue fills and its fetching pauses instead
// of buffering the partition. Released, everything is processed.
func TestParallelMemoryIsBoundedWhileAnInterleavedKeyIsStuck(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	const n = 20000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "stuck"
		if i%2 == 1 {
			keys[i] = "k" + strconv.Itoa(i)
		}
	}
	s.produceKeyed(keys...)
	fn, stuck, release := s.holdFirst()
	app := s.start(s.route(fn, ferry.Parallel(4), ferry.MaxMessages(10), ferry.QueueBytes(16<<10)))
	<-stuck
	var p ferry.PartitionStats
	if err := ferrytest.WaitFor(ctxFor(t, 30*time.Second), func() bool {
		p, _ = s.partitionStats(app, 0)
		return p.Paused
	}); err != nil {
		t.Fatalf("fetching never paused while a key was stuck: %+v", p)
	}
	time.Sleep(500 * time.Millisecond) // what was admitted settles
	p, _ = s.partitionStats(app, 0)
	processed := s.rec.distinct(s.topic)
	// QueueBytes bounds bytes: these messages are some 10 bytes, so about
	// 3,000 fit in twice 16 KiB — far fewer than the backlog. What was
	// processed is bounded by what may be admitted (4 × Parallel, 2 ×
	// MaxMessages): the stuck key's messages fill it.
	if p.Queued == 0 || p.Queued > n/4 || processed > 100 {
		t.Errorf("%d messages queued and %d processed while a key was stuck, want some queued, both far fewer than the %d behind it", p.Queued, processed, n)
	}
	close(release)
	s.waitSeen(n)
	s.waitCommitted(map[int32]int64{0: n})
	s.stop(app)
}
