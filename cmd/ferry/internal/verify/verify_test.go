package verify

import (
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
	if err := countLogs(f, 3, counts); err != nil { // slot 2 has no log: fine
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
	if err := countLogs(f, 1, make([]int, 10)); err == nil {
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
