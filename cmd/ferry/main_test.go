package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrykit/ferry/ferrytest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "ferry")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is the ferry binary running in the background (startFerry),
// killed at the end of the test.
type process struct {
	*exec.Cmd
	stdout *bufio.Reader
	stderr *ferrytest.Log // safe to read while the process writes
}

// startFerry starts the ferry binary with args, and env added to the test's
// environment.
func startFerry(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	p := &process{Cmd: exec.Command(binary, args...), stderr: &ferrytest.Log{}}
	p.Env = append(os.Environ(), env...)
	p.Stderr = p.stderr
	out, err := p.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Process.Kill() })
	p.stdout = bufio.NewReader(out)
	return p
}

// firstLine returns the first line the process printed, failing the test
// with its stderr when there is none.
func (p *process) firstLine(t *testing.T) string {
	t.Helper()
	line, err := p.stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("no line printed: %v\n%s", err, p.stderr)
	}
	return line
}

// startConsume runs `ferry consume` on a fresh topic holding a few messages
// and waits until it printed the first one.
func startConsume(t *testing.T, sleep string) (*exec.Cmd, *ferrytest.Log) {
	t.Helper()
	c := ferrytest.New(t)
	topic := ferrytest.NewTopic(t, c, 1)
	ferrytest.Fill(t, c, topic, 0, 300)
	p := startFerry(t, nil, "consume", "-brokers", strings.Join(c.Brokers(), ","), "-topic", topic,
		"-group", ferrytest.UniqueName("g"), "-sleep", sleep)
	p.firstLine(t)
	go func() { _, _ = p.stdout.WriteTo(discard{}) }()
	return p.Cmd, p.stderr
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func waitExit(cmd *exec.Cmd, within time.Duration) (int, time.Duration, error) {
	began := time.Now()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode(), time.Since(began), nil
		}
		return 0, time.Since(began), err
	case <-time.After(within):
		return -1, within, errors.New("did not exit")
	}
}

// A4: the first SIGINT drains: the in-flight batch finishes, then ferry exits
// cleanly.
func TestFirstSignalDrains(t *testing.T) {
	cmd, stderr := startConsume(t, "1500ms") // the first batch is in flight
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	code, took, err := waitExit(cmd, 30*time.Second)
	if err != nil || code != 0 {
		t.Fatalf("exit code %d, err %v, want a clean exit\n%s", code, err, stderr)
	}
	if took < time.Second {
		t.Errorf("exited after %s: it did not wait for the in-flight batch", took)
	}
	if !strings.Contains(stderr.String(), "stopping gracefully") {
		t.Errorf("stderr lacks the graceful-stop notice:\n%s", stderr)
	}
}

// A4: a second signal exits at once, whatever is in flight.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	cmd, stderr := startConsume(t, "20s")
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// At once: well before the 20 s batch in flight could finish, however
	// slowly a loaded machine runs the exit.
	code, took, err := waitExit(cmd, 15*time.Second)
	if err != nil {
		t.Fatalf("%v after the second signal\n%s", err, stderr)
	}
	if code != 130 || took > 10*time.Second {
		t.Fatalf("exit code %d after %s, want 130 at once\n%s", code, took, stderr)
	}
}

// The tour runs on the embedded cluster with no setup, loses nothing, and
// shows the hand-off it announces: A hands partitions over and member B
// processes messages of them. It runs as a user runs it, with the default
// waves (with smaller ones a hand-off happened to finish in time even when
// the tour did not wait for it).
func TestTour(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"tour"}, &out, &errb); err != nil {
		t.Fatalf("tour: %v\n%s\n%s", err, out.String(), errb.String())
	}
	for _, want := range []string{"FAILED (simulated outage)", "(attempt 2)", "revoked", "0 lost, 0 duplicated", "every partition at its end: true"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("tour output lacks %q:\n%s", want, out.String())
		}
	}
	byB := 0
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		if i := slices.Index(f, "msgs"); len(f) > 0 && f[0] == "B" && i > 0 {
			n, _ := strconv.Atoi(f[i-1])
			byB += n
		}
	}
	if byB == 0 {
		t.Errorf("member B processed no batch: the tour did not show the hand-off\n%s", out.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf("B %d)", byB)) {
		t.Errorf("summary does not credit B with its %d messages\n%s", byB, out.String())
	}
}

