package bench

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ConsumerPerformance runs Kafka's own org.apache.kafka.tools.ConsumerPerformance
// (through scripts/kafka tool) on the same topic, for comparison. Its
// fetch time plays the part of ferry's first-to-last-message window;
// allocations and CPU are not measured (another process).
func ConsumerPerformance(ctx context.Context, kafkaScript string, brokers []string, topic, group string, n int) (Result, error) {
	cmd := exec.CommandContext(ctx, kafkaScript, "tool", "ConsumerPerformance",
		"--bootstrap-server", strings.Join(brokers, ","), "--topic", topic,
		"--num-records", strconv.Itoa(n), "--group", group, "--timeout", "600000")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("ConsumerPerformance: %v\n%s", err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	f := strings.Split(lines[len(lines)-1], ",")
	if len(f) < 10 {
		return Result{}, fmt.Errorf("ConsumerPerformance printed %q", out.String())
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
	}, nil
}
