// Package blobstoretest checks that a blobstore.Store behaves as documented:
// Run is the conformance suite that every store runs from its tests, and
// Generate makes large deterministic content without holding it in memory.
package blobstoretest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"framesync"
	"framesync/blobstore"
)

// Harness describes the store under test.
type Harness struct {
	// Open returns a new, empty store. It is called once per subtest with
	// that subtest's t, so it can use t.TempDir and check invariants in
	// t.Cleanup. Required.
	Open func(t *testing.T) blobstore.Store

	// Corrupt changes the stored bytes of blob h without changing its
	// name, as a failing disk would (flip a byte of the file, say). The
	// blob may be empty. Required.
	Corrupt func(t *testing.T, s blobstore.Store, h framesync.Hash)

	// SetModTime sets the ModTime of blob h. Required.
	SetModTime func(t *testing.T, s blobstore.Store, h framesync.Hash, mt time.Time)

	// InMemory says the store keeps blob content in the Go heap. The large
	// blob test then uses a smaller blob and lets Put allocate its size;
	// Get must still stream without copying.
	InMemory bool
}

// Run runs the conformance suite against the store described by h, one
// subtest per behaviour.
func Run(t *testing.T, h Harness) {
	if h.Open == nil || h.Corrupt == nil || h.SetModTime == nil {
		t.Fatal("blobstoretest: Harness needs Open, Corrupt and SetModTime")
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"RoundTrip", testRoundTrip},
		{"Dedup", testDedup},
		{"ExpectedHash", testExpectedHash},
		{"VerifyOnRead", testVerifyOnRead},
		{"Concurrent", testConcurrent},
		{"Missing", testMissing},
		{"ReaderError", testReaderError},
		{"RePutErrors", testRePutErrors},
		{"MisbehavingReader", testMisbehavingReader},
		{"LargeBlob", testLargeBlob},
		{"BadHashStrings", testBadHashStrings},
		{"Walk", testWalk},
		{"Delete", testDelete},
		{"ModTimeRefresh", testModTimeRefresh},
		{"ContextCancel", testContextCancel},
		{"Collect", testCollect},
		{"Prune", testPrune},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, h) })
	}
}

// Generate returns a reader of size deterministic pseudo-random bytes
// derived from seed. It holds only 128 KiB whatever the size, and produces
// bytes much faster than SHA-256 consumes them.
func Generate(size int64, seed uint64) io.Reader {
	g := &generator{size: size, idx: -1}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i < len(g.base); i += 8 {
		binary.LittleEndian.PutUint64(g.base[i:], rng.Uint64())
	}
	return g
}

// genBlock is the period of the generator's base pattern; every block of
// output differs from the base in its first 8 bytes, which hold its index.
const genBlock = 64 << 10

// generator is the reader returned by Generate.
type generator struct {
	base [genBlock]byte
	cur  [genBlock]byte // base with the block index mixed in
	idx  int64          // index of the block in cur, -1 for none
	off  int64          // bytes produced so far
	size int64
}

// Read implements io.Reader.
func (g *generator) Read(p []byte) (int, error) {
	if g.off >= g.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && g.off < g.size {
		if idx := g.off / genBlock; idx != g.idx {
			g.cur = g.base
			binary.LittleEndian.PutUint64(g.cur[:8], binary.LittleEndian.Uint64(g.base[:8])^uint64(idx))
			g.idx = idx
		}
		m := copy(p[n:], g.cur[g.off%genBlock:])
		if rest := g.size - g.off; int64(m) > rest {
			m = int(rest)
		}
		n += m
		g.off += int64(m)
	}
	return n, nil
}

// content returns n deterministic bytes derived from seed.
func content(seed uint64, n int) []byte {
	b, err := io.ReadAll(Generate(int64(n), seed))
	if err != nil {
		panic(err) // cannot happen: the generator does not fail
	}
	return b
}

// put stores b in s and checks the returned Info.
func put(t testing.TB, s blobstore.Store, b []byte) blobstore.Info {
	t.Helper()
	info, err := blobstore.PutBytes(context.Background(), s, b)
	if err != nil {
		t.Fatalf("PutBytes(%d bytes): %v", len(b), err)
	}
	if want := framesync.Sum(b); info.Hash != want || info.Size != int64(len(b)) {
		t.Fatalf("PutBytes(%d bytes) = %s, %d bytes; want %s, %d bytes", len(b), info.Hash, info.Size, want, len(b))
	}
	return info
}

