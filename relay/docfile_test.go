package relay

import (
	"os"
	"testing"

	"framesync"
	"framesync/blobstore"
)

// TestRoomLogCompactsAndReloads commits enough to compact the trajectory
// log, tears the log's tail as a crash would, and reopens the hub.
func TestRoomLogCompactsAndReloads(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, Blobs: blobstore.NewMemory(), NoSync: true}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := s.room(DefaultRoom)
	compacted := false
	for i := range 600 {
		r.mu.Lock()
		if _, err := r.traj.Append("test", framesync.Sum([]byte{byte(i), byte(i >> 8)})); err != nil {
			t.Fatal(err)
		}
		before := r.trajFile.logSize
		if err := r.persistTrajLocked(); err != nil {
			t.Fatal(err)
		}
		if r.trajFile.logSize < before {
			compacted = true
		}
		r.mu.Unlock()
	}
	if !compacted {
		t.Fatal("the log never compacted")
	}
	// One more change, then a torn record after it.
	r.mu.Lock()
	r.traj.Append("test", framesync.Sum([]byte("last")))
	r.persistTrajLocked()
	r.mu.Unlock()
	want, _ := r.traj.Entries()
	fh, err := os.OpenFile(r.trajFile.log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.Write([]byte{0, 0, 1, 0, 9, 9, 9})
	fh.Close()
	// Reopen without Close (a crash: no final snapshot).
	s.cancel(nil)
	s.closeLeases()
	s.wg.Wait()
	s2, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	r2, _ := s2.room(DefaultRoom)
	got, _ := r2.traj.Entries()
	if len(got) != len(want) || got[len(got)-1] != want[len(want)-1] {
		t.Fatalf("reloaded %d frames, want %d", len(got), len(want))
	}
}
