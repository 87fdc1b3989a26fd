package ferry_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/event"
)

// partitionStats returns the app's stats of one partition of the
// scenario's topic, and whether it is assigned.
func (s *scenario) partitionStats(app *running, partition int32) (ferry.PartitionStats, bool) {
	for _, g := range app.app.Stats().Groups {
		if g.Name != s.group {
			continue
		}
		for _, p := range g.Partitions {
			if p.Topic == s.topic && p.Partition == partition {
				return p, true
			}
		}
	}
	return ferry.PartitionStats{}, false
}

// quiet waits a moment for work already started to finish, then reports
// whether the recorder saw no new batch during d.
func (s *scenario) quiet(d time.Duration) bool {
	time.Sleep(300 * time.Millisecond)
	before := len(s.rec.snapshot())
	time.Sleep(d)
	return len(s.rec.snapshot()) == before
}

// producePaused produces n messages to partition 0, which is paused, and
// fails the test if what (the partition) takes any: no new batch comes, and
// the consumed messages of before the pause are all there are.
func (s *scenario) producePaused(n, consumed int, what string) {
	s.t.Helper()
	s.produce(0, n)
	if !s.quiet(1500 * time.Millisecond) {
		s.t.Fatalf("%s took new batches", what)
	}
	if got := s.rec.distinct(s.topic); got != consumed {
		s.t.Fatalf("%s consumed %d messages, want the %d before the pause", what, got, consumed)
	}
}

// sequentialAndParallel are the ways of processing a partition the
// operator calls must hold for.
var sequentialAndParallel = []struct {
	name string
	opts []ferry.TopicOption
}{
	{"sequential", nil},
	{"parallel", []ferry.TopicOption{ferry.Parallel(4)}},
}

// O4: a paused partition starts no batch and is not fetched until it is
// resumed; a retry's own backoff ending leaves it paused; health does not
// count it as failing; on resume it goes on where it stopped: messages
// fetched before the pause and not handed over are delivered, once.
func TestPauseHoldsUntilResumed(t *testing.T) {
	for _, tc := range sequentialAndParallel {
		t.Run(tc.name, func(t *testing.T) {
			s := newScenario(t, cluster(t), 1)
			var events eventLog
			fail := func(_ context.Context, b *ferry.Batch) error {
				for _, m := range b.Messages {
					if m.Offset == 25 && b.Attempt == 1 {
						return errors.New("first attempt of offset 25 fails")
					}
				}
				return nil
			}
			app := s.start(s.route(s.recordThen(fail), append(tc.opts, ferry.MaxMessages(10),
				ferry.Retry(ferry.ConstantBackoff(time.Second)))...),
				ferry.FailingTimeout(200*time.Millisecond), ferry.OnEvent(events.add))
			s.produce(0, 20)
			s.waitSeen(20)

			if err := app.app.Pause(s.group, s.topic, 0); err != nil {
				t.Fatal(err)
			}
			if p, _ := s.partitionStats(app, 0); !p.PausedByUser || !p.Paused {
				t.Errorf("stats after Pause: %+v", p)
			}
			if err := app.app.Pause(s.group, s.topic, 0); err != nil { // again: nothing changes
				t.Fatal(err)
			}
			s.producePaused(20, 20, "a paused partition") // offsets 20..39
			if err := app.app.Resume(s.group, s.topic, 0); err != nil {
				t.Fatal(err)
			}

			// Offset 25 fails; during its backoff the partition is paused
			// again, and stays paused after the backoff.
			s.waitUntil("saw offset 25 fail", func() bool { return s.rec.times(s.topic, 0, 25) == 1 })
			if err := app.app.Pause(s.group, s.topic, 0); err != nil {
				t.Fatal(err)
			}
			if !s.quiet(2 * time.Second) { // twice the backoff
				t.Fatal("a paused partition retried after its backoff")
			}
			if s.rec.times(s.topic, 0, 25) != 1 {
				t.Fatal("offset 25 was retried while paused")
			}
			p, _ := s.partitionStats(app, 0)
			if !p.PausedByUser || p.FailingSince.IsZero() {
				t.Errorf("stats of a failing partition paused: %+v", p)
			}
			if err := app.app.Healthy(); err != nil {
				t.Errorf("a failing partition paused by an operator makes the app unhealthy: %v", err)
			}
			if err := app.app.Resume(s.group, s.topic, 0); err != nil {
				t.Fatal(err)
			}
			if err := app.app.Resume(s.group, s.topic, 0); err != nil { // again: nothing changes
				t.Fatal(err)
			}
			s.waitSeen(40)
			s.waitCommittedAt(0, 40)
			for o := int64(30); o < 40; o++ { // behind the failure: once each
				if n := s.rec.times(s.topic, 0, o); n != 1 {
					t.Errorf("offset %d delivered %d times", o, n)
				}
			}
			paused, resumed := 0, 0
			for _, e := range events.snapshot() {
				switch e := e.(type) {
				case event.Paused:
					if e.Reason == event.PauseUser {
						paused++
					}
				case event.Resumed:
					if e.Reason == event.PauseUser {
						resumed++
					}
				}
			}
			if paused != 2 || resumed != 2 {
				t.Errorf("%d paused and %d resumed events of reason user, want 2 and 2", paused, resumed)
			}
		})
	}
}

