package relay_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/vmihailenco/msgpack/v5"

	"framesync"
	"framesync/relay"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

// storedDigest hashes everything the hub stores that a request could
// change: the room listing, each room's document heads and the blobs.
func storedDigest(t *testing.T, h *relaytest.Hub) string {
	t.Helper()
	var l wire.RoomsListing
	h.JSON("GET", "/api/rooms", nil, &l)
	var parts []string
	for _, r := range l.Rooms {
		parts = append(parts, r.Name,
			mustHeader(t, h, "/api/rooms/"+r.Name+"/docs/trajectory", "X-Automerge-Heads"),
			mustHeader(t, h, "/api/rooms/"+r.Name+"/docs/state", "X-Automerge-Heads"))
	}
	parts = append(parts, fmt.Sprint(blobCount(t, h.Blobs)))
	sort.Strings(parts)
	sum := sha256.Sum256([]byte(strings.Join(parts, "\n")))
	return hex.EncodeToString(sum[:])
}

// TestHostileInput throws malformed and hostile requests and messages at
// the hub: each gets its 4xx or error message, and nothing stored changes.
func TestHostileInput(t *testing.T) {
	h := relaytest.Start(t, relay.Options{MaxUpload: 1 << 20, MaxMessage: 1 << 16})
	a := h.Dial("a", "")
	join(t, a, "default")
	seed(t, h, a, "default", 2, 3)
	g := lock(t, a, "default", "trajectory", time.Minute)
	before := storedDigest(t, h)

	nd := func(typ string, shape []int, data []byte) map[string]any {
		return map[string]any{"nd": true, "type": typ, "kind": "", "shape": shape, "data": data}
	}
	frame := func(fields map[string]any) []byte {
		b, _ := msgpack.Marshal(fields)
		req, _ := msgpack.Marshal(&wire.CommitRequest{Op: wire.OpAppend, Token: g.Token, Frames: []msgpack.RawMessage{b}})
		return req
	}
	nums := nd("<i8", []int{2}, make([]byte, 16))
	pos := nd("<f8", []int{2, 3}, make([]byte, 48))
	nanCell := make([]byte, 72)
	for i := range 9 {
		v := 1.0
		if i == 4 {
			v = math.NaN()
		}
		putF64(nanCell[8*i:], v)
	}
	infCell := make([]byte, 72)
	putF64(infCell, math.Inf(1))
	cases := []struct {
		name, method, path string
		body               []byte
		ctype              string
		status             int
		msg                string
	}{
		{"absurd shape", "POST", "/api/rooms/default/commit", frame(map[string]any{"numbers": nd("<i8", []int{1 << 40}, make([]byte, 16)), "positions": pos}), wire.ContentMsgpack, 400, "numbers"},
		{"negative shape", "POST", "/api/rooms/default/commit", frame(map[string]any{"numbers": nd("<i8", []int{-2}, make([]byte, 16)), "positions": pos}), wire.ContentMsgpack, 400, "numbers"},
		{"absurd dimensions", "POST", "/api/rooms/default/commit", frame(map[string]any{"numbers": nums, "positions": nd("<f8", []int{1 << 30, 1 << 30, 1 << 30}, make([]byte, 48))}), wire.ContentMsgpack, 400, "positions"},
		{"wrong dtype", "POST", "/api/rooms/default/commit", frame(map[string]any{"numbers": nums, "positions": nd("<U4", []int{2, 3}, make([]byte, 96))}), wire.ContentMsgpack, 400, "positions"},
		{"unknown dtype", "POST", "/api/rooms/default/commit", frame(map[string]any{"numbers": nd("<q9", []int{2}, make([]byte, 16)), "positions": pos}), wire.ContentMsgpack, 400, "numbers"},
		{"NaN in cell", "POST", "/api/rooms/default/commit", frame(map[string]any{"numbers": nums, "positions": pos, "cell": nd("<f8", []int{3, 3}, nanCell)}), wire.ContentMsgpack, 400, "cell"},
		{"Inf in cell", "POST", "/api/rooms/default/commit", frame(map[string]any{"numbers": nums, "positions": pos, "cell": nd("<f8", []int{3, 3}, infCell)}), wire.ContentMsgpack, 400, "cell"},
		{"not a map", "POST", "/api/rooms/default/commit", frame(nil), wire.ContentMsgpack, 400, ""},
		{"deep nesting", "POST", "/api/rooms/default/commit", append(bytesOf(0x91, 100000), 0xc0), wire.ContentMsgpack, 400, ""},
		{"unicode room", "POST", "/api/rooms", []byte(`{"name":"räume"}`), "application/json", 400, "room name"},
		{"path traversal room", "POST", "/api/rooms", []byte(`{"name":"../../etc"}`), "application/json", 400, "room name"},
		{"traversal in path", "GET", "/api/rooms/..%2F..%2Fetc/frames/0", nil, "", 0, ""},
		{"dot room", "GET", "/api/rooms/./frames/0", nil, "", 0, ""},
		{"NUL in room", "GET", "/api/rooms/a%00b", nil, "", 400, "room name"},
		{"bad hash hex", "GET", "/api/blobs/sha256:" + strings.Repeat("zz", 32), nil, "", 400, "hash"},
		{"hash too long", "GET", "/api/blobs/sha256:" + strings.Repeat("ab", 40), nil, "", 400, "hash"},
		{"bad manifest hash", "POST", "/api/rooms/default/commit", mustMsgpack(&wire.CommitRequest{Op: wire.OpAppend, Token: g.Token, Manifests: []string{"sha256:00"}}), wire.ContentMsgpack, 400, "manifests"},
		{"missing manifest", "POST", "/api/rooms/default/commit", mustMsgpack(&wire.CommitRequest{Op: wire.OpAppend, Token: g.Token, Manifests: []string{framesync.Sum([]byte("nothing")).String()}}), wire.ContentMsgpack, 0, "sha256"},
		{"bad since", "GET", "/api/rooms/default/changes?since=abc", nil, "", 400, "since"},
		{"bad range", "GET", "/api/rooms/default/frames?start=x", nil, "", 400, "start"},
		{"bad version", "GET", "/api/rooms/default/frames/0?version=-7", nil, "", 0, ""},
		{"huge json", "POST", "/api/rooms", append([]byte(`{"name":"`), append(bytesOf('a', 1<<17), []byte(`"}`)...)...), "application/json", 0, ""},
		{"missing list", "POST", "/api/blobs/missing", []byte(`{"hashes":["nope"]}`), "application/json", 400, "hashes[0]"},
		{"bad batch", "POST", "/api/blobs", []byte{0xff, 0xff, 0xff, 0xff, 1}, wire.ContentBlobs, 0, ""},
		{"stale token", "POST", "/api/rooms/default/commit", mustMsgpack(&wire.CommitRequest{Op: wire.OpDelete, Token: g.Token + 1000, Frame: "0"}), wire.ContentMsgpack, 423, "locked by a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := h.Do(tc.method, tc.path, tc.body, "Content-Type", tc.ctype)
			if code < 400 || code >= 500 || (tc.status != 0 && code != tc.status) {
				t.Fatalf("status %d, want %v: %s", code, tc.status, body)
			}
			var e map[string]any
			if json.Unmarshal(body, &e) != nil || e["code"] == nil || e["message"] == "" {
				t.Fatalf("%d: not a JSON error: %q", code, body)
			}
			if !strings.Contains(fmt.Sprint(e["message"], " ", e["field"]), tc.msg) {
				t.Fatalf("%d %v: want %q", code, e, tc.msg)
			}
		})
	}

	// The control channel.
	b := h.Dial("b", "")
	expect := func(c *relaytest.Client, m *wire.Msg, code, msg string) {
		t.Helper()
		r := c.Request(m)
		if r.T != wire.MsgError || (code != "" && r.Code != code) || !strings.Contains(r.Message, msg) {
			t.Errorf("%s: %s %s %q, want %s %q", m.T, r.T, r.Code, r.Message, code, msg)
		}
	}
	expect(b, &wire.Msg{T: wire.MsgLock, Room: "default", Target: "trajectory"}, "precondition_failed", "join")
	expect(b, &wire.Msg{T: wire.MsgSync, Room: "default", Doc: wire.DocState, Data: []byte{1}}, "precondition_failed", "join")
	expect(b, &wire.Msg{T: wire.MsgJoin, Room: "../etc"}, "bad_input", "room name")
	expect(b, &wire.Msg{T: wire.MsgJoin, Room: "räume"}, "bad_input", "room name")
	join(t, b, "default")
	expect(b, &wire.Msg{T: wire.MsgSync, Room: "default", Doc: "secrets", Data: []byte{0x42}}, "bad_input", "secrets")
	for _, data := range [][]byte{{}, {0x42}, {0x42, 0xff, 0xff, 0xff, 0xff, 0x0f}, bytesOf(0x85, 64), append([]byte{0x42, 1}, bytesOf(0xff, 40)...)} {
		expect(b, &wire.Msg{T: wire.MsgSync, Room: "default", Doc: wire.DocState, Data: data}, "bad_input", "")
		expect(b, &wire.Msg{T: wire.MsgSync, Room: "default", Doc: wire.DocTrajectory, Data: data}, "bad_input", "")
	}
	expect(b, &wire.Msg{T: wire.MsgRenew, Room: "default", Target: "trajectory", Token: g.Token}, "locked", "locked by a")
	expect(b, &wire.Msg{T: wire.MsgUnlock, Room: "default", Target: "trajectory", Token: g.Token + 1}, "locked", "locked by a")
	expect(b, &wire.Msg{T: wire.MsgLock, Room: "default", Target: "trajectory", TTLms: -5}, "bad_input", "ttl_ms")
	expect(b, &wire.Msg{T: wire.MsgFrame, Room: "default", Step: new(int64), ID: 1}, "forbidden", "presenter")
	expect(b, &wire.Msg{T: "explode"}, "bad_input", "explode")
	// A flood of joins and leaves leaves one membership and no damage.
	for range 200 {
		b.Send(&wire.Msg{T: wire.MsgJoin, Room: "default"})
		b.Send(&wire.Msg{T: wire.MsgLeave, Room: "default"})
	}
	join(t, b, "default")
	var info wire.RoomInfo
	h.JSON("GET", "/api/rooms/default", nil, &info)
	if len(info.Members) != 2 {
		t.Errorf("after the join flood: %d members", len(info.Members))
	}
	// An oversized message closes the connection with 1009.
	c := h.Dial("c", "")
	c.SendRaw(make([]byte, 1<<17))
	select {
	case <-c.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("an oversized message did not close the connection")
	}
	if !websocket.IsCloseError(c.Err(), websocket.CloseMessageTooBig) {
		t.Errorf("oversized message: %v", c.Err())
	}

	if after := storedDigest(t, h); after != before {
		t.Fatal("hostile input changed what the hub stores")
	}
	// The holder's lock is still good: the hub still works.
	if r := a.Request(&wire.Msg{T: wire.MsgRenew, Room: "default", Target: "trajectory", Token: g.Token, TTLms: 60000}); r.T != wire.MsgGranted {
		t.Fatalf("renew after the attack: %+v", r)
	}
}

func putF64(b []byte, v float64) {
	u := math.Float64bits(v)
	for i := range 8 {
		b[i] = byte(u >> (8 * i))
	}
}

func bytesOf(b byte, n int) []byte { return []byte(strings.Repeat(string([]byte{b}), n)) }

func mustMsgpack(v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
