package lease_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"framesync"
	"framesync/relay/lease"
)

// clock is a fake clock for TTL tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newMemory(t testing.TB, opts *lease.Options) *lease.Memory {
	t.Helper()
	m, err := lease.NewMemory(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

var ctx = context.Background()

func TestAcquireRenewRelease(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	m := newMemory(t, &lease.Options{Now: clk.now})
	g, err := m.Acquire(ctx, "r", "frame:1", "alice", time.Minute)
	if err != nil || g.Token != 1 || g.Holder != "alice" {
		t.Fatalf("acquire: %+v %v", g, err)
	}
	// Re-acquire by the holder extends and keeps the token.
	clk.add(30 * time.Second)
	g2, err := m.Acquire(ctx, "r", "frame:1", "alice", time.Minute)
	if err != nil || g2.Token != g.Token || !g2.Expires.After(g.Expires) {
		t.Fatalf("re-acquire: %+v %v", g2, err)
	}
	// Someone else: HeldError naming the holder.
	_, err = m.Acquire(ctx, "r", "frame:1", "bob", time.Minute)
	var he *lease.HeldError
	if !errors.As(err, &he) || he.Grant.Holder != "alice" || !errors.Is(err, framesync.Locked) || framesync.KindOf(err) != framesync.Locked {
		t.Fatalf("bob: %v", err)
	}
	if _, err := m.Renew(ctx, "r", "frame:1", "alice", g.Token, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Renew(ctx, "r", "frame:1", "alice", g.Token+5, time.Minute); !errors.Is(err, framesync.Locked) {
		t.Fatalf("renew with a wrong token: %v", err)
	}
	if err := m.Release(ctx, "r", "frame:1", "bob", 99); !errors.Is(err, framesync.Locked) {
		t.Fatalf("release by another: %v", err)
	}
	if err := m.Release(ctx, "r", "frame:1", "alice", g.Token); err != nil {
		t.Fatal(err)
	}
	if err := m.Release(ctx, "r", "frame:1", "alice", g.Token); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if _, err := m.Renew(ctx, "r", "frame:1", "alice", g.Token, time.Minute); !errors.Is(err, framesync.PreconditionFailed) {
		t.Fatalf("renew after release: %v", err)
	}
	// Tokens grow per room, independently.
	gb, _ := m.Acquire(ctx, "r", "frame:1", "bob", time.Minute)
	gc, _ := m.Acquire(ctx, "other", "trajectory", "bob", time.Minute)
	if gb.Token != 2 || gc.Token != 1 {
		t.Fatalf("tokens %d %d", gb.Token, gc.Token)
	}
	if gs, _ := m.List(ctx, "r"); len(gs) != 1 || gs[0].Holder != "bob" {
		t.Fatalf("list %+v", gs)
	}
}

func TestExpiryRefusesLateCommit(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	m := newMemory(t, &lease.Options{Now: clk.now})
	ga, _ := m.Acquire(ctx, "r", "frame:1", "alice", 10*time.Second)
	if _, err := m.Check(ctx, "r", "frame:1", ga.Token); err != nil {
		t.Fatal(err)
	}
	clk.add(10 * time.Second)
	if _, err := m.Check(ctx, "r", "frame:1", ga.Token); !errors.Is(err, framesync.PreconditionFailed) {
		t.Fatalf("check after expiry: %v", err)
	}
	gb, err := m.Acquire(ctx, "r", "frame:1", "bob", time.Minute)
	if err != nil || gb.Token <= ga.Token {
		t.Fatalf("bob after expiry: %+v %v", gb, err)
	}
	_, err = m.Check(ctx, "r", "frame:1", ga.Token)
	var he *lease.HeldError
	if !errors.As(err, &he) || he.Grant.Holder != "bob" {
		t.Fatalf("late check: %v", err)
	}
}

func TestExpiredEventArrives(t *testing.T) {
	m := newMemory(t, nil)
	events, cancel := m.Subscribe(16)
	defer cancel()
	g, _ := m.Acquire(ctx, "r", "presenter", "alice", 50*time.Millisecond)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Kind == lease.Expired {
				if ev.Grant.Token != g.Token {
					t.Fatalf("expired %+v", ev)
				}
				if late := time.Since(g.Expires); late > time.Second {
					t.Fatalf("expiry delivered %v late", late)
				}
				if _, ok, _ := m.Get(ctx, "r", "presenter"); ok {
					t.Fatal("still held after expiry")
				}
				return
			}
		case <-deadline:
			t.Fatal("no expired event")
		}
	}
}

