package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/ferrykit/ferry/internal/kafkatools"
	"github.com/twmb/franz-go/pkg/kadm"
)

// laggingTopic creates a topic of three partitions holding 10, 20 and 30
// messages, and commits offsets 3, 20 and (none) for a group with no member.
func laggingTopic(t *testing.T, c *ferrytest.Cluster) (topic, group string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topic, group = ferrytest.UniqueName("lag"), ferrytest.UniqueName("lag-g")
	if err := c.CreateTopic(ctx, topic, 3); err != nil {
		t.Fatal(err)
	}
	for p, n := range []int{10, 20, 30} {
		if _, err := c.ProduceN(ctx, topic, int32(p), n); err != nil {
			t.Fatal(err)
		}
	}
	var os kadm.Offsets
	os.AddOffset(topic, 0, 3, -1)
	os.AddOffset(topic, 1, 20, -1)
	if err := c.Admin().CommitAllOffsets(ctx, group, os); err != nil {
		t.Fatal(err)
	}
	return topic, group
}

// liveMember runs a ferry app in group on topic whose handler holds its
// first batches until the test ends, and waits until it owns every
// partition.
func liveMember(t *testing.T, c *ferrytest.Cluster, group, topic string) {
	t.Helper()
	release := make(chan struct{})
	hold := func(ctx context.Context, _ *ferry.Batch) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}
	app, err := ferry.New(ferry.Brokers(c.Brokers()...), ferry.RouteFunc(group, topic, hold), ferry.ShutdownTimeout(5*time.Second),
		ferry.Logger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = app.Run(ctx) })
	t.Cleanup(func() { close(release); cancel(); wg.Wait() })
	wait, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	if err := ferrytest.WaitFor(wait, func() bool {
		s := app.Stats()
		return app.Ready() == nil && len(s.Groups) == 1 && len(s.Groups[0].Partitions) == 3
	}); err != nil {
		t.Fatalf("the member did not take the 3 partitions: %v", app.Ready())
	}
}

func lagJSON(t *testing.T, brokers, group string) lagReport {
	t.Helper()
	var rep lagReport
	if err := json.Unmarshal([]byte(ferryOK(t, "", "lag", brokers, "-group", group, "-json")), &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// ferry lag shows each partition's committed offset, end, lag and total;
// offsets reset prints its plan without changing anything unless -execute,
// clamps to the partitions' ends, and is refused while the group has a live
// member, who then shows as the partitions' owner.
func TestLagAndReset(t *testing.T) {
	c, brokers := testCluster(t)
	topic, group := laggingTopic(t, c)
	out := ferryOK(t, "", "lag", brokers, "-group", group)
	golden(t, "lag.txt", columns(strings.ReplaceAll(normalize(out, topic), group, "GROUP")))
	rep := lagJSON(t, brokers, group)
	if rep.TotalLag != 7 || len(rep.Partitions) != 2 || *rep.Partitions[0].Lag != 7 || rep.State != "Empty" {
		t.Errorf("lag -json: %+v", rep)
	}

	out = ferryOK(t, "", "offsets", "reset", brokers, "-group", group, "-topic", topic, "-to-earliest")
	golden(t, "reset-dry-run.txt", columns(strings.ReplaceAll(normalize(out, topic), group, "GROUP")))
	if _, errs, code := ferryExec(t, "", "offsets", "reset", brokers, "-group", group, "-topic", topic, "-shift-by", "-1"); code != exitFailed || !strings.Contains(errs, "/2 has no committed offset to shift") {
		t.Errorf("-shift-by on a partition without a commit: exit %d\n%s", code, errs)
	}
	if got := lagJSON(t, brokers, group); got.TotalLag != 7 {
		t.Errorf("a dry run changed the lag to %d", got.TotalLag)
	}
	var plan resetPlan
	out = ferryOK(t, "", "offsets", "reset", brokers, "-group", group, "-topic", topic, "-to-offset", "25", "-execute", "-json")
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatal(err)
	}
	if !plan.Executed || len(plan.Partitions) != 3 || plan.Partitions[0].New != 10 || plan.Partitions[1].New != 20 || plan.Partitions[2].New != 25 {
		t.Errorf("-to-offset 25 -execute: %+v", plan)
	}
	if got := lagJSON(t, brokers, group); got.TotalLag != 5 || len(got.Partitions) != 3 {
		t.Errorf("after the reset: %+v", got)
	}

	liveMember(t, c, group, topic)
	rep = lagJSON(t, brokers, group)
	for _, p := range rep.Partitions {
		if p.MemberID == "" || p.ClientID == "" {
			t.Errorf("partition %d has no owner while a member consumes it: %+v", p.Partition, rep)
		}
	}
	_, errs, code := ferryExec(t, "", "offsets", "reset", brokers, "-group", group, "-topic", topic, "-to-earliest")
	if code != exitFailed || !strings.Contains(errs, "has live members") {
		t.Errorf("reset with a live member: exit %d\n%s", code, errs)
	}
}

// columns joins each line's fields with single spaces: a table's alignment
// depends on the names normalize replaced.
func columns(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		b.WriteString(strings.Join(strings.Fields(line), " ") + "\n")
	}
	return b.String()
}

