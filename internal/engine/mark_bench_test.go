package engine

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkMark measures Partition.Mark, the whole work behind
// Claim.MarkAsConsumed: ownership check, lock, tracker update.
// Target: at least 10 M marks/s.
func BenchmarkMark(b *testing.B) {
	p := testPartition(100, 0)
	recs := make([]*kgo.Record, 1024)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "t", Offset: int64(i)}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := recs[i&1023]
		r.Offset = int64(i)
		if !p.Mark(r, "") {
			b.Fatal("mark refused")
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mmarks/s")
}

// BenchmarkMarkParallel marks from several goroutines on one partition, as a
// consumer fanning out work inside a batch would.
func BenchmarkMarkParallel(b *testing.B) {
	p := testPartition(100, 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := &kgo.Record{Topic: "t"}
		for pb.Next() {
			r.Offset++
			p.Mark(r, "")
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mmarks/s")
}
