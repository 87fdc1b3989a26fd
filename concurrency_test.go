package ferry_test

import (
	"context"
	"crypto/rand"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// B2, B3, B4: partitions run in parallel on at most Concurrency workers;
// within a partition batches never overlap and come in order; one consumer
// instance per partition serves every batch of the assignment.
func TestWorkerPoolAndPerPartitionOrder(t *testing.T) {
	const partitions, per = 8, 200
	s := newScenario(t, cluster(t), partitions)
	s.produceEach(partitions, per)

	var running, peak atomic.Int32
	var mu sync.Mutex
	instances := map[int32]int{}
	busy := map[int32]bool{}
	next := map[int32]int64{}
	var problems []string
	newConsumer := func(claim *ferry.Claim) ferry.Consumer {
		mu.Lock()
		instances[claim.Partition()]++
		mu.Unlock()
		return ferry.ConsumerFunc(func(_ context.Context, b *ferry.Batch) error {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			mu.Lock()
			if busy[b.Partition] {
				problems = append(problems, "two batches of one partition overlapped (B2)")
			}
			busy[b.Partition] = true
			if b.Messages[0].Offset != next[b.Partition] {
				problems = append(problems, "batch out of order (B2)")
			}
			next[b.Partition] = b.Last().Offset + 1
			mu.Unlock()

			time.Sleep(20 * time.Millisecond)
			s.rec.record(b)

			mu.Lock()
			busy[b.Partition] = false
			mu.Unlock()
			running.Add(-1)
			return nil
		})
	}
	app := s.start(ferry.Concurrency(5), s.routeTo(newConsumer, ferry.MaxMessages(20)))
	s.rec.waitDistinct(t, s.topic, partitions*per, 60*time.Second)
	s.stop(app)
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	if got := peak.Load(); got != 5 {
		t.Errorf("peak concurrent batches %d, want exactly the pool size 5 (B3)", got)
	}
	for p := range int32(partitions) {
		if instances[p] != 1 {
			t.Errorf("partition %d had %d consumer instances, want 1 (B4)", p, instances[p])
		}
	}
}

// B3: a partition whose consumer is stuck does not hold up the others —
// when its queue fills (it stops fetching), and when its queue holds more
// than the poll loop's fetch-ahead budget (a slow consumer's is about
// 1 MiB) but less than QueueBytes (it keeps fetching).
func TestStuckPartitionDoesNotStopOthers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		per, size  int
		queueBytes []ferry.TopicOption
	}{
		{"queue full", 500, 0, []ferry.TopicOption{ferry.QueueBytes(4096)}},
		{"queue over the fetch-ahead budget", 300, 10 << 10, nil}, // 3 MB per partition
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScenario(t, cluster(t), 3)
			if tc.size == 0 {
				s.produceEach(3, tc.per)
			} else {
				s.produceRandom(3, tc.per, tc.size)
			}
			release := make(chan struct{})
			fn := func(ctx context.Context, b *ferry.Batch) error {
				if b.Partition == 0 {
					<-release
				}
				s.rec.record(b)
				return nil
			}
			app := s.start(ferry.Concurrency(2), s.route(fn, append([]ferry.TopicOption{ferry.MaxMessages(10)}, tc.queueBytes...)...))
			s.waitSeen(2 * tc.per) // partitions 1 and 2 complete
			close(release)
			s.waitSeen(3 * tc.per)
			s.stop(app)
		})
	}
}

// produceRandom writes n messages of size random bytes (so fetches are not
// compressed smaller) to each of the first partitions partitions.
func (s *scenario) produceRandom(partitions int32, n, size int) {
	s.t.Helper()
	for p := range partitions {
		recs := make([]*kgo.Record, n)
		for i := range recs {
			v := make([]byte, size)
			_, _ = rand.Read(v)
			recs[i] = &kgo.Record{Topic: s.topic, Partition: p, Value: v}
		}
		produceRecords(s.t, s.c, nil, recs...)
	}
}

// Memory (K8's bound holds per partition; this is the per-broker part):
// ferry asks each broker for fetch responses of at most 5 MiB where kgo
// asks for 50 MiB, so what a consumer holds per broker — the response its
// consumers work through plus the one kgo reads — stays small whatever the
// partitions hold. ClientOptions(kgo.FetchMaxBytes) sets another.
func TestFetchResponsesAreCapped(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kgo.Opt
		want int32
	}{
		{"default", nil, 5 << 20},
		{"ClientOptions", []kgo.Opt{kgo.FetchMaxBytes(16 << 20)}, 16 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := embedded(t)
			s := newScenario(t, c, 1)
			var mu sync.Mutex
			asked := map[int32]bool{}
			c.Fake.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
				c.Fake.KeepControl()
				// kgo ends its fetch session with a 1-byte fetch.
				if n := req.(*kmsg.FetchRequest).MaxBytes; n > 1 {
					mu.Lock()
					asked[n] = true
					mu.Unlock()
				}
				return nil, nil, false
			})
			s.produce(0, 5)
			app := s.start(ferry.ClientOptions(tc.opts...), s.route(s.rec.fn()))
			s.waitSeen(5)
			s.stop(app)
			mu.Lock()
			defer mu.Unlock()
			if len(asked) != 1 || !asked[tc.want] {
				t.Errorf("fetches asked for at most %v bytes, want %d only", slices.Sorted(maps.Keys(asked)), tc.want)
			}
		})
	}
}
