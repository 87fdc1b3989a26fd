package engine

import (
	"context"
	"errors"
	"time"

	"github.com/ferrykit/ferry/event"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Everything the engine reports passes through this file: the events of a
// subscriber (X1), and the few numbers behind Stats, lag (X2) and health
// (X4). An event is built only when someone subscribed: without a
// subscriber reporting costs one nil check per unit of work.

func (g *group) observed() bool { return g.cfg.OnEvent != nil }

func (g *group) emit(ev event.Event) { g.cfg.OnEvent(ev) }

// started returns the start of a unit of work worth timing: now when
// someone subscribed, else the zero time (no clock read).
func (g *group) started() time.Time {
	if g.cfg.OnEvent == nil {
		return time.Time{}
	}
	return time.Now()
}

// begin returns the start of an exactly-once round's batch, noting it for
// health when Consume calls are timed; the
// zero time when nobody needs it (no clock read). consumed ends it.
func (p *Partition) begin() time.Time {
	if !p.g.cfg.TimeConsume {
		return p.g.started()
	}
	now := time.Now()
	p.busySince.Store(now.UnixNano())
	return now
}

// consumed records the outcome of one Consume call: how far the partition
// got (lag), since when it has been failing (health), and the event.
func (p *Partition) consumed(batch []*kgo.Record, attempt int, began time.Time, err error) {
	if p.g.eos && p.g.cfg.TimeConsume {
		p.busySince.Store(0) // a scheduler keeps its own
	}
	last := batch[len(batch)-1].Offset
	if err == nil || p.topic.Delivery == AtMostOnce { // at-most-once skips a failed batch
		p.processed.Store(last + 1)
	}
	if !p.g.observed() {
		return
	}
	took := time.Since(began)
	if err != nil {
		p.g.emit(event.ConsumeFailed{Group: p.g.cfg.Name, Topic: p.topic.Name, Partition: p.id, Count: len(batch),
			FirstOffset: batch[0].Offset, LastOffset: last, Attempt: attempt, Duration: took, Err: err})
		return
	}
	lag := int64(-1)
	if end := p.end.Load(); end >= 0 {
		lag = max(end-(last+1), 0)
	}
	p.g.emit(event.BatchConsumed{Group: p.g.cfg.Name, Topic: p.topic.Name, Partition: p.id, Count: len(batch),
		FirstOffset: batch[0].Offset, LastOffset: last, Attempt: attempt, Duration: took, Lag: lag})
}

// setFailures sets the worker's count of failed attempts in a row, and
// since when the partition has been failing (health).
func (p *Partition) setFailures(n int) {
	switch {
	case n == p.failures:
		return
	case n == 0:
		p.failingSince.Store(0)
	case p.failures == 0:
		p.failingSince.Store(time.Now().UnixNano())
	}
	p.failures = n
}

// retryScheduled reports a failed partition's wait before its next attempt;
// its fetching is paused meanwhile.
func (p *Partition) retryScheduled(resume int64, delay time.Duration) {
	if !p.g.observed() {
		return
	}
	p.g.emit(event.RetryScheduled{Group: p.g.cfg.Name, Topic: p.topic.Name, Partition: p.id,
		Offset: resume, Attempt: p.failures + 1, Delay: delay})
}

func (p *Partition) pausedForRetry() {
	if p.g.observed() {
		p.g.emit(event.Paused{Group: p.g.cfg.Name, Topic: p.topic.Name, Partition: p.id, Reason: event.PauseBackoff})
	}
}

func (p *Partition) resumedAfterRetry() {
	if p.g.observed() && p.Owned() {
		p.g.emit(event.Resumed{Group: p.g.cfg.Name, Topic: p.topic.Name, Partition: p.id, Reason: event.PauseBackoff})
	}
}

// pauseNewsLocked notes a pause (or its end) that happened under p.mu, to
// be reported once the lock is released (newsLocked, tell). Only called
// when someone subscribed.
func (p *Partition) pauseNewsLocked(paused bool, reason string) {
	var ev event.Event = event.Resumed{Group: p.g.cfg.Name, Topic: p.topic.Name, Partition: p.id, Reason: reason}
	if paused {
		ev = event.Paused{Group: p.g.cfg.Name, Topic: p.topic.Name, Partition: p.id, Reason: reason}
	}
	p.news = append(p.news, ev)
}

// newsLocked reports whether events were noted under p.mu: non-nil when
// there are some (nil, without allocating, in the usual case). The caller
// passes it to tell once the lock is released.
func (p *Partition) newsLocked() []event.Event {
	return p.news
}

// tell reports the events noted under p.mu, outside the lock, in the order
// they were noted. Several goroutines note a partition's pauses (the poll
// loop when its queue fills, the partition's goroutine when it drains, an
// operator's call): each takes the noted events and reports them under
// p.telling, so a Resumed noted after a Paused is never reported before it.
// A goroutine that finds another one reporting leaves its events to it: the
// reporter looks again once done. So a subscriber that causes a pause of
// the same partition from its callback does not wait on itself.
func (p *Partition) tell(news []event.Event) {
	if news == nil {
		return
	}
	for p.telling.TryLock() {
		p.mu.Lock()
		evs := p.news
		p.news = nil
		p.mu.Unlock()
		for _, ev := range evs {
			p.g.emit(ev)
		}
		p.telling.Unlock()
		p.mu.Lock()
		more := p.news != nil
		p.mu.Unlock()
		if !more {
			return
		}
	}
}

func (p *Partition) deadLettered(r *kgo.Record, cause error, attempts int) {
	if p.g.observed() {
		p.g.emit(event.DeadLettered{Group: p.g.cfg.Name, Topic: p.topic.Name, Partition: p.id, Offset: r.Offset,
			DeadLetterTopic: p.topic.DeadLetterTopic, Attempts: attempts, Err: cause})
	}
}

// committed reports one commit request or committed transaction.
func (g *group) committed(why string, offs map[string]map[int32]int64, err error) {
	g.emit(event.Committed{Group: g.cfg.Name, Reason: why, Offsets: offs, Err: err})
}

// logFetchErrors logs and reports fetch errors kgo does not retry itself.
// It returns the first that denies access (T3): retrying cannot fix it, so
// the group stops with it (Run returns it) instead of logging it.
func (g *group) logFetchErrors(fetches kgo.Fetches) error {
	var denied error
	fetches.EachError(func(topic string, partition int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return
		}
		if d := g.notAuthorized(topic, err); d != nil {
			if denied == nil {
				denied = d
			}
		} else if ok, held := g.fetchLogs.allow(topic+"\x00"+err.Error(), time.Now()); ok {
			// B7: a failing topic errs on every fetch; say it once, then
			// at a slow interval.
			var session *kgo.ErrGroupSession
			if errors.As(err, &session) {
				// Not a fetch: kgo tells its poller that the member
				// could not join (or was put out of) the group; it
				// tries again by itself.
				g.log.Error("ferry: cannot join the group; retrying", "err", session.Err, "repeats_not_logged", held)
			} else {
				g.log.Error("ferry: fetch error", "topic", topic, "partition", partition, "err", err, "repeats_not_logged", held)
			}
		}
		if g.observed() {
			g.emit(event.FetchFailed{Group: g.cfg.Name, Topic: topic, Partition: partition, Err: err})
		}
	})
	return denied
}

