package engine

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Logs name partitions as sorted topic[partitions] lists, never as Go's map
// syntax.
func TestPartitionListLogsSortedTopicPartitions(t *testing.T) {
	l := partitionList{"payments": {3}, "orders": {2, 0, 1}}
	if got, want := l.String(), "orders[0 1 2] payments[3]"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("ferry: partitions assigned", "assigned", l)
	if out := buf.String(); !strings.Contains(out, `assigned="orders[0 1 2] payments[3]"`) || strings.Contains(out, "map[") {
		t.Errorf("log line %q, want the sorted list and no map syntax", out)
	}
}

// franz-go's own log lines name partitions the same way: maps it logs are
// rendered with sorted keys, never in Go's map syntax.
func TestFranzGoLogMapsAreReadable(t *testing.T) {
	var buf bytes.Buffer
	k := newKgoLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	k.Log(kgo.LogLevelInfo, "assigned", "now_assigned", map[string][]int32{"payments": {3}, "orders": {0, 1, 2}},
		"offsets", map[string]map[int32]int64{"orders": {1: 7, 0: 5}}, "none", map[string][]int32{})
	out := buf.String()
	for _, want := range []string{`now_assigned="orders[0 1 2] payments[3]"`, `offsets="orders[0=5 1=7]"`, "none=none"} {
		if !strings.Contains(out, want) {
			t.Errorf("log line %q lacks %s", out, want)
		}
	}
	if strings.Contains(out, "map[") {
		t.Errorf("log line %q prints a Go map", out)
	}
}
