package ferry_test

import (
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A1, A2, A8: successful batches are marked and committed every
// CommitInterval, in one OffsetCommit request for all partitions of the
// group; the positions they started from were committed at once, also in
// one request.
func TestPeriodicCommitIsOneRequestForAllPartitions(t *testing.T) {
	s := newScenario(t, embedded(t), 4) // observes requests through kfake
	s.produceEach(4, 50)
	c, group := s.c, s.group

	var mu sync.Mutex
	var requests [][]int32 // partitions named by each commit request of our group
	var at []time.Time
	c.Fake.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.OffsetCommitRequest)
		if r.Group != group {
			return nil, nil, false
		}
		var parts []int32
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				parts = append(parts, p.Partition)
			}
		}
		mu.Lock()
		requests = append(requests, parts)
		at = append(at, time.Now())
		mu.Unlock()
		return nil, nil, false // observe only
	})

	interval := 700 * time.Millisecond
	app := s.start(ferry.CommitInterval(interval), s.route(s.rec.fn()))
	s.waitSeen(200)
	began := time.Now()
	s.waitCommitted(map[int32]int64{0: 50, 1: 50, 2: 50, 3: 50})
	// Within the interval, with room for a loaded machine: a loop that
	// ignored CommitInterval (5 s by default) would still be late.
	if waited := time.Since(began); waited > interval+3*time.Second {
		t.Errorf("commit took %s after processing, want within the %s interval", waited, interval)
	}

	// The start positions are committed at once (A8), the marks at the
	// interval; both may travel together.
	mu.Lock()
	sent := len(requests)
	if sent < 1 || sent > 2 {
		t.Errorf("commit requests %v, want the start positions and the marks, each in one request naming all 4 partitions", requests)
	}
	for _, r := range requests {
		if len(r) != 4 {
			t.Errorf("commit requests %v, want each naming all 4 partitions", requests)
		}
	}
	mu.Unlock()
	time.Sleep(3 * interval)
	mu.Lock()
	if len(requests) != sent {
		t.Errorf("%d commit requests with nothing new to commit, want none", len(requests)-sent)
	}
	mu.Unlock()
	s.stop(app)
}
