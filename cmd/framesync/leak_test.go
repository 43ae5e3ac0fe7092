package main

import (
	"testing"

	"go.uber.org/goleak"
)

// verifyNoLeaks is called by TestMain after the tests.
func verifyNoLeaks(m *testing.M) int {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			println("goroutines left behind:", err.Error())
			return 1
		}
	}
	return code
}
