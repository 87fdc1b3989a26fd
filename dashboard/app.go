package dashboard

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/event"
)

// App collects what the page shows of a running app: its stats, and from
// its events the retries, their errors, the dead letters and the messages
// processed.
type App struct {
	mu        sync.Mutex
	app       *ferry.App
	parts     map[key]*partitionNotes
	processed map[string]int64 // group → messages processed
}

type key struct {
	group, topic string
	partition    int32
}

type partitionNotes struct {
	attempt     int
	lastError   string
	deadLetters int64
}

// ForApp returns a collector; give its Option to ferry.New and the app to
// Watch.
func ForApp() *App {
	return &App{parts: map[key]*partitionNotes{}, processed: map[string]int64{}}
}

// Option subscribes the collector to the app's events.
func (d *App) Option() ferry.Option { return ferry.OnEvent(d.observe) }

// Watch sets the app whose stats the page shows.
func (d *App) Watch(app *ferry.App) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.app = app
}

func (d *App) notes(group, topic string, partition int32) *partitionNotes {
	k := key{group, topic, partition}
	n := d.parts[k]
	if n == nil {
		n = &partitionNotes{}
		d.parts[k] = n
	}
	return n
}

func (d *App) observe(e event.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch e := e.(type) {
	case event.BatchConsumed:
		d.processed[e.Group] += int64(e.Count)
		n := d.notes(e.Group, e.Topic, e.Partition)
		n.attempt, n.lastError = 0, ""
	case event.ConsumeFailed:
		n := d.notes(e.Group, e.Topic, e.Partition)
		n.attempt = e.Attempt
		if e.Err != nil {
			n.lastError = e.Err.Error()
		}
	case event.DeadLettered:
		d.notes(e.Group, e.Topic, e.Partition).deadLetters++
	}
}

// Snapshot is the Source of the app's page.
func (d *App) Snapshot(context.Context) (Snapshot, error) {
	d.mu.Lock()
	app := d.app
	d.mu.Unlock()
	if app == nil {
		return Snapshot{}, fmt.Errorf("dashboard: no app to show yet (App.Watch)")
	}
	stats := app.Stats() // outside d.mu: events arrive while it runs
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.snapshotLocked(stats, time.Now()), nil
}

// snapshotLocked turns the app's stats and the collected notes into what
// the page shows.
func (d *App) snapshotLocked(stats ferry.Stats, now time.Time) Snapshot {
	s := Snapshot{Time: now, Source: "this app", Groups: []Group{}}
	for _, g := range stats.Groups {
		state := "joined"
		switch {
		case !g.Running:
			state = "stopped"
		case !g.Joined:
			state = "joining"
		}
		m := Member{ID: g.MemberID, Partitions: []Partition{}}
		if m.ID == "" {
			m.ID = "(this app, not joined)"
		}
		for _, p := range g.Partitions {
			n := d.notes(g.Name, p.Topic, p.Partition)
			row := Partition{Topic: p.Topic, Partition: p.Partition, State: "owned", PausedByUser: p.PausedByUser,
				Committed: p.CommittedOffset, End: p.EndOffset, Lag: p.Lag, Queued: p.Queued, InFlight: p.InFlight,
				ConsumingSince: p.ConsumingSince, RecordFull: p.RecordFull, DeadLetters: n.deadLetters}
			if !p.FailingSince.IsZero() {
				row.Attempt, row.LastError = n.attempt, n.lastError
			}
			switch {
			case p.Revoking:
				row.State = "revoking"
			case p.PausedByUser:
				row.State = "paused"
			case !p.FailingSince.IsZero():
				row.State = "retrying"
			case p.Paused:
				row.State = "paused"
			}
			m.Partitions = append(m.Partitions, row)
		}
		s.Groups = append(s.Groups, Group{Name: g.Name, State: state, Members: []Member{m}, Processed: d.processed[g.Name]})
	}
	return s
}
