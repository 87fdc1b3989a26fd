package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ferrykit/ferry/offsets"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// learnCommitted records the group's committed position for a freshly
// assigned partition and lets its goroutine build the consumer.
func (p *Partition) learnCommitted(offset int64, epoch int32, metadata *string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if offset >= 0 {
		m := offsets.Mark{Offset: offset, Epoch: epoch}
		if metadata != nil {
			m.Metadata = *metadata
		}
		user, err := p.book.restore(m)
		if err != nil {
			p.log.Warn("ferry: cannot read the record of finished messages in the committed metadata; they are processed again", "err", err)
		}
		p.committedMD = user
		p.processed.Store(offset)
	}
	if p.topic.StartOffsets == nil {
		p.markReadyLocked() // else startAt, once the start is chosen
	}
}

// startAt applies the start offset a topic's StartOffsets function chose (if
// set) and lets the partition's goroutine build the worker. The start counts
// as a mark: a retry resumes there, and the next commit stores it when it is
// ahead of the group's committed offset (a partition whose consumer has
// nothing left to consume still shows no lag).
func (p *Partition) startAt(offset int64, set bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if set {
		p.book.begin(offsets.Mark{Offset: offset, Epoch: -1})
		p.processed.Store(offset)
	}
	p.markReadyLocked()
}

// setStart records where a partition with no committed offset starts.
func (p *Partition) setStart(offset int64) {
	p.mu.Lock()
	p.start = offset
	p.mu.Unlock()
}

// startOffset returns where a partition with no committed offset starts, or
// -1 if unknown.
func (p *Partition) startOffset() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.start
}

// learnStart readies a partition the group has no committed offset for. Its
// start position, when known, is stored as if marked, so the next commit
// sends it and a restart resumes there even if nothing is ever processed
// (A8).
func (p *Partition) learnStart() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.start >= 0 {
		p.book.begin(offsets.Mark{Offset: p.start, Epoch: -1})
		p.processed.Store(p.start)
	}
	if p.topic.StartOffsets == nil {
		p.markReadyLocked() // else startAt, once the start is chosen
	}
}

// errNothingOwned cancels a commit whose partitions were all lost before it
// could be sent.
var errNothingOwned = errors.New("ferry: partitions lost before the commit was sent")

// sent is one partition's part of a commit request.
type sent struct {
	p    *Partition
	mark offsets.Mark
	// final: the partition refuses marks now — it was released at the end
	// of a revocation, closed at shutdown or given up at the shutdown
	// timeout — and the mark is what it stored before (A3, A4, M2).
	final bool
}

// commitSoon asks the commit loop for a commit without waiting (M4).
func (g *group) commitSoon() {
	select {
	case g.commitNow <- struct{}{}:
	default:
	}
}

// commitLoop commits every CommitInterval, and when asked (A2).
func (g *group) commitLoop(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-g.clock.After(g.cfg.CommitInterval):
		case <-g.commitNow:
		}
		g.commitAndLog(context.WithoutCancel(g.runCtx), "periodic")
	}
}

// commitAndLog commits and says what became of each failure. A partition
// this member no longer owns once the answer came — the coordinator refused
// the commit because the member is gone (loseToCommit said so), the
// partition was lost meanwhile, or it is in handedBack, whose revocation
// this commit ends — gets no later commit: its uncommitted work is
// redelivered to its next owner. Only an owned partition's failure is
// retried by the next commit.
func (g *group) commitAndLog(ctx context.Context, why string, handedBack ...*Partition) {
	for p, err := range g.commit(ctx, why, nil) {
		switch {
		case memberGone(err):
		case !p.Owned() || slices.Contains(handedBack, p):
			p.log.Warn("ferry: commit failed and the partition is no longer this member's; its uncommitted work will be redelivered to its next owner",
				"why", why, "err", err)
		default:
			p.log.Warn("ferry: commit failed; will retry on the next commit", "why", why, "err", err)
		}
	}
}

// commit sends the pending marks of every owned partition in one request
// and waits for it. It returns the partitions whose commit failed. Commits
// are serialised with each other and with revocation, so a commit never
// names a partition this member has released.
//
// confirm, if set, is a partition whose owner wants the coordinator's word
// that it still owns it (M3): it is in the request even with nothing new to
// commit, sending its stored mark again, which changes nothing in the group
// but is refused once the coordinator no longer knows this member.
func (g *group) commit(ctx context.Context, why string, confirm *Partition) map[*Partition]error {
	if g.eos {
		return nil // exactly-once: transactions commit the offsets
	}
	g.commitMu.Lock()
	batch, failed := g.commitLocked(ctx, confirm)
	g.commitMu.Unlock()
	if len(batch) > 0 {
		g.report(why, batch, failed) // a subscriber runs outside ferry's locks
	}
	return failed
}

