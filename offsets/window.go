package offsets

import "sort"

// Window follows messages of one partition that are processed out of order.
// Offsets enter in increasing order with Add and leave in any order with Done;
// the window reports a new mark only when the oldest outstanding offsets are
// done, so a commit never skips an unfinished message.
//
// The zero value is an empty window.
type Window struct {
	offsets []int64 // outstanding and done offsets, increasing
	done    []bool  // done[i] reports whether offsets[i] finished
	last    int64   // highest offset added, for order checks
	any     bool
}

// Add registers offset as in flight. Offsets must increase; Add reports false
// (and ignores the offset) otherwise.
func (w *Window) Add(offset int64) bool {
	if w.any && offset <= w.last {
		return false
	}
	w.offsets = append(w.offsets, offset)
	w.done = append(w.done, false)
	w.last, w.any = offset, true
	return true
}

// Done records that offset finished. It returns the next offset to consume
// (one past the newest offset of the finished prefix) and true when the
// finished prefix grew, so the caller can mark it. Unknown or repeated
// offsets change nothing.
func (w *Window) Done(offset int64) (next int64, advanced bool) {
	i := sort.Search(len(w.offsets), func(i int) bool { return w.offsets[i] >= offset })
	if i == len(w.offsets) || w.offsets[i] != offset || w.done[i] {
		return 0, false
	}
	w.done[i] = true
	n := 0
	for n < len(w.done) && w.done[n] {
		n++
	}
	if n == 0 {
		return 0, false
	}
	next = w.offsets[n-1] + 1
	w.offsets = w.offsets[n:]
	w.done = w.done[n:]
	if len(w.offsets) == 0 {
		w.offsets, w.done = w.offsets[:0:0], w.done[:0:0]
	}
	return next, true
}

// Len is the number of offsets added and not yet released by Done.
func (w *Window) Len() int { return len(w.offsets) }
