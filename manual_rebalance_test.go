package ferry_test

// Manual offsets across rebalances and lost assignments: marks and commits
// refused once the partition is gone (M2–M5), and hook marks (M9).

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// M1, A3: with ManualOffsets, a revocation commits the consumer's marks
// before the partition moves (no periodic commit is due): the new owner
// starts right after the last mark — 25, since 25-29 were processed but
// never marked.
func TestManualOffsetsRevocationCommitsTheMarks(t *testing.T) {
	for _, proto := range protocols() {
		t.Run(proto.name, func(t *testing.T) {
			s := newScenario(t, cluster(t, fastHeartbeats()), 2)
			s.produceEach(2, 30)
			route := func(rec *recorder) ferry.Option {
				marker := scripted{consume: func(_ context.Context, claim *ferry.Claim, b *ferry.Batch) error {
					rec.record(b)
					markWhere(t, claim, b, endsIn4)
					return nil
				}}
				return s.routeTo(marker.factory(), ferry.ManualOffsets(), ferry.MaxMessages(10))
			}
			recB := newRecorder() // member A records through s.rec
			commitsA := &commitLog{}
			a := s.start(ferry.CommitInterval(time.Hour), commitsA.option(), member(proto), route(s.rec))
			s.waitSeen(60)
			b := s.start(ferry.CommitInterval(time.Hour), member(proto), route(recB))
			recB.waitDistinct(t, s.topic, 5, 30*time.Second)
			deliveries := recB.snapshot()
			moved := deliveries[0].partition
			if first := deliveries[0].offsets[0]; first != 25 {
				t.Errorf("the new owner started at offset %d, want 25 (right after the last mark)", first)
			}
			revocation := false
			for _, ev := range commitsA.of(s.topic, moved) {
				revocation = revocation || (ev.reason == "revocation" && ev.offset == 25)
			}
			if !revocation {
				t.Errorf("no revocation commit of offset 25 for partition %d: %v", moved, commitsA.of(s.topic, moved))
			}
			s.stop(b)
			s.stop(a)
			if got := s.committed(); got[0] != 25 || got[1] != 25 {
				t.Errorf("committed %v, want 25 on both partitions", got)
			}
		})
	}
}

// M2, M4, M5: once a revocation moved a partition to another member, the old
// consumer's claim refuses everything — MarkAsConsumed, MarkWithMetadata,
// MarkAsConsumedSync, CommitOffsets and CommitOffsetsSync report false and
// Revoked reports true — and the refused marks are stored nowhere: the old
// member's later commits never carry them. Sequential and parallel (K7)
// partitions alike.
func TestManualMarkAfterRevocationIsRefused(t *testing.T) {
	for _, proto := range protocols() {
		for _, mode := range sequentialAndParallel {
			t.Run(proto.name+"/"+mode.name, func(t *testing.T) {
				s := newScenario(t, cluster(t, fastHeartbeats()), 2)
				s.produceEach(2, 20)
				recB := newRecorder() // member A records through s.rec
				var mu sync.Mutex
				claims := map[int32]*ferry.Claim{}
				var joined atomic.Bool
				revoked := make(chan int32, 2)
				a := scripted{
					consume: func(_ context.Context, claim *ferry.Claim, b *ferry.Batch) error {
						s.rec.record(b)
						mu.Lock()
						claims[b.Partition] = claim
						mu.Unlock()
						if !joined.Load() && claim.Revoked() {
							t.Errorf("Revoked() = true while the partition is owned (M5)")
						}
						markWhere(t, claim, b, func(int64) bool { return true })
						return nil
					},
					revoked: func(_ context.Context, claim *ferry.Claim) {
						if !claim.Revoked() {
							t.Errorf("Revoked() = false in the Revoked hook (M5)")
						}
						select {
						case revoked <- claim.Partition():
						default:
						}
					},
				}
				commitsA := &commitLog{}
				appA := s.start(member(proto), commitsA.option(),
					s.routeTo(a.factory(), append(mode.opts, ferry.ManualOffsets())...))
				s.waitSeen(40)
				s.waitCommittedAt(0, 20)
				s.waitCommittedAt(1, 20)

				joined.Store(true)
				appB := s.start(member(proto), s.route(recB.fn()))
				var moved int32
				select {
				case moved = <-revoked:
				case <-time.After(30 * time.Second):
					t.Fatal("no partition was revoked: the second member never took over")
				}
				kept := 1 - moved
				// The new owner consumes (and commits) what comes next.
				s.produce(moved, 5)
				recB.waitDistinct(t, s.topic, 5, 20*time.Second)
				s.waitCommittedAt(moved, 25)

				mu.Lock()
				stale := claims[moved]
				mu.Unlock()
				late := &kgo.Record{Topic: s.topic, Partition: moved, Offset: 100, LeaderEpoch: -1}
				ctx := ctxFor(t, 10*time.Second)
				if !stale.Revoked() {
					t.Error("Revoked() = false after the partition moved (M5)")
				}
				if stale.MarkAsConsumed(late) {
					t.Error("MarkAsConsumed = true after the partition moved (M2)")
				}
				if stale.MarkWithMetadata(late, "late") {
					t.Error("MarkWithMetadata = true after the partition moved (M2)")
				}
				if ok, err := stale.MarkAsConsumedSync(ctx, late); ok {
					t.Errorf("MarkAsConsumedSync = true (%v) after the partition moved (M3)", err)
				}
				if stale.CommitOffsets() {
					t.Error("CommitOffsets = true after the partition moved (M4)")
				}
				if ok, err := stale.CommitOffsetsSync(ctx); ok {
					t.Errorf("CommitOffsetsSync = true (%v) after the partition moved (M4)", err)
				}

				// The old member commits again (its kept partition's next
				// message): the refused marks are not in it.
				s.produce(kept, 1)
				s.waitCommittedAt(kept, 21)
				if got := s.committed(); got[moved] != 25 {
					t.Errorf("partition %d committed at %d, want the new owner's 25", moved, got[moved])
				}
				s.stop(appB)
				s.stop(appA)
				if got := s.committed(); got[moved] != 25 || got[kept] != 21 {
					t.Errorf("committed %v after both stopped, want %d:25 %d:21", got, moved, kept)
				}
				for _, ev := range commitsA.of(s.topic, moved) {
					if ev.offset > 20 {
						t.Errorf("the old member committed %d for partition %d after letting it go", ev.offset, moved)
					}
				}
			})
		}
	}
}

