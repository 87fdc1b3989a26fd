package engine

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// E5: Check refuses exactly the records franz-go would refuse for the topic's
// limit (give or take its slack): a record it passes, franz-go produces; a
// record franz-go refuses, Check refused first.
func TestCheckAgreesWithFranzGo(t *testing.T) {
	const limit = 10_000
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerBatchMaxBytes(limit), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	l := NewTopicLimits()
	l.bytes["t"] = limit
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	refused, franzRefused := 0, 0
	for size := limit - 150; size <= limit; size++ {
		r := &kgo.Record{Topic: "t", Key: []byte("key"), Value: bytes.Repeat([]byte{'v'}, size),
			Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("x")}}}
		checked := l.Check(r)
		produced := cl.ProduceSync(ctx, r).FirstErr()
		if checked == nil && produced != nil {
			t.Fatalf("value of %d bytes: Check passed, franz-go refused: %v", size, produced)
		}
		if produced != nil {
			if !errors.Is(produced, kerr.MessageTooLarge) {
				t.Fatalf("value of %d bytes: %v", size, produced)
			}
			franzRefused++
		}
		if checked != nil {
			if !errors.Is(checked, ErrMessageTooLarge) {
				t.Fatalf("Check = %v, want ErrMessageTooLarge", checked)
			}
			refused++
		}
	}
	// Check counts the batch header as franz-go does before it knows the
	// request version (4 bytes more than a flexible version needs), plus
	// its slack.
	if franzRefused == 0 || refused < franzRefused || refused > franzRefused+slack+4 {
		t.Errorf("of 151 sizes near the limit Check refused %d, franz-go %d: want at most %d more refused by Check", refused, franzRefused, slack+4)
	}
}
