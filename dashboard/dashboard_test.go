package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
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

// actionsLog is a fake of the app's actions that records its calls.
type actionsLog struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (a *actionsLog) note(format string, args ...any) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, fmt.Sprintf(format, args...))
	return a.err
}

func (a *actionsLog) Pause(g, t string, p int32) error  { return a.note("pause %s %s/%d", g, t, p) }
func (a *actionsLog) Resume(g, t string, p int32) error { return a.note("resume %s %s/%d", g, t, p) }
func (a *actionsLog) Seek(_ context.Context, g, t string, p int32, o int64) error {
	return a.note("seek %s %s/%d %d", g, t, p, o)
}

func (a *actionsLog) called() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

var tokenInPage = regexp.MustCompile(`<meta name="ferry-token" content="([^"]*)">`)

// pageToken loads the page and returns the token it carries.
func pageToken(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := tokenInPage.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no token in the page:\n%s", b)
	}
	return string(m[1])
}

// post sends an action request and returns its status and body.
func post(t *testing.T, url, action, body string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/actions/"+action, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func emptySource(context.Context) (Snapshot, error) { return Snapshot{Groups: []Group{}}, nil }

// O6: without WithActions the page offers no actions: the data says so,
// the page carries no token, and action requests are refused.
func TestActionsOffByDefault(t *testing.T) {
	srv := httptest.NewServer(Handler(emptySource))
	defer srv.Close()
	if tok := pageToken(t, srv.URL); tok != "" {
		t.Errorf("a read-only page carries a token %q", tok)
	}
	code, body := post(t, srv.URL, "pause", `{"group":"g","topic":"t","partition":0}`, nil)
	if code != http.StatusForbidden || !strings.Contains(body, "read-only") {
		t.Errorf("pause on a read-only dashboard: %d %s", code, body)
	}
	resp, err := http.Get(srv.URL + "/state.json")
	if err != nil {
		t.Fatal(err)
	}
	var s Snapshot
	err = json.NewDecoder(resp.Body).Decode(&s)
	resp.Body.Close()
	if err != nil || s.Actions {
		t.Errorf("state of a read-only dashboard: actions %v, %v", s.Actions, err)
	}
}

// O6: with WithActions an action request runs only with the page's token
// and not from another site; the app's refusals come back as 409 and 422
// with their reason.
func TestActionsNeedThePagesToken(t *testing.T) {
	app := &actionsLog{}
	srv := httptest.NewServer(Handler(emptySource, WithActions(app)))
	defer srv.Close()
	tok := pageToken(t, srv.URL)
	if len(tok) < 16 {
		t.Fatalf("page token %q", tok)
	}
	body := `{"group":"billing","topic":"orders","partition":2,"offset":42}`
	for name, h := range map[string]map[string]string{
		"no token":     nil,
		"wrong token":  {"X-Ferry-Token": tok + "x"},
		"cross-site":   {"X-Ferry-Token": tok, "Sec-Fetch-Site": "cross-site"},
		"other origin": {"X-Ferry-Token": tok, "Origin": "http://evil.example"},
	} {
		if code, b := post(t, srv.URL, "pause", body, h); code != http.StatusForbidden {
			t.Errorf("%s: %d %s, want 403", name, code, b)
		}
	}
	if c := app.called(); len(c) != 0 {
		t.Fatalf("refused requests reached the app: %v", c)
	}
	ok := map[string]string{"X-Ferry-Token": tok, "Sec-Fetch-Site": "same-origin"}
	for _, a := range []string{"pause", "resume", "seek"} {
		if code, b := post(t, srv.URL, a, body, ok); code != http.StatusOK {
			t.Errorf("%s: %d %s", a, code, b)
		}
	}
	want := []string{"pause billing orders/2", "resume billing orders/2", "seek billing orders/2 42"}
	if c := app.called(); !slices.Equal(c, want) {
		t.Errorf("calls %q, want %q", c, want)
	}
	if code, _ := post(t, srv.URL, "delete", body, ok); code != http.StatusNotFound {
		t.Errorf("an unknown action: %d, want 404", code)
	}
	for err, want := range map[error]int{
		fmt.Errorf("%w: orders/2", ferry.ErrNotAssigned):           http.StatusConflict,
		fmt.Errorf("%w: 42 is past 10", ferry.ErrOffsetOutOfRange): http.StatusUnprocessableEntity,
	} {
		app.mu.Lock()
		app.err = err
		app.mu.Unlock()
		if code, b := post(t, srv.URL, "seek", body, ok); code != want || !strings.Contains(b, err.Error()) {
			t.Errorf("app answers %v: %d %s, want %d", err, code, b, want)
		}
	}
}

// X2: the app's page shows each partition's state from its stats — revoking
// before anything, a pause by an operator before a retry — its messages in
// flight, and the member's id.
func TestSnapshotShowsStates(t *testing.T) {
	d := ForApp()
	d.observe(event.ConsumeFailed{Group: "g", Topic: "t", Partition: 2, Attempt: 2, Err: errors.New("down")})
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := d.snapshotLocked(ferry.Stats{Groups: []ferry.GroupStats{{Name: "g", Running: true, Joined: true, MemberID: "m-1",
		Partitions: []ferry.PartitionStats{
			{Topic: "t", Partition: 0, Revoking: true, InFlight: 3, ConsumingSince: since},
			{Topic: "t", Partition: 1, PausedByUser: true, Paused: true, FailingSince: since},
			{Topic: "t", Partition: 2, FailingSince: since, Paused: true},
			{Topic: "t", Partition: 3, Paused: true, RecordFull: true, InFlight: 7},
			{Topic: "t", Partition: 4},
		}}}}, since)
	m := s.Groups[0].Members[0]
	if m.ID != "m-1" {
		t.Errorf("member %q, want m-1", m.ID)
	}
	want := []Partition{
		{Topic: "t", Partition: 0, State: "revoking", InFlight: 3, ConsumingSince: since},
		{Topic: "t", Partition: 1, State: "paused", PausedByUser: true},
		{Topic: "t", Partition: 2, State: "retrying", Attempt: 2, LastError: "down"},
		{Topic: "t", Partition: 3, State: "paused", RecordFull: true, InFlight: 7},
		{Topic: "t", Partition: 4, State: "owned"},
	}
	if !slices.Equal(m.Partitions, want) {
		t.Errorf("rows\n%+v\nwant\n%+v", m.Partitions, want)
	}
}
