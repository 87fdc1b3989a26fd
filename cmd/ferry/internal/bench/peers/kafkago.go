package main

import (
	"context"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// runKafkaGo consumes with a kafka-go group Reader until the window is full.
func runKafkaGo(ctx context.Context, w *window, brokers []string, topic, group string, sec security) error {
	dialer := &kafkago.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: sec.tls}
	switch sec.mechanism {
	case "PLAIN":
		dialer.SASLMechanism = plain.Mechanism{Username: sec.user, Password: sec.password}
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		algo := scram.SHA256
		if sec.mechanism == "SCRAM-SHA-512" {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, sec.user, sec.password)
		if err != nil {
			return err
		}
		dialer.SASLMechanism = m
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:        brokers,
		Dialer:         dialer,
		GroupID:        group,
		Topic:          topic,
		StartOffset:    kafkago.FirstOffset,
		IsolationLevel: kafkago.ReadCommitted,
		MinBytes:       1,
		MaxBytes:       10 << 20,
		QueueCapacity:  10_000,
		CommitInterval: time.Second, // ReadMessage marks; commits go out every second
		MaxWait:        500 * time.Millisecond,
	})
	defer r.Close()
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return err
		}
		w.assigned() // kafka-go reports no assignment: its first message stands in
		if w.add(len(m.Value)) {
			return nil
		}
	}
}
