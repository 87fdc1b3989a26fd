package engine

// The queue of a partition: fetched records wait here, chunk by chunk as
// the poll loop pushed them, until the scheduler admits them: a sequential
// partition cuts a batch (B1), a parallel one admits them to lanes. The
// queue type owns the records and what they weigh; the Partition methods
// here pause and resume the partition's fetching as it fills and drains, to
// bound its memory (QueueBytes). It knows nothing of consumers.

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

// queue holds a partition's fetched records, chunk by chunk, until they are
// admitted. It is guarded by Partition.mu, except holds, which only the
// partition's goroutine and the batch it runs touch.
//
// full belongs to the queue; the other reasons to pause fetching (a retry's
// backoff, pausedRetry; an operator's pause, pausedUser) and what kgo was
// last told (pausedInKgo) stay on Partition. full decides where the queued
// bytes count — a full queue's stop counting against the group's
// fetch-ahead budget (B3) — so every byte queued or taken reads it, and only
// the queue's own size sets it. Whether kgo fetches depends on every reason
// and on the partition's state, which the queue does not know: the
// partition (setFullLocked) tells kgo and its subscribers when the queue
// fills or drains.
type queue struct {
	g      *group // the fetch-ahead budget, the poll's number, whether consumers are slow
	topic  *Topic // MaxMessages, MaxWait, QueueBytes
	chunks []chunk
	n      int // records in chunks
	bytes  int // their approximate size, for QueueBytes
	// caughtUp: the newest fetch reached the end of the partition;
	// eofSent: the EOF hook ran since.
	caughtUp bool
	eofSent  bool
	full     bool // reached QueueBytes, and not drained to half of it since
	// cutFrom: the poll whose fetch the batch cut last holds records of
	// (0: copies only); holds: the one the running batch pins for the poll
	// loop (group.pin), 0 for none.
	cutFrom uint64
	holds   uint64
}

func newQueue(g *group, t *Topic) queue { return queue{g: g, topic: t} }

