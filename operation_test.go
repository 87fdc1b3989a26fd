package ferry_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func nopConsume(context.Context, *ferry.Batch) error { return nil }

// runFor runs a fresh app until Run returns and reports how long that took
// and Run's error.
func runFor(t *testing.T, opts ...ferry.Option) (time.Duration, error) {
	t.Helper()
	app, err := ferry.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	err = app.Run(context.Background())
	return time.Since(began), err
}

// silentBroker accepts connections and never answers, like a broker behind a
// black-holing firewall. It returns its address and a count of accepted
// connections.
func silentBroker(t *testing.T) (string, func() int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String(), func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}
}

// O1: nothing listens at the broker address (say, the broker is not up
// yet): Run keeps trying until ConnectTimeout, then fails with an error that
// wraps ErrUnreachable and names the address, the timeout and the refusal.
func TestRunRefusedUntilConnectTimeout(t *testing.T) {
	log, sink := testLogger(t)
	took, err := runFor(t,
		ferry.Brokers("127.0.0.1:1"),
		ferry.Logger(log),
		ferry.ConnectTimeout(2*time.Second),
		ferry.RouteFunc("g", "t", nopConsume),
	)
	if !errors.Is(err, ferry.ErrUnreachable) {
		t.Fatalf("Run returned %v, want an error wrapping ErrUnreachable", err)
	}
	for _, want := range []string{"127.0.0.1:1", "connect timeout 2s", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if took < 2*time.Second || took > 8*time.Second {
		t.Fatalf("Run failed after %s on refused connections, want ConnectTimeout (2s) plus slack", took)
	}
	if n := strings.Count(sink.String(), "retrying"); n != 1 {
		t.Errorf("the retries were logged %d times, want once", n)
	}
}

// O1: an app that starts before its broker — connections refused at first —
// consumes once the broker is up, within ConnectTimeout.
func TestRunWaitsForLateBroker(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	rec := newRecorder()
	log, _ := testLogger(t)
	app := start(t, ferry.Brokers(l.Addr().String()), ferry.Logger(log), ferry.ConnectTimeout(30*time.Second),
		ferry.RouteFunc("g", "t", rec.fn()))
	time.Sleep(time.Second) // the app is retrying refused connections
	if returned, err := app.Returned(0); returned {
		t.Fatalf("Run returned %v before the broker started", err)
	}
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ferrytest.Embedded(fake)
	if err != nil {
		fake.Close()
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	produceN(t, c, "t", 0, 3)
	rec.waitDistinct(t, "t", 3, 30*time.Second)
	if err := app.stop(t); err != nil {
		t.Fatal(err)
	}
}

// O1: a broker that accepts connections but never answers does not hang Run:
// it fails once ConnectTimeout has passed, not before.
func TestRunSilentBrokerTimesOut(t *testing.T) {
	addr, accepted := silentBroker(t)
	log, _ := testLogger(t)
	took, err := runFor(t,
		ferry.Brokers(addr),
		ferry.Logger(log),
		ferry.ConnectTimeout(2*time.Second),
		ferry.RouteFunc("g", "t", nopConsume),
	)
	if !errors.Is(err, ferry.ErrUnreachable) {
		t.Fatalf("Run returned %v, want an error wrapping ErrUnreachable", err)
	}
	if accepted() == 0 {
		t.Fatal("Run never connected to the broker")
	}
	if took < 2*time.Second || took > 8*time.Second {
		t.Fatalf("Run failed after %s, want ConnectTimeout (2s) plus slack", took)
	}
}

// O1: the default ConnectTimeout is the 10 s its doc comment promises. Time
// is simulated (testing/synctest) and the broker is an in-memory pipe that
// reads requests and never answers, so the test takes no real 10 s.
func TestRunDefaultConnectTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var dialed []net.Conn
		dial := func(context.Context, string, string) (net.Conn, error) {
			client, server := net.Pipe()
			go io.Copy(io.Discard, server) // reads every request, never answers
			mu.Lock()
			dialed = append(dialed, server)
			mu.Unlock()
			return client, nil
		}
		log, _ := testLogger(t)
		app, err := ferry.New(
			ferry.Brokers("silent.invalid:9092"),
			ferry.Logger(log),
			ferry.ClientOptions(kgo.Dialer(dial)),
			ferry.RouteFunc("g", "t", nopConsume),
		)
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		err = app.Run(context.Background())
		took := time.Since(began)
		mu.Lock()
		for _, c := range dialed {
			c.Close()
		}
		n := len(dialed)
		mu.Unlock()
		if !errors.Is(err, ferry.ErrUnreachable) {
			t.Fatalf("Run returned %v, want an error wrapping ErrUnreachable", err)
		}
		if n == 0 {
			t.Fatal("Run never dialed the broker")
		}
		if took < 10*time.Second || took > 11*time.Second {
			t.Fatalf("Run failed after %s of simulated time, want the default ConnectTimeout, 10s", took)
		}
	})
}

