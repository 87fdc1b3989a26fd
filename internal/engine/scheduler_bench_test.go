package engine

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// countWorker consumes without work and closes done once it has seen want
// messages.
type countWorker struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func (w *countWorker) Consume(_ context.Context, recs []*kgo.Record, _ int) error {
	if w.n.Add(int64(len(recs))) == w.want {
		close(w.done)
	}
	return nil
}
func (*countWorker) Initialized(context.Context) error { return nil }
func (*countWorker) Revoked(context.Context) error     { return nil }
func (*countWorker) Shutdown(context.Context) error    { return nil }
func (*countWorker) EOF(context.Context) error         { return nil }

type wallClock struct{}

func (wallClock) Now() time.Time                         { return time.Now() }
func (wallClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// BenchmarkPartitionScheduler measures what the scheduler itself costs per
// message — admitting, lanes, starting and settling units, the window —
// with a handler that does nothing, so nothing else is timed. One partition
// without a cluster: the records are pushed into its queue as fetches would
// be. Its cost is what a wave of units that end together waits for (see
// docs/BENCHMARKS.md, "Units that end together").
//
//	go test -run XXX -bench PartitionScheduler -benchtime 200000x ./internal/engine
func BenchmarkPartitionScheduler(b *testing.B) {
	cases := []struct {
		name     string
		parallel int
		keys     int // 0: every message its own key
	}{
		{"sequential", 0, 1},
		{"parallel 128, distinct keys", 128, 0},
		{"parallel 128, 100 keys", 128, 100},
		{"parallel 128, one key", 128, 1},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			n := b.N
			log := make([]*kgo.Record, n)
			for i := range log {
				k := i
				if c.keys > 0 {
					k = i % c.keys
				}
				log[i] = &kgo.Record{Topic: "t", Offset: int64(i), Key: []byte(strconv.Itoa(k)), Value: []byte("v"), LeaderEpoch: 1}
			}
			p := schedPartition(c.parallel, 100, wallClock{})
			p.g.cfg.TimeConsume = false
			p.topic.MaxWait = 0
			w := &countWorker{want: int64(n), done: make(chan struct{})}
			p.topic.NewWorker = func(*Partition) Worker { return w }
			h := &schedHarness{p: p, log: log}
			b.ReportAllocs()
			b.ResetTimer()
			stop := h.run(1000)
			<-w.done
			b.StopTimer()
			stop()
		})
	}
}
