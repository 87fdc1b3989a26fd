// Command peers consumes a topic with another Go Kafka client — sarama,
// segmentio/kafka-go or confluent-kafka-go — as a consumer group member
// that commits its offsets, and prints one JSON line with what `ferry bench
// -peers` measures. It is a module of its own so that neither ferry nor the
// ferry command depends on these clients.
//
//	peers -client sarama -brokers 127.0.0.1:9092 -topic T -group G -messages N
//
// Each reaches the cluster with the TLS and SASL settings of the FERRY_TLS*
// and FERRY_SASL* variables, as ferry does (SASL: PLAIN and SCRAM).
//
// Every client reads committed data from the earliest offset, touches each
// value (sums its length, like the ferry and franz-go contenders) and
// commits in the background, each tuned for throughput as its documentation
// suggests:
//
//   - sarama: a ConsumerGroup whose handler marks each message
//     (auto-commit every second); protocol version 4.0, 8 MiB per-partition
//     fetches, channel buffers of 1024 messages.
//   - kafka-go: a Reader with a GroupID, ReadMessage with CommitInterval 1 s
//     (asynchronous commits), fetches of up to 10 MiB, a queue of 10,000.
//   - confluent-kafka-go (librdkafka, cgo): Poll with auto-commit every
//     second and auto offset store; librdkafka's prefetch queue at its
//     default (64 MiB), fetch.max.bytes 50 MiB.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// result is what ferry bench reads; the field names match its Result.
type result struct {
	Name         string        `json:"name"`
	Messages     int           `json:"messages"`
	Elapsed      time.Duration `json:"elapsed_ns"`
	First        time.Duration `json:"join_ns"`
	FirstMessage time.Duration `json:"first_message_ns"`
	CPU          time.Duration `json:"cpu_ns"`
}

// window counts messages from the client's start to the n-th.
type window struct {
	n            int64
	count        atomic.Int64
	first        atomic.Int64
	firstMessage atomic.Int64
	start        time.Time
	cpu          time.Duration
	done         chan struct{}
	sink         atomic.Int64
	elapsed      atomic.Int64
	cpuUsed      atomic.Int64
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (w *window) assigned() { w.first.CompareAndSwap(0, int64(time.Since(w.start))) }

// add counts one message with a value of size bytes and reports whether
// the window is complete.
func (w *window) add(size int) bool {
	w.sink.Add(int64(size))
	w.firstMessage.CompareAndSwap(0, int64(time.Since(w.start)))
	got := w.count.Add(1)
	if got == w.n {
		w.elapsed.Store(int64(time.Since(w.start)))
		w.cpuUsed.Store(int64(cpuTime() - w.cpu))
		close(w.done)
	}
	return got >= w.n
}

func main() {
	client := flag.String("client", "", "sarama, kafka-go or confluent")
	brokers := flag.String("brokers", "", "comma-separated seed brokers")
	topic := flag.String("topic", "", "topic to consume")
	group := flag.String("group", "", "consumer group")
	messages := flag.Int("messages", 0, "messages to consume")
	flag.Parse()
	if *brokers == "" || *topic == "" || *group == "" || *messages < 1 {
		fmt.Fprintln(os.Stderr, "peers: -brokers, -topic, -group and -messages are required")
		os.Exit(2)
	}
	w := &window{n: int64(*messages), start: time.Now(), cpu: cpuTime(), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	seeds := strings.Split(*brokers, ",")
	var name string
	sec, err := securityFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(2)
	}
	switch *client {
	case "sarama":
		name, err = "sarama", runSarama(ctx, w, seeds, *topic, *group, sec)
	case "kafka-go":
		name, err = "segmentio/kafka-go", runKafkaGo(ctx, w, seeds, *topic, *group, sec)
	case "confluent":
		name, err = "confluent-kafka-go", runConfluent(ctx, w, seeds, *topic, *group, sec)
	default:
		err = fmt.Errorf("unknown client %q: want sarama, kafka-go or confluent", *client)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(result{
		Name:         name,
		Messages:     *messages,
		Elapsed:      time.Duration(w.elapsed.Load()),
		First:        time.Duration(w.first.Load()),
		FirstMessage: time.Duration(w.firstMessage.Load()),
		CPU:          time.Duration(w.cpuUsed.Load()),
	})
}