// O2: every invalid configuration is an error from New wrapping
// ErrInvalidConfig, naming the problem.
func TestNewRejectsInvalidConfig(t *testing.T) {
	broker := ferry.Brokers("127.0.0.1:1")
	route := ferry.RouteFunc("g", "t", nopConsume)
	tests := []struct {
		name  string
		noEnv bool // unset FERRY_BROKERS
		opts  []ferry.Option
		want  string // in the error message
	}{
		{name: "no routes", opts: []ferry.Option{broker}, want: "no routes"},
		{name: "no brokers", noEnv: true, opts: []ferry.Option{route}, want: "no brokers"},
		{name: "empty broker list", opts: []ferry.Option{ferry.Brokers(), route}, want: "no brokers"},
		{name: "topic routed twice in one group", opts: []ferry.Option{broker, route, ferry.RouteFunc("g", "t", nopConsume)}, want: "routed twice"},
		{name: "empty group", opts: []ferry.Option{broker, ferry.RouteFunc("", "t", nopConsume)}, want: "empty group"},
		{name: "empty topic", opts: []ferry.Option{broker, ferry.RouteFunc("g", "", nopConsume)}, want: "empty topic"},
		{name: "nil consumer func", opts: []ferry.Option{broker, ferry.RouteFunc("g", "t", nil)}, want: "no consumer"},
		{name: "nil consumer factory", opts: []ferry.Option{broker, ferry.Route("g", "t", nil)}, want: "no consumer"},
		{name: "MaxMessages(0)", opts: []ferry.Option{broker, ferry.RouteFunc("g", "t", nopConsume, ferry.MaxMessages(0))}, want: "MaxMessages 0"},
		{name: "MaxWait(0)", opts: []ferry.Option{broker, ferry.RouteFunc("g", "t", nopConsume, ferry.MaxWait(0))}, want: "MaxWait 0"},
		{name: "Concurrency(0)", opts: []ferry.Option{broker, route, ferry.Concurrency(0)}, want: "concurrency 0"},
		{name: "CommitInterval(-1)", opts: []ferry.Option{broker, route, ferry.CommitInterval(-1)}, want: "commit interval"},
		{name: "ConsumeStallTimeout(-1)", opts: []ferry.Option{broker, route, ferry.ConsumeStallTimeout(-1)}, want: "consume stall timeout"},
		{name: "backoff max below initial", opts: []ferry.Option{broker, ferry.RouteFunc("g", "t", nopConsume,
			ferry.Retry(ferry.ExponentialBackoff(2*time.Second, time.Second)))}, want: "invalid backoff"},
		{name: "zero backoff", opts: []ferry.Option{broker, ferry.RouteFunc("g", "t", nopConsume, ferry.Retry(ferry.Backoff{}))}, want: "invalid backoff"},
		{name: "backoff jitter above 1", opts: []ferry.Option{broker, ferry.RouteFunc("g", "t", nopConsume,
			ferry.Retry(ferry.Backoff{Initial: time.Second, Max: time.Second, Multiplier: 1, Jitter: 2}))}, want: "invalid backoff"},
		{name: "exactly-once without a transactional id", opts: []ferry.Option{broker, ferry.RouteFunc("g", "t", nopConsume, ferry.WithDelivery(ferry.ExactlyOnce))}, want: "needs ferry.TransactionalID"},
		{name: "exactly-once mixed with at-least-once in one group", opts: []ferry.Option{broker, ferry.TransactionalID("x"),
			ferry.RouteFunc("g", "t", nopConsume, ferry.WithDelivery(ferry.ExactlyOnce)), ferry.RouteFunc("g", "u", nopConsume)}, want: "mixes exactly-once"},
		{name: "exactly-once topics of one group disagreeing on the transaction span", opts: []ferry.Option{broker, ferry.TransactionalID("x"),
			ferry.RouteFunc("g", "t", nopConsume, ferry.WithDelivery(ferry.ExactlyOnce), ferry.TransactionBatches(2)),
			ferry.RouteFunc("g", "u", nopConsume, ferry.WithDelivery(ferry.ExactlyOnce))}, want: "same TransactionBatches"},
		{name: "TransactionInterval(-1s)", opts: []ferry.Option{broker, ferry.TransactionalID("x"),
			ferry.RouteFunc("g", "t", nopConsume, ferry.WithDelivery(ferry.ExactlyOnce), ferry.TransactionInterval(-time.Second))}, want: "TransactionInterval -1s"},
		{name: "at-most-once with manual offsets", opts: []ferry.Option{broker,
			ferry.RouteFunc("g", "t", nopConsume, ferry.WithDelivery(ferry.AtMostOnce), ferry.ManualOffsets())}, want: "no effect"},
		{name: "MaxRetries without a dead-letter topic", opts: []ferry.Option{broker, ferry.RouteFunc("g", "t", nopConsume, ferry.MaxRetries(3))}, want: "needs a DeadLetter"},
		{name: "dead-letter topic is the topic itself", opts: []ferry.Option{broker, ferry.RouteFunc("g", "t", nopConsume, ferry.DeadLetter("t"))}, want: "cannot be the topic itself"},
		{name: "nil option", opts: []ferry.Option{broker, route, nil}, want: "option 3 is nil"},
		{name: "nil topic option", opts: []ferry.Option{broker, ferry.RouteFunc("g", "t", nopConsume, ferry.MaxMessages(5), nil)}, want: "topic option 2 is nil"},
		{name: "empty broker address", opts: []ferry.Option{ferry.Brokers(""), route}, want: "broker address"},
		{name: "blank broker address among others", opts: []ferry.Option{ferry.Brokers("127.0.0.1:1", " "), route}, want: "broker address"},
		{name: "topic name with a space", opts: []ferry.Option{broker, ferry.RouteFunc("g", "my topic", nopConsume)}, want: "illegal topic name"},
		{name: "topic name with a slash", opts: []ferry.Option{broker, ferry.RouteFunc("g", "a/b", nopConsume)}, want: "illegal topic name"},
		{name: "topic name over 249 characters", opts: []ferry.Option{broker, ferry.RouteFunc("g", strings.Repeat("t", 250), nopConsume)}, want: "the limit is 249"},
		{name: "topic name .", opts: []ferry.Option{broker, ferry.RouteFunc("g", ".", nopConsume)}, want: "reserved"},
		{name: "topic name ..", opts: []ferry.Option{broker, ferry.RouteFunc("g", "..", nopConsume)}, want: "reserved"},
		{name: "illegal dead-letter topic name", opts: []ferry.Option{broker, ferry.RouteFunc("g", "t", nopConsume, ferry.DeadLetter("t dlq"))}, want: "illegal dead-letter topic name"},
		{name: "TransactionBatches(0)", opts: []ferry.Option{broker, ferry.TransactionalID("x"),
			ferry.RouteFunc("g", "t", nopConsume, ferry.WithDelivery(ferry.ExactlyOnce), ferry.TransactionBatches(0))}, want: "TransactionBatches 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.noEnv {
				t.Setenv("FERRY_BROKERS", "")
			}
			app, err := ferry.New(tt.opts...)
			if !errors.Is(err, ferry.ErrInvalidConfig) {
				t.Fatalf("New returned (%v, %v), want an error wrapping ErrInvalidConfig", app, err)
			}
			if app != nil {
				t.Errorf("New returned an App along with error %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

// O2: New connects to nothing. Given a valid configuration and a broker that
// would hang any connection, it returns at once, starts no goroutine that
// could connect later, and the broker never sees a connection.
func TestNewConnectsToNothing(t *testing.T) {
	addr, accepted := silentBroker(t)
	log, _ := testLogger(t)
	before := goleak.IgnoreCurrent()
	began := time.Now()
	app, err := ferry.New(ferry.Brokers(addr), ferry.Logger(log), ferry.RouteFunc("g", "t", nopConsume))
	if err != nil {
		t.Fatal(err)
	}
	if app == nil {
		t.Fatal("New returned no App and no error")
	}
	if took := time.Since(began); took > time.Second {
		t.Fatalf("New took %s", took)
	}
	if err := goleak.Find(before); err != nil {
		t.Fatalf("New left goroutines running: %v", err)
	}
	if n := accepted(); n != 0 {
		t.Fatalf("the broker saw %d connections from New, want none", n)
	}
}

// O2: the longest legal topic name and every legal character pass New.
func TestNewAcceptsLegalTopicNames(t *testing.T) {
	for _, name := range []string{strings.Repeat("t", 249), "Orders_2026.v1-eu", "...", "_"} {
		if _, err := ferry.New(ferry.Brokers("127.0.0.1:1"), ferry.RouteFunc("g", name, nopConsume)); err != nil {
			t.Errorf("topic %q: %v", name, err)
		}
	}
}
