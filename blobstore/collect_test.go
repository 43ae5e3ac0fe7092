package blobstore_test

import (
	"context"
	"os"
	"testing"
	"time"

	"framesync"
	"framesync/blobstore"
)

// collectCase puts three blobs at t0, re-puts one at t0+2h, and collects
// with a cutoff of t0+1h keeping one: the kept one stays, the re-put one
// stays, the third goes.
func collectCase(t *testing.T, s blobstore.Store, setAll func(framesync.Hash, time.Time), now func(time.Time)) {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	now(t0)
	referenced, _ := blobstore.PutBytes(ctx, s, []byte("referenced"))
	rePut, _ := blobstore.PutBytes(ctx, s, []byte("re-put"))
	garbage, err := blobstore.PutBytes(ctx, s, []byte("garbage!"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []framesync.Hash{referenced.Hash, rePut.Hash, garbage.Hash} {
		setAll(h, t0)
	}
	now(t0.Add(2 * time.Hour))
	if _, err := blobstore.PutBytes(ctx, s, []byte("re-put")); err != nil {
		t.Fatal(err)
	}
	keep := func(h framesync.Hash) bool { return h == referenced.Hash }
	st, err := blobstore.Collect(ctx, s, keep, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := blobstore.CollectStats{Scanned: 3, Kept: 1, Young: 1, Deleted: 1, BytesFreed: 8}
	if st != want {
		t.Fatalf("Collect = %+v, want %+v", st, want)
	}
	for h, want := range map[framesync.Hash]bool{referenced.Hash: true, rePut.Hash: true, garbage.Hash: false} {
		if ok, err := blobstore.Has(ctx, s, h); ok != want || err != nil {
			t.Errorf("after Collect, Has(%s) = %v, %v; want %v", h, ok, err, want)
		}
	}
}

func TestCollectMemoryClock(t *testing.T) {
	m := blobstore.NewMemory()
	clock := &fakeClock{}
	m.ForTest().SetClock(clock.Now)
	collectCase(t, m, func(framesync.Hash, time.Time) {}, func(t time.Time) { clock.now = t })
}

// storeOnly hides every method but the Store interface's (here: Prune).
type storeOnly struct{ blobstore.Store }

func TestCollectWithoutPruner(t *testing.T) {
	m := blobstore.NewMemory()
	clock := &fakeClock{}
	m.ForTest().SetClock(clock.Now)
	var s blobstore.Store = storeOnly{m}
	if _, ok := s.(blobstore.Pruner); ok {
		t.Fatal("storeOnly is a Pruner")
	}
	collectCase(t, s, func(framesync.Hash, time.Time) {}, func(t time.Time) { clock.now = t })
}

func TestCollectDirChtimes(t *testing.T) {
	d := openDir(t)
	// Dir takes its ModTimes from the filesystem: age the files with
	// os.Chtimes, and let re-Put set them to the real now.
	setAll := func(h framesync.Hash, _ time.Time) {
		old := time.Now().Add(-3 * time.Hour)
		if err := os.Chtimes(d.ForTest().Path(h), old, old); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	a, _ := blobstore.PutBytes(ctx, d, []byte("referenced"))
	b, _ := blobstore.PutBytes(ctx, d, []byte("young"))
	c, err := blobstore.PutBytes(ctx, d, []byte("garbage!"))
	if err != nil {
		t.Fatal(err)
	}
	setAll(a.Hash, time.Time{})
	setAll(c.Hash, time.Time{})
	st, err := blobstore.Collect(ctx, d, func(h framesync.Hash) bool { return h == a.Hash }, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if want := (blobstore.CollectStats{Scanned: 3, Kept: 1, Young: 1, Deleted: 1, BytesFreed: 8}); st != want {
		t.Fatalf("Collect = %+v, want %+v", st, want)
	}
	for h, want := range map[framesync.Hash]bool{a.Hash: true, b.Hash: true, c.Hash: false} {
		if ok, err := blobstore.Has(ctx, d, h); ok != want || err != nil {
			t.Errorf("after Collect, Has(%s) = %v, %v; want %v", h, ok, err, want)
		}
	}
}

// racingStore deletes a blob behind Collect's back, between Walk and the
// delete, as another hub's collector would.
type racingStore struct {
	blobstore.Store
	victim framesync.Hash
}

func (r racingStore) Walk(ctx context.Context, fn func(blobstore.Info) error) error {
	return r.Store.Walk(ctx, func(info blobstore.Info) error {
		if info.Hash == r.victim {
			if err := r.Store.Delete(ctx, info.Hash); err != nil {
				return err
			}
		}
		return fn(info)
	})
}

func TestCollectGone(t *testing.T) {
	m := blobstore.NewMemory()
	ctx := context.Background()
	info, err := blobstore.PutBytes(ctx, m, []byte("contested"))
	if err != nil {
		t.Fatal(err)
	}
	s := racingStore{Store: m, victim: info.Hash}
	st, err := blobstore.Collect(ctx, s, func(framesync.Hash) bool { return false }, time.Now().Add(time.Hour))
	if want := (blobstore.CollectStats{Scanned: 1, Gone: 1}); err != nil || st != want {
		t.Fatalf("Collect = %+v, %v; want %+v", st, err, want)
	}
}
