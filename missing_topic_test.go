package ferry_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
)

// B7: a routed topic that does not exist (auto-creation is off in kfake and
// in scripts/kafka's broker) is named in a clear error, the group's other
// topic keeps flowing, and once the topic is created its messages are
// consumed within seconds, without a restart.
func TestMissingTopic(t *testing.T) {
	s := newScenario(t, cluster(t), 1) // its topic is present
	c, rec := s.c, s.rec
	missing := ferrytest.UniqueName("missing")
	s.produce(0, 10)

	log, sink := testLogger(t)
	s.start(ferry.Logger(log), s.route(rec.fn()), ferry.RouteFunc(s.group, missing, rec.fn()))
	s.waitSeen(10)
	named := func() bool {
		for line := range strings.Lines(sink.String()) {
			if strings.Contains(line, "level=ERROR") && strings.Contains(line, "does not exist") &&
				strings.Contains(line, "topic="+missing) {
				return true
			}
		}
		return false
	}
	if err := ferrytest.WaitFor(ctxFor(t, 5*time.Second), named); err != nil {
		t.Fatalf("no error log naming the missing topic %s; log:\n%s", missing, sink.String())
	}
	// The other topic keeps flowing, message after message, for a while:
	// long enough that the client's first quick retries to find the
	// missing topic (2 s in kgo) are over, as they are when a user
	// creates the topic later.
	flowing := time.Now()
	for n := 11; time.Since(flowing) < 3*time.Second; n++ {
		s.produce(0, 1)
		s.waitSeen(n)
	}

	if err := c.CreateTopic(ctxFor(t, 10*time.Second), missing, 1); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	produceN(t, c, missing, 0, 5)
	// "Within seconds". With kgo's defaults a missing topic is looked up
	// again every MetadataMinAge (5 s); once assigned, its partition joins
	// the next fetch to its broker, which may wait out the long poll of the
	// idle topic (FetchMaxWait, 5 s). So about 5 s, at worst about 10 s;
	// the test allows a loaded machine 30 s (a restart would never come).
	if err := ferrytest.WaitFor(ctxFor(t, 30*time.Second), func() bool { return rec.distinct(missing) == 5 }); err != nil {
		t.Fatalf("%d of 5 messages of %s consumed %s after it was created, without a restart",
			rec.distinct(missing), missing, time.Since(created).Round(time.Millisecond))
	}
	t.Logf("created topic consumed after %s", time.Since(created).Round(time.Millisecond))
}

// B7: a routed topic deleted while consumed is named in an error at once,
// and then at most at a slow interval — never a log flood — while the
// group's other topic keeps flowing; once it is re-created (the client
// still holds the old topic's id), its messages are consumed within
// seconds, without a restart.
func TestDeletedTopicRecreated(t *testing.T) {
	c := cluster(t)
	flowing := topic(t, c, 1)
	doomed := topic(t, c, 1)
	group := ferrytest.UniqueName("g")
	produceN(t, c, flowing, 0, 5)
	produceN(t, c, doomed, 0, 5)

	log, sink := testLogger(t)
	rec := newRecorder()
	start(t, opts(t, c,
		ferry.Logger(log), // after base's logger: this one wins
		ferry.RouteFunc(group, flowing, rec.fn()),
		ferry.RouteFunc(group, doomed, rec.fn()),
	)...)
	rec.waitDistinct(t, flowing, 5, 15*time.Second)
	rec.waitDistinct(t, doomed, 5, 15*time.Second)
	waitCommitted(t, c, group, doomed, 0, 5) // idle and fully committed

	if _, err := c.Admin().DeleteTopics(ctxFor(t, 10*time.Second), doomed); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	about := func(level string) int {
		n := 0
		for line := range strings.Lines(sink.String()) {
			if strings.Contains(line, "level="+level) && strings.Contains(line, `msg="ferry:`) && strings.Contains(line, doomed) {
				n++
			}
		}
		return n
	}
	if err := ferrytest.WaitFor(ctxFor(t, 10*time.Second), func() bool { return about("ERROR") > 0 }); err != nil {
		t.Fatalf("no error log naming the deleted topic %s; log:\n%s", doomed, sink.String())
	}
	t.Logf("deletion reported after %s", time.Since(deleted).Round(time.Millisecond))
	// The other topic keeps flowing, message after message, for a while.
	for n := 6; time.Since(deleted) < 6*time.Second; n++ {
		produceN(t, c, flowing, 0, 1)
		rec.waitDistinct(t, flowing, n, 5*time.Second)
	}
	if n := about("ERROR") + about("WARN"); n > 3 {
		t.Errorf("%d warnings and errors about the deleted topic within %s, want it reported once, then at a slow interval",
			n, time.Since(deleted).Round(time.Second))
	}

	if err := c.CreateTopic(ctxFor(t, 10*time.Second), doomed, 1); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	c.Client().PurgeTopicsFromClient(doomed) // the test's producer held the old topic too
	produceN(t, c, doomed, 0, 3)
	if err := ferrytest.WaitFor(ctxFor(t, 20*time.Second), func() bool { return rec.times(doomed, 0, 2) >= 2 }); err != nil {
		t.Fatalf("the re-created topic was not consumed within 20s without a restart: delivered %v", offsetsSeen(rec, doomed, 0))
	}
	t.Logf("re-created topic consumed after %s", time.Since(created).Round(time.Millisecond))
	if n := about("ERROR") + about("WARN"); n > 6 {
		t.Errorf("%d warnings and errors about the deleted topic, want a few:\n%s", n, sink.String())
	}
}