// The demo measures all three modes under SIGKILLs on the embedded cluster
// with no setup, in under a minute, and every mode keeps its guarantee:
// at-most-once never duplicates, at-least-once never loses, exactly-once
// does neither.
func TestDemo(t *testing.T) {
	cmd := exec.Command(binary, "demo")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	began := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errb.String())
	}
	if strings.Contains(errb.String(), "\r") { // stderr is a pipe here, not a terminal
		t.Errorf("the progress redraws itself with \\r in a log:\n%q", errb.String())
	}
	if took := time.Since(began); took > 60*time.Second {
		t.Errorf("demo took %s, want under a minute", took)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasSuffix(f[0], "-once") {
			rows[f[0]] = f
		}
	}
	if strings.Contains(out.String(), "✗") || len(rows) != 3 {
		t.Fatalf("demo table:\n%s", out.String())
	}
	// Fields after the commit-timing words: messages kills broker rebalances lost duplicated exits
	// stall msgs/s ✓ …
	nums := func(mode string) (lost, dup string) {
		f := rows[mode]
		for i, s := range f {
			if s == "✓" {
				return f[i-5], f[i-4]
			}
		}
		t.Fatalf("no verdict in %q", f)
		return
	}
	if _, dup := nums("at-most-once"); dup != "0" {
		t.Errorf("at-most-once duplicated %s", dup)
	}
	if lost, _ := nums("at-least-once"); lost != "0" {
		t.Errorf("at-least-once lost %s", lost)
	}
	if lost, dup := nums("exactly-once"); lost != "0" || dup != "0" {
		t.Errorf("exactly-once lost %s, duplicated %s", lost, dup)
	}
	// Exactly once into PostgreSQL: its row with a database at hand, else
	// one line saying how to get it.
	if os.Getenv("FERRY_POSTGRES") != "" {
		var row []string
		for _, line := range strings.Split(out.String(), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == "exactly-once-db" {
				row = f
			}
		}
		rows["exactly-once-db"] = row
		if lost, dup := nums("exactly-once-db"); lost != "0" || dup != "0" {
			t.Errorf("exactly-once into PostgreSQL lost %s, duplicated %s", lost, dup)
		}
	} else if !strings.Contains(out.String(), "set FERRY_POSTGRES") {
		t.Errorf("without FERRY_POSTGRES the demo does not say how to add the PostgreSQL row:\n%s", out.String())
	}
}

// Flag values that make no sense are refused with an error naming the flag,
// before anything runs — never a run with some other value and a ✓.
func TestNonsenseFlagsAreRefused(t *testing.T) {
	// -kafka's broker is found through its run dir (the port file
	// scripts/kafka writes): here one on port 1, whatever broker the
	// environment names — the real-broker stage of the test suite sets
	// FERRY_KAFKA_DIR and FERRY_BROKERS to the same broker.
	kafkaDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(kafkaDir, "port"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FERRY_KAFKA_DIR", kafkaDir)
	t.Setenv("FERRY_BROKERS", "")
	for _, args := range [][]string{
		{"demo", "-kills", "-3"},
		{"verify", "-kills", "-1"},
		{"verify", "-messages", "0"},
		{"verify", "-workers", "0"},
		{"verify", "-partitions", "-2"},
		{"verify", "-every", "0s"},
		{"verify", "-broker-faults", "-1"},
		{"verify", "-broker-faults", "1"}, // without a broker to fault (-kafka)
		{"verify", "-broker-fault", "melt"},
		{"verify", "-broker-faults", "1", "-broker-fault", "stop", "-broker-stop", "0s"},
		{"verify", "-kafka", "scripts/kafka"},                            // no -brokers: not the broker -kafka runs
		{"verify", "-brokers", "127.0.0.1:2", "-kafka", "scripts/kafka"}, // a broker -brokers does not name
		{"bench", "-messages", "0"},
		{"bench", "-rounds", "0"},
		{"bench", "-only", "both"},
		{"tour", "-messages", "-5"},
		{"cluster", "-port", "70000"},
		{"consume", "-topic", "t", "-sleep", "-1s"},
	} {
		var out, errb bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := run(ctx, args, &out, &errb)
		cancel()
		flag := args[len(args)-2]
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("ferry %s: error %v, want one naming %s", strings.Join(args, " "), err, flag)
		}
		if out.Len() > 0 {
			t.Errorf("ferry %s printed %q before refusing", strings.Join(args, " "), out.String())
		}
	}
}
