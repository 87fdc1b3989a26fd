package ferryprom_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferryprom"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scrape fetches /metrics and returns each sample by its name and labels,
// as written (labels sorted by name).
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	samples := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		samples[line[:i]] = v
	}
	return samples
}

// app runs one member of group on tp, reporting to a fresh registry served
// over HTTP; it returns the /metrics URL and a function that stops it.
func app(t *testing.T, c *ferrytest.Cluster, group, tp, dlt string, consume ferry.ConsumerFunc) (string, func() error) {
	t.Helper()
	reg := prometheus.NewRegistry()
	metrics, err := ferryprom.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ferry.New(
		ferry.Brokers(c.Brokers()...),
		ferry.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		ferry.CommitInterval(200*time.Millisecond),
		ferry.OnEvent(metrics.Observe),
		ferry.RouteFunc(group, tp, consume, ferry.MaxMessages(1), ferry.DeadLetter(dlt), ferry.MaxRetries(1),
			ferry.Retry(ferry.ConstantBackoff(50*time.Millisecond))),
	)
	if err != nil {
		t.Fatal(err)
	}
	metrics.Watch(a)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics", ferrytest.Run(t, a).Stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := ferrytest.WaitFor(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// X3: after a known workload — 20 + 30 messages, one of which fails twice
// and is dead-lettered, then a second member joining — /metrics holds the
// exact counts, and the gauges follow the assignment.
func TestMetricsAfterAKnownWorkload(t *testing.T) {
	c := ferrytest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tp, dlt, group := ferrytest.UniqueName("t"), ferrytest.UniqueName("dlt"), ferrytest.UniqueName("g")
	for name, n := range map[string]int32{tp: 2, dlt: 1} {
		if err := c.CreateTopic(ctx, name, n); err != nil {
			t.Fatal(err)
		}
	}
	for p, n := range map[int32]int{0: 20, 1: 30} {
		if _, err := c.ProduceN(ctx, tp, p, n); err != nil {
			t.Fatal(err)
		}
	}
	consume := func(_ context.Context, b *ferry.Batch) error {
		if m := b.Messages[0]; m.Partition == 0 && m.Offset == 3 {
			return errors.New("poison")
		}
		return nil
	}
	url, stop := app(t, c, group, tp, dlt, consume)

	byPart := func(name string, p int) string {
		return fmt.Sprintf(`%s{group="%s",partition="%d",topic="%s"}`, name, group, p, tp)
	}
	byGroup := func(name, more string) string { return fmt.Sprintf(`%s{group="%s"%s}`, name, group, more) }
	var m map[string]float64
	waitFor(t, "everything consumed and committed", func() bool {
		m = scrape(t, url)
		return m[byPart("ferry_messages_consumed_total", 0)]+m[byPart("ferry_messages_consumed_total", 1)] == 49 &&
			m[byPart("ferry_consumer_lag", 0)] == 0 && m[byPart("ferry_consumer_lag", 1)] == 0 &&
			m[byGroup("ferry_commits_total", `,reason="periodic",result="success"`)] > 0
	})
	want := map[string]float64{
		byPart("ferry_messages_consumed_total", 0): 19,
		byPart("ferry_messages_consumed_total", 1): 30,
		byPart("ferry_batches_consumed_total", 0):  19,
		byPart("ferry_batches_consumed_total", 1):  30,
		byPart("ferry_consume_errors_total", 0):    2,
		byPart("ferry_retries_total", 0):           1,
		byPart("ferry_dead_letters_total", 0):      1,
		fmt.Sprintf(`ferry_pauses_total{group="%s",partition="0",reason="backoff",topic="%s"}`, group, tp): 1,
		byPart("ferry_consumer_lag", 0):                                                     0,
		byPart("ferry_consumer_lag", 1):                                                     0,
		byPart("ferry_consumer_processing_lag", 0):                                          0,
		byPart("ferry_consumer_processing_lag", 1):                                          0,
		byPart("ferry_partition_paused", 0):                                                 0,
		byGroup("ferry_partitions_assigned", ""):                                            2,
		byGroup("ferry_group_ready", ""):                                                    1,
		byGroup("ferry_rebalances_total", `,kind="assigned"`):                               1,
		fmt.Sprintf(`ferry_batch_duration_seconds_count{group="%s",topic="%s"}`, group, tp): 51,
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	for k := range m {
		if strings.Contains(k, `result="failure"`) || strings.Contains(k, `kind="lost"`) || strings.HasPrefix(k, "ferry_fetch_errors_total") ||
			(strings.HasPrefix(k, "ferry_retries_total") && strings.Contains(k, `partition="1"`)) ||
			(strings.HasPrefix(k, "ferry_pauses_total") && !strings.Contains(k, `partition="0",reason="backoff"`)) {
			t.Errorf("unexpected sample %s = %v", k, m[k])
		}
	}

	// A second member joins: this one hands over one partition.
	_, stop2 := app(t, c, group, tp, dlt, consume)
	waitFor(t, "the rebalance", func() bool {
		m = scrape(t, url)
		return m[byGroup("ferry_rebalances_total", `,kind="revoked"`)] == 1 && m[byGroup("ferry_partitions_assigned", "")] == 1
	})
	if got := m[byGroup("ferry_rebalances_total", `,kind="assigned"`)]; got != 1 {
		t.Errorf(`ferry_rebalances_total{kind="assigned"} = %v, want 1 (an empty assignment does not count)`, got)
	}
	if got := m[byPart("ferry_messages_consumed_total", 0)] + m[byPart("ferry_messages_consumed_total", 1)]; got != 49 {
		t.Errorf("consumed %v after the rebalance, want still 49", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
}

// Registering twice on one registry fails at New, not with a panic.
func TestNewRefusesADuplicateRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := ferryprom.New(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := ferryprom.New(reg); err == nil {
		t.Fatal("second New on one registry succeeded")
	}
}