// M2, M3, M4, M5, M9: a partition lost while its batch is in flight: the
// batch finishes, but every mark and commit through its claim reports false
// (also in the Revoked hook), Revoked reports true, and nothing it tried to
// mark is ever committed — the redelivered batch, left unmarked by the new
// instance, keeps the committed offset at 10.
func TestManualMarkAfterLostAssignmentIsRefused(t *testing.T) {
	for _, proto := range protocols() {
		t.Run(proto.name, func(t *testing.T) {
			s := newScenario(t, embedded(t, fastHeartbeats()), 1)
			s.produceEach(1, 20)
			blocked, release := make(chan struct{}), make(chan struct{})
			var first atomic.Pointer[ferry.Claim]
			var results sync.Map // call → its result after the loss
			sc := scripted{
				consume: func(ctx context.Context, claim *ferry.Claim, b *ferry.Batch) error {
					s.rec.record(b)
					first.CompareAndSwap(nil, claim)
					if claim != first.Load() || b.Messages[0].Offset < 10 {
						markWhere(t, claim, b, func(o int64) bool { return o < 10 })
						return nil
					}
					close(blocked)
					<-release
					last := b.Last()
					results.Store("Revoked", claim.Revoked())
					results.Store("MarkAsConsumed", claim.MarkAsConsumed(last))
					results.Store("MarkWithMetadata", claim.MarkWithMetadata(last, "lost"))
					ok, _ := claim.MarkAsConsumedSync(context.WithoutCancel(ctx), last)
					results.Store("MarkAsConsumedSync", ok)
					results.Store("CommitOffsets", claim.CommitOffsets())
					ok, _ = claim.CommitOffsetsSync(context.WithoutCancel(ctx))
					results.Store("CommitOffsetsSync", ok)
					return nil
				},
				revoked: func(_ context.Context, claim *ferry.Claim) {
					if claim == first.Load() {
						results.Store("MarkAsConsumed in Revoked hook", claim.MarkAsConsumed(&kgo.Record{Topic: s.topic, Offset: 19, LeaderEpoch: -1}))
					}
				},
			}
			app := s.start(member(proto),
				s.routeTo(sc.factory(), ferry.ManualOffsets(), ferry.MaxMessages(10)))
			s.waitClosed("started the second batch", blocked)
			s.waitCommittedAt(0, 10)
			loseOnce(s.c, s.group, proto.name == "kip848")
			s.waitUntil("lost the assignment", func() bool { return first.Load().Revoked() })
			close(release)
			s.waitUntil("delivered the lost batch again", func() bool { return s.rec.times(s.topic, 0, 10) >= 2 })
			s.stop(app)
			for _, call := range []string{"MarkAsConsumed", "MarkWithMetadata", "MarkAsConsumedSync",
				"CommitOffsets", "CommitOffsetsSync", "MarkAsConsumed in Revoked hook"} {
				if v, ok := results.Load(call); !ok || v.(bool) {
					t.Errorf("%s after the loss = %v, want false", call, v)
				}
			}
			if v, _ := results.Load("Revoked"); v != true {
				t.Error("Revoked() = false after the loss (M5)")
			}
			if got := s.committed(); got[0] != 10 {
				t.Errorf("committed %v, want 10: the lost claim's marks must be dropped", got)
			}
		})
	}
}

