package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Exactly-once groups (S3) run in rounds instead of the poll loop: poll,
// begin a Kafka transaction, let every partition that got records consume
// all of them (producing through the transaction), then commit the
// transaction — outputs and input offsets together — or abort it. franz-go's
// GroupTransactSession commits the offsets of everything polled, so a round
// never leaves polled records unprocessed: each partition consumes its share
// to the end or the round aborts.
//
// On abort the session rewinds every partition to its committed offset; a
// partition that failed also waits out its backoff, paused, while the others
// go on in the next rounds. A rebalance during a round aborts it (KIP-447:
// the new owner reads the committed offsets and the zombie is fenced).

// Txn configures an exactly-once group.
type Txn struct {
	// ID is the transactional id; stable per instance so that a restarted
	// instance fences its predecessor.
	ID string
	// Batches is about how many batches per partition one transaction
	// spans (1 by default).
	Batches int
}

// roundResult is what a partition reports at the end of its share of a round.
type roundResult struct {
	p      *Partition
	failed bool
}

// txnState is the state of the round in progress. Produce results arrive
// asynchronously, some after their round ended (the records of an aborted
// transaction fail late): each is counted against the round it belongs to.
type txnState struct {
	mu         sync.Mutex
	round      uint64
	produceErr error
}

// begin starts a new round and returns its number.
func (s *txnState) begin() {
	s.mu.Lock()
	s.round++
	s.produceErr = nil
	s.mu.Unlock()
}

func (s *txnState) current() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.round
}

func (s *txnState) fail(round uint64, err error) {
	s.mu.Lock()
	if round == s.round && s.produceErr == nil {
		s.produceErr = err
	}
	s.mu.Unlock()
}

func (s *txnState) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.produceErr
}

// roundLoop runs transactions until ctx is cancelled; a round in progress
// finishes first.
func (g *group) roundLoop(ctx context.Context) error {
	for ctx.Err() == nil {
		fetches := g.sess.PollRecords(ctx, g.roundRecords())
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if !errors.Is(err, context.Canceled) {
				g.log.Error("ferry: fetch error", "topic", topic, "partition", partition, "err", err)
			}
		})
		if fetches.NumRecords() == 0 {
			continue
		}
		if err := g.round(fetches); err != nil {
			return err
		}
	}
	return nil
}

// roundRecords bounds a round: Batches batches of MaxMessages for each
// assigned partition.
func (g *group) roundRecords() int {
	g.mu.RLock()
	n := len(g.parts)
	g.mu.RUnlock()
	max := 0
	for _, t := range g.cfg.Topics {
		max = maxInt(max, t.MaxMessages)
	}
	return maxInt(n, 1) * max * maxInt(g.cfg.Txn.Batches, 1)
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// round runs one transaction over the polled records. An error is returned
// only when the transactional producer is unusable.
func (g *group) round(fetches kgo.Fetches) error {
	if err := g.sess.Begin(); err != nil {
		return fmt.Errorf("ferry: group %q: begin transaction: %w", g.cfg.Name, err)
	}
	g.txn.begin()
	var waiting []*Partition
	ok := true
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) == 0 {
			return
		}
		p := g.partition(fp.Topic, fp.Partition)
		if p == nil || !p.giveRound(fp.Records) {
			ok = false // polled but nobody to process it: never commit it
			return
		}
		waiting = append(waiting, p)
	})
	var failed []*Partition
	for _, p := range waiting {
		if r := p.roundOutcome(); r.failed {
			ok = false
			if r.p != nil {
				failed = append(failed, p)
			}
		}
	}
	if ok {
		// Every record must be acknowledged before the verdict: a failed
		// one aborts the round.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(g.runCtx), 60*time.Second)
		if err := g.cl.Flush(fctx); err != nil {
			g.txn.fail(g.txn.current(), err)
		}
		cancel()
	}
	if err := g.txn.err(); err != nil {
		g.log.Error("ferry: producing in the transaction failed; aborting it", "err", err)
		ok = false
	}
	offsets := g.cl.UncommittedOffsets()
	try := kgo.TryCommit
	if !ok {
		try = kgo.TryAbort
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(g.runCtx), 60*time.Second)
	committed, err := g.sess.End(ctx, try)
	cancel()
	if err != nil {
		return fmt.Errorf("ferry: group %q: ending transaction: %w", g.cfg.Name, err)
	}
	if committed {
		g.reportTxn(offsets)
	} else if ok {
		g.log.Warn("ferry: transaction aborted by a rebalance; the new owner reprocesses")
	}
	for _, p := range failed {
		p.backoffAfterRound()
	}
	return nil
}

