package ferrypg_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrypg"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// D3, D5: a member whose handler is stuck past the rebalance timeout loses
// its partition to another member, which starts from the stored offset and
// commits everything. When the stuck handler returns, its transaction's
// offset write finds a newer owner token: it is rolled back and the
// partition dropped. Every message's effect is in the database once.
func TestD3StuckMemberIsFencedWhenItWakes(t *testing.T) {
	db := database(t)
	c := ferrytest.New(t)
	tp := ferrytest.NewTopic(t, c, 1)
	ferrytest.Fill(t, c, tp, 0, 20)
	fx := newEffects(t, db)
	table, group := name("offsets"), name("g")
	// Eager rebalancing: the stuck member must give up everything when
	// the other joins, cannot, and is removed after the rebalance timeout.
	groupOpts := ferry.ClientOptions(kgo.Balancers(kgo.RangeBalancer()), kgo.RebalanceTimeout(3*time.Second))

	stuck, release := make(chan struct{}), make(chan struct{})
	var stuckOnce atomic.Bool
	a := start(t, c, groupOpts, ferrypg.Route(group, tp, db, func(ctx context.Context, b *ferrypg.Batch) error {
		if err := fx.insert(ctx, b); err != nil {
			return err
		}
		if stuckOnce.CompareAndSwap(false, true) {
			close(stuck)
			<-release // frozen with its rows inserted, not committed
		}
		return nil
	}, ferrypg.Table(table)))
	select {
	case <-stuck:
	case <-time.After(60 * time.Second):
		t.Fatal("the first member never got a batch")
	}

	start(t, c, groupOpts, ferrypg.Route(group, tp, db, fx.insert, ferrypg.Table(table)))
	waitStored(t, db, table, group, tp, 0, 20)

	close(release)
	// Usually the owner token fences the woken member's commit; if kgo told
	// it first that the partition was lost, its context is cancelled and
	// the transaction fails on that instead. Either way it must not commit.
	err := ferrytest.WaitFor(ferrytest.Context(t, 30*time.Second), func() bool {
		log := a.log.String()
		return strings.Contains(log, "another member owns the partition") || strings.Contains(log, "partitions lost")
	})
	if err != nil {
		t.Fatalf("the woken member was neither fenced nor told it lost the partition; its log:\n%s", a.log)
	}
	time.Sleep(500 * time.Millisecond) // a commit that got through would be visible by now
	fx.exactlyOnce(t, 0, 0, 20)
	if got := stored(t, db, table, group, tp, 0); got != 20 {
		t.Fatalf("stored offset %d after the fenced commit, want 20", got)
	}
}
