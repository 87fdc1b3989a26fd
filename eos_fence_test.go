package ferry_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// abandonTransaction plays an exactly-once member that dies between its
// transactional offset commit and the end of its transaction: it adds the
// group's offsets to a transaction, commits offset at on partition 0 of
// topic in it, and is gone without ending it. The transaction stays open
// until the broker times it out (timeout) or a producer with the same
// transactional id fences it.
func abandonTransaction(t *testing.T, c *ferrytest.Cluster, txnID, group, topic string, at int64, timeout time.Duration) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers()...), kgo.TransactionalID(txnID), kgo.TransactionTimeout(timeout))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close() // ends nothing: kgo knows of no transaction it began
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = txnID, id, epoch, group
	addResp, err := add.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(addResp.ErrorCode)
	}
	if err != nil {
		t.Fatalf("AddOffsetsToTxn: %v", err)
	}
	commit := kmsg.NewPtrTxnOffsetCommitRequest()
	commit.TransactionalID, commit.Group, commit.ProducerID, commit.ProducerEpoch = txnID, group, id, epoch
	commit.Generation, commit.MemberID = -1, ""
	topics, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	ct := kmsg.NewTxnOffsetCommitRequestTopic()
	ct.Topic, ct.TopicID = topic, topics[topic].ID // by name or by id, whichever version is spoken
	cp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	cp.Partition, cp.Offset, cp.LeaderEpoch = 0, at, -1
	ct.Partitions = append(ct.Partitions, cp)
	commit.Topics = append(commit.Topics, ct)
	commitResp, err := commit.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("TxnOffsetCommit: %v", err)
	}
	for _, rt := range commitResp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("TxnOffsetCommit %s/%d: %v", rt.Topic, rp.Partition, err)
			}
		}
	}
}

// S3: an exactly-once member replacing one that died between its
// transactional offset commit and the end of its transaction fences the dead
// producer before fetching its offsets. Its first batch comes at once, not
// after the dead transaction's timeout (a minute here), and starts where the
// last committed transaction left off: the abandoned offset commit is
// aborted with its transaction.
func TestExactlyOnceSuccessorFencesCrashedPredecessor(t *testing.T) {
	for _, proto := range protocols() {
		t.Run(proto.name, func(t *testing.T) {
			c := cluster(t)
			in, out := topic(t, c, 1), topic(t, c, 1)
			produceN(t, c, in, 0, 100)
			group, id := ferrytest.UniqueName("g"), ferrytest.UniqueName("txn")
			// ferry's transactional id is the instance's id and the group's name.
			abandonTransaction(t, c, id+"-"+group, group, in, 60, time.Minute)

			first := make(chan int64, 1)
			route := ferry.RouteFunc(group, in, func(ctx context.Context, b *ferry.Batch) error {
				select {
				case first <- b.Messages[0].Offset:
				default:
				}
				return copier(out, nil)(ctx, b)
			}, ferry.WithDelivery(ferry.ExactlyOnce))
			began := time.Now()
			start(t, append(opts(t, c, ferry.TransactionalID(id), route), ferry.ClientOptions(proto.opts...))...)
			select {
			case offset := <-first:
				took := time.Since(began)
				t.Logf("first batch %s after start", took.Round(time.Millisecond))
				// Waiting for the dead transaction would take most of
				// its minute; fencing it takes a round trip, a few
				// seconds at most on a loaded machine.
				if took > 20*time.Second {
					t.Errorf("first batch %s after start, want well within the dead transaction's minute: it was not fenced", took.Round(time.Millisecond))
				}
				if offset != 0 {
					t.Errorf("first batch starts at offset %d, want 0: the abandoned transaction's offsets were applied", offset)
				}
			case <-time.After(50 * time.Second):
				t.Fatal("no batch within 50s: the successor waits for the crashed member's transaction to time out")
			}
			checkExactlyOnce(t, waitOutputs(t, c, out, 100), 1, 100)
		})
	}
}

