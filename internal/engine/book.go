package engine

// A partition's offset bookkeeping — what its marks stored, what a commit
// sends, what Kafka acknowledged — is an offsetBook, chosen once when the
// partition is created: a trackerBook for a sequential partition, a
// windowBook for a parallel one. Marks, commits, the committed offset an
// assignment starts from, MarkSync's check, an operator's seek and Stats
// ask the book; they do not care which kind it is.

import (
	"github.com/ferrykit/ferry/offsets"
	"github.com/twmb/franz-go/pkg/kgo"
)

// offsetBook is a partition's offsets for one assignment. It is guarded by
// Partition.mu: every method is called with it held.
type offsetBook interface {
	// mark records the consumer's mark of r with metadata (M2, K7).
	mark(r *kgo.Record, metadata string) error
	// pending returns the mark a commit should send, and false when Kafka
	// has it already.
	pending() (offsets.Mark, bool)
	// stored returns the newest position to send again when only the
	// coordinator's answer is wanted (M3); its offset is -1 when there is
	// none yet.
	stored() offsets.Mark
	// committed returns what Kafka acknowledged last.
	committed() offsets.Mark
	// acknowledge records that Kafka accepted a commit of m.
	acknowledge(m offsets.Mark)
	// covered reports whether the acknowledged commit holds offset as
	// processed, for MarkSync (M3, K7).
	covered(offset int64) bool
	// restore starts from the group's committed position m. It returns the
	// user's part of m's metadata (M8), and the error that made a record of
	// finished messages in it unreadable (K3).
	restore(m offsets.Mark) (string, error)
	// begin stores a start position as if marked, so the next commit sends
	// it (A8).
	begin(m offsets.Mark)
	// seek moves the partition to offset for an operator, to be committed
	// even backwards (O5), and returns where fetching resumes.
	seek(offset int64) int64
	// recordFull reports whether admission waits because the record of
	// finished messages would not fit in the commit metadata (K4).
	recordFull() bool
}

// newOffsetBook returns the book of a new partition, parallel or not.
func newOffsetBook(parallel bool) offsetBook {
	none := offsets.Mark{Offset: -1, Epoch: -1}
	if parallel {
		return &windowBook{epoch: -1, acked: none}
	}
	return &trackerBook{t: offsets.New(none)}
}

// trackerBook is a sequential partition's book: an offsets.Tracker, whose
// stored mark is the newest mark and whose resume point a mark moves, even
// backwards (M6). The resume point, where delivery starts and what an
// aborted transaction discards have no parallel counterpart (lanes retry on
// their own; Parallel excludes exactly-once): the sequential paths use the
// tracker itself, through Partition.tracker.
type trackerBook struct {
	t *offsets.Tracker
}

func (b *trackerBook) mark(r *kgo.Record, metadata string) error {
	b.t.Mark(offsets.Mark{Offset: r.Offset + 1, Epoch: r.LeaderEpoch, Metadata: metadata})
	return nil
}

func (b *trackerBook) pending() (offsets.Mark, bool) { return b.t.Pending() }
func (b *trackerBook) stored() offsets.Mark          { return b.t.Stored() }
func (b *trackerBook) committed() offsets.Mark       { return b.t.Committed() }
func (b *trackerBook) acknowledge(m offsets.Mark)    { b.t.Acknowledge(m) }
func (b *trackerBook) begin(m offsets.Mark)          { b.t.Mark(m) }
func (b *trackerBook) recordFull() bool              { return false }

// covered is true: once MarkSync's commit succeeded, Kafka has the stored
// mark, which never goes back below the one MarkSync made (M6).
func (b *trackerBook) covered(int64) bool { return true }

func (b *trackerBook) restore(m offsets.Mark) (string, error) {
	b.t.Acknowledge(m)
	return m.Metadata, nil
}

func (b *trackerBook) seek(offset int64) int64 {
	b.t.Seek(offsets.Mark{Offset: offset, Epoch: -1}, true)
	return offset
}

// tracker returns a sequential partition's tracker, for what only a
// sequential partition has: a resume point (retries, exactly-once rounds)
// and marks an aborted transaction discards.
func (p *Partition) tracker() *offsets.Tracker { return p.book.(*trackerBook).t }

// windowBook is a parallel partition's book: an offsets.Window of the
// messages finished, out of order; a commit sends one past the finished
// prefix and records the rest in its metadata (K2, K3). It also holds the
// parallel policy's state that others read under Partition.mu: whether
// admission waits for room in that record, and the attempts of retried
// units.
type windowBook struct {
	window offsets.Window
	user   string       // the user's metadata, from the newest mark or the committed record
	fitted string       // the newest user's metadata known to leave room for the record (metadata)
	epoch  int32        // leader epoch of a message below the committed position
	acked  offsets.Mark // what Kafka acknowledged, with its full metadata
	wide   bool         // admission waits: a wider record might not fit (K4)
	moved  bool         // an operator's seek is to be committed, even backwards (O5)
	// retried holds the messages of running units past their first
	// attempt, with that attempt (Claim.DeadLetter's count); a message
	// missing from it runs its first.
	retried map[int64]int
}

