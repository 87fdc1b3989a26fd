package ferry

import (
	"context"
	"errors"
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
	// HeaderOmitted marks a dead letter too large for its dead-letter topic
	// (E5): ferry parked it without its value ("value (N bytes)"), or with
	// ferry's headers alone ("key (N bytes), value (N bytes), headers
	// (N)"). The message itself stays in its topic at the offset named.
	HeaderOmitted = engine.HeaderOmitted
)

// ErrMessageTooLarge is the error of a record larger than its topic accepts
// (its max.message.bytes): producing it can never succeed as it is (E5).
// Batch.Produce and Claim.DeadLetter return errors wrapping it that name the
// record's size and the topic's limit.
var ErrMessageTooLarge = engine.ErrMessageTooLarge

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
// and is retried (E4). The dead-letter topic must exist. A dead letter
// larger than the dead-letter topic's max.message.bytes is parked without
// its value (HeaderOmitted says so) and the error naming the limit is logged
// (E5).
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

// producer writes records outside transactions — dead letters, and
// Batch.Produce on non-transactional topics — through one client per app,
// created on first use and closed when Run returns.
type producer struct {
	brokers []string
	opts    []kgo.Opt
	limits  *engine.TopicLimits // each topic's max.message.bytes (E5), shared with the groups
	mu      sync.Mutex
	cl      *kgo.Client
}

func (p *producer) client() (*kgo.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cl != nil {
		return p.cl, nil
	}
	// E5: batches sized by each topic's max.message.bytes, before the
	// user's options so that their ProducerBatchMaxBytes wins.
	opts := append([]kgo.Opt{p.limits.ProducerOpt()}, p.opts...)
	opts = append(opts,
		kgo.SeedBrokers(p.brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.UnknownTopicRetries(2), // a missing topic fails fast (E4)
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	p.cl = cl
	return cl, nil
}

func (p *producer) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cl != nil {
		p.cl.Close()
		p.cl = nil
	}
}

// produce writes recs and waits for their acks. A record larger than its
// topic accepts fails with an error wrapping ErrMessageTooLarge that names
// the limit.
func (p *producer) produce(ctx context.Context, recs ...*kgo.Record) error {
	cl, err := p.client()
	if err != nil {
		return err
	}
	return p.limits.ProduceSync(ctx, cl, recs...)
}

// deadLetterRecord returns the engine's builder of dead letters for one
// dead-letter topic: the original key, value and headers, plus headers
// naming the origin, the error, the attempts and the time (E1).
func deadLetterRecord(topic string, clock Clock) func(*kgo.Record, error, int) *kgo.Record {
	return func(r *kgo.Record, cause error, attempts int) *kgo.Record {
		if cause == nil {
			cause = errors.New("dead-lettered by the consumer")
		}
		return &kgo.Record{
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
				kgo.RecordHeader{Key: HeaderFailedAt, Value: []byte(clock.Now().UTC().Format(time.RFC3339Nano))},
			),
		}
	}
}

// DeadLetter sends msg to the topic's dead-letter topic now, with cause in
// its headers (E2), and the attempt msg is in (Batch.Attempt of its batch)
// as its attempt count. It does not mark msg: in automatic mode a successful
// batch marks it anyway; with ManualOffsets mark it yourself. It returns
// ErrNoDeadLetter when the topic has none.
func (c *Claim) DeadLetter(ctx context.Context, msg *Message, cause error) error {
	return c.p.DeadLetter(ctx, msg, cause)
}