// S3: a transaction that outlives the transaction timeout (its consumer is
// slower than that) is aborted by the broker; ferry retries it like any
// aborted round instead of stopping the group, and every input still has
// exactly one committed output.
func TestExactlyOnceTransactionTimedOutByBrokerIsRetried(t *testing.T) {
	c := cluster(t)
	if !c.External() {
		// Kafka answers the timed-out transaction's offset commit
		// INVALID_PRODUCER_EPOCH and its abort succeeds; kfake answers
		// PRODUCER_FENCED, which means another instance took over.
		t.Skip("the embedded cluster reports a timed-out transaction as fenced by another instance")
	}
	in, out := topic(t, c, 1), topic(t, c, 1)
	produceN(t, c, in, 0, 20)
	group := ferrytest.UniqueName("g")
	const timeout = 2 * time.Second
	var calls atomic.Int32
	slowFirst := func(ctx context.Context, b *ferry.Batch) error {
		err := copier(out, nil)(ctx, b) // the transaction's clock starts at its first produce
		if calls.Add(1) == 1 {
			// The broker looks for timed-out transactions every 10 s
			// (kfake at once).
			time.Sleep(timeout + 12*time.Second)
		}
		return err
	}
	route := ferry.RouteFunc(group, in, slowFirst, ferry.WithDelivery(ferry.ExactlyOnce))
	log, _ := testLogger(t)
	r := start(t, append(opts(t, c, ferry.TransactionalID(ferrytest.UniqueName("txn")), route, ferry.Logger(log)),
		ferry.ClientOptions(kgo.TransactionTimeout(timeout)))...)
	got := waitOutputs(t, c, out, 20)
	if err := r.stop(t); err != nil {
		t.Errorf("Run: %v, want the timed-out transaction retried", err)
	}
	if calls.Load() < 2 {
		t.Errorf("%d consume calls, want the timed-out batch retried", calls.Load())
	}
	checkExactlyOnce(t, got, 1, 20)
}

// S3: a member fenced by another instance with the same transactional id
// stops with an error instead of retrying: its next transaction would
// fence the other one back.
func TestExactlyOnceMemberFencedByAnotherInstanceStops(t *testing.T) {
	c := cluster(t)
	in, out := topic(t, c, 1), topic(t, c, 1)
	produceN(t, c, in, 0, 20)
	group, id := ferrytest.UniqueName("g"), ferrytest.UniqueName("txn")
	fence, fenced := make(chan struct{}), make(chan struct{})
	var once sync.Once
	route := ferry.RouteFunc(group, in, func(ctx context.Context, b *ferry.Batch) error {
		err := copier(out, nil)(ctx, b)
		once.Do(func() { close(fence); <-fenced }) // the transaction is open meanwhile
		return err
	}, ferry.WithDelivery(ferry.ExactlyOnce))
	r := start(t, opts(t, c, ferry.TransactionalID(id), route)...)
	<-fence
	other, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers()...), kgo.TransactionalID(id+"-"+group))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	_, _, err = other.ProducerID(ctxFor(t, 30*time.Second))
	close(fenced)
	if err != nil {
		t.Fatal(err)
	}
	returned, err := r.Returned(30 * time.Second)
	if !returned {
		t.Fatal("the fenced member did not stop")
	}
	if !errors.Is(err, kerr.ProducerFenced) {
		t.Errorf("Run: %v, want PRODUCER_FENCED", err)
	}
}

// S3: a successor that cannot fence the crashed member (its transactional id
// changed, say a pod name that is not stable) waits until the broker times
// the dead transaction out: the transaction timeout bounds the stall. The
// test uses a short timeout; FERRY_STALL_TIMEOUT measures another (the
// figures in docs/SEMANTICS.md).
func TestExactlyOnceStallWithChangedTransactionalID(t *testing.T) {
	timeout := 3 * time.Second
	if v := os.Getenv("FERRY_STALL_TIMEOUT"); v != "" {
		var err error
		if timeout, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	c := cluster(t)
	in, out := topic(t, c, 1), topic(t, c, 1)
	produceN(t, c, in, 0, 10)
	group := ferrytest.UniqueName("g")
	abandonTransaction(t, c, ferrytest.UniqueName("gone")+"-"+group, group, in, 5, timeout)
	abandoned := time.Now()

	first := make(chan time.Time, 1)
	route := ferry.RouteFunc(group, in, func(ctx context.Context, b *ferry.Batch) error {
		select {
		case first <- time.Now():
		default:
		}
		return copier(out, nil)(ctx, b)
	}, ferry.WithDelivery(ferry.ExactlyOnce))
	start(t, opts(t, c, ferry.TransactionalID(ferrytest.UniqueName("new")), route)...)
	// Kafka looks for timed-out transactions every 10 s; kfake times
	// each out on its own timer.
	limit := timeout + 10*time.Second + 5*time.Second
	select {
	case at := <-first:
		stall := at.Sub(abandoned)
		t.Logf("transaction timeout %s: first batch %s after the member died", timeout, stall.Round(100*time.Millisecond))
		if stall < timeout {
			t.Errorf("first batch %s after the member died, before its transaction could time out (%s)", stall, timeout)
		}
	case <-time.After(limit):
		t.Fatalf("no batch within %s of the member's death: the stall is not bounded by the transaction timeout", limit)
	}
	checkExactlyOnce(t, waitOutputs(t, c, out, 10), 1, 10)
}
