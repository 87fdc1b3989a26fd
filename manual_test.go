package ferry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// M1: with ManualOffsets, a consumer that never marks has nothing committed —
// not by the periodic commits, not on shutdown — while an automatic topic of
// the same group is committed as usual.
func TestManualOffsetsWithoutMarksCommitNothing(t *testing.T) {
	s := newScenario(t, cluster(t), 1) // its topic is the manual one
	c, group, manual, rec := s.c, s.group, s.topic, s.rec
	auto := topic(t, c, 1)
	s.produce(0, 30)
	produceN(t, c, auto, 0, 5)
	caughtUp := make(chan struct{})
	var once sync.Once
	never := scripted{
		consume: func(_ context.Context, _ *ferry.Claim, b *ferry.Batch) error { rec.record(b); return nil },
		eof: func(*ferry.Claim) { // after the last batch returned (and would have been marked)
			if rec.distinct(manual) == 30 {
				once.Do(func() { close(caughtUp) })
			}
		},
	}
	commits := &commitLog{}
	app := s.start(commits.option(), s.routeTo(never.factory(), ferry.ManualOffsets(), ferry.MaxMessages(10)),
		ferry.RouteFunc(group, auto, rec.fn()))
	s.waitClosed("caught up on the manual topic", caughtUp)
	// A periodic commit that began after every manual batch returned: the
	// automatic topic's next message gets committed.
	produceN(t, c, auto, 0, 1)
	waitCommitted(t, c, group, auto, 0, 6)
	if got := s.committed(); len(got) != 0 {
		t.Errorf("manual topic committed %v by periodic commits, want nothing: the consumer never marked", got)
	}
	s.stop(app)
	if got := s.committed(); len(got) != 0 {
		t.Errorf("manual topic committed %v after shutdown, want nothing", got)
	}
	if got := commits.of(manual, 0); len(got) != 0 {
		t.Errorf("commit requests named the manual topic: %v", got)
	}
}

// M1: with ManualOffsets exactly the consumer's marks are committed — never
// the end of a batch — by the periodic commits, or, when none is due, by
// the shutdown commit.
func TestManualOffsetsCommitExactlyTheMarks(t *testing.T) {
	for _, tc := range []struct {
		reason   string
		interval time.Duration
	}{
		{"periodic", 200 * time.Millisecond},
		{"shutdown", time.Hour},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			s := newScenario(t, cluster(t), 1)
			s.produce(0, 30)
			caughtUp := make(chan struct{})
			var once sync.Once
			marker := scripted{
				consume: func(_ context.Context, claim *ferry.Claim, b *ferry.Batch) error {
					s.rec.record(b)
					markWhere(t, claim, b, endsIn4)
					return nil
				},
				eof: func(*ferry.Claim) {
					if s.rec.distinct(s.topic) == 30 {
						once.Do(func() { close(caughtUp) })
					}
				},
			}
			commits := &commitLog{}
			app := s.start(ferry.CommitInterval(tc.interval), commits.option(),
				s.routeTo(marker.factory(), ferry.ManualOffsets(), ferry.MaxMessages(10)))
			s.waitClosed("caught up", caughtUp)
			if tc.reason == "periodic" {
				s.waitCommittedAt(0, 25)
			} else if got := s.committed(); len(got) != 0 {
				t.Errorf("committed %v before shutdown with no periodic commit due", got)
			}
			s.stop(app)
			// After the last mark, offset 24; 25-29 were never marked.
			s.wantCommitted(map[int32]int64{0: 25})
			events := commits.of(s.topic, 0)
			for _, ev := range events {
				if ev.offset != 5 && ev.offset != 15 && ev.offset != 25 {
					t.Errorf("a %s commit sent offset %d, which no mark named (commits %v)", ev.reason, ev.offset, events)
				}
				if ev.reason != tc.reason {
					t.Errorf("unexpected %s commit (commits %v)", ev.reason, events)
				}
			}
			if tc.reason == "shutdown" && len(events) != 1 {
				t.Errorf("commits %v, want exactly the shutdown commit", events)
			}
		})
	}
}