// The partition callbacks kgo calls: ferry's work, then the event. Being
// assigned is what makes the member ready (X4); losing the assignment
// makes it not ready until the next one.

func (g *group) assigned(ctx context.Context, cl *kgo.Client, parts map[string][]int32) {
	g.onAssigned(ctx, cl, parts)
	g.alive() // fetching starts now
	g.joined.Store(true)
	if g.observed() {
		g.emit(event.Assigned{Group: g.cfg.Name, Partitions: parts})
	}
}

func (g *group) revoked(ctx context.Context, cl *kgo.Client, parts map[string][]int32) {
	g.onRevoked(ctx, cl, parts)
	if g.observed() && len(parts) > 0 {
		g.emit(event.Revoked{Group: g.cfg.Name, Partitions: parts})
	}
}

func (g *group) lost(ctx context.Context, cl *kgo.Client, parts map[string][]int32) {
	g.joined.Store(false)
	g.onLost(ctx, cl, parts)
	if g.observed() && len(parts) > 0 {
		g.emit(event.Lost{Group: g.cfg.Name, Partitions: parts})
	}
}

func (g *group) shutDown(began time.Time, err error) {
	if g.observed() {
		g.emit(event.Shutdown{Group: g.cfg.Name, Duration: time.Since(began), Err: err})
	}
}

