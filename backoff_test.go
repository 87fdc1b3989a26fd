package ferry

import (
	"testing"
	"time"
)

// A5: exponential backoff doubles up to its cap; constant stays; jitter
// spreads each wait within ±Jitter of it.
func TestBackoffDelay(t *testing.T) {
	exp := ExponentialBackoff(time.Second, 30*time.Second)
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i, w := range want {
		if got := exp.Delay(i + 1); got != w*time.Second {
			t.Errorf("exponential Delay(%d) = %s, want %s", i+1, got, w*time.Second)
		}
	}
	if got := ConstantBackoff(3 * time.Second).Delay(9); got != 3*time.Second {
		t.Errorf("constant Delay(9) = %s, want 3s", got)
	}
	j := Backoff{Initial: time.Second, Max: time.Second, Multiplier: 1, Jitter: 0.2}
	seen := map[time.Duration]bool{}
	for range 200 {
		d := j.Delay(1)
		if d < 800*time.Millisecond || d > 1200*time.Millisecond {
			t.Fatalf("jittered delay %s outside 1s ± 20%%", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Errorf("jitter produced only %d distinct delays", len(seen))
	}
	if exp.Delay(1000) != 30*time.Second {
		t.Errorf("Delay(1000) = %s, want the 30s cap", exp.Delay(1000))
	}
}
