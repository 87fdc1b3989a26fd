package ferry_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// copier produces one output per input through the batch's transaction:
// key = "partition/offset" of the input.
func copier(out string, before func(ctx context.Context, b *ferry.Batch, i int) error) ferry.ConsumerFunc {
	return func(ctx context.Context, b *ferry.Batch) error {
		for i, m := range b.Messages {
			if before != nil {
				if err := before(ctx, b, i); err != nil {
					return err
				}
			}
			key := fmt.Sprintf("%d/%d", m.Partition, m.Offset)
			if err := b.Produce(ctx, &kgo.Record{Topic: out, Key: []byte(key), Value: m.Value}); err != nil {
				return err
			}
		}
		return nil
	}
}

// waitOutputs waits until the read_committed view of topic holds n keys.
func waitOutputs(t *testing.T, c *ferrytest.Cluster, topic string, n int) map[string]int {
	t.Helper()
	cl := outputReader(t, c, topic, kgo.ReadCommitted())
	defer cl.Close()
	got := map[string]int{}
	deadline := time.Now().Add(60 * time.Second)
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d distinct outputs committed, want %d", len(got), n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got[string(r.Key)]++ })
		cancel()
	}
	return got
}

func outputReader(t *testing.T, c *ferrytest.Cluster, topic string, isolation kgo.IsolationLevel) *kgo.Client {
	t.Helper()
	cl, err := c.NewClient(kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(isolation))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// readOutputs reads everything in topic visible at the isolation level: how
// many times each key appears, and how many records there are.
func readOutputs(t *testing.T, c *ferrytest.Cluster, topic string, isolation kgo.IsolationLevel) (map[string]int, int) {
	t.Helper()
	cl := outputReader(t, c, topic, isolation)
	defer cl.Close()
	got, total := map[string]int{}, 0
	for wait := 10 * time.Second; ; wait = time.Second {
		// The first poll also finds the leader and the start offsets,
		// which takes a while on a loaded machine; after it, an empty
		// second means the end was reached.
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) { got[string(r.Key)]++; n++ })
		if n == 0 {
			return got, total
		}
		total += n
	}
}

// committedOutputs reads everything committed in topic so far.
func committedOutputs(t *testing.T, c *ferrytest.Cluster, topic string) map[string]int {
	t.Helper()
	got, _ := readOutputs(t, c, topic, kgo.ReadCommitted())
	return got
}

func eosOpts(t *testing.T, c *ferrytest.Cluster, more ...ferry.Option) []ferry.Option {
	return append(opts(t, c, ferry.TransactionalID(ferrytest.UniqueName("txn"))), more...)
}

func checkExactlyOnce(t *testing.T, got map[string]int, partitions int32, perPartition int) {
	t.Helper()
	for p := range partitions {
		for o := range perPartition {
			if n := got[fmt.Sprintf("%d/%d", p, o)]; n != 1 {
				t.Errorf("input %d/%d has %d committed outputs, want exactly 1", p, o, n)
			}
		}
	}
	if len(got) != int(partitions)*perPartition {
		t.Errorf("%d distinct outputs, want %d", len(got), int(partitions)*perPartition)
	}
}

// checkOutputsPerInput checks how many committed outputs each input 0/0 …
// 0/n-1 of a one-partition input topic has: want(offset).
func checkOutputsPerInput(t *testing.T, got map[string]int, n int, want func(offset int) int) {
	t.Helper()
	for o := range n {
		if c := got["0/"+strconv.Itoa(o)]; c != want(o) {
			t.Errorf("input 0/%d has %d outputs, want %d", o, c, want(o))
		}
	}
}

// checkPoisonDeadLettered checks a one-partition input of ten messages
// whose fifth (value "4") is poison: that message alone was dead-lettered
// and has no output, and every other input has exactly one.
func checkPoisonDeadLettered(t *testing.T, outputs map[string]int, dead []*kgo.Record) {
	t.Helper()
	checkOutputsPerInput(t, outputs, 10, func(o int) int {
		if o == 4 {
			return 0
		}
		return 1
	})
	if len(dead) != 1 || string(dead[0].Value) != "4" {
		t.Errorf("dead letters %v, want [4]", values(dead))
	}
}

