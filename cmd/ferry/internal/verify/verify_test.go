package verify

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kadm"
)

// A line torn by a SIGKILL mid-write does not count as processed; complete
// lines count once per occurrence across worker logs.
func TestCountLogsIgnoresTornLines(t *testing.T) {
	f := &fleet{cfg: Config{Dir: t.TempDir()}, mode: AtLeastOnce, run: "r"}
	if err := os.WriteFile(f.logPath(0), []byte("0\n1\n2\n1"), 0o644); err != nil { // "1" torn
		t.Fatal(err)
	}
	if err := os.WriteFile(f.logPath(1), []byte("2\n3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	counts := make([]int, 5)
	if err := countLogs(f, 3, counts, make([]int64, 5)); err != nil { // slot 2 has no log: fine
		t.Fatal(err)
	}
	want := []int{1, 1, 2, 1, 0}
	for i := range want {
		if counts[i] != want[i] {
			t.Fatalf("counts %v, want %v", counts, want)
		}
	}
}

func TestCountLogsRejectsCorruption(t *testing.T) {
	f := &fleet{cfg: Config{Dir: t.TempDir()}, mode: AtMostOnce, run: "r"}
	if err := os.WriteFile(f.logPath(0), []byte("0\nx7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := countLogs(f, 1, make([]int, 10), make([]int64, 10)); err == nil {
		t.Fatal("a corrupt line was accepted")
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range Modes {
		for _, s := range []string{m.Short(), m.String()} {
			if got, err := ParseMode(s); err != nil || got != m {
				t.Errorf("ParseMode(%q) = %v, %v", s, got, err)
			}
		}
	}
	if _, err := ParseMode("twice"); err == nil {
		t.Error("ParseMode accepted an unknown mode")
	}
}

// The parallel mode's oracle: per key, first processings happen in offset
// order; a later reprocessing (a duplicate) does not count against it.
func TestKeysOutOfOrder(t *testing.T) {
	f := &fleet{cfg: Config{Dir: t.TempDir()}, mode: ParallelAtLeastOnce, run: "r"}
	k := parallelKeys
	// key 0: ids 0, k, 2k first processed in order, then 0 again (a
	// duplicate after a crash); key 1: id 1+k before id 1.
	log0 := fmt.Sprintf("0 100\n%d 200\n%d 150\n", k, 1+k)
	log1 := fmt.Sprintf("%d 300\n0 400\n1 500\n", 2*k)
	if err := os.WriteFile(f.logPath(0), []byte(log0), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.logPath(1), []byte(log1), 0o644); err != nil {
		t.Fatal(err)
	}
	counts, firsts := make([]int, 3*k), make([]int64, 3*k)
	if err := countLogs(f, 2, counts, firsts); err != nil {
		t.Fatal(err)
	}
	if counts[0] != 2 || firsts[0] != 100 {
		t.Fatalf("id 0: %d processings, first at %d; want 2, first at 100", counts[0], firsts[0])
	}
	if n := keysOutOfOrder(firsts, counts); n != 1 {
		t.Fatalf("%d keys out of order, want 1 (key 1)", n)
	}
}

// Broker faults are spread over the chaos strikes, one in the middle of
// each equal stretch, and there are exactly as many as asked.
func TestFaultDue(t *testing.T) {
	for _, tc := range []struct {
		total, faults int
		want          []int
	}{
		{21, 1, []int{10}},
		{1, 1, []int{0}},
		{4, 2, []int{1, 3}},
		{3, 3, []int{0, 1, 2}},
		{20, 0, nil},
	} {
		var got []int
		for i := range tc.total {
			if faultDue(i, tc.total, tc.faults) {
				got = append(got, i)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("faultDue over %d strikes with %d faults: strikes %v, want %v", tc.total, tc.faults, got, tc.want)
		}
	}
}

// A worker that exits by itself is restarted and its exit is reported with
// the last line it wrote to stderr; a graceful stop that fails is reported
// too; a SIGKILL is not an error exit.
func TestFleetReportsWorkerExits(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "worker")
	// Fails at once the first time it runs in a slot, then runs until
	// signalled; on SIGTERM it exits 3.
	script := `#!/bin/sh
for a in "$@"; do case "$a" in *.log) log="$a";; esac; done
if [ ! -e "$log.ran" ]; then touch "$log.ran"; echo "ferry: group g: ending transaction: boom" >&2; exit 1; fi
trap 'exit 3' TERM
while :; do sleep 0.05; done
`
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fleet{cfg: Config{Dir: dir, Binary: bin, Workers: 2}, mode: AtLeastOnce, run: "r",
		procs: map[int]*exec.Cmd{}, exited: map[int]chan struct{}{}, status: map[int]error{}}
	for s := range 2 {
		if err := f.start(s); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	var dead []int
	for len(dead) < 2 && time.Now().Before(deadline) {
		dead = append(dead, f.reap()...)
		time.Sleep(20 * time.Millisecond)
	}
	if len(dead) != 2 {
		t.Fatalf("reaped %v, want both workers", dead)
	}
	for _, s := range dead {
		if err := f.start(s); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // both run their loop now
	f.stop(0, true)                    // SIGKILL: not an error exit
	f.stop(1, false)                   // SIGTERM: exits 3
	if len(f.errors) != 3 {
		t.Fatalf("%d worker errors, want 3 (two exits by themselves, one failed stop): %q", len(f.errors), f.errors)
	}
	for _, e := range f.errors[:2] {
		if !strings.Contains(e, "exited by itself: exit status 1: ferry: group g: ending transaction: boom") {
			t.Errorf("worker error %q does not say how the worker exited", e)
		}
	}
	if !strings.Contains(f.errors[2], "worker 1 exited on a graceful stop: exit status 3") {
		t.Errorf("worker error %q does not report the failed graceful stop", f.errors[2])
	}
}

// The stall watch measures how long the committed position stood still
// while input was left to commit, and not the time with nothing left.
func TestStallWatch(t *testing.T) {
	c, err := ferrytest.StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic, group = "in", "g"
	if err := c.CreateTopic(ctx, topic, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ProduceN(ctx, topic, 0, 10); err != nil {
		t.Fatal(err)
	}
	commit := func(at int64) {
		t.Helper()
		offs := kadm.Offsets{}
		offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: at, LeaderEpoch: -1})
		if _, err := c.Admin().CommitOffsets(ctx, group, offs); err != nil {
			t.Fatal(err)
		}
	}
	commit(5)
	w := watchStalls(c.Admin(), group, topic, 20*time.Millisecond)
	time.Sleep(time.Second) // stands still at 5 of 10
	commit(10)
	time.Sleep(time.Second) // nothing left: no stall
	stall := w.Stop()
	if stall < 700*time.Millisecond || stall > 1500*time.Millisecond {
		t.Errorf("longest stall %s, want about 1s", stall)
	}
}

// A worker that dies of the verifier's SIGTERM itself (it had not yet set
// up its handler: it was starting) is no error exit; one that handles it
// and exits 0 is none either.
func TestGracefulStopsThatAreNoErrors(t *testing.T) {
	dir := t.TempDir()
	for _, script := range []string{
		"#!/bin/sh\nwhile :; do sleep 0.05; done\n",                     // SIGTERM's default: death
		"#!/bin/sh\ntrap 'exit 0' TERM\nwhile :; do sleep 0.05; done\n", // a clean exit
	} {
		bin := filepath.Join(dir, "worker")
		if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		f := &fleet{cfg: Config{Dir: dir, Binary: bin, Workers: 1}, mode: AtLeastOnce, run: "r",
			procs: map[int]*exec.Cmd{}, exited: map[int]chan struct{}{}, status: map[int]error{}}
		if err := f.start(0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		f.stop(0, false)
		if len(f.errors) > 0 {
			t.Errorf("worker %q: errors %q, want none", script, f.errors)
		}
	}
}