// commitLocked sends one commit request and waits for it; the caller holds
// commitMu. It returns what was sent and what failed.
func (g *group) commitLocked(ctx context.Context, confirm *Partition) (map[tp]sent, map[*Partition]error) {
	g.mu.RLock()
	batch := make(map[tp]sent, len(g.parts))
	for k, p := range g.parts {
		if m, ok := p.pending(); ok {
			batch[k] = sent{p: p, mark: m}
		} else if p == confirm {
			if m, ok := p.stored(); ok {
				batch[k] = sent{p: p, mark: m}
			}
		}
	}
	g.mu.RUnlock()
	for k, s := range g.final {
		batch[k] = s
	}
	g.final = nil
	if len(batch) == 0 {
		return nil, nil
	}
	offs := make(map[string]map[int32]kgo.EpochOffset)
	for k, s := range batch {
		if offs[k.topic] == nil {
			offs[k.topic] = make(map[int32]kgo.EpochOffset)
		}
		offs[k.topic][k.partition] = kgo.EpochOffset{Epoch: s.mark.Epoch, Offset: s.mark.Offset}
	}
	// Right before the request leaves — kgo may have held it through a
	// join — drop partitions lost meanwhile: kgo stamps the request with
	// the generation current at send time, so a stale mark could otherwise
	// land on a partition another member owns now. M8: offsets carry their
	// marks' metadata.
	// The partitions dropped are not failures: the loss was logged, and
	// their work is redelivered.
	dropped := make(map[tp]bool)
	ctx = kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		kept := 0
		for i := range req.Topics {
			t := &req.Topics[i]
			ps := t.Partitions[:0]
			for _, pp := range t.Partitions {
				k := tp{t.Topic, pp.Partition}
				s, ok := batch[k]
				if !ok || !(s.final || s.p.Owned()) {
					dropped[k] = true
					continue
				}
				md := s.mark.Metadata // "" too: not kgo's default (the member id)
				pp.Metadata = &md
				ps = append(ps, pp)
			}
			t.Partitions = ps
			kept += len(ps)
		}
		if kept == 0 {
			return errNothingOwned
		}
		return nil
	})

	failed := make(map[*Partition]error)
	g.cl.CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		answered := make(map[tp]bool, len(batch))
		if err == nil {
			for _, t := range resp.Topics {
				for _, rp := range t.Partitions {
					k := tp{t.Topic, rp.Partition}
					s, ok := batch[k]
					if !ok {
						continue
					}
					answered[k] = true
					if cerr := kerr.ErrorForCode(rp.ErrorCode); cerr != nil {
						failed[s.p] = cerr
						if memberGone(cerr) {
							s.p.loseToCommit(cerr)
						}
					} else {
						s.p.acknowledge(s.mark)
					}
				}
			}
		}
		for k, s := range batch {
			if dropped[k] {
				delete(batch, k) // neither committed nor failed
				continue
			}
			if !answered[k] {
				if err == nil {
					err = fmt.Errorf("partition missing from the commit response")
				}
				failed[s.p] = err
			}
		}
	})
	return batch, failed
}

// memberGone reports whether a commit's answer means the coordinator no
// longer counts this member as the owner of its partitions (A7): it was
// removed from the group, its generation is over, or another instance with
// its static id took its place.
func memberGone(err error) bool {
	return errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.IllegalGeneration) ||
		errors.Is(err, kerr.FencedInstanceID)
}

// report tells a subscriber what a commit achieved.
func (g *group) report(why string, batch map[tp]sent, failed map[*Partition]error) {
	if !g.observed() || len(batch) == 0 {
		return
	}
	var lastErr error
	offs := make(map[string]map[int32]int64)
	for k, s := range batch {
		if err, bad := failed[s.p]; bad {
			lastErr = err
			continue
		}
		if offs[k.topic] == nil {
			offs[k.topic] = make(map[int32]int64)
		}
		offs[k.topic][k.partition] = s.mark.Offset
	}
	g.committed(why, offs, lastErr)
}

// resyncFromGroup positions a partition restarted after a refused commit
// (restartKept): kgo's fetch position ran on while the previous instance
// refused its records, so the partition goes back to the group's committed
// offset, or the previous instance's if the group cannot be asked.
func (p *Partition) resyncFromGroup() {
	from := p.prev.committed()
	ctx, cancel := context.WithTimeout(p.ctx, p.g.cfg.ConnectTimeout)
	defer cancel()
	resp, err := kadm.NewClient(p.g.cl).FetchOffsets(ctx, p.g.cfg.Name)
	if err == nil {
		err = resp.Error()
	}
	if o, ok := resp.Lookup(p.topic.Name, p.id); err == nil && ok && o.Err == nil && o.At >= 0 {
		from = offsets.Mark{Offset: o.At, Epoch: o.LeaderEpoch, Metadata: o.Metadata}
	} else if err != nil {
		p.log.Warn("ferry: cannot read the committed offset; resuming from the last one this member knew", "err", err)
	}
	p.learnCommitted(from.Offset, from.Epoch, &from.Metadata)
	if p.topic.StartOffsets != nil { // the topic chooses where it starts, as on assignment
		parts := map[int32]kgo.Offset{p.id: kgo.NewOffset().At(from.Offset)}
		if err := p.g.startOffsets(p.ctx, p.topic, map[int32]int64{p.id: max(from.Offset, -1)}, parts); err == nil {
			from.Offset = parts[p.id].EpochOffset().Offset
		}
	}
	p.mu.Lock()
	p.seek = max(from.Offset, 0) // nothing committed anywhere: kgo resets an offset out of range to the start
	p.resync = false
	p.mu.Unlock()
	p.g.wantSeek()
}