// S3, B8: consume–transform–produce in transactions: each input yields
// exactly one committed output, and the input offsets are committed with
// them.
func TestExactlyOnceCopies(t *testing.T) {
	s := newScenario(t, cluster(t), 2) // its topic is the input
	out := topic(t, s.c, 2)
	s.produceEach(2, 150)
	app := s.startTransactional(s.route(copier(out, nil), ferry.WithDelivery(ferry.ExactlyOnce), ferry.MaxMessages(40)))
	waitOutputs(t, s.c, out, 300)
	s.stop(app)
	checkExactlyOnce(t, committedOutputs(t, s.c, out), 2, 150)
	s.wantCommitted(map[int32]int64{0: 150, 1: 150}) // the input offsets, with the outputs
}

// S3, A5: a consumer that produced half its outputs and then fails aborts
// its transaction: no partial output is visible to read_committed readers,
// and after the retry each input has exactly one output.
func TestExactlyOnceAbortHidesPartialOutput(t *testing.T) {
	s := newScenario(t, cluster(t), 1) // its topic is the input
	out := topic(t, s.c, 1)
	s.produce(0, 20)
	var failed atomic.Bool
	// the attempt fails once its 5 outputs are on the broker, uncommitted
	before := failOnceAfterFive(&failed, func() error {
		err := waitUncommitted(s.c, out, 5)
		if err != nil {
			t.Error(err)
		}
		return err
	})
	app := s.startTransactional(s.route(copier(out, before),
		ferry.WithDelivery(ferry.ExactlyOnce), ferry.MaxMessages(10), ferry.Retry(ferry.ConstantBackoff(200*time.Millisecond))))
	waitOutputs(t, s.c, out, 20)
	s.stop(app)
	if !failed.Load() {
		t.Fatal("the failure never happened")
	}
	checkExactlyOnce(t, committedOutputs(t, s.c, out), 1, 20)
	// The aborted attempt did write: read_uncommitted sees its 5 outputs.
	if dirty := uncommittedCount(t, s.c, out); dirty < 25 {
		t.Errorf("read_uncommitted sees %d records, want the 20 committed plus the 5 aborted", dirty)
	}
}

// failOnceAfterFive makes copier fail the batch starting at offset 0 once,
// after its first five outputs, and after settled returns when it is not nil.
func failOnceAfterFive(failed *atomic.Bool, settled func() error) func(context.Context, *ferry.Batch, int) error {
	return func(_ context.Context, b *ferry.Batch, i int) error {
		if i == 5 && b.Messages[0].Offset == 0 && failed.CompareAndSwap(false, true) {
			if settled != nil {
				if err := settled(); err != nil {
					return err
				}
			}
			return errors.New("fails after producing 5 outputs")
		}
		return nil
	}
}