// M3: MarkAsConsumedSync commits before it returns: the moment it returns
// true, the group's committed offset is the mark (no periodic commit is due).
func TestManualMarkAsConsumedSyncCommitsBeforeReturning(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 30)
	var checked atomic.Int32
	sc := scripted{consume: func(ctx context.Context, claim *ferry.Claim, b *ferry.Batch) error {
		ok, err := claim.MarkAsConsumedSync(ctx, b.Last())
		if !ok || err != nil {
			t.Errorf("MarkAsConsumedSync = %v, %v while owned, want true, nil", ok, err)
			return nil
		}
		got, err := s.c.Committed(ctx, s.group, s.topic)
		if err != nil || got[0] != b.Last().Offset+1 {
			t.Errorf("right after MarkAsConsumedSync(%d) returned true, committed %v (%v), want %d",
				b.Last().Offset, got, err, b.Last().Offset+1)
		}
		checked.Add(1)
		return nil
	}}
	app := s.start(ferry.CommitInterval(time.Hour), s.routeTo(sc.factory(), ferry.ManualOffsets(), ferry.MaxMessages(10)))
	s.waitCommittedAt(0, 30)
	s.stop(app)
	if n := checked.Load(); n < 3 {
		t.Errorf("checked %d batches, want at least 3", n)
	}
}

// M4: CommitOffsetsSync commits what was stored before it returns and
// CommitOffsets commits it soon without waiting (no periodic commit is due);
// with nothing stored both succeed while the partition is owned.
func TestManualCommitOffsets(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 30)
	var batches atomic.Int32
	var second atomic.Int64
	third := make(chan struct{})
	sc := scripted{consume: func(ctx context.Context, claim *ferry.Claim, b *ferry.Batch) error {
		mustCommit := func(what string) {
			if ok, err := claim.CommitOffsetsSync(ctx); !ok || err != nil {
				t.Errorf("CommitOffsetsSync %s = %v, %v, want true, nil", what, ok, err)
			}
		}
		switch batches.Add(1) {
		case 1:
			mustCommit("with nothing stored")
			if got := s.committed(); len(got) != 0 {
				t.Errorf("committed %v with nothing stored", got)
			}
			if !claim.CommitOffsets() {
				t.Error("CommitOffsets with nothing stored = false while owned")
			}
			claim.MarkAsConsumed(b.Last())
			mustCommit("after a mark")
			if got := s.committed(); got[0] != b.Last().Offset+1 {
				t.Errorf("right after CommitOffsetsSync, committed %v, want %d", got, b.Last().Offset+1)
			}
		case 2:
			claim.MarkAsConsumed(b.Last())
			second.Store(b.Last().Offset + 1)
			if !claim.CommitOffsets() {
				t.Error("CommitOffsets = false while owned")
			}
			// Nothing else commits meanwhile: the offset arrives through
			// CommitOffsets alone.
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := ferrytest.WaitFor(wctx, func() bool {
				return s.committed()[0] == b.Last().Offset+1
			}); err != nil {
				t.Errorf("CommitOffsets never committed %d", b.Last().Offset+1)
			}
		case 3:
			if !claim.CommitOffsets() {
				t.Error("CommitOffsets with nothing new stored = false while owned")
			}
			mustCommit("with nothing new stored")
			close(third)
		}
		return nil
	}}
	app := s.start(ferry.CommitInterval(time.Hour), s.routeTo(sc.factory(), ferry.ManualOffsets(), ferry.MaxMessages(10)))
	s.waitClosed("ran the third batch", third)
	s.stop(app)
	if got := s.committed(); got[0] != second.Load() {
		t.Errorf("committed %v after shutdown, want %d: nothing was marked after the second batch", got, second.Load())
	}
}

