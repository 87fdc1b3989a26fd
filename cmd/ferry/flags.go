package main

import (
	"errors"
	"fmt"
	"time"
)

// flagErrors collects command-line values that make no sense, so a command
// refuses them all at once instead of running with something else.
type flagErrors []error

func (e *flagErrors) required(flag, v string) {
	if v == "" {
		*e = append(*e, fmt.Errorf("-%s is required", flag))
	}
}

func (e *flagErrors) atLeast(flag string, v, min int) {
	if v < min {
		*e = append(*e, fmt.Errorf("-%s %d: must be at least %d", flag, v, min))
	}
}

func (e *flagErrors) atMost(flag string, v, max int) {
	if v > max {
		*e = append(*e, fmt.Errorf("-%s %d: must be at most %d", flag, v, max))
	}
}

func (e *flagErrors) notNegative(flag string, d time.Duration) {
	if d < 0 {
		*e = append(*e, fmt.Errorf("-%s %s: must not be negative", flag, d))
	}
}

// err returns the refusals as one usage error (exit code 2), or nil.
func (e flagErrors) err() error {
	if len(e) == 0 {
		return nil
	}
	return &usageError{err: errors.Join(e...)}
}
