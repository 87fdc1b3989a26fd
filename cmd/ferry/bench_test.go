package main

import (
	"io"
	"strings"
	"testing"
)

// bench -check fails the run exactly when a target's median misses: a
// median of the rounds, not the best or the worst one.
func TestBenchTargetsJudgeTheMedian(t *testing.T) {
	for _, tc := range []struct {
		name   string
		judge  func(*targets)
		missed string // "" when every target is met
	}{
		{"at least, met by the median", func(t *targets) { t.atLeast(io.Discard, "ratio", []float64{0.5, 0.98, 1.2}, 0.97) }, ""},
		{"at least, missed by the median", func(t *targets) { t.atLeast(io.Discard, "ratio", []float64{1.5, 0.9, 0.96}, 0.97) }, "ratio 0.960 < 0.97"},
		{"at least, even count: the middle two", func(t *targets) { t.atLeast(io.Discard, "ratio", []float64{0.9, 1.0, 0.95, 2}, 0.97) }, ""},
		{"informational: no target", func(t *targets) { t.atLeast(io.Discard, "ratio", []float64{0.1}, 0) }, ""},
		{"at most, met", func(t *targets) { t.atMost(io.Discard, "rss", []float64{1.4, 1.2, 1.1}, 1.3) }, ""},
		{"at most, missed", func(t *targets) { t.atMost(io.Discard, "rss", []float64{1.4, 1.31, 1.1}, 1.3) }, "rss 1.310 > 1.3"},
		{"no rounds: nothing judged", func(t *targets) { t.atMost(io.Discard, "rss", nil, 1.3) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tg targets
			tc.judge(&tg)
			err := tg.err()
			switch {
			case tc.missed == "" && err != nil:
				t.Errorf("err = %v, want every target met", err)
			case tc.missed != "" && (err == nil || !strings.Contains(err.Error(), tc.missed)):
				t.Errorf("err = %v, want one naming %q", err, tc.missed)
			}
		})
	}
}
