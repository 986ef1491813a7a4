package relay_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops what it starts: after the last one, no goroutine of
// the relay, libp2p, Badger or net/http may be left.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
