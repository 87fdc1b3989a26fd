package ferry_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// handoffConsumer processes slowly and, when revoked, checks that its work
// was committed before its Revoked hook runs (A3).
type handoffConsumer struct {
	rec      *recorder
	claim    *ferry.Claim
	cluster  *ferrytest.Cluster
	group    string
	last     int64
	revoked  *atomic.Int32
	problems chan string
}

func (h *handoffConsumer) Consume(_ context.Context, b *ferry.Batch) error {
	time.Sleep(3 * time.Millisecond)
	h.rec.record(b)
	h.last = b.Last().Offset
	return nil
}

func (h *handoffConsumer) Revoked(ctx context.Context) error {
	h.revoked.Add(1)
	if h.last < 0 {
		return nil
	}
	got, err := h.cluster.Committed(ctx, h.group, h.claim.Topic())
	if err != nil {
		h.problems <- err.Error()
		return nil
	}
	if got[h.claim.Partition()] != h.last+1 {
		h.problems <- fmt.Sprintf("partition %d: Revoked hook ran with committed offset %d, want %d (A3: commit before the hook)",
			h.claim.Partition(), got[h.claim.Partition()], h.last+1)
	}
	return nil
}

// A3, B4: a second member joins mid-stream. The first member finishes its
// in-flight batches, commits, runs Revoked, then lets go; across both members
// every message is processed exactly once.
func TestHandOffLosesNothingAndDuplicatesNothing(t *testing.T) {
	for _, proto := range append(protocols(), eagerProtocol()) {
		t.Run(proto.name, func(t *testing.T) {
			s := newScenario(t, cluster(t), 4)
			var revoked atomic.Int32
			problems := make(chan string, 100)
			newConsumer := func(claim *ferry.Claim) ferry.Consumer {
				return &handoffConsumer{rec: s.rec, claim: claim, cluster: s.c, group: s.group, last: -1, revoked: &revoked, problems: problems}
			}
			const perPartition = 1500
			// First half while A runs alone, second half after B took over
			// some partitions, so the hand-off happens mid-stream.
			if err := produceSlowly(s.c, s.topic, 4, 0, perPartition/2, time.Second); err != nil {
				t.Fatal(err)
			}
			route := s.routeTo(newConsumer, ferry.MaxMessages(50))
			a := s.start(route, ferry.ClientOptions(proto.opts...))
			s.waitSeen(1000)
			b := s.start(route, ferry.ClientOptions(proto.opts...))
			produced := make(chan error, 1)
			go func() { produced <- produceSlowly(s.c, s.topic, 4, perPartition/2, perPartition, 2*time.Second) }()
			if err := ferrytest.WaitFor(ctxFor(t, 45*time.Second), func() bool { return revoked.Load() > 0 }); err != nil {
				t.Fatal("no partition was revoked: the second member never took over")
			}
			if err := <-produced; err != nil {
				t.Fatal(err)
			}
			s.rec.waitDistinct(t, s.topic, 4*perPartition, 60*time.Second)
			s.stop(b)
			s.stop(a)
			close(problems)
			for p := range problems {
				t.Error(p)
			}
			if d := s.rec.duplicates(s.topic); d != 0 {
				t.Errorf("%d messages processed twice in a clean hand-off, want 0", d)
			}
		})
	}
}

type protocol struct {
	name string
	opts []kgo.Opt
}

// protocols are the group protocols every rebalance test runs on: classic
// (cooperative-sticky) and KIP-848.
func protocols() []protocol {
	return []protocol{
		{"classic", nil},
		{"kip848", []kgo.Opt{kgo.ServerSideBalancer(), kgo.Balancers(kgo.CooperativeStickyBalancer(), kgo.StickyBalancer())}},
	}
}

// eagerProtocol is the classic protocol with an eager balancer: every
// rebalance revokes every partition of every member, also those it gets
// back. The hand-off tests run on it too.
func eagerProtocol() protocol {
	return protocol{"eager", []kgo.Opt{kgo.Balancers(kgo.RangeBalancer())}}
}

// produceSlowly writes values from..to-1 to every partition, spread over
// about d.
func produceSlowly(c *ferrytest.Cluster, topic string, partitions int32, from, to int, d time.Duration) error {
	cl, err := c.NewClient(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return err
	}
	defer cl.Close()
	const steps = 30
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	sent := from
	for s := range steps {
		upto := from + (to-from)*(s+1)/steps
		var recs []*kgo.Record
		for i := sent; i < upto; i++ {
			for p := range partitions {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(fmt.Sprint(i))})
			}
		}
		sent = upto
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return err
		}
		time.Sleep(d / steps)
	}
	return nil
}

// A5, A3, K5, K6: a rebalance while a partition waits out a retry backoff:
// the revocation does not wait for the backoff, the member that gets the
// partition starts at the failed message (the first unmarked), and the
// attempt count starts again at 1 — for the new owner, and for the old
// member when an eager rebalance hands the partition back to it. Sequential
// and parallel partitions alike.
func TestRebalanceDuringRetryResetsTheAttempt(t *testing.T) {
	for _, proto := range append(protocols(), eagerProtocol()) {
		for _, mode := range []struct {
			name string
			opts []ferry.TopicOption
		}{{"sequential", nil}, {"parallel", []ferry.TopicOption{ferry.Parallel(4)}}} {
			t.Run(proto.name+"/"+mode.name, func(t *testing.T) {
				s := newScenario(t, cluster(t, fastHeartbeats()), 2)
				s.produceEach(2, 10)
				var mu sync.Mutex
				firstAttempt := map[*ferry.Claim]string{} // each instance's first batch: "partition@offset/attempt"
				attempts := map[int32]int{}
				failing := scripted{consume: func(_ context.Context, claim *ferry.Claim, b *ferry.Batch) error {
					mu.Lock()
					defer mu.Unlock()
					if _, ok := firstAttempt[claim]; !ok {
						firstAttempt[claim] = fmt.Sprintf("%d@%d/%d", b.Partition, b.Messages[0].Offset, b.Attempt)
					}
					attempts[b.Partition] = max(attempts[b.Partition], b.Attempt)
					if b.Messages[0].Offset >= 5 {
						return errors.New("the second half fails")
					}
					return nil
				}}
				topicOpts := append([]ferry.TopicOption{ferry.MaxMessages(5), ferry.Retry(ferry.ConstantBackoff(300 * time.Millisecond))}, mode.opts...)
				a := s.start(member(proto), s.routeTo(failing.factory(), topicOpts...))
				s.waitUntil("retried both partitions", func() bool {
					mu.Lock()
					defer mu.Unlock()
					return attempts[0] >= 3 && attempts[1] >= 3
				})
				s.waitCommitted(map[int32]int64{0: 5, 1: 5})

				b := s.start(member(proto), s.route(s.rec.fn()))
				s.waitSeen(5) // the moved partition, from its failed message on
				moved := s.rec.snapshot()[0]
				if moved.offsets[0] != 5 || moved.attempt != 1 {
					t.Errorf("the new owner's first batch: offset %d, attempt %d; want offset 5, attempt 1",
						moved.offsets[0], moved.attempt)
				}
				s.waitCommittedAt(moved.partition, 10)
				s.stop(b)
				s.stop(a)
				mu.Lock()
				defer mu.Unlock()
				for _, first := range firstAttempt {
					if !strings.HasSuffix(first, "/1") {
						t.Errorf("a consumer instance's first batch was %s, want attempt 1", first)
					}
				}
			})
		}
	}
}
