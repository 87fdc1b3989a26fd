// Package dashboard serves a live web page of consumer groups: each group's
// members and their partitions — state (owned, revoking, retrying with its
// attempt and last error, paused), committed and end offsets, lag, queued
// messages, messages in flight, dead letters — and a chart of the messages
// processed per second over the last minutes. The page polls a JSON
// document (state.json beside it) every second.
//
// A running app mounts it with what only the app knows (retries, errors,
// dead letters), collected from its events:
//
//	board := dashboard.ForApp()
//	app, err := ferry.New(..., board.Option())
//	board.Watch(app)
//	http.Handle("/ferry/", http.StripPrefix("/ferry", dashboard.Handler(board.Snapshot)))
//
// The ferry command's `ferry ui` serves the same page for any cluster, from
// what the cluster's admin API tells (committed and end offsets, members).
//
// The page is read-only unless the handler is given WithActions: then each
// partition has buttons to pause and resume it and to skip it to an offset
// (ferry.App's Pause, Resume and Seek), served as POST requests that only
// the page itself can make (O6):
//
//	dashboard.Handler(board.Snapshot, dashboard.WithActions(app))
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"sync"
	"time"

	"github.com/ferrykit/ferry"
)

// Snapshot is what the page shows at one moment.
type Snapshot struct {
	Time   time.Time `json:"time"`
	Source string    `json:"source"` // what the data comes from, shown in the page's header
	Groups []Group   `json:"groups"`
	// Actions is filled by the handler: whether the page offers actions
	// (WithActions).
	Actions bool `json:"actions"`
}

// Group is one consumer group.
type Group struct {
	Name    string   `json:"name"`
	State   string   `json:"state"` // e.g. Stable, Empty, joining
	Members []Member `json:"members"`
	// Processed counts the group's messages processed (or committed, for
	// an admin view) since some fixed point: the chart shows its rate.
	Processed int64 `json:"processed"`
	// Throughput is filled by the handler: messages per second over the
	// last minutes, oldest first.
	Throughput []Rate `json:"throughput"`
}

// Member is one member of a group and the partitions it owns; a member
// with an empty ID holds the partitions no member owns.
type Member struct {
	ID         string      `json:"id"`
	ClientID   string      `json:"client_id"`
	Host       string      `json:"host"`
	Partitions []Partition `json:"partitions"`
}

// Partition is one partition of a group. Offsets are next offsets; -1 is
// not known.
type Partition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// State is owned, revoking, retrying or paused on an app's page; owned
	// or unowned (committed, no member) for ferry ui.
	State string `json:"state"`
	// PausedByUser: paused until resumed (ferry.App.Pause).
	PausedByUser bool   `json:"paused_by_user,omitempty"`
	Attempt      int    `json:"attempt"` // of the failing batch, when retrying
	LastError    string `json:"last_error,omitempty"`
	Committed    int64  `json:"committed"`
	End          int64  `json:"end"`
	Lag          int64  `json:"lag"`
	Queued       int    `json:"queued"`    // fetched, waiting for a batch; -1 not known
	InFlight     int    `json:"in_flight"` // handed to Consume, not finished; -1 not known
	// ConsumingSince is when the oldest Consume call running started.
	ConsumingSince time.Time `json:"consuming_since,omitzero"`
	// RecordFull: a parallel partition takes no new messages until its
	// oldest unfinished one finishes (ferry's K4).
	RecordFull  bool  `json:"record_full,omitempty"`
	DeadLetters int64 `json:"dead_letters"`
}

// Rate is the messages processed per second in the interval ending at Time.
type Rate struct {
	Time      time.Time `json:"time"`
	PerSecond float64   `json:"per_second"`
}

// A Source takes a snapshot.
type Source func(ctx context.Context) (Snapshot, error)

//go:embed page.html
var files embed.FS

var page = template.Must(template.ParseFS(files, "page.html"))

// window is how far back the throughput chart reaches.
const window = 5 * time.Minute

// Actions are what the page's buttons do; *ferry.App has them.
type Actions interface {
	Pause(group, topic string, partition int32) error
	Resume(group, topic string, partition int32) error
	Seek(ctx context.Context, group, topic string, partition int32, offset int64) error
}

// An Option configures a Handler.
type Option func(*handler)

