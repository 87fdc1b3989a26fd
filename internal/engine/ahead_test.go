package engine

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The fetch-ahead budget follows how fast the consumers drain the queues:
// slow consumers get the floor (and count as slow), fast ones up to
// fetchAhead.
func TestFetchAheadBudgetFollowsDrainRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tt := range []struct {
		name   string
		perSec int // bytes drained per second
		want   int64
		slow   bool
	}{
		{"nothing drained", 0, minAhead, true},
		{"slow consumer", 1 << 20, minAhead, true},                                      // 1 MiB/s
		{"in between", 100 << 20, int64(float64(100<<20) * aheadSpan.Seconds()), false}, // 100 MiB/s
		{"fast consumer", 1 << 30, fetchAhead, false},                                   // 1 GiB/s
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := &group{room: make(chan struct{}, 1)}
			if got := g.budget(t0); got != minAhead || g.slow.Load() {
				t.Errorf("before any measurement: budget %d, slow %v; want %d, not slow", got, g.slow.Load(), minAhead)
			}
			var got int64
			for i := range 10 {
				g.drain(int(float64(tt.perSec) * rateEvery.Seconds()))
				got = g.budget(t0.Add(time.Duration(i+1) * rateEvery))
			}
			if got < tt.want*99/100 || got > tt.want*101/100 || g.slow.Load() != tt.slow {
				t.Errorf("budget %d, slow %v; want %d, slow %v", got, g.slow.Load(), tt.want, tt.slow)
			}
		})
	}
}

// detach copies records, keys, values and headers out of the fetch's
// memory: the copies share no bytes with the originals and keep every field.
func TestDetachCopiesRecordsOutOfTheirFetch(t *testing.T) {
	fetch := []byte("k1v1h1k2v2")
	orig := []*kgo.Record{
		{Topic: "t", Partition: 3, Offset: 7, Key: fetch[0:2], Value: fetch[2:4], Headers: []kgo.RecordHeader{{Key: "h", Value: fetch[4:6]}}, Timestamp: time.Unix(5, 0)},
		{Topic: "t", Partition: 3, Offset: 8, Key: fetch[6:8], Value: fetch[8:10]},
		{Topic: "t", Partition: 3, Offset: 9}, // nil key and value stay nil
	}
	got := detach(orig)
	copy(fetch, "XXXXXXXXXX") // the fetch's memory is reused
	want := []struct {
		key, value, header string
		offset             int64
	}{{"k1", "v1", "h1", 7}, {"k2", "v2", "", 8}, {"", "", "", 9}}
	for i, w := range want {
		r := got[i]
		if r == orig[i] || string(r.Key) != w.key || string(r.Value) != w.value || r.Offset != w.offset || r.Topic != "t" || r.Partition != 3 {
			t.Errorf("record %d: %+v, want a copy with key %q value %q offset %d", i, r, w.key, w.value, w.offset)
		}
		if w.header != "" && (len(r.Headers) != 1 || r.Headers[0].Key != "h" || string(r.Headers[0].Value) != w.header) {
			t.Errorf("record %d headers %+v, want h=%s", i, r.Headers, w.header)
		}
	}
	if got[2].Key != nil || got[2].Value != nil {
		t.Errorf("nil key and value became %q, %q", got[2].Key, got[2].Value)
	}
	if !got[0].Timestamp.Equal(time.Unix(5, 0)) {
		t.Errorf("timestamp %v lost", got[0].Timestamp)
	}
	// Appending to one copied value must not run into the next.
	v := append(got[0].Value, '!')
	if !bytes.Equal(got[1].Key, []byte("k2")) || string(v) != "v1!" {
		t.Errorf("copies overlap: %q %q", v, got[1].Key)
	}
}

// A consumer counts as slow below minAhead per slowSpan and fast again only
// above twice that: one draining at about the threshold keeps one way of
// fetching instead of switching at every sample.
func TestSlowConsumerStaysSlowNearTheThreshold(t *testing.T) {
	t0 := time.Unix(1000, 0)
	threshold := float64(minAhead) / slowSpan.Seconds() // bytes per second
	g := &group{room: make(chan struct{}, 1)}
	g.budget(t0)
	now := t0
	run := func(perSec float64, samples int) {
		for range samples {
			now = now.Add(rateEvery)
			g.drain(int(perSec * rateEvery.Seconds()))
			g.budget(now)
		}
	}
	run(0.9*threshold, 10)
	if !g.slow.Load() {
		t.Fatalf("not slow at 0.9× the threshold (rate %.0f B/s)", g.rate)
	}
	run(1.1*threshold, 10)
	if !g.slow.Load() {
		t.Errorf("fast again at 1.1× the threshold (rate %.0f B/s); want slow until twice it", g.rate)
	}
	run(2.5*threshold, 10)
	if g.slow.Load() {
		t.Errorf("still slow at 2.5× the threshold (rate %.0f B/s)", g.rate)
	}
	run(1.1*threshold, 10)
	if g.slow.Load() {
		t.Errorf("slow again at 1.1× the threshold (rate %.0f B/s); want fast until below it", g.rate)
	}
}

