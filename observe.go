package ferry

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ferrykit/ferry/event"
)

// subscribers joins the OnEvent subscribers into one function; nil when
// there are none, so the engine builds no event.
func subscribers(fns []func(event.Event)) func(event.Event) {
	switch len(fns) {
	case 0:
		return nil
	case 1:
		return fns[0]
	}
	return func(e event.Event) {
		for _, fn := range fns {
			fn(e)
		}
	}
}

// Stats is a snapshot of the app, taken without any request to Kafka.
type Stats struct {
	Groups []GroupStats
}

// GroupStats is one consumer group of the app.
type GroupStats struct {
	Name string
	// Running: Run is running.
	Running bool
	// Joined: the member joined its group and received its assignment
	// (X4); false again while the assignment is lost and during shutdown.
	Joined bool
	// MemberID is the member's id in its group, as the group coordinator
	// knows it (kafka-consumer-groups and `ferry lag` show it); "" before
	// it joined.
	MemberID string
	// LastFetch is when a fetch was last answered (for an exactly-once
	// group also when a transaction ended); zero before the first.
	LastFetch time.Time
	// Partitions are the partitions assigned to this member, by topic and
	// number.
	Partitions []PartitionStats
}

// PartitionStats is one assigned partition (X2). Offsets are next offsets
// (the offset of the next message); -1 means not known yet.
type PartitionStats struct {
	Topic     string
	Partition int32
	// EndOffset is how far the partition can be read, as of the latest
	// fetch that returned it: its last stable offset (read_committed), which
	// is its high watermark when no transaction is open. It comes with the
	// fetches: no request is made for it.
	EndOffset int64
	// CommittedOffset is the group's committed offset.
	CommittedOffset int64
	// ProcessedOffset is the offset after the last message whose Consume
	// returned (the committed offset until the first batch).
	ProcessedOffset int64
	// Lag is EndOffset − CommittedOffset: what a restart would consume.
	Lag int64
	// ProcessingLag is EndOffset − ProcessedOffset: what is left to process.
	ProcessingLag int64
	// FailingSince is when the first of its current run of failed attempts
	// happened; zero when its last attempt succeeded.
	FailingSince time.Time
	// ConsumingSince is when the Consume call running now started — with
	// Parallel, the oldest one still running; zero when none runs, or when
	// ConsumeStallTimeout is 0.
	ConsumingSince time.Time
	// Paused: its fetching is paused (retry backoff, its consumer is
	// behind its fetched messages, or App.Pause).
	Paused bool
	// PausedByUser: App.Pause paused it, until App.Resume (O4).
	PausedByUser bool
	// Revoking: its revocation began — no new batch starts — and waits for
	// the work in flight to finish and its marks to be committed before
	// the partition is handed over (A3).
	Revoking bool
	// Queued is the number of fetched messages waiting for a batch.
	Queued int
	// InFlight is the number of messages handed to Consume and not
	// finished: the running batch's, or with Parallel the messages of
	// every running call.
	InFlight int
	// RecordFull: a Parallel partition takes no new messages until its
	// oldest unfinished message finishes, because the record of the
	// messages finished after it would no longer fit in the commit
	// metadata (K4). Its fetching goes on until Queued reaches QueueBytes.
	RecordFull bool
}

// Stats returns a snapshot of every group's assigned partitions, their
// offsets and lag (X2). It takes no request to Kafka: the end offsets come
// with the fetches. Safe to call at any time, also from an event subscriber.
func (a *App) Stats() Stats {
	s := Stats{Groups: make([]GroupStats, 0, len(a.groups))}
	for _, g := range a.groups {
		es := g.Stats()
		gs := GroupStats{Name: es.Name, Running: es.Running, Joined: es.Joined, MemberID: es.MemberID, LastFetch: es.LastAlive}
		for _, p := range es.Partitions {
			gs.Partitions = append(gs.Partitions, PartitionStats{
				Topic: p.Topic, Partition: p.Partition,
				EndOffset: p.End, CommittedOffset: p.Committed, ProcessedOffset: p.Processed,
				Lag: lag(p.End, p.Committed), ProcessingLag: lag(p.End, p.Processed),
				FailingSince: p.FailingSince, ConsumingSince: p.ConsumingSince, Paused: p.Paused, Queued: p.Queued, RecordFull: p.RecordFull,
				PausedByUser: p.PausedByUser, Revoking: p.Revoking, InFlight: p.InFlight,
			})
		}
		slices.SortFunc(gs.Partitions, func(x, y PartitionStats) int {
			return cmp.Or(cmp.Compare(x.Topic, y.Topic), cmp.Compare(x.Partition, y.Partition))
		})
		s.Groups = append(s.Groups, gs)
	}
	return s
}

