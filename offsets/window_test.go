package offsets

import (
	"slices"
	"testing"
)

// K2: the committed position is one past the longest finished prefix.
func TestWindow(t *testing.T) {
	type done struct {
		offset   int64
		next     int64
		advanced bool
	}
	tests := []struct {
		name     string
		add      []int64
		done     []done
		left     int
		finished []int64
	}{
		{
			name: "in order",
			add:  []int64{0, 1, 2},
			done: []done{{0, 1, true}, {1, 2, true}, {2, 3, true}},
		},
		{
			name: "out of order waits for the oldest",
			add:  []int64{0, 1, 2, 3},
			done: []done{{2, 0, false}, {1, 0, false}, {0, 3, true}, {3, 4, true}},
		},
		{
			name: "gaps in offsets (compaction, transaction markers)",
			add:  []int64{5, 6, 8, 9},
			done: []done{{6, 0, false}, {5, 7, true}, {9, 0, false}, {8, 10, true}},
		},
		{
			name:     "unknown and repeated offsets change nothing",
			add:      []int64{10, 11},
			done:     []done{{12, 0, false}, {11, 0, false}, {11, 0, false}, {7, 0, false}},
			left:     2,
			finished: []int64{11},
		},
		{
			name:     "one slow message holds the committed position",
			add:      []int64{0, 1, 2, 3, 4},
			done:     []done{{1, 0, false}, {3, 0, false}, {4, 0, false}},
			left:     5,
			finished: []int64{1, 3, 4},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w Window
			for _, o := range tt.add {
				if skip, ok := w.Add(o); !ok || skip {
					t.Fatalf("Add(%d) = %v, %v", o, skip, ok)
				}
			}
			for i, d := range tt.done {
				next, adv := w.Done(d.offset)
				if adv != d.advanced || (adv && next != d.next) {
					t.Errorf("step %d Done(%d) = %d, %v; want %d, %v", i, d.offset, next, adv, d.next, d.advanced)
				}
			}
			if w.Len() != tt.left {
				t.Errorf("Len = %d, want %d", w.Len(), tt.left)
			}
			if got := w.Finished(); !slices.Equal(got, tt.finished) {
				t.Errorf("Finished = %v, want %v", got, tt.finished)
			}
		})
	}
}

func TestWindowRejectsNonIncreasing(t *testing.T) {
	var w Window
	w.Add(5)
	if _, ok := w.Add(5); ok {
		t.Fatal("Add accepted a repeated offset")
	}
	if _, ok := w.Add(3); ok {
		t.Fatal("Add accepted an older offset")
	}
	if w.Len() != 1 {
		t.Fatalf("Len = %d, want 1", w.Len())
	}
}

// K3: offsets a previous owner finished are skipped and stay recorded until
// the committed position passes them.
func TestWindowRestore(t *testing.T) {
	var w Window
	w.Restore(100, []int64{102, 103, 107, 120})
	if w.Next() != 100 {
		t.Fatalf("Next = %d, want 100", w.Next())
	}
	var skipped []int64
	for _, o := range []int64{100, 101, 102, 103, 104, 105, 108} { // 106, 107 compacted away
		skip, ok := w.Add(o)
		if !ok {
			t.Fatalf("Add(%d) refused", o)
		}
		if skip {
			skipped = append(skipped, o)
		}
	}
	if want := []int64{102, 103}; !slices.Equal(skipped, want) {
		t.Fatalf("skipped %v, want %v", skipped, want)
	}
	if got, want := w.Finished(), []int64{102, 103, 120}; !slices.Equal(got, want) {
		t.Fatalf("Finished = %v, want %v (107 was never delivered, 120 not reached yet)", got, want)
	}
	if w.SpanWith(109) != 21 {
		t.Fatalf("SpanWith(109) = %d, want 21: the restored 120 counts", w.SpanWith(109))
	}
	w.Done(101)
	if next, adv := w.Done(100); !adv || next != 104 {
		t.Fatalf("Done(100) = %d, %v; want 104 (102 and 103 were restored as finished)", next, adv)
	}
	if !w.IsDone(103) || !w.IsDone(120) || w.IsDone(104) || w.IsDone(121) {
		t.Fatal("IsDone disagrees with the window")
	}
}

func TestWindowNextBeforeAnything(t *testing.T) {
	var w Window
	if w.Next() != -1 {
		t.Fatalf("Next = %d, want -1", w.Next())
	}
	w.Add(42)
	if w.Next() != 42 {
		t.Fatalf("Next = %d, want 42: nothing below the first delivered offset is outstanding", w.Next())
	}
}

// K7, M2: an offset marked before it was added counts as finished: at once
// in Next when nothing unfinished is below it, else in Finished; Add reports
// it as skip when it arrives.
func TestWindowMarkAhead(t *testing.T) {
	var w Window
	w.Restore(10, []int64{12})
	if !w.MarkAhead(10) || w.Next() != 11 {
		t.Fatalf("MarkAhead(10) on an empty window at 10: Next = %d, want 11", w.Next())
	}
	if !w.MarkAhead(11) || w.Next() != 13 { // 12 finished under an earlier owner
		t.Fatalf("MarkAhead(11): Next = %d, want 13", w.Next())
	}
	for _, o := range []int64{10, 11, 12} {
		if skip, ok := w.Add(o); !skip || !ok {
			t.Fatalf("Add(%d) = %v, %v; want skip", o, skip, ok)
		}
	}
	if skip, _ := w.Add(13); skip {
		t.Fatal("Add(13) skipped a message nobody marked")
	}
	if !w.MarkAhead(15) || !w.MarkAhead(15) {
		t.Fatal("MarkAhead(15) refused")
	}
	if w.MarkAhead(13) {
		t.Fatal("MarkAhead(13), an added offset, = true; want false (Done)")
	}
	if got := w.Finished(); !slices.Equal(got, []int64{15}) {
		t.Fatalf("Finished = %v, want [15]", got)
	}
	if skip, _ := w.Add(14); skip {
		t.Fatal("Add(14) skipped")
	}
	if skip, _ := w.Add(15); !skip {
		t.Fatal("Add(15) not skipped")
	}
	w.Done(13)
	w.Done(14)
	if w.Next() != 16 {
		t.Fatalf("Next = %d, want 16", w.Next())
	}
	var empty Window
	if empty.MarkAhead(3) {
		t.Fatal("MarkAhead on a window without a position = true")
	}
}
