// Package dashboard serves a live web page of consumer groups: each group's
// members and their partitions — state (owned, retrying with its attempt and
// last error, paused), committed and end offsets, lag, queued messages, dead
// letters — and a chart of the messages processed per second over the last
// minutes. The page polls a JSON document (state.json beside it) every
// second.
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
// The page is read-only: it offers no action on the groups.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"sync"
	"time"
)

// Snapshot is what the page shows at one moment.
type Snapshot struct {
	Time   time.Time `json:"time"`
	Source string    `json:"source"` // what the data comes from, shown in the page's header
	Groups []Group   `json:"groups"`
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
	Topic       string `json:"topic"`
	Partition   int32  `json:"partition"`
	State       string `json:"state"`   // owned, retrying, paused (an app's page); owned or unowned: committed, no member (ferry ui)
	Attempt     int    `json:"attempt"` // of the failing batch, when retrying
	LastError   string `json:"last_error,omitempty"`
	Committed   int64  `json:"committed"`
	End         int64  `json:"end"`
	Lag         int64  `json:"lag"`
	Queued      int    `json:"queued"` // fetched, waiting for a batch
	DeadLetters int64  `json:"dead_letters"`
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

// Handler serves the page at "/" and its data at "/state.json", from src.
// It keeps the throughput history of the last minutes, sampled whenever the
// data is asked for (the page asks every second); nothing runs between
// requests.
func Handler(src Source) http.Handler {
	h := &handler{src: src, history: map[string][]sample{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.page)
	mux.HandleFunc("GET /state.json", h.state)
	return mux
}

type sample struct {
	at        time.Time
	processed int64
}

type handler struct {
	src     Source
	mu      sync.Mutex
	history map[string][]sample // group → samples, oldest first
}

func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = page.Execute(w, nil)
}

func (h *handler) state(w http.ResponseWriter, r *http.Request) {
	s, err := h.src(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	h.throughput(&s)
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
