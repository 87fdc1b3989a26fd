package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// schedHarness runs one partition's goroutine against an in-memory log of
// records, with a feeder standing in for the poll loop (it pushes chunks and
// applies the seeks the partition asks for) and a clock whose backoffs end
// only when the case allows.
type schedHarness struct {
	t    *testing.T
	p    *Partition
	log  []*kgo.Record
	fail map[int64]int // offset → attempts that fail

	mu       sync.Mutex
	units    [][]int64 // offsets of each Consume call, in call order
	attempts []int
	inflight int
	maxIn    int
	done     map[int64]int // successful consumes per offset
	order    map[string][]int64
	seeks    []int64
	backoffs int
}

type holdClock struct {
	h       *schedHarness
	release func(h *schedHarness) bool
	stop    chan struct{}
}

func (c *holdClock) Now() time.Time { return time.Now() }

// After fires once the case's release condition holds.
func (c *holdClock) After(time.Duration) <-chan time.Time {
	c.h.mu.Lock()
	c.h.backoffs++
	c.h.mu.Unlock()
	ch := make(chan time.Time, 1)
	go func() {
		for !c.release(c.h) {
			select {
			case <-c.stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
		ch <- time.Now()
	}()
	return ch
}

type harnessWorker struct{ h *schedHarness }

func (w harnessWorker) Consume(_ context.Context, recs []*kgo.Record, attempt int) error {
	h := w.h
	offs := make([]int64, len(recs))
	for i, r := range recs {
		offs[i] = r.Offset
	}
	h.mu.Lock()
	h.units = append(h.units, offs)
	h.attempts = append(h.attempts, attempt)
	h.inflight += len(recs)
	h.maxIn = max(h.maxIn, h.inflight)
	h.mu.Unlock()
	time.Sleep(100 * time.Microsecond) // let other units overlap
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inflight -= len(recs)
	for _, r := range recs {
		if attempt <= h.fail[r.Offset] {
			return &MessageError{Message: r, Err: errors.New("fails")}
		}
		h.done[r.Offset]++
		key := string(r.Key)
		h.order[key] = append(h.order[key], r.Offset)
	}
	return nil
}

func (harnessWorker) Initialized(context.Context) error { return nil }
func (harnessWorker) Revoked(context.Context) error     { return nil }
func (harnessWorker) Shutdown(context.Context) error    { return nil }
func (harnessWorker) EOF(context.Context) error         { return nil }

// feed stands in for the poll loop: it applies pending seeks and pushes the
// log from the fetch position in chunks, like fetches, until stopped.
func (h *schedHarness) feed(chunk int, stop <-chan struct{}) {
	pos := 0
	for {
		p := h.p
		p.mu.Lock()
		if p.seek >= 0 {
			pos = int(p.seek)
			p.seek = -1
			h.mu.Lock()
			h.seeks = append(h.seeks, int64(pos))
			h.mu.Unlock()
		}
		paused := p.pausedRetry
		p.mu.Unlock()
		if pos < len(h.log) && !paused {
			n := min(chunk, len(h.log)-pos)
			p.push(h.log[pos:pos+n:pos+n], int64(len(h.log)), time.Now())
			pos += n
			continue
		}
		select {
		case <-stop:
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// run starts the partition's goroutine and the feeder, pushing chunks of
// chunk records. The returned stop stops the partition, waits for its
// goroutine to end, then stops the feeder.
func (h *schedHarness) run(chunk int) (stop func()) {
	p := h.p
	stopFeed := make(chan struct{})
	fed := make(chan struct{})
	go func() { h.feed(chunk, stopFeed); close(fed) }()
	ran := make(chan struct{})
	go func() { p.run(); close(ran) }()
	return func() {
		p.mu.Lock()
		p.setStateLocked(stopping)
		p.mu.Unlock()
		<-ran
		close(stopFeed)
		<-fed
	}
}

// A partition's goroutine, sequential and parallel, without a cluster:
// lanes (one for a sequential partition, by key for a parallel one), unit
// sizes, the in-flight bound, and how each offset tracker retries a failure
// — the sequential one rewinds the partition to its resume point and
// re-cuts full batches from the refetch (A5, M7), the parallel one holds
// back the failing lane in memory while the others go on (K5).
func TestPartitionLanesUnitsAndRetries(t *testing.T) {
	keys := func(n int, pattern string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = string(pattern[i%len(pattern)])
		}
		return out
	}
	tests := []struct {
		name     string
		parallel int
		max      int
		keys     []string
		chunk    int
		fail     map[int64]int
		// release: when the clock lets a backoff end.
		release func(h *schedHarness) bool
		check   func(t *testing.T, h *schedHarness)
	}{
		{
			name: "sequential: one lane, batches of MaxMessages in offset order (B1, B2)",
			max:  100, keys: keys(250, "abc"), chunk: 30,
			check: func(t *testing.T, h *schedHarness) {
				wantUnits(t, h, [][2]int64{{0, 99}, {100, 199}, {200, 249}})
				if h.maxIn > 100 {
					t.Errorf("%d messages in flight, want at most one batch of 100", h.maxIn)
				}
			},
		},
		{
			name: "sequential: a failure rewinds to the resume point and re-cuts full batches (A5, M7)",
			max:  100, keys: keys(250, "abc"), chunk: 50,
			fail: map[int64]int{150: 1},
			check: func(t *testing.T, h *schedHarness) {
				// The failed batch marks what came before 150, the partition
				// seeks back to 150, and the refetch is cut into a full batch.
				wantUnits(t, h, [][2]int64{{0, 99}, {100, 199}, {150, 249}})
				if !slices.Equal(h.seeks, []int64{150}) {
					t.Errorf("seeks %v, want [150]", h.seeks)
				}
				if !slices.Equal(h.attempts, []int{1, 1, 2}) {
					t.Errorf("attempts %v, want [1 1 2]", h.attempts)
				}
			},
		},
		{
			name:     "parallel: lanes by key, units within MaxMessages and the in-flight bound (K1)",
			parallel: 4, max: 3, keys: keys(200, "abcdefg"), chunk: 40,
			check: func(t *testing.T, h *schedHarness) {
				for i, u := range h.units {
					if len(u) > 3 {
						t.Fatalf("unit %d has %d messages, want at most MaxMessages 3", i, len(u))
					}
					for _, o := range u[1:] {
						if h.log[o].Key[0] != h.log[u[0]].Key[0] {
							t.Fatalf("unit %v mixes lanes", u)
						}
					}
				}
				if h.maxIn > 4 {
					t.Errorf("%d messages in flight, want at most 4", h.maxIn)
				}
				if len(h.seeks) > 0 {
					t.Errorf("a parallel partition sought %v; it never seeks", h.seeks)
				}
			},
		},
		{
			name:     "parallel: a failure holds back its lane only, in memory (K5)",
			parallel: 4, max: 2, keys: keys(120, "abcd"), chunk: 40,
			fail: map[int64]int{5: 1}, // key b
			release: func(h *schedHarness) bool {
				h.mu.Lock()
				defer h.mu.Unlock()
				return othersPast(h, "b", 5) >= 6 // other lanes go on while b waits
			},
			check: func(t *testing.T, h *schedHarness) {
				if len(h.seeks) > 0 {
					t.Errorf("a parallel partition sought %v; it never seeks", h.seeks)
				}
				if h.order["b"][0] != 1 || h.order["b"][1] != 5 {
					t.Errorf("lane b ran %v, want 1, then 5 again after its backoff", h.order["b"][:2])
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &schedHarness{t: t, fail: tt.fail, done: map[int64]int{}, order: map[string][]int64{}}
			for i, k := range tt.keys {
				h.log = append(h.log, &kgo.Record{Topic: "t", Offset: int64(i), Key: []byte(k), Value: []byte("v"), LeaderEpoch: 1})
			}
			release := tt.release
			if release == nil {
				release = func(*schedHarness) bool { return true }
			}
			stopClock := make(chan struct{})
			defer close(stopClock)
			p := schedPartition(tt.parallel, tt.max, &holdClock{h: h, release: release, stop: stopClock})
			// A retry's backoff pauses fetching; nothing is fetched here.
			cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			p.g.cl = cl
			h.p = p
			p.topic.NewWorker = func(*Partition) Worker { return harnessWorker{h} }
			stop := h.run(tt.chunk)

			deadline := time.After(20 * time.Second) // a hang, not a timing target
			for {
				p.mu.Lock()
				m, _ := p.pendingLocked()
				p.mu.Unlock()
				if m.Offset == int64(len(h.log)) {
					break
				}
				select {
				case <-deadline:
					h.mu.Lock()
					t.Fatalf("stuck: pending mark %d, units %v", m.Offset, h.units)
				case <-time.After(time.Millisecond):
				}
			}
			stop()

			h.mu.Lock()
			defer h.mu.Unlock()
			for _, r := range h.log {
				if h.done[r.Offset] != 1 {
					t.Errorf("offset %d consumed successfully %d times, want once", r.Offset, h.done[r.Offset])
				}
			}
			for k, offs := range h.order {
				if !slices.IsSorted(offs) {
					t.Errorf("key %s ran out of order: %v", k, offs)
				}
			}
			if len(p.g.slots) != 0 {
				t.Errorf("%d worker slots still held", len(p.g.slots))
			}
			tt.check(t, h)
		})
	}
}

// othersPast counts the messages of lanes other than key finished past
// offset.
func othersPast(h *schedHarness, key string, offset int64) int {
	n := 0
	for k, offs := range h.order {
		for _, o := range offs {
			if k != key && o > offset {
				n++
			}
		}
	}
	return n
}

// wantUnits checks the units' offset ranges, in call order.
func wantUnits(t *testing.T, h *schedHarness, want [][2]int64) {
	t.Helper()
	var got [][2]int64
	for _, u := range h.units {
		got = append(got, [2]int64{u[0], u[len(u)-1]})
		if int64(len(u)) != u[len(u)-1]-u[0]+1 {
			t.Errorf("unit %d–%d is not contiguous", u[0], u[len(u)-1])
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("units %v, want %v", got, want)
	}
}

func schedPartition(parallel, max int, clock Clock) *Partition {
	g := &group{
		cfg:   &Group{Name: "g", TimeConsume: true},
		log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		room:  make(chan struct{}, 1),
		slots: make(chan struct{}, 2),
		clock: clock,
	}
	g.runCtx = context.Background()
	t := &Topic{Name: "t", MaxMessages: max, MaxWait: time.Hour, QueueBytes: 1 << 30, Parallel: parallel, MaxRetries: -1, Backoff: func(int) time.Duration { return time.Second }}
	p := &Partition{
		g:     g,
		topic: t,
		q:     newQueue(g, t),
		log:   g.log,
		ctx:   context.Background(),
		seek:  -1,
		start: -1,
		book:  newOffsetBook(parallel > 0),
		ready: make(chan struct{}),
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		idle:  make(chan struct{}),
		done:  make(chan struct{}),
		// a seek by an operator ends a backoff
		seekWake: make(chan struct{}, 1),
	}
	p.end.Store(-1)
	p.processed.Store(-1)
	return p
}