// M3: MarkAsConsumedSync never reports true when the assignment is lost
// while it commits — whether the broker refuses the commit (stale
// generation) or accepts it just before ferry learns of the loss. Callers
// fence side effects on it. Sequential and parallel (K7) partitions alike.
func TestManualMarkAsConsumedSyncLostWhileCommitting(t *testing.T) {
	for _, how := range []string{"commit refused", "lost after the commit"} {
		for _, proto := range protocols() {
			for _, mode := range sequentialAndParallel {
				t.Run(how+"/"+proto.name+"/"+mode.name, func(t *testing.T) {
					kip848 := proto.name == "kip848"
					s := newScenario(t, embedded(t, fastHeartbeats()), 1)
					s.produceKeyed(slices.Repeat([]string{"k"}, 20)...) // one key: a parallel partition runs it in batches too
					var first atomic.Pointer[ferry.Claim]
					var lostSync atomic.Value // the first instance's result for offset 20
					var redelivered atomic.Bool
					sc := scripted{consume: func(ctx context.Context, claim *ferry.Claim, b *ferry.Batch) error {
						first.CompareAndSwap(nil, claim)
						for _, m := range b.Messages[:len(b.Messages)-1] { // a parallel partition's marks are per message
							claim.MarkAsConsumed(m)
						}
						ok, err := claim.MarkAsConsumedSync(ctx, b.Last())
						switch {
						case claim == first.Load() && b.Last().Offset == 19:
							lostSync.Store(fmt.Sprintf("%v, %v", ok, err))
						case claim != first.Load():
							redelivered.Store(true)
						}
						return nil
					}}
					waitLost := func() {
						loseOnce(s.c, s.group, kip848)
						if err := ferrytest.WaitFor(ctxFor(t, 15*time.Second), func() bool { return first.Load().Revoked() }); err != nil {
							t.Error("the assignment was never lost")
						}
					}
					var onCommit []ferry.Option
					if how == "commit refused" {
						refuseCommit(s.c, s.group, 20, kip848)
					} else {
						var once sync.Once
						onCommit = append(onCommit, ferry.OnCommit(func(cm ferry.Commit) {
							// Runs after the broker accepted, before
							// MarkAsConsumedSync returns.
							if cm.Reason == "sync" && cm.Offsets[s.topic][0] == 20 {
								once.Do(waitLost)
							}
						}))
					}
					app := s.start(append(onCommit, member(proto), ferry.CommitInterval(time.Hour),
						s.routeTo(sc.factory(), append(mode.opts, ferry.ManualOffsets(), ferry.MaxMessages(10))...))...)
					s.waitUntil("called MarkAsConsumedSync in the second batch", func() bool { return lostSync.Load() != nil })
					if how == "commit refused" {
						waitLost()
						if err := ferrytest.WaitFor(ctxFor(t, 20*time.Second), redelivered.Load); err != nil {
							t.Error("the partition was never consumed again after the loss")
						}
					}
					s.stop(app)
					if got := lostSync.Load().(string); got[:5] != "false" {
						t.Errorf("MarkAsConsumedSync = %s for a commit the loss raced, want false", got)
					}
					if got := s.committed(); got[0] != 20 {
						t.Errorf("committed %v, want 20 in the end", got)
					}
				})
			}
		}
	}
}

