package relay_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"framesync/blobstore"
	"framesync/crdt"
	"framesync/relay"
	"framesync/relay/lease/redistest"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

// hubs starts n hubs sharing one Redis and one blob store.
func hubs(t *testing.T, n int) ([]*relaytest.Hub, relay.Options) {
	t.Helper()
	rs := redistest.Start(t)
	opts := relay.Options{RedisURL: rs.URL, RedisPrefix: "hubs:", Blobs: blobstore.NewMemory()}
	out := make([]*relaytest.Hub, n)
	for i := range out {
		out[i] = relaytest.Start(t, opts)
	}
	return out, opts
}

func trajHeads(t testing.TB, h *relaytest.Hub, room string) string {
	t.Helper()
	return mustHeader(t, h, "/api/rooms/"+room+"/docs/trajectory", "X-Automerge-Heads")
}

// waitConverged waits until every hub's trajectory document of room has
// the same heads.
func waitConverged(t *testing.T, room string, hs ...*relaytest.Hub) string {
	t.Helper()
	var heads string
	waitFor(t, 15*time.Second, "trajectory documents converge", func() bool {
		heads = trajHeads(t, hs[0], room)
		for _, h := range hs[1:] {
			if trajHeads(t, h, room) != heads {
				return false
			}
		}
		return true
	})
	return heads
}

func unlock(t testing.TB, c *relaytest.Client, room, target string, token int64) {
	t.Helper()
	if r := c.Request(&wire.Msg{T: wire.MsgUnlock, Room: room, Target: target, Token: token}); r.T != wire.MsgOK {
		t.Fatalf("unlock: %s", r.Message)
	}
}

