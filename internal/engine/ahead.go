package engine

// The fetch-ahead budget: how far the poll loop may fetch ahead of the
// consumers, the drain rate it follows, and the fetch pins a slow
// consumer's poll waits for.

import (
	"context"
	"time"
)

// The fetch-ahead budget bounds the bytes the poll loop lets pile up in the
// queues of partitions that are not paused. Past it the poll loop stops
// polling, and kgo stops fetching after one buffered response: backpressure
// without discarding fetched data. The budget follows how fast the
// consumers drain the queues: what they take in aheadSpan at their recent
// rate, between minAhead and fetchAhead. Consumers that drain less than
// minAhead in slowSpan (about 50 MB/s) are slow, until they drain twice
// that: their budget is minAhead; before each poll the records left of the
// previous one are copied out of their fetch (see detach) and the poll
// waits for the batches in flight that still hold it (waitUnpinned), so
// they hold about what a plain poll loop would — the fetch in hand plus
// kgo's one buffered fetch — not fixed budgets' worth.
const (
	fetchAhead = 16 << 20
	minAhead   = 1 << 20
	aheadSpan  = 100 * time.Millisecond
	slowSpan   = 20 * time.Millisecond
	rateEvery  = 50 * time.Millisecond // how often the drain rate is sampled
	// stallWait: when nothing drained for this long and a partition has
	// run out of records, the poll loop polls even over budget, so a stuck
	// partition's queue never holds up the others (B3); that partition
	// stops fetching once its queue reaches QueueBytes.
	stallWait = 50 * time.Millisecond
)

// addAhead counts bytes into or out of the fetch-ahead total.
func (g *group) addAhead(delta int) {
	if n := g.ahead.Add(int64(delta)); delta < 0 && n < g.limit.Load() {
		select {
		case g.room <- struct{}{}:
		default:
		}
	}
}

// drain counts bytes a consumer took from an unpaused queue.
func (g *group) drain(bytes int) {
	g.drained.Add(int64(bytes))
	g.lastDrain.Store(time.Now().UnixNano())
	g.addAhead(-bytes)
}

// budget samples the drain rate and returns the fetch-ahead budget it
// allows. Only the poll loop calls it.
func (g *group) budget(now time.Time) int64 {
	if dt := now.Sub(g.rateAt); dt >= rateEvery {
		d := g.drained.Load()
		inst := float64(d-g.rateBase) / dt.Seconds()
		switch {
		case g.rateAt.IsZero(): // the first sample only starts the clock
		case !g.measured:
			g.rate, g.measured = inst, true
		default:
			g.rate = (g.rate + inst) / 2
		}
		g.rateAt, g.rateBase = now, d
	}
	// Slow below minAhead per slowSpan; fast again only above twice that,
	// so a consumer draining at about the threshold does not switch
	// between the two ways at every sample.
	slow := g.measured && g.rate*slowSpan.Seconds() < minAhead
	if g.slow.Load() {
		slow = g.rate*slowSpan.Seconds() < 2*minAhead
	}
	b := int64(minAhead)
	if !slow {
		b = min(max(int64(g.rate*aheadSpan.Seconds()), minAhead), fetchAhead)
	}
	g.limit.Store(b)
	g.slow.Store(slow)
	return b
}

// pinWait bounds how long a slow consumer's poll waits for the batches
// that hold the previous poll's fetches (waitUnpinned).
const pinWait = 100 * time.Millisecond

// pin notes that a batch handed to a consumer holds records still in the
// memory of poll gen's fetches (0: it holds copies only). It returns gen if
// the consumers are slow and that is the newest poll — the one the poll
// loop may wait for — else 0; pass the result to unpin when the batch is
// done.
func (g *group) pin(gen uint64) uint64 {
	if gen == 0 || !g.slow.Load() {
		return 0
	}
	g.pinMu.Lock()
	defer g.pinMu.Unlock()
	if gen != g.gen {
		return 0
	}
	g.pinned++
	return gen
}

// unpin notes that a batch pin counted has finished.
func (g *group) unpin(gen uint64) {
	if gen == 0 {
		return
	}
	g.pinMu.Lock()
	defer g.pinMu.Unlock()
	if gen == g.gen {
		if g.pinned--; g.pinned == 0 {
			select {
			case g.room <- struct{}{}:
			default:
			}
		}
	}
}

// nextGen starts the next poll's generation: batches holding the fetches
// of earlier polls no longer count. Only the poll loop calls it.
func (g *group) nextGen() {
	g.pinMu.Lock()
	g.gen++
	g.pinned = 0
	g.pinMu.Unlock()
}

// waitUnpinned holds a slow consumer's next poll until the batches in
// flight that hold records of the previous poll's fetches have finished
// (the records still queued were copied out of them: detachQueued). Then
// those fetches are freed before kgo reads the next one, which it starts as
// soon as the poll took the one it buffered: otherwise three fetches would
// be in memory at once — the one pinned, the one polled and the one kgo
// reads — where a plain poll loop has two. It waits at most what the
// records queued take to drain at the measured rate (pinBound), so the
// consumers do not run dry meanwhile, nor a stuck batch holds the others up
// (B3); seeks are applied meanwhile. It reports false when ctx ended.
func (g *group) waitUnpinned(ctx context.Context, wait time.Duration) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		g.pinMu.Lock()
		pinned := g.pinned
		g.pinMu.Unlock()
		if pinned <= 0 || wait <= 0 {
			return true
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		}
		select {
		case <-ctx.Done():
			return false
		case <-g.room:
		case <-timer.C:
			return true
		case <-g.seekCh:
			g.applySeeks()
		}
	}
}

// pinBound is how long the next poll may wait for pinned batches: what
// the records queued take to drain at the measured rate, at most pinWait.
func (g *group) pinBound() time.Duration {
	if g.rate <= 0 {
		return 0
	}
	return min(pinWait, time.Duration(float64(max(g.ahead.Load(), 0))/g.rate*float64(time.Second)))
}

// waitForRoom blocks the poll loop while more than the budget is queued,
// applying seeks meanwhile — unless a partition starves behind a queue that
// does not drain (stallWait). It reports false when ctx ended.
func (g *group) waitForRoom(ctx context.Context) bool {
	var stall *time.Timer
	defer func() {
		if stall != nil {
			stall.Stop()
		}
	}()
	for {
		now := time.Now()
		if g.ahead.Load() < g.budget(now) {
			return true
		}
		g.alive() // consumers are the bottleneck, not fetching
		idle := now.Sub(time.Unix(0, g.lastDrain.Load()))
		if idle >= stallWait && g.starving() {
			return true
		}
		wait := max(stallWait-idle, time.Millisecond)
		if stall == nil {
			stall = time.NewTimer(wait)
		} else {
			stall.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return false
		case <-g.room:
		case <-stall.C:
		case <-g.seekCh:
			g.applySeeks()
		}
	}
}

// starving reports whether an owned, fetching partition has less than a
// batch queued while its fetches have not reached the end of it.
func (g *group) starving() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, p := range g.parts {
		p.mu.Lock()
		s := p.state == owned && !p.pausedInKgo && p.q.short()
		p.mu.Unlock()
		if s {
			return true
		}
	}
	return false
}
