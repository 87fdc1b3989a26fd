package ferry_test

import (
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
)

// B1, B2, A1, A2, A4: full batches of MaxMessages in offset order, the tail
// handed over once the fetch is done, everything committed.
func TestBatchesFillToMaxMessages(t *testing.T) {
	c := cluster(t)
	tp := topic(t, c, 1)
	produceN(t, c, tp, 0, 250)
	group := ferrytest.UniqueName("g")
	rec := newRecorder()
	app := start(t, opts(t, c, ferry.RouteFunc(group, tp, rec.fn(), ferry.MaxMessages(100)))...)
	rec.waitDistinct(t, tp, 250, 30*time.Second)
	if err := app.stop(t); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	next := int64(0)
	for _, b := range rec.snapshot() {
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
	got, err := c.Committed(ctxFor(t, 10*time.Second), group, tp)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != 250 {
		t.Fatalf("committed %v, want partition 0 at 250", got)
	}
}
