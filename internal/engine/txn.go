package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ferrykit/ferry/offsets"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Exactly-once groups (S3) run in rounds instead of the poll loop: poll,
// begin a Kafka transaction, let every partition that got records consume
// all of them (producing through the transaction), then commit the
// transaction — outputs and input offsets together — or abort it. A round
// spans one poll, or with an interval several polls until it elapses.
//
// The offsets a transaction commits are the partitions' marks, made by ferry
// after each successful batch or, with manual offsets, by the consumer
// through its Claim (Karafka's transaction { produce; mark_as_consumed }):
// franz-go's GroupTransactSession would commit everything polled, so ferry
// rewrites its TxnOffsetCommit to carry the marks. As in the other modes,
// consumption goes on past unmarked messages; they come again only from a
// retry, a rebalance or a restart. A mark on a partition this member no
// longer owns aborts the round; so does any failure.
//
// On abort the session rewinds every partition to where the round began and
// the round's marks are discarded; a partition that failed resumes right
// after its last committed mark (M7) and waits out its backoff, paused,
// while the others go on in the next rounds. A rebalance during a round
// aborts it (KIP-447: the new owner reads the committed offsets and the
// zombie is fenced).

// Txn configures an exactly-once group.
type Txn struct {
	// ID is the transactional id; stable per instance so that a restarted
	// instance fences its predecessor.
	ID string
	// Batches is about how many batches per partition one transaction
	// spans. Zero means one, unless Interval is set, then no count limit.
	Batches int
	// Interval, if positive, keeps a transaction open, polling and
	// consuming, until it elapses (or Batches is reached).
	Interval time.Duration
}

// fence initialises the transactional producer before the member joins the
// group, as Java's initTransactions does. InitProducerID with this member's
// transactional id aborts the transaction a crashed predecessor left open and
// fences it; until that transaction ends, the group coordinator answers the
// offset fetch of its partitions UNSTABLE_OFFSET_COMMIT, so a member that
// joined first would wait for the broker to time the transaction out. kgo
// would initialise the producer only at the first produce, which never comes
// while the offsets are unknown. Transient failures (a coordinator moving,
// a broker restarting) are retried until ctx ends; a refusal (say, the
// transactional id is not authorised) ends the group.
func (g *group) fence(ctx context.Context) error {
	for {
		_, _, err := g.cl.ProducerID(ctx)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if denied := g.notAuthorized("", err); denied != nil {
			return denied // T3
		}
		if ke, ok := errors.AsType[*kerr.Error](err); (ok && !ke.Retriable && ke != kerr.ConcurrentTransactions) ||
			errors.Is(err, kgo.ErrClientClosed) {
			return fmt.Errorf("ferry: group %q: initialising the transactional producer %q: %w", g.cfg.Name, g.cfg.Txn.ID, err)
		}
		g.log.Warn("ferry: cannot initialise the transactional producer yet; retrying", "transactional_id", g.cfg.Txn.ID, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-g.clock.After(time.Second):
		}
	}
}

// DefaultTransactionTimeout is how long the broker lets a transaction of an
// exactly-once group run, beyond its TransactionInterval, before it aborts
// it. It also bounds how long a crashed member's open transaction blocks
// the offsets of its partitions when its successor cannot fence it (its
// transactional id changed): Kafka Streams uses the same 10 s under
// exactly-once, where kgo's default is 40 s.
const DefaultTransactionTimeout = 10 * time.Second

// errMarkAfterRevocation fails a round in which a consumer marked a
// partition this member no longer owns.
var errMarkAfterRevocation = errors.New("ferry: a message was marked after its partition was revoked; the transaction aborts")

// roundResult is what a partition reports at the end of its share of a round.
type roundResult struct {
	p      *Partition
	failed bool
}

// roundShare is a partition's part in the group's rounds: the round loop
// hands it its records of a round and waits for the outcome; first is where
// a partition with no committed offset resumes after a failed round
// (retryPoint). first is guarded by Partition.mu.
type roundShare struct {
	recs  chan []*kgo.Record // this partition's records of a round
	done  chan roundResult   // its outcome
	first int64              // the first offset given to the partition; -1 before
}

func newRoundShare() roundShare {
	return roundShare{recs: make(chan []*kgo.Record), done: make(chan roundResult, 1), first: -1}
}

