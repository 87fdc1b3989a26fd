// Package ferryotel traces ferry consumers with OpenTelemetry (X5): each
// batch runs in a consume span that continues the trace its messages carry
// in a W3C traceparent header, with the messaging semantic conventions.
//
//	ferry.Route("billing", "invoices", newBiller, ferry.Use(ferryotel.Middleware()))
//
// The batch span, named "process <topic>" and of kind consumer, is a child
// of the trace context of the batch's first message that carries one, and
// links to the trace context of every message that carries one (the
// conventions' way to relate a batch to many producers). With
// MaxMessages(1) every message's processing therefore continues its own
// trace. To give each message of a bigger batch a span of its own, call
// Start inside Consume.
//
// A producer puts the context into a record with Inject; Extract reads it
// back.
package ferryotel

import (
	"context"
	"strconv"

	"github.com/ferrykit/ferry"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

const scope = "github.com/ferrykit/ferry/ferryotel"

// maxLinks caps the links of one batch span.
const maxLinks = 128

// Option configures the middleware and Start.
type Option func(*config)

type config struct {
	provider   trace.TracerProvider
	propagator propagation.TextMapPropagator
}

// WithTracerProvider sets where spans go. Default: otel.GetTracerProvider().
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.provider = tp }
}

// WithPropagator sets how trace context is read from and written to
// headers. Default: W3C Trace Context (traceparent, tracestate).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.propagator = p }
}

func newConfig(opts []Option) config {
	c := config{provider: otel.GetTracerProvider(), propagator: propagation.TraceContext{}}
	for _, o := range opts {
		o(&c)
	}
	return c
}

func (c config) tracer() trace.Tracer { return c.provider.Tracer(scope) }

// headers adapts a message's headers to a propagation carrier.
type headers struct{ r *kgo.Record }

func (h headers) Get(key string) string {
	for i := len(h.r.Headers) - 1; i >= 0; i-- {
		if h.r.Headers[i].Key == key {
			return string(h.r.Headers[i].Value)
		}
	}
	return ""
}

func (h headers) Set(key, value string) {
	kept := h.r.Headers[:0]
	for _, hd := range h.r.Headers {
		if hd.Key != key {
			kept = append(kept, hd)
		}
	}
	h.r.Headers = append(kept, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

func (h headers) Keys() []string {
	keys := make([]string, len(h.r.Headers))
	for i, hd := range h.r.Headers {
		keys[i] = hd.Key
	}
	return keys
}

// Inject writes the trace context of ctx into rec's headers, replacing any
// there: call it before producing, so consumers continue the trace.
func Inject(ctx context.Context, rec *kgo.Record, opts ...Option) {
	newConfig(opts).propagator.Inject(ctx, headers{rec})
}

// Extract returns ctx carrying the trace context of msg's headers, if any.
func Extract(ctx context.Context, msg *ferry.Message, opts ...Option) context.Context {
	return newConfig(opts).propagator.Extract(ctx, headers{msg})
}

// Middleware runs every batch in a consume span; an error or panic (which
// ferry recovers) marks the span failed.
func Middleware(opts ...Option) ferry.Middleware {
	c := newConfig(opts)
	tracer := c.tracer()
	return func(next ferry.Consumer) ferry.Consumer {
		return ferry.ConsumerFunc(func(ctx context.Context, b *ferry.Batch) (err error) {
			parent := ctx
			var links []trace.Link
			for _, m := range b.Messages {
				sc := trace.SpanContextFromContext(c.propagator.Extract(ctx, headers{m}))
				if !sc.IsValid() {
					continue
				}
				if len(links) == 0 {
					parent = trace.ContextWithRemoteSpanContext(ctx, sc)
				}
				if len(links) < maxLinks {
					links = append(links, trace.Link{SpanContext: sc})
				}
			}
			attrs := spanAttributes(b.Claim(), b.Topic, b.Partition)
			attrs = append(attrs, attribute.Int("ferry.attempt", b.Attempt))
			if len(b.Messages) == 1 {
				attrs = append(attrs, semconv.MessagingKafkaOffset(int(b.Messages[0].Offset)))
			} else {
				attrs = append(attrs, semconv.MessagingBatchMessageCount(len(b.Messages)))
			}
			ctx, span := tracer.Start(parent, "process "+b.Topic, trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(attrs...), trace.WithLinks(links...))
			defer func() {
				if v := recover(); v != nil {
					span.SetStatus(codes.Error, "panic")
					span.End()
					panic(v) // ferry recovers it (A6)
				}
				end(span, err)
			}()
			return next.Consume(ctx, b)
		})
	}
}

// Start starts a consume span for one message inside Consume: a child of
// the message's trace context (or of ctx's span when it carries none),
// linked to ctx's span — the batch span under Middleware. End it when the
// message is done; pass the error to End to mark it failed.
func Start(ctx context.Context, claim *ferry.Claim, msg *ferry.Message, opts ...Option) (context.Context, *Span) {
	c := newConfig(opts)
	parent := ctx
	var links []trace.Link
	if sc := trace.SpanContextFromContext(c.propagator.Extract(ctx, headers{msg})); sc.IsValid() {
		parent = trace.ContextWithRemoteSpanContext(ctx, sc)
		if batch := trace.SpanContextFromContext(ctx); batch.IsValid() {
			links = append(links, trace.Link{SpanContext: batch})
		}
	}
	attrs := append(spanAttributes(claim, msg.Topic, msg.Partition), semconv.MessagingKafkaOffset(int(msg.Offset)))
	ctx, span := c.tracer().Start(parent, "process "+msg.Topic, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attrs...), trace.WithLinks(links...))
	return ctx, &Span{span}
}

// Span is a message's consume span.
type Span struct{ span trace.Span }

// End ends the span; a non-nil err marks it failed.
func (s *Span) End(err error) { end(s.span, err) }

func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

func spanAttributes(claim *ferry.Claim, topic string, partition int32) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKafka,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(topic),
		semconv.MessagingDestinationPartitionID(strconv.Itoa(int(partition))),
	}
	if claim != nil {
		attrs = append(attrs, semconv.MessagingConsumerGroupName(claim.Group()))
	}
	return attrs
}