// O5: Seek skips a message that fails forever — the retry ends, the new
// position is committed before Seek returns, and the partition goes on from
// it (a parallel partition, whose other messages finished meanwhile, past
// them: they are not processed again) — and moves a partition back to
// process messages again, committing the earlier offset.
func TestSeekSkipsAndRewinds(t *testing.T) {
	cases := append(sequentialAndParallel[:2:2], struct {
		name string
		opts []ferry.TopicOption
	}{"manual offsets", []ferry.TopicOption{ferry.ManualOffsets()}})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newScenario(t, cluster(t), 1)
			manual := tc.name == "manual offsets"
			poison := func(_ context.Context, b *ferry.Batch) error {
				for _, m := range b.Messages {
					if m.Offset == 10 {
						return ferry.FailedAt(m, errors.New("offset 10 never succeeds"))
					}
					if manual {
						b.Claim().MarkAsConsumed(m)
					}
				}
				return nil
			}
			app := s.start(s.route(s.recordThen(poison), append(tc.opts, ferry.MaxMessages(5),
				ferry.Retry(ferry.ConstantBackoff(200*time.Millisecond)))...))
			s.produce(0, 30)
			s.waitUntil("saw offset 10 retried", func() bool { return s.rec.times(s.topic, 0, 10) >= 2 })
			s.waitCommittedAt(0, 10)
			parallel := tc.name == "parallel"
			if parallel {
				s.waitSeen(30) // every other message finished; offset 10 keeps failing
			}

			if err := app.app.Seek(ctxFor(t, 30*time.Second), s.group, s.topic, 0, 11); err != nil {
				t.Fatal(err)
			}
			want := int64(11)
			if parallel {
				want = 30 // 11..29 finished
			}
			s.wantCommitted(map[int32]int64{0: want}) // before Seek returned
			s.waitSeen(30)
			s.waitCommittedAt(0, 30)
			for o := int64(15); o < 30; o++ { // after the failing batch: once each
				if n := s.rec.times(s.topic, 0, o); n != 1 {
					t.Errorf("offset %d delivered %d times", o, n)
				}
			}
			if p, _ := s.partitionStats(app, 0); !p.FailingSince.IsZero() {
				t.Errorf("still failing after the seek past the failing message: %+v", p)
			}

			// Backwards: offsets 20..29 come again; the committed offset
			// moves back first.
			before := s.rec.times(s.topic, 0, 20)
			if err := app.app.Seek(ctxFor(t, 30*time.Second), s.group, s.topic, 0, 20); err != nil {
				t.Fatal(err)
			}
			s.wantCommitted(map[int32]int64{0: 20})
			s.waitUntil("saw offsets 20..29 again", func() bool {
				return s.rec.times(s.topic, 0, 20) > before && s.rec.times(s.topic, 0, 29) > before
			})
			s.waitCommittedAt(0, 30)
			if n := s.rec.times(s.topic, 0, 19); n != 1 {
				t.Errorf("offset 19, before the rewind, delivered %d times", n)
			}
		})
	}
}

// O5: a paused partition stays paused across a seek, and on resume starts
// at the new position.
func TestSeekWhilePaused(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	app := s.start(s.route(s.rec.fn(), ferry.MaxMessages(5)))
	s.produce(0, 10)
	s.waitSeen(10)
	if err := app.app.Pause(s.group, s.topic, 0); err != nil {
		t.Fatal(err)
	}
	s.produce(0, 20) // 10..29
	if err := app.app.Seek(ctxFor(t, 30*time.Second), s.group, s.topic, 0, 25); err != nil {
		t.Fatal(err)
	}
	s.wantCommitted(map[int32]int64{0: 25})
	if !s.quiet(time.Second) {
		t.Fatal("a seek resumed a paused partition")
	}
	if err := app.app.Resume(s.group, s.topic, 0); err != nil {
		t.Fatal(err)
	}
	s.waitSeen(15) // 0..9 and 25..29
	s.waitCommittedAt(0, 30)
	if n := s.rec.distinct(s.topic); n != 15 || s.rec.times(s.topic, 0, 24) != 0 {
		t.Errorf("after a seek to 25: %d distinct offsets, offset 24 seen %d times", n, s.rec.times(s.topic, 0, 24))
	}
}