// M6: marking an older message moves the resume point back — the retry
// starts right after it — but never the committed offset; re-marking the
// offset just marked stores nothing: the sync commit after it, which asks
// the coordinator all the same (M3), sends the committed 20 again.
func TestManualOlderMarkMovesResumePointNotCommit(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 30)
	tp := s.topic
	commits := &commitLog{}
	sc := scripted{consume: func(ctx context.Context, claim *ferry.Claim, b *ferry.Batch) error {
		s.rec.record(b)
		if b.Attempt > 1 {
			if got := s.committed(); got[0] != 20 {
				t.Errorf("during the retry committed %v, want 20: an older mark must not rewind it", got)
			}
			claim.MarkAsConsumed(at(t, b, 14)) // older again: stays in memory
			return nil
		}
		claim.MarkAsConsumed(at(t, b, 19))
		claim.MarkAsConsumed(at(t, b, 9)) // older: moves only the resume point
		if ok, err := claim.CommitOffsetsSync(ctx); !ok {
			t.Errorf("CommitOffsetsSync = false, %v", err)
		}
		if got := s.committed(); got[0] != 20 {
			t.Errorf("committed %v after marking 19 then 9, want 20: the older mark must not be committed", got)
		}
		sent := len(commits.of(tp, 0))
		if !claim.MarkAsConsumed(at(t, b, 9)) { // the same again: a no-op
			t.Error("re-marking = false while owned")
		}
		if ok, err := claim.CommitOffsetsSync(ctx); !ok {
			t.Errorf("CommitOffsetsSync = false, %v", err)
		}
		for _, ev := range commits.of(tp, 0)[sent:] {
			if ev.offset != 20 {
				t.Errorf("after re-marking offset 9 a %s commit sent %d, want 20 (nothing new stored)", ev.reason, ev.offset)
			}
		}
		return errors.New("failed after marking an older message")
	}}
	app := s.start(commits.option(), s.routeTo(sc.factory(), ferry.ManualOffsets(),
		ferry.MaxMessages(30), ferry.Retry(ferry.ConstantBackoff(50*time.Millisecond))))
	s.waitUntil("retried the failed batch", func() bool { return s.rec.sawAttempt(2) })
	s.stop(app)
	if retry := s.rec.snapshot()[1]; retry.attempt != 2 || retry.offsets[0] != 10 {
		t.Errorf("retry: attempt %d from offset %d, want attempt 2 from 10 (after the newest mark, offset 9)",
			retry.attempt, retry.offsets[0])
	}
	s.wantCommitted(map[int32]int64{0: 20}) // older marks never rewind the group
	for _, ev := range commits.of(tp, 0) {
		if ev.offset != 20 {
			t.Errorf("a %s commit sent %d, want only 20", ev.reason, ev.offset)
		}
	}
}

// M7: with ManualOffsets a retry resumes right after the last marked
// message — not at the start of the failed batch — whether that mark was
// made in the failed batch or in an earlier one.
func TestManualRetryResumesAfterLastMark(t *testing.T) {
	for _, tc := range []struct {
		name   string
		marks  func(int64) bool
		failAt int64
		resume int64
	}{
		{"mark in the failed batch", func(o int64) bool { return o < 7 }, 7, 7},
		{"mark in an earlier batch", func(o int64) bool { return o == 4 }, 12, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScenario(t, cluster(t), 1)
			s.produce(0, 30)
			var failed atomic.Bool
			sc := scripted{consume: func(_ context.Context, claim *ferry.Claim, b *ferry.Batch) error {
				s.rec.record(b)
				for _, m := range b.Messages {
					if m.Offset == tc.failAt && !failed.Load() {
						failed.Store(true)
						return fmt.Errorf("failed at offset %d", m.Offset)
					}
					if failed.Load() || tc.marks(m.Offset) { // after the failure: mark everything
						claim.MarkAsConsumed(m)
					}
				}
				return nil
			}}
			app := s.start(s.routeTo(sc.factory(), ferry.ManualOffsets(),
				ferry.MaxMessages(10), ferry.Retry(ferry.ConstantBackoff(50*time.Millisecond))))
			s.waitSeen(30)
			s.waitCommittedAt(0, 30)
			s.stop(app)
			var retry *delivery
			for _, d := range s.rec.snapshot() {
				if d.attempt == 2 {
					retry = &d
					break
				}
			}
			if retry == nil {
				t.Fatal("no retry")
			}
			if retry.offsets[0] != tc.resume {
				t.Errorf("retry started at offset %d, want %d (right after the last mark)", retry.offsets[0], tc.resume)
			}
		})
	}
}

