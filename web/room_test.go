package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"framesync"
	"framesync/peer"
	"framesync/relay"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
	"framesync/web"
)

// The room page's browser tests: each runs one scenario of web/e2e/room.mjs
// in headless Chromium (WebGL by SwiftShader, software rendering) against a
// real hub with a Go client in the room. Screenshots go to
// $FRAMESYNC_ARTIFACTS/<test> (else a temporary directory); the path is
// logged. FRAMESYNC_DOCS_SCREENSHOT=1 also writes docs/web-room.png from
// TestRoomPageView.

func TestRoomPageView(t *testing.T) {
	rh := startRoomHub(t, 3, crystal)
	rh.run("view", func(cmd string, args []json.RawMessage) error {
		switch cmd {
		case "expect-bookmark":
			var label string
			if err := decodeArgs(args, &label); err != nil {
				return err
			}
			e, _ := rh.room.Entry(0)
			return rh.eventually("bookmark "+label, func() (bool, any) {
				b, err := rh.room.State().Bookmarks()
				return err == nil && b[e.ID] == label, b
			})
		}
		return errUnknown
	})
	if os.Getenv("FRAMESYNC_DOCS_SCREENSHOT") == "1" {
		b, err := os.ReadFile(filepath.Join(rh.artifacts, "room-page.png"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "docs", "web-room.png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRoomPageFollowsPresenter(t *testing.T) {
	rh := startRoomHub(t, 12, crystal)
	rh.run("follow", func(cmd string, args []json.RawMessage) error {
		switch cmd {
		case "expect-step":
			var step int64
			if err := decodeArgs(args, &step); err != nil {
				return err
			}
			return rh.eventually(fmt.Sprintf("state step %d", step), func() (bool, any) {
				s, err := rh.room.State().Step()
				return err == nil && s == step, s
			})
		case "append":
			var n int
			if err := decodeArgs(args, &n); err != nil {
				return err
			}
			return rh.append(n)
		}
		return errUnknown
	})
}

func TestRoomPageShowsEdits(t *testing.T) {
	rh := startRoomHub(t, 3, crystal)
	rh.run("edit", func(cmd string, args []json.RawMessage) error {
		switch cmd {
		case "edit":
			var i int
			var dx float64
			if err := decodeArgs(args, &i, &dx); err != nil {
				return err
			}
			_, err := rh.room.Update(rh.ctx, i, 0, func(f *framesync.Frame) error {
				p, err := f.Positions.Float64s()
				if err != nil {
					return err
				}
				for k := 0; k < len(p); k += 3 {
					p[k] += dx
				}
				return f.SetField(framesync.FieldPositions, framesync.Float64Array(p, len(p)/3, 3))
			})
			return err
		}
		return errUnknown
	})
}

func TestRoomPageUpload(t *testing.T) {
	rh := startRoomHub(t, 0, nil)
	rh.run("upload", func(cmd string, args []json.RawMessage) error {
		switch cmd {
		case "expect-length":
			var n int
			if err := decodeArgs(args, &n); err != nil {
				return err
			}
			return rh.eventually(fmt.Sprintf("%d frames", n), func() (bool, any) {
				info, err := rh.gc.RoomInfo(rh.ctx, rh.name)
				return err == nil && info.Frames == n, info
			})
		}
		return errUnknown
	})
}

func TestRoomPageOffline(t *testing.T) {
	rh := startRoomHub(t, 3, crystal)
	rh.run("offline", func(cmd string, args []json.RawMessage) error {
		switch cmd {
		case "stop":
			rh.h.Stop()
			return nil
		case "resume":
			rh.h.Resume()
			return rh.gc.WaitConnected(rh.ctx)
		case "append":
			return rh.append(1)
		}
		return errUnknown
	})
}

func TestRoomPageSharedSelection(t *testing.T) {
	rh := startRoomHub(t, 3, crystal)
	rh.run("select", func(cmd string, args []json.RawMessage) error {
		switch cmd {
		case "expect-selection":
			var want []int64
			if err := decodeArgs(args, &want); err != nil {
				return err
			}
			return rh.eventually(fmt.Sprint("selection ", want), func() (bool, any) {
				s, err := rh.room.State().Selection()
				return err == nil && slices.Equal(s, want), s
			})
		}
		return errUnknown
	})
}

// TestRoomPageAccessEnds takes a page's access away while it is open, on
// a hub with logins: bob's role is removed (his page says his access was
// withdrawn), ann's token is revoked (her page says she is signed out and
// links to the login, which leads back to the room), the room is deleted
// (the page says so).
func TestRoomPageAccessEnds(t *testing.T) {
	opts := relay.Options{UI: web.Handler(), Auth: &relay.AuthOptions{
		AdminUser: "root", AdminPassword: "root-password", Secret: []byte("0123456789abcdef0123456789abcdef"), PasswordCost: bcrypt.MinCost,
	}}
	login := func(h *relaytest.Hub) string {
		var root wire.LoginResponse
		h.JSON("POST", "/api/auth/login", wire.LoginRequest{Username: "root", Password: "root-password"}, &root)
		for _, u := range []string{"ann", "bob"} {
			if code, body := h.Do("POST", "/api/users", wire.LoginRequest{Username: u, Password: u + "-password"}, "Authorization", "Bearer "+root.Token); code != 201 {
				t.Fatalf("create %s: %d %s", u, code, body)
			}
		}
		return root.Token
	}
	rh := startRoomHubWith(t, opts, login, 3, crystal)
	roles := map[string]string{"root": "admin", "ann": "writer", "bob": "writer"}
	if err := rh.gc.SetACL(rh.ctx, rh.name, &wire.RoomACL{Roles: roles}); err != nil {
		t.Fatal(err)
	}
	rh.run("access", func(cmd string, args []json.RawMessage) error {
		switch cmd {
		case "set-role":
			var user, role string
			if err := decodeArgs(args, &user, &role); err != nil {
				return err
			}
			if role == "" {
				delete(roles, user)
			} else {
				roles[user] = role
			}
			return rh.gc.SetACL(rh.ctx, rh.name, &wire.RoomACL{Roles: roles})
		case "delete-room":
			return rh.gc.DeleteRoom(rh.ctx, rh.name)
		}
		return errUnknown
	})
}

// TestRoomPagePerformance renders a 100,000-atom frame and logs the time
// per rendered frame while the camera turns (60 requestAnimationFrame
// ticks, each rendering and waiting for the pixels), and the time to step
// to a frame whose positions alone changed. Slow in software rendering, so
// it runs only with FRAMESYNC_BROWSER_PERF=1.
//
// Measured in headless Chromium 156 with SwiftShader (software WebGL on the
// CPU, 2 cores, 1280x800 window, 943x713 canvas), a 46^3 grid of O and H:
// 270 ms per rendered frame with the impostor path (2 triangles per atom,
// one draw call), first frame on screen 1.0 s after navigation, a step
// (positions only: one 2.4 MB fetch, the quads rewritten in place) 370 ms.
// The same atoms as an InstancedMesh of 20-triangle icosahedra took about
// 2,400 ms per frame: SwiftShader pays ~20 µs per instance. A GPU draws
// either in a few ms.
func TestRoomPagePerformance(t *testing.T) {
	if os.Getenv("FRAMESYNC_BROWSER_PERF") != "1" {
		t.Skip("set FRAMESYNC_BROWSER_PERF=1 to measure rendering 100,000 atoms")
	}
	rh := startRoomHub(t, 2, func(i int) *framesync.Frame { return big(100_000, i) })
	rh.run("perf", func(string, []json.RawMessage) error { return errUnknown })
}

var errUnknown = fmt.Errorf("unknown command")

// roomHub is a hub with the UI, a room and a Go client in it.
type roomHub struct {
	t         *testing.T
	ctx       context.Context
	h         *relaytest.Hub
	url       string // what the browsers open
	name      string
	gc        *peer.Client
	room      *peer.Room
	artifacts string
}

// startRoomHub starts a hub and pushes n frames made by frame(i) into room
// "demo".
func startRoomHub(t *testing.T, n int, frame func(int) *framesync.Frame) *roomHub {
	t.Helper()
	return startRoomHubWith(t, relay.Options{UI: web.Handler()}, nil, n, frame)
}

// startRoomHubWith is startRoomHub on a hub with opts; login, if not nil,
// prepares the hub and returns the token the Go client connects with.
func startRoomHubWith(t *testing.T, opts relay.Options, login func(*relaytest.Hub) string, n int, frame func(int) *framesync.Frame) *roomHub {
	t.Helper()
	requireBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	h := relaytest.Start(t, opts)
	rh := &roomHub{t: t, ctx: ctx, h: h, url: h.URL, name: "demo"}
	token := ""
	if login != nil {
		token = login(h)
	}
	gc, err := peer.Connect(ctx, h.URL, &peer.Options{Name: "go", Token: token, Cache: t.TempDir(), MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gc.Close() })
	if _, err := gc.CreateRoom(ctx, rh.name, ""); err != nil {
		t.Fatal(err)
	}
	room, err := gc.Join(ctx, rh.name)
	if err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		frames := make([]*framesync.Frame, n)
		for i := range frames {
			frames[i] = frame(i)
		}
		if _, err := room.Append(ctx, frames...); err != nil {
			t.Fatal(err)
		}
	}
	rh.gc, rh.room = gc, room
	rh.artifacts = os.Getenv("FRAMESYNC_ARTIFACTS")
	if rh.artifacts != "" {
		rh.artifacts = filepath.Join(rh.artifacts, t.Name())
	} else {
		rh.artifacts = t.TempDir()
	}
	return rh
}

// eventually polls cond until it holds or 10 s pass.
func (rh *roomHub) eventually(what string, cond func() (bool, any)) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, got := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: still %v after 10 s", what, got)
		}
		select {
		case <-rh.ctx.Done():
			return rh.ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// append appends n more frames to the room.
func (rh *roomHub) append(n int) error {
	if err := rh.room.WaitSynced(rh.ctx); err != nil {
		return err
	}
	frames := make([]*framesync.Frame, n)
	for i := range frames {
		frames[i] = crystal(rh.room.Len() + i)
	}
	_, err := rh.room.Append(rh.ctx, frames...)
	return err
}

// run runs a scenario of e2e/room.mjs, answering its Go-side commands with
// do.
func (rh *roomHub) run(scenario string, do func(cmd string, args []json.RawMessage) error) {
	rh.t.Helper()
	rh.t.Logf("screenshots in %s", rh.artifacts)
	runScript(rh.ctx, rh.t, "room.mjs", []string{rh.url, rh.name, scenario, rh.artifacts}, do)
}

// crystal is frame i of a rock-salt crystal, 4x4x4 cells of NaCl (512
// atoms) in its periodic cell, the atoms shaken a little differently in
// every frame.
func crystal(i int) *framesync.Frame {
	const cells, a = 4, 5.64
	basis := [][3]float64{{0, 0, 0}, {0.5, 0.5, 0}, {0.5, 0, 0.5}, {0, 0.5, 0.5}}
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	var nums []int64
	var pos []float64
	for x := range cells {
		for y := range cells {
			for z := range cells {
				for _, b := range basis {
					for k, z0 := range []int64{11, 17} { // Na, then Cl shifted by half a cell
						nums = append(nums, z0)
						for d, c := range [3]int{x, y, z} {
							off := b[d]
							if k == 1 && d == 0 {
								off += 0.5
							}
							pos = append(pos, (float64(c)+off)*a+0.08*rng.NormFloat64())
						}
					}
				}
			}
		}
	}
	f := framesync.NewFrame(nums, pos)
	f.SetCell([9]float64{cells * a, 0, 0, 0, cells * a, 0, 0, 0, cells * a})
	f.SetPBC(true, true, true)
	return f
}

// big is frame i of n atoms (water-like O, H, H) on a cubic grid, shifted
// by i.
func big(n, i int) *framesync.Frame {
	side := int(math.Ceil(math.Cbrt(float64(n))))
	nums := make([]int64, n)
	pos := make([]float64, 3*n)
	for k := range n {
		nums[k] = 1
		if k%3 == 0 {
			nums[k] = 8
		}
		pos[3*k] = 2*float64(k%side) + 0.1*float64(i)
		pos[3*k+1] = 2 * float64(k/side%side)
		pos[3*k+2] = 2 * float64(k/side/side)
	}
	f := framesync.NewFrame(nums, pos)
	l := 2 * float64(side)
	f.SetCell([9]float64{l, 0, 0, 0, l, 0, 0, 0, l})
	return f
}

// decodeArgs decodes the arguments of a Go-side step into vs: one each, in
// order; a missing or malformed one is an error (the step fails).
func decodeArgs(args []json.RawMessage, vs ...any) error {
	for i, v := range vs {
		if i >= len(args) || json.Unmarshal(args[i], v) != nil {
			return fmt.Errorf("bad argument %d in %s", i, args)
		}
	}
	return nil
}
