package engine

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// How often a group checks that its routed topics exist, and how often it
// repeats that one is missing (B7).
const (
	topicCheckEvery  = 2 * time.Second
	topicReportEvery = 30 * time.Second
)

// topicWatch is what the topic watcher remembers between checks.
type topicWatch struct {
	ids      map[string]kadm.TopicID // the id each routed topic had when last seen
	reported map[string]time.Time    // missing routed topics: when last reported
}

// watchTopics checks the routed topics every topicCheckEvery until ctx
// ends (B7). A topic deleted while consumed is reported at once, then every
// topicReportEvery while it stays missing. A topic that comes back under a
// new id was re-created: kgo keeps fetching the old one, failing with
// UNKNOWN_TOPIC_ID, until the topic is purged from the client and added
// again, which the watcher does; the group then rebalances and the new
// topic is consumed from the group's committed offsets, or its start.
func (g *group) watchTopics(ctx context.Context) {
	w := topicWatch{ids: make(map[string]kadm.TopicID), reported: make(map[string]time.Time)}
	names := make([]string, 0, len(g.cfg.Topics))
	for name := range g.cfg.Topics {
		names = append(names, name)
	}
	first := true
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		g.checkTopics(ctx, names, &w, first)
		first = false
		timer.Reset(topicCheckEvery)
	}
}

func (g *group) checkTopics(ctx context.Context, names []string, w *topicWatch, first bool) {
	cctx, cancel := context.WithTimeout(ctx, g.cfg.ConnectTimeout)
	defer cancel()
	details, err := kadm.NewClient(g.cl).ListTopics(cctx, names...)
	if err != nil {
		return // unreachable brokers are reported by the fetches
	}
	now := time.Now()
	for _, name := range names {
		d, ok := details[name]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) || len(d.Partitions) == 0 {
			last, was := w.reported[name]
			switch {
			case first: // the connection check at start named it already
				w.reported[name] = now
			case !was || now.Sub(last) >= topicReportEvery:
				g.log.Error("ferry: routed topic does not exist (deleted?); its consumer resumes once it is created again",
					"topic", name)
				w.reported[name] = now
			}
			continue
		}
		if d.Err != nil {
			continue
		}
		if _, was := w.reported[name]; was {
			delete(w.reported, name)
			g.log.Info("ferry: routed topic exists again", "topic", name)
		}
		old, known := w.ids[name]
		w.ids[name] = d.ID
		if known && old != d.ID {
			g.log.Warn("ferry: routed topic was re-created; consuming the new topic", "topic", name)
			g.cl.PurgeTopicsFromConsuming(name)
			g.cl.AddConsumeTopics(name)
		}
	}
}

// errorLogEvery is how often one repeated error is logged again.
const errorLogEvery = 30 * time.Second

// logLimit lets a repeated log line through once, then once per interval,
// counting what it held back meanwhile.
type logLimit struct {
	mu      sync.Mutex
	last    map[string]time.Time
	skipped map[string]int
}

// allow reports whether the line keyed by key may be logged now, and how
// many were held back since it was last logged.
func (l *logLimit) allow(key string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last, l.skipped = make(map[string]time.Time), make(map[string]int)
	}
	if last, ok := l.last[key]; ok && now.Sub(last) < errorLogEvery {
		l.skipped[key]++
		return false, 0
	}
	n := l.skipped[key]
	l.last[key], l.skipped[key] = now, 0
	return true, n
}