// M8: a mark's metadata is committed with its offset — by a periodic commit
// and by MarkWithMetadataSync — and the next assignment of the partition
// (a new app on the group) reads it through Claim.CommittedMetadata. A
// later mark without metadata commits none.
func TestManualMetadataIsCommittedAndReadOnNextAssignment(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	c, group, tp := s.c, s.group, s.topic
	s.produce(0, 20)
	periodicSeen := make(chan struct{})
	done := make(chan struct{})
	startedWith := make(chan string, 1)
	first := scripted{
		initialized: func(claim *ferry.Claim) { startedWith <- claim.CommittedMetadata() },
		consume: func(ctx context.Context, claim *ferry.Claim, b *ferry.Batch) error {
			md := fmt.Sprintf("through-%d", b.Last().Offset)
			if b.Last().Offset < 19 {
				if !claim.MarkWithMetadata(b.Last(), md) {
					t.Error("MarkWithMetadata = false while owned")
				}
				return nil
			}
			select {
			case <-periodicSeen:
			case <-time.After(10 * time.Second):
				t.Error("the test never saw the periodic commit")
			}
			if ok, err := claim.MarkWithMetadataSync(ctx, b.Last(), md); !ok {
				t.Errorf("MarkWithMetadataSync = false, %v", err)
			}
			if got, err := c.CommittedMetadata(ctx, group, tp, 0); got != md {
				t.Errorf("right after MarkWithMetadataSync, committed metadata %q (%v), want %q", got, err, md)
			}
			close(done)
			return nil
		},
	}
	app := s.start(s.routeTo(first.factory(), ferry.ManualOffsets(), ferry.MaxMessages(10)))
	if md := recv(t, startedWith); md != "" {
		t.Errorf("first assignment's CommittedMetadata = %q, want \"\" (nothing committed yet)", md)
	}
	if err := ferrytest.WaitFor(ctxFor(t, 10*time.Second), func() bool {
		md, _ := c.CommittedMetadata(ctxFor(t, 5*time.Second), group, tp, 0)
		return md == "through-9"
	}); err != nil {
		t.Error("the periodic commit never carried the metadata \"through-9\"")
	}
	close(periodicSeen)
	s.waitClosed("ran the last batch", done)
	s.stop(app)

	// The next assignment reads it; it then marks without metadata.
	plain := scripted{
		initialized: func(claim *ferry.Claim) { startedWith <- claim.CommittedMetadata() },
		consume: func(_ context.Context, claim *ferry.Claim, b *ferry.Batch) error {
			claim.MarkAsConsumed(b.Last())
			return nil
		},
	}
	app = s.start(s.routeTo(plain.factory(), ferry.ManualOffsets()))
	if md := recv(t, startedWith); md != "through-19" {
		t.Errorf("next assignment's CommittedMetadata = %q, want \"through-19\"", md)
	}
	s.produce(0, 1)
	s.waitCommittedAt(0, 21)
	s.stop(app)
	if md, err := c.CommittedMetadata(ctxFor(t, 10*time.Second), group, tp, 0); md != "" || err != nil {
		t.Errorf("after a mark without metadata, committed metadata %q (%v), want \"\"", md, err)
	}
	app = s.start(s.routeTo(plain.factory(), ferry.ManualOffsets()))
	if md := recv(t, startedWith); md != "" {
		t.Errorf("CommittedMetadata after a mark without metadata = %q, want \"\"", md)
	}
	s.stop(app)
}

// M9: the Shutdown hook may mark, and its mark is in the final commit — the
// only commit here, as the consumer never marks in Consume and no periodic
// commit is due.
func TestManualShutdownHookMarkIsCommitted(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 20)
	var last atomic.Pointer[ferry.Message]
	var marked atomic.Bool
	buffering := scripted{
		consume: func(_ context.Context, _ *ferry.Claim, b *ferry.Batch) error {
			s.rec.record(b)
			last.Store(b.Last())
			return nil
		},
		shutdown: func(_ context.Context, claim *ferry.Claim) { marked.Store(claim.MarkAsConsumed(last.Load())) },
	}
	app := s.start(ferry.CommitInterval(time.Hour), s.routeTo(buffering.factory(), ferry.ManualOffsets(), ferry.MaxMessages(10)))
	s.waitSeen(20)
	s.stop(app)
	if !marked.Load() {
		t.Error("MarkAsConsumed in the Shutdown hook = false")
	}
	s.wantCommitted(map[int32]int64{0: 20}) // from the Shutdown hook's mark
}

