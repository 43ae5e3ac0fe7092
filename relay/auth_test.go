package relay_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/crypto/bcrypt"

	"framesync"
	"framesync/blobstore"
	"framesync/crdt"
	"framesync/relay"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// authHub starts a hub with access control and these users: alice (admin
// of rooms lab and pub, which she creates), bob (writer in lab), carol
// (reader in lab), dave (no role) and root (the hub admin). pub is public.
// Each room holds one frame. It returns the hub and a token per user.
func authHub(t *testing.T) (*relaytest.Hub, map[string]string) {
	t.Helper()
	h := relaytest.Start(t, relay.Options{Auth: &relay.AuthOptions{AdminUser: "root", AdminPassword: "root-password", Secret: testSecret, PasswordCost: bcrypt.MinCost}})
	tok := map[string]string{"anon": "", "root": login(t, h, "root", "root-password")}
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		if code, body := h.Do("POST", "/api/users", wire.LoginRequest{Username: u, Password: u + "-password"}, bearerHdr(tok["root"])...); code != 201 {
			t.Fatalf("create %s: %d %s", u, code, body)
		}
		tok[u] = login(t, h, u, u+"-password")
	}
	for _, room := range []string{"lab", "pub"} {
		if code, body := h.Do("POST", "/api/rooms", wire.CreateRoomRequest{Name: room}, bearerHdr(tok["alice"])...); code != 201 {
			t.Fatalf("create %s: %d %s", room, code, body)
		}
	}
	acl := wire.RoomACL{Roles: map[string]string{"alice": relay.RoleAdmin, "bob": relay.RoleWriter, "carol": relay.RoleReader}}
	if code, body := h.Do("PUT", "/api/rooms/lab/acl", acl, bearerHdr(tok["alice"])...); code != 200 {
		t.Fatalf("lab acl: %d %s", code, body)
	}
	pub := wire.RoomACL{Public: true, Roles: map[string]string{"alice": relay.RoleAdmin}}
	if code, body := h.Do("PUT", "/api/rooms/pub/acl", pub, bearerHdr(tok["alice"])...); code != 200 {
		t.Fatalf("pub acl: %d %s", code, body)
	}
	for i, room := range []string{"lab", "pub"} {
		c := dialAs(t, h, "alice", tok["alice"])
		join(t, c, room)
		g := lock(t, c, room, "trajectory", time.Minute)
		b, _ := msgpack.Marshal(&wire.CommitRequest{Op: wire.OpAppend, Token: g.Token, Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(3, float64(i)))}})
		if code, body := h.Do("POST", "/api/rooms/"+room+"/commit", b, append(bearerHdr(tok["alice"]), "Content-Type", wire.ContentMsgpack)...); code != 200 {
			t.Fatalf("seed %s: %d %s", room, code, body)
		}
		c.Close()
	}
	return h, tok
}

func login(t *testing.T, h *relaytest.Hub, user, password string) string {
	t.Helper()
	var res wire.LoginResponse
	if code := h.JSON("POST", "/api/auth/login", wire.LoginRequest{Username: user, Password: password}, &res); code != 200 || res.Token == "" {
		t.Fatalf("login %s: %d", user, code)
	}
	return res.Token
}

func bearerHdr(tok string) []string {
	if tok == "" {
		return nil
	}
	return []string{"Authorization", "Bearer " + tok}
}

