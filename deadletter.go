package ferry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ferrykit/ferry/internal/engine"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Headers ferry adds to a dead-lettered message, after its own headers (E1).
const (
	HeaderOriginalTopic     = "ferry-original-topic"
	HeaderOriginalPartition = "ferry-original-partition"
	HeaderOriginalOffset    = "ferry-original-offset"
	HeaderError             = "ferry-error"
	HeaderAttempts          = "ferry-attempts"
	HeaderFailedAt          = "ferry-failed-at" // RFC 3339, UTC
)

// MessageError names the message of a batch that failed. Return it (or wrap
// it) from Consume: the messages before it count as processed and are
// marked, the retry starts at it, and only it goes to the dead-letter topic
// once the retries are spent.
type MessageError = engine.MessageError

// FailedAt returns a *MessageError blaming msg for err.
func FailedAt(msg *Message, err error) error {
	return &MessageError{Message: msg, Err: err}
}

// ErrNoDeadLetter is returned by Claim.DeadLetter on a topic routed without
// a dead-letter topic.
var ErrNoDeadLetter = engine.ErrNoDeadLetter

// DeadLetter names the topic's dead-letter topic (E1). A message still
// failing after MaxRetries retries (default 3 with a dead-letter topic) is
// produced to it — key, value and headers kept, plus headers naming its
// origin, the error, the attempt count and the time — and then marked, and
// the partition moves on. If the dispatch fails the message stays unmarked
// and is retried (E4). The dead-letter topic must exist.
func DeadLetter(topic string) TopicOption {
	return func(t *topicConfig) { t.deadLetter = topic }
}

// MaxRetries sets how many times a failing message is retried before it goes
// to the dead-letter topic: MaxRetries(2) means three attempts. It requires
// DeadLetter; without a dead-letter topic ferry retries forever, as Karafka
// does, so nothing is lost.
func MaxRetries(n int) TopicOption {
	return func(t *topicConfig) { t.maxRetries = n; t.maxRetriesSet = true }
}

// deadLetters produces dead-lettered messages through one client per app,
// created when the app runs.
type deadLetters struct {
	brokers []string
	opts    []kgo.Opt
	clock   Clock
	mu      sync.Mutex
	cl      *kgo.Client
}

func (d *deadLetters) client() (*kgo.Client, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cl != nil {
		return d.cl, nil
	}
	opts := append(append([]kgo.Opt(nil), d.opts...),
		kgo.SeedBrokers(d.brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.UnknownTopicRetries(2), // a missing dead-letter topic fails fast (E4)
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	d.cl = cl
	return cl, nil
}

func (d *deadLetters) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cl != nil {
		d.cl.Close()
		d.cl = nil
	}
}

// dispatcher returns the engine's dead-letter function for one topic.
func (d *deadLetters) dispatcher(topic string) func(context.Context, *kgo.Record, error, int) error {
	return func(ctx context.Context, r *kgo.Record, cause error, attempts int) error {
		cl, err := d.client()
		if err != nil {
			return err
		}
		if cause == nil {
			cause = errors.New("dead-lettered by the consumer")
		}
		out := &kgo.Record{
			Topic:     topic,
			Key:       r.Key,
			Value:     r.Value,
			Timestamp: r.Timestamp,
			Headers: append(append([]kgo.RecordHeader(nil), r.Headers...),
				kgo.RecordHeader{Key: HeaderOriginalTopic, Value: []byte(r.Topic)},
				kgo.RecordHeader{Key: HeaderOriginalPartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
				kgo.RecordHeader{Key: HeaderOriginalOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
				kgo.RecordHeader{Key: HeaderError, Value: []byte(cause.Error())},
				kgo.RecordHeader{Key: HeaderAttempts, Value: []byte(strconv.Itoa(attempts))},
				kgo.RecordHeader{Key: HeaderFailedAt, Value: []byte(d.clock.Now().UTC().Format(time.RFC3339Nano))},
			),
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := cl.ProduceSync(ctx, out).FirstErr(); err != nil {
			return fmt.Errorf("ferry: dead-letter to %q: %w", topic, err)
		}
		return nil
	}
}

// DeadLetter sends msg to the topic's dead-letter topic now, with cause in
// its headers (E2). It does not mark msg: in automatic mode a successful
// batch marks it anyway; with ManualOffsets mark it yourself. It returns
// ErrNoDeadLetter when the topic has none.
func (c *Claim) DeadLetter(ctx context.Context, msg *Message, cause error) error {
	return c.p.DeadLetter(ctx, msg, cause)
}
