package lease_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the package's tests leave no goroutine behind:
// backends, subscriptions and redis-server watchers are closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
