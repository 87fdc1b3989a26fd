package engine

// Retry: what happens to a batch that failed (A5, E1): blaming the message,
// dead-lettering it after MaxRetries, seeking back to the first unmarked
// offset and waiting out the backoff. A sequential partition rewinds
// (sequential.go); a parallel one retries per lane, in memory
// (parallel.go); an exactly-once one aborts its round (txn.go).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// failure is a batch to retry after the backoff.
type failure struct {
	err    error
	batch  []*kgo.Record
	resume int64
	// skipped: the failing message was dead-lettered; continue right
	// after it without a backoff.
	skipped bool
}

// namedIndex returns the index in batch of the message a *MessageError in
// err names, or -1.
func namedIndex(batch []*kgo.Record, err error) int {
	var me *MessageError
	if errors.As(err, &me) && me.Message != nil {
		for i, r := range batch {
			if r == me.Message || r.Offset == me.Message.Offset {
				return i
			}
		}
	}
	return -1
}

// failedRecord finds the message a failed batch is blamed on: the one a
// *MessageError names (the messages before it are marked as processed), else
// the first unmarked message, if it is in the batch.
func (p *Partition) failedRecord(batch []*kgo.Record, err error) *kgo.Record {
	if i := namedIndex(batch, err); i >= 0 {
		if i > 0 {
			p.Mark(batch[i-1], "")
		}
		return batch[i]
	}
	resume := p.resume()
	for _, r := range batch {
		if r.Offset == resume {
			return r
		}
	}
	return nil
}

// deadLetter dispatches a message that failed for good and marks it (E1).
// A failed dispatch leaves it unmarked, to be retried (E4).
func (p *Partition) deadLetter(r *kgo.Record, cause error, attempts int) bool {
	if !p.sendDeadLetter(r, cause, attempts) {
		return false
	}
	p.Mark(r, "")
	return true
}

// sendDeadLetter dispatches a message that failed for good, without marking
// it. It reports whether the dead-letter topic has it.
func (p *Partition) sendDeadLetter(r *kgo.Record, cause error, attempts int) bool {
	if err := p.dispatch(p.ctx, r, cause, attempts); err != nil {
		p.log.Error("ferry: dead-letter dispatch failed; the message stays unmarked and is retried",
			"offset", r.Offset, "dead_letter_topic", p.topic.DeadLetterTopic, "err", err)
		return false
	}
	p.deadLettered(r, cause, attempts)
	p.log.Warn("ferry: message dead-lettered after its last attempt",
		append([]any{"offset", r.Offset, "attempts", attempts, "dead_letter_topic", p.topic.DeadLetterTopic}, errAttrs(cause)...)...)
	return true
}

// DeadLetter sends r to the topic's dead-letter topic on the consumer's
// behalf (E2). It does not mark r.
func (p *Partition) DeadLetter(ctx context.Context, r *kgo.Record, cause error) error {
	if p.topic.DeadLetterRecord == nil {
		return ErrNoDeadLetter
	}
	attempt := p.attemptOf(r)
	if err := p.dispatch(ctx, r, cause, attempt); err != nil {
		return err
	}
	p.deadLettered(r, cause, attempt)
	return nil
}

// dispatch produces the dead letter for r and waits for it: inside the
// transaction in an exactly-once group (E1), else through the app's producer.
//
// A dead letter larger than the dead-letter topic accepts can never be
// produced as it is (E5): ferry then parks a reference to the message — the
// dead letter without its value, or if that is still too large, ferry's
// headers alone — with HeaderOmitted saying what was left out. The message
// itself stays in its topic at the offset the headers name.
func (p *Partition) dispatch(ctx context.Context, r *kgo.Record, cause error, attempts int) error {
	out := p.topic.DeadLetterRecord(r, cause, attempts)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := p.produceOne(ctx, out)
	if !errors.Is(err, ErrMessageTooLarge) {
		return err
	}
	p.log.Error("ferry: dead letter larger than its topic accepts; parking a reference to the message, without its value",
		"offset", r.Offset, "dead_letter_topic", out.Topic, "err", err)
	ref := *out
	ref.Value = nil
	ref.Headers = append(append([]kgo.RecordHeader(nil), out.Headers...),
		kgo.RecordHeader{Key: HeaderOmitted, Value: []byte(fmt.Sprintf("value (%d bytes)", len(r.Value)))})
	if err = p.produceOne(ctx, &ref); !errors.Is(err, ErrMessageTooLarge) {
		return err
	}
	ref.Key = nil
	ref.Headers = append(ownHeaders(out.Headers, len(r.Headers)),
		kgo.RecordHeader{Key: HeaderOmitted, Value: []byte(fmt.Sprintf("key (%d bytes), value (%d bytes), headers (%d)", len(r.Key), len(r.Value), len(r.Headers)))})
	return p.produceOne(ctx, &ref)
}

// HeaderOmitted is the header of a dead letter that had to leave parts of
// the message out to fit its topic (E5): it says which, and their sizes.
const HeaderOmitted = "ferry-omitted"

// ownHeaders returns the headers ferry added to a dead letter: those after
// the original message's n headers.
func ownHeaders(h []kgo.RecordHeader, n int) []kgo.RecordHeader {
	if n > len(h) {
		n = len(h)
	}
	return append([]kgo.RecordHeader(nil), h[n:]...)
}

// rewind handles a failed batch of a sequential partition (A5): the
// partition stops fetching, forgets what it queued and asks the poll loop to
// seek back to f.resume. failures is the count of failed attempts in a row,
// for the backoff. It returns the backoff to wait out (waitBackoff) before
// fetching again, and false when there is none to wait: the failing message
// was dead-lettered.
func (p *Partition) rewind(f *failure, failures int) (time.Duration, bool) {
	var delay time.Duration
	if !f.skipped {
		delay = p.topic.Backoff(failures)
	}
	p.mu.Lock()
	p.clearQueueLocked()
	p.pausedRetry = delay > 0
	p.syncPauseLocked()
	if p.state == owned {
		p.seek = f.resume
	}
	news := p.newsLocked()
	p.mu.Unlock()
	p.tell(news)
	p.g.wantSeek()
	if f.skipped {
		return 0, false
	}
	p.log.Error("ferry: consume failed; retrying after backoff",
		append([]any{"attempt", failures, "first_offset", f.batch[0].Offset, "last_offset", f.batch[len(f.batch)-1].Offset,
			"resume_offset", f.resume, "backoff", delay}, errAttrs(f.err)...)...)
	p.retryScheduled(f.resume, delay)
	p.pausedForRetry()
	return delay, true
}

// waitBackoff waits out a retry backoff (or the partition stopping), then
// lets the partition fetch again.
func (p *Partition) waitBackoff(delay time.Duration) {
	after := p.g.clock.After(delay)
wait:
	for {
		select {
		case <-after:
			break wait
		case <-p.stop:
			break wait
		case <-p.seekWake:
			if p.seekPending() {
				break wait // O5: the seek replaces the retry
			}
		}
	}
	p.mu.Lock()
	p.pausedRetry = false
	p.syncPauseLocked()
	p.mu.Unlock()
	p.resumedAfterRetry()
}
