package ferry_test

// Wrappers for the interop tests (interop_test.go): Kafka's own tools, a
// Java consumer, a private broker and a steady producer.
//
// Interop with a real Apache Kafka broker and Kafka's own tools. These tests
// run only against a real broker (FERRY_BROKERS, as
// scripts/test sets it) and call Kafka's tools through scripts/kafka tool;
// the broker-kill test starts a broker of its own with scripts/kafka. Without
// FERRY_BROKERS they skip; under CI=true with FERRY_BROKERS set they never
// skip: a missing java or tool fails them.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/ferrykit/ferry/internal/kafkatools"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kafkaTools runs Apache Kafka's own tools (scripts/kafka tool CLASS …)
// against the real broker the suite was pointed at.
type kafkaTools struct {
	script  string // absolute path of scripts/kafka
	brokers string // FERRY_BROKERS, as the tools' --bootstrap-server
}

// toolsReady runs one tool once per test binary: the first call may fetch
// Kafka's tools jars from Maven Central, which must not eat a test's budget.
var toolsReady struct {
	once sync.Once
	err  error
}

// needKafkaTools returns the tools of the real broker, or skips the test when
// FERRY_BROKERS is unset. With CI=true and FERRY_BROKERS set it never skips:
// a missing java or tool fails the test.
func needKafkaTools(t *testing.T) *kafkaTools {
	t.Helper()
	brokers := os.Getenv("FERRY_BROKERS")
	if brokers == "" {
		t.Skip("interop: needs a real Apache Kafka broker and its tools, and FERRY_BROKERS is unset " +
			"(scripts/test runs these; by hand: FERRY_BROKERS=$(scripts/kafka up) go test -run TestInterop .)")
	}
	script, err := filepath.Abs(filepath.Join("scripts", "kafka"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(script); err != nil {
		interopUnavailable(t, "scripts/kafka not found: %v", err)
	}
	if _, err := exec.LookPath("java"); err != nil {
		interopUnavailable(t, "java is not on PATH: Kafka's tools need a JDK 17+")
	}
	toolsReady.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, script, "tool", "TopicCommand", "--version").CombinedOutput()
		if err != nil {
			toolsReady.err = fmt.Errorf("scripts/kafka tool TopicCommand --version: %w\n%s", err, tailLines(string(out), 20))
		}
	})
	if toolsReady.err != nil {
		interopUnavailable(t, "Kafka's tools do not run: %v", toolsReady.err)
	}
	return &kafkaTools{script: script, brokers: brokers}
}

// interopUnavailable skips, or fails under CI=true, where skipping would
// hide that the interop tests never ran.
func interopUnavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := "interop: " + fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true and FERRY_BROKERS is set: the interop tests may not be skipped)")
	}
	t.Skip(msg)
}

// run runs a Kafka tool to completion and returns its stdout and stderr. A
// tool that fails or outlives timeout fails the test.
func (k *kafkaTools) run(t *testing.T, timeout time.Duration, stdin io.Reader, class string, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.script, append([]string{"tool", class}, args...)...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	err := cmd.Run()
	t.Logf("%s: %s", class, time.Since(began).Round(10*time.Millisecond))
	if err != nil {
		t.Fatalf("scripts/kafka tool %s %s: %v\nstdout:\n%s\nstderr:\n%s", class, strings.Join(args, " "), err,
			tailLines(stdout.String(), 20), tailLines(stderr.String(), 20))
	}
	return stdout.String(), stderr.String()
}