// reportTxn tells the OnCommit hook what a committed transaction stored.
func (g *group) reportTxn(offs map[string]map[int32]kgo.EpochOffset) {
	if g.cfg.OnCommit == nil {
		return
	}
	ev := CommitEvent{Group: g.cfg.Name, Reason: "transaction", Offsets: make(map[string]map[int32]int64)}
	for t, ps := range offs {
		ev.Offsets[t] = make(map[int32]int64)
		for id, eo := range ps {
			ev.Offsets[t][id] = eo.Offset
		}
	}
	g.cfg.OnCommit(ev)
}

// giveRound hands the partition its records of this round. It reports false
// if the partition cannot take them (it is stopping).
func (p *Partition) giveRound(recs []*kgo.Record) bool {
	p.mu.Lock()
	p.markReadyLocked() // records came, so its committed offset is known
	p.mu.Unlock()
	select {
	case p.round <- recs:
		return true
	case <-p.stop:
		return false
	}
}

// roundOutcome waits for the partition's share of the round.
func (p *Partition) roundOutcome() roundResult {
	select {
	case r := <-p.roundDone:
		return r
	case <-p.done:
		return roundResult{failed: true}
	}
}

// runRounds is the partition goroutine's loop in an exactly-once group.
func (p *Partition) runRounds(w Worker) {
	for {
		select {
		case recs := <-p.round:
			p.roundDone <- p.consumeRound(w, recs)
		case <-p.stop:
			return
		}
	}
}

// consumeRound consumes all of recs in batches of MaxMessages. A message
// still failing after MaxRetries is dead-lettered inside the transaction and
// the rest consumed; any other failure fails the round.
func (p *Partition) consumeRound(w Worker, recs []*kgo.Record) roundResult {
	for len(recs) > 0 {
		if !p.Owned() || p.isStopping() {
			return roundResult{failed: true}
		}
		batch := recs[:min(len(recs), p.topic.MaxMessages):min(len(recs), p.topic.MaxMessages)]
		select {
		case p.g.slots <- struct{}{}:
		case <-p.stop:
			return roundResult{failed: true}
		}
		attempt := p.failures + 1
		err := guard(func() error { return w.Consume(p.ctx, batch, attempt) })
		<-p.g.slots
		if err == nil {
			recs = recs[len(batch):]
			continue
		}
		// The round blames the message a *MessageError names, else the
		// batch's first (a round's offsets are all or nothing).
		i := max(namedIndex(batch, err), 0)
		if p.topic.DeadLetterRecord != nil && p.topic.MaxRetries >= 0 && attempt > p.topic.MaxRetries {
			if p.deadLetter(batch[i], err, attempt) {
				p.failures = 0
				recs = recs[i+1:] // batch is a prefix of recs
				continue
			}
		}
		p.failures++
		p.log.Error("ferry: consume failed; aborting the transaction and retrying after backoff",
			"attempt", attempt, "first_offset", batch[0].Offset, "last_offset", batch[len(batch)-1].Offset, "err", err)
		// Stop fetching before reporting, so the next round cannot poll
		// records this partition would not take.
		p.mu.Lock()
		p.pausedRetry = true
		p.syncPauseLocked()
		p.mu.Unlock()
		return roundResult{p: p, failed: true}
	}
	p.failures = 0
	return roundResult{}
}

// backoffAfterRound keeps a failed partition paused for its backoff, then
// lets it fetch again. It runs on its own goroutine so rounds go on.
func (p *Partition) backoffAfterRound() {
	delay := p.topic.Backoff(p.failures)
	p.g.workers.Add(1)
	go func() {
		defer p.g.workers.Done()
		p.waitBackoff(delay)
	}()
}

func (p *Partition) isStopping() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state != owned
}

// produceTxn produces records inside the round's transaction without
// waiting: End flushes them before committing, and a failure aborts the
// round. Only a record the client refuses at once is reported here.
func (g *group) produceTxn(ctx context.Context, recs ...*kgo.Record) error {
	round := g.txn.current()
	for _, r := range recs {
		g.cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				g.txn.fail(round, err)
			}
		})
	}
	return g.txn.err()
}
