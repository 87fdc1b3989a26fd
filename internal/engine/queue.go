package engine

// The queue of a partition: fetched records wait here, chunk by chunk as
// the poll loop pushed them, until the scheduler admits them: a sequential
// partition cuts a batch (B1), a parallel one admits them to lanes. It pauses and
// resumes the partition's fetching to bound its memory (QueueBytes). It
// knows nothing of consumers.

import (
	"time"

	"github.com/ferrykit/ferry/event"
	"github.com/twmb/franz-go/pkg/kgo"
)

// chunk is one fetch's records of the partition, queued as kgo returned
// them: batches are cut from chunks without copying when they fit in one.
type chunk struct {
	recs     []*kgo.Record
	at       time.Time // arrival, for MaxWait
	bytes    int       // approximate size of the records left, for QueueBytes
	per      int       // average record size
	detached bool      // recs are copies that no longer hold the fetch in memory (detach)
	gen      uint64    // the poll that fetched them (group.gen)
}

// fetchGen returns the poll whose fetch the chunk's records are still in,
// or 0 if they are copies.
func (c *chunk) fetchGen() uint64 {
	if c.detached {
		return 0
	}
	return c.gen
}

// take removes the chunk's first k records and returns their bytes.
func (c *chunk) take(k int) int {
	c.recs = c.recs[k:]
	b := c.bytes
	if len(c.recs) > 0 {
		b = min(k*c.per, c.bytes)
	}
	c.bytes -= b
	return b
}

