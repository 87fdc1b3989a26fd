package offsets

import "testing"

func TestWindow(t *testing.T) {
	type done struct {
		offset   int64
		next     int64
		advanced bool
	}
	tests := []struct {
		name string
		add  []int64
		done []done
		left int
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
			name: "unknown and repeated offsets change nothing",
			add:  []int64{10, 11},
			done: []done{{12, 0, false}, {11, 0, false}, {11, 0, false}, {7, 0, false}},
			left: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w Window
			for _, o := range tt.add {
				if !w.Add(o) {
					t.Fatalf("Add(%d) = false", o)
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
		})
	}
}

func TestWindowRejectsNonIncreasing(t *testing.T) {
	var w Window
	w.Add(5)
	if w.Add(5) || w.Add(3) {
		t.Fatal("Add accepted a non-increasing offset")
	}
	if w.Len() != 1 {
		t.Fatalf("Len = %d, want 1", w.Len())
	}
}
