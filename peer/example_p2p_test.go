package peer_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"time"

	"framesync/blobstore"
	"framesync/peer"
	"framesync/relay"
)

// Two members of a room keep collaborating while the hub is down: they met
// through the hub (its directory and relay), then sync the room's state
// document directly over libp2p.
func Example_hubDown() {
	dir, _ := os.MkdirTemp("", "framesync-example-")
	defer os.RemoveAll(dir)
	hub, err := relay.New(relay.Options{Dir: dir, Blobs: blobstore.NewMemory(),
		P2P: &relay.P2POptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}}})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(hub.Handler())
	stopHub := func() { hub.Close(); srv.Close() }

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	member := func(name string) *peer.Room {
		c, err := peer.Connect(ctx, srv.URL, &peer.Options{Name: name, Cache: dir + "/" + name,
			P2P: &peer.P2POptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}}})
		if err != nil {
			panic(err)
		}
		r, err := c.Join(ctx, "default")
		if err != nil {
			panic(err)
		}
		return r
	}
	alice, bob := member("alice"), member("bob")
	defer alice.Client().Close()
	defer bob.Client().Close()
	waitUntil(func() bool { return alice.Peers() == 1 && bob.Peers() == 1 }) // they sync directly

	stopHub()
	alice.State().SetStep(42)
	waitUntil(func() bool { step, _ := bob.State().Step(); return step == 42 })
	fmt.Println("bob follows alice to frame 42 with the hub down")
	// Output: bob follows alice to frame 42 with the hub down
}

// waitUntil polls cond with a deadline.
func waitUntil(cond func() bool) {
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			panic("timed out")
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}
