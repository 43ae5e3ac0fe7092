package relay_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/vmihailenco/msgpack/v5"

	"framesync"
	"framesync/blobstore"
	"framesync/crdt"
	"framesync/relay"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

func blobCount(t testing.TB, s blobstore.Store) int {
	t.Helper()
	n := 0
	if err := s.Walk(context.Background(), func(blobstore.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBlobsStoredOnceAndVerified(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	b := bytes.Repeat([]byte("frame data "), 1000)
	hs := framesync.Sum(b).String()
	if code, body := h.Do("PUT", "/api/blobs/"+hs, b); code != http.StatusCreated {
		t.Fatalf("first put: %d %s", code, body)
	}
	before := blobCount(t, h.Blobs)
	if code, body := h.Do("PUT", "/api/blobs/"+hs, b); code != http.StatusOK {
		t.Fatalf("second put: %d %s", code, body)
	}
	if n := blobCount(t, h.Blobs); n != before {
		t.Fatalf("%d blobs after a repeated put, want %d", n, before)
	}
	// Same frame committed twice: its blobs are stored once.
	a := h.Dial("a", "")
	join(t, a, "default")
	seed(t, h, a, "default", 1, 5)
	n1 := blobCount(t, h.Blobs)
	seed(t, h, a, "default", 1, 5) // relaytest.Frame(5, 0) again
	if n2 := blobCount(t, h.Blobs); n2 != n1 {
		t.Fatalf("same frame twice: %d blobs, then %d", n1, n2)
	}

	resp, err := http.Get(h.URL + "/api/blobs/" + hs)
	if err != nil {
		t.Fatal(err)
	}
	got := new(bytes.Buffer)
	got.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got.Bytes(), b) || resp.Header.Get("ETag") != `"`+strings.TrimPrefix(hs, "sha256:")+`"` || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("get: %d %q %q", resp.StatusCode, resp.Header.Get("ETag"), resp.Header.Get("Cache-Control"))
	}

	// A corrupted blob is reported, never served.
	c := bytes.Repeat([]byte("other data "), 1000)
	ch := framesync.Sum(c)
	h.Do("PUT", "/api/blobs/"+ch.String(), c)
	if err := h.Blobs.ForTest().Corrupt(ch); err != nil {
		t.Fatal(err)
	}
	code, body := h.Do("GET", "/api/blobs/"+ch.String(), nil)
	if code < 500 || bytes.Contains(body, []byte("other data")) {
		t.Fatalf("corrupt blob: %d %.100q", code, body)
	}
	var e map[string]any
	json.Unmarshal(body, &e)
	if e["code"] != "corrupt" {
		t.Fatalf("corrupt blob error %v", e)
	}
}

func TestBadInput(t *testing.T) {
	h := relaytest.Start(t, relay.Options{MaxUpload: 1 << 20})
	a := h.Dial("a", "")
	join(t, a, "default")
	seed(t, h, a, "default", 2, 3)
	g := lock(t, a, "default", "trajectory", time.Minute)
	before := mustHeader(t, h, "/api/rooms/default/docs/trajectory", "X-Automerge-Heads")
	blobsBefore := blobCount(t, h.Blobs)

	nd := func(typ string, shape []int, data []byte) map[string]any {
		return map[string]any{"nd": true, "type": typ, "kind": "", "shape": shape, "data": data}
	}
	bad, _ := msgpack.Marshal(map[string]any{
		"numbers":   nd("<i8", []int{4}, make([]byte, 32)),
		"positions": nd("<f8", []int{4, 2}, make([]byte, 64)),
	})
	wrongShape, _ := msgpack.Marshal(&wire.CommitRequest{Op: wire.OpAppend, Token: g.Token, Frames: []msgpack.RawMessage{bad}})
	short, _ := msgpack.Marshal(map[string]any{
		"numbers":   nd("<i8", []int{4}, make([]byte, 32)),
		"positions": nd("<f8", []int{4, 3}, make([]byte, 90)),
	})
	truncated, _ := msgpack.Marshal(&wire.CommitRequest{Op: wire.OpAppend, Token: g.Token, Frames: []msgpack.RawMessage{short}})
	cases := []struct {
		name, method, path string
		body               []byte
		ctype              string
		status             int
		code, msg          string
	}{
		{"malformed msgpack", "POST", "/api/rooms/default/commit", []byte{0xc1, 0xff, 0x00}, wire.ContentMsgpack, 400, "bad_input", "decode request"},
		{"wrong shape", "POST", "/api/rooms/default/commit", wrongShape, wire.ContentMsgpack, 400, "bad_input", "positions"},
		{"truncated frame", "POST", "/api/rooms/default/commit", truncated, wire.ContentMsgpack, 400, "bad_input", "frames[0]"},
		{"bad hash", "GET", "/api/blobs/sha256:1234", nil, "", 400, "bad_input", "hash"},
		{"bad hash put", "PUT", "/api/blobs/md5:abc", []byte("x"), "", 400, "bad_input", "hash"},
		{"hash mismatch", "PUT", "/api/blobs/" + framesync.Sum([]byte("a")).String(), []byte("b"), "", 400, "", ""},
		{"unknown room", "GET", "/api/rooms/nope/frames/0", nil, "", 404, "not_found", "nope"},
		{"bad room name", "POST", "/api/rooms", []byte(`{"name":"../etc"}`), "application/json", 400, "bad_input", "room name"},
		{"unknown frame", "GET", "/api/rooms/default/frames/99", nil, "", 404, "not_found", "out of range"},
		{"bad field list", "GET", "/api/rooms/default/frames/0?data=positions,,", nil, "", 400, "bad_input", ""},
		{"oversized upload", "PUT", "/api/blobs/" + framesync.Sum(make([]byte, 2<<20)).String(), make([]byte, 2<<20), "", 413, "too_large", "limit"},
		{"oversized commit", "POST", "/api/rooms/default/commit", make([]byte, 2<<20), wire.ContentMsgpack, 413, "too_large", ""},
		{"unknown op", "POST", "/api/rooms/default/commit", []byte(`{"op":"explode","token":1}`), "application/json", 400, "bad_input", "explode"},
		{"unknown route", "GET", "/api/nothing", nil, "", 404, "not_found", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := h.Do(tc.method, tc.path, tc.body, "Content-Type", tc.ctype)
			var e map[string]any
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("%d %q: not JSON", code, body)
			}
			if code != tc.status || (tc.code != "" && e["code"] != tc.code) || !strings.Contains(e["message"].(string)+" "+str(e["field"]), tc.msg) {
				t.Fatalf("got %d %v, want %d %s %q", code, e, tc.status, tc.code, tc.msg)
			}
		})
	}
	if after := mustHeader(t, h, "/api/rooms/default/docs/trajectory", "X-Automerge-Heads"); after != before {
		t.Fatal("bad requests changed the trajectory")
	}
	if n := blobCount(t, h.Blobs); n != blobsBefore {
		t.Fatalf("bad requests stored %d blobs", n-blobsBefore)
	}
	// Garbage on the control channel gets an error, the connection lives on.
	a.SendRaw([]byte{0xc1})
	a.Wait(func(m *wire.Msg) bool { return m.T == wire.MsgError && strings.Contains(m.Message, "msgpack") }, 5*time.Second)
	if m := a.Request(&wire.Msg{T: wire.MsgJoin, Room: "no-such-room"}); m.Code != "not_found" {
		t.Fatalf("join unknown room: %+v", m)
	}
	if m := a.Request(&wire.Msg{T: wire.MsgLock, Room: "default", Target: "everything"}); m.Code != "bad_input" {
		t.Fatalf("bad target: %+v", m)
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func TestTrajectoryForgeryRefused(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	a := h.Dial("mallory", "")
	join(t, a, "default")
	before := mustHeader(t, h, "/api/rooms/default/docs/trajectory", "X-Automerge-Heads")
	// Mallory loads the trajectory, appends a frame herself and syncs it.
	code, snap := h.Do("GET", "/api/rooms/default/docs/trajectory", nil)
	if code != 200 {
		t.Fatal(code)
	}
	tr, err := crdt.LoadTrajectory(snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Append("mallory", framesync.Sum([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	sess := crdt.NewSession(tr.Doc(), nil)
	var refused *wire.Msg
	for i := 0; i < 10 && refused == nil; i++ {
		if out, ok := sess.Next(); ok {
			a.Send(&wire.Msg{T: wire.MsgSync, Room: "default", Doc: wire.DocTrajectory, Data: out})
		}
		m := a.Wait(func(m *wire.Msg) bool { return m.T == wire.MsgSync || m.T == wire.MsgError }, 5*time.Second)
		if m.T == wire.MsgError {
			refused = m
			break
		}
		if m.Doc == wire.DocTrajectory {
			sess.Receive(m.Data)
		}
	}
	if refused == nil || refused.Code != "forbidden" {
		t.Fatalf("forged change: %+v", refused)
	}
	if after := mustHeader(t, h, "/api/rooms/default/docs/trajectory", "X-Automerge-Heads"); after != before {
		t.Fatal("the forged change was applied")
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	a := h.Dial("a", "")
	if code := h.JSON("POST", "/api/rooms", map[string]string{"name": "lab"}, nil); code != 201 {
		t.Fatalf("create room: %d", code)
	}
	join(t, a, "lab")
	res := seed(t, h, a, "lab", 3, 4)
	g := lock(t, a, "lab", "frame:"+res.Frames[1].ID, time.Minute)
	one := int64(1)
	mustCommit(t, h, "lab", &wire.CommitRequest{Op: wire.OpReplace, Token: g.Token, Frame: res.Frames[1].ID, Base: &one, Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(4, 5))}})
	// A member writes the state document.
	st := newReplica(t)
	st.syncUntil(t, a, "lab", wire.DocState, heads(t, h, "lab", wire.DocState))
	state, err := crdt.OpenState(st.doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := state.SetBookmark(res.Frames[2].ID, "transition state"); err != nil {
		t.Fatal(err)
	}
	st.syncWhile(t, a, "lab", wire.DocState, func() bool { return !heads(t, h, "lab", wire.DocState).Equal(st.doc.Heads()) })
	var before wire.Changes
	h.JSON("GET", "/api/rooms/lab/changes", nil, &before)
	_, frame1 := h.Do("GET", "/api/rooms/lab/frames/1", nil)
	a.Close()

	h.Restart()

	var after wire.Changes
	h.JSON("GET", "/api/rooms/lab/changes", nil, &after)
	if after.Generation != before.Generation || len(after.Frames) != 3 {
		t.Fatalf("after restart: %+v, before %+v", after, before)
	}
	for i := range before.Frames {
		if before.Frames[i] != after.Frames[i] {
			t.Fatalf("frame %d: %+v, was %+v", i, after.Frames[i], before.Frames[i])
		}
	}
	if _, f := h.Do("GET", "/api/rooms/lab/frames/1", nil); !bytes.Equal(f, frame1) {
		t.Fatal("frame 1 differs after restart")
	}
	var hist struct{ History []wire.HistoryEntry }
	h.JSON("GET", "/api/rooms/lab/frames/1/history", nil, &hist)
	if len(hist.History) != 2 {
		t.Fatalf("history after restart: %+v", hist)
	}
	code, snap := h.Do("GET", "/api/rooms/lab/docs/state", nil)
	if code != 200 {
		t.Fatal(code)
	}
	s2, err := crdt.LoadState(snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bm, _ := s2.Bookmarks(); bm[res.Frames[2].ID] != "transition state" {
		t.Fatalf("bookmarks after restart: %v", bm)
	}
	// Fencing tokens never go back.
	b := h.Dial("b", "")
	join(t, b, "lab")
	if g2 := lock(t, b, "lab", "trajectory", time.Minute); g2.Token <= g.Token {
		t.Fatalf("token %d after restart, had %d", g2.Token, g.Token)
	}
}

func heads(t testing.TB, h *relaytest.Hub, room, doc string) crdt.Heads {
	t.Helper()
	hs, err := crdt.ParseHeads(mustHeader(t, h, "/api/rooms/"+room+"/docs/"+doc, "X-Automerge-Heads"))
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

func TestStructuralEditsAndFeed(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	a := h.Dial("a", "")
	join(t, a, "default")
	res := seed(t, h, a, "default", 4, 2)
	ids := []string{res.Frames[0].ID, res.Frames[1].ID, res.Frames[2].ID, res.Frames[3].ID}
	gen0 := res.Generation
	g := lock(t, a, "default", "trajectory", time.Minute)

	ins := mustCommit(t, h, "default", &wire.CommitRequest{Op: wire.OpInsert, Token: g.Token, Index: ptr(int64(1)), Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(2, 50))}})
	newID := ins.Frames[0].ID
	if ins.Frames[0].Index != 1 || ins.Length != 5 {
		t.Fatalf("insert: %+v", ins)
	}
	mustCommit(t, h, "default", &wire.CommitRequest{Op: wire.OpDelete, Token: g.Token, Frame: ids[2]})
	mustCommit(t, h, "default", &wire.CommitRequest{Op: wire.OpMove, Token: g.Token, Frame: ids[0], Index: ptr(int64(3))})
	// Structural edit with a stale generation: 409.
	code, out := commit(t, h, "default", &wire.CommitRequest{Op: wire.OpDelete, Token: g.Token, Frame: ids[1], Base: &gen0})
	if code != 409 || out["current_generation"] == nil {
		t.Fatalf("stale generation: %d %v", code, out)
	}
	// Replace then revert frame ids[1] (now at index 1... order: new, id1, id3, id0).
	fl := lock(t, a, "default", "frame:"+ids[1], time.Minute)
	one, two := int64(1), int64(2)
	mustCommit(t, h, "default", &wire.CommitRequest{Op: wire.OpReplace, Token: fl.Token, Frame: ids[1], Base: &one, Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(2, 77))}})
	rv := mustCommit(t, h, "default", &wire.CommitRequest{Op: wire.OpRevert, Token: fl.Token, Frame: ids[1], Base: &two, Version: 1})
	if rv.Frames[0].Version != 3 || rv.Frames[0].Hash != res.Frames[1].Hash {
		t.Fatalf("revert: %+v, original %+v", rv.Frames[0], res.Frames[1])
	}

	var full wire.Changes
	h.JSON("GET", "/api/rooms/default/changes", nil, &full)
	var order []string
	for _, f := range full.Frames {
		order = append(order, f.ID)
	}
	want := []string{newID, ids[1], ids[3], ids[0]}
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Fatalf("order %v, want %v", order, want)
	}
	// The feed since the seed generation tells a thin client the same.
	var feed wire.Changes
	h.JSON("GET", "/api/rooms/default/changes?since="+itoa(gen0), nil, &feed)
	if feed.Full || len(feed.Added) != 1 || feed.Added[0].ID != newID || len(feed.Removed) != 1 || feed.Removed[0] != ids[2] {
		t.Fatalf("feed: %+v", feed)
	}
	applied := applyFeed(res.Frames, &feed)
	if strings.Join(applied, ",") != strings.Join(want, ",") {
		t.Fatalf("feed applied: %v, want %v", applied, want)
	}
	// Too far ahead: the full listing.
	h.JSON("GET", "/api/rooms/default/changes?since=99999", nil, &feed)
	if !feed.Full || len(feed.Frames) != 4 {
		t.Fatalf("since the future: %+v", feed)
	}
	// The rooms listing has a hub-wide generation.
	var rooms wire.RoomsListing
	h.JSON("GET", "/api/rooms", nil, &rooms)
	hubGen := rooms.Generation
	h.JSON("POST", "/api/rooms", map[string]string{"name": "copy", "from": "default"}, nil)
	h.JSON("GET", "/api/rooms?since="+itoa(hubGen), nil, &rooms)
	if rooms.Full || len(rooms.Rooms) != 1 || rooms.Rooms[0].Name != "copy" || rooms.Rooms[0].Frames != 4 {
		t.Fatalf("rooms since %d: %+v", hubGen, rooms)
	}
	hubGen = rooms.Generation
	if code, _ := h.Do("DELETE", "/api/rooms/copy", nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	h.JSON("GET", "/api/rooms?since="+itoa(hubGen), nil, &rooms)
	if len(rooms.Removed) != 1 || rooms.Removed[0] != "copy" {
		t.Fatalf("rooms after delete: %+v", rooms)
	}
}

// applyFeed applies a change feed to an ordered listing the way a thin
// client does: drop removed and changed frames, then insert added and
// changed ones at their new indices in index order.
func applyFeed(old []wire.FrameRef, feed *wire.Changes) []string {
	gone := map[string]bool{}
	for _, id := range feed.Removed {
		gone[id] = true
	}
	for _, f := range feed.Changed {
		gone[f.ID] = true
	}
	var ids []string
	for _, f := range old {
		if !gone[f.ID] {
			ids = append(ids, f.ID)
		}
	}
	ins := append(append([]wire.FrameRef{}, feed.Added...), feed.Changed...)
	sortRefs(ins)
	for _, f := range ins {
		ids = append(ids[:f.Index], append([]string{f.ID}, ids[f.Index:]...)...)
	}
	return ids
}

func sortRefs(r []wire.FrameRef) {
	for i := 1; i < len(r); i++ {
		for j := i; j > 0 && r[j].Index < r[j-1].Index; j-- {
			r[j], r[j-1] = r[j-1], r[j]
		}
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestSlowClientDropped(t *testing.T) {
	h := relaytest.Start(t, relay.Options{SendQueue: 8})
	// slow joins and then never reads: its TCP window fills, then its queue.
	d := websocket.Dialer{ReadBufferSize: 1024, WriteBufferSize: 1024}
	slow, _, err := d.Dial(h.WSURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.UnderlyingConn().(*net.TCPConn).SetReadBuffer(4096)
	for _, m := range []*wire.Msg{{T: wire.MsgHello, Client: "slow"}, {T: wire.MsgJoin, Room: "default", ID: 1}} {
		b, _ := msgpack.Marshal(m)
		slow.WriteMessage(websocket.BinaryMessage, b)
	}
	fast := h.Dial("fast", "")
	talker := h.Dial("talker", "")
	join(t, fast, "default")
	join(t, talker, "default")
	waitFor(t, 5*time.Second, "slow to join", func() bool {
		var info wire.RoomInfo
		h.JSON("GET", "/api/rooms/default", nil, &info)
		return len(info.Members) == 3
	})
	payload := map[string]any{"blob": strings.Repeat("x", 64<<10)}
	seq := 0
	waitFor(t, 20*time.Second, "the hub to drop the slow client", func() bool {
		// One message at a time, each waited for by fast: fast keeps up,
		// slow falls behind.
		seq++
		payload["seq"] = seq
		talker.Send(&wire.Msg{T: wire.MsgPresence, Room: "default", Payload: payload})
		fast.Wait(func(m *wire.Msg) bool {
			return m.T == wire.MsgPresence && fmt.Sprint(m.Payload["seq"]) == fmt.Sprint(seq)
		}, 5*time.Second)
		var info wire.RoomInfo
		h.JSON("GET", "/api/rooms/default", nil, &info)
		return len(info.Members) == 2
	})
	// fast still gets messages.
	talker.Send(&wire.Msg{T: wire.MsgPresence, Room: "default", Payload: map[string]any{"last": true}})
	fast.Wait(func(m *wire.Msg) bool { return m.T == wire.MsgPresence && m.Payload["last"] == true }, 10*time.Second)
}

func TestReadPaths(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	a := h.Dial("a", "")
	join(t, a, "default")
	res := seed(t, h, a, "default", 5, 3)

	// A range of frames with field selection, as one msgpack array.
	code, body := h.Do("GET", "/api/rooms/default/frames?start=1&stop=4&data=positions", nil)
	if code != 200 {
		t.Fatalf("range: %d %s", code, body)
	}
	var raw []msgpack.RawMessage
	if err := msgpack.Unmarshal(body, &raw); err != nil || len(raw) != 3 {
		t.Fatalf("range: %d frames, %v", len(raw), err)
	}
	for i, r := range raw {
		f, err := framesync.DecodeFrame(r)
		if err != nil {
			t.Fatal(err)
		}
		want := relaytest.Frame(3, float64(i+1)).Positions
		if !f.Positions.Equal(want) || len(f.Fields()) != 1 {
			t.Fatalf("range frame %d: %v", i, f.Fields())
		}
	}
	// Negative index, JSON.
	var j map[string]any
	if code := h.JSON("GET", "/api/rooms/default/frames/-1?format=json", nil, &j); code != 200 {
		t.Fatalf("json frame: %d", code)
	}
	pos := j["positions"].([]any)
	if len(pos) != 3 || pos[1].([]any)[0] != float64(4+1) || j["pbc"].([]any)[2] != false {
		t.Fatalf("json frame: %v", j)
	}
	// A frame version is immutable: ETag and 304.
	resp, err := http.Get(h.URL + "/api/rooms/default/frames/" + res.Frames[2].ID)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if etag == "" || resp.Header.Get("X-Frame-Index") != "2" || resp.Header.Get("X-Frame-Hash") != res.Frames[2].Hash {
		t.Fatalf("headers %v", resp.Header)
	}
	if code, _ := h.Do("GET", "/api/rooms/default/frames/"+res.Frames[2].ID, nil, "If-None-Match", etag); code != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", code)
	}
	// A room copied from another shares its blobs.
	n := blobCount(t, h.Blobs)
	if code := h.JSON("POST", "/api/rooms", map[string]string{"name": "copy", "from": "default"}, nil); code != 201 {
		t.Fatalf("copy: %d", code)
	}
	if code := h.JSON("POST", "/api/rooms", map[string]string{"name": "copy"}, nil); code != 409 {
		t.Fatalf("create existing room: %d", code)
	}
	var ch wire.Changes
	h.JSON("GET", "/api/rooms/copy/changes", nil, &ch)
	if len(ch.Frames) != 5 || ch.Frames[0] != res.Frames[0] || blobCount(t, h.Blobs) != n {
		t.Fatalf("copy: %+v, blobs %d -> %d", ch.Frames, n, blobCount(t, h.Blobs))
	}
	// Room info and metrics.
	var info wire.RoomInfo
	h.JSON("GET", "/api/rooms/default", nil, &info)
	if info.Frames != 5 || len(info.Members) != 1 || info.Members[0].Client != "a" {
		t.Fatalf("info %+v", info)
	}
	code, body = h.Do("GET", "/metrics", nil)
	if code != 200 || !bytes.Contains(body, []byte(`framesync_commits_total{op="extend"} 1`)) || !bytes.Contains(body, []byte("framesync_ws_connections 1")) || !bytes.Contains(body, []byte("framesync_c_heap_bytes ")) {
		t.Fatalf("metrics: %d %.400s", code, body)
	}
	if code, _ := h.Do("GET", "/healthz", nil); code != 200 {
		t.Fatal("healthz")
	}
}

// TestHelloRequired: the first message must be a hello, and a hello may
// not claim a client ID reserved for the hub's import jobs (their lock
// holders).
func TestHelloRequired(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	for _, tc := range []struct {
		first *wire.Msg
		want  string
	}{
		{&wire.Msg{T: wire.MsgJoin, Room: "default"}, "hello"},
		{&wire.Msg{T: wire.MsgHello, Client: "import:0123456789abcdef"}, "the hub's own"},
	} {
		ws, _, err := websocket.DefaultDialer.Dial(h.WSURL(), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := msgpack.Marshal(tc.first)
		ws.WriteMessage(websocket.BinaryMessage, b)
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err = ws.ReadMessage()
		ws.Close()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != wire.CloseBadHello || !strings.Contains(ce.Text, tc.want) {
			t.Fatalf("%s %q first: %v", tc.first.T, tc.first.Client, err)
		}
	}
}

// TestUploadLimitWhileStreaming sends an oversized blob without a
// Content-Length: the limit is enforced on the bytes as they arrive.
func TestUploadLimitWhileStreaming(t *testing.T) {
	h := relaytest.Start(t, relay.Options{MaxUpload: 1 << 20})
	b := make([]byte, 3<<20)
	req, err := http.NewRequest("PUT", h.URL+"/api/blobs/"+framesync.Sum(b).String(), struct{ io.Reader }{bytes.NewReader(b)})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err) // the hub answers before reading it all; the client copes
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked oversized put: %d", resp.StatusCode)
	}
	if n := blobCount(t, h.Blobs); n != 0 {
		t.Fatalf("%d blobs stored", n)
	}
}

// blobBatch frames blobs for POST /api/blobs.
func blobBatch(blobs ...[]byte) []byte {
	var b []byte
	for _, x := range blobs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(x)))
		b = append(b, x...)
	}
	return b
}

func TestPostBlobs(t *testing.T) {
	h := relaytest.Start(t, relay.Options{MaxUpload: 1 << 20})
	ct := []string{"Content-Type", wire.ContentBlobs}
	a, b, c := []byte("first blob"), []byte{}, bytes.Repeat([]byte{7}, 100000)
	var out wire.BlobsPut
	code, body := h.Do("POST", "/api/blobs", blobBatch(a, b, c, a), ct...)
	if code != 200 || json.Unmarshal(body, &out) != nil || len(out.Blobs) != 4 {
		t.Fatalf("batch: %d %s", code, body)
	}
	for i, x := range [][]byte{a, b, c, a} {
		if out.Blobs[i].Hash != framesync.Sum(x).String() || out.Blobs[i].Size != int64(len(x)) {
			t.Fatalf("blob %d: %+v", i, out.Blobs[i])
		}
		if code, got := h.Do("GET", "/api/blobs/"+out.Blobs[i].Hash, nil); code != 200 || !bytes.Equal(got, x) {
			t.Fatalf("blob %d reads back %d, %d bytes", i, code, len(got))
		}
	}
	// An empty request stores nothing and succeeds.
	if code, body := h.Do("POST", "/api/blobs", []byte{}, ct...); code != 200 || !strings.Contains(string(body), `"blobs":[]`) {
		t.Fatalf("empty batch: %d %s", code, body)
	}
	d := []byte("never stored")
	for _, tc := range []struct {
		name string
		body []byte
		ct   []string
		code int
		msg  string
	}{
		{"wrong content type", blobBatch(d), nil, 400, wire.ContentBlobs},
		{"cut in a prefix", append(blobBatch(a), 0, 0), ct, 400, "blob 1: the body ends inside its length prefix"},
		{"cut in a blob", blobBatch(d)[:8], ct, 400, "blob 0: the body ends after 4 of its 12 bytes"},
		{"over the limit", blobBatch(d, bytes.Repeat([]byte{1}, 2<<20)), ct, 413, "limit"},
	} {
		code, body := h.Do("POST", "/api/blobs", tc.body, tc.ct...)
		if code != tc.code || !strings.Contains(string(body), tc.msg) {
			t.Errorf("%s: %d %s", tc.name, code, body)
		}
	}
	// The blob of a refused request whose bytes arrived whole may be
	// stored (content addressing makes that harmless); a cut one is not.
	if code, _ := h.Do("HEAD", "/api/blobs/"+framesync.Sum(d[:4]).String(), nil); code != 404 {
		t.Errorf("a cut blob's prefix was stored: %d", code)
	}
}
