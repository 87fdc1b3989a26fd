package ferry_test

import (
	"testing"

	"github.com/ferrykit/ferry"
)

// B1, B2, A1, A2, A4: full batches of MaxMessages in offset order, the tail
// handed over once the fetch is done, everything committed.
func TestBatchesFillToMaxMessages(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 250)
	app := s.start(s.route(s.rec.fn(), ferry.MaxMessages(100)))
	s.waitSeen(250)
	s.stop(app)

	var sizes []int
	next := int64(0)
	for _, b := range s.rec.snapshot() {
		sizes = append(sizes, len(b.offsets))
		for _, o := range b.offsets {
			if o != next {
				t.Fatalf("offset %d delivered, want %d (B1 order)", o, next)
			}
			next++
		}
	}
	if len(sizes) != 3 || sizes[0] != 100 || sizes[1] != 100 || sizes[2] != 50 {
		t.Fatalf("batch sizes %v, want [100 100 50]", sizes)
	}
	s.wantCommitted(map[int32]int64{0: 250})
}
