package crdt

// #include <malloc.h>
import "C"

import (
	"runtime"
	"sync/atomic"
)

// The C heap pacer. automerge-go frees the C memory behind every result
// (sync messages, saves, change lists, ...) only from Go finalizers, which
// run after a garbage collection, and Go's collector neither sees nor
// counts C memory: with a small Go heap it collects rarely, and the C
// garbage piles up (a peer client making 1,800 state edits grew to 400 MB,
// 130 MB with a collection every 20 edits). So every cheapEvery-th call
// into Automerge looks at the C heap in use (glibc's mallinfo2), and when
// it has grown by as much as it was after the last collection (GOGC's
// rule), and by at least cheapMin, it starts a collection. The base
// follows the C heap down as the finalizers free memory.

const (
	// cheapEvery is how many Automerge calls pass between two looks.
	cheapEvery = 32
	// cheapMin is the least growth of the C heap that starts a
	// collection.
	cheapMin = 32 << 20
)

var cheap struct {
	calls   atomic.Int64
	base    atomic.Int64 // C heap in use after the last collection (its lowest since)
	running atomic.Bool  // a collection started here has not returned
	gcs     atomic.Int64 // collections started, for tests
	off     atomic.Bool  // tests turn the pacer off to compare
}

// CHeapInUse returns the bytes of C heap in use in the process (malloc's
// arenas and mmapped chunks; Automerge's documents live there).
func CHeapInUse() int64 { return cHeapInUse() }

// CHeapCollections returns how many garbage collections the C heap pacer
// started.
func CHeapCollections() int64 { return cheap.gcs.Load() }

func cHeapInUse() int64 {
	mi := C.mallinfo2()
	return int64(mi.uordblks) + int64(mi.hblkhd)
}

// cHeapTick is called on every call into Automerge that may leave C
// garbage; it starts a collection when the C heap has grown enough.
func cHeapTick() {
	if cheap.calls.Add(1)%cheapEvery != 0 || cheap.off.Load() {
		return
	}
	inuse := cHeapInUse()
	base := cheap.base.Load()
	if inuse < base || base == 0 {
		cheap.base.Store(inuse)
		return
	}
	if inuse-base < max(base, cheapMin) || !cheap.running.CompareAndSwap(false, true) {
		return
	}
	cheap.gcs.Add(1)
	go func() {
		defer cheap.running.Store(false)
		// Give back to the system what the finalizers of the last
		// collection freed (glibc keeps freed memory in its arenas).
		C.malloc_trim(0)
		runtime.GC() // queues the finalizers that free the C memory
		cheap.base.Store(cHeapInUse())
	}()
}
