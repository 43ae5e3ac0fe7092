package peer

import (
	"context"
	"errors"
	"testing"
	"time"

	"framesync"
	"framesync/relay"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

// labWithRoles starts a hub with access control and a room "lab" where
// alice writes and carol reads, and returns their rooms; p2p gives the
// clients libp2p hosts on 127.0.0.1.
func labWithRoles(t *testing.T, p2p bool) (h *relaytest.Hub, alice, carol *Room) {
	t.Helper()
	opts := relay.Options{Auth: &relay.AuthOptions{AdminUser: "root", AdminPassword: "root-password", Secret: []byte("0123456789abcdef0123456789abcdef"), PasswordCost: 4}}
	if p2p {
		opts.P2P = &relay.P2POptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}}
	}
	h = relaytest.Start(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	login := func(user, pw string) *Client { return loginClient(t, h, user, pw, p2p) }
	root := login("root", "root-password")
	for _, u := range []string{"alice", "carol"} {
		if err := root.doJSON(ctx, "user", "POST", "/api/users", map[string]string{"username": u, "password": u + "-password"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := root.CreateRoom(ctx, "lab", ""); err != nil {
		t.Fatal(err)
	}
	if err := root.SetACL(ctx, "lab", &wire.RoomACL{Roles: map[string]string{"root": "admin", "alice": "writer", "carol": "reader"}}); err != nil {
		t.Fatal(err)
	}
	return h, joinRoom(t, login("alice", "alice-password"), "lab"), joinRoom(t, login("carol", "carol-password"), "lab")
}

// loginClient logs user in to h with a new replica and connects.
func loginClient(t *testing.T, h *relaytest.Hub, user, pw string, p2p bool) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cache := t.TempDir()
	rp, err := Open(cache, h.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rp.Login(ctx, user, pw); err != nil {
		t.Fatal(err)
	}
	o := &Options{Cache: cache}
	if p2p {
		o.P2P = &P2POptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}}
	}
	c, err := Connect(ctx, h.URL, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestHostileReaderRefused: a client that ignores its reader role and
// changes the state document anyway has the change refused by the hub
// (and is told so); the writers never see it. (What it receives afterwards
// is not guaranteed: see "Who may do what between peers" in docs/p2p.md.)
func TestHostileReaderRefused(t *testing.T) {
	_, alice, carol := labWithRoles(t, false)
	if err := alice.State().SetSelection([]int64{3}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice's selection at carol", func() bool { s, _ := carol.State().Selection(); return len(s) == 1 })
	events, stop := carol.Subscribe(64)
	defer stop()
	carol.State().Doc().SetReadOnly("") // a client that ignores its role
	if err := carol.State().SetStep(5); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(15 * time.Second)
	for refused := false; !refused; {
		select {
		case e := <-events:
			refused = e.Type == EventError && e.Msg != nil && e.Msg.Code == "forbidden"
		case <-deadline:
			t.Fatal("carol was not told that the hub refused her change")
		}
	}
	// Alice edits after the refusal: had carol's change been applied at the
	// hub, it would have reached alice by the time alice's own edit is back.
	if err := alice.State().SetSelection([]int64{4, 5}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := alice.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := alice.State().Step(); s == 5 {
		t.Fatal("a reader's state change reached a writer")
	}
}

// TestReaderEditsFailAtOnce: a reader's state edits fail with Forbidden
// instead of staying local; a change of role at the hub takes effect for
// members already in the room.
func TestReaderEditsFailAtOnce(t *testing.T) {
	h, alice, carol := labWithRoles(t, false)
	if got := carol.Info().Role; got != "reader" {
		t.Fatalf("carol's role: %q", got)
	}
	if err := carol.State().SetStep(5); !errors.Is(err, framesync.Forbidden) {
		t.Fatalf("a reader's edit: %v", err)
	}
	if s, _ := carol.State().Step(); s == 5 {
		t.Fatal("the refused edit is in the reader's replica")
	}
	// The room's admin swaps the roles.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := loginClient(t, h, "root", "root-password", false)
	if err := root.SetACL(ctx, "lab", &wire.RoomACL{Roles: map[string]string{"root": "admin", "alice": "reader", "carol": "writer"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new roles to arrive", func() bool { return carol.Info().Role == "writer" && alice.Info().Role == "reader" })
	if err := carol.State().SetStep(6); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "carol's step at alice", func() bool { s, _ := alice.State().Step(); return s == 6 })
	if err := alice.State().SetStep(7); !errors.Is(err, framesync.Forbidden) {
		t.Fatalf("an edit after losing the writer role: %v", err)
	}
}
