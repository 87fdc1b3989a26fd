package engine

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
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
