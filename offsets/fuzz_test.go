package offsets

import (
	"slices"
	"testing"
)

// FuzzWindow drives a window with arbitrary finish orders. K2: the
// committed position never passes an unfinished message, and reaches past
// every message once all finished. K3/K4: while the window stays within
// MaxSpan its record fits and decodes to what finished.
func FuzzWindow(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3}, int64(0))
	f.Add([]byte{3, 2, 1, 0, 7, 7, 200}, int64(41))
	f.Add([]byte{255, 0, 128, 9, 9, 9, 1}, int64(1<<33))
	f.Fuzz(func(t *testing.T, script []byte, start int64) {
		if start < 0 || start > 1<<50 {
			return
		}
		var w Window
		var added []int64
		finished := map[int64]bool{}
		o := start
		for _, b := range script {
			if b%4 != 0 || len(added) == 0 { // add, with a gap of b%3
				o += int64(b % 3)
				if _, ok := w.Add(o); !ok {
					t.Fatalf("Add(%d) refused", o)
				}
				added = append(added, o)
				o++
				continue
			}
			done := added[int(b)%len(added)]
			w.Done(done)
			finished[done] = true
			next := w.Next()
			for _, a := range added {
				if a < next && !finished[a] {
					t.Fatalf("committed position %d passes unfinished %d", next, a)
				}
			}
			want := []int64{}
			for _, a := range added {
				if a >= next && finished[a] {
					want = append(want, a)
				}
			}
			if got := w.Finished(); !slices.Equal(append([]int64{}, got...), want) {
				t.Fatalf("Finished = %v, want %v", got, want)
			}
			if w.SpanWith(o) > MaxSpan("") {
				continue
			}
			s, err := EncodeMetadata("", next, w.Finished())
			if err != nil || len(s) > MaxMetadata {
				t.Fatalf("record within MaxSpan: len %d, err %v", len(s), err)
			}
			if _, got, err := DecodeMetadata(s, next); err != nil || !slices.Equal(got, w.Finished()) {
				t.Fatalf("decoded %v, %v; want %v", got, err, w.Finished())
			}
		}
		for _, a := range added {
			w.Done(a)
		}
		if len(added) > 0 && w.Next() != added[len(added)-1]+1 {
			t.Fatalf("all finished: Next = %d, want %d", w.Next(), added[len(added)-1]+1)
		}
	})
}

// FuzzMetadata: decode(encode(x)) == x, never longer than MaxMetadata, and
// arbitrary metadata never crashes the decoder.
func FuzzMetadata(f *testing.F) {
	f.Add("cursor=1", int64(10), []byte{1, 1, 1, 5, 0, 2})
	f.Add("", int64(0), []byte{0})
	f.Add("~f1x~y", int64(1<<40), []byte{200, 1, 3})
	f.Fuzz(func(t *testing.T, user string, next int64, gaps []byte) {
		if next < 0 || next > 1<<50 {
			return
		}
		var finished []int64
		o := next
		for _, g := range gaps {
			o += int64(g) + 1
			finished = append(finished, o)
		}
		s, err := EncodeMetadata(user, next, finished)
		if err != nil {
			if len(user) < 1000 && len(finished) < 200 {
				t.Fatalf("small record refused: %v", err)
			}
			return
		}
		if len(s) > MaxMetadata {
			t.Fatalf("record of %d bytes", len(s))
		}
		u, got, err := DecodeMetadata(s, next)
		if err != nil || u != user || !slices.Equal(got, finished) {
			t.Fatalf("decode(encode(%q, %v)) = %q, %v, %v", user, finished, u, got, err)
		}
		DecodeMetadata(user, next) // any string: no panic
	})
}
