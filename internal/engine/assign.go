package engine

// The assignment callbacks kgo calls when the group rebalances: a partition
// assigned gets a goroutine (onAssigned), one revoked is handed back cleanly
// (onRevoked, A3), one lost is dropped (onLost, A7); and a partition dropped
// after a refused commit that kgo kept is consumed again (restartKept).

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
)

// onAssigned starts a partition goroutine per newly assigned partition. A
// partition lost earlier and still finishing is waited for by its successor.
func (g *group) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	g.rebalanceMu.Lock()
	defer g.rebalanceMu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shutting {
		return
	}
	for topic, ids := range assigned {
		t := g.topic(topic)
		if t == nil {
			continue
		}
		for _, id := range ids {
			k := tp{topic, id}
			prev := g.parts[k]
			if prev != nil && prev.Owned() {
				continue // already ours
			}
			p := newPartition(g, t, id, prev)
			g.parts[k] = p
			g.workers.Add(1)
			go func() {
				defer g.workers.Done()
				p.run()
			}()
		}
	}
	g.log.Info("ferry: partitions assigned", "assigned", partitionList(assigned))
	// kgo calls this after every join, also one that assigned nothing
	// new: a partition dropped after a refused commit and not revoked
	// since is still assigned, and is consumed again now from the
	// committed offset — not when its next records come (A7).
	for _, p := range g.parts {
		g.restartKeptLocked(p)
	}
}

// restartKept gives a new instance to a partition dropped after a refused
// commit that kgo kept: kgo rejoined without letting it go, so no
// assignment callback names it. The new instance starts from the group's
// committed offset. The assignment callback that ends kgo's rejoin does
// this at once (onAssigned); the poll loop, when the partition's records
// come first, too. It gives up when a rebalance is in progress; that
// rebalance's assignment, or the next fetch of the partition, tries again.
func (g *group) restartKept(old *Partition) {
	if !g.rebalanceMu.TryLock() {
		return
	}
	defer g.rebalanceMu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.restartKeptLocked(old)
}

// restartKeptLocked is restartKept with rebalanceMu and mu held.
func (g *group) restartKeptLocked(old *Partition) {
	k := tp{old.topic.Name, old.id}
	if g.shutting || g.parts[k] != old || !old.keptAfterLoss() {
		return
	}
	p := newPartition(g, old.topic, old.id, old)
	p.resync = true
	g.parts[k] = p
	g.workers.Add(1)
	go func() {
		defer g.workers.Done()
		p.run()
	}()
	g.log.Info("ferry: partition consumed again after a refused commit", "topic", k.topic, "partition", k.partition)
}

// onRevoked hands partitions back cleanly (A3): no new batches, in-flight
// batches finish, their marks are committed, the Revoked hooks run (and
// anything they mark is committed), then the partitions are released.
func (g *group) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	g.rebalanceMu.Lock()
	defer g.rebalanceMu.Unlock()
	var ps []*Partition
	g.mu.RLock()
	for topic, ids := range revoked {
		for _, id := range ids {
			if p := g.parts[tp{topic, id}]; p != nil {
				ps = append(ps, p)
			}
		}
	}
	g.mu.RUnlock()
	var leaving, stoppingNow []*Partition
	for _, p := range ps {
		p.mu.Lock()
		p.letGo = true
		switch p.state {
		case owned:
			p.setStateLocked(revoking)
			leaving = append(leaving, p)
		case stopping:
			// Revoked while the app shuts down: its Shutdown hook
			// runs instead of Revoked; still commit before letting go.
			stoppingNow = append(stoppingNow, p)
		}
		p.mu.Unlock()
	}
	if len(leaving)+len(stoppingNow) == 0 {
		return
	}
	for _, p := range leaving {
		<-p.idle
	}
	for _, p := range stoppingNow {
		<-p.done
	}
	g.commitAndLog(ctx, "revocation")
	for _, p := range leaving {
		close(p.hooks)
	}
	for _, p := range leaving {
		<-p.done
	}
	// The partitions are let go as their last commit takes their marks: a
	// mark made from now on — from a goroutine of the consumer's, say —
	// returns false, so every mark that returned true is in it (M2).
	if !g.eos {
		g.retire(slices.Concat(leaving, stoppingNow), released)
	}
	g.commitAndLog(ctx, "revocation hooks", leaving...)
	g.mu.Lock()
	for _, p := range leaving {
		p.mu.Lock()
		if p.state.marksAccepted() { // not retired above: exactly once
			p.state = released
			p.syncPauseLocked()
		}
		p.mu.Unlock()
		k := tp{p.topic.Name, p.id}
		if g.parts[k] == p {
			delete(g.parts, k)
		}
	}
	g.mu.Unlock()
	g.log.Info("ferry: partitions revoked", "revoked", partitionList(revoked))
}

// onLost drops partitions whose assignment was lost (A7): marks are refused
// from now on and nothing is committed for them. In-flight work may finish;
// it is not waited for, so the member can rejoin at once.
func (g *group) onLost(_ context.Context, _ *kgo.Client, lostParts map[string][]int32) {
	g.rebalanceMu.Lock()
	defer g.rebalanceMu.Unlock()
	g.mu.RLock()
	defer g.mu.RUnlock()
	ours := partitionList{} // kgo reports a failed join as a loss of nothing
	for topic, ids := range lostParts {
		for _, id := range ids {
			p := g.parts[tp{topic, id}]
			if p == nil {
				continue
			}
			p.mu.Lock()
			p.letGo = true
			owned := p.state.marksAccepted() // else its loss was logged already
			p.mu.Unlock()
			p.lose()
			if owned {
				ours[topic] = append(ours[topic], id)
			}
		}
	}
	if len(ours) > 0 {
		g.log.Warn("ferry: partitions lost; their uncommitted work will be redelivered", "lost", ours)
	}
}