// M5: Revoked turns true as soon as a revocation begins, so a long Consume
// can stop early: here the in-flight batch waits for it, and the revocation
// completes once it returns.
func TestManualRevokedTurnsTrueDuringRevocation(t *testing.T) {
	for _, proto := range protocols() {
		t.Run(proto.name, func(t *testing.T) {
			s := newScenario(t, cluster(t, fastHeartbeats()), 2)
			s.produceEach(2, 10)
			started := make(chan int32, 2)
			noticed := make(chan int32, 2)
			release := make(chan struct{})
			var hookRan atomic.Bool
			long := scripted{
				consume: func(ctx context.Context, claim *ferry.Claim, b *ferry.Batch) error {
					if b.Messages[0].Offset != 0 {
						return nil
					}
					if claim.Revoked() {
						t.Error("Revoked() = true when the batch started")
					}
					select {
					case started <- b.Partition:
					default:
					}
					giveUp := time.After(20 * time.Second)
					for { // a long batch that checks Revoked as it goes
						if claim.Revoked() {
							if hookRan.Load() {
								t.Error("the Revoked hook ran while the batch was in flight")
							}
							if ctx.Err() != nil { // a lost partition's context is cancelled
								t.Error("Revoked() turned true through a lost assignment, not the revocation")
							}
							select {
							case noticed <- b.Partition:
							default:
							}
							return nil
						}
						select {
						case <-release:
							return nil
						case <-giveUp:
							t.Error("Revoked() never turned true in the in-flight batch")
							return nil
						case <-time.After(10 * time.Millisecond):
						}
					}
				},
				revoked: func(context.Context, *ferry.Claim) { hookRan.Store(true) },
			}
			a := s.start(member(proto), s.routeTo(long.factory(), ferry.ManualOffsets()))
			for range 2 {
				select {
				case <-started:
				case <-time.After(20 * time.Second):
					t.Fatal("the first batches never started")
				}
			}
			b := s.start(member(proto), s.route(s.rec.fn()))
			select {
			case <-noticed:
			case <-time.After(30 * time.Second):
				t.Fatal("the in-flight batch never saw Revoked() turn true")
			}
			close(release)
			s.waitSeen(10) // the moved partition, never marked
			s.stop(b)
			s.stop(a)
			if !hookRan.Load() {
				t.Error("the Revoked hook never ran")
			}
		})
	}
}

// M9, A3: the Revoked hook may mark, and its mark is committed before the
// partition moves (no periodic commit is due): the new owner starts right
// after it.
func TestManualRevokedHookMarkIsCommitted(t *testing.T) {
	for _, proto := range protocols() {
		t.Run(proto.name, func(t *testing.T) {
			s := newScenario(t, cluster(t, fastHeartbeats()), 2)
			s.produceEach(2, 20)
			recB := newRecorder() // member A records through s.rec
			var mu sync.Mutex
			last := map[int32]*ferry.Message{}
			markLast := func(hook string) func(context.Context, *ferry.Claim) {
				return func(_ context.Context, claim *ferry.Claim) {
					mu.Lock()
					m := last[claim.Partition()]
					mu.Unlock()
					if m != nil && !claim.MarkAsConsumed(m) {
						t.Errorf("MarkAsConsumed in the %s hook = false", hook)
					}
				}
			}
			a := scripted{
				consume: func(_ context.Context, _ *ferry.Claim, b *ferry.Batch) error {
					s.rec.record(b)
					mu.Lock()
					last[b.Partition] = b.Last()
					mu.Unlock()
					return nil
				},
				revoked:  markLast("Revoked"),
				shutdown: markLast("Shutdown"),
			}
			commitsA := &commitLog{}
			appA := s.start(member(proto), ferry.CommitInterval(time.Hour), commitsA.option(),
				s.routeTo(a.factory(), ferry.ManualOffsets()))
			s.waitSeen(40)
			appB := s.start(member(proto), s.route(recB.fn()))
			var moved int32 = -1
			if err := ferrytest.WaitFor(ctxFor(t, 30*time.Second), func() bool {
				for _, ev := range commitsA.snapshot() {
					if ev.Reason == "revocation hooks" {
						for p := range ev.Offsets[s.topic] {
							moved = p
						}
					}
				}
				return moved >= 0
			}); err != nil {
				t.Fatalf("no commit after the Revoked hooks: %v", commitsA.snapshot())
			}
			if got := s.committed(); got[moved] != 20 {
				t.Errorf("partition %d committed %v after its Revoked hook marked 20", moved, got)
			}
			s.produce(moved, 5)
			recB.waitDistinct(t, s.topic, 5, 20*time.Second)
			if first := recB.snapshot()[0]; first.partition != moved || first.offsets[0] != 20 {
				t.Errorf("new owner's first batch: partition %d from %d, want partition %d from 20",
					first.partition, first.offsets[0], moved)
			}
			s.stop(appB)
			s.stop(appA)
			if got := s.committed(); got[1-moved] != 20 {
				t.Errorf("kept partition committed %v, want 20 from the Shutdown hook's mark", got)
			}
		})
	}
}

// Helpers for the offset-management tests.