// A slow consumer's batch cut from records still in their fetch pins that
// fetch for the poll loop, which waits for it before polling again (so the
// fetch is freed before kgo reads the next one); a batch of copies pins
// nothing, nor does a batch of an older poll's fetch, nor does anything
// while the consumers are fast.
func TestSlowPollWaitsForBatchesHoldingTheLastFetch(t *testing.T) {
	p := testPartition(10, time.Second)
	g := p.g
	g.seekCh = make(chan struct{}, 1)
	g.slow.Store(true)
	g.nextGen()
	p.push(records(0, 25), 1000, time.Now())
	b := p.takeLocked(time.Now())
	if len(b) != 10 || p.q.cutFrom != g.gen {
		t.Fatalf("batch of %d cut from poll %d, want 10 from poll %d (its fetch)", len(b), p.q.cutFrom, g.gen)
	}
	held := g.pin(p.q.cutFrom)

	// The poll waits for the batch, however long it runs (within the
	// bound), and goes on once it is done.
	var released atomic.Bool
	done := make(chan bool)
	go func() { done <- g.waitUnpinned(context.Background(), time.Minute) }()
	select {
	case <-done:
		t.Fatal("the poll did not wait for the batch holding the last fetch")
	case <-time.After(20 * time.Millisecond):
	}
	released.Store(true)
	g.unpin(held)
	select {
	case ok := <-done:
		if !ok || !released.Load() {
			t.Fatalf("waitUnpinned = %v before the batch finished", ok)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the poll still waits after the batch finished")
	}

	// Copies pin nothing.
	p.detachQueued()
	if b := p.takeLocked(time.Now()); len(b) != 10 || p.q.cutFrom != 0 || g.pin(p.q.cutFrom) != 0 {
		t.Fatalf("a batch of copies (%d records) pins poll %d", len(b), p.q.cutFrom)
	}

	// A batch of an older poll does not hold the next poll up: waiting
	// would not free the newest fetch.
	clearQueue := func() {
		p.mu.Lock()
		p.clearQueueLocked()
		p.mu.Unlock()
	}
	clearQueue()
	p.push(records(100, 25), 1000, time.Now())
	b = p.takeLocked(time.Now())
	held = g.pin(p.q.cutFrom)
	if held == 0 {
		t.Fatal("a batch from the newest fetch is not pinned")
	}
	g.nextGen()
	if !g.waitUnpinned(context.Background(), time.Minute) {
		t.Fatal("waitUnpinned failed")
	}
	g.unpin(held) // late: counts for nothing
	if g.pinned != 0 {
		t.Fatalf("%d pinned after a batch of an older poll finished", g.pinned)
	}

	// A stuck batch holds the poll up only for the bound (B3), and the
	// poll stops waiting when the group stops.
	clearQueue()
	p.push(records(200, 25), 1000, time.Now())
	p.takeLocked(time.Now())
	if held = g.pin(p.q.cutFrom); held == 0 {
		t.Fatal("a batch from the newest fetch is not pinned")
	}
	if !g.waitUnpinned(context.Background(), time.Millisecond) {
		t.Fatal("waitUnpinned with a stuck batch failed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if g.waitUnpinned(ctx, time.Minute) {
		t.Fatal("waitUnpinned = true after the group stopped")
	}
	g.unpin(held)

	// Fast consumers pin nothing: their polls never wait.
	g.slow.Store(false)
	clearQueue()
	p.push(records(300, 25), 1000, time.Now())
	p.takeLocked(time.Now())
	if p.q.cutFrom == 0 || g.pin(p.q.cutFrom) != 0 {
		t.Fatal("a fast consumer's batch pins its fetch")
	}
}

// A batch is cut only once the partition holds a worker slot: while the
// pool is busy the records stay queued, where a slow consumer's poll can
// copy them out of their fetch, instead of a cut batch holding it.
func TestBatchIsCutOnlyWithAWorkerSlot(t *testing.T) {
	p := testPartition(10, time.Second)
	p.g.slots = make(chan struct{}, 1)
	p.g.slots <- struct{}{} // the pool is busy
	p.push(records(0, 25), 1000, time.Now())
	s := newSequential(p, nil)
	got := make(chan []*kgo.Record)
	go func() {
		s.policy.admit(s)
		got <- s.policy.(*batches).lane.pending
	}()
	time.Sleep(50 * time.Millisecond)
	p.mu.Lock()
	queued := p.q.len()
	p.mu.Unlock()
	if queued != 25 {
		t.Fatalf("%d records queued while waiting for a slot, want all 25: a batch was cut before it could run", queued)
	}
	<-p.g.slots // a slot frees
	select {
	case b := <-got:
		if len(b) != 10 || b[0].Offset != 0 || len(p.g.slots) != 1 || !s.slot {
			t.Fatalf("batch of %d from %d with %d slots taken, want 10 from 0 holding the slot", len(b), b[0].Offset, len(p.g.slots))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no batch after a slot freed")
	}
}
