package engine

// The poll loop: it polls kgo within the fetch-ahead budget (ahead.go),
// pushes each partition's records into its queue, handles fetch errors, and
// is the only goroutine that moves kgo's fetch positions (seeks).

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// pollLoop fetches and fills partition queues until ctx is cancelled, or
// until an ACL denies the group or a topic (T3). It is also the only
// goroutine that seeks, so no record fetched before a seek can slip past it.
func (g *group) pollLoop(ctx context.Context) error {
	for {
		g.applySeeks()
		if !g.waitForRoom(ctx) {
			return nil
		}
		if g.slow.Load() {
			// A slow consumer: what is left of the previous fetch
			// (under the budget) is copied so that fetch can go once
			// the batches in flight that hold it finish.
			if g.ahead.Load() > 0 {
				g.mu.RLock()
				for _, p := range g.parts {
					p.detachQueued()
				}
				g.mu.RUnlock()
			}
			if !g.waitUnpinned(ctx, g.pinBound()) {
				return nil
			}
		}
		pctx, cancel := context.WithCancel(ctx)
		g.pollMu.Lock()
		g.pollCancel = cancel
		if g.seekWanted {
			cancel()
		}
		g.pollMu.Unlock()

		fetches := g.cl.PollRecords(pctx, 0)

		g.pollMu.Lock()
		g.pollCancel = nil
		g.pollMu.Unlock()
		cancel()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		g.nextGen() // what this poll pushes
		if err := g.logFetchErrors(fetches); err != nil {
			return err
		}
		if onlyErrors(fetches) {
			select {
			case <-ctx.Done():
			case <-time.After(errorPause):
			}
		}
		now := time.Now()
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			p := g.partition(fp.Topic, fp.Partition)
			if p == nil {
				return
			}
			if len(fp.Records) == 0 {
				p.end.Store(endOf(fp)) // lag (X2)
				return
			}
			if p.keptAfterLoss() {
				g.restartKept(p)
				return
			}
			p.push(fp.Records, endOf(fp), now)
		})
	}
}

// onlyErrors reports whether a poll returned errors and no records: polling
// again at once would return the same errors (a deleted topic answers
// every fetch at once), so the poll loop waits a little first.
func onlyErrors(fetches kgo.Fetches) bool {
	failed := false
	fetches.EachError(func(_ string, _ int32, err error) {
		failed = failed || !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	})
	return failed && fetches.NumRecords() == 0
}

// errorPause is how long the poll loop waits after a poll that returned
// only errors.
const errorPause = 100 * time.Millisecond

// wantSeek wakes the poll loop so it applies pending seeks.
func (g *group) wantSeek() {
	g.pollMu.Lock()
	g.seekWanted = true
	if g.pollCancel != nil {
		g.pollCancel()
	}
	g.pollMu.Unlock()
	select {
	case g.seekCh <- struct{}{}:
	default:
	}
}

// applySeeks moves kgo's fetch position of every partition that asked for it.
// kgo ignores partitions it no longer consumes, so a seek racing a
// revocation is harmless.
func (g *group) applySeeks() {
	g.pollMu.Lock()
	wanted := g.seekWanted
	g.seekWanted = false
	g.pollMu.Unlock()
	if !wanted {
		return
	}
	set := make(map[string]map[int32]kgo.EpochOffset)
	g.mu.RLock()
	for _, p := range g.parts {
		p.mu.Lock()
		if p.seek >= 0 && p.state == owned {
			seekTo(set, p, kgo.EpochOffset{Epoch: -1, Offset: p.seek})
		}
		p.seek = -1
		p.mu.Unlock()
	}
	g.mu.RUnlock()
	if len(set) > 0 {
		g.cl.SetOffsets(set)
	}
}

// seekTo adds p's new fetch position to set, an argument for SetOffsets.
func seekTo(set map[string]map[int32]kgo.EpochOffset, p *Partition, to kgo.EpochOffset) {
	if set[p.topic.Name] == nil {
		set[p.topic.Name] = make(map[int32]kgo.EpochOffset)
	}
	set[p.topic.Name][p.id] = to
}
