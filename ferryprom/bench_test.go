package ferryprom_test

import (
	"testing"
	"time"

	"github.com/ferrykit/ferry/event"
	"github.com/ferrykit/ferry/ferryprom"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkObserveBatch is what the metrics add to each consumed batch.
func BenchmarkObserveBatch(b *testing.B) {
	m, err := ferryprom.New(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	e := event.BatchConsumed{Group: "g", Topic: "orders", Partition: 3, Count: 100, Attempt: 1, Duration: time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(e)
	}
}