// waitUncommitted waits, up to a minute, until read_uncommitted readers see
// at least n records in topic: what a transaction still open has written.
func waitUncommitted(c *ferrytest.Cluster, topic string, n int) error {
	cl, err := c.NewClient(kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()
	seen := 0
	for deadline := time.Now().Add(time.Minute); seen < n; {
		if time.Now().After(deadline) {
			return fmt.Errorf("read_uncommitted sees %d records in %s after a minute, want %d", seen, topic, n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		seen += cl.PollFetches(ctx).NumRecords()
		cancel()
	}
	return nil
}

func uncommittedCount(t *testing.T, c *ferrytest.Cluster, topic string) int {
	t.Helper()
	_, n := readOutputs(t, c, topic, kgo.ReadUncommitted())
	return n
}

// S3, A3: a second member joins mid-stream; across both, every input has
// exactly one committed output.
func TestExactlyOnceHandOff(t *testing.T) {
	for _, proto := range protocols() {
		t.Run(proto.name, func(t *testing.T) {
			s := newScenario(t, cluster(t), 4) // its topic is the input
			out := topic(t, s.c, 4)
			const per = 400
			if err := produceSlowly(s.c, s.topic, 4, 0, per/2, time.Second); err != nil {
				t.Fatal(err)
			}
			slow := func(context.Context, *ferry.Batch, int) error { time.Sleep(200 * time.Microsecond); return nil }
			route := s.route(copier(out, slow), ferry.WithDelivery(ferry.ExactlyOnce), ferry.MaxMessages(20))
			a := s.startTransactional(route, ferry.ClientOptions(proto.opts...))
			waitOutputs(t, s.c, out, 300)
			b := s.startTransactional(route, ferry.ClientOptions(proto.opts...))
			if err := produceSlowly(s.c, s.topic, 4, per/2, per, 2*time.Second); err != nil {
				t.Fatal(err)
			}
			waitOutputs(t, s.c, out, 4*per)
			s.stop(b)
			s.stop(a)
			checkExactlyOnce(t, committedOutputs(t, s.c, out), 4, per)
		})
	}
}

// E1 under S3: a poison message is dead-lettered inside the transaction and
// the rest of its batch still yields exactly one output each.
func TestExactlyOnceDeadLetter(t *testing.T) {
	s := newScenario(t, cluster(t), 1) // its topic is the input
	out, dlq := topic(t, s.c, 1), topic(t, s.c, 1)
	s.produce(0, 10)
	before := func(_ context.Context, b *ferry.Batch, i int) error {
		if m := b.Messages[i]; string(m.Value) == "4" {
			return ferry.FailedAt(m, errors.New("poison"))
		}
		return nil
	}
	app := s.startTransactional(s.route(copier(out, before), ferry.WithDelivery(ferry.ExactlyOnce), ferry.DeadLetter(dlq),
		ferry.MaxRetries(1), ferry.Retry(ferry.ConstantBackoff(50*time.Millisecond))))
	waitOutputs(t, s.c, out, 9)
	dead := readAll(t, s.c, dlq, 1)
	s.stop(app)
	checkPoisonDeadLettered(t, committedOutputs(t, s.c, out), dead)
}

// E1, M7, M10 under S3: a consumer that produces and marks message by
// message (Karafka's transaction { produce; mark_as_consumed }) and then
// fails without naming the message is blamed on its first unmarked message:
// after MaxRetries that message — not the first of the batch — is
// dead-lettered inside the transaction, and every other input has exactly
// one committed output. With automatic offsets too (marks inside Consume
// count, M10).
func TestExactlyOnceMarksInConsumeNameTheFailedMessage(t *testing.T) {
	for _, manual := range []bool{true, false} {
		t.Run(map[bool]string{true: "manual", false: "automatic"}[manual], func(t *testing.T) {
			s := newScenario(t, cluster(t), 1) // its topic is the input
			out, dlq := topic(t, s.c, 1), topic(t, s.c, 1)
			s.produce(0, 10)
			fn := func(ctx context.Context, b *ferry.Batch) error {
				for _, m := range b.Messages {
					if string(m.Value) == "4" {
						return errors.New("poison")
					}
					key := fmt.Sprintf("%d/%d", m.Partition, m.Offset)
					if err := b.Produce(ctx, &kgo.Record{Topic: out, Key: []byte(key), Value: m.Value}); err != nil {
						return err
					}
					if !b.Claim().MarkAsConsumed(m) {
						return fmt.Errorf("mark of %d refused", m.Offset)
					}
				}
				return nil
			}
			topicOpts := []ferry.TopicOption{ferry.WithDelivery(ferry.ExactlyOnce), ferry.DeadLetter(dlq),
				ferry.MaxRetries(1), ferry.Retry(ferry.ConstantBackoff(50 * time.Millisecond))}
			if manual {
				topicOpts = append(topicOpts, ferry.ManualOffsets())
			}
			app := s.startTransactional(s.route(fn, topicOpts...))
			dead := readAll(t, s.c, dlq, 1)
			waitOutputs(t, s.c, out, 9)
			s.waitCommittedAt(0, 10)
			s.stop(app)
			checkPoisonDeadLettered(t, committedOutputs(t, s.c, out), dead)
		})
	}
}
