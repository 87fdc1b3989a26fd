package ferry_test

import (
	"context"
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
				if took > 2*time.Second {
					t.Errorf("first batch %s after start, want within 2s: the crashed member's transaction was not fenced", took.Round(time.Millisecond))
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