// fastHeartbeats makes an embedded cluster's KIP-848 members heartbeat every
// 200 ms, so rebalances take a fraction of a second.
func fastHeartbeats() kfake.Opt {
	return kfake.BrokerConfigs(map[string]string{"group.consumer.heartbeat.interval.ms": "200"})
}

// member configures an app as a member of a group under the given protocol,
// heartbeating often so it notices rebalances quickly.
func member(proto protocol) ferry.Option {
	return ferry.ClientOptions(append([]kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond)}, proto.opts...)...)
}

// refuseCommit makes the broker refuse the group's first commit of offset
// at, on one partition, as a fenced member's commit is refused (classic:
// ILLEGAL_GENERATION; KIP-848: UNKNOWN_MEMBER_ID).
func refuseCommit(c *ferrytest.Cluster, group string, at int64, kip848 bool) {
	code := kerr.IllegalGeneration.Code
	if kip848 {
		code = kerr.UnknownMemberID.Code
	}
	refuseCommitWith(c, group, at, code)
}

// refuseCommitWith makes the broker answer the group's first commit of
// offset at, on one partition, with the error code.
func refuseCommitWith(c *ferrytest.Cluster, group string, at int64, code int16) {
	c.Fake.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.OffsetCommitRequest)
		if r.Group != group || len(r.Topics) != 1 || len(r.Topics[0].Partitions) != 1 ||
			r.Topics[0].Partitions[0].Offset != at {
			return nil, nil, false
		}
		resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic, rt.TopicID = r.Topics[0].Topic, r.Topics[0].TopicID
		rp := kmsg.NewOffsetCommitResponseTopicPartition()
		rp.Partition, rp.ErrorCode = r.Topics[0].Partitions[0].Partition, code
		rt.Partitions = append(rt.Partitions, rp)
		resp.Topics = append(resp.Topics, rt)
		return resp, nil, true
	})
}