// len returns how many records are queued.
func (q *queue) len() int { return q.n }

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
	p.q.push(recs, end, now)
	if p.q.filled() {
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

// push queues one fetch's records as a chunk; end is how far the partition
// could be read as of the fetch.
func (q *queue) push(recs []*kgo.Record, end int64, now time.Time) {
	size := chunkSize(recs)
	// The poll loop is the only writer of gen, and push runs on it.
	q.chunks = append(q.chunks, chunk{recs: recs, at: now, bytes: size, per: size / len(recs), gen: q.g.gen})
	q.n += len(recs)
	q.addBytes(size)
	q.caughtUp = end >= 0 && recs[len(recs)-1].Offset+1 >= end
	q.eofSent = false
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
	want := (p.q.full || p.pausedRetry || p.pausedUser) && p.state == owned
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
	if !p.q.due(now) {
		return nil
	}
	return p.cutLocked(min(p.q.len(), p.topic.MaxMessages))
}

// due reports whether a batch is due (see takeLocked).
func (q *queue) due(now time.Time) bool {
	return q.n > 0 && (q.n >= q.topic.MaxMessages || q.caughtUp || now.Sub(q.chunks[0].at) >= q.topic.MaxWait)
}

// untilMaxWait returns how long until the oldest queued record waited
// MaxWait (0 if it did), or -1 if nothing is queued.
func (q *queue) untilMaxWait(now time.Time) time.Duration {
	if q.n == 0 {
		return -1
	}
	return max(q.topic.MaxWait-now.Sub(q.chunks[0].at), 0)
}

// cutLocked removes the first k queued records (k <= p.q.len()) and returns
// them, resuming fetching if that drained a full queue.
func (p *Partition) cutLocked(k int) []*kgo.Record {
	batch := p.q.cut(k)
	if p.q.drained() {
		p.setFullLocked(false)
	}
	return batch
}

// cut removes the first k queued records (k <= q.n) and returns them,
// noting in cutFrom the newest fetch they are still in.
func (q *queue) cut(k int) []*kgo.Record {
	var batch []*kgo.Record
	q.cutFrom = 0
	if head := &q.chunks[0]; len(head.recs) >= k {
		batch = head.recs[:k:k] // no copy; capped so appends cannot reach the rest
		q.cutFrom = head.fetchGen()
		q.addBytes(-head.take(k))
	} else {
		batch = make([]*kgo.Record, 0, k)
		for len(batch) < k {
			head := &q.chunks[0]
			n := min(k-len(batch), len(head.recs))
			if gen := head.fetchGen(); gen > q.cutFrom {
				q.cutFrom = gen
			}
			batch = append(batch, head.recs[:n]...)
			q.addBytes(-head.take(n))
			if len(head.recs) == 0 {
				q.dropHead()
			}
		}
	}
	q.trimHead()
	q.n -= k
	return batch
}

// trimHead drops the oldest chunk once a cut emptied it, or lets go of the
// fetch behind a tail too short for a batch.
func (q *queue) trimHead() {
	if len(q.chunks) == 0 {
		return
	}
	head := &q.chunks[0]
	if len(head.recs) == 0 {
		q.dropHead()
	} else if len(head.recs) < q.topic.MaxMessages && !head.detached {
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
		if q.g.slow.Load() {
			head.recs, head.detached = detach(head.recs), true
		} else {
			head.recs = append([]*kgo.Record(nil), head.recs...)
		}
	}
}

// dropHead forgets the emptied oldest chunk.
func (q *queue) dropHead() {
	q.addBytes(-q.chunks[0].bytes)
	q.chunks[0] = chunk{}
	q.chunks = q.chunks[1:]
	if len(q.chunks) == 0 {
		q.chunks = nil
	}
}

// first returns the offset of the oldest queued record, or -1.
func (q *queue) first() int64 {
	for _, c := range q.chunks {
		if len(c.recs) > 0 {
			return c.recs[0].Offset
		}
	}
	return -1
}

// records yields the queued records, oldest first.
func (q *queue) records(yield func(*kgo.Record) bool) {
	for _, c := range q.chunks {
		for _, r := range c.recs {
			if !yield(r) {
				return
			}
		}
	}
}

// clearQueueLocked forgets everything queued.
func (p *Partition) clearQueueLocked() {
	p.q.clear()
	if p.q.full {
		p.setFullLocked(false)
	}
}

// clear forgets the queued records.
func (q *queue) clear() {
	q.addBytes(-q.bytes)
	q.chunks, q.n = nil, 0
}

// forgetEnd forgets that the partition was read to its end and that the
// EOF hook ran: the partition moved (a seek).
func (q *queue) forgetEnd() {
	q.caughtUp, q.eofSent = false, false
}

// claimEOF reports whether the EOF hook is due — the newest fetch reached
// the end of the partition and nothing is queued — and not run since, and
// notes that it runs now.
func (q *queue) claimEOF() bool {
	if !q.caughtUp || q.n > 0 || q.eofSent {
		return false
	}
	q.eofSent = true
	return true
}

// short reports whether less than a batch is queued while the newest fetch
// has not reached the end of the partition.
func (q *queue) short() bool {
	return !q.caughtUp && q.n < q.topic.MaxMessages
}

// addBytes accounts queued bytes, in the queue and — unless it is full —
// in the group's fetch-ahead total.
func (q *queue) addBytes(delta int) {
	q.bytes += delta
	if q.full {
		return
	}
	if delta < 0 {
		q.g.drain(-delta)
	} else {
		q.g.addAhead(delta)
	}
}

// filled reports whether the queue just reached QueueBytes (K8).
func (q *queue) filled() bool { return !q.full && q.bytes >= q.topic.QueueBytes }

// drained reports whether a full queue drained below half of QueueBytes.
func (q *queue) drained() bool { return q.full && q.bytes < q.topic.QueueBytes/2 }

// setFull notes that the queue is full, or no longer, and moves its bytes
// out of the group's fetch-ahead budget, or back. It reports whether that
// changed anything.
func (q *queue) setFull(full bool) bool {
	if full == q.full {
		return false
	}
	if full {
		q.g.addAhead(-q.bytes)
	} else {
		q.g.addAhead(q.bytes)
	}
	q.full = full
	return true
}

// setFullLocked pauses or resumes fetching of a partition whose queue is
// full. A full partition's bytes stop counting against the group's
// fetch-ahead budget, so one slow partition never stops the poll loop (B3).
func (p *Partition) setFullLocked(full bool) {
	if !p.q.setFull(full) {
		return
	}
	p.syncPauseLocked()
	if p.state == owned && p.g.observed() {
		p.pauseNewsLocked(full, event.PauseMemory)
	}
}

// detachQueued copies the records queued — unless the queue is full — out
// of their fetches (see detach), so the fetches can be freed while the
// records wait. The poll loop calls it before polling for a slow consumer,
// whose few leftover records would otherwise keep the previous fetch alive
// next to the new one.
func (p *Partition) detachQueued() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.q.detach()
}

// detach copies the queued records out of their fetches, unless the queue
// is full.
func (q *queue) detach() {
	if q.full {
		return
	}
	for i := range q.chunks {
		if c := &q.chunks[i]; !c.detached {
			c.recs, c.detached = detach(c.recs), true
		}
	}
}

// pinCut pins the fetch the batch just cut is still in, for the poll loop
// (group.pin), until unpin.
func (q *queue) pinCut() { q.holds = q.g.pin(q.cutFrom) }

// unpin lets go of the running batch's pin: it no longer keeps its fetch
// for the poll loop.
func (q *queue) unpin() {
	q.g.unpin(q.holds)
	q.holds = 0
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
