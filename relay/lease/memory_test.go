package lease_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"framesync"
	"framesync/relay/lease"
	"framesync/relay/lease/leasetest"
)

func TestMemoryConformance(t *testing.T) {
	leasetest.Run(t, leasetest.Harness{
		Open: func(t *testing.T, tokens lease.TokenStore) leasetest.Backend {
			return newMemory(t, &lease.Options{Tokens: tokens})
		},
	})
}

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

// TestMemoryNow checks Options.Now: deadlines are compared against it, so
// a lease past its deadline on that clock is never treated as held.
func TestMemoryNow(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	m := newMemory(t, &lease.Options{Now: clk.now})
	ga, _ := m.Acquire(ctx, "r", "frame:1", "alice", 10*time.Second)
	if !ga.Expires.Equal(time.Unix(1010, 0)) {
		t.Fatalf("expires %v on the fake clock", ga.Expires)
	}
	clk.add(30 * time.Second)
	if _, err := m.Check(ctx, "r", "frame:1", ga.Token); !errors.Is(err, framesync.PreconditionFailed) {
		t.Fatalf("check after expiry: %v", err)
	}
	gb, err := m.Acquire(ctx, "r", "frame:1", "bob", time.Minute)
	if err != nil || gb.Token <= ga.Token {
		t.Fatalf("bob after expiry: %+v %v", gb, err)
	}
}

func TestFileTokensBadRoom(t *testing.T) {
	toks, err := lease.OpenFileTokens(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, room := range []string{"../x", "", ".hidden", `a\b`} {
		if _, err := toks.Load(room); !errors.Is(err, framesync.BadInput) {
			t.Errorf("load %q: %v", room, err)
		}
		if err := toks.Reserve(room, 1); !errors.Is(err, framesync.BadInput) {
			t.Errorf("reserve %q: %v", room, err)
		}
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