// walkAll returns every blob of s, by hash, failing on duplicates.
func walkAll(t testing.TB, s blobstore.Store) map[framesync.Hash]blobstore.Info {
	t.Helper()
	all := make(map[framesync.Hash]blobstore.Info)
	err := s.Walk(context.Background(), func(info blobstore.Info) error {
		if _, dup := all[info.Hash]; dup {
			return fmt.Errorf("walk returned %s twice", info.Hash)
		}
		all[info.Hash] = info
		return nil
	})
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return all
}

// checkEmpty fails if s holds any blob.
func checkEmpty(t testing.TB, s blobstore.Store) {
	t.Helper()
	if all := walkAll(t, s); len(all) != 0 {
		t.Fatalf("store holds %d blobs, want none", len(all))
	}
}

// checkContent fails unless blob h of s reads back as want, through both
// Get and ReadAll.
func checkContent(t testing.TB, s blobstore.Store, h framesync.Hash, want []byte) {
	t.Helper()
	ctx := context.Background()
	rc, info, err := s.Get(ctx, h)
	if err != nil {
		t.Fatalf("Get(%s): %v", h, err)
	}
	got, err := io.ReadAll(rc)
	if cerr := rc.Close(); cerr != nil {
		t.Errorf("Close: %v", cerr)
	}
	if err != nil {
		t.Fatalf("reading %s: %v", h, err)
	}
	if info.Hash != h || info.Size != int64(len(want)) {
		t.Errorf("Get(%s) Info = %s, %d bytes; want %d bytes", h, info.Hash, info.Size, len(want))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%s) returned %d bytes that differ from the %d put", h, len(got), len(want))
	}
	got, err = blobstore.ReadAll(ctx, s, h)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ReadAll(%s) = %d bytes, %v; want the %d bytes put", h, len(got), err, len(want))
	}
}

// checkKind fails unless err matches sentinel and has the framesync kind.
func checkKind(t testing.TB, what string, err, sentinel error, kind framesync.Kind) {
	t.Helper()
	if !errors.Is(err, sentinel) || !errors.Is(err, kind) || framesync.KindOf(err) != kind {
		t.Fatalf("%s: error %v; want one wrapping %q of kind %s", what, err, sentinel, kind.Code())
	}
}

// checkModTime fails unless mt is within a minute of now.
func checkModTime(t testing.TB, what string, mt time.Time) {
	t.Helper()
	if d := time.Since(mt); d > time.Minute || d < -time.Minute {
		t.Errorf("%s: ModTime %v is %v away from now", what, mt, d)
	}
}

func testRoundTrip(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	sizes := []int{0, 1, 3, 4095, 4096, 4097, 64 << 10, 256<<10 - 1, 256 << 10, 256<<10 + 1,
		512<<10 - 1, 512 << 10, 512<<10 + 1, 1 << 20, 2<<20 + 1, 5<<19 + 3, 9 << 19}
	for i, n := range sizes {
		data := content(uint64(i), n)
		readers := map[string]io.Reader{
			"bytes.Reader": bytes.NewReader(data),
			"HalfReader":   iotest.HalfReader(bytes.NewReader(data)),
			"DataErr":      iotest.DataErrReader(bytes.NewReader(data)),
			"plain":        struct{ io.Reader }{bytes.NewReader(data)}, // hides Len and WriteTo
		}
		if n <= 64<<10 {
			readers["OneByte"] = iotest.OneByteReader(bytes.NewReader(data))
		}
		for name, r := range readers {
			want := framesync.Hash{}
			if name == "HalfReader" {
				want = framesync.Sum(data)
			}
			info, err := s.Put(ctx, r, want)
			if err != nil {
				t.Fatalf("Put(%d bytes, %s): %v", n, name, err)
			}
			if info.Hash != framesync.Sum(data) || info.Size != int64(n) {
				t.Fatalf("Put(%d bytes, %s) = %s, %d bytes; want %s", n, name, info.Hash, info.Size, framesync.Sum(data))
			}
			checkModTime(t, "Put", info.ModTime)
		}
		hash := framesync.Sum(data)
		st, err := s.Stat(ctx, hash)
		if err != nil || st.Hash != hash || st.Size != int64(n) {
			t.Fatalf("Stat(%s) = %+v, %v; want %d bytes", hash, st, err, n)
		}
		checkModTime(t, "Stat", st.ModTime)
		if ok, err := blobstore.Has(ctx, s, hash); !ok || err != nil {
			t.Fatalf("Has(%s) = %v, %v; want true", hash, ok, err)
		}
		checkContent(t, s, hash, data)
	}
	if got := len(walkAll(t, s)); got != len(sizes) {
		t.Fatalf("Walk found %d blobs, want %d", got, len(sizes))
	}
}