// started notes offset as the first given to the partition, unless one was.
func (s *roundShare) started(offset int64) {
	if s.first < 0 {
		s.first = offset
	}
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
		fetches := g.sess.PollRecords(ctx, g.pollRecords())
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		if err := g.logFetchErrors(fetches); err != nil {
			return err
		}
		if fetches.NumRecords() == 0 {
			continue
		}
		if err := g.round(ctx, fetches); err != nil {
			if denied := g.notAuthorized("", err); denied != nil {
				return denied
			}
			return err
		}
		g.alive() // a round can outlast the fetch that started it
	}
	return nil
}

// pollRecords bounds one poll: Batches batches of MaxMessages for each
// assigned partition.
func (g *group) pollRecords() int {
	g.mu.RLock()
	n := len(g.parts)
	g.mu.RUnlock()
	max := 0
	for _, t := range g.cfg.Topics {
		max = maxInt(max, t.MaxMessages)
	}
	return maxInt(n, 1) * max * maxInt(g.cfg.Txn.Batches, 1)
}

// wantMore reports whether the round should poll again after consuming
// records: only with an interval, until it elapses or the count is reached.
func (g *group) wantMore(ctx context.Context, began time.Time, records int) (time.Duration, bool) {
	left := g.cfg.Txn.Interval - time.Since(began)
	if g.cfg.Txn.Interval <= 0 || left <= 0 || ctx.Err() != nil {
		return 0, false
	}
	if g.cfg.Txn.Batches > 0 && records >= g.pollRecords() {
		return 0, false
	}
	return left, true
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// round runs one transaction over the polled records, and over more polled
// until the interval elapses. An error is returned only when the
// transactional producer is unusable.
func (g *group) round(ctx context.Context, fetches kgo.Fetches) error {
	if err := g.sess.Begin(); err != nil {
		return g.beginFailed(ctx, fetches, err)
	}
	g.txn.begin()
	began := time.Now()
	parts := make(map[*Partition]int64) // first offset of the round, per partition
	var failed []*Partition
	ok := true
	records := 0
	var denied error // an ACL denies a topic: abort, and stop the group
	for {
		ok = g.deliver(fetches, parts, &failed) && ok
		records += fetches.NumRecords()
		left, more := g.wantMore(ctx, began, records)
		if !ok || !more {
			break
		}
		pctx, cancel := context.WithTimeout(ctx, left)
		fetches = g.sess.PollRecords(pctx, g.pollRecords())
		cancel()
		if fetches.IsClientClosed() {
			ok = false
			break
		}
		if denied = g.logFetchErrors(fetches); denied != nil {
			ok = false
			break
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
		g.log.Error("ferry: transaction failed; aborting it", "err", err)
		ok = false
	}
	try := kgo.TryCommit
	if !ok {
		try = kgo.TryAbort
	}
	sent := make(map[*Partition]offsets.Mark)
	ectx, cancel := context.WithTimeout(context.WithoutCancel(g.runCtx), 60*time.Second)
	ectx = kgo.PreTxnCommitFnContext(ectx, func(req *kmsg.TxnOffsetCommitRequest) error {
		g.txnOffsets(req, sent)
		return nil
	})
	committed, err := g.sess.End(ectx, try)
	cancel()
	timedOut := errors.Is(err, kerr.InvalidProducerEpoch)
	if timedOut {
		// The broker aborted the transaction because it outlived the
		// transaction timeout, and bumped the producer's epoch; kgo
		// aborted its side and the next transaction runs with the new
		// epoch. A producer fenced by another instance with the same
		// transactional id gets PRODUCER_FENCED instead, and stops.
		g.log.Error("ferry: the broker aborted the transaction: it ran longer than the transaction timeout; retrying it",
			"transaction_timeout", g.cl.OptValue(kgo.TransactionTimeout), "err", err)
		committed, err = false, nil
	}
	if err != nil && txnFatal(err) {
		return fmt.Errorf("ferry: group %q: ending transaction: %w", g.cfg.Name, err)
	}
	switch {
	case committed:
		for p, m := range sent {
			p.acknowledge(m)
		}
		g.reportTxn(sent)
	case err != nil:
		// Not known to have committed, nor to have aborted.
		for p := range parts {
			p.discardMarks()
		}
		if err := g.restartTxns(ctx, "ferry: cannot end the transaction; aborting it and resuming from the committed offsets once the broker answers", err); err != nil {
			return err
		}
	default:
		for p := range parts {
			p.discardMarks()
		}
		g.retryFromMarks(failed, parts)
		if ok && !timedOut {
			g.log.Warn("ferry: transaction aborted by a rebalance; the new owner reprocesses")
		}
	}
	for _, p := range failed {
		p.backoffAfterRound()
	}
	return denied
}

// deliver hands each partition its polled records and waits until all have
// consumed them. It reports false if any failed or could not take them;
// parts learns each partition's first offset of the round.
func (g *group) deliver(fetches kgo.Fetches, parts map[*Partition]int64, failed *[]*Partition) bool {
	ok := true
	var waiting []*Partition
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) == 0 {
			return
		}
		p := g.partition(fp.Topic, fp.Partition)
		if p != nil {
			p.end.Store(endOf(fp)) // lag (X2)
		}
		if p == nil || !p.giveRound(fp.Records) {
			ok = false // polled but nobody to process it: never commit it
			return
		}
		if _, seen := parts[p]; !seen {
			parts[p] = fp.Records[0].Offset
		}
		waiting = append(waiting, p)
	})
	for _, p := range waiting {
		if r := p.roundOutcome(); r.failed {
			ok = false
			if r.p != nil {
				*failed = append(*failed, p)
			}
		}
	}
	return ok
}

