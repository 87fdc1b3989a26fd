package ferry_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EventStore stands in for a database.
type EventStore struct {
	mu     sync.Mutex
	events []string
}

func (s *EventStore) Store(_ context.Context, msgs []*ferry.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.events = append(s.events, string(m.Value))
	}
	return nil
}

func (s *EventStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

// EventsConsumer stores each batch, then marks its last message as consumed
// synchronously, as in Karafka's mark_as_consumed!: once that returns true,
// a restart never processes these messages again.
type EventsConsumer struct {
	claim *ferry.Claim
	store *EventStore
}

func (c *EventsConsumer) Consume(ctx context.Context, b *ferry.Batch) error {
	if err := c.store.Store(ctx, b.Messages); err != nil {
		return err // retried from the first unmarked message
	}
	// True only if the offset is committed and the partition is still ours.
	if ok, err := c.claim.MarkAsConsumedSync(ctx, b.Last()); !ok {
		return fmt.Errorf("events stored but offset not committed: %v", err)
	}
	return nil
}

// With ManualOffsets nothing is marked for the consumer: it marks what it
// has safely stored.
func ExampleClaim_MarkAsConsumedSync() {
	cluster := exampleCluster("user_events", 250)
	defer cluster.Close()

	store := &EventStore{}
	app, err := ferry.New(
		ferry.Brokers(cluster.Brokers()...),
		ferry.Logger(quiet),
		ferry.Route("events", "user_events", func(claim *ferry.Claim) ferry.Consumer {
			return &EventsConsumer{claim: claim, store: store}
		}, ferry.ManualOffsets()),
	)
	if err != nil {
		log.Fatal(err)
	}
	runUntil(app, func() bool { return store.Len() == 250 })

	committed, _ := cluster.Committed(context.Background(), "events", "user_events")
	fmt.Println("stored:", store.Len())
	fmt.Println("committed offset:", committed[0])
	// Output:
	// stored: 250
	// committed offset: 250
}

// BufferedConsumer imports messages into a database 1000 at a time. It marks
// only what it imported, so buffered messages are never committed before
// they are in the database; on shutdown it imports the rest.
type BufferedConsumer struct {
	claim    *ferry.Claim
	buffer   []*ferry.Message
	received *atomic.Int64 // lets the example stop once all arrived
}

const flushSize = 1000

func (c *BufferedConsumer) Consume(ctx context.Context, b *ferry.Batch) error {
	c.buffer = append(c.buffer, b.Messages...)
	if len(c.buffer) >= flushSize {
		data := c.buffer[:flushSize]
		c.buffer = c.buffer[flushSize:]
		fmt.Println("importing:", len(data))
		// Once imported, mark the last message of the imported set.
		if _, err := c.claim.MarkAsConsumedSync(ctx, data[len(data)-1]); err != nil {
			return err
		}
	}
	c.received.Add(int64(len(b.Messages)))
	return nil
}

// Shutdown imports what is left in the buffer although it did not reach
// flushSize; its mark is in the final commit.
func (c *BufferedConsumer) Shutdown(ctx context.Context) error {
	if len(c.buffer) == 0 {
		return nil
	}
	fmt.Println("importing:", len(c.buffer))
	_, err := c.claim.MarkAsConsumedSync(ctx, c.buffer[len(c.buffer)-1])
	return err
}

// Karafka's buffering consumer: flush every 1000 messages, and flush the
// rest when the app stops.
func Example_bufferedFlush() {
	cluster := exampleCluster("user_events", 2500)
	defer cluster.Close()

	var received atomic.Int64
	app, err := ferry.New(
		ferry.Brokers(cluster.Brokers()...),
		ferry.Logger(quiet),
		ferry.Route("importer", "user_events", func(claim *ferry.Claim) ferry.Consumer {
			return &BufferedConsumer{claim: claim, received: &received}
		}, ferry.ManualOffsets()),
	)
	if err != nil {
		log.Fatal(err)
	}
	runUntil(app, func() bool { return received.Load() == 2500 }) // then stop: Shutdown imports the rest

	committed, _ := cluster.Committed(context.Background(), "importer", "user_events")
	fmt.Println("committed offset:", committed[0])
	// Output:
	// importing: 1000
	// importing: 1000
	// importing: 500
	// committed offset: 2500
}

// CountersConsumer counts page views, marking every 10th message as it goes
// — in automatic mode, where the batch's end is still marked when Consume
// succeeds. When counting fails, the retry resumes right after the last
// mark rather than at the start of the batch, so few views count twice.
type CountersConsumer struct {
	claim  *ferry.Claim
	views  *atomic.Int64
	failed bool // the counter store fails once, at offset 25
}

func (c *CountersConsumer) Consume(_ context.Context, b *ferry.Batch) error {
	fmt.Printf("attempt %d: from offset %d\n", b.Attempt, b.Messages[0].Offset)
	for i, m := range b.Messages {
		if m.Offset == 25 && !c.failed {
			c.failed = true
			return fmt.Errorf("counter store unavailable at offset %d", m.Offset)
		}
		c.views.Add(1)
		if i%10 == 0 {
			c.claim.MarkAsConsumed(m)
		}
	}
	return nil
}

// Mixing manual and automatic offset management: mark every 10th message.
func Example_markEveryTenth() {
	cluster := exampleCluster("page_views", 100)
	defer cluster.Close()

	var views atomic.Int64
	app, err := ferry.New(
		ferry.Brokers(cluster.Brokers()...),
		ferry.Logger(quiet),
		ferry.Route("counters", "page_views", func(claim *ferry.Claim) ferry.Consumer {
			return &CountersConsumer{claim: claim, views: &views}
		}, ferry.Retry(ferry.ConstantBackoff(100*time.Millisecond))),
	)
	if err != nil {
		log.Fatal(err)
	}
	runUntil(app, func() bool { return views.Load() >= 104 })

	committed, _ := cluster.Committed(context.Background(), "counters", "page_views")
	fmt.Println("views counted:", views.Load()) // 21-24 twice: marked up to offset 20
	fmt.Println("committed offset:", committed[0])
	// Output:
	// attempt 1: from offset 0
	// attempt 2: from offset 21
	// views counted: 104
	// committed offset: 100
}

// The at-least-once loop — process a message, then commit its offset — with
// ferry: each message is marked and committed once processed, so a failure
// redelivers only the message that failed.
func Example_atLeastOnce() {
	cluster := exampleCluster("orders", 5)
	defer cluster.Close()

	var mu sync.Mutex
	processed := 0
	failedOnce := false
	process := func(m *ferry.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if string(m.Value) == "2" && !failedOnce {
			failedOnce = true
			return errors.New("warehouse unavailable")
		}
		processed++
		return nil
	}
	app, err := ferry.New(
		ferry.Brokers(cluster.Brokers()...),
		ferry.Logger(quiet),
		ferry.RouteFunc("shipping", "orders", func(ctx context.Context, b *ferry.Batch) error {
			for _, m := range b.Messages {
				if err := process(m); err != nil {
					fmt.Printf("order %s failed: %v\n", m.Value, err)
					return err // retried from this message after a backoff
				}
				fmt.Printf("order %s processed\n", m.Value)
				if _, err := b.Claim().MarkAsConsumedSync(ctx, m); err != nil {
					return err
				}
			}
			return nil
		}, ferry.ManualOffsets(), ferry.Retry(ferry.ConstantBackoff(100*time.Millisecond))),
	)
	if err != nil {
		log.Fatal(err)
	}
	runUntil(app, func() bool { mu.Lock(); defer mu.Unlock(); return processed == 5 })

	committed, _ := cluster.Committed(context.Background(), "shipping", "orders")
	fmt.Println("committed offset:", committed[0])
	// Output:
	// order 0 processed
	// order 1 processed
	// order 2 failed: warehouse unavailable
	// order 2 processed
	// order 3 processed
	// order 4 processed
	// committed offset: 5
}

// quiet keeps ferry's logs out of the examples' output.
var quiet = slog.New(slog.DiscardHandler)

// Karafka's transaction { produce; mark_as_consumed }: in an ExactlyOnce
// topic with ManualOffsets, what the consumer produces and what it marks are
// committed together, in one Kafka transaction — or, if it fails, neither.
func Example_transaction() {
	cluster := exampleCluster("payments", 20)
	defer cluster.Close()
	ctx := context.Background()
	if err := cluster.CreateTopic(ctx, "payments.audited", 1); err != nil {
		log.Fatal(err)
	}
	app, err := ferry.New(
		ferry.Brokers(cluster.Brokers()...),
		ferry.Logger(quiet),
		ferry.TransactionalID("auditor-1"),
		ferry.RouteFunc("audit", "payments", func(ctx context.Context, b *ferry.Batch) error {
			for _, m := range b.Messages {
				if err := b.Produce(ctx, &ferry.Message{Topic: "payments.audited", Value: m.Value}); err != nil {
					return err
				}
				b.Claim().MarkAsConsumed(m) // joins the transaction
			}
			return nil
		}, ferry.WithDelivery(ferry.ExactlyOnce), ferry.ManualOffsets()),
	)
	if err != nil {
		log.Fatal(err)
	}
	committed := func() int64 {
		c, _ := cluster.Committed(ctx, "audit", "payments")
		return c[0]
	}
	runUntil(app, func() bool { return committed() == 20 })
	fmt.Println("committed offset:", committed())
	// Output:
	// committed offset: 20
}

// exampleCluster starts an embedded cluster with a one-partition topic
// holding n messages whose values are "0", "1", ….
func exampleCluster(topic string, n int) *ferrytest.Cluster {
	cluster, err := ferrytest.StartEmbedded()
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cluster.CreateTopic(ctx, topic, 1); err != nil {
		log.Fatal(err)
	}
	if _, err := cluster.ProduceN(ctx, topic, 0, n); err != nil {
		log.Fatal(err)
	}
	return cluster
}

// runUntil runs app until done reports true, then stops it as SIGTERM would
// and waits for the graceful shutdown (Shutdown hooks, final commit).
func runUntil(app *ferry.App, done func() bool) {
	ctx, stop := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() { result <- app.Run(ctx) }()
	wait, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ferrytest.WaitFor(wait, done); err != nil {
		log.Print("example: condition not reached within 30s")
	}
	stop()
	if err := <-result; err != nil {
		log.Fatal(err)
	}
}

// ClientOptions reaches franz-go's own settings: static membership, the
// KIP-848 consumer group protocol, and client tuning.
func ExampleClientOptions() {
	cluster := exampleCluster("invoices", 3)
	defer cluster.Close()

	var handled atomic.Int32
	app, err := ferry.New(
		ferry.Brokers(cluster.Brokers()...),
		ferry.Logger(quiet),
		ferry.RouteFunc("billing", "invoices", func(_ context.Context, b *ferry.Batch) error {
			handled.Add(int32(len(b.Messages)))
			return nil
		}),
		ferry.ClientOptions(
			// Static membership: a member restarted within the session
			// timeout gets its partitions back without a rebalance.
			kgo.InstanceID("billing-1"), // say, the pod name
			// KIP-848: the broker assigns partitions (Kafka 4.0+, 4.3+
			// advised); it needs a sticky or range balancer in the list.
			kgo.ServerSideBalancer(),
			kgo.Balancers(kgo.CooperativeStickyBalancer(), kgo.StickyBalancer()),
			// Client tuning: group timeouts, fetch sizes, TLS, SASL, dialers…
			kgo.SessionTimeout(30*time.Second),
			kgo.FetchMaxBytes(16<<20),
		),
	)
	if err != nil {
		log.Fatal(err)
	}
	runUntil(app, func() bool { return handled.Load() == 3 })
	fmt.Println("invoices handled:", handled.Load())
	// Output:
	// invoices handled: 3
}

// Parallel processing inside a partition: 400 payments of 40 customers on one
// partition, up to 32 at once, each customer's payments one at a time in
// offset order. The committed offset never passes a payment still running.
func ExampleParallel() {
	cluster := exampleCluster("payments", 0)
	defer cluster.Close()
	payments := make([]*kgo.Record, 400)
	for i := range payments {
		payments[i] = &kgo.Record{Key: fmt.Appendf(nil, "customer-%d", i%40), Value: fmt.Append(nil, i)}
	}
	if err := cluster.Produce(context.Background(), "payments", payments...); err != nil {
		log.Fatal(err)
	}

	var mu sync.Mutex
	charged := map[string][]int64{} // customer → offsets, in the order charged
	inOrder, done := true, 0
	app, err := ferry.New(
		ferry.Brokers(cluster.Brokers()...),
		ferry.Logger(quiet),
		ferry.RouteFunc("billing", "payments", func(ctx context.Context, b *ferry.Batch) error {
			// b holds consecutive payments of one customer; batches of
			// different customers run concurrently.
			for _, m := range b.Messages {
				time.Sleep(5 * time.Millisecond) // the payment provider's call
				mu.Lock()
				seen := charged[string(m.Key)]
				if len(seen) > 0 && seen[len(seen)-1] > m.Offset {
					inOrder = false
				}
				charged[string(m.Key)] = append(seen, m.Offset)
				done++
				mu.Unlock()
			}
			return nil
		}, ferry.Parallel(32)),
	)
	if err != nil {
		log.Fatal(err)
	}
	runUntil(app, func() bool { mu.Lock(); defer mu.Unlock(); return done == 400 })

	committed, _ := cluster.Committed(context.Background(), "billing", "payments")
	fmt.Println("customers:", len(charged))
	fmt.Println("each customer's payments in offset order:", inOrder)
	fmt.Println("committed offset:", committed[0])
	// Output:
	// customers: 40
	// each customer's payments in offset order: true
	// committed offset: 400
}