func testDedup(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	data := content(1, 1<<20+5)
	a := put(t, s, data)
	b, err := s.Put(ctx, iotest.HalfReader(bytes.NewReader(data)), framesync.Sum(data))
	if err != nil {
		t.Fatalf("second Put: %v", err)
	}
	if a.Hash != b.Hash || a.Size != b.Size {
		t.Fatalf("same content put twice gave %+v and %+v", a, b)
	}
	empty1 := put(t, s, nil)
	empty2 := put(t, s, []byte{})
	if empty1.Hash != empty2.Hash {
		t.Fatalf("empty content put twice gave %s and %s", empty1.Hash, empty2.Hash)
	}
	all := walkAll(t, s)
	if len(all) != 2 {
		t.Fatalf("Walk found %d blobs after putting 2 distinct contents twice each, want 2", len(all))
	}
	if info := all[a.Hash]; info.Size != int64(len(data)) {
		t.Fatalf("Walk Info for %s = %+v, want %d bytes", a.Hash, info, len(data))
	}
	checkContent(t, s, a.Hash, data)
	checkContent(t, s, empty1.Hash, nil)
}

func testExpectedHash(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	for _, n := range []int{0, 10, 3<<20 + 1} {
		data := content(uint64(n), n)
		right := framesync.Sum(data)
		wrong := right
		wrong[31] ^= 1

		_, err := s.Put(ctx, bytes.NewReader(data), wrong)
		checkKind(t, "Put with a wrong hash", err, blobstore.ErrHashMismatch, framesync.BadInput)
		checkEmpty(t, s)
		for _, hh := range []framesync.Hash{right, wrong} {
			if ok, err := blobstore.Has(ctx, s, hh); ok || err != nil {
				t.Fatalf("after a mismatched Put, Has(%s) = %v, %v; want false", hh, ok, err)
			}
		}

		info, err := s.Put(ctx, bytes.NewReader(data), right)
		if err != nil || info.Hash != right {
			t.Fatalf("Put with the right hash = %s, %v; want %s", info.Hash, err, right)
		}
		checkContent(t, s, right, data)

		// Content that does not match an existing blob's hash must not
		// count as re-putting that blob.
		other := content(99, n+1)
		_, err = s.Put(ctx, bytes.NewReader(other), right)
		checkKind(t, "Put of other content with an existing hash", err, blobstore.ErrHashMismatch, framesync.BadInput)
		if _, err := s.Stat(ctx, framesync.Sum(other)); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("after a mismatched Put, Stat of its content: %v; want ErrNotFound", err)
		}
		checkContent(t, s, right, data)
		if err := s.Delete(ctx, right); err != nil {
			t.Fatal(err)
		}
	}
}

func testVerifyOnRead(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	good := content(5, 100_000)
	goodInfo := put(t, s, good)
	for _, n := range []int{0, 1, 1000, 700_000, 3<<20 + 7} {
		data := content(uint64(n)+10, n)
		info := put(t, s, data)
		h.Corrupt(t, s, info.Hash)

		rc, _, err := s.Get(ctx, info.Hash)
		if err != nil {
			t.Fatalf("Get of a corrupt blob: %v; want the error at the end of the content", err)
		}
		_, err = io.ReadAll(rc)
		checkKind(t, fmt.Sprintf("io.ReadAll of a corrupt %d-byte blob", n), err, blobstore.ErrCorrupt, framesync.Corrupt)
		if _, err2 := rc.Read(make([]byte, 10)); !errors.Is(err2, blobstore.ErrCorrupt) {
			t.Errorf("Read after the corrupt error: %v; want ErrCorrupt again", err2)
		}
		if err := rc.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}

		rc, _, err = s.Get(ctx, info.Hash)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, rc)
		checkKind(t, "io.Copy of a corrupt blob", err, blobstore.ErrCorrupt, framesync.Corrupt)
		rc.Close()

		b, err := blobstore.ReadAll(ctx, s, info.Hash)
		checkKind(t, "ReadAll of a corrupt blob", err, blobstore.ErrCorrupt, framesync.Corrupt)
		if b != nil {
			t.Errorf("ReadAll of a corrupt blob returned %d bytes with its error", len(b))
		}

		// A reader closed before the end reports nothing.
		rc, _, err = s.Get(ctx, info.Hash)
		if err != nil {
			t.Fatal(err)
		}
		if err := rc.Close(); err != nil {
			t.Errorf("Close before reading: %v", err)
		}

		// Deleting the corrupt blob and putting the content again heals it.
		if err := s.Delete(ctx, info.Hash); err != nil {
			t.Fatalf("Delete of a corrupt blob: %v", err)
		}
		put(t, s, data)
		checkContent(t, s, info.Hash, data)
	}
	checkContent(t, s, goodInfo.Hash, good)
}

