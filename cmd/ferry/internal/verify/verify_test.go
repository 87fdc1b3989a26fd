package verify

import (
	"fmt"
	"os"
	"testing"
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
