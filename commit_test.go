package ferry_test

import (
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A1, A2: successful batches are marked and committed every CommitInterval,
// in one OffsetCommit request for all partitions of the group.
func TestPeriodicCommitIsOneRequestForAllPartitions(t *testing.T) {
	c := embedded(t) // observes requests through kfake
	tp := topic(t, c, 4)
	for p := range int32(4) {
		produceN(t, c, tp, p, 50)
	}
	group := ferrytest.UniqueName("g")

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

	rec := newRecorder()
	interval := 700 * time.Millisecond
	app := start(t, opts(t, c, ferry.CommitInterval(interval), ferry.RouteFunc(group, tp, rec.fn()))...)
	rec.waitDistinct(t, tp, 200, 20*time.Second)
	began := time.Now()
	if err := ferrytest.WaitFor(ctxFor(t, 10*time.Second), func() bool {
		got, _ := c.Committed(ctxFor(t, 5*time.Second), group, tp)
		return len(got) == 4 && got[0] == 50 && got[1] == 50 && got[2] == 50 && got[3] == 50
	}); err != nil {
		t.Fatal("offsets never committed")
	}
	if waited := time.Since(began); waited > interval+time.Second {
		t.Errorf("commit took %s after processing, want within the %s interval", waited, interval)
	}

	mu.Lock()
	if len(requests) != 1 || len(requests[0]) != 4 {
		t.Errorf("commit requests %v, want one request naming all 4 partitions", requests)
	}
	mu.Unlock()
	time.Sleep(3 * interval)
	mu.Lock()
	if len(requests) != 1 {
		t.Errorf("%d commit requests with nothing new to commit, want none after the first", len(requests)-1)
	}
	mu.Unlock()
	if err := app.stop(t); err != nil {
		t.Fatal(err)
	}
}