func testConcurrent(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	same := content(42, 1<<20+17)
	sameHash := framesync.Sum(same)
	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			info, err := s.Put(ctx, iotest.HalfReader(bytes.NewReader(same)), sameHash)
			if err != nil || info.Hash != sameHash {
				t.Errorf("concurrent Put of the same content = %s, %v", info.Hash, err)
			}
		})
		wg.Go(func() {
			data := content(uint64(1000+i), 300_000+i)
			if info, err := blobstore.PutBytes(ctx, s, data); err != nil || info.Hash != framesync.Sum(data) {
				t.Errorf("concurrent Put of different content = %s, %v", info.Hash, err)
			}
		})
		wg.Go(func() {
			// Readers during the puts see the blob whole or not at all.
			b, err := blobstore.ReadAll(ctx, s, sameHash)
			switch {
			case errors.Is(err, blobstore.ErrNotFound):
			case err != nil:
				t.Errorf("concurrent ReadAll: %v", err)
			case !bytes.Equal(b, same):
				t.Errorf("concurrent ReadAll returned %d wrong bytes", len(b))
			}
		})
	}
	wg.Wait()
	all := walkAll(t, s)
	if len(all) != n+1 {
		t.Fatalf("Walk found %d blobs, want %d", len(all), n+1)
	}
	checkContent(t, s, sameHash, same)
	for i := range n {
		data := content(uint64(1000+i), 300_000+i)
		checkContent(t, s, framesync.Sum(data), data)
	}

	// Concurrent deletes of one blob: exactly one succeeds.
	var ok atomic.Int32
	for range n {
		wg.Go(func() {
			err := s.Delete(ctx, sameHash)
			switch {
			case err == nil:
				ok.Add(1)
			case !errors.Is(err, blobstore.ErrNotFound):
				t.Errorf("concurrent Delete: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d concurrent Deletes of one blob succeeded, want 1", ok.Load())
	}
}

func testMissing(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	put(t, s, []byte("something else"))
	missing := []framesync.Hash{{}, framesync.Sum([]byte("never stored")), {0xff, 0xff, 0xff}}
	for _, hh := range missing {
		rc, _, err := s.Get(ctx, hh)
		checkKind(t, "Get of a missing blob", err, blobstore.ErrNotFound, framesync.NotFound)
		if rc != nil {
			t.Errorf("Get of a missing blob returned a reader")
		}
		_, err = s.Stat(ctx, hh)
		checkKind(t, "Stat of a missing blob", err, blobstore.ErrNotFound, framesync.NotFound)
		err = s.Delete(ctx, hh)
		checkKind(t, "Delete of a missing blob", err, blobstore.ErrNotFound, framesync.NotFound)
		_, err = blobstore.ReadAll(ctx, s, hh)
		checkKind(t, "ReadAll of a missing blob", err, blobstore.ErrNotFound, framesync.NotFound)
		if ok, err := blobstore.Has(ctx, s, hh); ok || err != nil {
			t.Errorf("Has of a missing blob = %v, %v; want false, nil", ok, err)
		}
	}
	if got := len(walkAll(t, s)); got != 1 {
		t.Fatalf("Walk found %d blobs, want 1", got)
	}
}

// errBoom is the error of the failing readers.
var errBoom = errors.New("boom")

// failingReader returns data, then err in the same call as the last bytes.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	n := copy(p, r.data)
	r.data = r.data[n:]
	if len(r.data) == 0 {
		return n, r.err
	}
	return n, nil
}

func testReaderError(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	for _, n := range []int{0, 100, 512 << 10, 3<<20 + 5} {
		data := content(uint64(n), n)
		full := append(bytes.Clone(data), "and the rest"...)
		for _, want := range []framesync.Hash{{}, framesync.Sum(full)} {
			readers := map[string]io.Reader{
				"then error":      io.MultiReader(bytes.NewReader(data), iotest.ErrReader(errBoom)),
				"data with error": &failingReader{data: data, err: errBoom},
				"timeout":         iotest.TimeoutReader(iotest.HalfReader(bytes.NewReader(full))),
			}
			for name, r := range readers {
				_, err := s.Put(ctx, r, want)
				if err == nil {
					t.Fatalf("Put from a reader that fails after %d bytes (%s) succeeded", n, name)
				}
				if name != "timeout" && !errors.Is(err, errBoom) {
					t.Errorf("Put error %v does not wrap the reader's error", err)
				}
				if name == "timeout" && !errors.Is(err, iotest.ErrTimeout) {
					t.Errorf("Put error %v does not wrap the reader's error", err)
				}
				checkEmpty(t, s)
			}
		}
	}
}

func testRePutErrors(t *testing.T, h Harness) {
	// Failures while putting content already stored leave it intact.
	s := h.Open(t)
	ctx := context.Background()
	for _, n := range []int{0, 100, 3<<20 + 5} {
		data := content(uint64(n), n)
		info := put(t, s, data)
		for _, want := range []framesync.Hash{{}, info.Hash} {
			_, err := s.Put(ctx, io.MultiReader(bytes.NewReader(data), iotest.ErrReader(errBoom)), want)
			if !errors.Is(err, errBoom) {
				t.Fatalf("re-Put from a failing reader: %v; want the reader's error", err)
			}
			cctx, cancel := context.WithCancel(ctx)
			_, err = s.Put(cctx, &cancelingReader{r: bytes.NewReader(append(bytes.Clone(data), 0)), after: n, cancel: cancel}, want)
			cancel()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("re-Put cancelled at the end: %v; want context.Canceled", err)
			}
			_, err = s.Put(ctx, bytes.NewReader(append(bytes.Clone(data), 'x')), info.Hash)
			checkKind(t, "re-Put of longer content", err, blobstore.ErrHashMismatch, framesync.BadInput)
			checkContent(t, s, info.Hash, data)
		}
		if err := s.Delete(ctx, info.Hash); err != nil {
			t.Fatal(err)
		}
		checkEmpty(t, s)
	}
}

