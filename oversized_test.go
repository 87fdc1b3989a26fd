package ferry_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/twmb/franz-go/pkg/kgo"
)

// bigTopicBytes is the max.message.bytes of the large-message topics here:
// three times Kafka's default, so a 2 MiB message is legal in them.
const bigTopicBytes = 3 << 20

// produceLarge writes records of the given value sizes to the scenario's
// topic, through a client whose batches may be as large as the topic allows.
func (s *scenario) produceLarge(sizes ...int) {
	s.t.Helper()
	for i, n := range sizes {
		r := &kgo.Record{Topic: s.topic, Key: []byte("k" + strconv.Itoa(i)), Value: bytes.Repeat([]byte{'v'}, n)}
		produceRecords(s.t, s.c, []kgo.Opt{kgo.ProducerBatchMaxBytes(bigTopicBytes)}, r)
	}
}

// failing is a consumer that fails every message larger than 1 KiB.
func failing(_ context.Context, b *ferry.Batch) error {
	for _, m := range b.Messages {
		if len(m.Value) > 1<<10 {
			return ferry.FailedAt(m, errors.New("cannot process"))
		}
	}
	return nil
}

// E5, E1: a message of 2 MiB — twice what franz-go's producer takes by
// default, legal in its topic — is dead-lettered whole into a dead-letter
// topic that accepts it, at least once and exactly once, and the partition
// moves on.
func TestOversizedMessageIsDeadLetteredWhole(t *testing.T) {
	for _, delivery := range []ferry.Delivery{ferry.AtLeastOnce, ferry.ExactlyOnce} {
		t.Run(delivery.String(), func(t *testing.T) {
			s := newScenarioWithLimit(t, cluster(t), bigTopicBytes)
			dlq := topicWithLimit(t, s.c, bigTopicBytes+64<<10)
			s.produceLarge(2<<20, 10)
			app := s.startTransactional(s.route(failing, ferry.WithDelivery(delivery),
				ferry.DeadLetter(dlq), ferry.MaxRetries(1), ferry.Retry(ferry.ConstantBackoff(20*time.Millisecond))))
			dead := readAll(t, s.c, dlq, 1)
			s.waitCommitted(map[int32]int64{0: 2})
			s.stop(app)
			if len(dead) != 1 || len(dead[0].Value) != 2<<20 || header(dead[0], ferry.HeaderOmitted) != "" {
				t.Fatalf("dead letters %d, first of %d bytes (omitted %q), want the whole 2 MiB message",
					len(dead), len(dead[0].Value), header(dead[0], ferry.HeaderOmitted))
			}
		})
	}
}

// E5: a dead letter larger than its dead-letter topic accepts can never be
// produced; ferry logs an error naming the limit, parks a reference to the
// message (its key and headers, no value) and moves on — the message stays
// in its topic at the offset the reference names.
func TestDeadLetterTooLargeForItsTopicParksAReference(t *testing.T) {
	s := newScenarioWithLimit(t, cluster(t), bigTopicBytes)
	dlq := topicWithLimit(t, s.c, 0) // the cluster's default, about 1 MB
	s.produceLarge(2<<20, 10)
	log, sink := testLogger(t)
	app := s.start(ferry.Logger(log), s.route(failing, ferry.DeadLetter(dlq), ferry.MaxRetries(1),
		ferry.Retry(ferry.ConstantBackoff(20*time.Millisecond))))
	dead := readAll(t, s.c, dlq, 1)
	s.waitCommitted(map[int32]int64{0: 2})
	s.stop(app)

	d := dead[0]
	if len(dead) != 1 || d.Value != nil || string(d.Key) != "k0" {
		t.Fatalf("dead letters %d, first key %q with %d value bytes, want one reference to k0 without its value", len(dead), d.Key, len(d.Value))
	}
	if got, want := header(d, ferry.HeaderOmitted), "value (2097152 bytes)"; got != want {
		t.Errorf("%s header %q, want %q", ferry.HeaderOmitted, got, want)
	}
	if header(d, ferry.HeaderOriginalTopic) != s.topic || header(d, ferry.HeaderOriginalOffset) != "0" {
		t.Errorf("reference names %s@%s, want %s@0", header(d, ferry.HeaderOriginalTopic), header(d, ferry.HeaderOriginalOffset), s.topic)
	}
	if out := sink.String(); !strings.Contains(out, "max.message.bytes is") || !strings.Contains(out, "parking a reference") {
		t.Errorf("log does not name the limit:\n%s", out)
	}
}

