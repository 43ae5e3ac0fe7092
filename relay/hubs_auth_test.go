package relay_test

import (
	"context"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"framesync/blobstore"
	"framesync/relay"
	"framesync/relay/lease/redistest"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

// authHubs starts n hubs with access control sharing one Redis and one
// blob store; it returns them, the Redis and the root token of hub 0.
func authHubs(t *testing.T, n int) ([]*relaytest.Hub, *redistest.Server, string) {
	t.Helper()
	rs := redistest.Start(t)
	opts := relay.Options{RedisURL: rs.URL, RedisPrefix: "auth:", Blobs: blobstore.NewMemory(),
		Auth: &relay.AuthOptions{AdminUser: "root", AdminPassword: "root-password", Secret: testSecret, PasswordCost: bcrypt.MinCost}}
	out := make([]*relaytest.Hub, n)
	for i := range out {
		out[i] = relaytest.Start(t, opts)
	}
	return out, rs, login(t, out[0], "root", "root-password")
}

// tryLogin returns the status of a login.
func tryLogin(h *relaytest.Hub, user, password string) int {
	code, _ := h.Do("POST", "/api/auth/login", wire.LoginRequest{Username: user, Password: password})
	return code
}

// roleOn returns the role the holder of tok has in room on hub h ("" for
// none), or the status when the room info cannot be read.
func roleOn(t *testing.T, h *relaytest.Hub, room, tok string) (string, int) {
	t.Helper()
	var info struct {
		Role string `json:"role"`
	}
	code := h.JSON("GET", "/api/rooms/"+room, nil, &info, bearerHdr(tok)...)
	return info.Role, code
}

// TestHubsShareAccounts: users created, revoked and deleted through one
// hub, and access lists changed through one hub, take effect on the
// other, for new requests and for open connections.
func TestHubsShareAccounts(t *testing.T) {
	hs, _, root := authHubs(t, 2)
	a, b := hs[0], hs[1]

	// A user created on a logs in on b (b applied the change; no restart).
	if code, body := a.Do("POST", "/api/users", wire.LoginRequest{Username: "alice", Password: "alice-password"}, bearerHdr(root)...); code != 201 {
		t.Fatalf("create alice on a: %d %s", code, body)
	}
	waitFor(t, 10*time.Second, "alice can log in on b", func() bool { return tryLogin(b, "alice", "alice-password") == 200 })
	// The same name through b is a conflict, as on one hub.
	if code, _ := b.Do("POST", "/api/users", wire.LoginRequest{Username: "alice", Password: "other-password"}, bearerHdr(root)...); code != 409 {
		t.Fatalf("create alice again on b: %d, want 409", code)
	}
	alice := login(t, b, "alice", "alice-password")

	// A room made on a; alice gets writer through b's access list route.
	if code, body := a.Do("POST", "/api/rooms", wire.CreateRoomRequest{Name: "lab"}, bearerHdr(root)...); code != 201 {
		t.Fatalf("create lab: %d %s", code, body)
	}
	waitFor(t, 10*time.Second, "lab on b", func() bool { _, code := roleOn(t, b, "lab", root); return code == 200 })
	acl := wire.RoomACL{Roles: map[string]string{"alice": relay.RoleWriter}}
	if code, body := b.Do("PUT", "/api/rooms/lab/acl", acl, bearerHdr(root)...); code != 200 {
		t.Fatalf("acl on b: %d %s", code, body)
	}
	if role, code := roleOn(t, b, "lab", alice); role != relay.RoleWriter {
		t.Fatalf("alice on b right after the change: %q %d", role, code)
	}
	waitFor(t, 10*time.Second, "alice is a writer on a", func() bool { role, _ := roleOn(t, a, "lab", alice); return role == relay.RoleWriter })

	// Alice joined on a; her role drops to reader through b: a tells her.
	ca := dialAs(t, a, "alice-a", alice)
	join(t, ca, "lab")
	acl.Roles["alice"] = relay.RoleReader
	if code, body := b.Do("PUT", "/api/rooms/lab/acl", acl, bearerHdr(root)...); code != 200 {
		t.Fatalf("acl on b: %d %s", code, body)
	}
	ca.Wait(func(m *wire.Msg) bool { return m.T == wire.MsgRole && m.Room == "lab" && m.State == relay.RoleReader }, 10*time.Second)
	if role, _ := roleOn(t, a, "lab", alice); role != relay.RoleReader {
		t.Fatalf("alice on a after the role message: %q", role)
	}
	// Removed from the list through b: a evicts her from the room.
	acl.Roles = map[string]string{}
	if code, body := b.Do("PUT", "/api/rooms/lab/acl", acl, bearerHdr(root)...); code != 200 {
		t.Fatalf("acl on b: %d %s", code, body)
	}
	ca.Wait(func(m *wire.Msg) bool { return m.T == wire.MsgError && m.Room == "lab" }, 10*time.Second)
	if _, code := roleOn(t, a, "lab", alice); code != 403 {
		t.Fatalf("alice reads lab on a after removal: %d, want 403", code)
	}

	// Logging out on b ends the token on a, and a's connection with it.
	if code, body := b.Do("POST", "/api/auth/logout", nil, bearerHdr(alice)...); code != 204 {
		t.Fatalf("logout on b: %d %s", code, body)
	}
	select {
	case <-ca.Closed():
	case <-time.After(10 * time.Second):
		t.Fatal("a kept the connection of a token revoked on b")
	}
	if code, _ := a.Do("GET", "/api/auth/me", nil, bearerHdr(alice)...); code != 401 {
		t.Fatalf("revoked token on a: %d, want 401", code)
	}

	// Deleting the user on a: b refuses her logins and old tokens.
	alice2 := login(t, b, "alice", "alice-password")
	if code, body := a.Do("DELETE", "/api/users/alice", nil, bearerHdr(root)...); code != 204 {
		t.Fatalf("delete alice on a: %d %s", code, body)
	}
	waitFor(t, 10*time.Second, "b refuses alice", func() bool {
		code, _ := b.Do("GET", "/api/auth/me", nil, bearerHdr(alice2)...)
		return code == 401 && tryLogin(b, "alice", "alice-password") == 401
	})
	if code, _ := b.Do("DELETE", "/api/users/alice", nil, bearerHdr(root)...); code != 404 {
		t.Fatalf("delete alice again on b: %d, want 404", code)
	}
	// A new alice does not bring the old one's tokens back.
	if code, body := b.Do("POST", "/api/users", wire.LoginRequest{Username: "alice", Password: "new-password"}, bearerHdr(root)...); code != 201 {
		t.Fatalf("create a new alice on b: %d %s", code, body)
	}
	waitFor(t, 10*time.Second, "the new alice on a", func() bool { return tryLogin(a, "alice", "new-password") == 200 })
	for _, h := range hs {
		if code, _ := h.Do("GET", "/api/auth/me", nil, bearerHdr(alice2)...); code != 401 {
			t.Fatalf("the deleted alice's token after a new alice was made: %d, want 401", code)
		}
	}
}

// TestHubsShareAccountsJoining: a hub that had users before it joined the
// deployment publishes them; a hub that was down while accounts changed
// catches up when it starts; with Redis down, account changes fail with
// 503 and logins go on.
func TestHubsShareAccountsJoining(t *testing.T) {
	hs, rs, root := authHubs(t, 1)
	a := hs[0]
	// c runs alone first, with a user of its own.
	c := relaytest.Start(t, relay.Options{Auth: a.Opts.Auth})
	cRoot := login(t, c, "root", "root-password")
	if code, body := c.Do("POST", "/api/users", wire.LoginRequest{Username: "carol", Password: "carol-password"}, bearerHdr(cRoot)...); code != 201 {
		t.Fatalf("create carol on c: %d %s", code, body)
	}
	c.Stop()
	// While c is down, a user is made and one is deleted on a.
	for _, u := range []string{"dave", "erin"} {
		if code, body := a.Do("POST", "/api/users", wire.LoginRequest{Username: u, Password: u + "-password"}, bearerHdr(root)...); code != 201 {
			t.Fatalf("create %s: %d %s", u, code, body)
		}
	}
	if code, body := a.Do("DELETE", "/api/users/erin", nil, bearerHdr(root)...); code != 204 {
		t.Fatalf("delete erin: %d %s", code, body)
	}
	c.Opts.RedisURL, c.Opts.RedisPrefix, c.Opts.Blobs = a.Opts.RedisURL, a.Opts.RedisPrefix, a.Opts.Blobs
	c.Restart()
	if code := tryLogin(c, "dave", "dave-password"); code != 200 {
		t.Fatalf("dave on c after it joined: %d", code)
	}
	if code := tryLogin(c, "erin", "erin-password"); code != 401 {
		t.Fatalf("erin (deleted) on c: %d", code)
	}
	waitFor(t, 10*time.Second, "carol, c's own user, can log in on a", func() bool { return tryLogin(a, "carol", "carol-password") == 200 })

	// Redis down: changes are refused with 503, logins and tokens work.
	rs.Stop()
	code, body := a.Do("POST", "/api/users", wire.LoginRequest{Username: "frank", Password: "frank-password"}, bearerHdr(root)...)
	if code != 503 {
		t.Fatalf("create a user with redis down: %d %s", code, body)
	}
	if code := tryLogin(a, "frank", "frank-password"); code != 401 {
		t.Fatalf("frank exists after the refused create: %d", code)
	}
	dave := login(t, a, "dave", "dave-password")
	if code, _ := a.Do("GET", "/api/auth/me", nil, bearerHdr(dave)...); code != 200 {
		t.Fatalf("a token with redis down: %d", code)
	}
}

// TestHubsKeepRevocationsAfterRedisLostData: a token logged out before
// Redis lost its data stays refused on a hub that joins afterwards (the
// hubs publish their revocations again).
func TestHubsKeepRevocationsAfterRedisLostData(t *testing.T) {
	hs, rs, root := authHubs(t, 2)
	a := hs[0]
	if code, body := a.Do("POST", "/api/users", wire.LoginRequest{Username: "alice", Password: "alice-password"}, bearerHdr(root)...); code != 201 {
		t.Fatalf("create alice: %d %s", code, body)
	}
	alice := login(t, a, "alice", "alice-password")
	if code, body := a.Do("POST", "/api/auth/logout", nil, bearerHdr(alice)...); code != 204 {
		t.Fatalf("logout: %d %s", code, body)
	}
	rs.Restart() // empty
	rdb := rs.Client(t)
	waitFor(t, 20*time.Second, "both hubs to publish again", func() bool {
		n, _ := rdb.ZCard(context.Background(), "auth:revoked").Result()
		h, _ := rdb.SCard(context.Background(), "auth:hubs").Result()
		return n == 1 && h == 2
	})
	opts := hs[1].Opts
	opts.Dir = "" // a new, empty hub
	c := relaytest.Start(t, opts)
	waitFor(t, 10*time.Second, "alice on the new hub", func() bool { return tryLogin(c, "alice", "alice-password") == 200 })
	if code, _ := c.Do("GET", "/api/auth/me", nil, bearerHdr(alice)...); code != 401 {
		t.Fatalf("the logged-out token on a hub that joined after the loss: %d, want 401", code)
	}
}