// badCountReader returns an impossible count.
type badCountReader struct{ n int }

func (r badCountReader) Read(p []byte) (int, error) { return len(p) + r.n, nil }

// stuckReader returns (0, nil) forever.
type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

func testMisbehavingReader(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	readers := map[string]io.Reader{
		"too many bytes":   badCountReader{1},
		"negative count":   badCountReader{-1 << 40},
		"stuck":            stuckReader{},
		"stuck after data": io.MultiReader(bytes.NewReader(content(1, 600<<10)), stuckReader{}),
	}
	for name, r := range readers {
		if _, err := s.Put(ctx, r, framesync.Hash{}); err == nil {
			t.Errorf("Put from a reader with %s succeeded", name)
		}
		checkEmpty(t, s)
	}
}

func testLargeBlob(t *testing.T, h Harness) {
	size := int64(256 << 20)
	if testing.Short() {
		size = 32 << 20
	}
	if h.InMemory {
		size = min(size, 64<<20)
	}
	// Streaming allocates a few buffers, whatever the size.
	limit := uint64(4<<20 + size/64)
	putLimit := limit
	if h.InMemory {
		putLimit = uint64(3 * size) // the content itself, grown by doubling
	}
	s := h.Open(t)
	ctx := context.Background()
	hasher := framesync.NewHasher()
	if _, err := io.Copy(hasher, Generate(size, 7)); err != nil {
		t.Fatal(err)
	}
	want := framesync.HashOf(hasher)

	gen := Generate(size, 7)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	info, err := s.Put(ctx, gen, want)
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("Put of %d MiB: %v", size>>20, err)
	}
	if info.Hash != want || info.Size != size {
		t.Fatalf("Put = %s, %d bytes; want %s, %d bytes", info.Hash, info.Size, want, size)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("Put of %d MiB: %v, %.0f MB/s, allocated %d KiB, heap grew %d KiB",
		size>>20, elapsed, float64(size)/1e6/elapsed.Seconds(), alloc>>10, (int64(after.HeapAlloc)-int64(before.HeapAlloc))>>10)
	if alloc > putLimit {
		t.Errorf("Put of %d MiB allocated %d MiB; want at most %d MiB", size>>20, alloc>>20, putLimit>>20)
	}

	runtime.GC()
	runtime.ReadMemStats(&before)
	start = time.Now()
	rc, _, err := s.Get(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	elapsed = time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil || n != size {
		t.Fatalf("reading back %d MiB: %d bytes, %v", size>>20, n, err)
	}
	alloc = after.TotalAlloc - before.TotalAlloc
	t.Logf("verified Get of %d MiB: %v, %.0f MB/s, allocated %d KiB", size>>20, elapsed, float64(size)/1e6/elapsed.Seconds(), alloc>>10)
	if alloc > limit {
		t.Errorf("verified Get of %d MiB allocated %d MiB; want at most %d MiB", size>>20, alloc>>20, limit>>20)
	}
}

// countingStore counts the calls that reach the Store it wraps.
type countingStore struct {
	blobstore.Store
	calls atomic.Int64
}

func (c *countingStore) Stat(ctx context.Context, h framesync.Hash) (blobstore.Info, error) {
	c.calls.Add(1)
	return c.Store.Stat(ctx, h)
}

func (c *countingStore) Get(ctx context.Context, h framesync.Hash) (io.ReadCloser, blobstore.Info, error) {
	c.calls.Add(1)
	return c.Store.Get(ctx, h)
}

// statString is how a caller holding a printed hash (a URL path, say)
// reaches a store: parse strictly, then call it.
func statString(ctx context.Context, s blobstore.Store, str string) (blobstore.Info, error) {
	h, err := framesync.ParseHash(str)
	if err != nil {
		return blobstore.Info{}, err
	}
	return s.Stat(ctx, h)
}

func testBadHashStrings(t *testing.T, h Harness) {
	cs := &countingStore{Store: h.Open(t)}
	ctx := context.Background()
	info := put(t, cs, []byte("hello"))
	good := info.Hash.String()
	hexs := good[len(framesync.HashPrefix):]
	bad := []string{
		"",
		"sha256:",
		"sha256",
		hexs,                                 // no prefix
		"sha256:" + hexs[:63],                // short
		"sha256:" + hexs + "0",               // long
		"sha256:" + hexs[:63] + "A",          // upper case
		"SHA256:" + hexs,                     // upper-case prefix
		"sha512:" + hexs,                     // other algorithm
		"sha1:" + hexs,                       // other algorithm, other length
		" " + good,                           // leading space
		good + " ",                           // trailing space
		good + "\n",                          // trailing newline
		"sha256: " + hexs[1:],                // inner space
		"sha256:" + hexs[:63] + "g",          // not hex
		"sha256:" + hexs[:62] + "é",          // multi-byte rune, right byte length
		"sha256:" + string(make([]byte, 64)), // NUL bytes
		"sha256:../" + hexs[3:],              // path traversal
	}
	for _, str := range bad {
		_, err := statString(ctx, cs, str)
		if !errors.Is(err, framesync.BadInput) || framesync.KindOf(err) != framesync.BadInput {
			t.Errorf("statString(%q): %v; want a BadInput error", str, err)
		}
	}
	if n := cs.calls.Load(); n != 0 {
		t.Fatalf("%d calls reached the store with bad hash strings", n)
	}
	if _, err := statString(ctx, cs, good); err != nil {
		t.Fatalf("statString(%q): %v", good, err)
	}
	missing := framesync.Sum([]byte("missing")).String()
	if _, err := statString(ctx, cs, missing); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("statString(%q): %v; want ErrNotFound", missing, err)
	}
	if n := cs.calls.Load(); n != 2 {
		t.Fatalf("%d calls reached the store with good hash strings, want 2", n)
	}
}