func lag(end, at int64) int64 {
	if end < 0 || at < 0 {
		return -1
	}
	return max(end-at, 0)
}

// ErrNotReady and ErrUnhealthy are wrapped by the errors Ready and Healthy
// return.
var (
	ErrNotReady  = errors.New("ferry: not ready")
	ErrUnhealthy = errors.New("ferry: unhealthy")
)

// Ready reports whether the app consumes (X4): nil once Run is running and
// every group joined and received its assignment (possibly empty, when the
// group has more members than partitions), else an error wrapping
// ErrNotReady that says which group is not.
func (a *App) Ready() error {
	var why []string
	for _, g := range a.groups {
		switch s := g.Stats(); {
		case !s.Running:
			why = append(why, fmt.Sprintf("group %q: not running", s.Name))
		case !s.Joined:
			why = append(why, fmt.Sprintf("group %q: not joined", s.Name))
		}
	}
	if len(why) > 0 {
		return fmt.Errorf("%w: %s", ErrNotReady, strings.Join(why, "; "))
	}
	return nil
}

// Healthy reports whether the app works (X4): nil unless Run is not
// running, fetching stalled for FetchStallTimeout (assigned partitions
// that are not paused, revoked or shutting down got no fetch answer), a
// partition has been failing for FailingTimeout (unless an operator paused
// it, App.Pause), or a Consume call has
// been running for ConsumeStallTimeout; then an error wrapping
// ErrUnhealthy that says which.
func (a *App) Healthy() error {
	now := time.Now()
	var why []string
	for _, g := range a.groups {
		s := g.Stats()
		if !s.Running {
			why = append(why, fmt.Sprintf("group %q: not running", s.Name))
			continue
		}
		fetching := false
		for _, p := range s.Partitions {
			fetching = fetching || p.Fetching
			if !p.FailingSince.IsZero() && !p.PausedByUser && now.Sub(p.FailingSince) >= a.cfg.failingTimeout {
				why = append(why, fmt.Sprintf("group %q: %s/%d failing since %s",
					s.Name, p.Topic, p.Partition, p.FailingSince.UTC().Format(time.RFC3339)))
			}
			if a.cfg.consumeStall > 0 && !p.ConsumingSince.IsZero() && now.Sub(p.ConsumingSince) >= a.cfg.consumeStall {
				why = append(why, fmt.Sprintf("group %q: %s/%d: Consume running since %s",
					s.Name, p.Topic, p.Partition, p.ConsumingSince.UTC().Format(time.RFC3339)))
			}
		}
		if fetching && !s.Backpressure && !s.LastAlive.IsZero() && now.Sub(s.LastAlive) >= a.cfg.stallTimeout {
			why = append(why, fmt.Sprintf("group %q: no fetch answered since %s",
				s.Name, s.LastAlive.UTC().Format(time.RFC3339)))
		}
	}
	if len(why) > 0 {
		return fmt.Errorf("%w: %s", ErrUnhealthy, strings.Join(why, "; "))
	}
	return nil
}

// HealthHandler serves the app's health for probes (X4): a path ending in
// /healthz answers Healthy, one ending in /readyz answers Ready — 200 and
// "ok", or 503 and the reason. Other paths get 404. Mount it on both:
//
//	mux.Handle("/healthz", app.HealthHandler())
//	mux.Handle("/readyz", app.HealthHandler())
func (a *App) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var err error
		switch {
		case strings.HasSuffix(r.URL.Path, "/healthz"):
			err = a.Healthy()
		case strings.HasSuffix(r.URL.Path, "/readyz"):
			err = a.Ready()
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}
