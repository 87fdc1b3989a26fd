package ferry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// S3, M1, M8 under exactly-once: with manual offsets the transaction commits
// the consumer's marks (Karafka's transaction { produce; mark_as_consumed }),
// not everything delivered. The consumer here defers the message at offset 5
// of every ten on first sight: it produces and marks nothing from there on
// in that round, so only the messages before it commit; the deferred ones
// come again and yield exactly one output each.
func TestExactlyOnceManualMarksJoinTheTransaction(t *testing.T) {
	c := cluster(t)
	in, out := topic(t, c, 1), topic(t, c, 1)
	const n = 30
	produceN(t, c, in, 0, n)
	var mu sync.Mutex
	seen := map[int64]int{}
	next := int64(0)
	syncWrong := ""
	consume := func(ctx context.Context, b *ferry.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		if ok, err := b.Claim().MarkAsConsumedSync(ctx, b.Last()); ok || !errors.Is(err, ferry.ErrTransactional) {
			syncWrong = fmt.Sprintf("MarkAsConsumedSync in a transaction = %v, %v; want false, ErrTransactional", ok, err)
		}
		for _, m := range b.Messages {
			seen[m.Offset]++
			if m.Offset != next {
				continue // past a deferred message: it all comes again
			}
			if m.Offset%10 == 5 && seen[m.Offset] == 1 {
				continue // deferred: not produced, not marked
			}
			key := fmt.Sprintf("%d/%d", m.Partition, m.Offset)
			if err := b.Produce(ctx, &kgo.Record{Topic: out, Key: []byte(key), Value: m.Value}); err != nil {
				return err
			}
			if !b.Claim().MarkWithMetadata(m, fmt.Sprintf("after-%d", m.Offset)) {
				return fmt.Errorf("mark of %d refused", m.Offset)
			}
			next = m.Offset + 1
		}
		return nil
	}
	group := ferrytest.UniqueName("g")
	app := start(t, eosOpts(t, c, ferry.RouteFunc(group, in, consume,
		ferry.WithDelivery(ferry.ExactlyOnce), ferry.ManualOffsets(), ferry.MaxMessages(10)))...)
	waitOutputs(t, c, out, n)
	if err := app.stop(t); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, committedOutputs(t, c, out), 1, n)
	mu.Lock()
	defer mu.Unlock()
	if syncWrong != "" {
		t.Error(syncWrong)
	}
	for _, o := range []int64{5, 15, 25} {
		if seen[o] < 2 {
			t.Errorf("deferred message %d delivered %d times, want it again after the commit", o, seen[o])
		}
	}
	ctx := ctxFor(t, 10*time.Second)
	committed, err := c.Committed(ctx, group, in)
	if err != nil {
		t.Fatal(err)
	}
	if committed[0] != n {
		t.Errorf("committed %d, want %d", committed[0], n)
	}
	md, err := c.CommittedMetadata(ctx, group, in, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("after-%d", n-1); md != want {
		t.Errorf("committed metadata %q, want %q (M8)", md, want)
	}
}

// S3, M2, A3: a consumer that marks after its partition was revoked gets
// false, and the transaction it meant to join aborts: nothing of it is
// visible, and across both members every input has exactly one output.
// The members balance eagerly, so the second one joining revokes every
// partition of the first, whichever it holds.
func TestExactlyOnceMarkAfterRevocationAborts(t *testing.T) {
	c := cluster(t)
	in, out := topic(t, c, 2), topic(t, c, 2)
	const per = 50
	produceN(t, c, in, 0, per)
	produceN(t, c, in, 1, per)
	group := ferrytest.UniqueName("g")
	var held, refused, accepted atomic.Int32
	var once sync.Once
	consume := func(ctx context.Context, b *ferry.Batch) error {
		for _, m := range b.Messages {
			key := fmt.Sprintf("%d/%d", m.Partition, m.Offset)
			if err := b.Produce(ctx, &kgo.Record{Topic: out, Partition: m.Partition, Key: []byte(key), Value: m.Value}); err != nil {
				return err
			}
		}
		hold := false
		once.Do(func() { hold = true })
		if hold {
			// The first batch waits, its outputs produced, until its
			// partition is revoked.
			held.Add(1)
			deadline := time.Now().Add(30 * time.Second)
			for !b.Claim().Revoked() && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if b.Claim().MarkAsConsumed(b.Last()) {
				accepted.Add(1)
			} else {
				refused.Add(1)
			}
			return nil
		}
		b.Claim().MarkAsConsumed(b.Last())
		return nil
	}
	member := func(name string) []ferry.Option {
		return opts(t, c, ferry.TransactionalID(ferrytest.UniqueName(name)),
			ferry.ClientOptions(kgo.Balancers(kgo.RoundRobinBalancer())), // eager
			ferry.RouteFunc(group, in, consume, ferry.WithDelivery(ferry.ExactlyOnce), ferry.ManualOffsets(), ferry.MaxMessages(per)))
	}
	a := start(t, member("a")...)
	if err := ferrytest.WaitFor(ctxFor(t, 30*time.Second), func() bool { return held.Load() > 0 }); err != nil {
		t.Fatal("member a never got a batch")
	}
	b := start(t, member("b")...)
	waitOutputs(t, c, out, 2*per)
	if err := b.stop(t); err != nil {
		t.Error(err)
	}
	if err := a.stop(t); err != nil {
		t.Error(err)
	}
	if refused.Load() != 1 || accepted.Load() != 0 {
		t.Errorf("the held batch's mark after revocation: refused %d, accepted %d; want refused once", refused.Load(), accepted.Load())
	}
	checkExactlyOnce(t, committedOutputs(t, c, out), 2, per)
}

// S3: TransactionInterval keeps a transaction open across polls: messages
// trickling in over about 2 s, in batches of 5, commit in a few
// transactions, not one per batch, and still exactly once.
func TestExactlyOnceTransactionInterval(t *testing.T) {
	c := cluster(t)
	in, out := topic(t, c, 1), topic(t, c, 1)
	const n = 60
	var batches, txns atomic.Int32
	count := func(ctx context.Context, b *ferry.Batch, i int) error {
		if i == 0 {
			batches.Add(1)
		}
		return nil
	}
	onCommit := ferry.OnCommit(func(cm ferry.Commit) {
		if cm.Reason == "transaction" {
			txns.Add(1)
		}
	})
	app := start(t, eosOpts(t, c, onCommit, ferry.RouteFunc(ferrytest.UniqueName("g"), in, copier(out, count),
		ferry.WithDelivery(ferry.ExactlyOnce), ferry.MaxMessages(5), ferry.MaxWait(20*time.Millisecond),
		ferry.TransactionInterval(time.Second)))...)
	if err := produceSlowly(c, in, 1, 0, n, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	waitOutputs(t, c, out, n)
	if err := app.stop(t); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, committedOutputs(t, c, out), 1, n)
	// About 2 s of input spans 2-3 one-second transactions (one more if a
	// poll straddles a boundary); without the interval each poll — a few
	// messages here — would be its own.
	if b, x := batches.Load(), txns.Load(); x > 5 || b < 2*x {
		t.Errorf("%d batches in %d transactions, want several batches per transaction and at most 5 transactions", b, x)
	}
}
