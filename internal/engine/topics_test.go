package engine

import (
	"testing"
	"time"
)

// B7: a repeated error is logged once, then once per errorLogEvery, saying
// how many lines it held back meanwhile; each key counts on its own.
func TestLogLimit(t *testing.T) {
	var l logLimit
	t0 := time.Now()
	steps := []struct {
		key    string
		at     time.Duration
		logged bool
		held   int
	}{
		{"a", 0, true, 0},
		{"a", time.Millisecond, false, 0},
		{"b", time.Millisecond, true, 0},
		{"a", errorLogEvery / 2, false, 0},
		{"a", errorLogEvery, true, 2},
		{"a", errorLogEvery + time.Second, false, 0},
		{"b", 3 * errorLogEvery, true, 0},
	}
	for i, s := range steps {
		logged, held := l.allow(s.key, t0.Add(s.at))
		if logged != s.logged || held != s.held {
			t.Errorf("step %d (%s at %s): allow = %v, %d; want %v, %d", i, s.key, s.at, logged, held, s.logged, s.held)
		}
	}
}
