package ferry_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// S3: the broker goes away while a transaction ends, for longer than
// franz-go's retries last. The member does not stop: it aborts the round,
// initialises its producer again once the broker answers (which aborts
// whatever the broker still had open), resumes from the committed offsets,
// and every input still has exactly one committed output.
func TestExactlyOnceSurvivesBrokerOutageWhileEndingTransaction(t *testing.T) {
	s := newScenario(t, embedded(t), 1) // refuses every request for a while through kfake
	out := topic(t, s.c, 1)
	const outage = 4 * time.Second
	var armed atomic.Bool
	var downUntil atomic.Int64
	s.c.Fake.Control(func(req kmsg.Request) (kmsg.Response, error, bool) {
		s.c.Fake.KeepControl()
		if req.Key() == int16(kmsg.EndTxn) && armed.CompareAndSwap(true, false) {
			downUntil.Store(time.Now().Add(outage).UnixNano())
		}
		if time.Now().UnixNano() < downUntil.Load() {
			return nil, errors.New("the broker is away"), true // closes the connection
		}
		return nil, nil, false
	})
	logs := copyThroughFault(s, out, shortRetries(), transactionFault{
		inject:   func() { armed.Store(true) }, // the next transaction ends into the outage
		happened: func() bool { return downUntil.Load() != 0 },
		missed:   "the outage never happened",
	})
	if !strings.Contains(logs, "ferry: transactions resumed from the committed offsets") {
		t.Errorf("the log does not say the transactions resumed after the outage:\n%.3000s", logs)
	}
}

// S3 on a real broker: the broker is killed while a transaction is open —
// its outputs produced, its end not yet sent — and stays away for longer
// than the member's retries last, then comes back. The exactly-once member
// keeps running through it, and every input has exactly one output visible
// to read_committed readers. The test kills and restarts a broker of its
// own (scripts/kafka), never the suite's.
func TestInteropExactlyOnceSurvivesBrokerOutage(t *testing.T) {
	k := needKafkaTools(t)
	b := startPrivateBroker(t, k)
	t.Setenv("FERRY_BROKERS", b.addr)
	const partitions, each = 2, 300
	s := newScenario(t, cluster(t), partitions) // its topic is the input
	out := topic(t, s.c, partitions)
	s.produceEach(partitions, each)
	log, sink := testLogger(t)
	open, killed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	copyThenWait := func(ctx context.Context, b *ferry.Batch) error {
		err := copier(out, nil)(ctx, b)
		if b.Messages[0].Partition == 0 && b.Messages[0].Offset >= 100 {
			once.Do(func() { close(open); <-killed }) // the transaction ends once the broker is gone
		}
		return err
	}
	app := s.startTransactional(ferry.Logger(log), ferry.ClientOptions(kgo.RequestRetries(2)),
		s.route(copyThenWait, ferry.WithDelivery(ferry.ExactlyOnce), ferry.MaxMessages(10)))
	<-open
	time.Sleep(500 * time.Millisecond) // the batch's outputs reach the broker (linger 0)
	b.kill9(t)
	close(killed)
	stopped := time.Now()
	time.Sleep(5 * time.Second) // far past two retries
	if out, err := b.kafka(3*time.Minute, "restart"); err != nil {
		t.Fatalf("scripts/kafka restart: %v\n%s", err, out)
	}
	t.Logf("broker back %s after it was killed", time.Since(stopped).Round(100*time.Millisecond))

	got := waitOutputs(t, s.c, out, partitions*each)
	if returned, err := app.Returned(0); returned {
		t.Fatalf("Run returned during or after the outage: %v", err)
	}
	s.stop(app)
	checkExactlyOnce(t, got, partitions, each)
	checkExactlyOnce(t, committedOutputs(t, s.c, out), partitions, each)
	s.waitCommitted(map[int32]int64{0: each, 1: each}) // the suite's client may first see its old connection's end
	if logs := sink.String(); !strings.Contains(logs, "ferry: transactions resumed from the committed offsets") {
		t.Error("the log does not say the transactions resumed after the outage")
	}
}