func testWalk(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	checkEmpty(t, s)
	want := make(map[framesync.Hash]int64)
	for i := range 40 {
		data := content(uint64(i), i*1000)
		want[put(t, s, data).Hash] = int64(len(data))
	}
	all := walkAll(t, s)
	if len(all) != len(want) {
		t.Fatalf("Walk found %d blobs, want %d", len(all), len(want))
	}
	for hh, size := range want {
		info, ok := all[hh]
		if !ok || info.Size != size {
			t.Fatalf("Walk Info for %s = %+v, %v; want %d bytes", hh, info, ok, size)
		}
		st, err := s.Stat(ctx, hh)
		if err != nil || !st.ModTime.Equal(info.ModTime) {
			t.Fatalf("Stat(%s) = %+v, %v; Walk said %+v", hh, st, err, info)
		}
	}

	// An error from fn stops the walk and comes back unchanged.
	errStop := errors.New("stop")
	calls := 0
	err := s.Walk(ctx, func(blobstore.Info) error { calls++; return errStop })
	if err != errStop || calls != 1 {
		t.Fatalf("Walk with fn failing = %v after %d calls; want errStop after 1", err, calls)
	}

	// fn may delete the blob it was given.
	deleted := 0
	err = s.Walk(ctx, func(info blobstore.Info) error {
		deleted++
		return s.Delete(ctx, info.Hash)
	})
	if err != nil || deleted != len(want) {
		t.Fatalf("Walk deleting every blob = %v after %d deletes; want nil after %d", err, deleted, len(want))
	}
	checkEmpty(t, s)
}

