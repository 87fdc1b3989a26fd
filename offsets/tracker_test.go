package offsets

import "testing"

// step is one operation on a Tracker in a table test.
type step struct {
	op     string // "mark", "start", "ack", "discard", "seek", "seek-only"
	offset int64
	meta   string
	// expectations after the step
	changed   bool
	resume    int64
	pending   int64 // -1 when nothing is pending
	committed int64
}

func TestTracker(t *testing.T) {
	none := Mark{Offset: -1, Epoch: -1}
	tests := []struct {
		name      string
		committed Mark
		steps     []step
	}{
		{
			name:      "marks raise the stored offset and the resume point",
			committed: none,
			steps: []step{
				{op: "start", offset: 0, resume: 0, pending: -1, committed: -1},
				{op: "mark", offset: 10, changed: true, resume: 10, pending: 10, committed: -1},
				{op: "mark", offset: 20, changed: true, resume: 20, pending: 20, committed: -1},
				{op: "ack", offset: 20, resume: 20, pending: -1, committed: 20},
			},
		},
		{
			// M6: an older mark moves the resume point back, never the commit.
			name:      "older mark rewinds resume only",
			committed: Mark{Offset: 5, Epoch: 0},
			steps: []step{
				{op: "mark", offset: 51, changed: true, resume: 51, pending: 51, committed: 5},
				{op: "mark", offset: 31, changed: true, resume: 31, pending: 51, committed: 5},
				{op: "ack", offset: 51, resume: 31, pending: -1, committed: 51},
				{op: "mark", offset: 40, changed: true, resume: 40, pending: -1, committed: 51},
			},
		},
		{
			// M6: re-marking the same offset is a no-op.
			name:      "re-mark is a no-op",
			committed: none,
			steps: []step{
				{op: "mark", offset: 7, changed: true, resume: 7, pending: 7, committed: -1},
				{op: "mark", offset: 7, meta: "other", changed: false, resume: 7, pending: 7, committed: -1},
			},
		},
		{
			name:      "start only sets the first resume point",
			committed: Mark{Offset: 100, Epoch: 2},
			steps: []step{
				{op: "start", offset: 100, resume: 100, pending: -1, committed: 100},
				{op: "start", offset: 150, resume: 100, pending: -1, committed: 100},
				{op: "mark", offset: 120, changed: true, resume: 120, pending: 120, committed: 100},
			},
		},
		{
			name:      "stale acknowledgement is ignored",
			committed: none,
			steps: []step{
				{op: "mark", offset: 30, changed: true, resume: 30, pending: 30, committed: -1},
				{op: "ack", offset: 30, resume: 30, pending: -1, committed: 30},
				{op: "ack", offset: 10, resume: 30, pending: -1, committed: 30},
			},
		},
		{
			// An aborted transaction's marks are forgotten; committed ones stay.
			name:      "discard drops unacknowledged marks",
			committed: Mark{Offset: 10, Epoch: 0},
			steps: []step{
				{op: "start", offset: 10, resume: 10, pending: -1, committed: 10},
				{op: "mark", offset: 20, changed: true, resume: 20, pending: 20, committed: 10},
				{op: "ack", offset: 20, resume: 20, pending: -1, committed: 20},
				{op: "mark", offset: 35, changed: true, resume: 35, pending: 35, committed: 20},
				{op: "discard", resume: -1, pending: -1, committed: 20},
				{op: "start", offset: 20, resume: 20, pending: -1, committed: 20},
				{op: "mark", offset: 25, changed: true, resume: 25, pending: 25, committed: 20},
			},
		},
		{
			name:      "a mark below the committed offset is not pending",
			committed: Mark{Offset: 50, Epoch: 0},
			steps: []step{
				{op: "mark", offset: 40, changed: true, resume: 40, pending: -1, committed: 50},
			},
		},
		{
			// O5: an operator's seek backwards is committed, the one way
			// the committed offset moves back; later marks go on from it.
			name:      "seek backwards is committed",
			committed: Mark{Offset: 50, Epoch: 0},
			steps: []step{
				{op: "mark", offset: 60, changed: true, resume: 60, pending: 60, committed: 50},
				{op: "seek", offset: 20, resume: 20, pending: 20, committed: 50},
				{op: "ack", offset: 60, resume: 20, pending: 20, committed: 60}, // an older commit's answer
				{op: "mark", offset: 25, changed: true, resume: 25, pending: 25, committed: 60},
				{op: "ack", offset: 25, resume: 25, pending: -1, committed: 25},
				{op: "mark", offset: 30, changed: true, resume: 30, pending: 30, committed: 25},
			},
		},
		{
			// O5: a seek forwards skips; without commit (manual offsets)
			// only the resume point moves.
			name:      "seek without commit moves the resume point only",
			committed: Mark{Offset: 50, Epoch: 0},
			steps: []step{
				{op: "seek-only", offset: 80, resume: 80, pending: -1, committed: 50},
				{op: "seek-only", offset: 10, resume: 10, pending: -1, committed: 50},
				{op: "seek", offset: 90, resume: 90, pending: 90, committed: 50},
				{op: "discard", resume: -1, pending: -1, committed: 50},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := New(tt.committed)
			for i, s := range tt.steps {
				var changed bool
				switch s.op {
				case "mark":
					changed = tr.Mark(Mark{Offset: s.offset, Epoch: 1, Metadata: s.meta})
				case "start":
					tr.Start(s.offset)
				case "ack":
					tr.Acknowledge(Mark{Offset: s.offset, Epoch: 1})
				case "discard":
					tr.Discard()
				case "seek", "seek-only":
					tr.Seek(Mark{Offset: s.offset, Epoch: -1}, s.op == "seek")
				}
				if changed != s.changed {
					t.Errorf("step %d %s(%d): changed = %v, want %v", i, s.op, s.offset, changed, s.changed)
				}
				if got := tr.Resume(); got != s.resume {
					t.Errorf("step %d %s(%d): resume = %d, want %d", i, s.op, s.offset, got, s.resume)
				}
				p, ok := tr.Pending()
				gotPending := int64(-1)
				if ok {
					gotPending = p.Offset
				}
				if gotPending != s.pending {
					t.Errorf("step %d %s(%d): pending = %d, want %d", i, s.op, s.offset, gotPending, s.pending)
				}
				if got := tr.Committed().Offset; got != s.committed {
					t.Errorf("step %d %s(%d): committed = %d, want %d", i, s.op, s.offset, got, s.committed)
				}
			}
		})
	}
}

// M8: the metadata of the highest mark is what is committed.
func TestTrackerMetadataFollowsStoredMark(t *testing.T) {
	tr := New(Mark{Offset: -1, Epoch: -1})
	tr.Mark(Mark{Offset: 10, Metadata: "ten"})
	tr.Mark(Mark{Offset: 5, Metadata: "five"})
	p, ok := tr.Pending()
	if !ok || p.Offset != 10 || p.Metadata != "ten" {
		t.Fatalf("pending = %+v, %v; want offset 10 with metadata ten", p, ok)
	}
}

func BenchmarkTrackerMark(b *testing.B) {
	tr := New(Mark{Offset: -1, Epoch: -1})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tr.Mark(Mark{Offset: int64(i) + 1, Epoch: 0})
	}
}
