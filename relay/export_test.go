package relay

import "time"

// SetTrim lowers the stream compaction thresholds (hubs_trim.go) for a
// test and returns what restores them. Call it before starting hubs and
// restore after they stopped.
func SetTrim(above int64, every time.Duration) (restore func()) {
	a, e := trimAbove, trimCheckEvery
	trimAbove, trimCheckEvery = above, every
	return func() { trimAbove, trimCheckEvery = a, e }
}
