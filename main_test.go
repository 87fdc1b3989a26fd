package ferry_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine ferry starts has an owner that stops it: after the suite,
// none may be left (STYLE 8).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
