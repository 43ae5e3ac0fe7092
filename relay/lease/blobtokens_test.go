package lease_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"framesync"
	"framesync/blobstore"
	"framesync/relay/lease"
	"framesync/relay/lease/leasetest"
	"framesync/relay/lease/redistest"
)

// TestBlobTokens: marks reserved by one store are loaded by another that
// shares only the blob store, from any starting point, and concurrent
// reservations only ever raise the mark.
func TestBlobTokens(t *testing.T) {
	blobs := blobstore.NewMemory()
	a := lease.NewBlobTokens(blobs, nil)
	if m, err := a.Load("r"); err != nil || m != 0 {
		t.Fatalf("empty store: %d %v", m, err)
	}
	if err := a.Reserve("r", 1500); err != nil {
		t.Fatal(err)
	}
	b := lease.NewBlobTokens(blobs, nil)
	if m, err := b.Load("r"); err != nil || m < 1500 {
		t.Fatalf("another hub loads %d %v, want at least 1500", m, err)
	}
	if m, err := b.Load("other"); err != nil || m != 0 {
		t.Fatalf("another room: %d %v", m, err)
	}
	// Many blocks, reserved by several hubs at once: a fresh store finds
	// the top by probing, for every count of blocks.
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			s := lease.NewBlobTokens(blobs, nil)
			for k := int64(1); k <= 40; k++ {
				if err := s.Reserve("busy", (k*7+int64(i))*1024); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	want := int64(40*7+3) * 1024
	for _, start := range []int64{0, 1, 1024, 5000, 100000, want} {
		local, err := lease.OpenFileTokens(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if start > 0 {
			if err := local.Reserve("busy", start); err != nil {
				t.Fatal(err)
			}
		}
		s := lease.NewBlobTokens(blobs, local)
		if m, err := s.Load("busy"); err != nil || m != want {
			t.Fatalf("load from local mark %d: %d %v, want %d", start, m, err, want)
		}
	}
	// A local mark above the stored blocks (a hub that kept its marks in
	// files before, or a blob store that was replaced) counts, and is
	// stored for the other hubs on the first Load; reservations above it
	// leave no gap.
	local, err := lease.OpenFileTokens(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := local.Reserve("r", 5120); err != nil {
		t.Fatal(err)
	}
	fresh := blobstore.NewMemory()
	s := lease.NewBlobTokens(fresh, local)
	if m, err := s.Load("r"); err != nil || m < 5120 {
		t.Fatalf("empty blob store, local mark 5120: %d %v", m, err)
	}
	if m, err := lease.NewBlobTokens(fresh, nil).Load("r"); err != nil || m < 5120 {
		t.Fatalf("another hub after the migration: %d %v", m, err)
	}
	if err := s.Reserve("r", 7168); err != nil {
		t.Fatal(err)
	}
	if m, err := lease.NewBlobTokens(fresh, nil).Load("r"); err != nil || m < 7168 {
		t.Fatalf("another hub after a reservation above the migrated mark: %d %v", m, err)
	}
	if _, err := s.Load("a:b"); !errors.Is(err, framesync.BadInput) {
		t.Fatalf("bad room: %v", err)
	}
	// Reservation blobs are recognisable (for a collector).
	if !lease.IsReservation(lease.ReservationBlob("r", 3)) || lease.IsReservation([]byte("frame data")) {
		t.Fatal("IsReservation")
	}
}

// failingStore is a blob store whose Stat and Put fail, as an unreachable
// S3 does.
type failingStore struct{ blobstore.Store }

var errStoreDown = errors.New("connection refused")

func (failingStore) Stat(context.Context, framesync.Hash) (blobstore.Info, error) {
	return blobstore.Info{}, errStoreDown
}

func (failingStore) Put(context.Context, io.Reader, framesync.Hash) (blobstore.Info, error) {
	return blobstore.Info{}, errStoreDown
}

// TestBlobTokensStoreDown: a blob store that fails makes Load and Reserve
// fail (so no token is granted) with an Unavailable error naming the room.
func TestBlobTokensStoreDown(t *testing.T) {
	s := lease.NewBlobTokens(failingStore{blobstore.NewMemory()}, nil)
	if _, err := s.Load("r"); !errors.Is(err, framesync.Unavailable) || !errors.Is(err, errStoreDown) {
		t.Fatalf("load: %v", err)
	}
	if err := s.Reserve("r", 10); !errors.Is(err, framesync.Unavailable) {
		t.Fatalf("reserve: %v", err)
	}
}

// TestRedisRestartFloorFromSharedBlobs closes the gap the package doc
// describes for per-hub files: hub A grants tokens that hub B never hears
// of (B is not running), Redis loses its data, and B, starting with an
// empty data directory, still grants above every token A granted, because
// A reserved them in the blob store both hubs share.
func TestRedisRestartFloorFromSharedBlobs(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	blobs := blobstore.NewMemory()
	open := func() *lease.Redis {
		local, err := lease.OpenFileTokens(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return newRedis(t, srv.URL, &lease.RedisOptions{Prefix: "p:", Tokens: lease.NewBlobTokens(blobs, local)})
	}
	a := open()
	last := leasetest.Churn(ctx, t, a, "r", "trajectory", "alice", 1500)
	a.Close()
	srv.Restart()
	b := open()
	g, err := b.Acquire(ctx, "r", "trajectory", "bob", time.Minute)
	if err != nil || g.Token <= last {
		t.Fatalf("hub B after redis lost its data: %+v %v, hub A granted up to %d", g, err, last)
	}
	// The control: with only its own (empty) file, B would reuse tokens.
	srv.Restart()
	local, err := lease.OpenFileTokens(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := newRedis(t, srv.URL, &lease.RedisOptions{Prefix: "p:", Tokens: local})
	if g, err := c.Acquire(ctx, "r", "trajectory", "carol", time.Minute); err != nil || g.Token > last {
		t.Fatalf("control: %+v %v", g, err)
	}
}