// fetchHook notes every successful fetch response: fetching is alive even
// when there is nothing to fetch (X4). It runs once per response, not per
// message.
type fetchHook struct{ g *group }

func (h fetchHook) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == fetchKey && err == nil {
		h.g.alive()
	}
}

const fetchKey = 1 // Kafka's Fetch API

// alive notes that the group made progress: a fetch answered, or a
// transaction round ended.
func (g *group) alive() { g.lastAlive.Store(time.Now().UnixNano()) }

// endOf is how far a read_committed consumer can read the partition, as of
// this fetch: the last stable offset, else the high watermark.
func endOf(fp kgo.FetchTopicPartition) int64 {
	if fp.LastStableOffset >= 0 {
		return fp.LastStableOffset
	}
	return fp.HighWatermark
}

// PartitionStats is a snapshot of one assigned partition.
type PartitionStats struct {
	Topic     string
	Partition int32
	// End is how far the partition can be read, as of the latest fetch;
	// Committed the group's committed next offset; Processed the offset
	// after the last processed message. -1 when not known yet.
	End, Committed, Processed int64
	// FailingSince is when its first failed attempt in a row happened;
	// zero when it is not failing.
	FailingSince time.Time
	// ConsumingSince is when the Consume call running now started (for a
	// parallel partition, the oldest running one); zero when none runs or
	// Consume calls are not timed (Group.TimeConsume).
	ConsumingSince time.Time
	// Fetching: the partition is owned and not paused, so its fetches are
	// expected to be answered (a partition being revoked or shut down is
	// not fetched).
	Fetching bool
	// Paused: its fetching is paused (retry backoff or a full queue).
	Paused bool
	// RecordFull: a parallel partition takes no new messages because the
	// record of those finished out of order would not fit (K4).
	RecordFull bool
	// PausedByUser: paused by Group.Pause until Group.Resume (O4).
	PausedByUser bool
	// Revoking: its revocation began and waits for in-flight work and the
	// commit before the partition is handed over (A3).
	Revoking bool
	// Queued is the number of fetched messages waiting for a batch;
	// InFlight the number handed to Consume and not finished.
	Queued, InFlight int
}

// GroupStats is a snapshot of one running group.
type GroupStats struct {
	Name string
	// Running: Run was called and has not returned.
	Running bool
	// Joined: the member is in its group and was given its assignment.
	Joined bool
	// MemberID is the member's id in its group; "" before it joined.
	MemberID string
	// LastAlive is when a fetch was last answered (or, exactly-once, a
	// transaction round ended); zero before the first.
	LastAlive time.Time
	// Backpressure: the poll loop waits for consumers to catch up, so no
	// fetch is expected.
	Backpressure bool
	Partitions   []PartitionStats
}

// Stats returns a snapshot of the group, without any request to Kafka.
func (cfg *Group) Stats() GroupStats {
	s := GroupStats{Name: cfg.Name}
	g := cfg.live.Load()
	if g == nil {
		return s
	}
	s.Running, s.Joined = true, g.joined.Load()
	s.MemberID, _ = g.cl.GroupMetadata()
	if t := g.lastAlive.Load(); t != 0 {
		s.LastAlive = time.Unix(0, t)
	}
	s.Backpressure = g.ahead.Load() >= fetchAhead
	g.mu.RLock()
	for _, p := range g.parts {
		if ps, ok := p.stats(); ok {
			s.Partitions = append(s.Partitions, ps)
		}
	}
	g.mu.RUnlock()
	return s
}

// stats reports the partition, unless it was lost or let go.
func (p *Partition) stats() (PartitionStats, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.state.marksAccepted() {
		return PartitionStats{}, false
	}
	s := PartitionStats{Topic: p.topic.Name, Partition: p.id, End: p.end.Load(), Processed: p.processed.Load(),
		Committed: p.book.committed().Offset, Paused: p.pausedInKgo, Queued: p.q.len(),
		RecordFull: p.book.recordFull(), Fetching: p.state == owned && !p.pausedInKgo,
		PausedByUser: p.pausedUser, Revoking: p.state == revoking, InFlight: int(p.inFlight.Load())}
	if t := p.failingSince.Load(); t != 0 {
		s.FailingSince = time.Unix(0, t)
	}
	if t := p.busySince.Load(); t != 0 {
		s.ConsumingSince = time.Unix(0, t)
	}
	return s, true
}
