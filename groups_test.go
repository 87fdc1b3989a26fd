package ferry_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// B9: two consumer groups on the same topic each get every message, each
// committing its own offsets.
func TestTwoGroupsEachGetEveryMessage(t *testing.T) {
	s := newScenario(t, cluster(t), 2) // s.group is the first group
	s.produce(0, 30)
	s.produce(1, 20)
	other := s.anotherGroup()
	app := s.start(s.route(s.rec.fn()), other.route(other.rec.fn()))
	s.waitSeen(50)
	other.waitSeen(50)
	s.stop(app)
	for _, g := range []*scenario{s, other} {
		g.wantCommitted(map[int32]int64{0: 30, 1: 20})
	}
}

// B9: two topics routed in one group each go to their own route's consumer.
func TestTwoTopicsInOneGroupGoToTheirOwnConsumer(t *testing.T) {
	s := newScenario(t, cluster(t), 2) // topic A
	c, group, tpA, rec := s.c, s.group, s.topic, s.rec
	tpB := topic(t, c, 1)
	s.produceEach(2, 10)
	produceN(t, c, tpB, 0, 15)

	// Each route's factory tags its consumers, and each consumer records
	// which topics it was handed.
	var mu sync.Mutex
	seenBy := map[string]map[string]int{"A": {}, "B": {}} // route → topic → messages
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
	s.start(s.routeTo(route("A")), ferry.Route(group, tpB, route("B")))
	s.waitSeen(20)
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
