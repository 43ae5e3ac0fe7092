package relay_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"framesync"
	"framesync/crdt"
	"framesync/relay"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

func encodeFrame(t testing.TB, f *framesync.Frame) []byte {
	t.Helper()
	b, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// commit posts a msgpack commit request and returns the status and the
// decoded JSON answer.
func commit(t testing.TB, h *relaytest.Hub, room string, req *wire.CommitRequest) (int, map[string]any) {
	t.Helper()
	b, err := msgpack.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	code, body := h.Do("POST", "/api/rooms/"+room+"/commit", b, "Content-Type", wire.ContentMsgpack)
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("commit answer %d %q: %v", code, body, err)
	}
	return code, out
}

func mustCommit(t testing.TB, h *relaytest.Hub, room string, req *wire.CommitRequest) wire.CommitResult {
	t.Helper()
	b, err := msgpack.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	code, body := h.Do("POST", "/api/rooms/"+room+"/commit", b, "Content-Type", wire.ContentMsgpack)
	if code != http.StatusOK {
		t.Fatalf("commit %s: %d %s", req.Op, code, body)
	}
	var res wire.CommitResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

func lock(t testing.TB, c *relaytest.Client, room, target string, ttl time.Duration) *wire.Msg {
	t.Helper()
	g := c.Request(&wire.Msg{T: wire.MsgLock, Room: room, Target: target, TTLms: ttl.Milliseconds()})
	if g.T != wire.MsgGranted {
		t.Fatalf("lock %s: %s %s %s", target, g.T, g.Code, g.Message)
	}
	return g
}

func join(t testing.TB, c *relaytest.Client, room string) *wire.RoomInfo {
	t.Helper()
	m := c.Request(&wire.Msg{T: wire.MsgJoin, Room: room})
	if m.T != wire.MsgJoined {
		t.Fatalf("join %s: %s %s", room, m.Code, m.Message)
	}
	return m.Info
}

// seed fills room with n frames through a trajectory lock held by c.
func seed(t testing.TB, h *relaytest.Hub, c *relaytest.Client, room string, n, atoms int) wire.CommitResult {
	t.Helper()
	g := lock(t, c, room, "trajectory", time.Minute)
	req := &wire.CommitRequest{Op: wire.OpExtend, Token: g.Token}
	for i := range n {
		req.Frames = append(req.Frames, encodeFrame(t, relaytest.Frame(atoms, float64(i))))
	}
	res := mustCommit(t, h, room, req)
	if r := c.Request(&wire.Msg{T: wire.MsgUnlock, Room: room, Target: "trajectory", Token: g.Token}); r.T != wire.MsgOK {
		t.Fatalf("unlock: %s", r.Message)
	}
	return res
}

// replica is a client-side copy of a room document kept in sync over the
// control channel.
type replica struct {
	doc  *crdt.Doc
	sess *crdt.Session
}

func newReplica(t testing.TB) *replica {
	d, err := crdt.NewDoc(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &replica{doc: d, sess: crdt.NewSession(d, nil)}
}

// syncUntil exchanges sync messages for doc over c until the replica's
// heads equal want.
func (r *replica) syncUntil(t testing.TB, c *relaytest.Client, room, doc string, want crdt.Heads) {
	t.Helper()
	r.syncWhile(t, c, room, doc, func() bool { return !r.doc.Heads().Equal(want) })
}

// syncWhile exchanges sync messages for doc over c while more() holds,
// failing the test after 10 s.
func (r *replica) syncWhile(t testing.TB, c *relaytest.Client, room, doc string, more func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for more() {
		for {
			out, ok := r.sess.Next()
			if !ok {
				break
			}
			if err := c.Send(&wire.Msg{T: wire.MsgSync, Room: room, Doc: doc, Data: out}); err != nil {
				t.Fatal(err)
			}
		}
		wait := min(time.Until(deadline), 100*time.Millisecond)
		m, err := c.WaitErr(func(m *wire.Msg) bool { return m.T == wire.MsgSync && m.Doc == doc && m.Room == room }, wait)
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("sync %s: replica at %v: %v", doc, r.doc.Heads(), err)
			}
			continue
		}
		if err := r.sess.Receive(m.Data); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTwoClientsEditAndConverge(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	a := h.Dial("alice", "Alice")
	b := h.Dial("bob", "Bob")
	join(t, a, "default")
	join(t, b, "default")
	res := seed(t, h, a, "default", 5, 4)
	f3 := res.Frames[3]

	// B follows the trajectory document.
	bt := newReplica(t)
	trajHeads := func() crdt.Heads {
		hs, err := crdt.ParseHeads(mustHeader(t, h, "/api/rooms/default/docs/trajectory", "X-Automerge-Heads"))
		if err != nil {
			t.Fatal(err)
		}
		return hs
	}
	bt.syncUntil(t, b, "default", wire.DocTrajectory, trajHeads())

	// A locks frame 3, uploads its new positions, commits a patch.
	g := lock(t, a, "default", "frame:"+f3.ID, time.Minute)
	newPos := relaytest.Frame(4, 99).Positions
	blob, err := framesync.EncodeValue(newPos)
	if err != nil {
		t.Fatal(err)
	}
	ph := framesync.Sum(blob)
	var missing struct{ Missing []string }
	if code := h.JSON("POST", "/api/blobs/missing", map[string]any{"hashes": []string{ph.String()}}, &missing); code != 200 || len(missing.Missing) != 1 {
		t.Fatalf("missing: %d %v", code, missing)
	}
	if code, body := h.Do("PUT", "/api/blobs/"+ph.String(), blob); code != http.StatusCreated {
		t.Fatalf("put blob: %d %s", code, body)
	}
	base := f3.Version
	cr := mustCommit(t, h, "default", &wire.CommitRequest{Op: wire.OpPatch, Token: g.Token, Frame: f3.ID, Base: &base, Fields: map[string]string{"positions": ph.String()}})
	if len(cr.Frames) != 1 || cr.Frames[0].Version != 2 || cr.Frames[0].Index != 3 {
		t.Fatalf("patch result %+v", cr)
	}

	// B is told, fetches only the fields that changed, and converges.
	note := b.Wait(func(m *wire.Msg) bool {
		return m.T == wire.MsgFrameUpdated && m.Frame == f3.ID && m.State == wire.OpPatch
	}, 5*time.Second)
	if note.Version != 2 || *note.Index != 3 || note.Hash != cr.Frames[0].Hash || note.Gen != cr.Generation {
		t.Fatalf("notification %+v, commit %+v", note, cr)
	}
	var oldM, newM struct{ Fields map[string]string }
	h.JSON("GET", fmt.Sprintf("/api/rooms/default/frames/%s/manifest?version=1", f3.ID), nil, &oldM)
	h.JSON("GET", "/api/rooms/default/frames/"+f3.ID+"/manifest", nil, &newM)
	var changed []string
	for k, v := range newM.Fields {
		if oldM.Fields[k] != v {
			changed = append(changed, k)
		}
	}
	if !slices.Equal(changed, []string{"positions"}) {
		t.Fatalf("changed fields %v", changed)
	}
	code, body := h.Do("GET", "/api/rooms/default/frames/3?data="+strings.Join(changed, ","), nil)
	if code != 200 {
		t.Fatalf("get frame: %d %s", code, body)
	}
	got, err := framesync.DecodeFrame(body)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Positions.Equal(newPos) || got.Numbers != nil {
		t.Fatalf("fetched %v", got.Fields())
	}
	bt.syncUntil(t, b, "default", wire.DocTrajectory, trajHeads())
	tr, err := crdt.OpenTrajectory(bt.doc, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := tr.At(3)
	if err != nil || e.ID != f3.ID || e.Version != 2 || e.Hash.String() != cr.Frames[0].Hash {
		t.Fatalf("replica frame 3: %+v %v", e, err)
	}
}

func mustHeader(t testing.TB, h *relaytest.Hub, path, name string) string {
	t.Helper()
	resp, err := http.Get(h.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	return resp.Header.Get(name)
}

func TestCommitChecks(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	a := h.Dial("alice", "")
	b := h.Dial("bob", "")
	join(t, a, "default")
	join(t, b, "default")
	f3 := seed(t, h, a, "default", 5, 3).Frames[3]
	ga := lock(t, a, "default", "frame:"+f3.ID, time.Minute)

	// B cannot lock frame 3 while A holds it: 423 semantics on the control channel.
	m := b.Request(&wire.Msg{T: wire.MsgLock, Room: "default", Target: "frame:" + f3.ID})
	if m.T != wire.MsgError || m.Code != "locked" || m.Payload["holder"] != "alice" {
		t.Fatalf("second lock: %+v", m)
	}
	// B commits frame 3 with a token that is not the holder's: 423 with the holder.
	base := int64(1)
	code, out := commit(t, h, "default", &wire.CommitRequest{Op: wire.OpReplace, Token: ga.Token + 1000, Frame: f3.ID, Base: &base, Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(3, 7))}})
	if code != http.StatusLocked && code != http.StatusPreconditionFailed {
		t.Fatalf("foreign token: %d %v", code, out)
	}
	// A commits with a stale base version: 409 with the current version.
	mustCommit(t, h, "default", &wire.CommitRequest{Op: wire.OpReplace, Token: ga.Token, Frame: f3.ID, Base: &base, Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(3, 8))}})
	code, out = commit(t, h, "default", &wire.CommitRequest{Op: wire.OpReplace, Token: ga.Token, Frame: f3.ID, Base: &base, Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(3, 9))}})
	if code != http.StatusConflict || out["code"] != "conflict" || out["current_version"] != float64(2) {
		t.Fatalf("stale base: %d %v", code, out)
	}
	// A locked frame commit needs the base version: 428.
	code, out = commit(t, h, "default", &wire.CommitRequest{Op: wire.OpReplace, Token: ga.Token, Frame: f3.ID, Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(3, 9))}})
	if code != http.StatusPreconditionRequired {
		t.Fatalf("no base: %d %v", code, out)
	}
	// With the lock held by A, B gets 423 naming A.
	gb0 := b.Request(&wire.Msg{T: wire.MsgLock, Room: "default", Target: "frame:" + f3.ID})
	if gb0.T != wire.MsgError {
		t.Fatal("B got the lock while A holds it")
	}

	// A's lease expires mid-upload; B takes the lock and commits; A's late commit is refused.
	f1 := seedFrameID(t, h, 1)
	short := lock(t, a, "default", "frame:"+f1, time.Second)
	late := encodeFrame(t, relaytest.Frame(3, 42)) // A "uploads" slowly
	waitFor(t, 5*time.Second, "A's lease to expire", func() bool {
		var info wire.RoomInfo
		h.JSON("GET", "/api/rooms/default", nil, &info)
		return !slices.ContainsFunc(info.Locks, func(l wire.LockInfo) bool { return l.Target == "frame:"+f1 })
	})
	gb := lock(t, b, "default", "frame:"+f1, time.Minute)
	if gb.Token <= short.Token {
		t.Fatalf("fencing token went backwards: %d after %d", gb.Token, short.Token)
	}
	one := int64(1)
	mustCommit(t, h, "default", &wire.CommitRequest{Op: wire.OpReplace, Token: gb.Token, Frame: f1, Base: &one, Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(3, 43))}})
	two := int64(2)
	code, out = commit(t, h, "default", &wire.CommitRequest{Op: wire.OpReplace, Token: short.Token, Frame: f1, Base: &two, Frames: []msgpack.RawMessage{late}})
	if code != http.StatusLocked || out["holder"] != "bob" {
		t.Fatalf("late commit: %d %v", code, out)
	}
	var hist struct{ Version int64 }
	h.JSON("GET", "/api/rooms/default/frames/"+f1+"/history", nil, &hist)
	if hist.Version != 2 {
		t.Fatalf("frame %s at version %d after the refused commit", f1, hist.Version)
	}
}

