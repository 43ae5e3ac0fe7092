package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
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