// windowBook returns a parallel partition's book, for the parallel
// policy's own use (parallel.go).
func (p *Partition) windowBook() *windowBook { return p.book.(*windowBook) }

// pending returns one past the finished prefix, with what finished above it
// in the metadata.
func (b *windowBook) pending() (offsets.Mark, bool) {
	next := b.window.Next()
	if next < 0 {
		return offsets.Mark{}, false
	}
	md := b.metadata(next)
	m := offsets.Mark{Offset: next, Epoch: b.epoch, Metadata: md}
	c := b.acked
	return m, b.moved || next > c.Offset || (next == c.Offset && md != c.Metadata)
}

// metadata returns the metadata of a commit at next: the user's and the
// record of what finished above next. Finished work is never dropped from
// the record (K3): when the user's newest metadata leaves it no room — it
// grew after the messages in the window were admitted, with room for the
// shorter one — the commit keeps the newest user's metadata known to fit
// (else none) until the record shrinks, and admission waits meanwhile
// (K4). Only user metadata too long for Kafka on its own goes as it is; the
// broker refuses it and the commit error is logged.
func (b *windowBook) metadata(next int64) string {
	finished := b.window.Finished()
	md, err := offsets.EncodeMetadata(b.user, next, finished)
	if err == nil {
		b.fitted = b.user
		return md
	}
	for _, user := range []string{b.fitted, ""} {
		if md, err := offsets.EncodeMetadata(user, next, finished); err == nil {
			return md
		}
	}
	return b.user
}

// stored is the pending mark, or the committed position while the window
// has not started.
func (b *windowBook) stored() offsets.Mark {
	if b.window.Next() < 0 {
		return b.acked
	}
	m, _ := b.pending()
	return m
}

func (b *windowBook) committed() offsets.Mark { return b.acked }
func (b *windowBook) recordFull() bool        { return b.wide }

func (b *windowBook) acknowledge(m offsets.Mark) {
	if m.Offset >= b.acked.Offset || b.moved {
		b.acked, b.moved = m, false
	}
}

// done records that r finished.
func (b *windowBook) done(r *kgo.Record) {
	if _, advanced := b.window.Done(r.Offset); advanced {
		b.epoch = r.LeaderEpoch
	}
}

// mark records a mark of r (K7). A message not delivered yet counts as
// finished at once and is skipped when it arrives, as a sequential
// partition's mark moves its position past it (M2) — unless it lies further
// ahead than the record of finished messages can describe (K4). The
// metadata of the newest mark accepted is the user's part of the next
// commit's.
func (b *windowBook) mark(r *kgo.Record, metadata string) error {
	w := &b.window
	switch {
	case w.IsDone(r.Offset) || w.Len() > 0 && r.Offset <= w.Last():
		b.done(r) // delivered (or never will be: a gap)
	case w.SpanWith(r.Offset) > offsets.MaxSpan(b.user) || !w.MarkAhead(r.Offset):
		return ErrMarkTooFarAhead
	}
	b.user = metadata
	if w.SpanWith(r.Offset) <= offsets.MaxSpan(metadata) {
		b.fitted = metadata // the window's record is sure to fit beside it
	}
	return nil
}

// covered reports whether the acknowledged commit records offset as done:
// below the committed offset or in its record (K7).
func (b *windowBook) covered(offset int64) bool {
	c := b.acked
	if offset < c.Offset {
		return true
	}
	_, finished, err := offsets.DecodeMetadata(c.Metadata, c.Offset)
	if err != nil {
		return false
	}
	for _, o := range finished {
		if o == offset {
			return true
		}
	}
	return false
}

// restore starts the window from the committed position and the record in
// its metadata (K3).
func (b *windowBook) restore(m offsets.Mark) (string, error) {
	user, finished, err := offsets.DecodeMetadata(m.Metadata, m.Offset)
	b.window.Restore(m.Offset, finished)
	b.user, b.fitted = user, user
	b.acked = m
	return user, err
}

// begin starts the window at m, which is not committed yet. A start has
// no metadata, so no record of finished messages.
func (b *windowBook) begin(m offsets.Mark) {
	b.window.Restore(m.Offset, nil)
	b.user, b.fitted = "", ""
	b.acked = offsets.Mark{Offset: -1, Epoch: -1}
}

// seek restarts the window at offset. Forwards, what finished from there on
// stays finished (K3): the position moves past a finished run. Backwards,
// everything from it is processed again. The caller ends a wait for room
// in the record first.
func (b *windowBook) seek(offset int64) int64 {
	next, finished := offset, []int64(nil)
	if at := b.window.Next(); at >= 0 && offset > at {
		finished = b.window.Finished()
		for len(finished) > 0 && finished[0] <= next {
			if finished[0] == next {
				next++
			}
			finished = finished[1:]
		}
	}
	b.window = offsets.Window{}
	b.window.Restore(next, finished)
	b.epoch, b.retried, b.moved = -1, nil, true
	return next
}
