package offsets

import "sort"

// Window follows the messages of one partition that are processed out of
// order (parallel processing inside a partition). Offsets enter in
// increasing order with Add and finish in any order with Done. Next is the
// committed position the window allows: one past the longest finished
// prefix, so a commit never passes an unfinished message (K2). Finished
// lists what finished above it, for the commit's metadata (K3).
//
// A window can start from a committed record (Restore): the offsets it
// names as finished are reported by Add, and the caller skips them.
//
// The zero value is an empty window with no committed position.
type Window struct {
	offsets []int64 // added and not yet released, increasing
	done    []bool  // done[i] reports whether offsets[i] finished
	next    int64   // one past the finished prefix; -1 before anything is known
	last    int64   // highest offset added, for order checks
	any     bool    // something was added
	started bool    // next is set (by Restore or the first Add)
	// restored are offsets an earlier owner finished above next, not yet
	// reached by Add, increasing.
	restored []int64
}

// Restore starts the window from a committed position and the offsets its
// record names as finished above it. Call it before the first Add.
func (w *Window) Restore(next int64, finished []int64) {
	w.next, w.started = next, true
	w.restored = w.restored[:0]
	for _, o := range finished {
		if o > next && (len(w.restored) == 0 || o > w.restored[len(w.restored)-1]) {
			w.restored = append(w.restored, o)
		}
	}
}

// Add registers offset as delivered. Offsets must increase: ok is false (and
// the offset ignored) otherwise. skip reports that the offset already
// finished under an earlier owner (see Restore): it counts as done, and the
// caller must not process it again.
func (w *Window) Add(offset int64) (skip, ok bool) {
	if w.any && offset <= w.last {
		return false, false
	}
	if !w.started {
		w.next, w.started = offset, true
	}
	for len(w.restored) > 0 && w.restored[0] < offset {
		w.restored = w.restored[1:] // never delivered (compacted away)
	}
	if len(w.restored) > 0 && w.restored[0] == offset {
		w.restored = w.restored[1:]
		skip = true
	}
	if w.started && offset < w.next { // finished before it arrived (MarkAhead)
		w.last, w.any = offset, true
		return true, true
	}
	w.offsets = append(w.offsets, offset)
	w.done = append(w.done, false)
	w.last, w.any = offset, true
	if skip {
		w.Done(offset)
	}
	return skip, true
}

// Done records that offset finished. It returns the new committed position
// (one past the newest offset of the finished prefix) and true when the
// prefix grew. Unknown and repeated offsets change nothing.
func (w *Window) Done(offset int64) (next int64, advanced bool) {
	i := sort.Search(len(w.offsets), func(i int) bool { return w.offsets[i] >= offset })
	if i == len(w.offsets) || w.offsets[i] != offset || w.done[i] {
		return 0, false
	}
	w.done[i] = true
	if i > 0 {
		return 0, false
	}
	n := 0
	for n < len(w.done) && w.done[n] {
		n++
	}
	w.next = w.offsets[n-1] + 1
	w.offsets = w.offsets[n:]
	w.done = w.done[n:]
	if len(w.offsets) == 0 {
		w.offsets, w.done = w.offsets[:0:0], w.done[:0:0]
	}
	return w.next, true
}

// MarkAhead records that offset finished before it was added (a message
// marked before its delivery): it counts as finished at once — in Next when
// nothing unfinished is below it, else in Finished — and Add reports it as
// skip when it arrives. It reports false, changing nothing, when offset was
// added already (use Done) or the window has no position yet.
func (w *Window) MarkAhead(offset int64) bool {
	if !w.started || w.next < 0 || (w.any && offset <= w.last) || offset < w.next {
		return false
	}
	if len(w.offsets) == 0 && offset == w.next {
		w.next++
		for len(w.restored) > 0 && w.restored[0] <= w.next {
			if w.restored[0] == w.next {
				w.next++
			}
			w.restored = w.restored[1:]
		}
		return true
	}
	i := sort.Search(len(w.restored), func(i int) bool { return w.restored[i] >= offset })
	if i == len(w.restored) || w.restored[i] != offset {
		w.restored = append(w.restored, 0)
		copy(w.restored[i+1:], w.restored[i:])
		w.restored[i] = offset
	}
	return true
}

// IsDone reports whether offset finished: below the committed position, or
// finished above it.
func (w *Window) IsDone(offset int64) bool {
	if w.started && offset < w.next {
		return true
	}
	i := sort.Search(len(w.offsets), func(i int) bool { return w.offsets[i] >= offset })
	if i < len(w.offsets) && w.offsets[i] == offset {
		return w.done[i]
	}
	j := sort.Search(len(w.restored), func(j int) bool { return w.restored[j] >= offset })
	return j < len(w.restored) && w.restored[j] == offset
}

// Next is the committed position the window allows: every offset below it
// finished. It is -1 before anything was added or restored.
func (w *Window) Next() int64 {
	if !w.started {
		return -1
	}
	return w.next
}

// Finished returns the offsets above Next that finished, increasing,
// including those restored and not yet reached.
func (w *Window) Finished() []int64 {
	var out []int64
	for i, d := range w.done {
		if d {
			out = append(out, w.offsets[i])
		}
	}
	return append(out, w.restored...)
}

// Last is the highest offset added, or -1 before the first Add.
func (w *Window) Last() int64 {
	if !w.any {
		return -1
	}
	return w.last
}

// Len is the number of offsets added and not yet released: in flight, or
// finished above an unfinished one.
func (w *Window) Len() int { return len(w.offsets) }

// SpanWith is how far the window reaches past the committed position once
// offset is added: the number of offsets a record describing it may have to
// cover (see MaxSpan). Restored offsets not yet reached count too.
func (w *Window) SpanWith(offset int64) int64 {
	top := offset
	if w.any && w.last > top {
		top = w.last
	}
	if n := len(w.restored); n > 0 && w.restored[n-1] > top {
		top = w.restored[n-1]
	}
	if !w.started {
		return 1
	}
	if top < w.next {
		return 0
	}
	return top - w.next + 1
}
