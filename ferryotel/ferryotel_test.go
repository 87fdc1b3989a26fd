package ferryotel_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferryotel"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// setup starts the cluster and a tracer provider recording into exp.
func setup(t *testing.T) (*ferrytest.Cluster, *tracetest.InMemoryExporter, *sdktrace.TracerProvider) {
	t.Helper()
	c := ferrytest.New(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return c, exp, tp
}

// produced writes n messages to partition 0 of a new topic, each carrying
// the trace context of a producer span of its own; it returns the topic
// and those spans' contexts, by offset.
func produced(t *testing.T, c *ferrytest.Cluster, tp trace.TracerProvider, n int) (string, []trace.SpanContext) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := ferrytest.UniqueName("t")
	if err := c.CreateTopic(ctx, topic, 1); err != nil {
		t.Fatal(err)
	}
	var sent []trace.SpanContext
	for i := range n {
		pctx, span := tp.Tracer("test").Start(ctx, "send", trace.WithSpanKind(trace.SpanKindProducer))
		rec := &kgo.Record{Topic: topic, Partition: 0, Value: []byte(strconv.Itoa(i)),
			Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("stale")}}} // replaced by Inject
		ferryotel.Inject(pctx, rec)
		span.End()
		if err := c.Produce(ctx, topic, rec); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, span.SpanContext())
	}
	return topic, sent
}

// run consumes topic with the middleware until fn saw n messages.
func run(t *testing.T, c *ferrytest.Cluster, tp trace.TracerProvider, group, topic string, n int, fn ferry.ConsumerFunc, opts ...ferry.TopicOption) {
	t.Helper()
	seen := make(chan int, 1000)
	app, err := ferry.New(
		ferry.Brokers(c.Brokers()...),
		ferry.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		ferry.RouteFunc(group, topic, func(ctx context.Context, b *ferry.Batch) error {
			if err := fn(ctx, b); err != nil {
				return err
			}
			seen <- len(b.Messages)
			return nil
		}, append(opts, ferry.Use(ferryotel.Middleware(ferryotel.WithTracerProvider(tp))))...),
	)
	if err != nil {
		t.Fatal(err)
	}
	running := ferrytest.Run(t, app)
	defer func() {
		if err := running.Stop(); err != nil {
			t.Error(err)
		}
	}()
	timeout := time.After(60 * time.Second)
	for got := 0; got < n; {
		select {
		case k := <-seen:
			got += k
		case <-timeout:
			t.Fatalf("consumed %d of %d messages", got, n)
		}
	}
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value)
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// X5: with one message per batch, each consume span continues the trace of
// its message's traceparent, carries the messaging conventions, and a
// failed attempt is a failed span.
func TestConsumeSpanContinuesTheMessagesTrace(t *testing.T) {
	c, exp, tp := setup(t)
	topic, sent := produced(t, c, tp, 3)
	group := ferrytest.UniqueName("g")
	failed := false
	run(t, c, tp, group, topic, 3, func(ctx context.Context, b *ferry.Batch) error {
		if !trace.SpanContextFromContext(ctx).IsValid() {
			t.Error("Consume's context carries no span")
		}
		if b.Messages[0].Offset == 1 && !failed {
			failed = true
			return errors.New("first attempt fails")
		}
		return nil
	}, ferry.MaxMessages(1), ferry.Retry(ferry.ConstantBackoff(50*time.Millisecond)))

	var process []sdktrace.ReadOnlySpan
	for _, s := range exp.GetSpans().Snapshots() {
		if s.Name() == "process "+topic {
			process = append(process, s)
		}
	}
	if len(process) != 4 { // offsets 0, 1 (failed), 1, 2
		t.Fatalf("%d consume spans, want 4", len(process))
	}
	failures := 0
	for _, s := range process {
		a := attrs(s)
		off := a["messaging.kafka.offset"].AsInt64()
		if s.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("span kind %v", s.SpanKind())
		}
		if s.Parent().TraceID() != sent[off].TraceID() || s.Parent().SpanID() != sent[off].SpanID() {
			t.Errorf("offset %d: parent %v, want the producer span %v", off, s.Parent(), sent[off])
		}
		for k, v := range map[attribute.Key]string{"messaging.system": "kafka", "messaging.operation.type": "process",
			"messaging.destination.name": topic, "messaging.destination.partition.id": "0", "messaging.consumer.group.name": group} {
			if got := a[k].AsString(); got != v {
				t.Errorf("offset %d: %s = %q, want %q", off, k, got, v)
			}
		}
		if s.Status().Code == codes.Error {
			failures++
			if off != 1 || a["ferry.attempt"].AsInt64() != 1 {
				t.Errorf("failed span at offset %d, attempt %d", off, a["ferry.attempt"].AsInt64())
			}
		}
	}
	if failures != 1 {
		t.Errorf("%d failed spans, want 1", failures)
	}
}

// X5: a batch of several messages is one span, a child of the first
// message's trace, linked to every message's; Start gives one message a
// span of its own in its own trace.
func TestBatchSpanLinksEveryMessage(t *testing.T) {
	c, exp, tp := setup(t)
	topic, sent := produced(t, c, tp, 5)
	run(t, c, tp, ferrytest.UniqueName("g"), topic, 5, func(ctx context.Context, b *ferry.Batch) error {
		for _, m := range b.Messages {
			_, span := ferryotel.Start(ctx, b.Claim(), m, ferryotel.WithTracerProvider(tp))
			span.End(nil)
		}
		return nil
	}, ferry.MaxWait(5*time.Second)) // all five in one batch

	var batch []sdktrace.ReadOnlySpan
	perMessage := map[int64]sdktrace.ReadOnlySpan{}
	for _, s := range exp.GetSpans().Snapshots() {
		if s.Name() != "process "+topic {
			continue
		}
		if a := attrs(s); a["messaging.batch.message_count"].Type() != attribute.INVALID {
			batch = append(batch, s)
		} else {
			perMessage[a["messaging.kafka.offset"].AsInt64()] = s
		}
	}
	if len(batch) != 1 {
		t.Fatalf("%d batch spans, want 1", len(batch))
	}
	b := batch[0]
	if n := attrs(b)["messaging.batch.message_count"].AsInt64(); n != 5 {
		t.Errorf("message_count %d", n)
	}
	if b.Parent().SpanID() != sent[0].SpanID() {
		t.Errorf("batch parent %v, want the first message's %v", b.Parent(), sent[0])
	}
	if len(b.Links()) != 5 {
		t.Fatalf("%d links, want 5", len(b.Links()))
	}
	for i, l := range b.Links() {
		if l.SpanContext.SpanID() != sent[i].SpanID() {
			t.Errorf("link %d: %v, want %v", i, l.SpanContext, sent[i])
		}
	}
	for off, want := range sent {
		s, ok := perMessage[int64(off)]
		if !ok {
			t.Fatalf("no span for message %d", off)
		}
		if s.Parent().SpanID() != want.SpanID() || s.SpanContext().TraceID() != want.TraceID() {
			t.Errorf("message %d: parent %v, want %v", off, s.Parent(), want)
		}
		if len(s.Links()) != 1 || s.Links()[0].SpanContext.SpanID() != b.SpanContext().SpanID() {
			t.Errorf("message %d: links %v, want the batch span", off, s.Links())
		}
	}
}
