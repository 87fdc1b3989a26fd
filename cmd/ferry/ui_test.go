package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrykit/ferry/dashboard"
)

// ferry ui serves the dashboard of any cluster on localhost: a group's
// partitions with their committed offset, end and lag, from the admin API;
// the first Ctrl-C stops it cleanly.
func TestUIServesClusterGroups(t *testing.T) {
	c, brokers := testCluster(t)
	topic, group := laggingTopic(t, c)
	cmd := startFerry(t, nil, "ui", brokers, "-addr", "127.0.0.1:0")
	line := cmd.firstLine(t)
	if !strings.HasPrefix(line, "ferry dashboard at http://127.0.0.1:") {
		t.Fatalf("first line %q", line)
	}
	url := strings.TrimSpace(strings.TrimPrefix(line, "ferry dashboard at "))
	resp, err := http.Get(url + "state.json")
	if err != nil {
		t.Fatal(err)
	}
	var s dashboard.Snapshot
	err = json.NewDecoder(resp.Body).Decode(&s)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var rows []dashboard.Partition
	for _, g := range s.Groups {
		if g.Name == group {
			for _, m := range g.Members {
				rows = append(rows, m.Partitions...)
			}
		}
	}
	if len(rows) != 2 || rows[0].Topic != topic || rows[0].Committed != 3 || rows[0].End != 10 || rows[0].Lag != 7 ||
		rows[1].Committed != 20 || rows[1].Lag != 0 || rows[0].State != "unowned" {
		t.Errorf("group %s in the dashboard: %+v", group, rows)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code, _, err := waitExit(cmd.Cmd, 30*time.Second); err != nil || code != 0 {
		t.Errorf("after SIGINT: exit %d, %v", code, err)
	}
}
