package ferry_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produceRecords writes recs synchronously with a client that honours each
// record's Partition, and returns them with their offsets filled in. extra
// options (such as a larger ProducerBatchMaxBytes) are added to the client.
func produceRecords(t *testing.T, c *ferrytest.Cluster, extra []kgo.Opt, recs ...*kgo.Record) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(c.Brokers()...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
	}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctxFor(t, 30*time.Second), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return recs
}

// messages keeps every message handed to its consumers, in delivery order,
// and feeds a recorder for waiting.
type messages struct {
	rec  *recorder
	mu   sync.Mutex
	msgs []*ferry.Message
}

func newMessages() *messages { return &messages{rec: newRecorder()} }

func (m *messages) fn() ferry.ConsumerFunc {
	return func(_ context.Context, b *ferry.Batch) error {
		m.mu.Lock()
		m.msgs = append(m.msgs, b.Messages...)
		m.mu.Unlock()
		m.rec.record(b)
		return nil
	}
}

// at returns the first delivered message of topic/partition at offset.
func (m *messages) at(t *testing.T, topic string, partition int32, offset int64) *ferry.Message {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, msg := range m.msgs {
		if msg.Topic == topic && msg.Partition == partition && msg.Offset == offset {
			return msg
		}
	}
	t.Fatalf("no message delivered at %s/%d@%d", topic, partition, offset)
	return nil
}

// sameBytes compares two byte slices including their nil-ness: a tombstone
// (nil) must not arrive as empty, nor empty as nil.
func sameBytes(got, want []byte) bool {
	return (got == nil) == (want == nil) && bytes.Equal(got, want)
}

func describe(b []byte) string {
	switch {
	case b == nil:
		return "nil"
	case len(b) == 0:
		return "empty"
	case len(b) > 32:
		return string(b[:32]) + "…"
	}
	return string(b)
}

// B5: every field of a message arrives as produced — topic, partition,
// offset, key, value, headers (repeated keys kept, in order), timestamp and
// leader epoch — and nil and empty keys and values are told apart.
func TestMessageFields(t *testing.T) {
	s := newScenario(t, cluster(t), 2)
	c, tp := s.c, s.topic
	const part = 1 // not partition 0, so a wrong partition shows
	ts := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	headers := []kgo.RecordHeader{
		{Key: "a", Value: []byte("1")},
		{Key: "b", Value: []byte("2")},
		{Key: "a", Value: []byte("3")},
		{Key: "", Value: []byte("no key")},
		{Key: "a", Value: []byte("4")},
	}
	produced := produceRecords(t, c, nil,
		&kgo.Record{Topic: tp, Partition: part, Key: []byte("k0"), Value: []byte("v0"), Headers: headers, Timestamp: ts},
		&kgo.Record{Topic: tp, Partition: part, Key: []byte("k1"), Value: nil, Timestamp: ts.Add(time.Millisecond)}, // tombstone
		&kgo.Record{Topic: tp, Partition: part, Key: []byte("k2"), Value: []byte{}, Timestamp: ts.Add(2 * time.Millisecond)},
		&kgo.Record{Topic: tp, Partition: part, Key: nil, Value: []byte("v3"), Timestamp: ts.Add(3 * time.Millisecond)},
		&kgo.Record{Topic: tp, Partition: part, Key: []byte{}, Value: []byte("v4"), Timestamp: ts.Add(4 * time.Millisecond)},
		&kgo.Record{Topic: tp, Partition: part, Key: nil, Value: nil, Timestamp: ts.Add(5 * time.Millisecond)},
	)

	details, err := c.Admin().ListTopics(ctxFor(t, 10*time.Second), tp)
	if err != nil {
		t.Fatal(err)
	}
	pd, ok := details[tp].Partitions[part]
	if !ok || pd.Err != nil {
		t.Fatalf("metadata of %s/%d: %+v", tp, part, pd)
	}

	m := s.messages()
	app := s.start(s.route(m.fn()))
	s.waitSeen(len(produced))
	s.stop(app)

	for i, want := range produced {
		got := m.at(t, tp, part, want.Offset)
		if got.Topic != tp || got.Partition != part || got.Offset != want.Offset {
			t.Errorf("record %d: at %s/%d@%d, want %s/%d@%d", i, got.Topic, got.Partition, got.Offset, tp, part, want.Offset)
		}
		if !sameBytes(got.Key, want.Key) {
			t.Errorf("record %d: key %s, want %s", i, describe(got.Key), describe(want.Key))
		}
		if !sameBytes(got.Value, want.Value) {
			t.Errorf("record %d: value %s, want %s", i, describe(got.Value), describe(want.Value))
		}
		if !got.Timestamp.Equal(want.Timestamp) {
			t.Errorf("record %d: timestamp %v, want %v", i, got.Timestamp, want.Timestamp)
		}
		if got.LeaderEpoch != pd.LeaderEpoch {
			t.Errorf("record %d: leader epoch %d, want the partition's %d", i, got.LeaderEpoch, pd.LeaderEpoch)
		}
		if len(got.Headers) != len(want.Headers) {
			t.Errorf("record %d: %d headers %v, want %d %v", i, len(got.Headers), got.Headers, len(want.Headers), want.Headers)
			continue
		}
		for j, h := range want.Headers {
			if got.Headers[j].Key != h.Key || !bytes.Equal(got.Headers[j].Value, h.Value) {
				t.Errorf("record %d: header %d is %q=%q, want %q=%q (order and repeats kept)",
					i, j, got.Headers[j].Key, got.Headers[j].Value, h.Key, h.Value)
			}
		}
	}
	if d := s.rec.duplicates(tp); d != 0 {
		t.Errorf("%d duplicate deliveries", d)
	}
}

