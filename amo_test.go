package ferry_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
)

// S1: at-most-once commits a batch's offsets before Consume sees it, so an
// error mid-batch skips the rest of the batch for good.
func TestAtMostOnceSkipsRestOfFailedBatch(t *testing.T) {
	c := cluster(t)
	tp := topic(t, c, 1)
	produceN(t, c, tp, 0, 30)
	group := ferrytest.UniqueName("g")
	var mu sync.Mutex
	seen := map[int64]int{}
	var problems []string
	fn := func(ctx context.Context, b *ferry.Batch) error {
		// The whole batch is already committed when Consume starts.
		got, err := c.Committed(ctx, group, tp)
		mu.Lock()
		defer mu.Unlock()
		if err != nil || got[0] != b.Last().Offset+1 {
			problems = append(problems, "batch not committed before Consume")
		}
		for _, m := range b.Messages {
			seen[m.Offset]++
			if m.Offset == 15 {
				return errors.New("fails at 15")
			}
		}
		return nil
	}
	rec := newRecorder()
	app := start(t, opts(t, c, ferry.RouteFunc(group, tp, func(ctx context.Context, b *ferry.Batch) error {
		rec.record(b)
		return fn(ctx, b)
	}, ferry.WithDelivery(ferry.AtMostOnce), ferry.MaxMessages(10)))...)
	if err := ferrytest.WaitFor(ctxFor(t, 20*time.Second), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[29] > 0
	}); err != nil {
		t.Fatal("never reached the last message")
	}
	time.Sleep(300 * time.Millisecond) // a redelivery, if any, would show up now
	if err := app.stop(t); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	for o := int64(0); o < 30; o++ {
		want := 1
		if o > 15 && o < 20 {
			want = 0 // the rest of the failed batch: lost, never redelivered
		}
		if seen[o] != want {
			t.Errorf("offset %d processed %d times, want %d", o, seen[o], want)
		}
	}
	if d := rec.duplicates(tp); d != 0 {
		t.Errorf("%d redeliveries under at-most-once, want 0", d)
	}
}

// S1: the per-message variant commits each message before processing it.
func TestAtMostOncePerMessage(t *testing.T) {
	c := cluster(t)
	tp := topic(t, c, 1)
	produceN(t, c, tp, 0, 8)
	group := ferrytest.UniqueName("g")
	var mu sync.Mutex
	var sizes []int
	var problems []string
	fn := func(ctx context.Context, b *ferry.Batch) error {
		got, err := c.Committed(ctx, group, tp)
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(b.Messages))
		if err != nil || got[0] != b.Messages[0].Offset+1 {
			problems = append(problems, "message not committed before processing")
		}
		if b.Messages[0].Offset == 3 {
			return errors.New("fails at 3")
		}
		return nil
	}
	app := start(t, opts(t, c, ferry.RouteFunc(group, tp, fn, ferry.WithDelivery(ferry.AtMostOncePerMessage)))...)
	if err := ferrytest.WaitFor(ctxFor(t, 20*time.Second), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(sizes) == 8
	}); err != nil {
		t.Fatal("not every message was delivered once")
	}
	if err := app.stop(t); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	for _, n := range sizes {
		if n != 1 {
			t.Fatalf("batch sizes %v, want one message each", sizes)
		}
	}
}
