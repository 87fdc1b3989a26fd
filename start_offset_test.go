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

// B6: Earliest (the default) starts at the first message and Latest after
// the newest one, but only for partitions the group has no committed offset
// for: a Latest group resumes from its commit after a restart, while its
// never-committed partition starts from latest again.
func TestInitialOffset(t *testing.T) {
	c := cluster(t)
	tp := topic(t, c, 2)
	produceN(t, c, tp, 0, 5)
	produceN(t, c, tp, 1, 5)

	// Earliest, by default: everything, from offset 0.
	early := newRecorder()
	earlyApp := start(t, opts(t, c, ferry.RouteFunc(ferrytest.UniqueName("g"), tp, early.fn()))...)

	// Latest: only what is produced once partition 0 is positioned.
	group := ferrytest.UniqueName("g")
	late := newRecorder()
	lateApp := start(t, opts(t, c, ferry.RouteFunc(group, tp, late.fn(), ferry.InitialOffset(ferry.Latest)))...)
	probe(t, c, late, tp, 0)
	if seen := offsetsSeen(late, tp, 0); seen[0] < 5 {
		t.Fatalf("Latest group consumed offsets %v of partition 0: it started before the newest message (5)", seen)
	}
	last := endOffset(t, c, tp, 0) // probes may have been skipped before positioning
	late.waitDistinct(t, tp, int(last-offsetsSeen(late, tp, 0)[0]), 10*time.Second)
	if seen := offsetsSeen(late, tp, 1); len(seen) != 0 {
		t.Fatalf("Latest group consumed %v of partition 1, where nothing was produced after it started", seen)
	}
	if err := lateApp.stop(t); err != nil {
		t.Fatal(err)
	}

	early.waitDistinct(t, tp, 5+5+int(last-5), 10*time.Second)
	if err := earlyApp.stop(t); err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 2; p++ {
		if seen := offsetsSeen(early, tp, p); len(seen) == 0 || seen[0] != 0 {
			t.Errorf("Earliest group's first offset of partition %d: %v, want 0", p, seen)
		}
	}

	committed, err := c.Committed(ctxFor(t, 10*time.Second), group, tp)
	if err != nil {
		t.Fatal(err)
	}
	if committed[0] != last {
		t.Fatalf("Latest group committed %v, want partition 0 at %d", committed, last)
	}
	if o, ok := committed[1]; ok {
		t.Fatalf("Latest group committed %d for partition 1, where it consumed nothing", o)
	}

	// While the group is down, both partitions grow.
	produceN(t, c, tp, 0, 3)
	produceN(t, c, tp, 1, 3)
	end1 := endOffset(t, c, tp, 1)

	// Latest again, same group: partition 0 resumes from its commit;
	// partition 1, never committed, starts from latest again.
	again := newRecorder()
	start(t, opts(t, c, ferry.RouteFunc(group, tp, again.fn(), ferry.InitialOffset(ferry.Latest)))...)
	probe(t, c, again, tp, 1)
	if seen := offsetsSeen(again, tp, 1); seen[0] < end1 {
		t.Fatalf("restarted Latest group consumed %v of uncommitted partition 1, want nothing before %d", seen, end1)
	}
	ctx := ctxFor(t, 10*time.Second)
	if err := ferrytest.WaitFor(ctx, func() bool { return len(offsetsSeen(again, tp, 0)) >= 3 }); err != nil {
		t.Fatalf("restarted Latest group consumed %v of partition 0, want %d..%d from its commit",
			offsetsSeen(again, tp, 0), last, last+2)
	}
	if seen := offsetsSeen(again, tp, 0); !slices.Equal(seen, []int64{last, last + 1, last + 2}) {
		t.Fatalf("restarted Latest group consumed %v of partition 0, want %d..%d from its commit", seen, last, last+2)
	}
}

// A8: with Latest, a first batch that fails commits nothing, so a restart
// starts from latest again: what was produced while the group was down is
// skipped.
func TestLatestFirstBatchFailsCommitsNothing(t *testing.T) {
	c := cluster(t)
	tp := topic(t, c, 1)
	produceN(t, c, tp, 0, 3)
	group := ferrytest.UniqueName("g")

	failing := newRecorder()
	fail := func(_ context.Context, b *ferry.Batch) error {
		failing.record(b)
		return errors.New("first batch fails")
	}
	app := start(t, opts(t, c, ferry.RouteFunc(group, tp, fail,
		ferry.InitialOffset(ferry.Latest), ferry.Retry(ferry.ConstantBackoff(100*time.Millisecond))))...)
	probe(t, c, failing, tp, 0)
	// Let it retry at least once, so a commit of anything would have had
	// its chance (the commit interval is 200 ms).
	ctx := ctxFor(t, 10*time.Second)
	if err := ferrytest.WaitFor(ctx, func() bool {
		for _, d := range failing.snapshot() {
			if d.attempt >= 3 {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal("the failing batch was not retried")
	}
	if err := app.stop(t); err != nil {
		t.Fatal(err)
	}
	committed, err := c.Committed(ctxFor(t, 10*time.Second), group, tp)
	if err != nil {
		t.Fatal(err)
	}
	if len(committed) != 0 {
		t.Fatalf("committed %v after only failed batches, want nothing", committed)
	}

	produceN(t, c, tp, 0, 3) // while down: skipped by the restart
	downEnd := endOffset(t, c, tp, 0)

	ok := newRecorder()
	start(t, opts(t, c, ferry.RouteFunc(group, tp, ok.fn(), ferry.InitialOffset(ferry.Latest)))...)
	probe(t, c, ok, tp, 0)
	if seen := offsetsSeen(ok, tp, 0); seen[0] < downEnd {
		t.Fatalf("restart consumed %v, want nothing before %d (it must start from latest again)", seen, downEnd)
	}
}