// O4, O5: the operator calls refuse what they cannot do, with errors a
// caller can tell apart: a partition or topic this app does not consume
// (ErrNotAssigned), an offset outside the partition (ErrOffsetOutOfRange),
// an exactly-once topic (ErrTransactional).
func TestOperatorCallsRefuse(t *testing.T) {
	c := cluster(t)
	s := newScenario(t, c, 1)
	app := s.start(s.route(s.rec.fn()))
	s.produce(0, 10)
	s.waitSeen(10)
	ctx := ctxFor(t, 30*time.Second)
	for name, err := range map[string]error{
		"pause an unrouted topic":    app.app.Pause(s.group, "elsewhere", 0),
		"pause another group":        app.app.Pause("other-group", s.topic, 0),
		"resume a missing partition": app.app.Resume(s.group, s.topic, 7),
		"seek a missing partition":   app.app.Seek(ctx, s.group, s.topic, 7, 0),
	} {
		if !errors.Is(err, ferry.ErrNotAssigned) {
			t.Errorf("%s: %v, want ErrNotAssigned", name, err)
		}
	}
	for _, off := range []int64{-1, 11} {
		if err := app.app.Seek(ctx, s.group, s.topic, 0, off); !errors.Is(err, ferry.ErrOffsetOutOfRange) {
			t.Errorf("seek to %d of a partition of offsets [0, 10]: %v, want ErrOffsetOutOfRange", off, err)
		}
	}
	if err := app.app.Seek(ctx, s.group, s.topic, 0, 10); err != nil { // the end is a position
		t.Errorf("seek to the end: %v", err)
	}
	s.stop(app)
	if err := app.app.Pause(s.group, s.topic, 0); !errors.Is(err, ferry.ErrNotAssigned) {
		t.Errorf("pause after Run returned: %v, want ErrNotAssigned", err)
	}

	x := newScenario(t, c, 1)
	x.produce(0, 5)
	eos := x.startTransactional(x.route(x.rec.fn(), ferry.WithDelivery(ferry.ExactlyOnce)))
	x.waitSeen(5)
	if err := eos.app.Seek(ctx, x.group, x.topic, 0, 0); !errors.Is(err, ferry.ErrTransactional) {
		t.Errorf("seek on an exactly-once topic: %v, want ErrTransactional", err)
	}
}

// X2: Stats shows the member id, the messages in flight — a sequential
// partition's running batch, a parallel partition's running messages — and
// a partition being revoked while its work in flight finishes (A3).
func TestStatsShowInFlightAndRevoking(t *testing.T) {
	for _, tc := range sequentialAndParallel {
		t.Run(tc.name, func(t *testing.T) {
			s := newScenario(t, cluster(t), 2)
			release := make(chan struct{})
			hold := func(ctx context.Context, b *ferry.Batch) error {
				<-release
				return nil
			}
			app := s.start(s.route(s.recordThen(hold), append(tc.opts, ferry.MaxMessages(3))...))
			var once sync.Once
			t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the app's cleanup
			s.produceEach(2, 6)
			// Nothing finishes while held: what the consumer was handed
			// is what is in flight.
			handed := func(partition int32) int {
				n := 0
				for _, d := range s.rec.snapshot() {
					if d.partition == partition {
						n += len(d.offsets)
					}
				}
				return n
			}
			inFlight := func(app *running, partition int32) (ferry.PartitionStats, bool) {
				p, ok := s.partitionStats(app, partition)
				n := handed(partition)
				if tc.name == "parallel" && n != 4 { // Parallel(4): four messages at once
					return p, false
				}
				return p, ok && n > 0 && p.InFlight == n
			}
			s.waitUntil("saw the messages in flight", func() bool {
				_, ok0 := inFlight(app, 0)
				_, ok1 := inFlight(app, 1)
				return ok0 && ok1
			})
			if g := app.app.Stats().Groups[0]; g.MemberID == "" {
				t.Errorf("no member id in stats: %+v", g)
			}

			// A second member joins: one partition is revoked from the
			// first member, which waits for its work in flight.
			other := s.start(s.route(s.rec.fn()))
			revoking := int32(-1)
			s.waitUntil("saw a partition revoking", func() bool {
				for id := range int32(2) {
					if p, ok := inFlight(app, id); ok && p.Revoking {
						revoking = id
						return true
					}
				}
				return false
			})
			once.Do(func() { close(release) })
			s.waitUntil("saw the partition handed over", func() bool {
				_, mine := s.partitionStats(app, revoking)
				_, theirs := s.partitionStats(other, revoking)
				return !mine && theirs
			})
			s.waitSeen(12)
		})
	}
}

// O4: an exactly-once partition paused takes no new transaction's messages
// until it is resumed, then goes on where it stopped: every message once.
func TestPauseExactlyOnce(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	app := s.startTransactional(s.route(s.rec.fn(), ferry.WithDelivery(ferry.ExactlyOnce), ferry.MaxMessages(5)))
	s.produce(0, 10)
	s.waitSeen(10)
	if err := app.app.Pause(s.group, s.topic, 0); err != nil {
		t.Fatal(err)
	}
	s.producePaused(10, 10, "a paused exactly-once partition") // 10..19
	if err := app.app.Resume(s.group, s.topic, 0); err != nil {
		t.Fatal(err)
	}
	s.waitSeen(20)
	s.waitCommittedAt(0, 20)
	if d := s.rec.duplicates(s.topic); d != 0 {
		t.Errorf("%d messages delivered twice", d)
	}
}
