package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// runConfluent consumes with a confluent-kafka-go (librdkafka) consumer
// until the window is full.
func runConfluent(ctx context.Context, w *window, brokers []string, topic, group string, sec security) error {
	settings, err := sec.librdkafka()
	if err != nil {
		return err
	}
	cfg := kafka.ConfigMap{
		"bootstrap.servers":          strings.Join(brokers, ","),
		"group.id":                   group,
		"client.id":                  "bench-confluent",
		"auto.offset.reset":          "earliest",
		"isolation.level":            "read_committed",
		"enable.auto.commit":         true,
		"auto.commit.interval.ms":    1000,
		"enable.auto.offset.store":   true,
		"fetch.max.bytes":            50 << 20,
		"queued.max.messages.kbytes": 64 << 10,
	}
	for k, v := range settings {
		cfg[k] = v
	}
	c, err := kafka.NewConsumer(&cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	err = c.SubscribeTopics([]string{topic}, func(_ *kafka.Consumer, ev kafka.Event) error {
		if _, ok := ev.(kafka.AssignedPartitions); ok {
			w.assigned() // librdkafka assigns after this callback returns
		}
		return nil
	})
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		switch ev := c.Poll(100).(type) {
		case *kafka.Message:
			if ev.TopicPartition.Error != nil {
				return ev.TopicPartition.Error
			}
			if w.add(len(ev.Value)) {
				return nil
			}
		case kafka.Error:
			if ev.IsFatal() {
				return fmt.Errorf("confluent-kafka-go: %w", ev)
			}
		}
	}
	return ctx.Err()
}