// M3, M4, A7: MarkAsConsumedSync and CommitOffsetsSync ask the group
// coordinator every time, even when nothing new is stored. Consumers keep
// fencing the same side effect in a loop while a second member joins: the
// revocation of the partition that moves waits for its loop, past the
// rebalance timeout, until the coordinator drops the first member and the
// second one owns the partition. From then on every call for that
// partition reports false.
//
// Eager balancing and KIP-848 hand a partition over only once its owner let
// go or was dropped; cooperative balancing keeps the stuck member (it
// heartbeats while it revokes) and leaves the partition unassigned, so
// nobody takes over. The embedded cluster keeps a KIP-848 member alive as
// long as it commits, so there the takeover is checked on a real broker only.
// Sequential and parallel (K7) partitions alike.
func TestManualMarkAsConsumedSyncAfterTakeover(t *testing.T) {
	eager := protocol{"eager", []kgo.Opt{kgo.Balancers(kgo.RangeBalancer())}}
	for _, proto := range []protocol{eager, protocols()[1]} {
		for _, mode := range sequentialAndParallel {
			t.Run(proto.name+"/"+mode.name, func(t *testing.T) {
				c := cluster(t, fastHeartbeats())
				if c.Fake != nil && proto.name == "kip848" {
					t.Skip("the embedded cluster never drops a KIP-848 member that keeps committing")
				}
				tp := topic(t, c, 2)
				produceN(t, c, tp, 0, 5)
				produceN(t, c, tp, 1, 5)
				group := ferrytest.UniqueName("g")
				type call struct {
					partition int32
					began     time.Time
					ok        bool
				}
				var mu sync.Mutex
				var calls []call
				stopMarking := make(chan struct{})
				var once sync.Once
				stop := func() { once.Do(func() { close(stopMarking) }) }
				fence := scripted{consume: func(ctx context.Context, claim *ferry.Claim, b *ferry.Batch) error {
					for {
						began := time.Now()
						ok, _ := claim.MarkAsConsumedSync(ctx, b.Last())
						mu.Lock()
						calls = append(calls, call{b.Partition, began, ok})
						mu.Unlock()
						began = time.Now()
						ok, _ = claim.CommitOffsetsSync(ctx) // M4: nothing new stored
						mu.Lock()
						calls = append(calls, call{b.Partition, began, ok})
						mu.Unlock()
						select {
						case <-stopMarking:
							return nil
						case <-time.After(100 * time.Millisecond):
						}
					}
				}}
				calledSince := func(partition int32, since time.Time) (n, owned int) {
					mu.Lock()
					defer mu.Unlock()
					for _, c := range calls {
						if c.began.After(since) && (partition < 0 || c.partition == partition) {
							n++
							if c.ok {
								owned++
							}
						}
					}
					return n, owned
				}
				quick := kgo.RebalanceTimeout(3 * time.Second) // how long the group waits for the stuck member
				a := start(t, opts(t, c, member(proto), ferry.ClientOptions(quick), ferry.CommitInterval(time.Hour),
					ferry.Route(group, tp, fence.factory(), append(mode.opts, ferry.ManualOffsets())...))...)
				t.Cleanup(stop) // before the app's cleanup, which waits for Run
				if err := ferrytest.WaitFor(ctxFor(t, 20*time.Second), func() bool {
					_, owned0 := calledSince(0, time.Time{})
					_, owned1 := calledSince(1, time.Time{})
					return owned0 > 0 && owned1 > 0
				}); err != nil {
					t.Fatal("MarkAsConsumedSync never reported true while the partitions were owned")
				}

				rec := newRecorder()
				b := start(t, opts(t, c, member(proto), ferry.ClientOptions(quick), ferry.RouteFunc(group, tp, rec.fn()))...)
				produceN(t, c, tp, 0, 1)
				produceN(t, c, tp, 1, 1)
				rec.waitDistinct(t, tp, 1, 60*time.Second) // the second member owns a partition
				tookOver := time.Now()
				moved := rec.snapshot()[0].partition
				if err := ferrytest.WaitFor(ctxFor(t, 20*time.Second), func() bool { n, _ := calledSince(moved, tookOver); return n >= 5 }); err != nil {
					t.Fatal("the first member stopped calling MarkAsConsumedSync")
				}
				stop()
				if n, owned := calledSince(moved, tookOver); owned > 0 {
					t.Errorf("MarkAsConsumedSync reported true %d of %d times after the second member took partition %d over", owned, n, moved)
				}
				if err := b.stop(t); err != nil {
					t.Error(err)
				}
				if err := a.stop(t); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

// A7, M3: a commit the coordinator refuses because it no longer knows the
// member (UNKNOWN_MEMBER_ID) drops the partition at once — Revoked turns
// true and marks are refused before any heartbeat notices — and the
// partition is consumed again afterwards from its committed offset, also
// when the client rejoins and keeps it without a new assignment.
func TestManualRefusedCommitLosesThePartitionAtOnce(t *testing.T) {
	for _, proto := range protocols() {
		t.Run(proto.name, func(t *testing.T) {
			c := embedded(t, fastHeartbeats())
			tp := topic(t, c, 1)
			produceN(t, c, tp, 0, 20)
			group := ferrytest.UniqueName("g")
			refuseCommitWith(c, group, 20, kerr.UnknownMemberID.Code)
			rec := newRecorder()
			var first atomic.Pointer[ferry.Claim]
			after := make(chan [3]bool, 1) // sync result, Revoked, MarkAsConsumed
			sc := scripted{consume: func(ctx context.Context, claim *ferry.Claim, b *ferry.Batch) error {
				rec.record(b)
				if !first.CompareAndSwap(nil, claim) && claim == first.Load() {
					return nil
				}
				if claim != first.Load() {
					_, err := claim.MarkAsConsumedSync(ctx, b.Last()) // the new instance commits for real
					return err
				}
				markWhere(t, claim, b, func(o int64) bool { return o < 10 })
				ok, _ := claim.MarkAsConsumedSync(ctx, b.Last()) // 20: refused
				after <- [3]bool{ok, claim.Revoked(), claim.MarkAsConsumed(b.Messages[0])}
				return nil
			}}
			app := start(t, opts(t, c, member(proto), ferry.CommitInterval(time.Hour),
				ferry.Route(group, tp, sc.factory(), ferry.ManualOffsets(), ferry.MaxMessages(20)))...)
			got := recv(t, after)
			if got[0] {
				t.Error("MarkAsConsumedSync = true for a commit refused with UNKNOWN_MEMBER_ID")
			}
			if !got[1] {
				t.Error("Revoked() = false right after the refused commit (A7)")
			}
			if got[2] {
				t.Error("MarkAsConsumed = true right after the refused commit (A7)")
			}
			produceN(t, c, tp, 0, 1)
			if err := ferrytest.WaitFor(ctxFor(t, 30*time.Second), func() bool { return rec.times(tp, 0, 0) >= 2 && rec.distinct(tp) == 21 }); err != nil {
				t.Fatalf("the partition was not consumed again from its committed offset after the refused commit: %v", rec.snapshot())
			}
			waitCommitted(t, c, group, tp, 0, 21)
			if err := app.stop(t); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// M3, A7 under KIP-848: a commit answered STALE_MEMBER_EPOCH — the member
// epoch in the request is not the coordinator's, which franz-go already
// retried with the newest epoch it knew — leaves ownership uncertain: the
// member may still own the partition at a newer epoch. MarkAsConsumedSync
// reports false with the error, so nothing is fenced on it; the partition
// is not dropped (the heartbeat, not the commit, says whether it was lost):
// marks still count, and the next sync mark commits and reports true.
func TestManualStaleMemberEpochIsNoProofOfOwnership(t *testing.T) {
	c := embedded(t, fastHeartbeats())
	s := newScenario(t, c, 1)
	s.produce(0, 20)
	refuseCommitWith(c, s.group, 20, kerr.StaleMemberEpoch.Code)
	type result struct {
		ok              bool
		err             error
		revoked, marked bool
		okAgain         bool
		errAgain        error
	}
	got := make(chan result, 1)
	sc := scripted{consume: func(ctx context.Context, claim *ferry.Claim, b *ferry.Batch) error {
		s.rec.record(b)
		var r result
		r.ok, r.err = claim.MarkAsConsumedSync(ctx, b.Last()) // 20: answered STALE_MEMBER_EPOCH
		r.revoked, r.marked = claim.Revoked(), claim.MarkAsConsumed(b.Last())
		r.okAgain, r.errAgain = claim.MarkAsConsumedSync(ctx, b.Last())
		select {
		case got <- r:
		default:
		}
		return nil
	}}
	app := s.start(member(protocols()[1]), ferry.CommitInterval(time.Hour),
		s.routeTo(sc.factory(), ferry.ManualOffsets(), ferry.MaxMessages(20)))
	r := recv(t, got)
	if r.ok || !errors.Is(r.err, kerr.StaleMemberEpoch) {
		t.Errorf("MarkAsConsumedSync answered STALE_MEMBER_EPOCH = %v, %v; want false and the error", r.ok, r.err)
	}
	if r.revoked || !r.marked {
		t.Errorf("after STALE_MEMBER_EPOCH: Revoked() = %v, MarkAsConsumed = %v; want the partition kept", r.revoked, r.marked)
	}
	if !r.okAgain || r.errAgain != nil {
		t.Errorf("the next MarkAsConsumedSync = %v, %v; want true", r.okAgain, r.errAgain)
	}
	s.waitCommittedAt(0, 20)
	s.stop(app)
	if n := s.rec.times(s.topic, 0, 0); n != 1 {
		t.Errorf("offset 0 consumed %d times, want once: the partition was not dropped", n)
	}
}

// M3, M9: the buffered consumer of Karafka's example flushes in its hooks
// with MarkAsConsumedSync: in the Revoked hook of a partition moving to
// another member, and in the Shutdown hook of the one it keeps (or, when an
// eager rebalance revoked that one too, in its Revoked hook). Each call
// reports true, and the group's committed offset is the mark when it
// returns; the new owner starts right after it.
func TestManualSyncMarkInHooksCommitsBeforeReturning(t *testing.T) {
	for _, proto := range append(protocols(), eagerProtocol()) {
		t.Run(proto.name, func(t *testing.T) {
			s := newScenario(t, cluster(t, fastHeartbeats()), 2)
			s.produceEach(2, 20)
			var mu sync.Mutex
			last := map[*ferry.Claim]*ferry.Message{} // what each consumer instance buffered
			flushed := map[int32][]string{}           // partition → "hook: ok err committed"
			flush := func(hook string) func(context.Context, *ferry.Claim) {
				return func(ctx context.Context, claim *ferry.Claim) {
					mu.Lock()
					m := last[claim]
					mu.Unlock()
					if m == nil {
						return // a later instance that consumed nothing
					}
					ok, err := claim.MarkAsConsumedSync(ctx, m)
					r := fmt.Sprintf("%s: %v %v %d", hook, ok, err, s.committed()[claim.Partition()])
					mu.Lock()
					flushed[claim.Partition()] = append(flushed[claim.Partition()], r)
					mu.Unlock()
				}
			}
			buffering := scripted{
				consume: func(_ context.Context, claim *ferry.Claim, b *ferry.Batch) error {
					s.rec.record(b)
					mu.Lock()
					last[claim] = b.Last()
					mu.Unlock()
					return nil
				},
				revoked:  flush("Revoked"),
				shutdown: flush("Shutdown"),
			}
			appA := s.start(member(proto), ferry.CommitInterval(time.Hour),
				s.routeTo(buffering.factory(), ferry.ManualOffsets()))
			s.waitSeen(40)
			recB := newRecorder()
			assignedB := make(chan int32, 2)
			b := scripted{
				initialized: func(claim *ferry.Claim) { assignedB <- claim.Partition() },
				consume:     func(_ context.Context, _ *ferry.Claim, b *ferry.Batch) error { recB.record(b); return nil },
			}
			appB := s.start(member(proto), s.routeTo(b.factory()))
			moved := recv(t, assignedB)
			s.produce(moved, 5)
			recB.waitDistinct(t, s.topic, 5, 30*time.Second)
			if first := recB.snapshot()[0]; first.partition != moved || first.offsets[0] != 20 {
				t.Errorf("new owner's first batch: partition %d from %d, want partition %d from 20",
					first.partition, first.offsets[0], moved)
			}
			s.stop(appB)
			s.stop(appA)
			mu.Lock()
			defer mu.Unlock()
			if got := flushed[moved]; len(got) != 1 || got[0] != "Revoked: true <nil> 20" {
				t.Errorf("partition %d, moved: flushes %q, want [\"Revoked: true <nil> 20\"] (true, committed when it returned)", moved, got)
			}
			kept := flushed[1-moved]
			if len(kept) != 1 || !strings.HasSuffix(kept[0], ": true <nil> 20") {
				t.Errorf("partition %d, kept: flushes %q, want one reporting true, committed when it returned", 1-moved, kept)
			}
		})
	}
}

// M2, A3: a goroutine of the consumer's that keeps marking, after Consume
// returned, while its partition moves to another member: every mark that
// returned true is in the revocation's commit — the new owner starts right
// after the last one — and marks return false once the partition is let go.
// (Run a few times: the marks race the revocation's last commit.)
func TestManualMarksFromAnotherGoroutineDuringRevocation(t *testing.T) {
	const n = 3000
	for _, proto := range append(protocols(), eagerProtocol()) {
		for run := range 3 {
			t.Run(fmt.Sprintf("%s/%d", proto.name, run), func(t *testing.T) {
				s := newScenario(t, cluster(t, fastHeartbeats()), 2)
				s.produceEach(2, n)
				var mu sync.Mutex
				claims := map[int32]*ferry.Claim{}
				delivered := map[int32]map[int64]*ferry.Message{0: {}, 1: {}}
				sc := scripted{consume: func(_ context.Context, c *ferry.Claim, b *ferry.Batch) error {
					mu.Lock()
					defer mu.Unlock()
					claims[b.Partition] = c
					for _, m := range b.Messages {
						delivered[b.Partition][m.Offset] = m
					}
					return nil // the marking happens elsewhere
				}}
				a := s.start(member(proto), ferry.CommitInterval(time.Hour), s.routeTo(sc.factory(), ferry.ManualOffsets()))
				s.waitUntil("delivered every message", func() bool {
					mu.Lock()
					defer mu.Unlock()
					return len(delivered[0]) == n && len(delivered[1]) == n
				})
				var lastTrue [2]atomic.Int64
				stopped := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
				for p := range int32(2) {
					lastTrue[p].Store(-1)
					mu.Lock()
					claim, msgs := claims[p], maps.Clone(delivered[p])
					mu.Unlock()
					go func() {
						defer close(stopped[p])
						for o := int64(0); o < n; o++ { // for a few seconds, past the rebalance
							if !claim.MarkAsConsumed(msgs[o]) {
								return
							}
							lastTrue[p].Store(o)
							time.Sleep(time.Millisecond)
						}
					}()
				}
				assigned := make(chan int32, 2)
				recB := newRecorder()
				b := scripted{
					initialized: func(c *ferry.Claim) { assigned <- c.Partition() },
					consume:     func(_ context.Context, _ *ferry.Claim, b *ferry.Batch) error { recB.record(b); return nil },
				}
				appB := s.start(member(proto), s.routeTo(b.factory()))
				moved := recv(t, assigned)
				s.waitClosed("stopped marking the moved partition", stopped[moved])
				last := lastTrue[moved].Load()
				if last == n-1 {
					t.Skip("the goroutine marked everything before the revocation")
				}
				s.waitUntil("the new owner consumed", func() bool { return recB.distinct(s.topic) > 0 })
				if first := recB.snapshot()[0]; first.partition != moved || first.offsets[0] != last+1 {
					t.Errorf("the new owner of partition %d started at %d; the last mark that returned true before the revocation was of offset %d (want %d)",
						moved, first.offsets[0], last, last+1)
				}
				s.stop(appB)
				s.stop(a)
				s.waitClosed("stopped marking", stopped[1-moved])
			})
		}
	}
}
