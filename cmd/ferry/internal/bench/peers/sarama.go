package main

import (
	"context"
	"errors"

	"github.com/IBM/sarama"
)

// runSarama consumes with a sarama ConsumerGroup until the window is full.
func runSarama(ctx context.Context, w *window, brokers []string, topic, group string, sec security) error {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V4_0_0_0
	cfg.ClientID = "bench-sarama"
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = true // the default: marks commit every second
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	cfg.Consumer.Fetch.Default = 8 << 20
	cfg.ChannelBufferSize = 1024
	cfg.Consumer.Return.Errors = false
	sec.sarama(cfg)
	cg, err := sarama.NewConsumerGroup(brokers, group, cfg)
	if err != nil {
		return err
	}
	defer cg.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h := saramaHandler{w: w}
	errc := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, h); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	select {
	case <-w.done:
		cancel()
		<-errc
		return nil
	case err := <-errc:
		if err == nil {
			err = ctx.Err()
		}
		return err
	}
}

type saramaHandler struct{ w *window }

func (h saramaHandler) Setup(sarama.ConsumerGroupSession) error {
	h.w.assigned()
	return nil
}

func (saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h saramaHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			h.w.add(len(m.Value))
			sess.MarkMessage(m, "")
		case <-sess.Context().Done():
			return nil
		}
	}
}
