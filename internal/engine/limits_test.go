package engine

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
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

// E5: a topic that cannot be described (here: missing) keeps the default
// limit, and producing to it does not ask again until retryDescribe passed;
// once it exists and that time passed, its limit is learned.
func TestLearnAsksAgainOnlyAfterAWhile(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var describes atomic.Int32
	c.ControlKey(int16(kmsg.DescribeConfigs), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		describes.Add(1)
		return nil, nil, false
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	l := NewTopicLimits()
	r := &kgo.Record{Topic: "later"}
	l.Learn(ctx, cl, r)
	l.Learn(ctx, cl, r)
	if n := describes.Load(); n != 1 {
		t.Fatalf("%d DescribeConfigs for a missing topic produced to twice, want 1", n)
	}
	if got := l.batchMaxBytes("later"); got != defaultBatchMaxBytes {
		t.Fatalf("limit of a topic not described: %d, want the default %d", got, defaultBatchMaxBytes)
	}
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, map[string]*string{"max.message.bytes": kadm.StringPtr("2000000")}, "later"); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	l.failed["later"] = time.Now().Add(-retryDescribe - time.Second)
	l.mu.Unlock()
	l.Learn(ctx, cl, r)
	if got := l.batchMaxBytes("later"); got != 2_000_000 {
		t.Fatalf("limit after the topic was created: %d, want 2000000", got)
	}
}
