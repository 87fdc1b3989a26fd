// Package offsets holds the pure bookkeeping behind ferry's offset management:
// what a consumer has marked, what may be committed, what Kafka already has,
// and where a retry resumes. It does no I/O and takes no locks; the runtime
// owns one Tracker per assigned partition (one Window for a partition
// processed in parallel) and guards it.
//
// Offsets follow Kafka's convention: a mark or commit names the next offset to
// consume, one past the last processed message.
//
// Three positions are kept apart on purpose (contract M6, docs/CONTRACT.md):
//
//   - Resume is where processing continues after a retry. The newest mark sets
//     it, even when that mark is older than an earlier one.
//   - Stored is the highest mark made; it is what the next commit sends. It
//     never moves backwards, so a commit never rewinds the group — unless an
//     operator moves the partition on purpose (Seek).
//   - Committed is what Kafka acknowledged.
//
// A Window tracks messages that finish out of order (parallel processing
// inside one partition): its committed position is one past the longest
// finished prefix, so a commit never passes an unfinished message.
// EncodeMetadata records what finished above that position in the commit's
// metadata, next to the user's own, within Kafka's 4,096-byte limit;
// DecodeMetadata reads it back on the next assignment, and Window.Restore
// lets the new owner skip those messages.
package offsets

// Mark is a position to commit: the next offset to consume, the leader epoch
// of the message it follows (-1 when unknown), and optional metadata that is
// committed with it.
type Mark struct {
	Offset   int64
	Epoch    int32
	Metadata string
}

// Tracker is the offset state of one partition for one assignment.
// The zero value is not ready: use New.
type Tracker struct {
	committed Mark
	stored    Mark
	resume    int64
	// moved: Seek moved the stored mark, possibly below the committed
	// position, and the next commit must send it.
	moved bool
}

// New returns a tracker for a partition whose group-committed position is
// committed (-1 when the group has none).
func New(committed Mark) *Tracker {
	return &Tracker{committed: committed, stored: committed, resume: -1}
}

// Mark records that everything before m.Offset was processed. It moves the
// resume point to m.Offset, even backwards, and raises the stored mark if
// m.Offset is higher. Re-marking the current resume point changes nothing.
// It reports whether anything changed.
func (t *Tracker) Mark(m Mark) bool {
	if m.Offset == t.resume {
		return false
	}
	t.resume = m.Offset
	if m.Offset > t.stored.Offset {
		t.stored = m
	}
	return true
}

// Start tells the tracker where delivery begins when nothing was marked yet:
// a retry before the first mark resumes there. Later calls do nothing.
func (t *Tracker) Start(offset int64) {
	if t.resume < 0 {
		t.resume = offset
	}
}

// Resume is where processing continues after an error: right after the newest
// mark, or the first delivered offset if nothing was marked. It is -1 before
// anything was delivered.
func (t *Tracker) Resume() int64 { return t.resume }

// Pending returns the mark the next commit should send, and false when Kafka
// already has it.
func (t *Tracker) Pending() (Mark, bool) {
	return t.stored, t.moved || t.stored.Offset > t.committed.Offset
}

// Seek moves the partition to m, an operator's decision that overrides the
// marks: processing resumes at m.Offset. With commit, m also replaces the
// stored mark — even below the committed position, the one way a commit
// may go backwards — and Pending reports it until Kafka acknowledged it.
// Without commit (the consumer commits its own marks) only the resume
// point moves.
func (t *Tracker) Seek(m Mark, commit bool) {
	t.resume = m.Offset
	if commit {
		t.stored, t.moved = m, true
	}
}

// Stored returns the highest mark made (or the committed position if none).
func (t *Tracker) Stored() Mark { return t.stored }

// Committed returns the position Kafka acknowledged last.
func (t *Tracker) Committed() Mark { return t.committed }

// Acknowledge records that Kafka accepted a commit of m. An acknowledgement
// older than the current committed position is ignored — unless a Seek is
// pending: then Kafka has m now, and the sought mark is still to be sent
// (or, once m is it, committed, even backwards).
func (t *Tracker) Acknowledge(m Mark) {
	if t.moved {
		t.committed = m
		t.moved = m.Offset != t.stored.Offset
		return
	}
	if m.Offset > t.committed.Offset {
		t.committed = m
	}
	if t.committed.Offset > t.stored.Offset {
		t.stored = t.committed
	}
}

// Discard forgets every mark Kafka has not acknowledged: the stored mark
// falls back to the committed position and nothing is delivered any more.
// An exactly-once runtime calls it when a transaction aborts, since the
// marks made inside it were never committed and their messages come again.
func (t *Tracker) Discard() {
	t.stored, t.moved = t.committed, false
	t.resume = -1
}
