package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry/event"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The handler serves the page and the snapshot as JSON, and turns the
// groups' processed counts into messages per second between samples.
func TestHandlerServesPageAndThroughput(t *testing.T) {
	var mu sync.Mutex
	at, processed := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), int64(0)
	src := func(context.Context) (Snapshot, error) {
		mu.Lock()
		defer mu.Unlock()
		return Snapshot{Time: at, Groups: []Group{{Name: "billing", Processed: processed}}}, nil
	}
	srv := httptest.NewServer(Handler(src))
	defer srv.Close()
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s %s", path, resp.Status, b)
		}
		return string(b)
	}
	if page := get("/"); !strings.Contains(page, "state.json") {
		t.Errorf("the page does not poll state.json:\n%s", page)
	}
	var s Snapshot
	for i, n := range []int64{0, 100, 400} { // 100/s then 150/s
		mu.Lock()
		at, processed = at.Add(time.Duration(min(i, 1))*2*time.Second), n
		mu.Unlock()
		if err := json.Unmarshal([]byte(get("/state.json")), &s); err != nil {
			t.Fatal(err)
		}
	}
	r := s.Groups[0].Throughput
	if len(r) != 2 || r[0].PerSecond != 50 || r[1].PerSecond != 150 {
		t.Errorf("throughput %+v, want 50/s then 150/s", r)
	}
}

// A source's error is the JSON request's error, which the page shows.
func TestHandlerReportsSourceError(t *testing.T) {
	srv := httptest.NewServer(Handler(func(context.Context) (Snapshot, error) { return Snapshot{}, errors.New("cluster unreachable") }))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/state.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "cluster unreachable") {
		t.Errorf("%s %s", resp.Status, b)
	}
}

// The collector remembers a partition's failed attempt and its error until
// a batch of it succeeds, and counts dead letters.
func TestCollectorNotes(t *testing.T) {
	d := ForApp()
	d.observe(event.ConsumeFailed{Group: "g", Topic: "t", Partition: 1, Attempt: 3, Err: errors.New("outage")})
	d.observe(event.DeadLettered{Group: "g", Topic: "t", Partition: 1})
	n := d.notes("g", "t", 1)
	if n.attempt != 3 || n.lastError != "outage" || n.deadLetters != 1 {
		t.Errorf("after a failure: %+v", *n)
	}
	d.observe(event.BatchConsumed{Group: "g", Topic: "t", Partition: 1, Count: 5})
	if n.attempt != 0 || n.lastError != "" || d.processed["g"] != 5 {
		t.Errorf("after a success: %+v, processed %d", *n, d.processed["g"])
	}
	if _, err := d.Snapshot(context.Background()); err == nil {
		t.Error("a snapshot without an app to watch: no error")
	}
}
