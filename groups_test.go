package ferry_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
)

// B9: two consumer groups on the same topic each get every message, each
// committing its own offsets.
func TestTwoGroupsEachGetEveryMessage(t *testing.T) {
	c := cluster(t)
	tp := topic(t, c, 2)
	produceN(t, c, tp, 0, 30)
	produceN(t, c, tp, 1, 20)
	g1, g2 := ferrytest.UniqueName("g1"), ferrytest.UniqueName("g2")
	r1, r2 := newRecorder(), newRecorder()
	app := start(t, opts(t, c,
		ferry.RouteFunc(g1, tp, r1.fn()),
		ferry.RouteFunc(g2, tp, r2.fn()),
	)...)
	r1.waitDistinct(t, tp, 50, 20*time.Second)
	r2.waitDistinct(t, tp, 50, 20*time.Second)
	if err := app.stop(t); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{g1, g2} {
		committed, err := c.Committed(ctxFor(t, 10*time.Second), g, tp)
		if err != nil {
			t.Fatal(err)
		}
		if committed[0] != 30 || committed[1] != 20 {
			t.Errorf("group %s committed %v, want map[0:30 1:20]", g, committed)
		}
	}
}

// B9: two topics routed in one group each go to their own route's consumer.
func TestTwoTopicsInOneGroupGoToTheirOwnConsumer(t *testing.T) {
	c := cluster(t)
	tpA, tpB := topic(t, c, 2), topic(t, c, 1)
	produceN(t, c, tpA, 0, 10)
	produceN(t, c, tpA, 1, 10)
	produceN(t, c, tpB, 0, 15)
	group := ferrytest.UniqueName("g")

	// Each route's factory tags its consumers, and each consumer records
	// which topics it was handed.
	var mu sync.Mutex
	seenBy := map[string]map[string]int{"A": {}, "B": {}} // route → topic → messages
	rec := newRecorder()
	route := func(name string) ferry.NewConsumer {
		return func(claim *ferry.Claim) ferry.Consumer {
			return ferry.ConsumerFunc(func(_ context.Context, b *ferry.Batch) error {
				mu.Lock()
				for _, m := range b.Messages {
					seenBy[name][m.Topic]++
				}
				seenBy[name]["claim:"+claim.Topic()]++
				mu.Unlock()
				rec.record(b)
				return nil
			})
		}
	}
	start(t, opts(t, c,
		ferry.Route(group, tpA, route("A")),
		ferry.Route(group, tpB, route("B")),
	)...)
	rec.waitDistinct(t, tpA, 20, 20*time.Second)
	rec.waitDistinct(t, tpB, 15, 20*time.Second)

	mu.Lock()
	defer mu.Unlock()
	if len(seenBy["A"]) != 2 || seenBy["A"][tpA] != 20 || seenBy["A"]["claim:"+tpA] == 0 {
		t.Errorf("route A (topic %s) was handed %v", tpA, seenBy["A"])
	}
	if len(seenBy["B"]) != 2 || seenBy["B"][tpB] != 15 || seenBy["B"]["claim:"+tpB] == 0 {
		t.Errorf("route B (topic %s) was handed %v", tpB, seenBy["B"])
	}
}
