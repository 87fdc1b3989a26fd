package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/ferrykit/ferry"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// CreateTopic creates a topic with the given partitions.
func CreateTopic(ctx context.Context, brokers []string, topic string, partitions int32) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	if resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, topic); err != nil || resp.Err != nil {
		return fmt.Errorf("create %s: %v %v", topic, err, resp.Err)
	}
	return nil
}

// Pipeline consumes the topic and produces one output per input to a fresh
// output topic through Batch.Produce: at-least-once when txnBatches is 0,
// else exactly-once with transactions spanning about txnBatches batches per
// partition.
func Pipeline(ctx context.Context, brokers []string, topic, group string, partitions int32, n, txnBatches int) (Result, error) {
	name := "ferry consume→produce ALO"
	if txnBatches > 0 {
		name = fmt.Sprintf("ferry consume→produce EOS×%d", txnBatches)
	}
	out := group + "-out"
	if err := CreateTopic(ctx, brokers, out, partitions); err != nil {
		return Result{}, err
	}
	w := newWindow(name, n)
	topicOpts := []ferry.TopicOption{}
	opts := []ferry.Option{
		ferry.Brokers(brokers...),
		ferry.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	}
	if txnBatches > 0 {
		opts = append(opts, ferry.TransactionalID(group))
		topicOpts = append(topicOpts, ferry.WithDelivery(ferry.ExactlyOnce), ferry.TransactionBatches(txnBatches))
	}
	copyOut := ferry.ConsumerFunc(func(ctx context.Context, b *ferry.Batch) error {
		recs := make([]*kgo.Record, len(b.Messages))
		for i, m := range b.Messages {
			recs[i] = &kgo.Record{Topic: out, Key: m.Key, Value: m.Value}
		}
		if err := b.Produce(ctx, recs...); err != nil {
			return err
		}
		w.add(len(b.Messages))
		return nil
	})
	opts = append(opts, ferry.Route(group, topic, func(*ferry.Claim) ferry.Consumer {
		w.assigned()
		return copyOut
	}, topicOpts...))
	app, err := ferry.New(opts...)
	if err != nil {
		return Result{}, err
	}
	return runUntil(ctx, app, w)
}