// M10: in automatic mode, marks made inside Consume are honoured: marking
// every 10th message of a long batch commits progress while the batch is
// still in flight, and when the batch then fails, the retry resumes right
// after the last mark rather than at the start of the batch.
func TestMarksInConsumeHonouredInAutomaticMode(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 100)
	midBatch := make(chan struct{})
	progressSeen := make(chan struct{})
	fn := func(_ context.Context, b *ferry.Batch) error {
		for i, m := range b.Messages {
			if m.Offset == 55 && b.Attempt == 1 {
				close(midBatch)
				select {
				case <-progressSeen:
				case <-time.After(20 * time.Second):
					t.Error("the test never saw the mid-batch commit")
				}
				return errors.New("failed mid-batch")
			}
			if i%10 == 0 { // Karafka's CountersConsumer
				b.Claim().MarkAsConsumed(m)
			}
		}
		return nil
	}
	app := s.start(s.route(s.recordThen(fn), ferry.MaxMessages(100), ferry.Retry(ferry.ConstantBackoff(50*time.Millisecond))))
	s.waitClosed("reached offset 55", midBatch)
	s.waitCommittedAt(0, 51) // the mark of offset 50, committed mid-batch
	close(progressSeen)
	s.waitSeen(100)
	s.waitCommittedAt(0, 100)
	s.stop(app)
	deliveries := s.rec.snapshot()
	if deliveries[0].offsets[0] != 0 || len(deliveries[0].offsets) != 100 {
		t.Fatalf("first batch %d-%d, want the 100 messages in one batch",
			deliveries[0].offsets[0], deliveries[0].offsets[len(deliveries[0].offsets)-1])
	}
	if retry := deliveries[1]; retry.attempt != 2 || retry.offsets[0] != 51 {
		t.Errorf("retry: attempt %d from offset %d, want attempt 2 from 51 (after the mark of offset 50)",
			retry.attempt, retry.offsets[0])
	}
}

// scripted is a consumer whose behaviour a test supplies hook by hook; nil
// hooks do nothing.
type scripted struct {
	consume     func(ctx context.Context, claim *ferry.Claim, b *ferry.Batch) error
	initialized func(claim *ferry.Claim)
	eof         func(claim *ferry.Claim)
	revoked     func(ctx context.Context, claim *ferry.Claim)
	shutdown    func(ctx context.Context, claim *ferry.Claim)
}

func (s scripted) factory() ferry.NewConsumer {
	return func(claim *ferry.Claim) ferry.Consumer { return &scriptedConsumer{s: s, claim: claim} }
}

type scriptedConsumer struct {
	s     scripted
	claim *ferry.Claim
}

func (c *scriptedConsumer) Consume(ctx context.Context, b *ferry.Batch) error {
	if c.s.consume == nil {
		return nil
	}
	return c.s.consume(ctx, c.claim, b)
}

func (c *scriptedConsumer) Initialized(context.Context) error {
	if c.s.initialized != nil {
		c.s.initialized(c.claim)
	}
	return nil
}

func (c *scriptedConsumer) EOF(context.Context) error {
	if c.s.eof != nil {
		c.s.eof(c.claim)
	}
	return nil
}

func (c *scriptedConsumer) Revoked(ctx context.Context) error {
	if c.s.revoked != nil {
		c.s.revoked(ctx, c.claim)
	}
	return nil
}

func (c *scriptedConsumer) Shutdown(ctx context.Context) error {
	if c.s.shutdown != nil {
		c.s.shutdown(ctx, c.claim)
	}
	return nil
}

func endsIn4(offset int64) bool { return offset%10 == 4 }

// markWhere marks the batch's messages whose offset satisfies cond; a
// refused mark is an error, as the partition is owned while Consume runs.
func markWhere(t *testing.T, claim *ferry.Claim, b *ferry.Batch, cond func(int64) bool) {
	for _, m := range b.Messages {
		if cond(m.Offset) && !claim.MarkAsConsumed(m) {
			t.Errorf("MarkAsConsumed(offset %d) = false while Consume runs", m.Offset)
		}
	}
}

