package ferry

import (
	"math/rand/v2"
	"time"
)

// Backoff is how long a failing partition waits before its next attempt
// (A5). The wait after the n-th consecutive failure is Initial·Multiplier^(n-1),
// capped at Max, then spread by ±Jitter (a fraction, 0 to 1).
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	Jitter     float64
}

// ExponentialBackoff starts at initial and doubles up to max. The default is
// ExponentialBackoff(time.Second, 30*time.Second).
func ExponentialBackoff(initial, max time.Duration) Backoff {
	return Backoff{Initial: initial, Max: max, Multiplier: 2}
}

// ConstantBackoff waits d before every retry.
func ConstantBackoff(d time.Duration) Backoff {
	return Backoff{Initial: d, Max: d, Multiplier: 1}
}

// Delay returns the wait after the given number of consecutive failures
// (1 for the first).
func (b Backoff) Delay(failures int) time.Duration {
	d := float64(b.Initial)
	for i := 1; i < failures && d < float64(b.Max); i++ {
		d *= b.Multiplier
	}
	d = min(d, float64(b.Max))
	if b.Jitter > 0 {
		d += d * b.Jitter * (2*rand.Float64() - 1)
	}
	return time.Duration(d)
}

func (b Backoff) valid() bool {
	return b.Initial > 0 && b.Max >= b.Initial && b.Multiplier >= 1 && b.Jitter >= 0 && b.Jitter <= 1
}