// kafkaTool runs Kafka's own tools through scripts/kafka; it skips without
// a real broker (FERRY_BROKERS), and fails under CI=true when they cannot
// run.
func kafkaTool(t *testing.T, args ...string) string {
	t.Helper()
	if os.Getenv("FERRY_BROKERS") == "" {
		t.Skip("needs a real Apache Kafka broker and its tools (FERRY_BROKERS)")
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "kafka"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, append([]string{"tool"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/kafka tool %s: %v\n%s\n%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// consumerGroups runs kafka-consumer-groups --group group with args and
// returns the group's rows. The tool exits 0 on errors such as an unknown
// group, printing no table: that fails the test.
func consumerGroups(t *testing.T, group string, args ...string) []map[string]string {
	t.Helper()
	all := append([]string{"consumer.group.ConsumerGroupCommand", "--bootstrap-server", os.Getenv("FERRY_BROKERS"), "--group", group}, args...)
	out := kafkaTool(t, all...)
	rows, ok := kafkatools.GroupTable(out, group)
	if !ok {
		t.Fatalf("kafka-consumer-groups %s printed no table:\n%s", strings.Join(args, " "), out)
	}
	return rows
}

// ferry lag agrees with kafka-consumer-groups --describe on the real broker,
// for a group with no member and then with one.
func TestInteropLagMatchesKafka(t *testing.T) {
	c, brokers := testCluster(t)
	if !c.External() {
		t.Skip("Kafka's tools need the real broker (FERRY_BROKERS)")
	}
	topic, group := laggingTopic(t, c)
	compare := func(when string) {
		rep, rows := lagJSON(t, brokers, group), consumerGroups(t, group, "--describe")
		if len(rows) != len(rep.Partitions) {
			t.Fatalf("%s: ferry lag shows %d partitions, kafka-consumer-groups %d:\n%+v\n%+v", when, len(rep.Partitions), len(rows), rep, rows)
		}
		for i, p := range rep.Partitions {
			r := rows[i]
			want := map[string]string{"TOPIC": topic, "PARTITION": itoa(int64(p.Partition)), "CURRENT-OFFSET": orDash(p.Committed),
				"LOG-END-OFFSET": itoa(p.End), "LAG": orDash(p.Lag), "CONSUMER-ID": dash(p.MemberID), "CLIENT-ID": dash(p.ClientID)}
			for k, v := range want {
				if r[k] != v {
					t.Errorf("%s: partition %d: %s is %s in kafka-consumer-groups, %s in ferry lag", when, p.Partition, k, r[k], v)
				}
			}
		}
	}
	compare("no member")
	liveMember(t, c, group, topic)
	compare("a live member")
}

// offsets reset plans what kafka-consumer-groups --reset-offsets --dry-run
// plans, for each kind of target, and refuses a live group as it does.
func TestInteropResetMatchesKafka(t *testing.T) {
	c, brokers := testCluster(t)
	if !c.External() {
		t.Skip("Kafka's tools need the real broker (FERRY_BROKERS)")
	}
	topic, group := laggingTopic(t, c)
	var all kadm.Offsets // a committed offset on every partition, for -shift-by
	all.AddOffset(topic, 2, 30, -1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Admin().CommitAllOffsets(ctx, group, all); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ ours, theirs []string }{
		{[]string{"-to-earliest"}, []string{"--to-earliest"}},
		{[]string{"-to-latest"}, []string{"--to-latest"}},
		{[]string{"-to-offset", "15"}, []string{"--to-offset", "15"}},
		{[]string{"-shift-by", "-2"}, []string{"--shift-by", "-2"}},
	} {
		var plan resetPlan
		out := ferryOK(t, "", append([]string{"offsets", "reset", brokers, "-group", group, "-topic", topic, "-json"}, tc.ours...)...)
		if err := json.Unmarshal([]byte(out), &plan); err != nil {
			t.Fatal(err)
		}
		theirs := map[string]string{}
		for _, r := range consumerGroups(t, group, append([]string{"--reset-offsets", "--topic", topic, "--dry-run"}, tc.theirs...)...) {
			theirs[r["PARTITION"]] = r["NEW-OFFSET"]
		}
		ours := map[string]string{}
		for _, p := range plan.Partitions {
			ours[itoa(int64(p.Partition))] = itoa(p.New)
		}
		if len(theirs) == 0 || !maps.Equal(ours, theirs) {
			t.Errorf("%v: ferry plans %v, kafka-consumer-groups %v", tc.ours, ours, theirs)
		}
	}

	liveMember(t, c, group, topic)
	_, errs, code := ferryExec(t, "", "offsets", "reset", brokers, "-group", group, "-topic", topic, "-to-earliest", "-execute")
	if code != exitFailed || !strings.Contains(errs, "has live members") {
		t.Errorf("ferry offsets reset with a live member: exit %d\n%s", code, errs)
	}
	// Kafka's tool refuses ("Error: Assignments can only be reset if the
	// group ... is inactive ...") and exits 0, with an empty table.
	out := kafkaTool(t, "consumer.group.ConsumerGroupCommand", "--bootstrap-server", os.Getenv("FERRY_BROKERS"),
		"--group", group, "--reset-offsets", "--topic", topic, "--to-earliest", "--execute")
	if rows, _ := kafkatools.GroupTable(out, group); len(rows) > 0 || !strings.Contains(out, "is inactive") {
		t.Errorf("kafka-consumer-groups --reset-offsets with a live member did not refuse:\n%s", out)
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