// E5, O3: a handler's Batch.Produce of a 2 MiB record succeeds into a topic
// that accepts it; into a topic that does not, it fails at once with
// ErrMessageTooLarge naming the topic's limit.
func TestProduceFromHandlerIsSizedByTheTopic(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	big := topicWithLimit(t, s.c, bigTopicBytes)
	small := topicWithLimit(t, s.c, 100_000)
	s.produce(0, 1)
	var once sync.Once
	var toBig, toSmall error // written once, before done is closed
	done := make(chan struct{})
	app := s.start(s.route(func(ctx context.Context, b *ferry.Batch) error {
		value := bytes.Repeat([]byte{'v'}, 2<<20)
		errBig := b.Produce(ctx, &ferry.Message{Topic: big, Value: value})
		errSmall := b.Produce(ctx, &ferry.Message{Topic: small, Value: value})
		once.Do(func() {
			toBig, toSmall = errBig, errSmall
			close(done)
		})
		return nil
	}))
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the handler never ran")
	}
	s.stop(app)
	if toBig != nil {
		t.Errorf("2 MiB into a topic accepting %d bytes: %v", bigTopicBytes, toBig)
	}
	if !errors.Is(toSmall, ferry.ErrMessageTooLarge) || !strings.Contains(toSmall.Error(), "max.message.bytes is 100000 bytes") {
		t.Errorf("2 MiB into a topic accepting 100000 bytes: %v, want ErrMessageTooLarge naming the limit", toSmall)
	}
}

// E5, S3: in an exactly-once topic, a handler's Batch.Produce of a record too
// large for its topic fails at once with ErrMessageTooLarge naming the
// limit; the handler returning it fails its message, which after MaxRetries
// is dead-lettered inside the transaction, and the partition moves on.
func TestExactlyOnceProduceTooLargeIsDeadLettered(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	small := topicWithLimit(t, s.c, 100_000)
	dlq := topic(t, s.c, 1)
	s.produce(0, 3)
	var mu sync.Mutex
	var produceErrs []error
	fn := func(ctx context.Context, b *ferry.Batch) error {
		for _, m := range b.Messages {
			value := []byte("ok")
			if string(m.Value) == "1" {
				value = bytes.Repeat([]byte{'v'}, 2<<20)
			}
			if err := b.Produce(ctx, &ferry.Message{Topic: small, Value: value}); err != nil {
				mu.Lock()
				produceErrs = append(produceErrs, err)
				mu.Unlock()
				return ferry.FailedAt(m, err)
			}
		}
		return nil
	}
	app := s.startTransactional(s.route(fn, ferry.WithDelivery(ferry.ExactlyOnce),
		ferry.DeadLetter(dlq), ferry.MaxRetries(1), ferry.Retry(ferry.ConstantBackoff(20*time.Millisecond))))
	dead := readAll(t, s.c, dlq, 1)
	s.waitCommitted(map[int32]int64{0: 3})
	s.stop(app)
	if len(dead) != 1 || string(dead[0].Value) != "1" {
		t.Errorf("dead letters %v, want the message whose output was too large", values(dead))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(produceErrs) == 0 || !errors.Is(produceErrs[0], ferry.ErrMessageTooLarge) ||
		!strings.Contains(produceErrs[0].Error(), "max.message.bytes is 100000 bytes") {
		t.Errorf("Batch.Produce errors %v, want ErrMessageTooLarge naming the limit", produceErrs)
	}
}
