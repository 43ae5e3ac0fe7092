package blobstore

import (
	"os"
	"testing"
	"time"

	"framesync"
)

// ForTest returns test-only methods of d: corrupting a blob, setting its
// ModTime, and switching off fsync or direct I/O. The result's type is
// unexported to make clear it is not a stable API. ForTest panics outside a
// test binary.
func (d *Dir) ForTest() dirForTest {
	if !testing.Testing() {
		panic("blobstore: Dir.ForTest called outside a test")
	}
	return dirForTest{d}
}

// dirForTest holds the test-only methods of a Dir.
type dirForTest struct{ d *Dir }

// Corrupt changes the stored bytes of blob h in place, as a failing disk
// would: it flips the bits of the middle byte, or appends a byte to an empty
// blob. The name and the size reported by Stat do not otherwise change.
func (t dirForTest) Corrupt(h framesync.Hash) error {
	p := t.d.path(h)
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if err := os.Chmod(p, 0o644); err != nil {
		return err
	}
	defer os.Chmod(p, fi.Mode().Perm())
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi.Size() == 0 {
		_, err = f.Write([]byte{0})
		return err
	}
	b := []byte{0}
	off := fi.Size() / 2
	if _, err := f.ReadAt(b, off); err != nil {
		return err
	}
	b[0] ^= 0xff
	_, err = f.WriteAt(b, off)
	return err
}

// SetModTime sets the ModTime of blob h.
func (t dirForTest) SetModTime(h framesync.Hash, mt time.Time) error {
	return os.Chtimes(t.d.path(h), mt, mt)
}

// Path returns the file name of blob h, whether or not it is stored.
func (t dirForTest) Path(h framesync.Hash) string { return t.d.path(h) }

// SetSync turns fsync of blobs and directories on (the default) or off.
// Off trades durability for speed in tests and benchmarks.
func (t dirForTest) SetSync(on bool) { t.d.noSync.Store(!on) }

// SetDirectIO turns O_DIRECT writes on (the default where supported) or off.
func (t dirForTest) SetDirectIO(on bool) { t.d.noDirect.Store(!on) }

// SyncTime returns the total time spent in fsync since d was opened.
func (t dirForTest) SyncTime() time.Duration { return time.Duration(t.d.syncNanos.Load()) }

// ForTest returns test-only methods of m: corrupting a blob, setting its
// ModTime, and replacing its clock. The result's type is unexported to make
// clear it is not a stable API. ForTest panics outside a test binary.
func (m *Memory) ForTest() memoryForTest {
	if !testing.Testing() {
		panic("blobstore: Memory.ForTest called outside a test")
	}
	return memoryForTest{m}
}

// memoryForTest holds the test-only methods of a Memory store.
type memoryForTest struct{ m *Memory }

// Corrupt replaces the content of blob h with a copy whose middle byte has
// its bits flipped (or, for an empty blob, one byte long), without changing
// its name. Readers already open keep the old content.
func (t memoryForTest) Corrupt(h framesync.Hash) error {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	b, ok := t.m.blobs[h]
	if !ok {
		return notFound("corrupt", h)
	}
	data := append([]byte(nil), b.data...)
	if len(data) == 0 {
		data = []byte{0}
	} else {
		data[len(data)/2] ^= 0xff
	}
	b.data = data
	t.m.blobs[h] = b
	return nil
}

// SetModTime sets the ModTime of blob h.
func (t memoryForTest) SetModTime(h framesync.Hash, mt time.Time) error {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	b, ok := t.m.blobs[h]
	if !ok {
		return notFound("set mod time", h)
	}
	b.mod = mt
	t.m.blobs[h] = b
	return nil
}

// SetClock makes m read the time from now instead of time.Now; nil restores
// time.Now.
func (t memoryForTest) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	t.m.mu.Lock()
	t.m.now = now
	t.m.mu.Unlock()
}
