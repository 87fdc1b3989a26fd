package engine

import (
	"bytes"
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

// A batch is cut only once the partition holds a worker slot: while the
// pool is busy the records stay queued, where a slow consumer's poll can
// copy them out of their fetch, instead of a cut batch holding it.
func TestBatchIsCutOnlyWithAWorkerSlot(t *testing.T) {
	p := testPartition(10, time.Second)
	p.g.slots = make(chan struct{}, 1)
	p.g.slots <- struct{}{} // the pool is busy
	p.push(records(0, 25), 1000, time.Now())
	got := make(chan []*kgo.Record)
	go func() {
		b, _ := p.next()
		got <- b
	}()
	time.Sleep(50 * time.Millisecond)
	p.mu.Lock()
	queued := p.queued
	p.mu.Unlock()
	if queued != 25 {
		t.Fatalf("%d records queued while waiting for a slot, want all 25: a batch was cut before it could run", queued)
	}
	<-p.g.slots // a slot frees
	select {
	case b := <-got:
		if len(b) != 10 || b[0].Offset != 0 || len(p.g.slots) != 1 {
			t.Fatalf("batch of %d from %d with %d slots taken, want 10 from 0 holding the slot", len(b), b[0].Offset, len(p.g.slots))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no batch after a slot freed")
	}
}
