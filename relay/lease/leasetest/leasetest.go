// Package leasetest checks that a lease backend behaves as documented: Run
// is the conformance suite that every backend (lease.Memory, lease.Redis)
// runs from its tests, so they share one set of semantics.
//
// The suite uses the real clock: expiry tests take leases of a few hundred
// milliseconds and poll with deadlines, so a backend whose TTLs are kept
// elsewhere (Redis) is tested the same way as the embedded one.
package leasetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"framesync"
	"framesync/relay/lease"
)

// Backend is a lease backend with the abilities the hub uses besides
// lease.Backend: events and Close.
type Backend interface {
	lease.Backend
	Subscribe(buf int) (<-chan lease.Event, func())
	Dropped() int64
	Close() error
}

// Harness describes the backend under test.
type Harness struct {
	// Open returns a new running backend persisting fencing token marks in
	// tokens (nil for none). It is called with the subtest's t; the suite
	// closes the backend when the subtest ends. Required.
	Open func(t *testing.T, tokens lease.TokenStore) Backend

	// Shared says that backends opened with the same t share their leases,
	// as hubs sharing one Redis do. The suite then also runs its many-hub
	// tests.
	Shared bool

	// Forget makes the lease store shared by the backends of t forget every
	// lease and counter, as a restart of Redis without persistence does.
	// It is called while no backend of t is open. Nil when a backend keeps
	// nothing beyond its own lifetime (Memory).
	Forget func(t *testing.T)
}

// Run runs the conformance suite against the backend described by h, one
// subtest per behaviour.
func Run(t *testing.T, h Harness) {
	if h.Open == nil {
		t.Fatal("leasetest: Harness needs Open")
	}
	tests := []struct {
		name   string
		fn     func(t *testing.T, h Harness)
		shared bool // only for shared backends
	}{
		{"AcquireRenewRelease", testAcquireRenewRelease, false},
		{"BadInput", testBadInput, false},
		{"Missing", testMissing, false},
		{"ExpiryRefusesLateCommit", testExpiryRefusesLateCommit, false},
		{"ExpiredEventArrives", testExpiredEventArrives, false},
		{"Events", testEvents, false},
		{"ReleaseHolder", testReleaseHolder, false},
		{"DropRoom", testDropRoom, false},
		{"TokensSurviveRestart", testTokensSurviveRestart, false},
		{"OneWinnerAtATime", testOneWinnerAtATime, false},
		{"SlowSubscriberDoesNotBlock", testSlowSubscriberDoesNotBlock, false},
		{"Closed", testClosed, false},
		{"HubsOneWinnerAtATime", testHubsOneWinnerAtATime, true},
		{"HubsSeeEachOthersEvents", testHubsSeeEachOthersEvents, true},
		{"HubDiesLeasesExpire", testHubDiesLeasesExpire, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.shared && !h.Shared {
				t.Skip("backends do not share leases")
			}
			tt.fn(t, h)
		})
	}
}

// open opens a backend that is closed when t ends.
func open(t *testing.T, h Harness, tokens lease.TokenStore) Backend {
	t.Helper()
	b := h.Open(t, tokens)
	t.Cleanup(func() { b.Close() })
	return b
}

// WaitFor polls cond until it is true, failing t after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// NextEvent returns the next event of ch, failing t after timeout.
func NextEvent(t testing.TB, ch <-chan lease.Event, timeout time.Duration) lease.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(timeout):
		t.Fatalf("no lease event within %v", timeout)
		return lease.Event{}
	}
}

// WaitEvent returns the first event of ch of kind k for room and target,
// skipping others, failing t after timeout.
func WaitEvent(t testing.TB, ch <-chan lease.Event, k lease.EventKind, room, target string, timeout time.Duration) lease.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-ch:
			if ev.Kind == k && ev.Grant.Room == room && ev.Grant.Target == target {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %v event for %s %s within %v", k, room, target, timeout)
			return lease.Event{}
		}
	}
}

func isKind(err error, k framesync.Kind) bool { return err != nil && framesync.KindOf(err) == k }