// describeGroup runs kafka-consumer-groups --describe --group (plus extra
// flags such as --members) and returns the group's rows, each keyed by the
// table's column names (GROUP, TOPIC, PARTITION, CURRENT-OFFSET, …).
func (k *kafkaTools) describeGroup(t *testing.T, group string, extra ...string) []map[string]string {
	t.Helper()
	args := append([]string{"--bootstrap-server", k.brokers, "--describe", "--group", group}, extra...)
	stdout, stderr := k.run(t, time.Minute, nil, "consumer.group.ConsumerGroupCommand", args...)
	rows, ok := kafkatools.GroupTable(stdout, group)
	if !ok { // the tool exits 0 on errors such as an unknown group
		t.Fatalf("kafka-consumer-groups printed no table for group %s\nstdout:\n%s\nstderr:\n%s", group, stdout, tailLines(stderr, 20))
	}
	return rows
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// vcEvent is one JSON line of Kafka's VerifiableConsumer.
type vcEvent struct {
	Name       string `json:"name"`
	Timestamp  int64  `json:"timestamp"` // ms
	Partitions []struct {
		Topic     string `json:"topic"`
		Partition int32  `json:"partition"`
		Count     int64  `json:"count"`
		MinOffset int64  `json:"minOffset"`
		MaxOffset int64  `json:"maxOffset"`
	} `json:"partitions"`
	Success *bool  `json:"success"`
	Error   string `json:"error"`
}

// javaConsumer is Kafka's VerifiableConsumer running as a separate process:
// a member that is not ferry.
type javaConsumer struct {
	cmd    *exec.Cmd
	stderr ferrytest.Log
	done   chan struct{} // closed once stdout is drained and the process reaped
	err    error         // the process's exit, once done

	mu      sync.Mutex
	events  []vcEvent
	changed chan struct{}
}

// startJavaConsumer starts VerifiableConsumer in group on topic. It commits
// synchronously after every poll and prints what it consumed.
func startJavaConsumer(t *testing.T, k *kafkaTools, topic, group string, args ...string) *javaConsumer {
	t.Helper()
	all := append([]string{"tool", "VerifiableConsumer", "--bootstrap-server", k.brokers,
		"--topic", topic, "--group-id", group, "--reset-policy", "earliest"}, args...)
	j := &javaConsumer{cmd: exec.Command(k.script, all...), done: make(chan struct{}), changed: make(chan struct{}, 1)}
	j.cmd.Stderr = &j.stderr
	stdout, err := j.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := j.cmd.Start(); err != nil { // scripts/kafka execs java: the pid is the JVM's
		t.Fatal(err)
	}
	go j.read(stdout)
	t.Cleanup(func() {
		select {
		case <-j.done:
		default:
			_ = j.cmd.Process.Kill()
			<-j.done
		}
		if t.Failed() {
			t.Logf("VerifiableConsumer stderr:\n%s", tailLines(j.stderr.String(), 30))
		}
	})
	return j
}

func (j *javaConsumer) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var ev vcEvent
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Name == "" {
			continue
		}
		j.mu.Lock()
		j.events = append(j.events, ev)
		j.mu.Unlock()
		select {
		case j.changed <- struct{}{}:
		default:
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	j.err = j.cmd.Wait()
	close(j.done)
}

// snapshot returns the events so far.
func (j *javaConsumer) snapshot() []vcEvent {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]vcEvent(nil), j.events...)
}

// consumed returns, per partition of topic, each offset the Java consumer
// consumed and when it first reported it.
func (j *javaConsumer) consumed(topic string) map[int32]map[int64]time.Time {
	out := make(map[int32]map[int64]time.Time)
	for _, ev := range j.snapshot() {
		if ev.Name != "records_consumed" {
			continue
		}
		at := time.UnixMilli(ev.Timestamp)
		for _, p := range ev.Partitions {
			if p.Topic != topic {
				continue
			}
			if out[p.Partition] == nil {
				out[p.Partition] = make(map[int64]time.Time)
			}
			// a plain topic has no gaps: the summary's range is what was consumed
			for o := p.MinOffset; o <= p.MaxOffset; o++ {
				if _, ok := out[p.Partition][o]; !ok {
					out[p.Partition][o] = at
				}
			}
		}
	}
	return out
}

// owned returns the partitions of topic the Java member holds now. Both
// protocols used here are incremental: partitions_assigned and
// partitions_revoked name only what changed.
func (j *javaConsumer) owned(topic string) []int32 {
	held := make(map[int32]bool)
	for _, ev := range j.snapshot() {
		for _, p := range ev.Partitions {
			if p.Topic != topic {
				continue
			}
			switch ev.Name {
			case "partitions_assigned":
				held[p.Partition] = true
			case "partitions_revoked":
				delete(held, p.Partition)
			}
		}
	}
	out := make([]int32, 0, len(held))
	for p := range held {
		out = append(out, p)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

// stop sends SIGTERM — VerifiableConsumer's hook closes the consumer, which
// leaves the group — and waits for the process to exit.
func (j *javaConsumer) stop(t *testing.T) {
	t.Helper()
	if err := j.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to VerifiableConsumer: %v", err)
	}
	select {
	case <-j.done:
	case <-time.After(30 * time.Second):
		_ = j.cmd.Process.Kill()
		<-j.done
		t.Fatal("VerifiableConsumer did not exit within 30 s of SIGTERM")
	}
	for _, ev := range j.snapshot() {
		if ev.Name == "shutdown_complete" {
			return
		}
	}
	t.Errorf("VerifiableConsumer exited (%v) without shutdown_complete", j.err)
}

// exited reports whether the process has exited (j.err is then set).
func (j *javaConsumer) exited() bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

// privateBroker is a broker of a test's own (scripts/kafka up in a fresh
// dir), for a test that kills it: the suite's broker is shared with the
// other packages' tests, which go test ./... runs at the same time.
type privateBroker struct {
	script, dir, addr string
	inherit           []*os.File // descriptors scripts/kafka inherits (from fd 3 on)
}

func startPrivateBroker(t *testing.T, k *kafkaTools, inherit ...*os.File) *privateBroker {
	t.Helper()
	b := &privateBroker{script: k.script, dir: t.TempDir(), inherit: inherit}
	if _, err := os.Stat(filepath.Join(filepath.Dir(k.script), "kafka.d")); err != nil {
		interopUnavailable(t, "scripts/kafka.d missing: %v", err)
	}
	out, err := b.kafka(3*time.Minute, "up")
	if err != nil {
		_, _ = b.kafka(time.Minute, "down")
		interopUnavailable(t, "a second broker did not start: %v\n%s", err, out)
	}
	b.addr = tailLines(strings.TrimSpace(out), 1)
	t.Cleanup(func() { // after the test's apps and clients stopped
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(b.dir, "logs", "server.log"))
			t.Logf("broker log, last lines:\n%s", tailLines(string(log), 40))
		}
		if out, err := b.kafka(2*time.Minute, "down"); err != nil {
			t.Errorf("scripts/kafka down %s: %v\n%s", b.dir, err, out)
		}
	})
	return b
}

