package peer

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	lpeer "github.com/libp2p/go-libp2p/core/peer"

	"framesync"
	"framesync/relay"
	"framesync/relay/relaytest"
)

func p2pClient(t *testing.T, h *relaytest.Hub, listen bool) *Client {
	t.Helper()
	opts := &P2POptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}}
	if !listen {
		opts = &P2POptions{NoListen: true}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Connect(ctx, h.URL, &Options{Cache: t.TempDir(), P2P: opts, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func joinRoom(t *testing.T, c *Client, name string) *Room {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := c.Join(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

// TestRelayAndOutsiders: a member that cannot be dialled is reached
// through the hub's relay (a 32 MB blob passes intact); a peer that is not
// in the room gets neither its directory, nor a relay circuit to its
// members, nor their blobs.
func TestRelayAndOutsiders(t *testing.T) {
	h := relaytest.Start(t, relay.Options{P2P: &relay.P2POptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}}, MaxUpload: 64 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Neither member listens: they can only meet through the hub's relay.
	a := joinRoom(t, p2pClient(t, h, false), "default")
	hidden := p2pClient(t, h, false)
	c := joinRoom(t, hidden, "default")
	waitFor(t, "a sync stream through the relay", func() bool { return a.Peers() == 1 && c.Peers() == 1 })

	// A 32 MB blob only the hidden member has, fetched by A through the relay.
	big := bytes.Repeat([]byte("0123456789abcdef"), 2<<20)
	h32 := framesync.Sum(big)
	if _, err := hidden.rep.blobs.Put(ctx, bytes.NewReader(big), h32); err != nil {
		t.Fatal(err)
	}
	hid := hidden.p2p.host.ID()
	got, err := a.c.p2p.fetchFrom(ctx, hid, "default", h32)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("32 MB through the relay: %d bytes, %v", len(got), err)
	}
	conns := a.c.p2p.host.Network().ConnsToPeer(hid)
	for _, conn := range conns {
		if !isCircuit(conn.RemoteMultiaddr().String()) {
			t.Fatalf("a direct connection between peers without addresses: %s", conn.RemoteMultiaddr())
		}
	}
	if len(conns) == 0 {
		t.Fatal("no connection between the members")
	}
	// State edits travel the same way.
	if err := a.State().SetStep(3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the step through the relay", func() bool { s, _ := c.State().Step(); return s == 3 })

	// An outsider: bound to the hub, member of another room only.
	h.JSON("POST", "/api/rooms", map[string]string{"name": "other"}, nil)
	out := p2pClient(t, h, true)
	joinRoom(t, out, "other")
	p := out.p2p
	hubID := p.hub.ID
	if _, err := p.directory(ctx, hubID, "default"); !errors.Is(err, framesync.Forbidden) {
		t.Fatalf("outsider's directory of default: %v", err)
	}
	// A listening member refuses the outsider's blob requests.
	l := joinRoom(t, p2pClient(t, h, true), "default")
	p.host.Peerstore().AddAddrs(l.c.p2p.host.ID(), l.c.p2p.host.Addrs(), time.Hour)
	if _, err := l.c.rep.blobs.Put(ctx, bytes.NewReader(big), h32); err != nil {
		t.Fatal(err)
	}
	if _, err := p.fetchFrom(ctx, l.c.p2p.host.ID(), "default", h32); !errors.Is(err, framesync.Forbidden) {
		t.Fatalf("outsider fetching a member's blob: %v", err)
	}
	// And the relay refuses a circuit to a hidden member.
	circuit := a.c.p2p.host.Peerstore().Addrs(hid)
	p.host.Peerstore().AddAddrs(hid, circuit, time.Hour)
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	if err := p.host.Connect(cctx, lpeer.AddrInfo{ID: hid}); err == nil {
		t.Fatal("the relay connected an outsider to a member")
	}
}

func isCircuit(addr string) bool { return bytes.Contains([]byte(addr), []byte("p2p-circuit")) }

// TestRelayWhileHubHTTPDown: three members, two of which can only be
// reached through the hub's relay, keep editing while the hub's HTTP and
// WebSocket are down, even over a new circuit, and the hub gets everything
// back.
func TestRelayWhileHubHTTPDown(t *testing.T) {
	h := relaytest.Start(t, relay.Options{P2P: &relay.P2POptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}}})
	a := joinRoom(t, p2pClient(t, h, false), "default")
	b := joinRoom(t, p2pClient(t, h, false), "default")
	c := joinRoom(t, p2pClient(t, h, true), "default")
	rooms := []*Room{a, b, c}
	waitFor(t, "sync streams between all three", func() bool { return a.Peers() == 2 && b.Peers() == 2 && c.Peers() == 2 })

	h.StopHTTP()
	waitFor(t, "all to notice", func() bool { return !a.c.Connected() && !b.c.Connected() && !c.c.Connected() })
	if err := a.State().SetStep(7); err != nil {
		t.Fatal(err)
	}
	if err := c.State().SetBookmark("f1", "from c"); err != nil {
		t.Fatal(err)
	}
	firstRound := func(r *Room) bool {
		s, _ := r.State().Step()
		bm, _ := r.State().Bookmarks()
		return s == 7 && bm["f1"] == "from c"
	}
	for _, r := range rooms {
		waitFor(t, "the edits over the open connections", func() bool { return firstRound(r) })
	}

	// Break the circuit between the hidden members: they dial again
	// through the relay, which still knows them.
	a.c.p2p.host.Network().ClosePeer(b.c.p2p.host.ID())
	waitFor(t, "a new relayed stream", func() bool { return a.Peers() == 2 && b.Peers() == 2 })
	if err := b.State().SetSelection([]int64{4}); err != nil {
		t.Fatal(err)
	}
	converged := func(r *Room) bool {
		sel, _ := r.State().Selection()
		return firstRound(r) && len(sel) == 1 && sel[0] == 4
	}
	for _, r := range rooms {
		waitFor(t, "the selection over a new circuit", func() bool { return converged(r) })
	}

	h.ResumeHTTP()
	d := joinRoom(t, p2pClient(t, h, true), "default")
	waitFor(t, "the hub to get every edit", func() bool { return converged(d) })
}

// TestPeerRoles: between members, as at the hub, a hostile reader's state
// changes are refused.
func TestPeerRoles(t *testing.T) {
	h, alice, carol := labWithRoles(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	events, stop := alice.Subscribe(64)
	defer stop()
	waitFor(t, "a sync stream", func() bool { return alice.Peers() == 1 && carol.Peers() == 1 })
	h.Stop() // only the peers are left

	carol.State().Doc().SetReadOnly("") // a client that ignores its role
	if err := carol.State().SetStep(5); err != nil {
		t.Fatal(err)
	}
	for refused := false; !refused; {
		select {
		case e := <-events:
			refused = e.Type == EventError
		case <-ctx.Done():
			t.Fatal("the reader's change was not refused")
		}
	}
	if s, _ := alice.State().Step(); s == 5 {
		t.Fatal("a reader's state change was applied")
	}
}
