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
	"github.com/twmb/franz-go/pkg/kgo"
)

// S3, M1, M8 under exactly-once: with manual offsets a transaction commits
// the consumer's marks (Karafka's transaction { produce; mark_as_consumed }),
// not everything delivered. The consumer here produces an output for every
// message but marks only those before offset 25: the committed offset stops
// there, with its metadata, and the next member of the group starts there.
func TestExactlyOnceManualMarksJoinTheTransaction(t *testing.T) {
	const n, marked = 30, 25
	s := newScenario(t, cluster(t), 1) // its topic is the input
	out := topic(t, s.c, 1)
	s.produce(0, n)
	var mu sync.Mutex
	syncWrong := ""
	var delivered []int64
	consume := func(markBelow int64) ferry.ConsumerFunc {
		return func(ctx context.Context, b *ferry.Batch) error {
			if ok, err := b.Claim().MarkAsConsumedSync(ctx, b.Last()); ok || !errors.Is(err, ferry.ErrTransactional) {
				mu.Lock()
				syncWrong = fmt.Sprintf("MarkAsConsumedSync in a transaction = %v, %v; want false, ErrTransactional", ok, err)
				mu.Unlock()
			}
			if err := copier(out, nil)(ctx, b); err != nil {
				return err
			}
			for _, m := range b.Messages {
				mu.Lock()
				delivered = append(delivered, m.Offset)
				mu.Unlock()
				if m.Offset < markBelow && !b.Claim().MarkWithMetadata(m, fmt.Sprintf("after-%d", m.Offset)) {
					return fmt.Errorf("mark of %d refused", m.Offset)
				}
			}
			return nil
		}
	}
	route := func(markBelow int64) ferry.Option {
		return s.route(consume(markBelow), ferry.WithDelivery(ferry.ExactlyOnce), ferry.ManualOffsets(), ferry.MaxMessages(10))
	}
	first := s.startTransactional(route(marked))
	waitOutputs(t, s.c, out, n)
	s.stop(first)
	if committed := s.committed(); committed[0] != marked {
		t.Errorf("committed %d, want %d: the last mark, not the last message delivered", committed[0], marked)
	}
	md, err := s.c.CommittedMetadata(ctxFor(t, 10*time.Second), s.group, s.topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("after-%d", marked-1); md != want {
		t.Errorf("committed metadata %q, want %q (M8)", md, want)
	}

	// The next member resumes at the mark: the unmarked messages come
	// again (their outputs were committed, so they appear twice).
	mu.Lock()
	delivered = nil
	mu.Unlock()
	second := s.startTransactional(route(n))
	s.waitCommittedAt(0, n) // by the second member
	s.stop(second)
	mu.Lock()
	defer mu.Unlock()
	if syncWrong != "" {
		t.Error(syncWrong)
	}
	if len(delivered) == 0 || delivered[0] != marked {
		t.Errorf("the second member's deliveries %v, want them to start at %d", delivered, marked)
	}
	checkOutputsPerInput(t, committedOutputs(t, s.c, out), n, func(o int) int {
		if o >= marked {
			return 2 // once from each member
		}
		return 1
	})
}

// S3, M7: with manual offsets, a failed transaction retries right after the
// partition's last committed mark — not where the failed transaction began —
// so messages an earlier transaction delivered but the consumer never marked
// come again.
func TestExactlyOnceManualRetryResumesAfterLastMark(t *testing.T) {
	s := newScenario(t, cluster(t), 1) // its topic is the input
	out := topic(t, s.c, 1)
	s.produce(0, 10)
	var mu sync.Mutex
	type batch struct {
		first   int64
		attempt int
	}
	var batches []batch
	var failed atomic.Bool
	consume := func(ctx context.Context, b *ferry.Batch) error {
		mu.Lock()
		batches = append(batches, batch{b.Messages[0].Offset, b.Attempt})
		mu.Unlock()
		failOnce := func(_ context.Context, b *ferry.Batch, i int) error {
			if b.Messages[i].Offset == 15 && failed.CompareAndSwap(false, true) {
				return errors.New("fails once at 15")
			}
			return nil
		}
		if err := copier(out, failOnce)(ctx, b); err != nil {
			return err
		}
		for _, m := range b.Messages {
			if m.Offset < 5 || m.Offset >= 10 || failed.Load() {
				b.Claim().MarkAsConsumed(m) // 5..9 stay unmarked the first time
			}
		}
		return nil
	}
	app := s.startTransactional(s.route(consume, ferry.WithDelivery(ferry.ExactlyOnce),
		ferry.ManualOffsets(), ferry.MaxMessages(10), ferry.Retry(ferry.ConstantBackoff(100*time.Millisecond))))
	s.waitCommittedAt(0, 5) // the first transaction; only then the next ten
	s.produce(0, 10)
	s.waitCommittedAt(0, 20)
	s.stop(app)
	mu.Lock()
	defer mu.Unlock()
	// Deliveries: [0..9], [10..19] failing at 15, then the retry from 5.
	var retry *batch
	for i, b := range batches {
		if b.attempt == 2 {
			retry = &batches[i]
			break
		}
	}
	if retry == nil || retry.first != 5 {
		t.Errorf("batches (first offset, attempt) %v: want the retry to start at 5, right after the last committed mark", batches)
	}
}

// S3, M2, A3: a consumer that marks after its partition was revoked gets
// false, and the transaction it meant to join aborts: nothing of it is
// visible, and across both members every input has exactly one output.
// The members balance eagerly, so the second one joining revokes every
// partition of the first, whichever it holds.
func TestExactlyOnceMarkAfterRevocationAborts(t *testing.T) {
	const per = 50
	s := newScenario(t, cluster(t), 2) // its topic is the input
	out := topic(t, s.c, 2)
	s.produceEach(2, per)
	var held, refused, accepted atomic.Int32
	var once sync.Once
	consume := func(ctx context.Context, b *ferry.Batch) error {
		if err := copier(out, nil)(ctx, b); err != nil {
			return err
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
	member := func() *running {
		return s.startTransactional(ferry.ClientOptions(kgo.Balancers(kgo.RoundRobinBalancer())), // eager
			s.route(consume, ferry.WithDelivery(ferry.ExactlyOnce), ferry.ManualOffsets(), ferry.MaxMessages(per)))
	}
	a := member()
	s.waitUntil("gave member a a batch", func() bool { return held.Load() > 0 })
	b := member()
	waitOutputs(t, s.c, out, 2*per)
	s.stop(b)
	s.stop(a)
	if refused.Load() != 1 || accepted.Load() != 0 {
		t.Errorf("the held batch's mark after revocation: refused %d, accepted %d; want refused once", refused.Load(), accepted.Load())
	}
	checkExactlyOnce(t, committedOutputs(t, s.c, out), 2, per)
}

// transactionCount counts batches (through copier's hook) and the
// transactions that committed (through OnCommit).
type transactionCount struct{ batches, txns atomic.Int32 }

func (c *transactionCount) countBatches(_ context.Context, _ *ferry.Batch, i int) error {
	if i == 0 {
		c.batches.Add(1)
	}
	return nil
}

func (c *transactionCount) option() ferry.Option {
	return ferry.OnCommit(func(cm ferry.Commit) {
		if cm.Reason == "transaction" {
			c.txns.Add(1)
		}
	})
}

// S3: TransactionInterval keeps a transaction open across polls: messages
// trickling in over about 2 s, in batches of 5, commit in a few
// transactions, not one per batch, and still exactly once.
func TestExactlyOnceTransactionInterval(t *testing.T) {
	const n = 60
	s := newScenario(t, cluster(t), 1) // its topic is the input
	out := topic(t, s.c, 1)
	var count transactionCount
	app := s.startTransactional(count.option(), s.route(copier(out, count.countBatches),
		ferry.WithDelivery(ferry.ExactlyOnce), ferry.MaxMessages(5), ferry.MaxWait(20*time.Millisecond),
		ferry.TransactionInterval(time.Second)))
	if err := produceSlowly(s.c, s.topic, 1, 0, n, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	waitOutputs(t, s.c, out, n)
	s.stop(app)
	checkExactlyOnce(t, committedOutputs(t, s.c, out), 1, n)
	// About 2 s of input spans 2-3 one-second transactions (one more if a
	// poll straddles a boundary); without the interval each poll — a few
	// messages here — would be its own.
	if b, x := count.batches.Load(), count.txns.Load(); x > 5 || b < 2*x {
		t.Errorf("%d batches in %d transactions, want several batches per transaction and at most 5 transactions", b, x)
	}
}

// S3: by default a transaction stays open for DefaultTransactionInterval, so
// a backlog commits in a few transactions of many batches; with
// TransactionInterval(0) every poll (here one batch) is a transaction of its
// own. Both copy exactly once.
func TestExactlyOnceDefaultTransactionSpan(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []ferry.TopicOption
		perPoll bool // one transaction per batch, else several batches per transaction
	}{
		{name: "default", perPoll: false},
		{name: "TransactionInterval(0)", opts: []ferry.TopicOption{ferry.TransactionInterval(0)}, perPoll: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 200
			s := newScenario(t, cluster(t), 1) // its topic is the input
			out := topic(t, s.c, 1)
			s.produce(0, n)
			var count transactionCount
			topicOpts := append([]ferry.TopicOption{ferry.WithDelivery(ferry.ExactlyOnce), ferry.MaxMessages(5)}, tc.opts...)
			app := s.startTransactional(count.option(), s.route(copier(out, count.countBatches), topicOpts...))
			waitOutputs(t, s.c, out, n)
			s.stop(app)
			checkExactlyOnce(t, committedOutputs(t, s.c, out), 1, n)
			b, x := count.batches.Load(), count.txns.Load()
			if tc.perPoll && b != x {
				t.Errorf("%d batches in %d transactions, want one transaction per batch", b, x)
			}
			if !tc.perPoll && b < 2*x {
				t.Errorf("%d batches in %d transactions, want several batches per transaction", b, x)
			}
		})
	}
}