// txnOffsets rewrites the transaction's offset commit, which franz-go fills
// with everything polled, to carry the partitions' marks instead: a
// partition with nothing marked is left out, and a partition marked between
// rounds is added. It runs inside End, after every partition finished its
// share of the round; sent learns what was asked.
func (g *group) txnOffsets(req *kmsg.TxnOffsetCommitRequest, sent map[*Partition]offsets.Mark) {
	set := func(rp *kmsg.TxnOffsetCommitRequestTopicPartition, m offsets.Mark) {
		rp.Offset, rp.LeaderEpoch = m.Offset, m.Epoch
		md := m.Metadata
		rp.Metadata = &md
	}
	seen := make(map[tp]bool)
	topics := req.Topics[:0]
	for _, t := range req.Topics {
		kept := t.Partitions[:0]
		for _, rp := range t.Partitions {
			seen[tp{t.Topic, rp.Partition}] = true
			p := g.partition(t.Topic, rp.Partition)
			if p == nil {
				continue
			}
			if m, ok := p.pending(); ok {
				set(&rp, m)
				kept = append(kept, rp)
				sent[p] = m
			}
		}
		if t.Partitions = kept; len(kept) > 0 {
			topics = append(topics, t)
		}
	}
	req.Topics = topics
	g.mu.RLock()
	defer g.mu.RUnlock()
	for k, p := range g.parts {
		if seen[k] {
			continue
		}
		m, ok := p.pending()
		if !ok {
			continue
		}
		i := slices.IndexFunc(req.Topics, func(t kmsg.TxnOffsetCommitRequestTopic) bool { return t.Topic == k.topic })
		if i < 0 {
			t := kmsg.NewTxnOffsetCommitRequestTopic()
			t.Topic = k.topic // no topic id: franz-go then sends a version that names topics
			req.Topics = append(req.Topics, t)
			i = len(req.Topics) - 1
		}
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Partition = k.partition
		set(&rp, m)
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
		sent[p] = m
	}
}

// retryFromMarks seeks each failed partition of an aborted round to right
// after its last committed mark (M7), or to the first message it was given
// in this assignment if it has none; franz-go rewound it only to where the
// round began, which with manual offsets may be past unmarked messages.
func (g *group) retryFromMarks(failed []*Partition, parts map[*Partition]int64) {
	set := make(map[string]map[int32]kgo.EpochOffset)
	for _, p := range failed {
		if to := p.retryPoint(); to.Offset >= 0 && to.Offset != parts[p] {
			seekTo(set, p, to)
		}
	}
	if len(set) > 0 {
		g.cl.SetOffsets(set)
	}
}

// reportTxn reports what a committed transaction stored.
func (g *group) reportTxn(sent map[*Partition]offsets.Mark) {
	if !g.observed() || len(sent) == 0 {
		return
	}
	offs := make(map[string]map[int32]int64)
	for p, m := range sent {
		if offs[p.topic.Name] == nil {
			offs[p.topic.Name] = make(map[int32]int64)
		}
		offs[p.topic.Name][p.id] = m.Offset
	}
	g.committed("transaction", offs, nil)
}

