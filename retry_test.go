package ferry_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// A5: an error on a middle batch retries that partition from its first
// unmarked offset after the backoff; nothing is lost, nothing past the last
// mark is committed meanwhile, the attempt number is visible and resets
// after a success, and the other partition keeps flowing.
func TestErrorRetriesFromFirstUnmarkedOffset(t *testing.T) {
	s := newScenario(t, cluster(t), 2)
	s.produceEach(2, 300)

	var mu sync.Mutex
	failedAt := time.Time{}
	var p1DoneAt time.Time
	p1 := 0
	// The retry waits until the test has looked at the commits made while
	// partition 0 was failing: however slow the machine, it has not
	// finished meanwhile.
	looked := make(chan struct{})
	defer func() {
		select {
		case <-looked:
		default:
			close(looked)
		}
	}()
	fn := func(_ context.Context, b *ferry.Batch) error {
		if b.Partition == 0 && b.Messages[0].Offset == 100 && b.Attempt == 2 {
			<-looked
		}
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
	app := s.start(s.route(s.recordThen(fn), ferry.MaxMessages(100), ferry.Retry(ferry.ConstantBackoff(backoff))))

	// During the backoff: partition 1 finished, partition 0 committed only
	// up to the failed batch.
	s.waitUntil("failed partition 0 and finished partition 1", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !failedAt.IsZero() && !p1DoneAt.IsZero()
	})
	s.waitCommittedAt(1, 300) // B3: others flow
	if committed := s.committed(); committed[0] != 100 {
		t.Errorf("while failing partition 0 committed at %d, want 100 (nothing past the last mark)", committed[0])
	}
	close(looked)

	s.waitSeen(600)
	s.stop(app)
	var retry, after *delivery
	for _, d := range s.rec.snapshot() {
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
	if d := s.rec.duplicates(s.topic); d != 100 {
		t.Errorf("%d duplicate deliveries, want exactly the 100 of the failed batch", d)
	}
	s.wantCommitted(map[int32]int64{0: 300, 1: 300})
}

// A6: a panic in Consume is recovered, logged with its stack, and retried
// like an error.
func TestPanicIsRecoveredAndRetried(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 10)
	log, sink := testLogger(t)
	fn := func(_ context.Context, b *ferry.Batch) error {
		if b.Attempt == 1 {
			var m map[string]int
			m["boom"]++ // nil map write panics
		}
		return nil
	}
	app := s.start(ferry.Logger(log), s.route(s.recordThen(fn), ferry.Retry(ferry.ConstantBackoff(50*time.Millisecond))))
	s.waitUntil("retried the panicking batch", func() bool { return s.rec.sawAttempt(2) })
	s.stop(app)
	out := sink.String()
	for _, want := range []string{"assignment to entry in nil map", "retry_test.go", "goroutine"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q; the panic and its stack must be logged", want)
		}
	}
	s.wantCommitted(map[int32]int64{0: 10}) // after the retry succeeded
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
			s := newScenario(t, c, 1)
			s.produce(0, 5)
			clk := &scaledClock{}
			fails := len(tc.want)
			fn := func(_ context.Context, b *ferry.Batch) error {
				if b.Attempt <= fails {
					return errors.New("not yet")
				}
				return nil
			}
			app := s.start(ferry.WithClock(clk), ferry.CommitInterval(commitEvery), s.route(s.recordThen(fn), tc.retry...))
			s.waitUntil(fmt.Sprintf("reached attempt %d", fails+1), func() bool { return s.rec.sawAttempt(fails + 1) })
			s.stop(app)
			got := clk.recorded(commitEvery)
			if len(got) != len(tc.want) {
				t.Fatalf("backoff waits %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("backoff waits %v, want %v", got, tc.want)
				}
			}
			for i, d := range s.rec.snapshot() {
				if d.attempt != i+1 {
					t.Fatalf("delivery %d has Attempt %d, want %d", i, d.attempt, i+1)
				}
			}
		})
	}
}
