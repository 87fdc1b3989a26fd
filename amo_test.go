package ferry_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// S1: at-most-once commits a batch's offsets before Consume sees it, so an
// error mid-batch skips the rest of the batch for good.
func TestAtMostOnceSkipsRestOfFailedBatch(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 30)
	var mu sync.Mutex
	processed := map[int64]int{}
	var problems []string
	fn := func(ctx context.Context, b *ferry.Batch) error {
		// The whole batch is already committed when Consume starts.
		got, err := s.c.Committed(ctx, s.group, s.topic)
		mu.Lock()
		defer mu.Unlock()
		if err != nil || got[0] != b.Last().Offset+1 {
			problems = append(problems, "batch not committed before Consume")
		}
		for _, m := range b.Messages {
			processed[m.Offset]++
			if m.Offset == 15 {
				return errors.New("fails at 15")
			}
		}
		return nil
	}
	app := s.start(s.route(s.recordThen(fn), ferry.WithDelivery(ferry.AtMostOnce), ferry.MaxMessages(10)))
	s.waitUntil("reached the last message", func() bool { return s.rec.times(s.topic, 0, 29) > 0 })
	time.Sleep(300 * time.Millisecond) // a redelivery, if any, would show up now
	s.stop(app)

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
		if processed[o] != want {
			t.Errorf("offset %d processed %d times, want %d", o, processed[o], want)
		}
	}
	if d := s.rec.duplicates(s.topic); d != 0 {
		t.Errorf("%d redeliveries under at-most-once, want 0", d)
	}
}

// S1: the per-message variant commits each message before processing it.
func TestAtMostOncePerMessage(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 8)
	var mu sync.Mutex
	var problems []string
	fn := func(ctx context.Context, b *ferry.Batch) error {
		got, err := s.c.Committed(ctx, s.group, s.topic)
		if err != nil || got[0] != b.Messages[0].Offset+1 {
			mu.Lock()
			problems = append(problems, "message not committed before processing")
			mu.Unlock()
		}
		if b.Messages[0].Offset == 3 {
			return errors.New("fails at 3")
		}
		return nil
	}
	app := s.start(s.route(s.recordThen(fn), ferry.WithDelivery(ferry.AtMostOncePerMessage)))
	s.waitUntil("delivered every message once", func() bool { return len(s.rec.snapshot()) == 8 })
	s.stop(app)

	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	for _, b := range s.rec.snapshot() {
		if len(b.offsets) != 1 {
			t.Fatalf("a batch of %d messages, want one message each", len(b.offsets))
		}
	}
}

// S1: a crash mid-batch — here the app gives up on a batch that outlives
// ShutdownTimeout, as a process killed while it runs would — loses the rest
// of that batch: its offsets were committed before Consume saw it, so the
// restarted group resumes right after it, never redelivering it.
func TestAtMostOnceCrashSkipsTheBatchInFlight(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 30)
	stuck := make(chan struct{})
	fn := func(ctx context.Context, b *ferry.Batch) error {
		if b.Messages[0].Offset == 10 {
			close(stuck)
			<-ctx.Done() // never finishes on its own
			return ctx.Err()
		}
		return nil
	}
	app := s.start(ferry.ShutdownTimeout(time.Second),
		s.route(s.recordThen(fn), ferry.WithDelivery(ferry.AtMostOnce), ferry.MaxMessages(10)))
	s.waitClosed("started the second batch", stuck)
	if err := app.stop(t); !errors.Is(err, ferry.ErrShutdownTimeout) {
		t.Fatalf("Run = %v, want ErrShutdownTimeout", err)
	}
	s.wantCommitted(map[int32]int64{0: 20})
	if first := s.restart(10); first != 20 {
		t.Errorf("restart began at offset %d, want 20: the batch in flight at the crash is never redelivered", first)
	}
}