func testAcquireRenewRelease(t *testing.T, h Harness) {
	ctx := t.Context()
	m := open(t, h, nil)
	g, err := m.Acquire(ctx, "r", "frame:1", "alice", time.Minute)
	if err != nil || g.Token != 1 || g.Holder != "alice" || g.Room != "r" || g.Target != "frame:1" {
		t.Fatalf("acquire: %+v %v", g, err)
	}
	if d := time.Until(g.Expires); d < 50*time.Second || d > 70*time.Second {
		t.Fatalf("a one-minute lease expires in %v", d)
	}
	// Re-acquire by the holder extends and keeps the token.
	g2, err := m.Acquire(ctx, "r", "frame:1", "alice", 2*time.Minute)
	if err != nil || g2.Token != g.Token || !g2.Expires.After(g.Expires) {
		t.Fatalf("re-acquire: %+v %v", g2, err)
	}
	// Someone else: HeldError naming the holder.
	_, err = m.Acquire(ctx, "r", "frame:1", "bob", time.Minute)
	var he *lease.HeldError
	if !errors.As(err, &he) || he.Grant.Holder != "alice" || he.Grant.Token != g.Token || !errors.Is(err, framesync.Locked) || framesync.KindOf(err) != framesync.Locked {
		t.Fatalf("bob: %v", err)
	}
	if !he.Grant.Expires.Equal(g2.Expires) {
		t.Fatalf("held error names expiry %v, want %v", he.Grant.Expires, g2.Expires)
	}
	g3, err := m.Renew(ctx, "r", "frame:1", "alice", g.Token, time.Minute)
	if err != nil || g3.Token != g.Token || g3.Holder != "alice" {
		t.Fatalf("renew: %+v %v", g3, err)
	}
	if _, err := m.Renew(ctx, "r", "frame:1", "alice", g.Token+5, time.Minute); !errors.Is(err, framesync.Locked) {
		t.Fatalf("renew with a wrong token: %v", err)
	}
	if _, err := m.Renew(ctx, "r", "frame:1", "bob", g.Token, time.Minute); !errors.Is(err, framesync.Locked) {
		t.Fatalf("renew by another holder: %v", err)
	}
	if got, err := m.Check(ctx, "r", "frame:1", g.Token); err != nil || got.Holder != "alice" || got.Token != g.Token {
		t.Fatalf("check: %+v %v", got, err)
	}
	if got, ok, err := m.Get(ctx, "r", "frame:1"); err != nil || !ok || got.Token != g.Token || !got.Expires.Equal(g3.Expires) {
		t.Fatalf("get: %+v %v %v (renewed to %v)", got, ok, err, g3.Expires)
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
	if _, err := m.Check(ctx, "r", "frame:1", g.Token); !errors.Is(err, framesync.PreconditionFailed) {
		t.Fatalf("check after release: %v", err)
	}
	if _, ok, err := m.Get(ctx, "r", "frame:1"); ok || err != nil {
		t.Fatalf("get after release: %v %v", ok, err)
	}
	// Tokens grow per room, independently.
	gb, _ := m.Acquire(ctx, "r", "frame:1", "bob", time.Minute)
	gc, _ := m.Acquire(ctx, "other", "trajectory", "bob", time.Minute)
	if gb.Token != 2 || gc.Token != 1 {
		t.Fatalf("tokens %d %d", gb.Token, gc.Token)
	}
	if gs, err := m.List(ctx, "r"); err != nil || len(gs) != 1 || gs[0].Holder != "bob" || gs[0].Token != 2 {
		t.Fatalf("list %+v %v", gs, err)
	}
	// A release under an older token of the target is not an error and
	// leaves the newer lease alone.
	if err := m.Release(ctx, "r", "frame:1", "alice", g.Token); err != nil {
		t.Fatalf("release of an older token: %v", err)
	}
	if _, err := m.Check(ctx, "r", "frame:1", gb.Token); err != nil {
		t.Fatalf("bob's lease after alice's stale release: %v", err)
	}
	// A check under the old token names the new holder.
	_, err = m.Check(ctx, "r", "frame:1", g.Token)
	if !errors.As(err, &he) || he.Grant.Holder != "bob" {
		t.Fatalf("check with an old token: %v", err)
	}
}

func testBadInput(t *testing.T, h Harness) {
	ctx := t.Context()
	m := open(t, h, nil)
	for _, tc := range []struct {
		target, holder string
		ttl            time.Duration
	}{
		{"", "alice", time.Minute},
		{"frame 1", "alice", time.Minute},
		{"frame:\x00", "alice", time.Minute},
		{strings.Repeat("x", 201), "alice", time.Minute},
		{"trajectory", "", time.Minute},
		{"trajectory", "alice", 0},
		{"trajectory", "alice", -time.Second},
	} {
		if _, err := m.Acquire(ctx, "r", tc.target, tc.holder, tc.ttl); !isKind(err, framesync.BadInput) {
			t.Errorf("acquire %q by %q for %v: %v, want bad input", tc.target, tc.holder, tc.ttl, err)
		}
	}
	g, err := m.Acquire(ctx, "r", "trajectory", "alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Renew(ctx, "r", "trajectory", "alice", g.Token, 0); !isKind(err, framesync.BadInput) {
		t.Errorf("renew for 0: %v", err)
	}
	if gs, _ := m.List(ctx, "r"); len(gs) != 1 {
		t.Errorf("bad input changed the leases: %+v", gs)
	}
}

func testMissing(t *testing.T, h Harness) {
	ctx := t.Context()
	m := open(t, h, nil)
	if _, err := m.Check(ctx, "nowhere", "trajectory", 1); !errors.Is(err, framesync.PreconditionFailed) {
		t.Fatalf("check in an unknown room: %v", err)
	}
	if _, err := m.Renew(ctx, "nowhere", "trajectory", "alice", 1, time.Minute); !errors.Is(err, framesync.PreconditionFailed) {
		t.Fatalf("renew in an unknown room: %v", err)
	}
	if err := m.Release(ctx, "nowhere", "trajectory", "alice", 1); err != nil {
		t.Fatalf("release in an unknown room: %v", err)
	}
	if _, ok, err := m.Get(ctx, "nowhere", "trajectory"); ok || err != nil {
		t.Fatalf("get in an unknown room: %v %v", ok, err)
	}
	if gs, err := m.List(ctx, "nowhere"); len(gs) != 0 || err != nil {
		t.Fatalf("list of an unknown room: %+v %v", gs, err)
	}
	if gs, err := m.ReleaseHolder(ctx, "nobody"); len(gs) != 0 || err != nil {
		t.Fatalf("release of an unknown holder: %+v %v", gs, err)
	}
	if err := m.DropRoom(ctx, "nowhere"); err != nil {
		t.Fatalf("drop of an unknown room: %v", err)
	}
}

func testExpiryRefusesLateCommit(t *testing.T, h Harness) {
	ctx := t.Context()
	m := open(t, h, nil)
	const ttl = 300 * time.Millisecond
	start := time.Now()
	ga, err := m.Acquire(ctx, "r", "frame:1", "alice", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Check(ctx, "r", "frame:1", ga.Token); err != nil && time.Since(start) < ttl {
		t.Fatalf("check within the ttl: %v", err)
	}
	WaitFor(t, 5*time.Second, "the lease to expire", func() bool {
		_, err := m.Check(ctx, "r", "frame:1", ga.Token)
		if err != nil && !errors.Is(err, framesync.PreconditionFailed) {
			t.Fatalf("check: %v", err)
		}
		return err != nil
	})
	if late := time.Since(ga.Expires); late > 2*time.Second {
		t.Fatalf("lease still held %v after its expiry", late)
	}
	if _, err := m.Renew(ctx, "r", "frame:1", "alice", ga.Token, time.Minute); !errors.Is(err, framesync.PreconditionFailed) {
		t.Fatalf("renew after expiry: %v", err)
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
	if err := m.Release(ctx, "r", "frame:1", "alice", ga.Token); err != nil {
		t.Fatalf("late release: %v", err)
	}
	if _, err := m.Check(ctx, "r", "frame:1", gb.Token); err != nil {
		t.Fatalf("bob's lease after alice's late release: %v", err)
	}
}

func testExpiredEventArrives(t *testing.T, h Harness) {
	ctx := t.Context()
	m := open(t, h, nil)
	events, cancel := m.Subscribe(16)
	defer cancel()
	g, err := m.Acquire(ctx, "r", "presenter", "alice", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ev := WaitEvent(t, events, lease.Expired, "r", "presenter", 5*time.Second)
	if ev.Grant.Token != g.Token || ev.Grant.Holder != "alice" || !ev.Grant.Expires.Equal(g.Expires) {
		t.Fatalf("expired %+v, granted %+v", ev.Grant, g)
	}
	if late := time.Since(g.Expires); late > time.Second {
		t.Fatalf("expiry delivered %v late", late)
	}
	if _, ok, _ := m.Get(ctx, "r", "presenter"); ok {
		t.Fatal("still held after expiry")
	}
}

// testEvents checks the events of a lease's life, in order, with the
// grants the operations returned.
func testEvents(t *testing.T, h Harness) {
	ctx := t.Context()
	m := open(t, h, nil)
	events, cancel := m.Subscribe(64)
	defer cancel()
	type want struct {
		kind lease.EventKind
		g    lease.Grant
	}
	var wants []want
	must := func(g lease.Grant, err error) lease.Grant {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	g := must(m.Acquire(ctx, "r", "frame:1", "alice", time.Minute))
	wants = append(wants, want{lease.Acquired, g})
	g = must(m.Acquire(ctx, "r", "frame:1", "alice", 2*time.Minute))
	wants = append(wants, want{lease.Renewed, g})
	g = must(m.Renew(ctx, "r", "frame:1", "alice", g.Token, 3*time.Minute))
	wants = append(wants, want{lease.Renewed, g})
	if _, err := m.Acquire(ctx, "r", "frame:1", "bob", time.Minute); err == nil {
		t.Fatal("bob took alice's lease")
	}
	if err := m.Release(ctx, "r", "frame:1", "alice", g.Token); err != nil {
		t.Fatal(err)
	}
	wants = append(wants, want{lease.Released, g})
	g = must(m.Acquire(ctx, "r", "trajectory", "carol", time.Minute))
	wants = append(wants, want{lease.Acquired, g})
	if _, err := m.ReleaseHolder(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	wants = append(wants, want{lease.Released, g})
	g = must(m.Acquire(ctx, "r", "presenter", "dave", time.Minute))
	wants = append(wants, want{lease.Acquired, g})
	if err := m.DropRoom(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	wants = append(wants, want{lease.Released, g})
	for i, w := range wants {
		ev := NextEvent(t, events, 5*time.Second)
		if ev.Kind != w.kind || !sameGrant(ev.Grant, w.g) {
			t.Fatalf("event %d: %v %+v, want %v %+v", i, ev.Kind, ev.Grant, w.kind, w.g)
		}
	}
	select {
	case ev := <-events:
		t.Fatalf("unexpected event %v %+v", ev.Kind, ev.Grant)
	default:
	}
}

// sameGrant compares grants, their expiries as instants.
func sameGrant(a, b lease.Grant) bool {
	return a.Room == b.Room && a.Target == b.Target && a.Holder == b.Holder && a.Token == b.Token && a.Expires.Equal(b.Expires)
}

func testReleaseHolder(t *testing.T, h Harness) {
	ctx := t.Context()
	m := open(t, h, nil)
	m.Acquire(ctx, "b", "frame:1", "alice", time.Minute)
	m.Acquire(ctx, "a", "trajectory", "alice", time.Minute)
	m.Acquire(ctx, "b", "frame:2", "bob", time.Minute)
	gs, err := m.ReleaseHolder(ctx, "alice")
	if err != nil || len(gs) != 2 {
		t.Fatalf("released %+v %v", gs, err)
	}
	if gs[0].Room != "a" || gs[0].Target != "trajectory" || gs[1].Room != "b" || gs[1].Target != "frame:1" || gs[0].Holder != "alice" || gs[1].Token != 1 {
		t.Fatalf("released grants %+v, want a/trajectory then b/frame:1", gs)
	}
	if _, ok, _ := m.Get(ctx, "b", "frame:2"); !ok {
		t.Fatal("bob's lease went too")
	}
	if _, ok, _ := m.Get(ctx, "a", "trajectory"); ok {
		t.Fatal("alice's lease stayed")
	}
	if gs, _ := m.ReleaseHolder(ctx, "alice"); len(gs) != 0 {
		t.Fatalf("released again: %+v", gs)
	}
	// Alice can lock again, under a new token.
	g, err := m.Acquire(ctx, "b", "frame:1", "alice", time.Minute)
	if err != nil || g.Token != 3 {
		t.Fatalf("alice again: %+v %v", g, err)
	}
}

func testDropRoom(t *testing.T, h Harness) {
	ctx := t.Context()
	m := open(t, h, nil)
	m.Acquire(ctx, "d", "frame:1", "alice", time.Minute)
	g2, _ := m.Acquire(ctx, "d", "frame:2", "bob", time.Minute)
	m.Acquire(ctx, "e", "frame:1", "alice", time.Minute)
	if err := m.DropRoom(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if gs, _ := m.List(ctx, "d"); len(gs) != 0 {
		t.Fatalf("leases after drop: %+v", gs)
	}
	if gs, _ := m.List(ctx, "e"); len(gs) != 1 {
		t.Fatalf("another room's leases after drop: %+v", gs)
	}
	g, err := m.Acquire(ctx, "d", "frame:1", "carol", time.Minute)
	if err != nil || g.Token <= g2.Token {
		t.Fatalf("a token of a dropped room was reused: %+v after %d (%v)", g, g2.Token, err)
	}
}

func testTokensSurviveRestart(t *testing.T, h Harness) {
	ctx := t.Context()
	dir := t.TempDir()
	openTokens := func() Backend {
		toks, err := lease.OpenFileTokens(dir)
		if err != nil {
			t.Fatal(err)
		}
		return open(t, h, toks)
	}
	m := openTokens()
	last := Churn(ctx, t, m, "room", "trajectory", "a", 3000) // crosses reservation blocks
	if err := m.DropRoom(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	// A lease left held when the backend stops.
	g, err := m.Acquire(ctx, "room", "frame:1", "a", time.Minute)
	if err != nil || g.Token <= last {
		t.Fatalf("after drop: token %d, last before %d (%v)", g.Token, last, err)
	}
	last = g.Token
	m.Close() // as a crash would: nothing is written on close
	if h.Forget != nil {
		h.Forget(t) // and the shared store lost its counters too
	}
	m = openTokens()
	g, err = m.Acquire(ctx, "room", "trajectory", "a", time.Minute)
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
}

func testOneWinnerAtATime(t *testing.T, h Harness) {
	m := open(t, h, nil)
	oneWinner(t, []Backend{m}, 8, 300)
}

// oneWinner runs workers goroutines per backend, each locking and
// unlocking one target rounds times, and fails t if two ever hold it at
// once or a token is not above every token granted before.
func oneWinner(t *testing.T, bs []Backend, workers, rounds int) {
	ctx := t.Context()
	var holders atomic.Int32
	var mu sync.Mutex // guards last
	var last int64
	var wins atomic.Int64
	var wg sync.WaitGroup
	for bi, m := range bs {
		for i := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				who := fmt.Sprintf("hub%d-%c", bi, 'a'+i)
				for range rounds {
					g, err := m.Acquire(ctx, "r", "trajectory", who, time.Minute)
					if err != nil {
						if !errors.Is(err, framesync.Locked) {
							t.Errorf("acquire: %v", err)
							return
						}
						continue
					}
					if n := holders.Add(1); n != 1 {
						t.Errorf("%d holders at once", n)
					}
					mu.Lock()
					if g.Token <= last {
						t.Errorf("token %d granted after %d", g.Token, last)
					}
					last = g.Token
					mu.Unlock()
					wins.Add(1)
					holders.Add(-1)
					if err := m.Release(ctx, "r", "trajectory", who, g.Token); err != nil {
						t.Errorf("release: %v", err)
					}
				}
			}()
		}
	}
	wg.Wait()
	if wins.Load() == 0 {
		t.Fatal("nobody ever got the lock")
	}
}

func testSlowSubscriberDoesNotBlock(t *testing.T, h Harness) {
	ctx := t.Context()
	m := open(t, h, nil)
	_, cancel := m.Subscribe(1) // never read
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			g, err := m.Acquire(ctx, "r", "trajectory", "a", time.Minute)
			if err != nil {
				t.Errorf("acquire: %v", err)
				return
			}
			m.Release(ctx, "r", "trajectory", "a", g.Token)
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("lease operations blocked on a slow subscriber")
	}
	WaitFor(t, 5*time.Second, "events counted as dropped", func() bool { return m.Dropped() > 0 })
}

func testClosed(t *testing.T, h Harness) {
	ctx := t.Context()
	m := open(t, h, nil)
	g, err := m.Acquire(ctx, "r", "trajectory", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := m.Acquire(ctx, "r", "frame:1", "a", time.Minute); !isKind(err, framesync.Unavailable) {
		t.Errorf("acquire after close: %v", err)
	}
	if _, err := m.Renew(ctx, "r", "trajectory", "a", g.Token, time.Minute); !isKind(err, framesync.Unavailable) {
		t.Errorf("renew after close: %v", err)
	}
	if _, err := m.Check(ctx, "r", "trajectory", g.Token); !isKind(err, framesync.Unavailable) {
		t.Errorf("check after close: %v", err)
	}
	if err := m.Release(ctx, "r", "trajectory", "a", g.Token); !isKind(err, framesync.Unavailable) {
		t.Errorf("release after close: %v", err)
	}
}

func testHubsOneWinnerAtATime(t *testing.T, h Harness) {
	a, b := open(t, h, nil), open(t, h, nil)
	oneWinner(t, []Backend{a, b}, 4, 200)
	// Alternating hubs: every grant's token is above the one before.
	ctx := t.Context()
	var last int64
	for i := range 50 {
		m := []Backend{a, b}[i%2]
		g, err := m.Acquire(ctx, "r", "frame:1", "alice", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if g.Token <= last {
			t.Fatalf("grant %d: token %d after %d", i, g.Token, last)
		}
		last = g.Token
		if err := m.Release(ctx, "r", "frame:1", "alice", g.Token); err != nil {
			t.Fatal(err)
		}
	}
}

func testHubsSeeEachOthersEvents(t *testing.T, h Harness) {
	ctx := t.Context()
	a, b := open(t, h, nil), open(t, h, nil)
	events, cancel := a.Subscribe(64)
	defer cancel()
	g, err := b.Acquire(ctx, "r", "presenter", "bob", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if ev := WaitEvent(t, events, lease.Acquired, "r", "presenter", 5*time.Second); !sameGrant(ev.Grant, g) {
		t.Fatalf("acquired on the other hub: %+v, granted %+v", ev.Grant, g)
	}
	// The lease is the same on both hubs.
	if _, err := a.Acquire(ctx, "r", "presenter", "alice", time.Minute); !errors.Is(err, framesync.Locked) {
		t.Fatalf("alice through the other hub: %v", err)
	}
	if got, err := a.Check(ctx, "r", "presenter", g.Token); err != nil || got.Holder != "bob" {
		t.Fatalf("check through the other hub: %+v %v", got, err)
	}
	// A lease is released through the hub the client is on now.
	if err := a.Release(ctx, "r", "presenter", "bob", g.Token); err != nil {
		t.Fatal(err)
	}
	if ev := WaitEvent(t, events, lease.Released, "r", "presenter", 5*time.Second); ev.Grant.Token != g.Token {
		t.Fatalf("released %+v", ev.Grant)
	}
	g, err = b.Acquire(ctx, "r", "frame:1", "bob", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if gs, err := a.ReleaseHolder(ctx, "bob"); err != nil || len(gs) != 1 || gs[0].Token != g.Token {
		t.Fatalf("release holder through the other hub: %+v %v", gs, err)
	}
	if ev := WaitEvent(t, events, lease.Released, "r", "frame:1", 5*time.Second); ev.Grant.Token != g.Token {
		t.Fatalf("released %+v", ev.Grant)
	}
}

func testHubDiesLeasesExpire(t *testing.T, h Harness) {
	ctx := t.Context()
	a, b := open(t, h, nil), open(t, h, nil)
	events, cancel := a.Subscribe(64)
	defer cancel()
	g, err := b.Acquire(ctx, "r", "trajectory", "bob", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	b.Close() // the hub dies without releasing
	ev := WaitEvent(t, events, lease.Expired, "r", "trajectory", 5*time.Second)
	if ev.Grant.Token != g.Token || ev.Grant.Holder != "bob" {
		t.Fatalf("expired %+v, granted %+v", ev.Grant, g)
	}
	if late := time.Since(g.Expires); late > 2*time.Second {
		t.Fatalf("expiry of a dead hub's lease reported %v late", late)
	}
	if _, err := a.Check(ctx, "r", "trajectory", g.Token); !errors.Is(err, framesync.PreconditionFailed) {
		t.Fatalf("check of the dead hub's lease: %v", err)
	}
	g2, err := a.Acquire(ctx, "r", "trajectory", "alice", time.Minute)
	if err != nil || g2.Token <= g.Token {
		t.Fatalf("alice after bob's hub died: %+v %v", g2, err)
	}
}

// Churn acquires and releases target of room n times as holder, checking
// that every grant's token is above the one before, and returns the last
// token.
func Churn(ctx context.Context, t testing.TB, b lease.Backend, room, target, holder string, n int) int64 {
	t.Helper()
	var last int64
	for i := range n {
		g, err := b.Acquire(ctx, room, target, holder, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if g.Token <= last {
			t.Fatalf("grant %d: token %d after %d", i, g.Token, last)
		}
		last = g.Token
		if err := b.Release(ctx, room, target, holder, g.Token); err != nil {
			t.Fatal(err)
		}
	}
	return last
}
