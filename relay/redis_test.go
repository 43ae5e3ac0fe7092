package relay_test

import (
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"framesync/relay"
	"framesync/relay/lease/redistest"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

// TestHubsShareLocksThroughRedis: two hubs on one Redis hand out one lock
// at a time, with fencing tokens that grow across both; while Redis is away
// each hub is not ready and refuses commits with a clear error but still
// serves reads, and both recover by themselves when Redis returns.
func TestHubsShareLocksThroughRedis(t *testing.T) {
	rs := redistest.Start(t)
	opts := relay.Options{RedisURL: rs.URL, RedisPrefix: "hubtest:"}
	a, b := relaytest.Start(t, opts), relaytest.Start(t, opts)
	ca, cb := a.Dial("ca", "on a"), b.Dial("cb", "on b")
	defer ca.Close()
	defer cb.Close()
	join(t, ca, "default")
	join(t, cb, "default")
	res := seed(t, a, ca, "default", 2, 4) // a's lock, taken and released
	frame := "/api/rooms/default/frames/" + res.Frames[0].ID

	ga := lock(t, ca, "default", "trajectory", time.Minute)
	// b's members hear of a lock taken through a:
	cb.Wait(func(m *wire.Msg) bool { // fails the test if it does not come
		return m.T == wire.MsgLockState && m.Holder == "ca" && m.State == "acquired" && m.Expires == ga.Expires
	}, 10*time.Second)
	m := cb.Request(&wire.Msg{T: wire.MsgLock, Room: "default", Target: "trajectory"})
	if m.T != wire.MsgError || m.Code != "locked" || m.Payload["holder"] != "ca" {
		t.Fatalf("lock on b while a's client holds it: %s %s %v", m.T, m.Code, m.Payload)
	}
	if r := ca.Request(&wire.Msg{T: wire.MsgUnlock, Room: "default", Target: "trajectory", Token: ga.Token}); r.T != wire.MsgOK {
		t.Fatalf("unlock: %s", r.Message)
	}
	gb := lock(t, cb, "default", "trajectory", time.Minute)
	if gb.Token <= ga.Token {
		t.Fatalf("token from b %d after a's %d", gb.Token, ga.Token)
	}

	rs.Stop()
	for _, h := range []*relaytest.Hub{a, b} {
		if code, body := h.Do("GET", "/readyz", nil); code != 503 || !strings.Contains(string(body), "unavailable") {
			t.Fatalf("readyz with Redis down: %d %s", code, body)
		}
		if code, body := h.Do("GET", "/api/rooms/default", nil); code != 200 {
			t.Fatalf("room info with Redis down: %d %s", code, body)
		}
	}
	if code, body := a.Do("GET", frame, nil); code != 200 {
		t.Fatalf("read with Redis down: %d %s", code, body)
	}
	code, body := commit(t, b, "default", &wire.CommitRequest{Op: wire.OpAppend, Token: gb.Token, Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(4, 9))}})
	t.Logf("commit with Redis down: %d %v", code, body["message"])
	if code != 503 || body["code"] != "unavailable" {
		t.Fatalf("commit with Redis down: %d %v", code, body)
	}

	rs.Start() // empty: no persistence
	waitFor(t, 15*time.Second, "both hubs ready again", func() bool {
		ra, _ := a.Do("GET", "/readyz", nil)
		rb, _ := b.Do("GET", "/readyz", nil)
		return ra == 200 && rb == 200
	})
	// Redis lost b's lease; the hubs' persisted floors keep new tokens
	// above every token handed out before.
	g := lock(t, ca, "default", "trajectory", time.Minute)
	if g.Token <= gb.Token {
		t.Fatalf("token %d after Redis lost its data, %d was handed out before", g.Token, gb.Token)
	}
	if code, body := commit(t, b, "default", &wire.CommitRequest{Op: wire.OpAppend, Token: gb.Token, Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(4, 9))}}); code == 200 {
		t.Fatalf("a commit under the token from before the outage: %d %v", code, body)
	}
	mustCommit(t, a, "default", &wire.CommitRequest{Op: wire.OpAppend, Token: g.Token, Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(4, 9))}})
}
