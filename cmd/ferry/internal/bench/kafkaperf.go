package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/ferrykit/ferry/internal/security"
)

// ConsumerPerformance runs Kafka's own org.apache.kafka.tools.ConsumerPerformance
// (through scripts/kafka tool) on the same topic, for comparison. Its
// fetch time plays the part of ferry's first-to-last-message window;
// allocations are not measured, and its CPU time and peak resident set are
// the whole JVM's, start-up included, measured by running it under
// `self rusage` (see Rusage). It reaches the cluster with the TLS and SASL
// settings of the environment (FERRY_TLS*, FERRY_SASL*), as the other
// contenders do.
func ConsumerPerformance(ctx context.Context, self, kafkaScript string, brokers []string, topic, group string, n int) (Result, error) {
	dir, err := os.MkdirTemp("", "ferry-kafka-perf")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	config, err := javaClientConfig(os.Getenv, dir)
	if err != nil {
		return Result{}, fmt.Errorf("ConsumerPerformance: %w", err)
	}
	argv := []string{kafkaScript, "tool", "ConsumerPerformance",
		"--bootstrap-server", strings.Join(brokers, ","), "--topic", topic,
		"--num-records", strconv.Itoa(n), "--group", group, "--timeout", "600000"}
	if config != "" {
		argv = append(argv, "--command-config", config)
	}
	out, usage, err := underRusage(ctx, self, argv...)
	if err != nil {
		return Result{}, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	f := strings.Split(lines[len(lines)-1], ",")
	if len(f) < 10 {
		return Result{}, fmt.Errorf("ConsumerPerformance printed %q", out)
	}
	num := func(i int) float64 {
		v, _ := strconv.ParseFloat(strings.TrimSpace(f[i]), 64)
		return v
	}
	consumed, rebalanceMs, fetchMs := int(num(4)), num(6), num(7)
	if consumed < n {
		return Result{}, fmt.Errorf("ConsumerPerformance consumed %d of %d", consumed, n)
	}
	return Result{
		Name:     "Kafka ConsumerPerformance",
		Messages: consumed,
		First:    time.Duration(rebalanceMs * float64(time.Millisecond)),
		Elapsed:  time.Duration((rebalanceMs + fetchMs) * float64(time.Millisecond)),
		CPU:      usage.CPU,
		PeakRSS:  usage.PeakRSS,
	}, nil
}

// TransactionalMessageCopier runs Kafka's own EOS system-test tool (through
// scripts/kafka tool) in group mode over the topic, copying it to a fresh
// output topic with txnSize messages per transaction. Its window runs from
// its RebalanceComplete event to ShutdownComplete.
func TransactionalMessageCopier(ctx context.Context, kafkaScript string, brokers []string, topic, output, group string, txnSize int) (Result, error) {
	// The tool takes no client settings: it reaches plaintext clusters only.
	if sec, err := security.FromEnv(os.Getenv); err != nil || sec.TLS != nil || sec.SASL != nil {
		return Result{}, errors.New("TransactionalMessageCopier takes no TLS or SASL settings: it cannot reach a secured cluster")
	}
	cmd := exec.CommandContext(ctx, kafkaScript, "tool", "TransactionalMessageCopier",
		"--input-topic", topic, "--input-partition", "0", "--output-topic", output,
		"--broker-list", strings.Join(brokers, ","), "--transactional-id", group,
		"--transaction-size", strconv.Itoa(txnSize), "--group-mode", "--consumer-group", group)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("TransactionalMessageCopier: %v\n%s", err, errb.String())
	}
	var started, ended time.Time
	total := 0
	for _, line := range strings.Split(out.String(), "\n") {
		var ev struct {
			Stage          string `json:"stage"`
			Time           string `json:"time"`
			TotalProcessed int    `json:"totalProcessed"`
		}
		if json.Unmarshal([]byte(line), &ev) != nil {
			continue
		}
		// "2026/11/23 13:15:31:348": milliseconds after a colon.
		i := strings.LastIndex(ev.Time, ":")
		if i < 0 {
			continue
		}
		at, err := time.Parse("2006/01/02 15:04:05.000", ev.Time[:i]+"."+ev.Time[i+1:])
		if err != nil {
			continue
		}
		switch ev.Stage {
		case "RebalanceComplete":
			if started.IsZero() {
				started = at
			}
		case "ShutdownComplete":
			ended, total = at, ev.TotalProcessed
		}
	}
	if started.IsZero() || ended.IsZero() {
		return Result{}, fmt.Errorf("TransactionalMessageCopier printed no start or end:\n%s", out.String())
	}
	return Result{
		Name:     fmt.Sprintf("Kafka TxnMessageCopier×%d", txnSize),
		Messages: total,
		Elapsed:  ended.Sub(started),
	}, nil
}