func seedFrameID(t testing.TB, h *relaytest.Hub, i int) string {
	t.Helper()
	var ch wire.Changes
	h.JSON("GET", "/api/rooms/default/changes", nil, &ch)
	return ch.Frames[i].ID
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

func TestLockFreedOnDisconnect(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	a := h.Dial("alice", "")
	b := h.Dial("bob", "")
	join(t, a, "default")
	join(t, b, "default")
	lock(t, a, "default", "trajectory", time.Minute)
	a.Conn().UnderlyingConn().Close() // the network drops, no close frame
	start := time.Now()
	b.Wait(func(m *wire.Msg) bool {
		return m.T == wire.MsgLockState && m.Target == "trajectory" && m.State == "released"
	}, time.Second)
	lock(t, b, "default", "trajectory", time.Minute)
	t.Logf("lock free %v after the drop", time.Since(start))
}

func TestPresenter(t *testing.T) {
	h := relaytest.Start(t, relay.Options{PresenterTTL: 500 * time.Millisecond})
	a := h.Dial("alice", "")
	b := h.Dial("bob", "")
	v := h.Dial("viewer", "")
	for _, c := range []*relaytest.Client{a, b, v} {
		join(t, c, "default")
	}
	// Race: both ask at once, exactly one wins.
	ra := make(chan *wire.Msg)
	go func() { ra <- a.Request(&wire.Msg{T: wire.MsgPresent, Room: "default"}) }()
	rb := b.Request(&wire.Msg{T: wire.MsgPresent, Room: "default"})
	rA := <-ra
	if (rA.T == wire.MsgGranted) == (rb.T == wire.MsgGranted) {
		t.Fatalf("present race: alice %s, bob %s", rA.T, rb.T)
	}
	win, lose := a, b
	if rb.T == wire.MsgGranted {
		win, lose = b, a
	}
	// The loser's frames are ignored; the winner's reach the viewer.
	lose.Send(&wire.Msg{T: wire.MsgFrame, Room: "default", Step: ptr(int64(666))})
	win.Send(&wire.Msg{T: wire.MsgFrame, Room: "default", Step: ptr(int64(7))})
	got := v.Wait(func(m *wire.Msg) bool { return m.T == wire.MsgFrame }, 5*time.Second)
	if *got.Step != 7 || got.Client != win.ID {
		t.Fatalf("viewer got %+v", got)
	}
	if r := lose.Request(&wire.Msg{T: wire.MsgFrame, Room: "default", Step: ptr(int64(667))}); r.Code != "forbidden" {
		t.Fatalf("loser frame with id: %+v", r)
	}
	// Without renewal the token expires, and the last frame lands in the state document.
	v.Wait(func(m *wire.Msg) bool { return m.T == wire.MsgPresenter && m.State == "expired" }, 5*time.Second)
	waitFor(t, 5*time.Second, "step 7 in the state", func() bool {
		var info wire.RoomInfo
		h.JSON("GET", "/api/rooms/default", nil, &info)
		return info.Step != nil && *info.Step == 7 && info.Presenter == nil
	})
	// Now the other one can present; disconnecting releases it.
	if r := lose.Request(&wire.Msg{T: wire.MsgPresent, Room: "default"}); r.T != wire.MsgGranted {
		t.Fatalf("present after expiry: %+v", r)
	}
	lose.Close()
	v.Wait(func(m *wire.Msg) bool {
		return m.T == wire.MsgPresenter && m.State == "released" && m.Holder == lose.ID
	}, 5*time.Second)
}

func ptr[T any](v T) *T { return &v }
