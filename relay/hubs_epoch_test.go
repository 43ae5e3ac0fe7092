package relay_test

import (
	"context"
	"testing"
	"time"

	"framesync/blobstore"
	"framesync/relay"
	"framesync/relay/lease/redistest"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

// TestHubsRepublishAfterRedisLostData: Redis restarts empty while two hubs
// run. The hubs publish their rooms again by themselves, so a new hub
// with an empty data directory gets every room and document; commits go
// on numbered after the old ones (the generation is not restarted) and
// room deletions reach every hub again.
func TestHubsRepublishAfterRedisLostData(t *testing.T) {
	rs := redistest.Start(t)
	opts := relay.Options{RedisURL: rs.URL, RedisPrefix: "loss:", Blobs: blobstore.NewMemory()}
	a, b := relaytest.Start(t, opts), relaytest.Start(t, opts)
	ca, cb := a.Dial("ca", "on a"), b.Dial("cb", "on b")
	join(t, ca, "default")
	join(t, cb, "default")
	seed(t, a, ca, "default", 3, 3)
	seed(t, b, cb, "default", 2, 3)
	if code, body := b.Do("POST", "/api/rooms", map[string]string{"name": "second"}); code != 201 {
		t.Fatalf("create second: %d %s", code, body)
	}
	waitFor(t, 10*time.Second, "second on a", func() bool { code, _ := a.Do("GET", "/api/rooms/second", nil); return code == 200 })
	heads := waitConverged(t, "default", a, b)

	rs.Restart() // empty: no persistence
	rdb := rs.Client(t)
	waitFor(t, 20*time.Second, "both hubs to register again", func() bool {
		n, _ := rdb.SCard(context.Background(), "loss:hubs").Result()
		return n == 2
	})

	c := relaytest.Start(t, opts) // new, empty
	waitFor(t, 20*time.Second, "default on c", func() bool { code, _ := c.Do("GET", "/api/rooms/default", nil); return code == 200 })
	if got := waitConverged(t, "default", a, b, c); got != heads {
		t.Fatalf("heads after the loss %s, before %s", got, heads)
	}
	waitFor(t, 10*time.Second, "second on c", func() bool { code, _ := c.Do("GET", "/api/rooms/second", nil); return code == 200 })
	var info wire.RoomInfo
	c.JSON("GET", "/api/rooms/default", nil, &info)
	if info.Frames != 5 || info.Generation != 2 {
		t.Fatalf("c has %d frames at generation %d, want 5 at 2", info.Frames, info.Generation)
	}

	// A commit through the new hub is generation 3 (Redis has the
	// generation from the hubs, not a restarted count).
	cc := c.Dial("cc", "on c")
	join(t, cc, "default")
	res := seed(t, c, cc, "default", 1, 3)
	if res.Generation != 3 {
		t.Fatalf("commit through c after the loss: generation %d, want 3", res.Generation)
	}
	// And one through a that was behind c: it catches up first.
	res = seed(t, a, ca, "default", 1, 3)
	if res.Generation != 4 {
		t.Fatalf("commit through a: generation %d, want 4", res.Generation)
	}
	waitConverged(t, "default", a, b, c)

	// Deleting a room through a reaches b and c.
	if code, body := a.Do("DELETE", "/api/rooms/second", nil); code != 204 {
		t.Fatalf("delete second: %d %s", code, body)
	}
	for _, h := range []*relaytest.Hub{b, c} {
		waitFor(t, 10*time.Second, "second deleted on every hub", func() bool { code, _ := h.Do("GET", "/api/rooms/second", nil); return code == 404 })
	}
}

// TestHubRepublishesAfterRestartWithNewEpoch: a hub that was down while
// Redis lost its data and the other hub recovered finds a new epoch when
// it starts and publishes what only it had.
func TestHubRepublishesAfterRestartWithNewEpoch(t *testing.T) {
	rs := redistest.Start(t)
	opts := relay.Options{RedisURL: rs.URL, RedisPrefix: "loss:", Blobs: blobstore.NewMemory()}
	a, b := relaytest.Start(t, opts), relaytest.Start(t, opts)
	// A room only a has the last commit of when it stops (b has stopped
	// first, so it never reads it).
	ca := a.Dial("ca", "on a")
	join(t, ca, "default")
	seed(t, a, ca, "default", 2, 3)
	waitConverged(t, "default", a, b)
	b.Stop()
	seed(t, a, ca, "default", 1, 3)
	heads := trajHeads(t, a, "default")
	a.Stop()
	rs.Restart()
	b.Restart() // recovers alone: a new epoch, its own rooms published
	a.Restart() // finds a new epoch: publishes its documents again
	if got := waitConverged(t, "default", a, b); got != heads {
		t.Fatalf("heads %s, a had %s", got, heads)
	}
	var info wire.RoomInfo
	b.JSON("GET", "/api/rooms/default", nil, &info)
	if info.Frames != 3 || info.Generation != 2 {
		t.Fatalf("b has %d frames at generation %d, want 3 at 2", info.Frames, info.Generation)
	}
}

// TestHubsRepairRedisState: a generation in Redis below the hubs'
// replicas is raised by the next commit instead of refusing commits for
// ever, and an epoch key that is not an epoch is replaced.
func TestHubsRepairRedisState(t *testing.T) {
	rs := redistest.Start(t)
	opts := relay.Options{RedisURL: rs.URL, RedisPrefix: "fix:", Blobs: blobstore.NewMemory()}
	a, b := relaytest.Start(t, opts), relaytest.Start(t, opts)
	ca := a.Dial("ca", "on a")
	join(t, ca, "default")
	seed(t, a, ca, "default", 1, 3)
	seed(t, a, ca, "default", 1, 3)
	seed(t, a, ca, "default", 1, 3)
	waitConverged(t, "default", a, b)
	rdb := rs.Client(t)
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "fix:room:default:gen:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("generation key: %v %v", keys, err)
	}
	if err := rdb.Set(ctx, keys[0], 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if res := seed(t, a, ca, "default", 1, 3); res.Generation != 4 {
		t.Fatalf("commit after the generation in redis went down: generation %d, want 4", res.Generation)
	}
	if err := rdb.Set(ctx, "fix:epoch", "junk", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cb := b.Dial("cb", "on b")
	join(t, cb, "default")
	if res := seed(t, b, cb, "default", 1, 3); res.Generation != 5 {
		t.Fatalf("commit after the epoch key was overwritten: generation %d, want 5", res.Generation)
	}
	waitConverged(t, "default", a, b)
}
