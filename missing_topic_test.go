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
	c := cluster(t)
	present := topic(t, c, 1)
	missing := ferrytest.UniqueName("missing")
	group := ferrytest.UniqueName("g")
	produceN(t, c, present, 0, 10)

	log, sink := testLogger(t)
	rec := newRecorder()
	start(t, opts(t, c,
		ferry.Logger(log), // after base's logger: this one wins
		ferry.RouteFunc(group, present, rec.fn()),
		ferry.RouteFunc(group, missing, rec.fn()),
	)...)

	rec.waitDistinct(t, present, 10, 15*time.Second)
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
	produceN(t, c, present, 0, 5)
	rec.waitDistinct(t, present, 15, 10*time.Second)

	if err := c.CreateTopic(ctxFor(t, 10*time.Second), missing, 1); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	produceN(t, c, missing, 0, 5)
	// "Within seconds": kgo rediscovers topics on its metadata refresh.
	if err := ferrytest.WaitFor(ctxFor(t, 12*time.Second), func() bool { return rec.distinct(missing) == 5 }); err != nil {
		t.Fatalf("%d of 5 messages of %s consumed %s after it was created, without a restart",
			rec.distinct(missing), missing, time.Since(created).Round(time.Millisecond))
	}
	t.Logf("created topic consumed after %s", time.Since(created).Round(time.Millisecond))
}
