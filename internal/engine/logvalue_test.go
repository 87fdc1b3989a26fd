package engine

import (
	"bytes"
	"errors"
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
	k := newKgoLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "g")
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

// franz-go's lines about the group name it once: the app's logger already
// carries group=, so franz-go's own group key is dropped when it is the
// same group (and kept when it is another).
func TestFranzGoLogNamesTheGroupOnce(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("group", "orders")
	k := newKgoLogger(log, "orders")
	k.Log(kgo.LogLevelInfo, "beginning to manage the group lifecycle", "group", "orders")
	k.Log(kgo.LogLevelInfo, "joined", "group", "other", "member_id", "m-1")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log %q, want two lines", buf.String())
	}
	if n := strings.Count(lines[0], "group="); n != 1 || !strings.Contains(lines[0], "group=orders") {
		t.Errorf("line %q names the group %d times, want group=orders once", lines[0], n)
	}
	if !strings.Contains(lines[1], "group=orders") || !strings.Contains(lines[1], "group=other") || !strings.Contains(lines[1], "member_id=m-1") {
		t.Errorf("line %q lost franz-go's own keys", lines[1])
	}
}

// A failed join reaches the poll loop as an error of the whole client (no
// topic, partition 0). It is logged as what it is — the group could not be
// joined — not as a fetch error, and once per interval however often it
// repeats.
func TestFailedJoinIsLoggedAsAGroupErrorOnce(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil)).With("group", "orders")
	g := &group{cfg: &Group{Name: "orders"}, log: log}
	dial := errors.New("unable to dial: dial tcp 127.0.0.1:1: connect: connection refused")
	failedJoin := kgo.Fetches{{Topics: []kgo.FetchTopic{{Partitions: []kgo.FetchPartition{
		{Partition: 0, Err: &kgo.ErrGroupSession{Err: dial}},
	}}}}}
	for range 3 {
		if err := g.logFetchErrors(failedJoin); err != nil {
			t.Fatalf("logFetchErrors: %v", err)
		}
	}
	out := buf.String()
	if n := strings.Count(out, "\n"); n != 1 {
		t.Fatalf("log %q: %d lines for three failed joins within the interval, want 1", out, n)
	}
	for _, want := range []string{`msg="ferry: cannot join the group; retrying"`, "group=orders", `err="unable to dial: dial tcp`} {
		if !strings.Contains(out, want) {
			t.Errorf("log line %q lacks %s", out, want)
		}
	}
	for _, unwanted := range []string{"fetch error", "topic=", "partition="} {
		if strings.Contains(out, unwanted) {
			t.Errorf("log line %q says %s", out, unwanted)
		}
	}
}
