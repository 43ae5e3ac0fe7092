package lease_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"framesync"
	"framesync/internal/testproc"
	"framesync/relay/lease"
	"framesync/relay/lease/leasetest"
	"framesync/relay/lease/redistest"
)

func testLogger(t testing.TB) *slog.Logger { return testproc.Logger(t, slog.LevelDebug) }

func randomPrefix() string {
	var b [6]byte
	rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:]) + ":"
}

// newRedis opens a backend on url that is closed when t ends.
func newRedis(t testing.TB, url string, opts *lease.RedisOptions) *lease.Redis {
	t.Helper()
	if opts == nil {
		opts = &lease.RedisOptions{}
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := lease.NewRedis(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// rawClient returns a plain client of url for poking at Redis directly.
func rawClient(t testing.TB, url string) *redis.Client {
	t.Helper()
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// redisHarness gives each subtest its own server; backends opened by one
// subtest share it and one key prefix, as hubs do.
func redisHarness() leasetest.Harness {
	type env struct {
		srv    *redistest.Server
		prefix string
	}
	var mu sync.Mutex
	envs := map[*testing.T]*env{}
	get := func(t *testing.T) *env {
		mu.Lock()
		defer mu.Unlock()
		e := envs[t]
		if e == nil {
			e = &env{srv: redistest.Start(t), prefix: randomPrefix()}
			envs[t] = e
			t.Cleanup(func() {
				mu.Lock()
				delete(envs, t)
				mu.Unlock()
			})
		}
		return e
	}
	return leasetest.Harness{
		Open: func(t *testing.T, tokens lease.TokenStore) leasetest.Backend {
			e := get(t)
			return newRedis(t, e.srv.URL, &lease.RedisOptions{Prefix: e.prefix, Tokens: tokens})
		},
		Shared: true,
		Forget: func(t *testing.T) { get(t).srv.Restart() },
	}
}

func TestRedisConformance(t *testing.T) {
	redistest.Binary(t, "redis-server")
	leasetest.Run(t, redisHarness())
}

// TestRedisRestart restarts Redis without persistence under a running
// backend: while it is down, operations fail fast with Unavailable; the
// backend recovers by itself; the lease Redis forgot is reported expired;
// and no token at or below one granted before is handed out again.
func TestRedisRestart(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	toks, err := lease.OpenFileTokens(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 500 * time.Millisecond
	b := newRedis(t, srv.URL, &lease.RedisOptions{Prefix: "p:", Tokens: toks, Timeout: timeout})
	events, cancel := b.Subscribe(4096)
	defer cancel()
	leasetest.Churn(ctx, t, b, "r", "trajectory", "a", 1500) // crosses a reservation block
	held, err := b.Acquire(ctx, "r", "presenter", "alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	leasetest.WaitEvent(t, events, lease.Acquired, "r", "presenter", 5*time.Second)

	srv.Stop()
	for _, op := range []struct {
		name string
		fn   func() error
	}{
		{"acquire", func() error { _, err := b.Acquire(ctx, "r", "frame:1", "bob", time.Minute); return err }},
		{"check", func() error { _, err := b.Check(ctx, "r", "presenter", held.Token); return err }},
		{"renew", func() error { _, err := b.Renew(ctx, "r", "presenter", "alice", held.Token, time.Minute); return err }},
		{"get", func() error { _, _, err := b.Get(ctx, "r", "presenter"); return err }},
		{"ping", func() error { return b.Ping(ctx) }},
	} {
		start := time.Now()
		err := op.fn()
		took := time.Since(start)
		if !errors.Is(err, framesync.Unavailable) {
			t.Fatalf("%s while redis is down: %v, want unavailable", op.name, err)
		}
		if took > timeout+time.Second {
			t.Fatalf("%s while redis is down took %v (timeout %v)", op.name, took, timeout)
		}
		t.Logf("%s while redis is down: %v after %v", op.name, err, took.Round(time.Millisecond))
	}

	srv.Start()
	back := time.Now()
	leasetest.WaitFor(t, 15*time.Second, "the backend to recover", func() bool { return b.Ping(ctx) == nil })
	t.Logf("recovered %v after redis came back", time.Since(back).Round(time.Millisecond))
	// Redis forgot alice's lease; subscribers hear it ended.
	if ev := leasetest.WaitEvent(t, events, lease.Expired, "r", "presenter", 5*time.Second); ev.Grant.Token != held.Token {
		t.Fatalf("expired %+v, held %+v", ev.Grant, held)
	}
	if _, err := b.Check(ctx, "r", "presenter", held.Token); !errors.Is(err, framesync.PreconditionFailed) {
		t.Fatalf("check of the forgotten lease: %v", err)
	}
	g, err := b.Acquire(ctx, "r", "trajectory", "bob", time.Minute)
	if err != nil || g.Token <= held.Token {
		t.Fatalf("after the restart: %+v %v, highest before %d", g, err, held.Token)
	}
	if ev := leasetest.WaitEvent(t, events, lease.Acquired, "r", "trajectory", 5*time.Second); ev.Grant.Token != g.Token {
		t.Fatalf("acquired %+v after the restart, granted %+v", ev.Grant, g)
	}
}

// TestRedisRestartFloorFromOtherHub: hub B never granted a token itself,
// but it persisted the tokens it saw hub A grant; after Redis and both
// hubs restart, B continues above them.
func TestRedisRestartFloorFromOtherHub(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	open := func(dir string) *lease.Redis {
		toks, err := lease.OpenFileTokens(dir)
		if err != nil {
			t.Fatal(err)
		}
		return newRedis(t, srv.URL, &lease.RedisOptions{Prefix: "p:", Tokens: toks})
	}
	a, b := open(dirA), open(dirB)
	events, cancel := b.Subscribe(8192)
	last := leasetest.Churn(ctx, t, a, "r", "trajectory", "alice", 1500)
	// B has seen (and persisted) the last grant once it reports it.
	for {
		ev := leasetest.NextEvent(t, events, 5*time.Second)
		if ev.Kind == lease.Released && ev.Grant.Token == last {
			break
		}
	}
	cancel()
	a.Close()
	b.Close()
	srv.Restart()
	b = open(dirB)
	g, err := b.Acquire(ctx, "r", "trajectory", "bob", time.Minute)
	if err != nil || g.Token <= last {
		t.Fatalf("hub B after restarts: %+v %v, highest before %d", g, err, last)
	}
}

// TestRedisRestartFloorFromStore: tokens another hub granted without this
// hub hearing of them (simulated by raising the counter and the shared
// token store behind its back) are not granted again after Redis loses
// its data: the hub reloads its floor from the store when the room's
// counter is missing.
func TestRedisRestartFloorFromStore(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	toks, err := lease.OpenFileTokens(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := newRedis(t, srv.URL, &lease.RedisOptions{Prefix: "p:", Tokens: toks})
	g, err := b.Acquire(ctx, "r", "trajectory", "alice", time.Minute)
	if err != nil || g.Token != 1 {
		t.Fatalf("first grant: %+v %v", g, err)
	}
	// Another hub sharing the store reserved up to 6000 and granted 5000.
	if err := toks.Reserve("r", 6000); err != nil {
		t.Fatal(err)
	}
	if err := rawClient(t, srv.URL).Set(ctx, "p:room:r:token", 5000, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if g, err := b.Acquire(ctx, "r", "frame:1", "alice", time.Minute); err != nil || g.Token != 5001 {
		t.Fatalf("grant after the other hub's: %+v %v", g, err)
	}
	srv.Restart()
	leasetest.WaitFor(t, 15*time.Second, "the backend to recover", func() bool { return b.Ping(ctx) == nil })
	g, err = b.Acquire(ctx, "r", "trajectory", "alice", time.Minute)
	if err != nil || g.Token <= 6000 {
		t.Fatalf("grant after redis lost the counter: %+v %v, want above the stored mark 6000", g, err)
	}
}

// TestRedisEventsResync drops the event subscriptions and makes the
// sequence of events jump: subscribers still get every change exactly
// once.
func TestRedisEventsResync(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	a := newRedis(t, srv.URL, &lease.RedisOptions{Prefix: "p:"})
	b := newRedis(t, srv.URL, &lease.RedisOptions{Prefix: "p:"})
	raw := rawClient(t, srv.URL)
	events, cancel := a.Subscribe(64)
	defer cancel()
	expect := func(k lease.EventKind, g lease.Grant) {
		t.Helper()
		ev := leasetest.NextEvent(t, events, 10*time.Second)
		if ev.Kind != k || ev.Grant.Token != g.Token || ev.Grant.Target != g.Target || ev.Grant.Holder != g.Holder {
			t.Fatalf("event %v %+v, want %v %+v", ev.Kind, ev.Grant, k, g)
		}
	}

	// A gap in the sequence numbers (an event lost) makes the hub compare
	// its view with Redis.
	if err := raw.Incr(ctx, "p:seq").Err(); err != nil {
		t.Fatal(err)
	}
	g1, err := b.Acquire(ctx, "r", "frame:1", "bob", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	expect(lease.Acquired, g1)

	// Killed subscriptions: changes made meanwhile arrive once.
	if err := raw.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	g2, err := b.Acquire(ctx, "r", "frame:2", "bob", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx, "r", "frame:1", "bob", g1.Token); err != nil {
		t.Fatal(err)
	}
	leasetest.WaitFor(t, 10*time.Second, "both hubs to resubscribe", func() bool {
		return a.Ping(ctx) == nil && b.Ping(ctx) == nil
	})
	// The order depends on whether a resubscribed before or after the
	// changes; each is reported once.
	got := map[string]int{}
	for range 2 {
		ev := leasetest.NextEvent(t, events, 10*time.Second)
		got[fmt.Sprintf("%v %s %d", ev.Kind, ev.Grant.Target, ev.Grant.Token)]++
	}
	// The release of frame:1 is seen as such, or, if it happened while a
	// was not subscribed, as an expiry.
	if got[fmt.Sprintf("acquired frame:2 %d", g2.Token)] != 1 ||
		got[fmt.Sprintf("released frame:1 %d", g1.Token)]+got[fmt.Sprintf("expired frame:1 %d", g1.Token)] != 1 {
		t.Fatalf("events after resubscribing: %v", got)
	}
	g3, err := b.Acquire(ctx, "r", "frame:3", "bob", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	expect(lease.Acquired, g3) // and nothing duplicated in between
}

// TestRedisPaused hangs Redis (SIGSTOP): operations fail with Unavailable
// within the timeout instead of hanging, and everything works again, with
// the lease intact, once Redis goes on.
func TestRedisPaused(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	const timeout = 300 * time.Millisecond
	b := newRedis(t, srv.URL, &lease.RedisOptions{Prefix: "p:", Timeout: timeout})
	g, err := b.Acquire(ctx, "r", "trajectory", "alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	paused := true
	defer func() {
		if paused {
			srv.Resume()
		}
	}()
	for _, op := range []struct {
		name string
		fn   func() error
	}{
		{"acquire", func() error { _, err := b.Acquire(ctx, "r", "frame:1", "bob", time.Minute); return err }},
		{"check", func() error { _, err := b.Check(ctx, "r", "trajectory", g.Token); return err }},
		{"release", func() error { return b.Release(ctx, "r", "trajectory", "alice", g.Token) }},
	} {
		start := time.Now()
		err := op.fn()
		took := time.Since(start)
		if !errors.Is(err, framesync.Unavailable) {
			t.Fatalf("%s while redis hangs: %v, want unavailable", op.name, err)
		}
		if took > timeout+time.Second {
			t.Fatalf("%s while redis hangs took %v (timeout %v)", op.name, took, timeout)
		}
	}
	srv.Resume()
	paused = false
	leasetest.WaitFor(t, 15*time.Second, "the backend to recover", func() bool { return b.Ping(ctx) == nil })
	// The release above may or may not have reached Redis before it hung.
	if got, err := b.Check(ctx, "r", "trajectory", g.Token); err != nil && !errors.Is(err, framesync.PreconditionFailed) || err == nil && got.Holder != "alice" {
		t.Fatalf("check after the pause: %+v %v", got, err)
	}
	if _, err := b.Acquire(ctx, "r", "frame:2", "bob", time.Minute); err != nil {
		t.Fatalf("acquire after the pause: %v", err)
	}
}

func TestRedisDownAtStart(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop() // an address where nothing listens
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := lease.NewRedis(ctx, srv.URL, &lease.RedisOptions{Logger: testLogger(t)})
	if !errors.Is(err, framesync.Unavailable) {
		t.Fatalf("redis down at start: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("start against a dead redis took %v", took)
	}
	t.Log(err)
}

func TestRedisBadInput(t *testing.T) {
	if _, err := lease.NewRedis(t.Context(), "http://example.invalid/", nil); !errors.Is(err, framesync.BadInput) {
		t.Fatalf("bad url: %v", err)
	}
	srv := redistest.Start(t)
	if _, err := lease.NewRedis(t.Context(), srv.URL, &lease.RedisOptions{Prefix: "a b"}); !errors.Is(err, framesync.BadInput) {
		t.Fatalf("bad prefix: %v", err)
	}
	b := newRedis(t, srv.URL, nil)
	for _, room := range []string{"", "a:b", "a b", "ä", strings.Repeat("r", 201)} {
		if _, err := b.Acquire(t.Context(), room, "trajectory", "alice", time.Minute); !errors.Is(err, framesync.BadInput) {
			t.Errorf("room %q: %v", room, err)
		}
	}
	// Holders may contain anything.
	for _, holder := range []string{"a b", "x:y", "new\nline", "ü"} {
		g, err := b.Acquire(t.Context(), "r", "trajectory", holder, time.Minute)
		if err != nil || g.Holder != holder {
			t.Fatalf("holder %q: %+v %v", holder, g, err)
		}
		if gs, err := b.ReleaseHolder(t.Context(), holder); err != nil || len(gs) != 1 || gs[0].Holder != holder {
			t.Fatalf("release holder %q: %+v %v", holder, gs, err)
		}
	}
}

// TestRedisPrefixes: backends with different prefixes on one server do
// not see each other's leases, tokens or events.
func TestRedisPrefixes(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	a := newRedis(t, srv.URL, &lease.RedisOptions{Prefix: "a:"})
	b := newRedis(t, srv.URL, &lease.RedisOptions{Prefix: "b:"})
	evb, cancel := b.Subscribe(16)
	defer cancel()
	ga, err := a.Acquire(ctx, "r", "trajectory", "alice", time.Minute)
	if err != nil || ga.Token != 1 {
		t.Fatalf("a: %+v %v", ga, err)
	}
	gb, err := b.Acquire(ctx, "r", "trajectory", "bob", time.Minute)
	if err != nil || gb.Token != 1 {
		t.Fatalf("b: %+v %v", gb, err)
	}
	if ev := leasetest.NextEvent(t, evb, 5*time.Second); ev.Grant.Holder != "bob" {
		t.Fatalf("b saw %+v", ev)
	}
}

// BenchmarkRedisAcquireRelease measures lock acquire+release pairs per
// second against a real Redis, one pair at a time, next to what
// redis-benchmark gets for SET from the same server in the same run (with
// one connection, like this loop, and with its default 50).
func BenchmarkRedisAcquireRelease(b *testing.B) {
	srv := redistest.Start(b)
	m := newRedis(b, srv.URL, &lease.RedisOptions{Prefix: "bench:"})
	ctx := context.Background()
	start := time.Now()
	for b.Loop() {
		g, err := m.Acquire(ctx, "r", "frame:0123456789abcdef", "alice", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Release(ctx, "r", "frame:0123456789abcdef", "alice", g.Token); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pairs/s")
	reportRedisBenchmark(b, srv, 1)
	reportRedisBenchmark(b, srv, 50)
}

// BenchmarkRedisAcquireReleaseParallel is the same with about 50
// goroutines, each on its own target, next to redis-benchmark's default 50
// connections.
func BenchmarkRedisAcquireReleaseParallel(b *testing.B) {
	srv := redistest.Start(b)
	m := newRedis(b, srv.URL, &lease.RedisOptions{Prefix: "bench:"})
	ctx := context.Background()
	var mu sync.Mutex
	n := 0
	b.SetParallelism(max(1, 50/runtimeProcs()))
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		target := fmt.Sprintf("frame:%d", n)
		n++
		mu.Unlock()
		for pb.Next() {
			g, err := m.Acquire(ctx, "r", target, "alice", time.Minute)
			if err != nil {
				b.Error(err)
				return
			}
			if err := m.Release(ctx, "r", target, "alice", g.Token); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pairs/s")
	if b.N > 1 { // not in the probing first round: redis-benchmark takes seconds
		reportRedisBenchmark(b, srv, 50)
	}
}

// reportRedisBenchmark reports redis-benchmark's SET requests per second
// against srv with clients connections, if the program exists. Call it
// with the timer stopped.
func reportRedisBenchmark(b *testing.B, srv *redistest.Server, clients int) {
	b.Helper()
	rps, err := srv.SetThroughput(clients)
	if errors.Is(err, exec.ErrNotFound) {
		b.Log("redis-benchmark not found; no SET baseline")
		return
	}
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(rps, fmt.Sprintf("redis-SET-c%d/s", clients))
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
