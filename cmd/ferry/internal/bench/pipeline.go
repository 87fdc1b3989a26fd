package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/internal/security"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// newClient returns a client of the cluster at brokers, reached with the TLS
// and SASL settings of the environment (FERRY_TLS*, FERRY_SASL*), which the
// ferry apps of the benchmarks read too.
func newClient(brokers []string, opts ...kgo.Opt) (*kgo.Client, error) {
	sec, err := security.FromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	base := append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, sec.Opts()...)
	return kgo.NewClient(append(base, opts...)...)
}

// CreateTopic creates a topic with the given partitions.
func CreateTopic(ctx context.Context, brokers []string, topic string, partitions int32) error {
	cl, err := newClient(brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if resp, err := adm.CreateTopic(ctx, partitions, 1, nil, topic); err != nil || resp.Err != nil {
		return fmt.Errorf("create %s: %v %v", topic, err, resp.Err)
	}
	// Wait until every partition has a leader: a producer that meets a
	// partition without one refreshes its metadata only after kgo's
	// MetadataMinAge (5 s), which would stall whichever contender writes
	// to the topic first.
	for {
		details, err := adm.ListTopics(ctx, topic)
		if err == nil && ready(details[topic], partitions) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create %s: partitions without a leader: %w", topic, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func ready(d kadm.TopicDetail, partitions int32) bool {
	if d.Err != nil || len(d.Partitions) != int(partitions) {
		return false
	}
	for _, p := range d.Partitions {
		if p.Err != nil || p.Leader < 0 {
			return false
		}
	}
	return true
}

// Span is how long an exactly-once transaction spans: as ferry's defaults
// decide (Default), one poll of about Batches batches per partition, or as
// many as arrive in Interval. The zero Span means at-least-once.
type Span struct {
	Default  bool
	Batches  int
	Interval time.Duration
}

// ParseSpan reads "default" (ferry's default span), "16" (one poll of 16
// batches per partition per transaction) or "250ms" (an interval).
func ParseSpan(s string) (Span, error) {
	if s == "default" {
		return Span{Default: true}, nil
	}
	if k, err := strconv.Atoi(s); err == nil && k >= 1 {
		return Span{Batches: k}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return Span{Interval: d}, nil
	}
	return Span{}, fmt.Errorf("bad transaction span %q: want default, a batch count (16) or an interval (250ms)", s)
}

func (s Span) String() string {
	switch {
	case s.Default:
		return "EOS default"
	case s.Interval > 0:
		return "EOS " + s.Interval.String()
	}
	return fmt.Sprintf("EOS×%d", s.Batches)
}

// options are the topic options that give a transaction this span.
func (s Span) options() []ferry.TopicOption {
	switch {
	case s.Default:
		return nil
	case s.Interval > 0:
		return []ferry.TopicOption{ferry.TransactionInterval(s.Interval)}
	}
	// One poll per transaction: no interval.
	return []ferry.TopicOption{ferry.TransactionBatches(s.Batches), ferry.TransactionInterval(0)}
}

// Pipeline consumes the topic and produces one output per input to a fresh
// output topic through Batch.Produce: at-least-once for the zero span, else
// exactly-once with transactions of that span. A message counts once its
// output is durable: acknowledged (at-least-once), or committed with its
// transaction (exactly-once).
func Pipeline(ctx context.Context, brokers []string, topic, group string, partitions int32, n int, span Span) (Result, error) {
	name := "ferry consume→produce ALO"
	eos := span != Span{}
	if eos {
		name = "ferry consume→produce " + span.String()
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
	if eos {
		opts = append(opts, ferry.TransactionalID(group))
		topicOpts = append(topicOpts, ferry.WithDelivery(ferry.ExactlyOnce))
		topicOpts = append(topicOpts, span.options()...)
		// An exactly-once output counts once its transaction committed
		// (the group starts from scratch, so committed offsets are counts).
		var mu sync.Mutex
		counted := map[int32]int64{}
		opts = append(opts, ferry.OnCommit(func(c ferry.Commit) {
			if c.Reason != "transaction" || c.Err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for id, off := range c.Offsets[topic] {
				if d := off - counted[id]; d > 0 {
					counted[id] = off
					w.add(int(d))
				}
			}
		}))
	}
	copyOut := ferry.ConsumerFunc(func(ctx context.Context, b *ferry.Batch) error {
		recs := make([]*kgo.Record, len(b.Messages))
		for i, m := range b.Messages {
			recs[i] = &kgo.Record{Topic: out, Key: m.Key, Value: m.Value}
		}
		if err := b.Produce(ctx, recs...); err != nil {
			return err
		}
		if !eos {
			w.add(len(b.Messages)) // acknowledged: Produce waited
		}
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