func dialAs(t *testing.T, h *relaytest.Hub, id, tok string) *relaytest.Client {
	t.Helper()
	c, err := relaytest.DialURL(t, h.WSURL()+"?token="+tok, id, id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// blobOf returns the hash of frame 0's positions blob in room.
func blobOf(t *testing.T, h *relaytest.Hub, tok, room string) string {
	t.Helper()
	var man map[string]any
	if code := h.JSON("GET", "/api/rooms/"+room+"/frames/0/manifest", nil, &man, bearerHdr(tok)...); code != 200 {
		t.Fatalf("manifest: %d", code)
	}
	return man["fields"].(map[string]any)["positions"].(string)
}

// TestAccessMatrix checks every HTTP route for every role: each gets
// exactly the status it should.
func TestAccessMatrix(t *testing.T) {
	h, tok := authHub(t)
	labBlob := blobOf(t, h, tok["alice"], "lab")
	pubBlob := blobOf(t, h, tok["alice"], "pub")
	commit, _ := msgpack.Marshal(&wire.CommitRequest{Op: wire.OpAppend})
	users := []string{"anon", "dave", "carol", "bob", "alice", "root"}
	// Expected status per user, in the order of users.
	reader := []int{401, 403, 200, 200, 200, 200}
	writer := []int{401, 403, 403, 428, 428, 428} // 428: allowed, but no fencing token sent
	admin := []int{401, 403, 403, 403, 200, 200}
	for _, tc := range []struct {
		method, path string
		body         any
		want         []int
	}{
		{"GET", "/api/rooms/lab", nil, reader},
		{"GET", "/api/rooms/lab/frames/0", nil, reader},
		{"GET", "/api/rooms/lab/frames?start=0&stop=1", nil, reader},
		{"GET", "/api/rooms/lab/frames/0/manifest", nil, reader},
		{"GET", "/api/rooms/lab/frames/0/history", nil, reader},
		{"GET", "/api/rooms/lab/changes?since=0", nil, reader},
		{"GET", "/api/rooms/lab/docs/trajectory", nil, reader},
		{"GET", "/api/rooms/lab/docs/state", nil, reader},
		{"POST", "/api/rooms/lab/commit", commit, writer},
		{"PUT", "/api/rooms/lab/frames/0?base=1", encodeFrame(t, relaytest.Frame(3, 5)), writer},
		{"POST", "/api/rooms/lab/import?name=x.xyz", []byte("not xyz"), []int{401, 403, 403, 202, 202, 202}},
		{"GET", "/api/rooms/lab/jobs", nil, reader},
		{"GET", "/api/rooms/lab/jobs/0123456789abcdef", nil, []int{401, 403, 404, 404, 404, 404}},
		{"GET", "/api/rooms/lab/acl", nil, admin},
		{"PUT", "/api/rooms/lab/acl", wire.RoomACL{Roles: map[string]string{"alice": "admin", "bob": "writer", "carol": "reader"}}, admin},
		// Public room: readable by all, writable by members only.
		{"GET", "/api/rooms/pub/frames/0", nil, []int{200, 200, 200, 200, 200, 200}},
		{"POST", "/api/rooms/pub/commit", commit, []int{401, 403, 403, 403, 428, 428}},
		// Blobs: readable through a room that references them; a blob
		// the caller cannot reach looks missing.
		{"GET", "/api/blobs/" + labBlob, nil, []int{404, 404, 200, 200, 200, 200}},
		{"HEAD", "/api/blobs/" + labBlob, nil, []int{404, 404, 200, 200, 200, 200}},
		{"GET", "/api/blobs/" + pubBlob, nil, []int{200, 200, 200, 200, 200, 200}},
		{"POST", "/api/blobs/missing", wire.MissingRequest{Hashes: []string{labBlob}}, []int{401, 200, 200, 200, 200, 200}},
		{"PUT", "/api/blobs/" + framesync.Sum([]byte("x")).String(), []byte("x"), []int{401, 201, 200, 200, 200, 200}},
		// Users: the hub admin only.
		{"POST", "/api/users", wire.LoginRequest{Username: "eve", Password: "eve-password"}, []int{401, 403, 403, 403, 403, 201}},
		{"DELETE", "/api/users/eve", nil, []int{401, 403, 403, 403, 403, 204}},
		{"GET", "/api/auth/me", nil, []int{200, 200, 200, 200, 200, 200}},
		{"GET", "/healthz", nil, []int{200, 200, 200, 200, 200, 200}},
	} {
		for i, u := range users {
			hdr := bearerHdr(tok[u])
			if strings.HasSuffix(tc.path, "commit") {
				hdr = append(hdr, "Content-Type", wire.ContentMsgpack)
			}
			code, body := h.Do(tc.method, tc.path, tc.body, hdr...)
			if code != tc.want[i] {
				t.Errorf("%s %s as %s: %d, want %d: %s", tc.method, tc.path, u, code, tc.want[i], body)
			}
		}
	}
	// Deleting a room: its admin only.
	for i, u := range users[:4] {
		if code, _ := h.Do("DELETE", "/api/rooms/lab", nil, bearerHdr(tok[u])...); code != []int{401, 403, 403, 403}[i] {
			t.Errorf("DELETE lab as %s: %d", u, code)
		}
	}
	// The listing shows each user the rooms it can read.
	for u, want := range map[string]string{"anon": "[pub]", "dave": "[default pub]", "carol": "[default lab pub]", "root": "[default lab pub]"} {
		var l wire.RoomsListing
		h.JSON("GET", "/api/rooms", nil, &l, bearerHdr(tok[u])...)
		var names []string
		for _, r := range l.Rooms {
			names = append(names, r.Name)
		}
		if fmt.Sprint(names) != want {
			t.Errorf("rooms of %s: %v, want %s", u, names, want)
		}
	}
	if code, _ := h.Do("DELETE", "/api/rooms/lab", nil, bearerHdr(tok["alice"])...); code != 204 {
		t.Errorf("DELETE lab as alice: %d", code)
	}
}

func TestTokens(t *testing.T) {
	h, tok := authHub(t)
	if code, body := h.Do("GET", "/api/rooms/lab", nil, "Authorization", "Bearer fs1.forged.token"); code != 401 || !strings.Contains(string(body), "log in again") {
		t.Fatalf("forged token: %d %s", code, body)
	}
	var res wire.LoginResponse
	if code := h.JSON("POST", "/api/auth/login", wire.LoginRequest{Username: "bob", Password: "wrong"}, &res); code != 401 {
		t.Fatalf("wrong password: %d", code)
	}
	// Refresh: a new token works, the old one is revoked.
	if code := h.JSON("POST", "/api/auth/refresh", nil, &res, bearerHdr(tok["bob"])...); code != 200 || res.Token == tok["bob"] {
		t.Fatalf("refresh: %d", code)
	}
	if code, _ := h.Do("GET", "/api/rooms/lab", nil, bearerHdr(tok["bob"])...); code != 401 {
		t.Fatalf("refreshed-away token: %d", code)
	}
	if code, _ := h.Do("GET", "/api/rooms/lab", nil, bearerHdr(res.Token)...); code != 200 {
		t.Fatalf("new token: %d", code)
	}
	// Logout revokes, also across a restart, and closes the token's
	// connections.
	ws := dialAs(t, h, "bob", res.Token)
	join(t, ws, "lab")
	if code, _ := h.Do("POST", "/api/auth/logout", nil, bearerHdr(res.Token)...); code != 204 {
		t.Fatalf("logout: %d", code)
	}
	select {
	case <-ws.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("the connection of a revoked token stays open")
	}
	if ws.CloseCode() != websocket.ClosePolicyViolation {
		t.Fatalf("close code %d", ws.CloseCode())
	}
	h.Restart()
	if code, _ := h.Do("GET", "/api/rooms/lab", nil, bearerHdr(res.Token)...); code != 401 {
		t.Fatalf("logged-out token after restart: %d", code)
	}
	if code, _ := h.Do("GET", "/api/rooms/lab", nil, bearerHdr(tok["carol"])...); code != 200 {
		t.Fatalf("carol's token after restart: %d", code)
	}
	// Registration is closed unless configured.
	if code, _ := h.Do("POST", "/api/auth/register", wire.LoginRequest{Username: "zed", Password: "zed-password"}); code != 403 {
		t.Fatalf("register: %d", code)
	}
}

func TestAuthNeedsALongSecret(t *testing.T) {
	_, err := relay.New(relay.Options{Dir: t.TempDir(), Blobs: blobstore.NewMemory(), Auth: &relay.AuthOptions{AdminUser: "root", AdminPassword: "pw-pw-pw-pw", Secret: []byte("short")}})
	if err == nil || !strings.Contains(err.Error(), "at least 32 bytes") {
		t.Fatalf("short secret: %v", err)
	}
}

// TestControlChannelAccess: the same rules on the WebSocket.
func TestControlChannelAccess(t *testing.T) {
	h, tok := authHub(t)
	expectErr := func(c *relaytest.Client, m *wire.Msg, code string) {
		t.Helper()
		r := c.Request(m)
		if r.T != wire.MsgError || r.Code != code {
			t.Fatalf("%s %s as %s: %s %s %s, want %s", m.T, m.Room, c.ID, r.T, r.Code, r.Message, code)
		}
	}
	expectErr(dialAs(t, h, "anon", ""), &wire.Msg{T: wire.MsgJoin, Room: "lab"}, "unauthorized")
	expectErr(dialAs(t, h, "dave", tok["dave"]), &wire.Msg{T: wire.MsgJoin, Room: "lab"}, "forbidden")
	join(t, dialAs(t, h, "anon2", ""), "pub") // public: anyone may read

	carol := dialAs(t, h, "carol", tok["carol"])
	join(t, carol, "lab")
	expectErr(carol, &wire.Msg{T: wire.MsgLock, Room: "lab", Target: "trajectory"}, "forbidden")
	expectErr(carol, &wire.Msg{T: wire.MsgPresent, Room: "lab"}, "forbidden")
	bob := dialAs(t, h, "bob", tok["bob"])
	join(t, bob, "lab")
	lock(t, bob, "lab", "trajectory", time.Minute)

	// A reader's change to the state document is refused, nothing applied.
	stateHeads := func() string {
		_, hdr := headerOf(t, h, "/api/rooms/lab/docs/state", tok["alice"])
		return hdr
	}
	headsBefore := stateHeads()
	st, err := crdt.NewState(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetStep(42); err != nil {
		t.Fatal(err)
	}
	sess := crdt.NewSession(st.Doc(), nil)
	var refused *wire.Msg
	for range 10 {
		msg, ok := sess.Next()
		if !ok {
			break
		}
		carol.Send(&wire.Msg{T: wire.MsgSync, Room: "lab", Doc: wire.DocState, Data: msg})
		m, err := carol.WaitErr(func(m *wire.Msg) bool {
			return (m.T == wire.MsgSync && m.Doc == wire.DocState) || m.T == wire.MsgError
		}, 5*time.Second)
		if err != nil {
			break
		}
		if m.T == wire.MsgError {
			refused = m
			break
		}
		sess.Receive(m.Data)
	}
	if refused == nil || refused.Code != "forbidden" {
		t.Fatalf("reader's state change: %+v", refused)
	}
	if stateHeads() != headsBefore {
		t.Fatal("a reader changed the state document")
	}

	// Withdrawing carol's role removes her from the room.
	acl := wire.RoomACL{Roles: map[string]string{"alice": "admin", "bob": "writer"}}
	if code, body := h.Do("PUT", "/api/rooms/lab/acl", acl, bearerHdr(tok["alice"])...); code != 200 {
		t.Fatalf("acl: %d %s", code, body)
	}
	carol.Wait(func(m *wire.Msg) bool { return m.T == wire.MsgError && strings.Contains(m.Message, "withdrawn") }, 5*time.Second)
	expectErr(carol, &wire.Msg{T: wire.MsgJoin, Room: "lab"}, "forbidden")
}

// headerOf GETs path and returns the status and X-Automerge-Heads.
func headerOf(t *testing.T, h *relaytest.Hub, path, tok string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", h.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Automerge-Heads")
}

// TestLimits: each limit refuses with an error that names it, and
// nothing stored changes.
func TestLimits(t *testing.T) {
	h := relaytest.Start(t, relay.Options{Limits: relay.Limits{FramesPerRequest: 2, ConnsPerAddr: 3, RequestsPerSecond: 1, Burst: 40, StateBytes: 1}})
	a := h.Dial("a", "")
	join(t, a, "default")
	g := lock(t, a, "default", "trajectory", time.Minute)
	var frames []msgpack.RawMessage
	for i := range 3 {
		frames = append(frames, encodeFrame(t, relaytest.Frame(2, float64(i))))
	}
	b, _ := msgpack.Marshal(&wire.CommitRequest{Op: wire.OpExtend, Token: g.Token, Frames: frames})
	if code, body := h.Do("POST", "/api/rooms/default/commit", b, "Content-Type", wire.ContentMsgpack); code != 413 || !strings.Contains(string(body), "frames per request is 2") {
		t.Errorf("3 frames: %d %s", code, body)
	}
	for range 2 {
		b, _ := msgpack.Marshal(&wire.CommitRequest{Op: wire.OpExtend, Token: g.Token, Frames: frames[:2]})
		if code, body := h.Do("POST", "/api/rooms/default/commit", b, "Content-Type", wire.ContentMsgpack); code != 200 {
			t.Fatalf("2 frames: %d %s", code, body)
		}
	}
	if code, body := h.Do("GET", "/api/rooms/default/frames?start=0&stop=3", nil); code != 413 || !strings.Contains(string(body), "frames per request") {
		t.Errorf("range of 3: %d %s", code, body)
	}
	// Connections per address: a and two more, then refused.
	h.Dial("b", "")
	h.Dial("c", "")
	if _, err := relaytest.DialURL(t, h.WSURL(), "d", ""); err == nil {
		t.Error("a fourth connection was accepted")
	}
	if code, body := h.Do("GET", "/api/ws", nil); code != 429 || !strings.Contains(string(body), "connections per address") {
		t.Errorf("fourth connection: %d %s", code, body)
	}
	// The state document of a room over its size limit takes no change.
	st, _ := crdt.NewState(nil)
	st.SetStep(7)
	sess := crdt.NewSession(st.Doc(), nil)
	msg, _ := sess.Next()
	a.Send(&wire.Msg{T: wire.MsgSync, Room: "default", Doc: wire.DocState, Data: msg})
	m := a.Wait(func(m *wire.Msg) bool { return m.T == wire.MsgError }, 5*time.Second)
	if m.Code != "too_large" || !strings.Contains(m.Message, "over the limit") {
		t.Errorf("state over its limit: %s %s", m.Code, m.Message)
	}
	// Request rate: the burst, then 429 naming the limit.
	var last int
	var body []byte
	for range 50 {
		if last, body = h.Do("GET", "/api/rooms/default", nil); last == 429 {
			break
		}
	}
	if last != 429 || !strings.Contains(string(body), "requests per second") {
		t.Errorf("request flood: %d %s", last, body)
	}
	if code, _ := h.Do("GET", "/healthz", nil); code != 200 {
		t.Errorf("healthz while rate limited: %d", code)
	}
}

func TestRoomsPerUser(t *testing.T) {
	h := relaytest.Start(t, relay.Options{
		Auth:   &relay.AuthOptions{AdminUser: "root", AdminPassword: "root-password", Secret: testSecret, PasswordCost: bcrypt.MinCost},
		Limits: relay.Limits{RoomsPerUser: 2},
	})
	root := login(t, h, "root", "root-password")
	h.Do("POST", "/api/users", wire.LoginRequest{Username: "ann", Password: "ann-password"}, bearerHdr(root)...)
	ann := login(t, h, "ann", "ann-password")
	for i, want := range []int{201, 201, 413} {
		code, body := h.Do("POST", "/api/rooms", wire.CreateRoomRequest{Name: fmt.Sprint("r", i)}, bearerHdr(ann)...)
		if code != want || (want == 413 && !strings.Contains(string(body), "rooms per user")) {
			t.Errorf("room %d: %d %s", i, code, body)
		}
	}
	if code, _ := h.Do("POST", "/api/rooms", wire.CreateRoomRequest{Name: "r9"}, bearerHdr(root)...); code != 201 {
		t.Errorf("the hub admin is exempt: %d", code)
	}
}

// TestControlChannelMatrix: each role on each kind of control message.
func TestControlChannelMatrix(t *testing.T) {
	h, tok := authHub(t)
	type want struct{ join, lock, present string } // "" = allowed, else the error code
	for _, tc := range []struct {
		user string
		want want
	}{
		{"anon", want{"unauthorized", "", ""}},
		{"dave", want{"forbidden", "", ""}},
		{"carol", want{"", "forbidden", "forbidden"}},
		{"bob", want{"", "", ""}},
		{"alice", want{"", "", ""}},
		{"root", want{"", "", ""}},
	} {
		c := dialAs(t, h, tc.user, tok[tc.user])
		check := func(what, code string, m *wire.Msg, ok string) *wire.Msg {
			t.Helper()
			r := c.Request(m)
			if code == "" && r.T != ok || code != "" && (r.T != wire.MsgError || r.Code != code) {
				t.Errorf("%s as %s: %s %s %s, want %q", what, tc.user, r.T, r.Code, r.Message, code)
			}
			return r
		}
		check("join lab", tc.want.join, &wire.Msg{T: wire.MsgJoin, Room: "lab"}, wire.MsgJoined)
		if tc.want.join != "" {
			// Not a member: room messages are refused before any role check.
			check("lock lab", "precondition_failed", &wire.Msg{T: wire.MsgLock, Room: "lab", Target: "trajectory"}, "")
			c.Close()
			continue
		}
		if g := check("lock lab", tc.want.lock, &wire.Msg{T: wire.MsgLock, Room: "lab", Target: "trajectory"}, wire.MsgGranted); g.T == wire.MsgGranted {
			check("unlock lab", "", &wire.Msg{T: wire.MsgUnlock, Room: "lab", Target: "trajectory", Token: g.Token}, wire.MsgOK)
		}
		if g := check("present lab", tc.want.present, &wire.Msg{T: wire.MsgPresent, Room: "lab"}, wire.MsgGranted); g.T == wire.MsgGranted {
			check("unpresent lab", "", &wire.Msg{T: wire.MsgUnpresent, Room: "lab"}, wire.MsgOK)
		}
		c.Close()
	}
}

func TestOpenRegistration(t *testing.T) {
	h := relaytest.Start(t, relay.Options{Auth: &relay.AuthOptions{AdminUser: "root", AdminPassword: "root-password", Secret: testSecret, PasswordCost: bcrypt.MinCost, OpenRegistration: true}})
	var res wire.LoginResponse
	if code := h.JSON("POST", "/api/auth/register", wire.LoginRequest{Username: "zoe", Password: "zoe-password"}, &res); code != 201 || res.Token == "" || res.User != "zoe" {
		t.Fatalf("register: %d %+v", code, res)
	}
	for _, tc := range []struct {
		req  wire.LoginRequest
		code int
		msg  string
	}{
		{wire.LoginRequest{Username: "zoe", Password: "another-password"}, 409, "exists"},
		{wire.LoginRequest{Username: "../x", Password: "long-enough"}, 400, "username"},
		{wire.LoginRequest{Username: "short", Password: "1234"}, 400, "password"},
		{wire.LoginRequest{Username: "admin-wannabe", Password: "long-enough", Admin: true}, 201, ""},
	} {
		code, body := h.Do("POST", "/api/auth/register", tc.req)
		if code != tc.code || !strings.Contains(string(body), tc.msg) {
			t.Errorf("register %+v: %d %s", tc.req, code, body)
		}
	}
	// Registering cannot make an administrator.
	tok := login(t, h, "admin-wannabe", "long-enough")
	var me map[string]any
	h.JSON("GET", "/api/auth/me", nil, &me, bearerHdr(tok)...)
	if me["admin"] != false {
		t.Fatalf("a registered user is admin: %v", me)
	}
	// A registered user works in the default room, not in others' rooms.
	if code, _ := h.Do("GET", "/api/rooms/default", nil, bearerHdr(res.Token)...); code != 200 {
		t.Fatalf("default room: %d", code)
	}
}