// at returns the batch's message at offset.
func at(t *testing.T, b *ferry.Batch, offset int64) *ferry.Message {
	for _, m := range b.Messages {
		if m.Offset == offset {
			return m
		}
	}
	t.Errorf("batch %d-%d lacks offset %d", b.Messages[0].Offset, b.Last().Offset, offset)
	return &kgo.Record{Topic: b.Topic, Partition: b.Partition, Offset: offset, LeaderEpoch: -1}
}

// commitLog records every commit request an app made (ferry.OnCommit).
type commitLog struct{ logOf[ferry.Commit] }

type commitEvent struct {
	reason string
	offset int64
}

func (l *commitLog) option() ferry.Option {
	return ferry.OnCommit(l.add)
}

// of returns, in order, the successful commits that named topic/partition.
func (l *commitLog) of(topic string, partition int32) []commitEvent {
	var out []commitEvent
	for _, c := range l.snapshot() {
		if o, ok := c.Offsets[topic][partition]; ok {
			out = append(out, commitEvent{c.Reason, o})
		}
	}
	return out
}

// committedOf returns the group's committed offsets of topic. It may run on
// a consumer's goroutine.
func committedOf(t *testing.T, c *ferrytest.Cluster, group, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := c.Committed(ctx, group, topic)
	if err != nil {
		t.Error(err)
	}
	return got
}

// recv receives from ch, failing the test after 20 s.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatal("nothing received within 20s")
		var zero T
		return zero
	}
}

// waitCommitted waits until the group's committed offset of one partition is
// want.
func waitCommitted(t *testing.T, c *ferrytest.Cluster, group, topic string, partition int32, want int64) {
	t.Helper()
	var got map[int32]int64
	if err := ferrytest.WaitFor(ctxFor(t, 15*time.Second), func() bool {
		got, _ = c.Committed(ctxFor(t, 5*time.Second), group, topic)
		return got[partition] == want
	}); err != nil {
		t.Fatalf("partition %d never committed at %d (last seen %v)", partition, want, got)
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, within time.Duration, failure string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(within):
		t.Fatal(failure)
	}
}

// M2, A4: a goroutine of the consumer's that keeps marking, after Consume
// returned, while the app shuts down: every mark that returned true is in
// the final commit — none is reported stored and then dropped — and once
// the partition is closed marks return false. (Run a few times: the marks
// race the final commit.)
func TestManualMarksFromAnotherGoroutineDuringShutdown(t *testing.T) {
	for run := range 3 {
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			s := newScenario(t, cluster(t), 1)
			s.produce(0, 1000)
			var claim atomic.Pointer[ferry.Claim]
			var delivered sync.Map // offset → message
			sc := scripted{consume: func(_ context.Context, c *ferry.Claim, b *ferry.Batch) error {
				claim.Store(c)
				for _, m := range b.Messages {
					delivered.Store(m.Offset, m)
				}
				return nil // the marking happens elsewhere
			}}
			app := s.start(ferry.CommitInterval(time.Hour), s.routeTo(sc.factory(), ferry.ManualOffsets()))
			s.waitUntil("delivered every message", func() bool { _, ok := delivered.Load(int64(999)); return ok })
			lastTrue := int64(-1)
			marking := make(chan struct{})
			go func() {
				defer close(marking)
				for o := int64(0); o < 1000; o++ {
					m, _ := delivered.Load(o)
					if !claim.Load().MarkAsConsumed(m.(*ferry.Message)) {
						return
					}
					lastTrue = o
					time.Sleep(20 * time.Microsecond)
				}
			}()
			time.Sleep(5 * time.Millisecond)
			s.stop(app)
			<-marking
			if lastTrue == 999 {
				t.Skip("the goroutine marked everything before the shutdown")
			}
			if got := s.committed()[0]; got != lastTrue+1 {
				t.Errorf("committed %d after shutdown; the last mark that returned true was of offset %d (want %d committed)",
					got, lastTrue, lastTrue+1)
			}
		})
	}
}
