package engine

import (
	"testing"

	"github.com/ferrykit/ferry/event"
)

// X1: without a subscriber, reporting a batch's outcome allocates nothing
// and reads no clock; with one, it builds one event per batch.
func TestReportingWithoutSubscriberAllocatesNothing(t *testing.T) {
	p := testPartition(100, 0)
	p.g.cfg = &Group{Name: "g"}
	batch := records(0, 100)
	if n := testing.AllocsPerRun(1000, func() {
		p.consumed(batch, 1, p.g.started(), nil)
	}); n != 0 {
		t.Errorf("%v allocations per batch without a subscriber, want 0", n)
	}
	if !p.g.started().IsZero() {
		t.Error("a clock read without a subscriber")
	}
	var got []event.Event
	p.g.cfg.OnEvent = func(e event.Event) { got = append(got, e) }
	p.end.Store(150)
	p.consumed(batch, 1, p.g.started(), nil)
	want := event.BatchConsumed{Group: "g", Topic: "t", Count: 100, FirstOffset: 0, LastOffset: 99, Attempt: 1, Lag: 50}
	if len(got) != 1 {
		t.Fatalf("events: %+v", got)
	}
	b := got[0].(event.BatchConsumed)
	b.Duration = 0
	if b != want {
		t.Errorf("event %+v, want %+v", b, want)
	}
	if p.processed.Load() != 100 {
		t.Errorf("processed %d, want 100", p.processed.Load())
	}
}

// BenchmarkReportBatch measures what reporting one batch's outcome costs
// the partition's goroutine, without and with a subscriber (X1).
// With "timed", Consume calls are timed for health (ConsumeStallTimeout,
// X4): the batch's start is read from the clock and published.
func BenchmarkReportBatch(b *testing.B) {
	for _, bc := range []struct {
		name  string
		sub   func(event.Event)
		timed bool
	}{
		{"no subscriber", nil, false}, {"subscriber", func(event.Event) {}, false},
		{"no subscriber, timed", nil, true}, {"subscriber, timed", func(event.Event) {}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := testPartition(100, 0)
			p.g.cfg = &Group{Name: "g", OnEvent: bc.sub, TimeConsume: bc.timed}
			batch := records(0, 100)
			b.ReportAllocs()
			for b.Loop() {
				p.consumed(batch, 1, p.begin(), nil)
				p.setFailures(0)
			}
		})
	}
}

// X1: pauses noted by two goroutines are reported in the order they were
// noted, even when the first reporter is still inside the subscriber's
// callback when the second one reports.
func TestPauseEventsKeepTheirOrder(t *testing.T) {
	p := testPartition(10, 0)
	inCallback, release := make(chan struct{}), make(chan struct{})
	var got []event.Event
	p.g.cfg = &Group{Name: "g", OnEvent: func(e event.Event) {
		if _, first := e.(event.Paused); first && len(got) == 0 {
			close(inCallback)
			<-release // the subscriber is slow with the first event
		}
		got = append(got, e)
	}}
	note := func(paused bool) []event.Event {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.pauseNewsLocked(paused, event.PauseMemory)
		return p.newsLocked()
	}
	first := note(true) // the poll loop pauses the full partition...
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.tell(first)
	}()
	<-inCallback
	p.tell(note(false)) // ...and the partition's goroutine, having drained it, resumes it
	close(release)
	<-done
	if len(got) != 2 {
		t.Fatalf("events %+v, want Paused then Resumed", got)
	}
	if _, ok := got[0].(event.Paused); !ok {
		t.Errorf("events %+v, want Paused then Resumed", got)
	}
	if _, ok := got[1].(event.Resumed); !ok {
		t.Errorf("events %+v, want Paused then Resumed", got)
	}
}
