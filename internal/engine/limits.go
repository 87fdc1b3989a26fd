package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrMessageTooLarge is the error of a record larger than its topic accepts:
// producing it can never succeed as it is (E5).
var ErrMessageTooLarge = errors.New("ferry: message larger than its topic accepts")

const (
	// defaultBatchMaxBytes caps a record batch while a topic's limit is
	// unknown: franz-go's default, Kafka's historical max.message.bytes.
	defaultBatchMaxBytes = 1_000_012
	// maxBatchMaxBytes caps what ferry's producers write in one batch
	// whatever a topic allows: franz-go's BrokerMaxWriteBytes default and
	// Kafka's socket.request.max.bytes default (100 MiB).
	maxBatchMaxBytes = 100 << 20
)

// TopicLimits learns the max.message.bytes of the topics ferry's producers
// write to, so that a dead letter or a produced record as large as the topic
// accepts is accepted by the producer too: franz-go otherwise caps every
// record batch at about 1 MB whatever the topic allows. One TopicLimits
// serves every producing client of an App.
type TopicLimits struct {
	mu     sync.RWMutex
	bytes  map[string]int32     // topic → max.message.bytes, capped
	failed map[string]time.Time // topic → when describing it last failed
}

// retryDescribe is how long a topic that could not be described (missing,
// or not allowed) keeps the default limit before ferry asks again, so that
// producing to it does not cost a request each time.
const retryDescribe = 30 * time.Second

// NewTopicLimits returns limits that know no topic yet.
func NewTopicLimits() *TopicLimits {
	return &TopicLimits{bytes: make(map[string]int32), failed: make(map[string]time.Time)}
}

// ProducerOpt sizes a client's record batches per topic by its limit. kgo
// asks once per partition, when it first produces to it: Learn before that.
func (l *TopicLimits) ProducerOpt() kgo.Opt {
	return kgo.ProducerBatchMaxBytesFn(l.batchMaxBytes)
}

func (l *TopicLimits) batchMaxBytes(topic string) int32 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if n, ok := l.bytes[topic]; ok {
		return n
	}
	return defaultBatchMaxBytes
}

// known reports whether topic's limit was learned.
func (l *TopicLimits) known(topic string) (int32, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	n, ok := l.bytes[topic]
	return n, ok
}

// toLearn reports whether topic's limit is unknown and worth asking for.
func (l *TopicLimits) toLearn(topic string) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if _, ok := l.bytes[topic]; ok {
		return false
	}
	at, failed := l.failed[topic]
	return !failed || time.Since(at) > retryDescribe
}

// Learn describes the configuration of the topics of recs whose limit is not
// known yet. A topic that cannot be described (missing, or not allowed) is
// left unknown: its batches keep the default cap, and a later call tries
// again.
func (l *TopicLimits) Learn(ctx context.Context, cl *kgo.Client, recs ...*kgo.Record) {
	var unknown []string
	for _, r := range recs {
		if !slices.Contains(unknown, r.Topic) && l.toLearn(r.Topic) {
			unknown = append(unknown, r.Topic)
		}
	}
	if len(unknown) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	configs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, unknown...)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, topic := range unknown {
		l.failed[topic] = time.Now() // until its limit is read below
	}
	if err != nil {
		return
	}
	for _, rc := range configs {
		if rc.Err != nil {
			continue
		}
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			if n, err := strconv.ParseInt(*c.Value, 10, 64); err == nil && n > 0 {
				l.bytes[rc.Name] = int32(min(max(n, 512), maxBatchMaxBytes))
				delete(l.failed, rc.Name)
			}
		}
	}
}

// recordBatchOverhead is the size of a record batch holding no record (the
// v2 batch header as franz-go counts it against ProducerBatchMaxBytes).
const recordBatchOverhead = 65

// slack covers what franz-go adds to a batch's size for some request
// versions, so that Check never passes a record franz-go would refuse.
const slack = 16

// Check reports, before producing, a record that can never be produced: one
// that, alone in a batch, is larger than its topic's learned limit. It
// returns an error wrapping ErrMessageTooLarge, or nil (also when the limit
// is not known). Records produced without waiting (inside a transaction)
// are checked so, since their failure would otherwise surface only when the
// transaction commits, with no message to blame.
func (l *TopicLimits) Check(r *kgo.Record) error {
	limit, ok := l.known(r.Topic)
	if !ok || aloneInBatch(r)+slack <= int(limit) {
		return nil
	}
	return l.Explain(r, kerr.MessageTooLarge)
}

// aloneInBatch is the size of a record batch holding r alone, as franz-go
// measures it: the batch header and the record with its length prefix.
func aloneInBatch(r *kgo.Record) int {
	n := 1 + 1 + 1 + // attributes, timestamp delta 0, offset delta 0
		kbin.VarintLen(int32(len(r.Key))) + len(r.Key) +
		kbin.VarintLen(int32(len(r.Value))) + len(r.Value) +
		kbin.VarintLen(int32(len(r.Headers)))
	for _, h := range r.Headers {
		n += kbin.VarintLen(int32(len(h.Key))) + len(h.Key) + kbin.VarintLen(int32(len(h.Value))) + len(h.Value)
	}
	return recordBatchOverhead + kbin.VarintLen(int32(n)) + n
}

// ProduceSync learns the limits of recs' topics, produces recs and waits for
// their acks. A record too large for its topic fails with an error wrapping
// ErrMessageTooLarge that names the limit.
func (l *TopicLimits) ProduceSync(ctx context.Context, cl *kgo.Client, recs ...*kgo.Record) error {
	l.Learn(ctx, cl, recs...)
	for _, res := range cl.ProduceSync(ctx, recs...) {
		if res.Err != nil {
			return l.Explain(res.Record, res.Err)
		}
	}
	return nil
}

// Explain turns franz-go's or the broker's MESSAGE_TOO_LARGE for r into an
// error wrapping ErrMessageTooLarge that names the record's size and the
// topic's limit; other errors are returned as they are.
func (l *TopicLimits) Explain(r *kgo.Record, err error) error {
	if !errors.Is(err, kerr.MessageTooLarge) && !errors.Is(err, kerr.RecordListTooLarge) {
		return err
	}
	limit := "unknown"
	if n, ok := l.known(r.Topic); ok {
		limit = strconv.Itoa(int(n)) + " bytes"
	}
	return fmt.Errorf("%w: a record of %d bytes for topic %q, whose max.message.bytes is %s (%w)",
		ErrMessageTooLarge, recordSize(r), r.Topic, limit, err)
}
