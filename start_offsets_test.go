package ferry_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kadm"
)

// StartOffsets (the hook behind D2): the function sees the group's
// committed offsets and decides where partitions start; a partition it
// leaves out starts as usual; an error is retried; consumers are built only
// once it answered.
func TestStartOffsetsChooseWhereAssignedPartitionsStart(t *testing.T) {
	c := cluster(t)
	tp := topic(t, c, 2)
	produceN(t, c, tp, 0, 20)
	produceN(t, c, tp, 1, 20)
	group := ferrytest.UniqueName("g")
	var committed kadm.Offsets
	committed.Add(kadm.Offset{Topic: tp, Partition: 0, At: 15, LeaderEpoch: -1})
	committed.Add(kadm.Offset{Topic: tp, Partition: 1, At: 3, LeaderEpoch: -1})
	if err := c.Admin().CommitAllOffsets(ctxFor(t, 10*time.Second), group, committed); err != nil {
		t.Fatal(err)
	}

	var calls atomic.Int32
	var mu sync.Mutex
	var sawCommitted map[int32]int64
	answered := make(chan struct{})
	rec := newRecorder()
	start(t, opts(t, c, ferry.Route(group, tp, func(*ferry.Claim) ferry.Consumer {
		select {
		case <-answered:
		default:
			t.Error("a consumer was built before StartOffsets answered")
		}
		return rec.fn()
	}, ferry.StartOffsets(func(_ context.Context, _ string, committed map[int32]int64) (map[int32]int64, error) {
		if calls.Add(1) == 1 {
			return nil, errors.New("the offsets store is not reachable yet")
		}
		mu.Lock()
		sawCommitted = maps.Clone(committed)
		mu.Unlock()
		close(answered)
		return map[int32]int64{0: 5}, nil // partition 1 starts as usual
	})))...)

	rec.waitDistinct(t, tp, 15+17, 60*time.Second)
	if got := offsetsSeen(rec, tp, 0); got[0] != 5 || len(got) != 15 {
		t.Errorf("partition 0 delivered %v, want 5…19 (the chosen start, behind the committed 15)", got)
	}
	if got := offsetsSeen(rec, tp, 1); got[0] != 3 {
		t.Errorf("partition 1 started at %d, want the committed 3", got[0])
	}
	mu.Lock()
	defer mu.Unlock()
	if want := map[int32]int64{0: 15, 1: 3}; fmt.Sprint(sawCommitted) != fmt.Sprint(want) {
		t.Errorf("StartOffsets saw committed %v, want %v", sawCommitted, want)
	}
	if calls.Load() < 2 {
		t.Errorf("StartOffsets called %d times, want a retry after its error", calls.Load())
	}
}

// ErrNotOwned: a consumer that learns elsewhere that another member owns
// its partition returns it; ferry drops the partition like a lost one — no
// retry, no mark, no commit — until it is assigned again.
func TestErrNotOwnedDropsThePartitionWithoutRetry(t *testing.T) {
	c := cluster(t)
	tp := topic(t, c, 1)
	produceN(t, c, tp, 0, 10)
	group := ferrytest.UniqueName("g")
	var batches atomic.Int32
	app := start(t, opts(t, c, ferry.RouteFunc(group, tp, func(_ context.Context, b *ferry.Batch) error {
		batches.Add(1)
		b.Claim().MarkAsConsumed(b.Last())
		return fmt.Errorf("fencing token is stale: %w", ferry.ErrNotOwned)
	}, ferry.Retry(ferry.ExponentialBackoff(10*time.Millisecond, 10*time.Millisecond))))...)
	if err := ferrytest.WaitFor(ctxFor(t, 30*time.Second), func() bool { return batches.Load() > 0 }); err != nil {
		t.Fatal("no batch")
	}
	time.Sleep(time.Second) // a retry would come within 10 ms
	if err := app.stop(t); err != nil {
		t.Fatal(err)
	}
	if n := batches.Load(); n != 1 {
		t.Errorf("Consume ran %d times, want 1: a partition owned elsewhere is not retried", n)
	}
	got, err := c.Committed(ctxFor(t, 10*time.Second), group, tp)
	if err != nil {
		t.Fatal(err)
	}
	if off, ok := got[0]; ok && off != 0 {
		// A8: the start, 0, was committed on assignment; nothing the
		// consumer marked after it may be.
		t.Errorf("committed %d for a partition owned elsewhere, want nothing past its start", off)
	}
}