// TestHubsShareRooms: a commit through hub a is announced to hub b's
// clients and readable from b; state edits on b reach a; rooms created and
// deleted on one hub are created and deleted on the other.
func TestHubsShareRooms(t *testing.T) {
	hs, _ := hubs(t, 2)
	a, b := hs[0], hs[1]
	ca, cb := a.Dial("ca", "on a"), b.Dial("cb", "on b")
	join(t, ca, "default")
	join(t, cb, "default")

	res := seed(t, a, ca, "default", 3, 4)
	last := res.Frames[2]
	m := cb.Wait(func(m *wire.Msg) bool { return m.T == wire.MsgFrameUpdated && m.Frame == last.ID }, 10*time.Second)
	if m.Gen != res.Generation || m.Index == nil || *m.Index != 2 || m.Hash != last.Hash {
		t.Fatalf("frame_updated on b: gen %d index %v hash %s, commit %+v", m.Gen, m.Index, m.Hash, last)
	}
	if code, body := b.Do("GET", "/api/rooms/default/frames/"+last.ID, nil); code != 200 {
		t.Fatalf("frame from b: %d %s", code, body)
	}
	waitConverged(t, "default", a, b)

	// State edited through b reaches a.
	st, err := crdt.NewState(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetStep(7); err != nil {
		t.Fatal(err)
	}
	rep := &replica{doc: st.Doc(), sess: crdt.NewSession(st.Doc(), nil)}
	stepOn := func(h *relaytest.Hub) int64 {
		var info wire.RoomInfo
		h.JSON("GET", "/api/rooms/default", nil, &info)
		if info.Step == nil {
			return -1
		}
		return *info.Step
	}
	rep.syncWhile(t, cb, "default", wire.DocState, func() bool { return stepOn(b) != 7 })
	waitFor(t, 10*time.Second, "step 7 on a", func() bool { return stepOn(a) == 7 })

	// Rooms.
	if code, body := b.Do("POST", "/api/rooms", map[string]string{"name": "lab"}); code != 201 {
		t.Fatalf("create lab on b: %d %s", code, body)
	}
	waitFor(t, 10*time.Second, "lab on a", func() bool { code, _ := a.Do("GET", "/api/rooms/lab", nil); return code == 200 })
	if code, _ := a.Do("POST", "/api/rooms", map[string]string{"name": "lab"}); code != 409 {
		t.Fatalf("lab created again on a: %d", code)
	}
	if code, body := a.Do("POST", "/api/rooms", map[string]any{"name": "copy", "from": "default"}); code != 201 {
		t.Fatalf("copy on a: %d %s", code, body)
	}
	waitFor(t, 10*time.Second, "copy on b", func() bool { code, _ := b.Do("GET", "/api/rooms/copy", nil); return code == 200 })
	waitConverged(t, "copy", a, b)
	if code, body := b.Do("GET", "/api/rooms/copy/frames/"+last.ID, nil); code != 200 {
		t.Fatalf("copied frame from b: %d %s", code, body)
	}
	if code, body := a.Do("DELETE", "/api/rooms/lab", nil); code != 204 {
		t.Fatalf("delete lab on a: %d %s", code, body)
	}
	waitFor(t, 10*time.Second, "lab gone from b", func() bool { code, _ := b.Do("GET", "/api/rooms/lab", nil); return code == 404 })
}

// TestHubsTakeTurnsCommitting: clients of two hubs take turns locking,
// committing and unlocking one room; every commit lands once, generations
// grow by one, both documents end identical, and a commit on a stale base
// is refused whichever hub it goes through. Then both hubs commit
// concurrently, each on its own frame: Redis orders them, a hub that is
// behind catches up, and none is lost.
func TestHubsTakeTurnsCommitting(t *testing.T) {
	hs, _ := hubs(t, 2)
	a, b := hs[0], hs[1]
	ca, cb := a.Dial("ca", "on a"), b.Dial("cb", "on b")
	join(t, ca, "default")
	join(t, cb, "default")
	const rounds = 12
	var gen int64
	hubOf := []*relaytest.Hub{a, b}
	clientOf := []*relaytest.Client{ca, cb}
	for i := range rounds {
		h, c := hubOf[i%2], clientOf[i%2]
		g := lock(t, c, "default", "trajectory", time.Minute)
		base := gen
		res := mustCommit(t, h, "default", &wire.CommitRequest{Op: wire.OpAppend, Token: g.Token, Base: &base, Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(3, float64(i)))}})
		if res.Generation != gen+1 || res.Length != i+1 {
			t.Fatalf("round %d through hub %d: generation %d length %d after %d", i, i%2, res.Generation, res.Length, gen)
		}
		gen = res.Generation
		unlock(t, c, "default", "trajectory", g.Token)
	}
	waitConverged(t, "default", a, b)
	// A stale base through either hub.
	for i, h := range hubOf {
		g := lock(t, clientOf[i], "default", "trajectory", time.Minute)
		stale := gen - 1
		code, body := commit(t, h, "default", &wire.CommitRequest{Op: wire.OpAppend, Token: g.Token, Base: &stale, Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(3, 99))}})
		if code != 409 {
			t.Fatalf("stale base through hub %d: %d %v", i, code, body)
		}
		unlock(t, clientOf[i], "default", "trajectory", g.Token)
	}

	// Concurrent frame edits through both hubs.
	var ch wire.Changes
	a.JSON("GET", "/api/rooms/default/changes", nil, &ch)
	f0, f1 := ch.Frames[0].ID, ch.Frames[1].ID
	const edits = 10
	var wg sync.WaitGroup
	errs := make(chan error, 2*edits)
	for i, f := range []string{f0, f1} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, c := hubOf[i], clientOf[i]
			g := c.Request(&wire.Msg{T: wire.MsgLock, Room: "default", Target: "frame:" + f, TTLms: time.Minute.Milliseconds()})
			if g.T != wire.MsgGranted {
				errs <- fmt.Errorf("lock %s: %s", f, g.Message)
				return
			}
			for v := int64(1); v <= edits; v++ {
				base := v
				code, body := commit(t, h, "default", &wire.CommitRequest{Op: wire.OpReplace, Frame: f, Token: g.Token, Base: &base, Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(3, float64(100*i)+float64(v)))}})
				if code != 200 {
					errs <- fmt.Errorf("replace %s on base %d through hub %d: %d %v", f, v, i, code, body)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitConverged(t, "default", a, b)
	for _, h := range hubOf {
		var info wire.RoomInfo
		h.JSON("GET", "/api/rooms/default", nil, &info)
		if info.Generation != gen+2*edits || info.Frames != rounds {
			t.Fatalf("room on a hub: generation %d frames %d, want %d and %d", info.Generation, info.Frames, gen+2*edits, rounds)
		}
	}
	// A stale frame base, under cb's lock (taken on b), through a.
	g := lock(t, cb, "default", "frame:"+f1, time.Minute)
	base := int64(edits) // the version before the last edit
	if code, body := commit(t, a, "default", &wire.CommitRequest{Op: wire.OpReplace, Frame: f1, Token: g.Token, Base: &base, Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(3, 7))}}); code != 409 {
		t.Fatalf("stale frame base through a: %d %v", code, body)
	}
	base = edits + 1
	mustCommit(t, a, "default", &wire.CommitRequest{Op: wire.OpReplace, Frame: f1, Token: g.Token, Base: &base, Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(3, 7))}})
	waitConverged(t, "default", a, b)
}

