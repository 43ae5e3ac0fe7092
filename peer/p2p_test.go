package peer_test

import (
	"context"
	"framesync/internal/testproc"
	"log/slog"
	"testing"
	"time"

	"framesync"
	"framesync/peer"
	"framesync/relay"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

func p2pHub(t *testing.T) *relaytest.Hub {
	t.Helper()
	return relaytest.Start(t, relay.Options{P2P: &relay.P2POptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}}})
}

// connectP2P connects a client with a libp2p host on 127.0.0.1 (or none
// to listen on: reachable through the hub's relay only).
func connectP2P(t *testing.T, h *relaytest.Hub, name string, listen bool) *peer.Client {
	t.Helper()
	opts := &peer.P2POptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}}
	if !listen {
		opts = &peer.P2POptions{NoListen: true}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := peer.Connect(ctx, h.URL, &peer.Options{
		Name: name, Cache: t.TempDir(), P2P: opts,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Logger: testproc.Logger(t, slog.LevelWarn),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestPeersSyncWithoutHub: three members sync the state document among
// themselves while the hub is down; when it returns, everyone converges.
func TestPeersSyncWithoutHub(t *testing.T) {
	h := p2pHub(t)
	var rooms []*peer.Room
	for _, n := range []string{"a", "b", "c"} {
		rooms = append(rooms, join(t, connectP2P(t, h, n, true), "default"))
	}
	a, b, c := rooms[0], rooms[1], rooms[2]
	res := must[*wire.CommitResult](t)(a.Append(ctxT(t), relaytest.Frame(5, 1), relaytest.Frame(5, 2)))
	id := res.Frames[1].ID
	eventually(t, "direct sync with both other members", func() bool {
		return a.Peers() == 2 && b.Peers() == 2 && c.Peers() == 2
	})
	for _, r := range rooms {
		if err := r.WaitGeneration(ctxT(t), res.Generation); err != nil {
			t.Fatal(err)
		}
	}

	h.Stop()
	if err := a.State().SetSelection([]int64{0, 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.State().SetBookmark(id, "from b, offline"); err != nil {
		t.Fatal(err)
	}
	converged := func(r *peer.Room) bool {
		sel, _ := r.State().Selection()
		bm, _ := r.State().Bookmarks()
		return len(sel) == 2 && bm[id] == "from b, offline"
	}
	for i, r := range rooms {
		eventually(t, "member "+string(rune('a'+i))+" to converge without the hub", func() bool { return converged(r) })
	}
	// B reads a frame it never fetched: from A's cache, the hub being down.
	f := must[*framesync.Frame](t)(b.Frame(ctxT(t), 1))
	if !f.Equal(relaytest.Frame(5, 2)) {
		t.Fatal("the frame from a peer differs")
	}

	h.Resume()
	d := join(t, connect(t, h, "d", "", false), "default")
	eventually(t, "the hub to get the offline edits", func() bool { return converged(d) })
}

// TestForgedTrajectoryRefused: a member that writes the trajectory itself
// cannot pass the change to others.
func TestForgedTrajectoryRefused(t *testing.T) {
	h := p2pHub(t)
	a := join(t, connectP2P(t, h, "a", true), "default")
	m := join(t, connectP2P(t, h, "mallory", true), "default")
	events, cancel := a.Subscribe(64)
	defer cancel()
	eventually(t, "direct sync", func() bool { return a.Peers() == 1 && m.Peers() == 1 })
	h.Stop() // so nothing but the peer stream can carry the change
	if _, err := m.Trajectory().Append("mallory", framesync.Sum([]byte("forged"))); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-events:
			if e.Type == peer.EventError {
				if a.Len() != 0 {
					t.Fatalf("the forged frame landed: %d frames", a.Len())
				}
				return
			}
		case <-timeout:
			t.Fatal("no refusal reported")
		}
	}
}
