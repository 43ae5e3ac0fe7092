package blobstore_test

import (
	"context"
	"testing"
	"time"

	"framesync"
	"framesync/blobstore"
	"framesync/blobstore/blobstoretest"
)

// memoryHarness is the conformance harness for Memory.
var memoryHarness = blobstoretest.Harness{
	Open: func(t *testing.T) blobstore.Store { return blobstore.NewMemory() },
	Corrupt: func(t *testing.T, s blobstore.Store, h framesync.Hash) {
		t.Helper()
		if err := s.(*blobstore.Memory).ForTest().Corrupt(h); err != nil {
			t.Fatal(err)
		}
	},
	SetModTime: func(t *testing.T, s blobstore.Store, h framesync.Hash, mt time.Time) {
		t.Helper()
		if err := s.(*blobstore.Memory).ForTest().SetModTime(h, mt); err != nil {
			t.Fatal(err)
		}
	},
	InMemory: true,
}

func TestMemoryConformance(t *testing.T) {
	blobstoretest.Run(t, memoryHarness)
}

// fakeClock is a clock that moves only when told to.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) Advance(d time.Duration) { c.now = c.now.Add(d) }

func TestMemoryClock(t *testing.T) {
	m := blobstore.NewMemory()
	clock := &fakeClock{now: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}
	m.ForTest().SetClock(clock.Now)
	ctx := context.Background()
	info, err := blobstore.PutBytes(ctx, m, []byte("tick"))
	if err != nil {
		t.Fatal(err)
	}
	if !info.ModTime.Equal(clock.now) {
		t.Fatalf("Put ModTime = %v, want the clock's %v", info.ModTime, clock.now)
	}
	clock.Advance(time.Hour)
	if _, err := blobstore.PutBytes(ctx, m, []byte("tick")); err != nil {
		t.Fatal(err)
	}
	st, err := m.Stat(ctx, info.Hash)
	if err != nil || !st.ModTime.Equal(clock.now) {
		t.Fatalf("Stat after re-Put = %v, %v; want ModTime %v", st.ModTime, err, clock.now)
	}
	m.ForTest().SetClock(nil)
	if _, err := blobstore.PutBytes(ctx, m, []byte("tick")); err != nil {
		t.Fatal(err)
	}
	if st, _ := m.Stat(ctx, info.Hash); time.Since(st.ModTime) > time.Minute {
		t.Fatalf("after SetClock(nil), ModTime = %v; want now", st.ModTime)
	}
}
