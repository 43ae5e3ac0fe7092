package testproc

import (
	"log/slog"
	"strings"
	"testing"
)

// Logger returns a logger writing lines of level and above to tb.Log, for
// the servers and clients a test runs in its own process.
func Logger(tb testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: level}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(b []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
