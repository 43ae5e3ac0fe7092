package fault_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"framesync"
	"framesync/crdt"
	"framesync/peer"
	"framesync/relay/wire"
)

// soakCounts are what the soak's clients did.
type soakCounts struct {
	mu                                   sync.Mutex
	commits, uncertain, conflicts        int
	replaces, stateEdits, reconnects     int
	staleRefused, staleAccepted, lockErr int
	starved                              int // lock not had within 30 s
	acked                                map[string]*wire.CommitResult
	lost                                 map[string]error
	failures                             []string
}

func (c *soakCounts) add(f func(c *soakCounts)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

// TestSoak (issue 8, test 5): 50 clients across two hubs edit one room at
// random for a minute (FRAMESYNC_FAULT_SOAK sets another duration):
// appends under the trajectory lock, frame replaces on the version read
// (conflicts expected), state edits, commits replayed with a released
// lock's token (must be refused), and disconnects with reconnects to
// either hub from the same replica. At the end every client and both hubs
// hold identical documents and every acknowledged append is there once.
func TestSoak(t *testing.T) {
	d := newDeployment(t)
	hubs := []*hubProc{d.startHub("a"), d.startHub("b")}
	const room = "soak"
	createRoom(t, room, hubs...)
	dur := time.Minute
	if v := os.Getenv("FRAMESYNC_FAULT_SOAK"); v != "" {
		var err error
		if dur, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	const clients = 50
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, %d clients, %v", seed, clients, dur)
	ctx, cancel := context.WithTimeout(context.Background(), dur+3*time.Minute)
	defer cancel()
	end := time.Now().Add(dur)
	cnt := &soakCounts{acked: map[string]*wire.CommitResult{}, lost: map[string]error{}}
	final := make([]*peer.Room, clients)
	var wg sync.WaitGroup
	for i := range clients {
		cache := t.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			final[i] = soakClient(ctx, t, fmt.Sprintf("s%02d", i), cache, hubs, room, end, rand.New(rand.NewPCG(seed, uint64(i))), cnt)
		}()
	}
	wg.Wait()
	if len(cnt.failures) > 0 {
		t.Fatalf("%d failures: %s", len(cnt.failures), strings.Join(cnt.failures[:min(10, len(cnt.failures))], "; "))
	}
	if cnt.staleAccepted > 0 {
		t.Fatalf("%d commits with a released lock's token were accepted", cnt.staleAccepted)
	}
	th := converged(t, room, hubs...)
	sh := hubs[0].heads(room, "state")
	wantT, _ := crdt.ParseHeads(th)
	wantS, _ := crdt.ParseHeads(sh)
	for i, r := range final {
		if r == nil {
			t.Fatalf("client %d ended without a room", i)
		}
		deadline := time.Now().Add(60 * time.Second)
		for !(r.Trajectory().Heads().Equal(wantT) && r.State().Heads().Equal(wantS)) {
			if time.Now().After(deadline) {
				c := r.Client()
				t.Fatalf("client %d (on %s, connected %v) did not converge within 60 s: trajectory %s, missing %d of the hubs' heads %s; state %s, missing %d of %s",
					i, c.HubURL(), c.Connected(), r.Trajectory().Heads(), missing(r.Trajectory().Doc(), wantT), wantT, r.State().Heads(), missing(r.State().Doc(), wantS), wantS)
			}
			time.Sleep(pollEvery)
		}
	}
	tags, n := tagsAt(t, hubs[1].URL, room, 3)
	st := editStats{acked: cnt.acked, uncertain: cnt.lost}
	landed := checkTags(t, tags, n, st)
	info := hubs[0].info(room)
	t.Logf("soak over %v with %d clients on 2 hubs:\n"+
		"  %-36s %6d\n  %-36s %6d\n  %-36s %6d\n  %-36s %6d\n  %-36s %6d\n  %-36s %6d\n  %-36s %6d\n  %-36s %6d\n  %-36s %6d\n  %-36s %6d\n  %-36s %6d\n  %-36s %6d",
		dur, clients,
		"appends acknowledged", cnt.commits,
		"appends with a lost answer", cnt.uncertain,
		"  of which landed", landed,
		"frame replaces acknowledged", cnt.replaces,
		"conflicts (stale base, frame locked)", cnt.conflicts,
		"lock attempts refused", cnt.lockErr,
		"lock not had within 30 s", cnt.starved,
		"state edits", cnt.stateEdits,
		"stale tokens refused", cnt.staleRefused,
		"disconnects + reconnects", cnt.reconnects,
		"frames at the end", n,
		"generation at the end", info.Generation)
}

// soakClient runs one client until end and returns its room, connected
// and synced.
func soakClient(ctx context.Context, t *testing.T, name, cache string, hubs []*hubProc, room string, end time.Time, rng *rand.Rand, cnt *soakCounts) *peer.Room {
	fail := func(op string, err error) {
		cnt.add(func(c *soakCounts) { c.failures = append(c.failures, fmt.Sprintf("%s %s: %v", name, op, err)) })
	}
	open := func() (*peer.Client, *peer.Room) {
		h := hubs[rng.IntN(len(hubs))]
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, err := peer.Connect(cctx, h.URL, &peer.Options{Name: name, Cache: cache, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
		if err != nil {
			fail("connect", err)
			return nil, nil
		}
		r, err := c.Join(cctx, room)
		if err == nil {
			err = r.WaitSynced(cctx)
		}
		if err != nil {
			fail("join", err)
			c.Close()
			return nil, nil
		}
		return c, r
	}
	c, r := open()
	if r == nil {
		return nil
	}
	t.Cleanup(func() { c.Close() })
	for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		switch p := rng.IntN(100); {
		case p < 35: // append under the trajectory lock
			tag := fmt.Sprintf("%s-%d", name, i)
			l, waits, err := lockTrajectory(octx, r, 5*time.Second)
			cnt.add(func(c *soakCounts) { c.lockErr += waits })
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				cnt.add(func(c *soakCounts) { c.starved++ }) // no fairness among waiters: counted, not a failure
				break
			}
			if err != nil {
				fail("lock", err)
				break
			}
			res, err := r.Append(octx, taggedFrame(tag, 3))
			switch {
			case err == nil:
				cnt.add(func(c *soakCounts) { c.commits++; c.acked[tag] = res })
				if err := r.State().SetBookmark(res.Frames[0].ID, tag); err != nil {
					fail("bookmark", err)
				}
			case isRefusal(err):
				fail("append", err)
			default:
				cnt.add(func(c *soakCounts) { c.uncertain++; c.lost[tag] = err })
			}
			l.Release(octx)
		case p < 55: // replace a frame on the version read: same content, new version
			n := r.Len()
			if n == 0 {
				break
			}
			j := n - 1 - rng.IntN(min(n, 4)) // the last frames: collisions likely
			e, err := r.Entry(j)
			if err != nil {
				break
			}
			f, err := r.FrameByID(octx, e.ID, "info.tag")
			if err != nil {
				fail("read frame", err)
				break
			}
			tag, _ := f.Info["tag"].(string)
			_, err = r.Replace(octx, e.ID, e.Version, taggedFrame(tag, 3))
			switch {
			case err == nil:
				cnt.add(func(c *soakCounts) { c.replaces++ })
			case errors.Is(err, framesync.Conflict), errors.Is(err, framesync.Locked):
				cnt.add(func(c *soakCounts) { c.conflicts++ })
			default:
				fail("replace", err)
			}
		case p < 85: // state edits
			var err error
			switch rng.IntN(3) {
			case 0:
				err = r.State().SetStep(int64(rng.IntN(1000)))
			case 1:
				err = r.State().SetSelection([]int64{int64(rng.IntN(10)), int64(rng.IntN(10))})
			case 2:
				err = r.State().SetSettings(map[string]any{name: int64(i)})
			}
			if err != nil {
				fail("state", err)
			} else {
				cnt.add(func(c *soakCounts) { c.stateEdits++ })
			}
		case p < 93: // a commit with a released lock's token
			l, waits, err := lockTrajectory(octx, r, 5*time.Second)
			cnt.add(func(c *soakCounts) { c.lockErr += waits })
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				cnt.add(func(c *soakCounts) { c.starved++ })
				break
			}
			if err != nil {
				fail("lock", err)
				break
			}
			hs, err := r.Upload(octx, taggedFrame(lateTag, 3))
			tok := l.Token()
			l.Release(octx)
			if err != nil {
				fail("upload", err)
				break
			}
			req := wire.CommitRequest{Op: wire.OpAppend, Token: tok, Manifests: []string{hs[0].String()}}
			code, body, _ := doHTTP(t, "POST", c.HubURL()+"/api/rooms/"+room+"/commit", req)
			switch code {
			case 412, 423:
				cnt.add(func(c *soakCounts) { c.staleRefused++ })
			case 200:
				cnt.add(func(c *soakCounts) { c.staleAccepted++ })
				fail("stale commit accepted", errors.New(string(body)))
			default:
				fail("stale commit", fmt.Errorf("%d %s", code, body))
			}
		default: // disconnect, reconnect to either hub with the same replica
			c.Close()
			c, r = open()
			if r == nil {
				cancel()
				return nil
			}
			cl := c
			t.Cleanup(func() { cl.Close() })
			cnt.add(func(c *soakCounts) { c.reconnects++ })
		}
		cancel()
	}
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := r.WaitSynced(sctx); err != nil {
		fail("final sync", err)
	}
	return r
}

// missing counts the heads in want that d does not have.
func missing(d *crdt.Doc, want crdt.Heads) int {
	n := 0
	for _, h := range want {
		if !d.HasChange(h) {
			n++
		}
	}
	return n
}
