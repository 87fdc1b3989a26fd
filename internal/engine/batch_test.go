package engine

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func testPartition(max int, wait time.Duration) *Partition {
	g := &group{room: make(chan struct{}, 1)}
	t := &Topic{Name: "t", MaxMessages: max, MaxWait: wait, QueueBytes: 1 << 30}
	return &Partition{
		g:     g,
		topic: t,
		q:     newQueue(g, t),
		book:  newOffsetBook(false),
		seek:  -1,
		ready: make(chan struct{}),
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
	}
}

func records(from, n int) []*kgo.Record {
	out := make([]*kgo.Record, n)
	for i := range out {
		out[i] = &kgo.Record{Topic: "t", Offset: int64(from + i), Value: []byte("v")}
	}
	return out
}

// B1: when batches are cut.
func TestTakeCutsBatches(t *testing.T) {
	t0 := time.Unix(1000, 0)
	wait := time.Second
	type push struct {
		from, n int
		end     int64 // partition end reported by the fetch
		at      time.Duration
	}
	tests := []struct {
		name   string
		max    int
		pushes []push
		now    time.Duration
		want   []int // sizes of batches taken at now, in order
	}{
		{"full batch at once", 100, []push{{0, 250, 1000, 0}}, 0, []int{100, 100}},
		{"fewer than max waits while the fetch is not done", 100, []push{{0, 30, 1000, 0}}, 999 * time.Millisecond, nil},
		{"fewer than max handed over at MaxWait", 100, []push{{0, 30, 1000, 0}}, time.Second, []int{30}},
		{"fewer than max handed over when the fetch reached the end", 100, []push{{0, 30, 30, 0}}, 0, []int{30}},
		{"MaxWait counts from the oldest queued message", 100, []push{{0, 10, 1000, 0}, {10, 10, 1000, 900 * time.Millisecond}}, time.Second, []int{20}},
		{"tail after a full batch waits for its own chunk's age", 10, []push{{0, 8, 1000, 0}, {8, 8, 1000, 900 * time.Millisecond}}, 1500 * time.Millisecond, []int{10}},
		{"tail after a full batch is due once its chunk aged", 10, []push{{0, 8, 1000, 0}, {8, 8, 1000, 900 * time.Millisecond}}, 1900 * time.Millisecond, []int{10, 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPartition(tt.max, wait)
			for _, ps := range tt.pushes {
				p.push(records(ps.from, ps.n), ps.end, t0.Add(ps.at))
			}
			var got []int
			next := int64(0)
			for {
				b := p.takeLocked(t0.Add(tt.now))
				if b == nil {
					break
				}
				for _, r := range b {
					if r.Offset != next {
						t.Fatalf("offset %d in batch, want %d", r.Offset, next)
					}
					next++
				}
				got = append(got, len(b))
			}
			if len(got) != len(tt.want) {
				t.Fatalf("batches %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("batches %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// Records fetched before a pending seek are dropped, so a retry never sees
// messages past its resume point first.
func TestPushDropsRecordsBeforeSeek(t *testing.T) {
	p := testPartition(10, time.Second)
	p.seek = 5
	p.push(records(20, 5), 1000, time.Now())
	if p.q.len() != 0 {
		t.Fatalf("queued %d records while a seek was pending", p.q.len())
	}
}

// Batches handed out never share backing arrays with later batches, so a
// consumer may keep them.
func TestBatchesDoNotAlias(t *testing.T) {
	p := testPartition(3, time.Second)
	p.push(records(0, 5), 1000, time.Now())
	first := p.takeLocked(time.Now())
	p.push(records(5, 5), 1000, time.Now())
	second := p.takeLocked(time.Now())
	_ = append(first, records(100, 1)...)
	if second[0].Offset != 3 || first[0].Offset != 0 || cap(first) != len(first) {
		t.Fatalf("batches alias: first %v (cap %d), second starts at %d", len(first), cap(first), second[0].Offset)
	}
}

// A tail too short for a batch never pins the fetch's record array (and
// through it the records already consumed). A slow consumer's tail, which
// may wait long, is copied out of its fetch — the records and their values
// — so the fetch can be freed meanwhile; a fast consumer's keeps its
// records, and so its fetch, until the next fetch arrives (queue.trimHead).
func TestShortTailDoesNotPinFetch(t *testing.T) {
	for _, slow := range []bool{true, false} {
		p := testPartition(100, time.Second)
		p.g.slow.Store(slow)
		fetched := records(0, 250)
		p.push(fetched, 1000, time.Now())
		for range 2 {
			if b := p.takeLocked(time.Now()); len(b) != 100 {
				t.Fatalf("slow %v: batch of %d, want 100", slow, len(b))
			}
		}
		tail := p.q.chunks[0].recs
		if len(tail) != 50 || tail[0].Offset != 200 || tail[49].Offset != 249 {
			t.Fatalf("slow %v: tail of %d from %d, want 50 from 200", slow, len(tail), tail[0].Offset)
		}
		if &tail[0] == &fetched[200] {
			t.Fatalf("slow %v: the short tail still points into the fetch's record array", slow)
		}
		copied := tail[0] != fetched[200] && &tail[0].Value[0] != &fetched[200].Value[0]
		if copied != slow || p.q.chunks[0].detached != slow {
			t.Errorf("slow %v: tail copied out of its fetch %v (detached %v), want %v", slow, copied, p.q.chunks[0].detached, slow)
		}
		p.push(records(250, 50), 1000, time.Now())
		if b := p.takeLocked(time.Now()); len(b) != 100 || b[0].Offset != 200 || b[99].Offset != 299 {
			t.Fatalf("slow %v: tail and next fetch give a batch of %d from %d, want 100 from 200", slow, len(b), b[0].Offset)
		}
	}
}
