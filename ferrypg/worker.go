package ferrypg

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/ferrykit/ferry"
	"github.com/jackc/pgx/v5"
)

// worker is the consumer of one partition for one assignment.
type worker struct {
	r     *route
	claim *ferry.Claim
	token int64 // read once, when built: a later assignment's bump fences this one
	next  int64 // the stored next offset as far as this worker knows; -1 for none
	// unsure: a commit failed without telling whether it landed; the row
	// is read again before the next batch.
	unsure bool
}

func (r *route) newConsumer(claim *ferry.Claim) ferry.Consumer {
	o, ok := r.owner(claim.Partition())
	if !ok {
		// Not claimed in the database (the assignment ended before it
		// was): any write is fenced.
		o = owner{token: -1, next: -1}
	}
	return &worker{r: r, claim: claim, token: o.token, next: o.next}
}

// Consume commits the batch's effects and offset in one transaction (D1).
func (w *worker) Consume(ctx context.Context, b *ferry.Batch) error {
	if w.unsure {
		o, err := w.r.read(ctx, b.Partition)
		if err != nil {
			return fmt.Errorf("ferrypg: reading the stored offset after a failed commit: %w", err)
		}
		if o.token != w.token {
			return fmt.Errorf("%w: %w", ferry.ErrNotOwned, errFenced)
		}
		w.next, w.unsure = o.next, false
	}
	recs := b.Messages
	skip := 0
	for skip < len(recs) && recs[skip].Offset < w.next {
		skip++
	}
	if skip > 0 {
		// Already in the database (a commit whose answer was lost):
		// Kafka only needs to hear of it.
		w.claim.MarkAsConsumed(recs[skip-1])
		recs = recs[skip:]
	}
	attempt := b.Attempt
	for len(recs) > 0 {
		err := w.commit(ctx, b, recs, attempt)
		if err == nil {
			return nil
		}
		if errors.Is(err, ferry.ErrNotOwned) {
			return err
		}
		i := failedIndex(recs, err)
		if i > 0 {
			// The handler blamed recs[i]: what precedes it commits on
			// its own, and the retry starts at recs[i].
			if perr := w.commit(ctx, b, recs[:i], attempt); perr != nil {
				return plain(perr)
			}
			return plain(err)
		}
		if w.r.cfg.deadLetter == "" || attempt <= w.r.cfg.maxRetries {
			return plain(err)
		}
		if derr := w.deadLetter(ctx, recs[0], err); derr != nil {
			return derr
		}
		recs, attempt = recs[1:], 1
	}
	return nil
}

// commit runs the handler on recs in a transaction, writes the offset after
// them (or after the handler's mark) under the owner token, commits, and
// then marks the offset in Kafka.
func (w *worker) commit(ctx context.Context, b *ferry.Batch, recs []*ferry.Message, attempt int) error {
	sub := *b
	sub.Messages, sub.Attempt = recs, attempt
	pb := &Batch{Batch: &sub, manual: w.r.cfg.manual}
	tx, err := w.r.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // after Commit: does nothing
	pb.Tx = tx
	if err := handle(ctx, w.r.h, pb); err != nil {
		return err
	}
	next, marked := w.next, pb.marked
	if !w.r.cfg.manual {
		marked = sub.Last()
	}
	if marked != nil {
		next = marked.Offset + 1
	}
	if err := w.r.writeOffset(ctx, tx, b.Partition, w.token, next); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		w.unsure = true
		return fmt.Errorf("ferrypg: commit: %w", err)
	}
	w.next = next
	if marked != nil {
		w.claim.MarkAsConsumed(marked) // Kafka follows the database
	}
	return nil
}

// deadLetter produces msg to the dead-letter topic, waits for the ack, and
// only then moves the offset row past it: the row never skips a message
// whose dead letter was not written.
func (w *worker) deadLetter(ctx context.Context, msg *ferry.Message, cause error) error {
	if err := w.claim.DeadLetter(ctx, msg, cause); err != nil {
		return fmt.Errorf("ferrypg: dead-letter dispatch failed; the message is retried: %w", err)
	}
	err := pgx.BeginFunc(ctx, w.r.db, func(tx pgx.Tx) error {
		return w.r.writeOffset(ctx, tx, msg.Partition, w.token, msg.Offset+1)
	})
	if err != nil {
		if !errors.Is(err, ferry.ErrNotOwned) {
			w.unsure = true
		}
		return err
	}
	w.next = msg.Offset + 1
	w.claim.MarkAsConsumed(msg)
	w.claim.Logger().Warn("ferrypg: message dead-lettered after its last attempt",
		"offset", msg.Offset, "dead_letter_topic", w.r.cfg.deadLetter, "cause", cause)
	return nil
}

// handle calls h, turning a panic into a *ferry.PanicError (A6) so the
// transaction is rolled back and the batch retried like after an error.
func handle(ctx context.Context, h Handler, b *Batch) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &ferry.PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return h(ctx, b)
}

// failedIndex is the index in recs of the message a *ferry.MessageError in
// err names, else 0.
func failedIndex(recs []*ferry.Message, err error) int {
	var me *ferry.MessageError
	if errors.As(err, &me) && me.Message != nil {
		for i, r := range recs {
			if r.Offset == me.Message.Offset {
				return i
			}
		}
	}
	return 0
}

// rolledBack is a batch's failure as ferry's retry sees it: the whole
// transaction was rolled back, so no message of it counts as processed.
type rolledBack struct{ err error }

func (e *rolledBack) Error() string {
	return "ferrypg: transaction rolled back: " + e.err.Error()
}

// plain hides a *ferry.MessageError from ferry, which would otherwise mark
// the messages before the one it names although their transaction rolled
// back. A panic and a fenced partition stay visible.
func plain(err error) error {
	var pe *ferry.PanicError
	if errors.As(err, &pe) || errors.Is(err, ferry.ErrNotOwned) {
		return err
	}
	return &rolledBack{err: err}
}