func testDelete(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	a, b := content(1, 1000), content(2, 600_000)
	ai, bi := put(t, s, a), put(t, s, b)
	if err := s.Delete(ctx, ai.Hash); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Stat(ctx, ai.Hash); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Stat after Delete: %v; want ErrNotFound", err)
	}
	if _, _, err := s.Get(ctx, ai.Hash); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Get after Delete: %v; want ErrNotFound", err)
	}
	checkKind(t, "second Delete", s.Delete(ctx, ai.Hash), blobstore.ErrNotFound, framesync.NotFound)
	checkContent(t, s, bi.Hash, b)
	if all := walkAll(t, s); len(all) != 1 {
		t.Fatalf("Walk after Delete found %d blobs, want 1", len(all))
	}

	// A reader open before Delete reads the whole blob or fails; it never
	// returns wrong data as a success.
	rc, _, err := s.Get(ctx, bi.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, bi.Hash); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(rc); err == nil && !bytes.Equal(got, b) {
		t.Fatalf("reader open across Delete returned %d wrong bytes", len(got))
	}
	rc.Close()

	put(t, s, a)
	checkContent(t, s, ai.Hash, a)
}

func testModTimeRefresh(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	for _, n := range []int{10, 1<<20 + 3} {
		data := content(uint64(n), n)
		info := put(t, s, data)
		old := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
		h.SetModTime(t, s, info.Hash, old)
		st, err := s.Stat(ctx, info.Hash)
		if err != nil {
			t.Fatal(err)
		}
		if d := st.ModTime.Sub(old); d < -2*time.Second || d > 2*time.Second {
			t.Fatalf("after SetModTime(%v), Stat ModTime = %v", old, st.ModTime)
		}
		for i, want := range []framesync.Hash{{}, info.Hash} {
			if i == 1 {
				h.SetModTime(t, s, info.Hash, old)
			}
			again, err := s.Put(ctx, bytes.NewReader(data), want)
			if err != nil {
				t.Fatalf("re-Put: %v", err)
			}
			checkModTime(t, "re-Put", again.ModTime)
			st, err = s.Stat(ctx, info.Hash)
			if err != nil {
				t.Fatal(err)
			}
			checkModTime(t, "Stat after re-Put", st.ModTime)
		}
		checkContent(t, s, info.Hash, data)
	}
	if all := walkAll(t, s); len(all) != 2 {
		t.Fatalf("Walk found %d blobs, want 2", len(all))
	}
}

// cancelingReader returns its data, calling cancel once it has returned
// after bytes.
type cancelingReader struct {
	r      io.Reader
	after  int
	n      int
	cancel context.CancelFunc
}

func (c *cancelingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	if c.n >= c.after {
		c.cancel()
	}
	return n, err
}

func testContextCancel(t *testing.T, h Harness) {
	s := h.Open(t)
	bg := context.Background()
	data := content(3, 4<<20)
	hash := framesync.Sum(data)

	done, cancel := context.WithCancel(bg)
	cancel()
	expired, cancel2 := context.WithDeadline(bg, time.Now().Add(-time.Second))
	defer cancel2()
	for _, c := range []struct {
		ctx  context.Context
		want error
	}{{done, context.Canceled}, {expired, context.DeadlineExceeded}} {
		_, err := s.Put(c.ctx, bytes.NewReader(data), framesync.Hash{})
		if !errors.Is(err, c.want) {
			t.Errorf("Put with a done context: %v; want %v", err, c.want)
		}
		checkEmpty(t, s)
		if _, _, err := s.Get(c.ctx, hash); !errors.Is(err, c.want) {
			t.Errorf("Get with a done context: %v; want %v", err, c.want)
		}
		if _, err := s.Stat(c.ctx, hash); !errors.Is(err, c.want) {
			t.Errorf("Stat with a done context: %v; want %v", err, c.want)
		}
		if err := s.Delete(c.ctx, hash); !errors.Is(err, c.want) {
			t.Errorf("Delete with a done context: %v; want %v", err, c.want)
		}
		if err := s.Walk(c.ctx, func(blobstore.Info) error { return nil }); !errors.Is(err, c.want) {
			t.Errorf("Walk with a done context: %v; want %v", err, c.want)
		}
		if _, err := blobstore.Has(c.ctx, s, hash); !errors.Is(err, c.want) {
			t.Errorf("Has with a done context: %v; want %v", err, c.want)
		}
	}

	// Cancelled in the middle of a long Put: nothing is stored.
	for _, after := range []int{1, 1 << 20, 3 << 20} {
		ctx, cancel := context.WithCancel(bg)
		r := &cancelingReader{r: bytes.NewReader(data), after: after, cancel: cancel}
		_, err := s.Put(ctx, r, framesync.Hash{})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Put cancelled after %d bytes: %v; want context.Canceled", after, err)
		}
		if r.n == len(data) && after < len(data) {
			t.Errorf("Put cancelled after %d bytes read all %d bytes", after, len(data))
		}
		checkEmpty(t, s)
	}

	// A reader from Get fails once its context is done.
	put(t, s, data)
	ctx, cancel3 := context.WithCancel(bg)
	rc, _, err := s.Get(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	cancel3()
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
		t.Fatalf("reading after cancel: %v; want context.Canceled", err)
	}
	rc.Close()

	// Walk stops when its context is done.
	put(t, s, []byte("second blob"))
	ctx, cancel4 := context.WithCancel(bg)
	calls := 0
	err = s.Walk(ctx, func(blobstore.Info) error { calls++; cancel4(); return nil })
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("Walk cancelled in fn = %v after %d calls; want context.Canceled after 1", err, calls)
	}
}

