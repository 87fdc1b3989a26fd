package engine

// Where a newly assigned partition starts: kgo's callbacks for the offsets
// the group committed (onFetched, M8) and for the fetch positions it starts
// at (adjustOffsets), the reset position of a partition without a committed
// offset (B6, A8), and a topic's StartOffsets function.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// onFetched learns the committed offset and metadata of each newly assigned
// partition (M8) before its consumer is built. A partition the group has no
// committed offset for starts from a reset position, which ferry looks up
// itself, starts kgo at (adjustOffsets) and commits at once (A8).
func (g *group) onFetched(ctx context.Context, cl *kgo.Client, resp *kmsg.OffsetFetchResponse) error {
	type fetched struct {
		p        *Partition
		offset   int64
		epoch    int32
		metadata *string
	}
	var all []fetched
	unset := make(map[string][]*Partition) // topic → partitions with no committed offset
	learn := func(topic string, partition int32, offset int64, epoch int32, metadata *string) {
		p := g.partition(topic, partition)
		if p == nil {
			return
		}
		all = append(all, fetched{p, offset, epoch, metadata})
		if offset < 0 && !g.eos && !p.topic.Manual && p.topic.StartOffsets == nil {
			// Exactly-once groups commit in transactions only; with
			// manual offsets only the consumer's marks are committed;
			// a StartOffsets function chooses its topic's start.
			unset[topic] = append(unset[topic], p)
		}
	}
	for _, t := range resp.Topics {
		for _, rp := range t.Partitions {
			learn(t.Topic, rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata)
		}
	}
	for _, gr := range resp.Groups {
		for _, t := range gr.Topics {
			for _, rp := range t.Partitions {
				learn(t.Topic, rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata)
			}
		}
	}
	started := g.startPositions(ctx, cl, unset)
	for _, f := range all {
		if f.offset < 0 {
			f.p.learnStart() // A8: its start position, if known, is stored to commit
		} else {
			f.p.learnCommitted(f.offset, f.epoch, f.metadata)
		}
	}
	if started {
		g.commitSoon()
	}
	return nil
}

// startPositions looks up where partitions without a committed offset start
// (B6): the log start for earliest topics, the last stable offset for latest
// ones (what kgo itself would pick, reading committed data only), and
// records it in each partition. It reports whether it found any; a
// partition it cannot look up starts wherever kgo resets it, as before.
func (g *group) startPositions(ctx context.Context, cl *kgo.Client, unset map[string][]*Partition) bool {
	if len(unset) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.ConnectTimeout)
	defer cancel()
	var earliest, latest []string
	for topic := range unset {
		if g.topic(topic).StartLatest {
			latest = append(latest, topic)
		} else {
			earliest = append(earliest, topic)
		}
	}
	adm := kadm.NewClient(cl) // kgo may call back before g.cl is set
	found := false
	for _, q := range []struct {
		topics []string
		list   func(context.Context, ...string) (kadm.ListedOffsets, error)
	}{{earliest, adm.ListStartOffsets}, {latest, adm.ListCommittedOffsets}} {
		if len(q.topics) == 0 {
			continue
		}
		listed, err := q.list(ctx, q.topics...)
		if err != nil {
			g.log.Warn("ferry: cannot look up where new partitions start; their start is committed with their first batch", "topics", q.topics, "err", err)
			continue
		}
		for _, topic := range q.topics {
			for _, p := range unset[topic] {
				if o, ok := listed.Lookup(topic, p.id); ok && o.Err == nil && o.Offset >= 0 {
					p.setStart(o.Offset)
					found = true
				}
			}
		}
	}
	return found
}

// adjustOffsets starts partitions that have no committed offset where
// startPositions found they start — partitions of "latest" topics it could
// not look up start at the end of the partition (B6) — and lets topics with
// a StartOffsets function choose where their partitions start.
func (g *group) adjustOffsets(ctx context.Context, offs map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for topic, parts := range offs {
		t := g.topic(topic)
		if t == nil {
			continue
		}
		var committed map[int32]int64
		if t.StartOffsets != nil {
			committed = make(map[int32]int64, len(parts))
			for id, o := range parts {
				committed[id] = max(o.EpochOffset().Offset, -1)
			}
		}
		for id, o := range parts {
			if o.EpochOffset().Offset >= 0 {
				continue
			}
			if p := g.partition(topic, id); p != nil {
				if at := p.startOffset(); at >= 0 {
					parts[id] = kgo.NewOffset().At(at)
					continue
				}
			}
			if t.StartLatest {
				parts[id] = kgo.NewOffset().AtEnd()
			}
		}
		if t.StartOffsets != nil {
			if err := g.startOffsets(ctx, t, committed, parts); err != nil {
				return nil, err
			}
		}
	}
	return offs, nil
}

// startOffsets asks the topic's StartOffsets function where its newly
// assigned partitions start, retrying every second until it answers or the
// assignment ends, and only then lets their workers be built.
func (g *group) startOffsets(ctx context.Context, t *Topic, committed map[int32]int64, parts map[int32]kgo.Offset) error {
	for {
		var start map[int32]int64
		err := guard(func() (err error) {
			start, err = t.StartOffsets(ctx, committed)
			return err
		})
		if err == nil {
			for id := range parts {
				p := g.partition(t.Name, id)
				off, ok := start[id]
				if ok && off >= 0 {
					parts[id] = kgo.NewOffset().At(off).WithEpoch(-1)
				}
				if p != nil {
					p.startAt(off, ok && off >= 0)
				}
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err() // the assignment ended meanwhile
		}
		g.log.Error("ferry: cannot choose where partitions start; retrying in 1 s", "topic", t.Name, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