// TestHubCatchesUp: a hub that was stopped, and one that starts later
// with an empty data directory, catch up with commits, state and rooms.
func TestHubCatchesUp(t *testing.T) {
	hs, opts := hubs(t, 2)
	a, b := hs[0], hs[1]
	cb := b.Dial("cb", "on b")
	join(t, cb, "default")
	seed(t, b, cb, "default", 2, 3)
	waitConverged(t, "default", a, b)
	a.Stop()
	seed(t, b, cb, "default", 3, 3)
	if code, body := b.Do("POST", "/api/rooms", map[string]string{"name": "late"}); code != 201 {
		t.Fatalf("create late: %d %s", code, body)
	}
	a.Restart()
	c := relaytest.Start(t, opts) // empty data directory
	heads := waitConverged(t, "default", a, b, c)
	for _, h := range []*relaytest.Hub{a, c} {
		if code, _ := h.Do("GET", "/api/rooms/late", nil); code != 200 {
			t.Fatalf("room late missing after catching up: %d", code)
		}
		var info wire.RoomInfo
		h.JSON("GET", "/api/rooms/default", nil, &info)
		if info.Frames != 5 || info.Generation != 2 {
			t.Fatalf("caught up to %d frames at generation %d (heads %s)", info.Frames, info.Generation, heads)
		}
	}
	// The restarted hub commits on top.
	ca := a.Dial("ca", "on a")
	join(t, ca, "default")
	seed(t, a, ca, "default", 1, 3)
	waitConverged(t, "default", a, b, c)
}

// BenchmarkCrossHubNotify: from a commit request through hub a until a
// member of hub b gets its frame_updated (the change travels through the
// Redis stream), next to a member of hub a in the same run.
func BenchmarkCrossHubNotify(b *testing.B) {
	rs := redistest.Start(b)
	opts := relay.Options{RedisURL: rs.URL, RedisPrefix: "bench:", Blobs: blobstore.NewMemory()}
	a, hb := relaytest.Start(b, opts), relaytest.Start(b, opts)
	writer, onA, onB := a.Dial("w", "writer"), a.Dial("ra", "on a"), hb.Dial("rb", "on b")
	for _, c := range []*relaytest.Client{writer, onA, onB} {
		defer c.Close()
		join(b, c, "default")
	}
	g := lock(b, writer, "default", "trajectory", 10*time.Minute)
	var local, remote []time.Duration
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		res := mustCommit(b, a, "default", &wire.CommitRequest{Op: wire.OpAppend, Token: g.Token,
			Frames: []msgpack.RawMessage{encodeFrame(b, relaytest.Frame(4, float64(i)))}})
		id := res.Frames[0].ID
		for _, w := range []struct {
			c   *relaytest.Client
			lat *[]time.Duration
		}{{onA, &local}, {onB, &remote}} {
			if m := w.c.Wait(func(m *wire.Msg) bool { return m.T == wire.MsgFrameUpdated && m.Frame == id }, 10*time.Second); m == nil {
				b.Fatal("no frame_updated")
			}
			*w.lat = append(*w.lat, time.Since(t0))
		}
	}
	slices.Sort(local)
	slices.Sort(remote)
	q := func(lat []time.Duration, p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(q(local, 0.5), "same-hub-p50-ms")
	b.ReportMetric(q(local, 0.99), "same-hub-p99-ms")
	b.ReportMetric(q(remote, 0.5), "other-hub-p50-ms")
	b.ReportMetric(q(remote, 0.99), "other-hub-p99-ms")
}