func TestReleaseHolder(t *testing.T) {
	m := newMemory(t, nil)
	m.Acquire(ctx, "a", "trajectory", "alice", time.Minute)
	m.Acquire(ctx, "b", "frame:1", "alice", time.Minute)
	m.Acquire(ctx, "b", "frame:2", "bob", time.Minute)
	gs, err := m.ReleaseHolder(ctx, "alice")
	if err != nil || len(gs) != 2 {
		t.Fatalf("released %+v %v", gs, err)
	}
	if _, ok, _ := m.Get(ctx, "b", "frame:2"); !ok {
		t.Fatal("bob's lease went too")
	}
	if _, ok, _ := m.Get(ctx, "a", "trajectory"); ok {
		t.Fatal("alice's lease stayed")
	}
}

func TestTokensSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	open := func() *lease.Memory {
		toks, err := lease.OpenFileTokens(dir)
		if err != nil {
			t.Fatal(err)
		}
		m, err := lease.NewMemory(&lease.Options{Tokens: toks})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := open()
	var last int64
	for i := range 3000 { // crosses reservation blocks
		g, err := m.Acquire(ctx, "room", "trajectory", "a", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if g.Token <= last {
			t.Fatalf("grant %d: token %d after %d", i, g.Token, last)
		}
		last = g.Token
		m.Release(ctx, "room", "trajectory", "a", g.Token)
	}
	m.DropRoom(ctx, "room")
	m.Close() // as a crash would: nothing is written on close
	m = open()
	defer m.Close()
	g, err := m.Acquire(ctx, "room", "trajectory", "a", time.Minute)
	if err != nil || g.Token <= last {
		t.Fatalf("after restart: token %d, last before %d (%v)", g.Token, last, err)
	}
	// A corrupt mark is an error, never a silent restart at 1.
	if err := os.WriteFile(filepath.Join(dir, "bad.token"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Acquire(ctx, "bad", "trajectory", "a", time.Minute); !errors.Is(err, framesync.Corrupt) {
		t.Fatalf("corrupt token file: %v", err)
	}
	toks, _ := lease.OpenFileTokens(dir)
	if _, err := toks.Load("../x"); !errors.Is(err, framesync.BadInput) {
		t.Fatalf("bad room name: %v", err)
	}
}

func TestOneWinnerAtATime(t *testing.T) {
	m := newMemory(t, nil)
	var holders atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			who := string(rune('a' + i))
			for range 500 {
				g, err := m.Acquire(ctx, "r", "trajectory", who, time.Minute)
				if err != nil {
					continue
				}
				if n := holders.Add(1); n != 1 {
					t.Errorf("%d holders at once", n)
				}
				holders.Add(-1)
				m.Release(ctx, "r", "trajectory", who, g.Token)
			}
		}()
	}
	wg.Wait()
}

func TestSlowSubscriberDoesNotBlock(t *testing.T) {
	m := newMemory(t, nil)
	_, cancel := m.Subscribe(1) // never read
	defer cancel()
	done := make(chan struct{})
	go func() {
		for range 1000 {
			g, _ := m.Acquire(ctx, "r", "trajectory", "a", time.Minute)
			m.Release(ctx, "r", "trajectory", "a", g.Token)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("lease operations blocked on a slow subscriber")
	}
	if m.Dropped() == 0 {
		t.Fatal("no events counted as dropped")
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	m := newMemory(b, nil)
	start := time.Now()
	for b.Loop() {
		g, err := m.Acquire(ctx, "r", "frame:0123456789abcdef", "alice", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		m.Release(ctx, "r", "frame:0123456789abcdef", "alice", g.Token)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pairs/s")
}
