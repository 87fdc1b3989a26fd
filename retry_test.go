package ferry_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
)

// A5: an error on a middle batch retries that partition from its first
// unmarked offset after the backoff; nothing is lost, nothing past the last
// mark is committed meanwhile, the attempt number is visible and resets
// after a success, and the other partition keeps flowing.
func TestErrorRetriesFromFirstUnmarkedOffset(t *testing.T) {
	c := cluster(t)
	tp := topic(t, c, 2)
	produceN(t, c, tp, 0, 300)
	produceN(t, c, tp, 1, 300)
	group := ferrytest.UniqueName("g")
	rec := newRecorder()

	var mu sync.Mutex
	failedAt := time.Time{}
	var p1DoneAt time.Time
	p1 := 0
	fn := func(_ context.Context, b *ferry.Batch) error {
		rec.record(b)
		mu.Lock()
		defer mu.Unlock()
		if b.Partition == 1 {
			p1 += len(b.Messages)
			if p1 == 300 {
				p1DoneAt = time.Now()
			}
			return nil
		}
		if b.Messages[0].Offset == 100 && b.Attempt == 1 {
			failedAt = time.Now()
			return errors.New("boom")
		}
		return nil
	}
	backoff := 1500 * time.Millisecond
	app := start(t, opts(t, c, ferry.RouteFunc(group, tp, fn,
		ferry.MaxMessages(100), ferry.Retry(ferry.ConstantBackoff(backoff))))...)

	// During the backoff: partition 1 finished, partition 0 committed only
	// up to the failed batch.
	ctx := ctxFor(t, 20*time.Second)
	if err := ferrytest.WaitFor(ctx, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !failedAt.IsZero() && !p1DoneAt.IsZero()
	}); err != nil {
		t.Fatal("partition 0 never failed or partition 1 never finished")
	}
	time.Sleep(500 * time.Millisecond) // two commit intervals
	committed, err := c.Committed(ctx, group, tp)
	if err != nil {
		t.Fatal(err)
	}
	if committed[0] != 100 {
		t.Errorf("during backoff partition 0 committed at %d, want 100 (nothing past the last mark)", committed[0])
	}
	if committed[1] != 300 {
		t.Errorf("partition 1 committed at %d during partition 0's backoff, want 300 (B3: others flow)", committed[1])
	}

	rec.waitDistinct(t, tp, 600, 20*time.Second)
	if err := app.stop(t); err != nil {
		t.Fatal(err)
	}
	var retry, after *delivery
	for _, d := range rec.snapshot() {
		if d.partition != 0 {
			continue
		}
		if d.attempt == 2 {
			retry = &d
		} else if retry != nil && after == nil {
			after = &d
		}
	}
	if retry == nil {
		t.Fatal("no delivery with Attempt 2")
	}
	if retry.offsets[0] != 100 {
		t.Errorf("retry started at %d, want 100 (first unmarked offset)", retry.offsets[0])
	}
	mu.Lock()
	waited := retry.at.Sub(failedAt)
	mu.Unlock()
	if waited < backoff {
		t.Errorf("retried after %s, want at least the %s backoff", waited, backoff)
	}
	if after == nil || after.attempt != 1 {
		t.Errorf("batch after the successful retry: %+v, want Attempt 1 (counter resets)", after)
	}
	if rec.duplicates(tp) != 100 {
		t.Errorf("%d duplicate deliveries, want exactly the 100 of the failed batch", rec.duplicates(tp))
	}
	final, _ := c.Committed(ctxFor(t, 10*time.Second), group, tp)
	if final[0] != 300 || final[1] != 300 {
		t.Errorf("final commits %v, want 300 on both", final)
	}
}

// A6: a panic in Consume is recovered, logged with its stack, and retried
// like an error.
func TestPanicIsRecoveredAndRetried(t *testing.T) {
	c := cluster(t)
	tp := topic(t, c, 1)
	produceN(t, c, tp, 0, 10)
	group := ferrytest.UniqueName("g")
	log, sink := testLogger(t)
	rec := newRecorder()
	fn := func(_ context.Context, b *ferry.Batch) error {
		rec.record(b)
		if b.Attempt == 1 {
			var m map[string]int
			m["boom"]++ // nil map write panics
		}
		return nil
	}
	app := start(t, append(opts(t, c), ferry.Logger(log),
		ferry.RouteFunc(group, tp, fn, ferry.Retry(ferry.ConstantBackoff(50*time.Millisecond))))...)
	ctx := ctxFor(t, 20*time.Second)
	if err := ferrytest.WaitFor(ctx, func() bool {
		for _, d := range rec.snapshot() {
			if d.attempt == 2 {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal("panicking batch was never retried")
	}
	if err := app.stop(t); err != nil {
		t.Fatal(err)
	}
	out := sink.String()
	for _, want := range []string{"assignment to entry in nil map", "retry_test.go", "goroutine"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q; the panic and its stack must be logged", want)
		}
	}
	got, _ := c.Committed(ctxFor(t, 10*time.Second), group, tp)
	if got[0] != 10 {
		t.Errorf("committed %v, want 10 after the retry succeeded", got)
	}
}

// scaledClock records every wait it is asked for and waits a thousandth of
// it, so backoff schedules are checked without sleeping through them.
type scaledClock struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (c *scaledClock) Now() time.Time { return time.Now() }

func (c *scaledClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.waits = append(c.waits, d)
	c.mu.Unlock()
	return time.After(d / 1000)
}

func (c *scaledClock) recorded(except time.Duration) []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Duration
	for _, w := range c.waits {
		if w != except {
			out = append(out, w)
		}
	}
	return out
}

// A5: the default backoff doubles from 1 s up to 30 s; ConstantBackoff
// waits the same every time. Checked through an injected clock.
func TestBackoffSchedules(t *testing.T) {
	c := cluster(t)
	const commitEvery = time.Hour // told apart from backoff waits
	for _, tc := range []struct {
		name  string
		retry []ferry.TopicOption
		want  []time.Duration
	}{
		{"default exponential", nil, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}},
		{"constant", []ferry.TopicOption{ferry.Retry(ferry.ConstantBackoff(3 * time.Second))}, []time.Duration{3 * time.Second, 3 * time.Second, 3 * time.Second, 3 * time.Second, 3 * time.Second, 3 * time.Second, 3 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := topic(t, c, 1)
			produceN(t, c, tp, 0, 5)
			clk := &scaledClock{}
			rec := newRecorder()
			fails := len(tc.want)
			fn := func(_ context.Context, b *ferry.Batch) error {
				rec.record(b)
				if b.Attempt <= fails {
					return errors.New("not yet")
				}
				return nil
			}
			app := start(t, append(opts(t, c), ferry.WithClock(clk), ferry.CommitInterval(commitEvery),
				ferry.RouteFunc(ferrytest.UniqueName("g"), tp, fn, tc.retry...))...)
			ctx := ctxFor(t, 30*time.Second)
			if err := ferrytest.WaitFor(ctx, func() bool {
				s := rec.snapshot()
				return len(s) > 0 && s[len(s)-1].attempt == fails+1
			}); err != nil {
				t.Fatalf("never reached attempt %d", fails+1)
			}
			if err := app.stop(t); err != nil {
				t.Fatal(err)
			}
			got := clk.recorded(commitEvery)
			if len(got) != len(tc.want) {
				t.Fatalf("backoff waits %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("backoff waits %v, want %v", got, tc.want)
				}
			}
			for i, d := range rec.snapshot() {
				if d.attempt != i+1 {
					t.Fatalf("delivery %d has Attempt %d, want %d", i, d.attempt, i+1)
				}
			}
		})
	}
}