// giveRound hands the partition its records of this round. It reports false
// if the partition cannot take them (it is stopping).
func (p *Partition) giveRound(recs []*kgo.Record) bool {
	p.mu.Lock()
	p.markReadyLocked() // records came, so its committed offset is known
	p.tracker().Start(recs[0].Offset)
	p.share.started(recs[0].Offset)
	p.mu.Unlock()
	select {
	case p.share.recs <- recs:
		return true
	case <-p.stop:
		return false
	}
}

// roundOutcome waits for the partition's share of the round.
func (p *Partition) roundOutcome() roundResult {
	select {
	case r := <-p.share.done:
		return r
	case <-p.done:
		return roundResult{failed: true}
	}
}

// runRounds is the partition goroutine's loop in an exactly-once group.
func (p *Partition) runRounds(w Worker) {
	for {
		select {
		case recs := <-p.share.recs:
			p.share.done <- p.consumeRound(w, recs)
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
		began := p.begin()
		p.inFlight.Store(int64(len(batch)))
		err := guard(func() error { return w.Consume(p.ctx, batch, attempt) })
		p.inFlight.Store(0)
		<-p.g.slots
		p.consumed(batch, attempt, began, err)
		if err == nil {
			if !p.topic.Manual {
				p.Mark(batch[len(batch)-1], "")
			}
			recs = recs[len(batch):]
			continue
		}
		// The round blames the message a *MessageError names (the ones
		// before it count as processed), else the first the consumer did
		// not mark in this round (M7, M10), else the batch's first.
		i := namedIndex(batch, err)
		if i < 0 {
			resume := p.resume()
			i = max(slices.IndexFunc(batch, func(r *kgo.Record) bool { return r.Offset == resume }), 0)
		}
		if i > 0 && !p.topic.Manual {
			p.Mark(batch[i-1], "")
		}
		// Dead-lettering marks the message, so it happens only when
		// everything before it is marked (with manual offsets, by the
		// consumer).
		if p.topic.DeadLetterRecord != nil && p.topic.MaxRetries >= 0 && attempt > p.topic.MaxRetries &&
			p.resume() == batch[i].Offset {
			if p.deadLetter(batch[i], err, attempt) {
				p.setFailures(0)
				recs = recs[i+1:] // batch is a prefix of recs
				continue
			}
		}
		p.setFailures(p.failures + 1)
		p.log.Error("ferry: consume failed; aborting the transaction and retrying after backoff",
			append([]any{"attempt", attempt, "first_offset", batch[0].Offset, "last_offset", batch[len(batch)-1].Offset}, errAttrs(err)...)...)
		// Stop fetching before reporting, so the next round cannot poll
		// records this partition would not take.
		p.mu.Lock()
		p.pausedRetry = true
		p.syncPauseLocked()
		p.mu.Unlock()
		p.pausedForRetry()
		return roundResult{p: p, failed: true}
	}
	p.setFailures(0)
	return roundResult{}
}

// backoffAfterRound keeps a failed partition paused for its backoff, then
// lets it fetch again. It runs on its own goroutine so rounds go on.
func (p *Partition) backoffAfterRound() {
	delay := p.topic.Backoff(p.failures)
	p.retryScheduled(p.retryPoint().Offset, delay)
	p.g.workers.Add(1)
	go func() {
		defer p.g.workers.Done()
		p.waitBackoff(delay)
	}()
}

// retryPoint is where an exactly-once partition resumes after a failed
// round: its committed position, or the first offset it was given.
func (p *Partition) retryPoint() kgo.EpochOffset {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.book.committed(); c.Offset >= 0 {
		return kgo.EpochOffset{Epoch: c.Epoch, Offset: c.Offset}
	}
	return kgo.EpochOffset{Epoch: -1, Offset: p.share.first}
}

// discardMarks forgets the marks of an aborted transaction.
func (p *Partition) discardMarks() {
	p.mu.Lock()
	p.tracker().Discard()
	p.mu.Unlock()
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
	g.limits.Learn(ctx, g.cl, recs...)
	for _, r := range recs {
		if err := g.limits.Check(r); err != nil {
			return err // E5: refused now, so the consumer can blame its message
		}
	}
	for _, r := range recs {
		g.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			if err != nil {
				g.txn.fail(round, g.limits.Explain(r, err))
			}
		})
	}
	return g.txn.err()
}