// WithActions makes the page offer actions on each partition: pause,
// resume and skip to an offset, done through a — a *ferry.App — with its
// Pause, Resume and Seek (O6). Without it the page is read-only: it shows
// no buttons and the action requests are refused (403).
//
// The actions are POST requests to /actions/pause, /actions/resume and
// /actions/seek that carry the page's token in an X-Ferry-Token header; a
// request without it, or that a browser marks as coming from another site
// (Sec-Fetch-Site, Origin), is refused: another site open in the same
// browser cannot pause a partition. Who may open the page at all is the
// server's business — listen on localhost, or put it behind your
// authentication.
func WithActions(a Actions) Option { return func(h *handler) { h.actions = a } }

// Handler serves the page at "/" and its data at "/state.json", from src.
// It keeps the throughput history of the last minutes, sampled whenever the
// data is asked for (the page asks every second); nothing runs between
// requests.
func Handler(src Source, opts ...Option) http.Handler {
	h := &handler{src: src, history: map[string][]sample{}, token: rand.Text(), csrf: http.NewCrossOriginProtection()}
	for _, o := range opts {
		o(h)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.page)
	mux.HandleFunc("GET /state.json", h.state)
	mux.HandleFunc("POST /actions/{action}", h.act)
	return mux
}

type sample struct {
	at        time.Time
	processed int64
}

type handler struct {
	src     Source
	actions Actions // nil: read-only
	token   string  // what the page's action requests must carry
	csrf    *http.CrossOriginProtection
	mu      sync.Mutex
	history map[string][]sample // group → samples, oldest first
}

func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	var token string
	if h.actions != nil {
		token = h.token
	}
	_ = page.Execute(w, struct{ Token string }{token})
}

// action is the body of an action request.
type action struct {
	Group     string `json:"group"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"` // seek only
}

// act runs one of the page's actions (O6).
func (h *handler) act(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, format string, args ...any) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		fmt.Fprintf(w, format+"\n", args...)
	}
	if h.actions == nil {
		fail(http.StatusForbidden, "this dashboard is read-only: it offers no actions")
		return
	}
	if err := h.csrf.Check(r); err != nil {
		fail(http.StatusForbidden, "refused: %v", err)
		return
	}
	if got := r.Header.Get("X-Ferry-Token"); subtle.ConstantTimeCompare([]byte(got), []byte(h.token)) != 1 {
		fail(http.StatusForbidden, "refused: actions come from the dashboard's own page (X-Ferry-Token header missing or wrong)")
		return
	}
	var a action
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&a); err != nil {
		fail(http.StatusBadRequest, "bad request: %v", err)
		return
	}
	var err error
	switch r.PathValue("action") {
	case "pause":
		err = h.actions.Pause(a.Group, a.Topic, a.Partition)
	case "resume":
		err = h.actions.Resume(a.Group, a.Topic, a.Partition)
	case "seek":
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		err = h.actions.Seek(ctx, a.Group, a.Topic, a.Partition, a.Offset)
		cancel()
	default:
		fail(http.StatusNotFound, "no action %q: pause, resume or seek", r.PathValue("action"))
		return
	}
	switch {
	case err == nil:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"ok":true}`)
	case errors.Is(err, ferry.ErrNotAssigned), errors.Is(err, ferry.ErrTransactional):
		fail(http.StatusConflict, "%v", err)
	case errors.Is(err, ferry.ErrOffsetOutOfRange):
		fail(http.StatusUnprocessableEntity, "%v", err)
	default:
		fail(http.StatusInternalServerError, "%v", err)
	}
}

func (h *handler) state(w http.ResponseWriter, r *http.Request) {
	s, err := h.src(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	h.throughput(&s)
	s.Actions = h.actions != nil
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(s)
}

// throughput records each group's processed count and fills its rates.
func (h *handler) throughput(s *Snapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range s.Groups {
		g := &s.Groups[i]
		hist := h.history[g.Name]
		if n := len(hist); n == 0 || s.Time.Sub(hist[n-1].at) >= time.Second {
			hist = append(hist, sample{s.Time, g.Processed})
		}
		for len(hist) > 0 && s.Time.Sub(hist[0].at) > window {
			hist = hist[1:]
		}
		h.history[g.Name] = hist
		g.Throughput = []Rate{}
		for j := 1; j < len(hist); j++ {
			d := hist[j].at.Sub(hist[j-1].at).Seconds()
			g.Throughput = append(g.Throughput, Rate{Time: hist[j].at, PerSecond: max(float64(hist[j].processed-hist[j-1].processed), 0) / d})
		}
	}
}
