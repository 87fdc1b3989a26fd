package ferry_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// readAll reads every record of a topic from the start (read_committed),
// waiting until at least n arrived (ferrytest.ReadAll).
func readAll(t *testing.T, c *ferrytest.Cluster, topic string, n int) []*kgo.Record {
	t.Helper()
	return ferrytest.ReadAll(t, c, topic, n)
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// E1, A5: a poison message in the middle of a partition is retried
// MaxRetries times, then lands in the dead-letter topic with key, value and
// headers kept and headers naming its origin, the error and the attempts;
// the rest of the partition is processed and committed past it.
func TestPoisonMessageGoesToDeadLetterTopic(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	dlq := topic(t, s.c, 1)
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, &kgo.Record{Partition: 0, Key: []byte("k" + strconv.Itoa(i)), Value: []byte(strconv.Itoa(i)),
			Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t" + strconv.Itoa(i))}}})
	}
	if err := s.c.Produce(ctxFor(t, 10*time.Second), s.topic, recs...); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	attempts := 0
	processed := map[string]int{}
	fn := func(_ context.Context, b *ferry.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range b.Messages {
			if string(m.Value) == "5" {
				attempts++
				return ferry.FailedAt(m, errors.New("cannot bill order 5"))
			}
			processed[string(m.Value)]++
		}
		return nil
	}
	app := s.start(s.route(fn, ferry.DeadLetter(dlq), ferry.MaxRetries(2), ferry.Retry(ferry.ConstantBackoff(20*time.Millisecond))))
	dead := readAll(t, s.c, dlq, 1)
	s.waitCommitted(map[int32]int64{0: 10}) // past the poison message
	s.stop(app)
	if len(dead) != 1 {
		t.Fatalf("%d messages in the dead-letter topic, want exactly the poison one", len(dead))
	}
	d := dead[0]
	if string(d.Key) != "k5" || string(d.Value) != "5" || header(d, "trace") != "t5" {
		t.Errorf("dead letter key %q value %q trace %q, want the original k5/5/t5", d.Key, d.Value, header(d, "trace"))
	}
	want := map[string]string{
		ferry.HeaderOriginalTopic:     s.topic,
		ferry.HeaderOriginalPartition: "0",
		ferry.HeaderOriginalOffset:    "5",
		ferry.HeaderAttempts:          "3",
	}
	for k, v := range want {
		if got := header(d, k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if !strings.Contains(header(d, ferry.HeaderError), "cannot bill order 5") {
		t.Errorf("error header %q lacks the cause", header(d, ferry.HeaderError))
	}
	if _, err := time.Parse(time.RFC3339Nano, header(d, ferry.HeaderFailedAt)); err != nil {
		t.Errorf("failed-at header %q: %v", header(d, ferry.HeaderFailedAt), err)
	}
	mu.Lock()
	defer mu.Unlock()
	if attempts != 3 {
		t.Errorf("poison message attempted %d times, want 3 (1 + MaxRetries 2)", attempts)
	}
	for i := range 10 {
		if i == 5 {
			continue
		}
		// FailedAt marks what came before the failing message: 0–4 are
		// processed once, not once per retry.
		if n := processed[strconv.Itoa(i)]; n != 1 {
			t.Errorf("message %d processed %d times, want 1", i, n)
		}
	}
}

// E1 without FailedAt: the batch is blamed on its first unmarked message;
// a consumer that marks per message sends only the failing message.
func TestDeadLetterBlamesFirstUnmarkedMessage(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	dlq := topic(t, s.c, 1)
	s.produce(0, 6)
	fn := func(_ context.Context, b *ferry.Batch) error {
		for _, m := range b.Messages {
			if string(m.Value) == "3" {
				return errors.New("bad")
			}
			b.Claim().MarkAsConsumed(m)
		}
		return nil
	}
	app := s.start(s.route(fn, ferry.ManualOffsets(), ferry.DeadLetter(dlq), ferry.MaxRetries(0)))
	dead := readAll(t, s.c, dlq, 1)
	s.stop(app)
	if len(dead) != 1 || string(dead[0].Value) != "3" || header(dead[0], ferry.HeaderAttempts) != "1" {
		t.Fatalf("dead letters %v, want only message 3 after 1 attempt", values(dead))
	}
}

func values(rs []*kgo.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, string(r.Value))
	}
	return out
}

// E4: with the dead-letter topic missing, the dispatch fails with a clear
// error, the message stays unmarked and is retried — nothing is lost; once
// the topic exists the message is dispatched and the partition moves on.
func TestMissingDeadLetterTopicLosesNothing(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	dlq := ferrytest.UniqueName("missing-dlq")
	s.produce(0, 4)
	log, sink := testLogger(t)
	var tries atomic.Int32
	fn := func(_ context.Context, b *ferry.Batch) error {
		for _, m := range b.Messages {
			if string(m.Value) == "1" {
				tries.Add(1)
				return ferry.FailedAt(m, errors.New("poison"))
			}
		}
		return nil
	}
	app := s.start(ferry.Logger(log), s.route(fn, ferry.DeadLetter(dlq), ferry.MaxRetries(0),
		ferry.Retry(ferry.ConstantBackoff(100*time.Millisecond))))
	s.waitUntil("retried a failed dispatch", func() bool {
		return tries.Load() >= 3 && strings.Contains(sink.String(), "dead-letter dispatch failed")
	})
	if !strings.Contains(sink.String(), dlq) {
		t.Errorf("log never names the missing dead-letter topic %s", dlq)
	}
	if got := s.committed(); got[0] > 1 {
		t.Fatalf("committed %d while the poison message at 1 was not dispatched", got[0])
	}
	if err := s.c.CreateTopic(ctxFor(t, 10*time.Second), dlq, 1); err != nil {
		t.Fatal(err)
	}
	dead := readAll(t, s.c, dlq, 1)
	if len(dead) != 1 || string(dead[0].Value) != "1" {
		t.Fatalf("dead letters %v, want [1]", values(dead))
	}
	s.waitCommitted(map[int32]int64{0: 4}) // past the dead-lettered message
	s.stop(app)
}

type order struct {
	ID    int `json:"id"`
	Cents int `json:"cents"`
}

// E2, E3: a typed JSON consumer sends undecodable messages straight to the
// dead-letter topic, without retries, and sees only the ones that decode; a
// consumer may dead-letter a message itself.
func TestTypedConsumerDeadLettersUndecodable(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	dlq := topic(t, s.c, 1)
	payloads := []string{`{"id":1,"cents":100}`, `not json`, `{"id":3,"cents":300}`, `{"id":4,"cents":-5}`}
	var recs []*kgo.Record
	for _, p := range payloads {
		recs = append(recs, &kgo.Record{Partition: 0, Value: []byte(p)})
	}
	if err := s.c.Produce(ctxFor(t, 10*time.Second), s.topic, recs...); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []int
	var calls atomic.Int32
	handle := func(ctx context.Context, b *ferry.TypedBatch[order]) error {
		calls.Add(1)
		mu.Lock()
		defer mu.Unlock()
		for _, it := range b.Items {
			if it.Data.Cents < 0 { // E2: the consumer dead-letters it itself
				if err := b.Claim().DeadLetter(ctx, it.Message, fmt.Errorf("negative amount")); err != nil {
					return err
				}
				continue
			}
			seen = append(seen, it.Data.ID)
		}
		return nil
	}
	app := s.start(s.route(ferry.Typed(ferry.JSON[order](), handle), ferry.DeadLetter(dlq)))
	dead := readAll(t, s.c, dlq, 2)
	s.waitCommitted(map[int32]int64{0: 4})
	s.stop(app)
	if len(dead) != 2 || string(dead[0].Value) != "not json" || header(dead[0], ferry.HeaderAttempts) != "1" ||
		!strings.Contains(header(dead[0], ferry.HeaderError), "cannot decode") {
		t.Errorf("dead letters %v (attempts %q, error %q), want the undecodable one first, after 1 attempt",
			values(dead), header(dead[0], ferry.HeaderAttempts), header(dead[0], ferry.HeaderError))
	}
	if len(dead) == 2 && (string(dead[1].Value) != payloads[3] || header(dead[1], ferry.HeaderError) != "negative amount") {
		t.Errorf("second dead letter %q error %q, want the negative order", dead[1].Value, header(dead[1], ferry.HeaderError))
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(seen) != "[1 3]" || calls.Load() != 1 {
		t.Errorf("handler saw %v in %d calls, want [1 3] in one call (no retries)", seen, calls.Load())
	}
}

// E3: a tombstone (nil value) is not undecodable: a typed JSON consumer
// hands it on with the zero value and Tombstone true, in offset order among
// the others, and nothing goes to the dead-letter topic. An empty value is
// still decoded, and is undecodable JSON.
func TestTypedConsumerPassesTombstones(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	dlq := topic(t, s.c, 1)
	recs := []*kgo.Record{
		{Partition: 0, Key: []byte("a"), Value: []byte(`{"id":1,"cents":100}`)},
		{Partition: 0, Key: []byte("a")}, // tombstone
		{Partition: 0, Key: []byte("b"), Value: []byte{}},
		{Partition: 0, Key: []byte("c"), Value: []byte(`{"id":3,"cents":300}`)},
	}
	if err := s.c.Produce(ctxFor(t, 10*time.Second), s.topic, recs...); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	handle := func(ctx context.Context, b *ferry.TypedBatch[order]) error {
		mu.Lock()
		defer mu.Unlock()
		for _, it := range b.Items {
			seen = append(seen, fmt.Sprintf("%d:%s:%v:%d", it.Offset, it.Key, it.Tombstone(), it.Data.ID))
		}
		return nil
	}
	app := s.start(s.route(ferry.Typed(ferry.JSON[order](), handle), ferry.DeadLetter(dlq)))
	dead := readAll(t, s.c, dlq, 1)
	s.waitCommitted(map[int32]int64{0: 4})
	s.stop(app)
	if len(dead) != 1 || string(dead[0].Key) != "b" {
		t.Errorf("first dead letter has key %q, want the empty value's (b), not the tombstone's (a)", dead[0].Key)
	}
	mu.Lock()
	defer mu.Unlock()
	if got, want := strings.Join(seen, " "), "0:a:false:1 1:a:true:0 3:c:false:3"; got != want {
		t.Errorf("handler saw %q, want %q", got, want)
	}
}

// E2: dead-lettering on a topic without a dead-letter topic is an error the
// consumer can check.
func TestDeadLetterWithoutTopicIsAnError(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 1)
	got := make(chan error, 1)
	fn := func(ctx context.Context, b *ferry.Batch) error {
		select {
		case got <- b.Claim().DeadLetter(ctx, b.Messages[0], errors.New("x")):
		default:
		}
		return nil
	}
	app := s.start(s.route(fn))
	select {
	case err := <-got:
		if !errors.Is(err, ferry.ErrNoDeadLetter) {
			t.Errorf("DeadLetter = %v, want ErrNoDeadLetter", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no batch")
	}
	s.stop(app)
}

// Middleware runs outermost first around Consume, and the consumer's hooks
// still run although middleware wraps it.
func TestMiddlewareOrderAndHooks(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 3)
	var mu sync.Mutex
	var trace []string
	note := func(s string) { mu.Lock(); trace = append(trace, s); mu.Unlock() }
	mw := func(name string) ferry.Middleware {
		return func(next ferry.Consumer) ferry.Consumer {
			return ferry.ConsumerFunc(func(ctx context.Context, b *ferry.Batch) error {
				note(name + ">")
				err := next.Consume(ctx, b)
				note("<" + name)
				return err
			})
		}
	}
	shutdown := make(chan struct{}, 1)
	newConsumer := func(*ferry.Claim) ferry.Consumer {
		return &hooked{consume: func() { note("consume") }, shutdown: shutdown}
	}
	app := s.start(s.routeTo(newConsumer, ferry.Use(mw("a"), mw("b"))))
	s.waitUntil("consumed a batch", func() bool { mu.Lock(); defer mu.Unlock(); return len(trace) >= 5 })
	s.stop(app)
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(trace[:5], " "); got != "a> b> consume <b <a" {
		t.Errorf("trace %q, want \"a> b> consume <b <a\"", got)
	}
	select {
	case <-shutdown:
	default:
		t.Error("Shutdown hook did not run through the middleware")
	}
}

type hooked struct {
	consume  func()
	shutdown chan struct{}
}

func (h *hooked) Consume(context.Context, *ferry.Batch) error { h.consume(); return nil }
func (h *hooked) Shutdown(context.Context) error {
	select {
	case h.shutdown <- struct{}{}:
	default:
	}
	return nil
}

// A6, E1: a message whose consumer panics is dead-lettered with the panic's
// message alone in the ferry-error header; its stack goes to the log.
func TestPanicDeadLetterHeaderHoldsTheMessageOnly(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	dlq := topic(t, s.c, 1)
	s.produce(0, 1)
	log, sink := testLogger(t)
	panics := func(context.Context, *ferry.Batch) error {
		var m map[string]int
		m["boom"]++ // nil map write panics
		return nil
	}
	app := s.start(ferry.Logger(log), s.route(panics, ferry.DeadLetter(dlq), ferry.MaxRetries(1),
		ferry.Retry(ferry.ConstantBackoff(20*time.Millisecond))))
	dead := readAll(t, s.c, dlq, 1)
	s.waitCommitted(map[int32]int64{0: 1})
	s.stop(app)

	if got, want := header(dead[0], ferry.HeaderError), "panic: assignment to entry in nil map"; got != want {
		t.Errorf("ferry-error header %q, want %q (the stack belongs in the log)", got, want)
	}
	if out := sink.String(); !strings.Contains(out, "stack=") || !strings.Contains(out, "deadletter_test.go") {
		t.Errorf("log lacks the panic's stack:\n%s", out)
	}
}

// Logs name partitions as sorted topic[partitions] lists, not Go maps.
func TestAssignmentLogNamesPartitionsWithoutMapSyntax(t *testing.T) {
	s := newScenario(t, cluster(t), 3)
	s.produceEach(3, 1)
	log, sink := testLogger(t)
	app := s.start(ferry.Logger(log), s.route(s.rec.fn()))
	s.waitSeen(3)
	s.stop(app)
	out := sink.String()
	if want := `assigned="` + s.topic + `[0 1 2]"`; !strings.Contains(out, want) || strings.Contains(out, "map[") {
		t.Errorf("log lacks %s or prints a Go map:\n%s", want, out)
	}
}

// E1, B5, O3: a dead letter keeps the message's key, value and headers as
// they were produced — nil and empty told apart, a tombstone stays a
// tombstone, a header with a nil value keeps it — in sequential, parallel
// and exactly-once topics alike.
func TestDeadLetterKeepsNilAndEmptyAsProduced(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []ferry.TopicOption
		txn  bool
	}{
		{"sequential", nil, false},
		{"parallel", []ferry.TopicOption{ferry.Parallel(4)}, false},
		{"exactly-once", []ferry.TopicOption{ferry.WithDelivery(ferry.ExactlyOnce)}, true},
	} {
		t.Run(mode.name, func(t *testing.T) {
			s := newScenario(t, cluster(t), 1)
			dlq := topic(t, s.c, 1)
			produced := []*kgo.Record{
				{Partition: 0, Key: []byte("deleted"), Value: nil, // a tombstone
					Headers: []kgo.RecordHeader{{Key: "h", Value: nil}, {Key: "h", Value: []byte{}}}},
				{Partition: 0, Key: nil, Value: []byte{}},
				{Partition: 0, Key: []byte{}, Value: nil},
			}
			if err := s.c.Produce(ctxFor(t, 10*time.Second), s.topic, produced...); err != nil {
				t.Fatal(err)
			}
			fn := func(_ context.Context, b *ferry.Batch) error {
				return ferry.FailedAt(b.Messages[0], errors.New("always fails"))
			}
			route := s.route(fn, append([]ferry.TopicOption{ferry.DeadLetter(dlq), ferry.MaxRetries(0),
				ferry.Retry(ferry.ConstantBackoff(20 * time.Millisecond))}, mode.opts...)...)
			var app *running
			if mode.txn {
				app = s.startTransactional(route)
			} else {
				app = s.start(route)
			}
			dead := readAll(t, s.c, dlq, len(produced))
			s.waitCommittedAt(0, int64(len(produced)))
			s.stop(app)
			byOffset := map[string]*kgo.Record{}
			for _, d := range dead {
				byOffset[header(d, ferry.HeaderOriginalOffset)] = d
			}
			for i, want := range produced {
				got := byOffset[strconv.Itoa(i)]
				if got == nil {
					t.Errorf("no dead letter for offset %d (%d dead letters)", i, len(dead))
					continue
				}
				checkSame(t, i, &kgo.Record{Key: got.Key, Value: got.Value, Headers: got.Headers[:len(want.Headers)]}, want)
			}
		})
	}
}
