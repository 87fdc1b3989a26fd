package ferry_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/event"
	"github.com/twmb/franz-go/pkg/kgo"
)

// partitionStats returns the app's only partition, once it has one.
func partitionStats(app *ferry.App) (ferry.PartitionStats, bool) {
	if g := app.Stats().Groups; len(g) == 1 && len(g[0].Partitions) == 1 {
		return g[0].Partitions[0], true
	}
	return ferry.PartitionStats{}, false
}

// holdFirst returns a consumer that records every batch and holds the one
// starting at offset 0 — until release is closed or its context ends —
// and a channel closed once it holds it.
func (s *scenario) holdFirst() (fn ferry.ConsumerFunc, holding, release chan struct{}) {
	holding, release = make(chan struct{}), make(chan struct{})
	return func(ctx context.Context, b *ferry.Batch) error {
		if b.Messages[0].Offset == 0 {
			close(holding)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		s.rec.record(b)
		return nil
	}, holding, release
}

// X4: a Consume call that hangs — no error, never returns — makes the app
// unhealthy once it ran for ConsumeStallTimeout, and Stats says since when
// it runs; once it returns, the app is healthy again. With Parallel the
// oldest message in flight counts, while others finish around it; in an
// exactly-once group the batch holds its transaction.
func TestHealthReportsAHangingConsume(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []ferry.TopicOption
	}{
		{"sequential", nil},
		{"parallel", []ferry.TopicOption{ferry.Parallel(4)}},
		{"exactly once", []ferry.TopicOption{ferry.WithDelivery(ferry.ExactlyOnce)}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			s := newScenario(t, cluster(t), 1)
			s.produceKeyed("hangs", "a", "b", "c")
			fn, hangs, release := s.holdFirst()
			start := s.start
			if mode.name == "exactly once" {
				start = s.startTransactional
			}
			app := start(ferry.ConsumeStallTimeout(time.Second),
				s.route(fn, append([]ferry.TopicOption{ferry.MaxMessages(1)}, mode.opts...)...))
			s.waitClosed("called Consume", hangs)
			began := time.Now()
			waitUntil(t, 30*time.Second, "unhealthy", func() bool { return app.app.Healthy() != nil })
			err := app.app.Healthy()
			if !strings.Contains(err.Error(), s.topic+"/0: Consume running since") {
				t.Errorf("Healthy: %v", err)
			}
			if took := time.Since(began); took < 900*time.Millisecond {
				t.Errorf("unhealthy after %s, before ConsumeStallTimeout", took)
			}
			p, _ := partitionStats(app.app)
			if p.ConsumingSince.IsZero() || time.Since(p.ConsumingSince) < time.Second {
				t.Errorf("ConsumingSince %v, want over a second ago", p.ConsumingSince)
			}
			if mode.name == "parallel" {
				s.waitSeen(3) // the other messages went around the hanging one
			}
			close(release)
			waitUntil(t, 30*time.Second, "healthy again", func() bool { return app.app.Healthy() == nil })
			if p, _ := partitionStats(app.app); !p.ConsumingSince.IsZero() {
				t.Errorf("ConsumingSince %v with nothing running", p.ConsumingSince)
			}
			s.stop(app)
		})
	}
}

// X4: a revocation waits for a slow batch (A3); meanwhile the revoked
// partition is not fetched, which is no fetch stall: the app stays healthy
// for as long as the batch takes (the hanging-Consume rule is off here).
func TestHealthRevocationWaitingOnASlowBatchIsNoStall(t *testing.T) {
	s := newScenario(t, cluster(t, fastHeartbeats()), 1)
	s.produce(0, 3)
	revoking := make(chan struct{})
	release := make(chan struct{})
	slow := scripted{consume: func(ctx context.Context, claim *ferry.Claim, b *ferry.Batch) error {
		if b.Messages[0].Offset != 0 {
			return nil
		}
		for !claim.Revoked() {
			time.Sleep(20 * time.Millisecond)
		}
		close(revoking)
		<-release
		return nil
	}}
	eager := ferry.ClientOptions(kgo.Balancers(kgo.RangeBalancer()), kgo.HeartbeatInterval(100*time.Millisecond))
	a := s.start(eager, ferry.FetchStallTimeout(time.Second), ferry.ConsumeStallTimeout(0),
		s.routeTo(slow.factory(), ferry.MaxMessages(1)))
	waitUntil(t, 30*time.Second, "the first batch", func() bool { _, ok := partitionStats(a.app); return ok })
	b := s.start(eager, s.route(s.rec.fn()))
	s.waitClosed("the revocation", revoking)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if err := a.app.Healthy(); err != nil {
			t.Errorf("unhealthy while a revocation waits for a slow batch: %v", err)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(release)
	s.stop(b)
	s.stop(a)
}

// X1: the brief pauses that bound a slow partition's memory (QueueBytes)
// are Paused and Resumed events with the reason "memory", one Resumed per
// Paused, and Stats shows the partition paused meanwhile.
func TestMemoryPausesAreEvents(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	var events eventLog
	fn, stuck, release := s.holdFirst()
	s.produce(0, 1)
	app := s.start(ferry.OnEvent(events.add), s.route(fn, ferry.MaxMessages(10), ferry.QueueBytes(16<<10)))
	<-stuck
	for range 30 { // the backlog arrives over many fetches
		s.produce(0, 100)
	}
	waitUntil(t, 30*time.Second, "a pause for memory", func() bool { return len(eventsOf[event.Paused](&events)) > 0 })
	if p, _ := partitionStats(app.app); !p.Paused {
		t.Errorf("Stats after a Paused event: %+v, want Paused", p)
	}
	close(release)
	s.waitSeen(3001)
	s.stop(app)
	paused, resumed := eventsOf[event.Paused](&events), eventsOf[event.Resumed](&events)
	if len(paused) == 0 || len(paused) != len(resumed) {
		t.Fatalf("%d Paused and %d Resumed events, want as many of each, at least one", len(paused), len(resumed))
	}
	want := event.Paused{Group: s.group, Topic: s.topic, Partition: 0, Reason: event.PauseMemory}
	for _, p := range paused {
		if p != want {
			t.Errorf("Paused %+v, want %+v", p, want)
		}
	}
	for _, r := range resumed {
		if r.Reason != event.PauseMemory {
			t.Errorf("Resumed %+v, want reason memory", r)
		}
	}
	var open int
	for _, e := range events.snapshot() {
		switch e.(type) {
		case event.Paused:
			open++
		case event.Resumed:
			open--
		}
		if open < 0 || open > 1 {
			t.Fatalf("Paused and Resumed events do not alternate: %v", events.snapshot())
		}
	}
}
