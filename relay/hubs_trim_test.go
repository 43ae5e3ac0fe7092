package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"framesync/blobstore"
	"framesync/relay"
	"framesync/relay/lease/redistest"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

// TestHubsCompactStreams: document streams longer than the threshold are
// replaced by one entry holding the whole document; a hub that was down
// before the compaction and a new hub both catch up from it, and commits
// after it reach every hub.
func TestHubsCompactStreams(t *testing.T) {
	t.Cleanup(relay.SetTrim(20, 50*time.Millisecond)) // runs after the hubs stop
	rs := redistest.Start(t)
	opts := relay.Options{RedisURL: rs.URL, RedisPrefix: "trim:", Blobs: blobstore.NewMemory()}
	a, b := relaytest.Start(t, opts), relaytest.Start(t, opts)
	rdb := rs.Client(t)
	ctx := context.Background()

	ca := a.Dial("ca", "on a")
	join(t, ca, "default")
	seed(t, a, ca, "default", 1, 3)
	waitConverged(t, "default", a, b)
	b.Stop() // b's position is now before the compaction

	keys, err := rdb.Keys(ctx, "trim:room:default:doc:*:trajectory").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("trajectory stream key: %v %v", keys, err)
	}
	stream := keys[0]
	g := lock(t, ca, "default", "trajectory", time.Minute)
	const commits = 60
	for i := range commits {
		mustCommit(t, a, "default", &wire.CommitRequest{Op: wire.OpAppend, Token: g.Token,
			Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(3, float64(i)))}})
	}
	waitFor(t, 20*time.Second, "the trajectory stream compacted", func() bool {
		first, err := rdb.XRangeN(ctx, stream, "-", "+", 1).Result()
		if err != nil || len(first) == 0 {
			return false
		}
		_, snap := first[0].Values["snap"]
		n, _ := rdb.XLen(ctx, stream).Result()
		return snap && n <= 21
	})

	b.Restart()
	c := relaytest.Start(t, opts) // new, empty: starts from the snapshot
	waitFor(t, 20*time.Second, "default on c", func() bool { code, _ := c.Do("GET", "/api/rooms/default", nil); return code == 200 })
	heads := waitConverged(t, "default", a, b, c)
	for _, h := range []*relaytest.Hub{b, c} {
		var info wire.RoomInfo
		h.JSON("GET", "/api/rooms/default", nil, &info)
		if info.Frames != commits+1 || info.Generation != commits+1 {
			t.Fatalf("after the compaction: %d frames at generation %d, want %d (heads %s)", info.Frames, info.Generation, commits+1, heads)
		}
	}
	// Commits after the compaction reach the members of the other hubs.
	cc := c.Dial("cc", "on c")
	join(t, cc, "default")
	res := mustCommit(t, a, "default", &wire.CommitRequest{Op: wire.OpAppend, Token: g.Token,
		Frames: []msgpack.RawMessage{encodeFrame(t, relaytest.Frame(3, 99))}})
	id := res.Frames[0].ID
	cc.Wait(func(m *wire.Msg) bool { return m.T == wire.MsgFrameUpdated && m.Frame == id }, 10*time.Second)
	waitConverged(t, "default", a, b, c)
}

// BenchmarkStreamMemory: Redis memory of a room's trajectory stream after
// b.N one-frame commits, with compaction at 1,000 entries and without it
// (same run). Run with -benchtime 5000x.
func BenchmarkStreamMemory(b *testing.B) {
	for _, tc := range []struct {
		name  string
		above int64
	}{{"compacted", 1000}, {"uncompacted", 1 << 62}} {
		b.Run(tc.name, func(b *testing.B) {
			restore := relay.SetTrim(tc.above, 100*time.Millisecond)
			defer restore()
			rs := redistest.Start(b)
			opts := relay.Options{RedisURL: rs.URL, RedisPrefix: "mem:", Blobs: blobstore.NewMemory()}
			a := relaytest.Start(b, opts)
			defer a.Stop() // before restore
			rdb := rs.Client(b)
			ctx := context.Background()
			c := a.Dial("c", "c")
			defer c.Close()
			join(b, c, "default")
			g := lock(b, c, "default", "trajectory", 10*time.Minute)
			frame := encodeFrame(b, relaytest.Frame(3, 1))
			for b.Loop() {
				mustCommit(b, a, "default", &wire.CommitRequest{Op: wire.OpAppend, Token: g.Token, Frames: []msgpack.RawMessage{frame}})
			}
			keys, _ := rdb.Keys(ctx, "mem:room:default:doc:*:trajectory").Result()
			if len(keys) != 1 {
				b.Fatalf("stream keys %v", keys)
			}
			if tc.above < 1<<40 {
				waitFor(b, 30*time.Second, "compaction", func() bool { n, _ := rdb.XLen(ctx, keys[0]).Result(); return n <= tc.above+1 })
			}
			n, _ := rdb.XLen(ctx, keys[0]).Result()
			mem, err := rdb.MemoryUsage(ctx, keys[0], 0).Result()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(n), "entries")
			b.ReportMetric(float64(mem)/1024, "stream-KiB")
			_, saved := a.Do("GET", "/api/rooms/default/docs/trajectory", nil)
			b.ReportMetric(float64(len(saved))/1024, "saved-doc-KiB")
		})
	}
}
