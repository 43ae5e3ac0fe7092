package crdt

// SetCHeapPacer turns the C heap pacer (cheap.go) off or on for a test and
// returns what restores it.
func SetCHeapPacer(on bool) (restore func()) {
	was := !cheap.off.Load()
	cheap.off.Store(!on)
	return func() { cheap.off.Store(!was) }
}
