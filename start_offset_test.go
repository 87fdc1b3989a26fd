package ferry_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
)

// offsetsSeen returns the distinct offsets of topic/partition the recorder
// saw, ascending.
func offsetsSeen(r *recorder, topic string, partition int32) []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int64
	for o := range r.seen[topic][partition] {
		out = append(out, o)
	}
	slices.Sort(out)
	return out
}

// probe produces one message at a time to topic/partition until the
// recorder sees one there: a consumer starting from "latest" skips whatever
// was produced before its partition was positioned, and nothing tells the
// test when that happened.
func probe(t *testing.T, c *ferrytest.Cluster, r *recorder, topic string, partition int32) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for len(offsetsSeen(r, topic, partition)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no probe of %s/%d consumed within 15s", topic, partition)
		}
		produceN(t, c, topic, partition, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_ = ferrytest.WaitFor(ctx, func() bool { return len(offsetsSeen(r, topic, partition)) > 0 })
		cancel()
	}
}

// endOffset returns the high watermark of topic/partition.
func endOffset(t *testing.T, c *ferrytest.Cluster, topic string, partition int32) int64 {
	t.Helper()
	ends, err := c.Admin().ListEndOffsets(ctxFor(t, 10*time.Second), topic)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := ends.Lookup(topic, partition)
	if !ok || o.Err != nil {
		t.Fatalf("end offset of %s/%d: %+v", topic, partition, o)
	}
	return o.Offset
}

// B6, A8: Earliest (the default) starts at the first message and Latest
// after the newest one, but only for partitions the group has no committed
// offset for: a Latest group resumes from its commits after a restart —
// also on the partition where it consumed nothing, whose start position it
// committed.
func TestInitialOffset(t *testing.T) {
	s := newScenario(t, cluster(t), 2) // its group starts at Latest
	s.produceEach(2, 5)

	// Earliest, by default: everything, from offset 0.
	early := s.anotherGroup()
	earlyApp := early.start(early.route(early.rec.fn()))

	// Latest: only what is produced once partition 0 is positioned.
	lateApp := s.start(s.route(s.rec.fn(), ferry.InitialOffset(ferry.Latest)))
	probe(t, s.c, s.rec, s.topic, 0)
	if seen := offsetsSeen(s.rec, s.topic, 0); seen[0] < 5 {
		t.Fatalf("Latest group consumed offsets %v of partition 0: it started before the newest message (5)", seen)
	}
	last := endOffset(t, s.c, s.topic, 0) // probes may have been skipped before positioning
	s.waitSeen(int(last - offsetsSeen(s.rec, s.topic, 0)[0]))
	if seen := offsetsSeen(s.rec, s.topic, 1); len(seen) != 0 {
		t.Fatalf("Latest group consumed %v of partition 1, where nothing was produced after it started", seen)
	}
	s.stop(lateApp)

	early.waitSeen(5 + 5 + int(last-5))
	early.stop(earlyApp)
	for p := int32(0); p < 2; p++ {
		if seen := offsetsSeen(early.rec, s.topic, p); len(seen) == 0 || seen[0] != 0 {
			t.Errorf("Earliest group's first offset of partition %d: %v, want 0", p, seen)
		}
	}

	committed := s.committed()
	if committed[0] != last {
		t.Fatalf("Latest group committed %v, want partition 0 at %d", committed, last)
	}
	if o, ok := committed[1]; !ok || o != 5 {
		t.Fatalf("Latest group committed %v, want partition 1 at 5, where it started although it consumed nothing (A8)", committed)
	}

	// While the group is down, both partitions grow.
	s.produceEach(2, 3)

	// Latest again, same group: both partitions resume from their commits.
	again := newRecorder()
	s.start(s.route(again.fn(), ferry.InitialOffset(ferry.Latest)))
	ctx := ctxFor(t, 10*time.Second)
	if err := ferrytest.WaitFor(ctx, func() bool { return len(offsetsSeen(again, s.topic, 1)) >= 3 }); err != nil {
		t.Fatalf("restarted Latest group consumed %v of partition 1, want 5..7 from its committed start", offsetsSeen(again, s.topic, 1))
	}
	if seen := offsetsSeen(again, s.topic, 1); !slices.Equal(seen, []int64{5, 6, 7}) {
		t.Fatalf("restarted Latest group consumed %v of partition 1, want 5..7 from its committed start", seen)
	}
	if err := ferrytest.WaitFor(ctx, func() bool { return len(offsetsSeen(again, s.topic, 0)) >= 3 }); err != nil {
		t.Fatalf("restarted Latest group consumed %v of partition 0, want %d..%d from its commit",
			offsetsSeen(again, s.topic, 0), last, last+2)
	}
	if seen := offsetsSeen(again, s.topic, 0); !slices.Equal(seen, []int64{last, last + 1, last + 2}) {
		t.Fatalf("restarted Latest group consumed %v of partition 0, want %d..%d from its commit", seen, last, last+2)
	}
}

// A8: with Latest, the position a partition starts from is committed at
// once, so when its first batch fails and the app stops, a restart resumes
// right there: the failed message and everything produced while the app was
// down are delivered, none skipped. Sequential and parallel (K) partitions
// alike.
func TestLatestFirstBatchFailsRestartResumesThere(t *testing.T) {
	for _, tc := range sequentialAndParallel {
		t.Run(tc.name, func(t *testing.T) {
			s := newScenario(t, cluster(t), 1)
			s.produce(0, 3)

			fail := func(context.Context, *ferry.Batch) error { return errors.New("first batch fails") }
			app := s.start(s.route(s.recordThen(fail), append(tc.opts,
				ferry.InitialOffset(ferry.Latest), ferry.Retry(ferry.ConstantBackoff(100*time.Millisecond)))...))
			probe(t, s.c, s.rec, s.topic, 0)
			failed := offsetsSeen(s.rec, s.topic, 0)[0]
			if failed < 3 {
				t.Fatalf("Latest group consumed offset %d: it started before the newest message (3)", failed)
			}
			s.stop(app)
			committed := s.committed()
			if got, ok := committed[0]; !ok || got > failed {
				t.Fatalf("committed %v after only failed batches, want the start position, at most %d", committed, failed)
			}

			s.produce(0, 3) // while down
			downEnd := endOffset(t, s.c, s.topic, 0)

			ok := newRecorder()
			s.start(s.route(ok.fn(), append(tc.opts, ferry.InitialOffset(ferry.Latest))...))
			ok.waitDistinct(t, s.topic, int(downEnd-committed[0]), 15*time.Second)
			if seen := offsetsSeen(ok, s.topic, 0); seen[0] != committed[0] || seen[len(seen)-1] != downEnd-1 {
				t.Fatalf("restart consumed %v, want %d..%d: the failed message and what came while the app was down",
					seen, committed[0], downEnd-1)
			}
		})
	}
}
