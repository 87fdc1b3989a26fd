package ferry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Middleware wraps a Consumer, as net/http middleware wraps a Handler: to
// log, time, trace or filter batches. Middleware sees Consume only; the
// consumer's hooks (Initialized, Revoked, Shutdown, EOF) run on the consumer
// itself.
type Middleware func(next Consumer) Consumer

// Use wraps the topic's consumers in middleware, the first outermost.
// Panics anywhere in the chain are recovered by ferry (A6).
func Use(mw ...Middleware) TopicOption {
	return func(t *topicConfig) { t.middleware = append(t.middleware, mw...) }
}

func wrap(c Consumer, mw []Middleware) Consumer {
	for i := len(mw) - 1; i >= 0; i-- {
		c = mw[i](c)
	}
	return c
}

// Decoder turns a message value into T.
type Decoder[T any] func(value []byte) (T, error)

// JSON decodes values as JSON into T.
func JSON[T any]() Decoder[T] {
	return func(value []byte) (T, error) {
		var v T
		err := json.Unmarshal(value, &v)
		return v, err
	}
}

// Decoded is a message with its decoded value. A tombstone (a nil value,
// which deletes its key in a compacted topic) is not decoded: Data is T's
// zero value and Tombstone reports true.
type Decoded[T any] struct {
	*Message
	Data T
}

// Tombstone reports whether the message has a nil value: Data was not
// decoded and is T's zero value. An empty, non-nil value is decoded.
func (d Decoded[T]) Tombstone() bool { return d.Message.Value == nil }

// TypedBatch is a batch whose values were decoded. Items holds the messages
// that decoded and the tombstones, in offset order (not the messages sent
// to the dead-letter topic); Batch still holds them all.
type TypedBatch[T any] struct {
	*Batch
	Items []Decoded[T]
}

// DecodeError is the cause given to the dead-letter topic for a message that
// could not be decoded (E3).
type DecodeError struct {
	Err error
}

func (e *DecodeError) Error() string { return "ferry: cannot decode message: " + e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

// Typed builds a consumer that decodes every value with decode and hands
// the decoded batch to handle. A message that cannot be decoded is sent to
// the topic's dead-letter topic at once, without retries (E3), and handle
// never sees it. Without a dead-letter topic (or if the dispatch fails) the
// batch fails at that message and is retried, so nothing is lost.
//
// A tombstone (nil value) is not given to decode: it reaches handle with
// T's zero value, and its Decoded.Tombstone reports true (E3).
func Typed[T any](decode Decoder[T], handle func(ctx context.Context, b *TypedBatch[T]) error) ConsumerFunc {
	return func(ctx context.Context, b *Batch) error {
		tb := &TypedBatch[T]{Batch: b, Items: make([]Decoded[T], 0, len(b.Messages))}
		for _, m := range b.Messages {
			if m.Value == nil { // a tombstone deletes its key; nothing to decode
				tb.Items = append(tb.Items, Decoded[T]{Message: m})
				continue
			}
			v, err := decode(m.Value)
			if err == nil {
				tb.Items = append(tb.Items, Decoded[T]{Message: m, Data: v})
				continue
			}
			derr := &DecodeError{Err: err}
			if dlqErr := b.Claim().DeadLetter(ctx, m, derr); dlqErr != nil {
				if errors.Is(dlqErr, ErrNoDeadLetter) {
					return FailedAt(m, fmt.Errorf("%w (no dead-letter topic: retrying)", derr))
				}
				return FailedAt(m, fmt.Errorf("%w; dead-letter dispatch failed: %w", derr, dlqErr))
			}
		}
		if len(tb.Items) == 0 {
			return nil
		}
		return handle(ctx, tb)
	}
}