// O3: bad input never crashes the process — a ~1 MiB value, every byte value
// in key, value and header, an empty message, a nil one and a tombstone all
// flow to the consumer intact (a subtest each) and are committed.
func TestAwkwardMessagesFlow(t *testing.T) {
	// Kafka's and kfake's max.message.bytes default (1048588) is below a
	// 1 MiB value plus its batch framing: raise it for this topic, and the
	// producer's batch limit with it.
	const limit = 4 << 20
	s := newScenarioWithLimit(t, cluster(t), limit)
	tp := s.topic

	big := make([]byte, 1<<20+1024) // random, so compression cannot shrink it
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	reversed := make([]byte, 256)
	for i := range reversed {
		reversed[i] = byte(255 - i)
	}
	produced := produceRecords(t, s.c, []kgo.Opt{kgo.ProducerBatchMaxBytes(limit), kgo.MaxBufferedBytes(2 * limit)},
		&kgo.Record{Topic: tp, Key: []byte("big"), Value: big},
		&kgo.Record{Topic: tp, Key: reversed, Value: all, Headers: []kgo.RecordHeader{{Key: "binary", Value: all}}},
		&kgo.Record{Topic: tp, Key: []byte{}, Value: []byte{}},
		&kgo.Record{Topic: tp, Key: nil, Value: nil},
		&kgo.Record{Topic: tp, Key: []byte("tombstone"), Value: nil},
	)

	m := s.messages()
	app := s.start(s.route(m.fn()))
	s.waitSeen(len(produced))
	s.stop(app)

	kinds := []string{"oversized", "binary", "empty", "nil", "tombstone"}
	for i, want := range produced {
		t.Run(kinds[i], func(t *testing.T) { checkSame(t, i, m.at(t, tp, 0, want.Offset), want) })
	}
	s.wantCommitted(map[int32]int64{0: produced[len(produced)-1].Offset + 1})
}

// checkSame compares a delivered record with the one produced: key, value
// and headers, byte for byte, nil kept apart from empty.
func checkSame(t *testing.T, i int, got, want *kgo.Record) {
	t.Helper()
	if !sameBytes(got.Key, want.Key) {
		t.Errorf("record %d: key %d bytes (%s), want %d bytes (%s)", i, len(got.Key), describe(got.Key), len(want.Key), describe(want.Key))
	}
	if !sameBytes(got.Value, want.Value) {
		t.Errorf("record %d: value %d bytes (%s), want %d bytes (%s)", i, len(got.Value), describe(got.Value), len(want.Value), describe(want.Value))
	}
	if len(got.Headers) != len(want.Headers) {
		t.Errorf("record %d: %d headers, want %d", i, len(got.Headers), len(want.Headers))
		return
	}
	for j, h := range want.Headers {
		if got.Headers[j].Key != h.Key || !bytes.Equal(got.Headers[j].Value, h.Value) {
			t.Errorf("record %d: header %d differs from what was produced", i, j)
		}
	}
}