func testCollect(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	now := time.Now()
	old := now.Add(-2 * time.Hour)
	referencedOld := put(t, s, []byte("referenced and old"))
	unreferencedYoung := put(t, s, []byte("unreferenced and young"))
	unreferencedOld := put(t, s, content(1, 300_000))
	rePut := put(t, s, []byte("old, but put again just now"))
	h.SetModTime(t, s, referencedOld.Hash, old)
	h.SetModTime(t, s, unreferencedOld.Hash, old)
	h.SetModTime(t, s, rePut.Hash, old)
	put(t, s, []byte("old, but put again just now"))

	keep := func(hh framesync.Hash) bool { return hh == referencedOld.Hash }
	st, err := blobstore.Collect(ctx, s, keep, now.Add(-time.Hour))
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	want := blobstore.CollectStats{Scanned: 4, Kept: 1, Young: 2, Deleted: 1, BytesFreed: unreferencedOld.Size}
	if st != want {
		t.Fatalf("Collect stats = %+v, want %+v", st, want)
	}
	for _, info := range []blobstore.Info{referencedOld, unreferencedYoung, rePut} {
		if ok, err := blobstore.Has(ctx, s, info.Hash); !ok || err != nil {
			t.Fatalf("after Collect, Has(%s) = %v, %v; want true", info.Hash, ok, err)
		}
	}
	if ok, err := blobstore.Has(ctx, s, unreferencedOld.Hash); ok || err != nil {
		t.Fatalf("after Collect, Has(unreferenced old blob) = %v, %v; want false", ok, err)
	}

	// Nothing left to do.
	st, err = blobstore.Collect(ctx, s, keep, now.Add(-time.Hour))
	if want := (blobstore.CollectStats{Scanned: 3, Kept: 1, Young: 2}); err != nil || st != want {
		t.Fatalf("second Collect = %+v, %v; want %+v", st, err, want)
	}

	if _, err := blobstore.Collect(ctx, s, nil, now); !errors.Is(err, framesync.BadInput) {
		t.Fatalf("Collect with a nil keep: %v; want a BadInput error", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := blobstore.Collect(cctx, s, keep, now); !errors.Is(err, context.Canceled) {
		t.Fatalf("Collect with a done context: %v; want context.Canceled", err)
	}
	if got := len(walkAll(t, s)); got != 3 {
		t.Fatalf("after Collect with bad arguments, %d blobs; want 3", got)
	}
}

func testPrune(t *testing.T, h Harness) {
	s := h.Open(t)
	p, ok := s.(blobstore.Pruner)
	if !ok {
		t.Skip("store is not a blobstore.Pruner")
	}
	ctx := context.Background()
	now := time.Now()
	young := put(t, s, []byte("young"))
	old := put(t, s, []byte("old"))
	h.SetModTime(t, s, old.Hash, now.Add(-2*time.Hour))

	if deleted, err := p.Prune(ctx, young.Hash, now.Add(-time.Hour)); deleted || err != nil {
		t.Fatalf("Prune(young) = %v, %v; want false, nil", deleted, err)
	}
	if deleted, err := p.Prune(ctx, old.Hash, now.Add(-time.Hour)); !deleted || err != nil {
		t.Fatalf("Prune(old) = %v, %v; want true, nil", deleted, err)
	}
	_, err := p.Prune(ctx, old.Hash, now)
	checkKind(t, "Prune of a missing blob", err, blobstore.ErrNotFound, framesync.NotFound)
	all := walkAll(t, s)
	if _, ok := all[young.Hash]; !ok || len(all) != 1 {
		t.Fatalf("after Prune, store holds %d blobs; want only the young one", len(all))
	}
	checkContent(t, s, young.Hash, []byte("young"))
}
