package crdt_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"framesync/crdt"
	"framesync/crdt/crdttest"
)

// TestConcurrentUse edits, reads and syncs one document from several
// goroutines at once (run it with -race); afterwards the replicas agree.
func TestConcurrentUse(t *testing.T) {
	hub := newTrajectory(t)
	client, err := crdt.OpenTrajectory(mustDoc(t, hub.Save()), nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := crdt.NewSession(hub.Doc(), nil)
	cs := crdt.NewSession(client.Doc(), &crdt.SessionOptions{Accept: crdt.AllowActors(hub.Doc().ActorID())})
	var notified sync.Mutex
	seen := 0
	cancel := client.Doc().OnChange(func(from, to crdt.Heads) {
		if _, err := client.Diff(from, to); err != nil {
			t.Error(err)
		}
		notified.Lock()
		seen++
		notified.Unlock()
	})
	defer cancel()

	const writers, edits = 4, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range edits {
				c, err := hub.Append(fmt.Sprint("w", w), crdttest.Hash(1000*w+i))
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := hub.Replace("x", c.Entries[0].ID, 1, crdttest.Hash(1000*w+i+500)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range writers * edits {
			if _, err := hub.Entries(); err != nil {
				t.Error(err)
			}
			if _, err := hub.Generation(); err != nil {
				t.Error(err)
			}
		}
	})
	var syncer sync.WaitGroup
	syncer.Go(func() {
		for range 50 {
			if _, err := crdttest.TrySync(hs, cs); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	syncer.Wait()
	crdttest.Sync(t, hs, cs)
	if !slices.Equal(mustEntries(t, hub), mustEntries(t, client)) {
		t.Fatal("replicas differ")
	}
	if g, _ := client.Generation(); g != 2*writers*edits {
		t.Fatalf("generation %d, want %d", g, 2*writers*edits)
	}
	notified.Lock()
	defer notified.Unlock()
	if seen == 0 {
		t.Fatal("no change notifications")
	}
}
