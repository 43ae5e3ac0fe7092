package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"framesync"
	"framesync/crdt"
	"framesync/peer"
	"framesync/relay"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
	"framesync/web"

	"golang.org/x/crypto/bcrypt"
)

// clientFrame is the frame the browser test reads: relaytest.Frame plus
// fields that are the same in every frame (so stepping fetches only
// positions) and exercise the string and scalar decoders.
func clientFrame(t *testing.T, seed float64) *framesync.Frame {
	f := relaytest.Frame(4, seed)
	if err := f.SetField("arrays.symbols", framesync.StringArray([]string{"H", "He", "Li", "Be"}, 4)); err != nil {
		t.Fatal(err)
	}
	if err := f.SetField("info.name", "test système"); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestClientModuleInBrowser runs web/e2e/client.mjs: the browser client
// (web/src/framesync.js, served as /ui/dist/framesync.js) in headless
// Chromium against a real hub, with a Go client on the other side of the
// room. The script asks for Go-side steps on stdout ("go <cmd> <args>")
// and gets "ok" or "fail <why>" on stdin.
func TestClientModuleInBrowser(t *testing.T) {
	requireBrowser(t)
	h := relaytest.Start(t, relay.Options{UI: web.Handler()})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	gc, err := peer.Connect(ctx, h.URL, &peer.Options{Name: "go", Cache: t.TempDir(), MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	if _, err := gc.CreateRoom(ctx, "demo", ""); err != nil {
		t.Fatal(err)
	}
	room, err := gc.Join(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	const count = 5
	frames := make([]*framesync.Frame, count)
	for i := range frames {
		frames[i] = clientFrame(t, float64(i))
	}
	res, err := room.Append(ctx, frames...)
	if err != nil {
		t.Fatal(err)
	}

	want := map[string]any{"room": "demo", "count": count, "info_name": "test système", "xyz": clientXYZ}
	var positions [][]float64
	for _, f := range frames {
		p, _ := f.Positions.Float64s()
		positions = append(positions, p)
	}
	want["positions"] = positions
	want["numbers"], _ = frames[0].Numbers.Int64s()
	want["cell"], _ = frames[0].Cell.Float64s()
	want["pbc"], _ = frames[0].PBC.Bools()
	want["symbols"] = []string{"H", "He", "Li", "Be"}
	var ids []string
	for _, fr := range res.Frames {
		ids = append(ids, fr.ID)
	}
	want["ids"] = ids
	last := clientFrame(t, 100+1) // what "append 2" adds last
	want["appended_last"], _ = last.Positions.Float64s()
	runClientScript(ctx, t, want, &clientGoSide{t: t, h: h, room: room})
}

// clientXYZ is the file the browser imports: three frames of two atoms.
const clientXYZ = "2\nframe 0\nH 0 0 0\nO 1 1 0\n2\nframe 1\nH 0 0 1\nO 1 1 1\n2\nframe 2\nH 0 0 2\nO 1 1 2\n"

// TestClientModuleAccessControl runs the access-control part of
// e2e/client.mjs: a reader's token from localStorage, refused edits, a role
// change, bad and missing tokens, the stored token kept from other hubs,
// tokens revoked while connected and while away, access withdrawn.
func TestClientModuleAccessControl(t *testing.T) {
	requireBrowser(t)
	h := relaytest.Start(t, relay.Options{UI: web.Handler(), Auth: &relay.AuthOptions{
		AdminUser: "root", AdminPassword: "root-password", Secret: []byte("0123456789abcdef0123456789abcdef"), PasswordCost: bcrypt.MinCost,
	}})
	var root, ann wire.LoginResponse
	h.JSON("POST", "/api/auth/login", wire.LoginRequest{Username: "root", Password: "root-password"}, &root)
	auth := []string{"Authorization", "Bearer " + root.Token}
	if code, body := h.Do("POST", "/api/users", wire.LoginRequest{Username: "ann", Password: "ann-password"}, auth...); code != 201 {
		t.Fatalf("create ann: %d %s", code, body)
	}
	h.JSON("POST", "/api/auth/login", wire.LoginRequest{Username: "ann", Password: "ann-password"}, &ann)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gc, err := peer.Connect(ctx, h.URL, &peer.Options{Name: "root", Token: root.Token, Cache: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	if _, err := gc.CreateRoom(ctx, "lab", ""); err != nil {
		t.Fatal(err)
	}
	if err := gc.SetACL(ctx, "lab", &wire.RoomACL{Roles: map[string]string{"root": "admin", "ann": "reader"}}); err != nil {
		t.Fatal(err)
	}
	room, err := gc.Join(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := room.Append(ctx, clientFrame(t, 0), clientFrame(t, 1)); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"mode": "auth", "room": "lab", "count": 2, "token": ann.Token, "password": "ann-password"}
	runClientScript(ctx, t, want, &clientGoSide{t: t, h: h, room: room})
}

// runClientScript writes want for e2e/client.mjs, runs it and answers its
// Go-side steps with g.
func runClientScript(ctx context.Context, t *testing.T, want map[string]any, g *clientGoSide) {
	t.Helper()
	expect := filepath.Join(t.TempDir(), "expect.json")
	b, _ := json.Marshal(want)
	if err := os.WriteFile(expect, b, 0o644); err != nil {
		t.Fatal(err)
	}
	runScript(ctx, t, "client.mjs", []string{g.h.URL, expect}, func(name string, args []json.RawMessage) error {
		err := g.do(ctx, name, args)
		if err != nil {
			t.Errorf("go side: %s: %v", name, err)
		}
		return err
	})
}

// clientGoSide runs the Go-side steps of e2e/client.mjs.
type clientGoSide struct {
	t    *testing.T
	h    *relaytest.Hub
	room *peer.Room
}

func (g *clientGoSide) do(ctx context.Context, name string, args []json.RawMessage) error {
	arg := func(i int, v any) {
		if i >= len(args) || json.Unmarshal(args[i], v) != nil {
			g.t.Fatalf("go side: %s: bad argument %d in %s", name, i, args)
		}
	}
	st := g.room.State()
	switch name {
	case "wait-step":
		var want int64
		arg(0, &want)
		return waitFor(ctx, fmt.Sprintf("step %d", want), func() (bool, any) {
			s, err := st.Step()
			return err == nil && s == want, s
		})
	case "set-selection":
		var sel []int64
		arg(0, &sel)
		return st.SetSelection(sel)
	case "wait-camera":
		var want map[string]any
		arg(0, &want)
		return waitFor(ctx, "camera", func() (bool, any) {
			cam, err := st.Camera()
			return err == nil && sameJSON(cam, want), cam
		})
	case "wait-item":
		var coll, id string
		var want map[string]any
		arg(0, &coll)
		arg(1, &id)
		arg(2, &want)
		return waitFor(ctx, "item "+coll+"/"+id, func() (bool, any) {
			it, err := st.Item(coll, id)
			ok := err == nil && sameJSON(it, want)
			if _, has := want["n"]; has && ok {
				ok = isInt64(it["n"]) // integers arrive as integers, not floats
			}
			return ok, it
		})
	case "put-item":
		var coll string
		var item crdt.Item
		arg(0, &coll)
		arg(1, &item)
		_, err := st.Update(coll, crdt.Update{Insert: []crdt.Item{item}})
		return err
	case "wait-bookmark":
		var id, label string
		arg(0, &id)
		arg(1, &label)
		return waitFor(ctx, "bookmark", func() (bool, any) {
			bm, err := st.Bookmarks()
			return err == nil && bm[id] == label, bm
		})
	case "set-role":
		var user, role string
		arg(0, &user)
		arg(1, &role)
		c := g.room.Client()
		acl, err := c.ACL(ctx, g.room.Name())
		if err != nil {
			return err
		}
		acl.Roles[user] = role
		return c.SetACL(ctx, g.room.Name(), acl)
	case "drop-role":
		var user string
		arg(0, &user)
		c := g.room.Client()
		acl, err := c.ACL(ctx, g.room.Name())
		if err != nil {
			return err
		}
		delete(acl.Roles, user)
		return c.SetACL(ctx, g.room.Name(), acl)
	case "revoke":
		// Straight to the hub's handler: it works while its HTTP is
		// stopped too (stop-http), so a token can be revoked while a page
		// cannot reach the hub.
		var token string
		arg(0, &token)
		req := httptest.NewRequest("POST", "/api/auth/logout", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		g.h.Server.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			return fmt.Errorf("logout: %d %s", rec.Code, rec.Body)
		}
		return nil
	case "stop-http":
		g.h.StopHTTP()
		return nil
	case "resume-http":
		g.h.ResumeHTTP()
		return nil
	case "stop-hub":
		g.h.Stop()
		return nil
	case "resume-hub":
		g.h.Resume()
		return g.room.Client().WaitConnected(ctx)
	case "append":
		var n int
		arg(0, &n)
		var fs []*framesync.Frame
		for i := range n {
			fs = append(fs, clientFrame(g.t, float64(100+i)))
		}
		_, err := g.room.Append(ctx, fs...)
		return err
	}
	return fmt.Errorf("unknown command %q", name)
}

func isInt64(v any) bool {
	_, ok := v.(int64)
	return ok
}

// sameJSON compares two values as JSON (int64 1 and float64 1 are equal).
func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// waitFor polls cond until it holds or 15 s pass.
func waitFor(ctx context.Context, what string, cond func() (bool, any)) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, got := cond()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not reached, have %v", what, got)
		case <-tick.C:
		}
	}
}