// kafka runs scripts/kafka on this broker's dir and returns its stdout.
func (b *privateBroker) kafka(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.script, args...)
	cmd.Env = append(os.Environ(), "FERRY_KAFKA_DIR="+b.dir, "FERRY_KAFKA_PORT=")
	cmd.ExtraFiles = b.inherit
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// kill9 kills the broker with SIGKILL: no clean shutdown, no final flush.
func (b *privateBroker) kill9(t *testing.T) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(b.dir, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	cmdline := func() string { s, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); return string(s) }
	if !strings.Contains(cmdline(), "kafka.Kafka") {
		t.Fatalf("pid %d is not the broker: %q", pid, cmdline())
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// gone, or a zombie (empty cmdline) nobody reaps: either way its sockets are closed
	if err := ferrytest.WaitFor(ctxFor(t, 10*time.Second), func() bool { return cmdline() == "" }); err != nil {
		t.Fatalf("broker pid %d still running 10 s after SIGKILL", pid)
	}
}

// seenValues records which values a consumer processed, and how often.
type seenValues struct {
	mu   sync.Mutex
	seen map[string]int
}

func (v *seenValues) fn() ferry.ConsumerFunc {
	return func(_ context.Context, b *ferry.Batch) error {
		v.mu.Lock()
		defer v.mu.Unlock()
		for _, m := range b.Messages {
			v.seen[string(m.Value)]++
		}
		return nil
	}
}

func (v *seenValues) count() (distinct, total int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, n := range v.seen {
		distinct++
		total += n
	}
	return distinct, total
}

// missingOf returns the values of want not processed yet.
func (v *seenValues) missingOf(want []string) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for _, s := range want {
		if v.seen[s] == 0 {
			out = append(out, s)
		}
	}
	return out
}

// steadyProducer writes unique values round-robin over a topic's partitions
// until stopped, through broker outages (kgo retries), and keeps the values
// the broker acknowledged.
type steadyProducer struct {
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	acked []string
	err   error
}

func produceSteadily(t *testing.T, brokers []string, topic string, partitions int32) *steadyProducer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	sp := &steadyProducer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(sp.done)
		defer cl.Close()
		for seq := 0; ; {
			select {
			case <-sp.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var recs []*kgo.Record
			for range 8 {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(seq) % partitions, Value: []byte(fmt.Sprintf("m-%d", seq))})
				seq++
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			results := cl.ProduceSync(ctx, recs...)
			cancel()
			sp.mu.Lock()
			for _, r := range results {
				if r.Err == nil {
					sp.acked = append(sp.acked, string(r.Record.Value))
				} else if sp.err == nil {
					sp.err = r.Err
				}
			}
			sp.mu.Unlock()
		}
	}()
	t.Cleanup(sp.halt)
	return sp
}

// halt stops producing and waits for the last request.
func (sp *steadyProducer) halt() {
	select {
	case <-sp.stop:
	default:
		close(sp.stop)
	}
	<-sp.done
}

func (sp *steadyProducer) ackedSoFar() []string {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return append([]string(nil), sp.acked...)
}

// highWatermarks returns the high watermark of each partition of topic.
func highWatermarks(t *testing.T, c *ferrytest.Cluster, topic string, partitions int32) map[int32]int64 {
	t.Helper()
	ends := make(map[int32]int64)
	for p := range partitions {
		ends[p] = endOffset(t, c, topic, p)
	}
	return ends
}

// awaitCommitted waits up to within for the group's committed offsets of
// topic to equal want, and returns the last ones read.
func awaitCommitted(c *ferrytest.Cluster, group, topic string, want map[int32]int64, within time.Duration) (map[int32]int64, bool) {
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := c.Committed(ctx, group, topic)
		cancel()
		if err == nil && maps.Equal(got, want) {
			return got, true
		}
		if time.Now().After(deadline) {
			return got, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