// S3: the end of a transaction is answered INVALID_PRODUCER_EPOCH (what a
// broker answers once it aborted a transaction that outlived its timeout).
// franz-go keeps the transaction open on its side, so the next one cannot
// begin. The member does not stop: it aborts what is open, initialises its
// producer again, resumes from the committed offsets, and every input still
// has exactly one committed output. The client speaks Kafka 3.9's protocol,
// whose producer franz-go can recover from that answer (with KIP-890's
// transactions of Kafka 4 it cannot, and the member stops).
func TestExactlyOnceRecoversWhenTransactionCannotBegin(t *testing.T) {
	s := newScenario(t, embedded(t), 1) // answers one end of a transaction through kfake
	out := topic(t, s.c, 1)
	var answered atomic.Bool
	endTxnFenced := func() {
		s.c.Fake.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
			answered.Store(true)
			resp := req.ResponseKind().(*kmsg.EndTxnResponse)
			resp.ErrorCode = kerr.InvalidProducerEpoch.Code
			return resp, nil, true
		})
	}
	logs := copyThroughFault(s, out, ferry.ClientOptions(kgo.MaxVersions(kversion.V3_9_0())), transactionFault{
		inject:   endTxnFenced,
		happened: answered.Load,
		missed:   "no transaction end was answered INVALID_PRODUCER_EPOCH",
	})
	if !strings.Contains(logs, "ferry: cannot begin a transaction") ||
		!strings.Contains(logs, "ferry: transactions resumed from the committed offsets") {
		t.Errorf("the log does not say the transaction could not begin and transactions resumed:\n%.3000s", logs)
	}
}

// S3: a transaction's end is not confirmed (the broker drops the
// connection), and the broker answers every InitProducerID of the restart
// with UNKNOWN_SERVER_ERROR, a failure franz-go keeps for the client's life:
// the producer can never be initialised again. The member does not retry
// forever: Run returns an error saying so.
func TestExactlyOnceStopsWhenTheProducerIDFailsForGood(t *testing.T) {
	s := newScenario(t, embedded(t), 1) // answers through kfake
	out := topic(t, s.c, 1)
	log, _ := testLogger(t)
	app := s.startTransactional(ferry.Logger(log), shortRetries(),
		s.route(copier(out, nil), ferry.WithDelivery(ferry.ExactlyOnce), ferry.MaxMessages(5)))
	s.produce(0, 10)
	waitOutputs(t, s.c, out, 10)
	var inits atomic.Int32
	s.c.Fake.ControlKey(int16(kmsg.InitProducerID), func(req kmsg.Request) (kmsg.Response, error, bool) {
		s.c.Fake.KeepControl()
		if req.(*kmsg.InitProducerIDRequest).TransactionalID == nil {
			return nil, nil, false // the test's own producer
		}
		inits.Add(1)
		resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
		resp.ErrorCode = kerr.UnknownServerError.Code
		return resp, nil, true
	})
	s.c.Fake.ControlKey(int16(kmsg.EndTxn), func(kmsg.Request) (kmsg.Response, error, bool) {
		s.c.Fake.KeepControl()
		return nil, errors.New("the broker is away"), true // closes the connection: the end is unconfirmed
	})
	s.produce(0, 10)
	returned, err := app.Returned(30 * time.Second)
	if !returned {
		t.Fatalf("Run still retrying after 30 s (%d InitProducerID requests answered UNKNOWN_SERVER_ERROR)", inits.Load())
	}
	t.Logf("Run = %v", err)
	if !errors.Is(err, kerr.UnknownServerError) {
		t.Fatalf("Run = %v, want an error wrapping UNKNOWN_SERVER_ERROR", err)
	}
}

// transactionFault is what copyThroughFault does to the transactions of an
// exactly-once member.
type transactionFault struct {
	inject   func()      // from now on the next transaction meets the fault
	happened func() bool // whether one did
	missed   string      // the failure when none did
}

// copyThroughFault runs an exactly-once copier from s's one partition to out
// (batches of five, with client's options) and copies 60 inputs: 20 before
// the fault is injected, 20 that meet it, and 20 to show the member goes on
// after it. The fault must have happened; then, with the member stopped,
// every input has exactly one output, as read while it ran and as
// committed, and the input's committed offset is 60. It returns what the
// member logged.
func copyThroughFault(s *scenario, out string, client ferry.Option, fault transactionFault) string {
	t := s.t
	t.Helper()
	log, sink := testLogger(t)
	app := s.startTransactional(ferry.Logger(log), client,
		s.route(copier(out, nil), ferry.WithDelivery(ferry.ExactlyOnce), ferry.MaxMessages(5)))
	s.produce(0, 20)
	waitOutputs(t, s.c, out, 20)
	fault.inject()
	s.produce(0, 20)
	waitOutputs(t, s.c, out, 40)
	s.produce(0, 20)
	got := waitOutputs(t, s.c, out, 60)
	if !fault.happened() {
		t.Fatal(fault.missed)
	}
	s.stop(app)
	checkExactlyOnce(t, got, 1, 60)
	checkExactlyOnce(t, committedOutputs(t, s.c, out), 1, 60)
	s.wantCommitted(map[int32]int64{0: 60})
	return sink.String()
}

// shortRetries gives the member a retry budget far shorter than the
// outages here.
func shortRetries() ferry.Option {
	return ferry.ClientOptions(kgo.RequestRetries(2), kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }))
}
