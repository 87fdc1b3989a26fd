package main

import (
	"context"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// runKafkaGo consumes with a kafka-go group Reader until the window is full.
func runKafkaGo(ctx context.Context, w *window, brokers []string, topic, group string) error {
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:        brokers,
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
