package relay

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the package's tests leave no goroutine behind:
// hubs, connections, libp2p hosts, relays and subscriptions are closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