// push appends fetched records; it runs on the poll loop. Records for a
// partition that is not owned, or that arrive before a pending seek was
// applied, are dropped: they will be fetched again.
func (p *Partition) push(recs []*kgo.Record, end int64, now time.Time) {
	p.mu.Lock()
	if p.state != owned || p.seek >= 0 || p.resync {
		p.mu.Unlock()
		return
	}
	if p.pausedUser { // O4: fetched in the meantime; fetched again on resume
		p.requeueLocked(recs[0].Offset)
		p.mu.Unlock()
		p.g.wantSeek()
		return
	}
	p.markReadyLocked()
	p.end.Store(end)
	if p.processed.Load() < 0 {
		p.processed.Store(recs[0].Offset) // nothing processed before the first fetch
	}
	size := chunkSize(recs)
	// The poll loop is the only writer of gen, and push runs on it.
	p.chunks = append(p.chunks, chunk{recs: recs, at: now, bytes: size, per: size / len(recs), gen: p.g.gen})
	p.queued += len(recs)
	p.addBytesLocked(size)
	p.caughtUp = end >= 0 && recs[len(recs)-1].Offset+1 >= end
	p.eofSent = false
	if p.queuedBytes >= p.topic.QueueBytes && !p.pausedFull {
		p.setFullLocked(true)
	}
	news := p.newsLocked()
	p.mu.Unlock()
	p.tell(news)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// chunkSize estimates a chunk's memory from three sampled records: exact
// enough to bound memory, and it does not walk every record on the hot path.
func chunkSize(recs []*kgo.Record) int {
	n := len(recs)
	sample := recordSize(recs[0]) + recordSize(recs[n/2]) + recordSize(recs[n-1])
	return sample * n / 3
}

func recordSize(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value) + 64
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// syncPauseLocked tells kgo whether to fetch this partition.
func (p *Partition) syncPauseLocked() {
	want := (p.pausedFull || p.pausedRetry || p.pausedUser) && p.state == owned
	if want == p.pausedInKgo {
		return
	}
	tp := map[string][]int32{p.topic.Name: {p.id}}
	if want {
		p.g.cl.PauseFetchPartitions(tp)
	} else {
		p.g.cl.ResumeFetchPartitions(tp)
	}
	p.pausedInKgo = want
}

// takeLocked cuts the next batch if one is due (B1): MaxMessages are queued,
// the oldest queued record waited MaxWait, or the fetch reached the end of
// the partition. It returns nil when no batch is due.
func (p *Partition) takeLocked(now time.Time) []*kgo.Record {
	if !p.dueLocked(now) {
		return nil
	}
	return p.cutLocked(min(p.queued, p.topic.MaxMessages))
}

// dueLocked reports whether a batch is due (see takeLocked).
func (p *Partition) dueLocked(now time.Time) bool {
	n := p.queued
	return n > 0 && (n >= p.topic.MaxMessages || p.caughtUp || now.Sub(p.chunks[0].at) >= p.topic.MaxWait)
}

// cutLocked removes the first k queued records (k <= p.queued) and returns
// them.
func (p *Partition) cutLocked(k int) []*kgo.Record {
	max := p.topic.MaxMessages
	var batch []*kgo.Record
	p.cutFrom = 0
	if head := &p.chunks[0]; len(head.recs) >= k {
		batch = head.recs[:k:k] // no copy; capped so appends cannot reach the rest
		p.cutFrom = head.fetchGen()
		p.addBytesLocked(-head.take(k))
	} else {
		batch = make([]*kgo.Record, 0, k)
		for len(batch) < k {
			head := &p.chunks[0]
			n := min(k-len(batch), len(head.recs))
			if gen := head.fetchGen(); gen > p.cutFrom {
				p.cutFrom = gen
			}
			batch = append(batch, head.recs[:n]...)
			p.addBytesLocked(-head.take(n))
			if len(head.recs) == 0 {
				p.dropHeadLocked()
			}
		}
	}
	if len(p.chunks) > 0 {
		if head := &p.chunks[0]; len(head.recs) == 0 {
			p.dropHeadLocked()
		} else if len(head.recs) < max && !head.detached {
			// A tail too short for a batch waits for the next fetch
			// or MaxWait. As a sub-slice it would pin the fetch's
			// record array, and through it every record already
			// consumed: copy the few pointers left. A slow
			// consumer's tail may wait long, and its records would
			// keep the whole fetch in memory meanwhile: copy them
			// out of it. A fast consumer's tail goes with its
			// partition's next fetch, within milliseconds (at most
			// MaxWait); keeping its fetch that long steadies the
			// heap, so the GC runs about a quarter less often
			// (docs/BENCHMARKS.md, "Memory").
			if p.g.slow.Load() {
				head.recs, head.detached = detach(head.recs), true
			} else {
				head.recs = append([]*kgo.Record(nil), head.recs...)
			}
		}
	}
	p.queued -= k
	if p.pausedFull && p.queuedBytes < p.topic.QueueBytes/2 {
		p.setFullLocked(false)
	}
	return batch
}

// dropHeadLocked forgets the emptied oldest chunk.
func (p *Partition) dropHeadLocked() {
	p.addBytesLocked(-p.chunks[0].bytes)
	p.chunks[0] = chunk{}
	p.chunks = p.chunks[1:]
	if len(p.chunks) == 0 {
		p.chunks = nil
	}
}

// clearQueueLocked forgets everything queued.
func (p *Partition) clearQueueLocked() {
	p.addBytesLocked(-p.queuedBytes)
	p.chunks, p.queued = nil, 0
	if p.pausedFull {
		p.setFullLocked(false)
	}
}

// addBytesLocked accounts queued bytes, in the partition and — unless the
// partition is paused for being full — in the group's fetch-ahead total.
func (p *Partition) addBytesLocked(delta int) {
	p.queuedBytes += delta
	if p.pausedFull {
		return
	}
	if delta < 0 {
		p.g.drain(-delta)
	} else {
		p.g.addAhead(delta)
	}
}

// setFullLocked pauses or resumes fetching of a partition whose queue is
// full. A full partition's bytes stop counting against the group's
// fetch-ahead budget, so one slow partition never stops the poll loop (B3).
func (p *Partition) setFullLocked(full bool) {
	if full == p.pausedFull {
		return
	}
	if full {
		p.g.addAhead(-p.queuedBytes)
	} else {
		p.g.addAhead(p.queuedBytes)
	}
	p.pausedFull = full
	p.syncPauseLocked()
	if p.state == owned && p.g.observed() {
		p.pauseNewsLocked(full, event.PauseMemory)
	}
}

// detachQueued copies the records queued — unless the partition is paused
// for being full — out of their fetches (see detach), so the fetches can be
// freed while the records wait. The poll loop calls it before polling for a
// slow consumer, whose few leftover records would otherwise keep the
// previous fetch alive next to the new one.
func (p *Partition) detachQueued() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pausedFull {
		return
	}
	for i := range p.chunks {
		if c := &p.chunks[i]; !c.detached {
			c.recs, c.detached = detach(c.recs), true
		}
	}
}

// detach copies records — with their keys, values and headers — out of
// the memory of the fetch they came in: kgo decodes a fetch's records into
// one array and slices their keys and values out of the fetch's buffers, so
// a few records kept would keep the whole fetch alive.
func detach(recs []*kgo.Record) []*kgo.Record {
	size := 0
	for _, r := range recs {
		size += len(r.Key) + len(r.Value)
		for _, h := range r.Headers {
			size += len(h.Value)
		}
	}
	buf := make([]byte, 0, size)
	clip := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		buf = append(buf, b...)
		return buf[len(buf)-len(b) : len(buf) : len(buf)]
	}
	copies := make([]kgo.Record, len(recs))
	out := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		c := &copies[i]
		*c = *r
		c.Key, c.Value = clip(r.Key), clip(r.Value)
		if len(r.Headers) > 0 {
			c.Headers = make([]kgo.RecordHeader, len(r.Headers))
			for j, h := range r.Headers {
				c.Headers[j] = kgo.RecordHeader{Key: h.Key, Value: clip(h.Value)}
			}
		}
		out[i] = c
	}
	return out
}
