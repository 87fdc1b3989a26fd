package ferry_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produceTransactions writes, to a one-partition topic, an aborted
// transaction, a committed one, another aborted one, another committed one
// and a last non-transactional record "plain". It returns the values a
// read_committed consumer must see, in order.
func produceTransactions(t *testing.T, c *ferrytest.Cluster, tp string) []string {
	t.Helper()
	txn, err := kgo.NewClient(
		kgo.SeedBrokers(c.Brokers()...),
		kgo.TransactionalID(ferrytest.UniqueName("txn")),
		kgo.DefaultProduceTopic(tp),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	ctx := ctxFor(t, 30*time.Second)
	transaction := func(prefix string, n int, end kgo.TransactionEndTry) {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := txn.ProduceSync(ctx, kgo.StringRecord(fmt.Sprintf("%s-%d", prefix, i))).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := txn.EndTransaction(ctx, end); err != nil {
			t.Fatalf("ending transaction %s: %v", prefix, err)
		}
	}
	transaction("aborted1", 3, kgo.TryAbort)
	transaction("committed1", 2, kgo.TryCommit)
	transaction("aborted2", 2, kgo.TryAbort)
	transaction("committed2", 1, kgo.TryCommit)
	if err := c.Produce(ctx, tp, kgo.StringRecord("plain")); err != nil {
		t.Fatal(err)
	}
	return []string{"committed1-0", "committed1-1", "committed2-0", "plain"}
}

// valuesUntilPlain waits until the record "plain", last in the partition, was
// delivered — by then every aborted record before it had its chance — and
// returns the delivered values in order.
func valuesUntilPlain(t *testing.T, m *messages) []string {
	t.Helper()
	values := func() []string {
		m.mu.Lock()
		defer m.mu.Unlock()
		var out []string
		for _, msg := range m.msgs {
			out = append(out, string(msg.Value))
		}
		return out
	}
	if err := ferrytest.WaitFor(ctxFor(t, 20*time.Second), func() bool {
		return slices.Contains(values(), "plain")
	}); err != nil {
		t.Fatalf("the last record was not delivered; delivered %q", values())
	}
	return values()
}

// B8: ferry reads committed: records of aborted transactions are never
// delivered; records of committed ones and non-transactional records are.
func TestAbortedTransactionsAreNotDelivered(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	want := produceTransactions(t, s.c, s.topic)

	m := s.messages()
	s.start(s.route(m.fn()))
	if got := valuesUntilPlain(t, m); !slices.Equal(got, want) {
		t.Fatalf("delivered %q, want %q (committed and plain records only, in order)", got, want)
	}
}

// B8 and the ClientOptions contract (options.go: "Options that would break
// ferry's contract — autocommit, the isolation level, the partition
// callbacks — are overridden by ferry"): a user's kgo option cannot turn
// read_committed off.
func TestClientOptionsCannotReadUncommitted(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	want := produceTransactions(t, s.c, s.topic)

	m := s.messages()
	s.start(ferry.ClientOptions(kgo.FetchIsolationLevel(kgo.ReadUncommitted())), s.route(m.fn()))
	if got := valuesUntilPlain(t, m); !slices.Equal(got, want) {
		t.Fatalf("delivered %q, want %q: ClientOptions overrode ferry's read_committed", got, want)
	}
}
