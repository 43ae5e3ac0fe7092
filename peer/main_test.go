package peer

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the package's tests leave no goroutine behind:
// clients, libp2p hosts, hubs, relays and subscriptions are all closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
