package fault_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"framesync/crdt"
)

// TestTwoHubsConcurrentCommits (issue 8, test 1): two hub processes share
// one Redis and one blob directory; clients on both edit one room at once
// (lock, append, bookmark, unlock, in rounds). Every commit lands exactly
// once, with its content, and the hubs' and the clients' replicas of both
// documents converge.
func TestTwoHubsConcurrentCommits(t *testing.T) {
	d := newDeployment(t)
	a, b := d.startHub("a"), d.startHub("b")
	const room = "together"
	createRoom(t, room, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const perHub, rounds = 3, 15
	start := time.Now()
	ed := startEditors(t, ctx, room, []*hubProc{a, b}, perHub, rounds, 10*time.Second)
	st := ed.wait(t)
	took := time.Since(start)
	if st.Acked != 2*perHub*rounds {
		t.Fatalf("%d of %d commits acknowledged: %s", st.Acked, 2*perHub*rounds, st)
	}
	th := converged(t, room, a, b)
	sh := a.heads(room, "state")
	for _, h := range []*hubProc{a, b} {
		info := h.info(room)
		if info.Frames != st.Acked || info.Generation != int64(st.Acked) {
			t.Fatalf("hub %s: %d frames at generation %d, want %d", h.name, info.Frames, info.Generation, st.Acked)
		}
	}
	// Every client's replica reaches the hubs' documents.
	wantT, _ := crdt.ParseHeads(th)
	wantS, _ := crdt.ParseHeads(sh)
	for i, r := range ed.rooms {
		if err := r.WaitGeneration(ctx, int64(st.Acked)); err != nil {
			t.Fatalf("client %s: %v", ed.names[i], err)
		}
		eventually(t, 30*time.Second, "client "+ed.names[i]+" to converge", func() bool {
			return r.Trajectory().Heads().Equal(wantT) && r.State().Heads().Equal(wantS)
		})
		bm, err := r.State().Bookmarks()
		if err != nil {
			t.Fatal(err)
		}
		for tag, res := range st.acked {
			if bm[res.Frames[0].ID] != tag {
				t.Fatalf("client %s: bookmark of %s is %q", ed.names[i], tag, bm[res.Frames[0].ID])
			}
		}
	}
	for _, h := range []*hubProc{a, b} {
		tags, n := tagsAt(t, h.URL, room, 3)
		checkTags(t, tags, n, st)
	}
	t.Logf("%d clients x %d rounds over 2 hubs in %v (%.1f commits/s): %s", 2*perHub, rounds, took.Round(time.Millisecond),
		float64(st.Acked)/took.Seconds(), st)
}

// TestHubKilledDuringCommits (issue 8, test 2): 1,000 commits from clients of
// two hubs; three times a hub (a, b, a again) is killed (SIGKILL) while one
// of its clients' commit requests is in flight, the other hub's clients go
// on alone for a while, and the hub is restarted on the same data
// directory and address. Every acknowledged commit is then on both hubs
// exactly once and its frame reads back verified (every blob fetched and
// its hash checked, the content compared). The only other frames are
// those of commits whose answer was lost with the hub: the client cannot
// know whether they landed, and each is there once or not at all. So the
// frame count is the acknowledged commits plus the unanswered ones that
// landed, and every frame is accounted for.
func TestHubKilledDuringCommits(t *testing.T) {
	d := newDeployment(t)
	a, b := d.startHub("a"), d.startHub("b")
	const room = "crash"
	createRoom(t, room, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	const perHub, rounds = 4, 125 // 8 clients x 125 = 1,000 commits
	const ttl = 3 * time.Second
	start := time.Now()
	ed := startEditors(t, ctx, room, []*hubProc{a, b}, perHub, rounds, ttl)
	var log []string
	for i, h := range []*hubProc{a, b, a} {
		ed.waitAcked(t, 200+300*i)
		// Kill while one of its clients' commits is in flight.
		inflight := ed.inflight[h.name]
		deadline := time.Now().Add(time.Minute)
		for inflight.Load() == 0 && time.Now().Before(deadline) {
			runtime.Gosched()
		}
		hit := inflight.Load() > 0
		killAt := time.Now()
		h.Kill()
		atKill := ed.acked()
		other := ed.finished[map[string]string{"a": "b", "b": "a"}[h.name]]
		// The other hub's clients go on alone (unless they are done).
		eventually(t, 2*time.Minute, "commits through the other hub", func() bool { return ed.acked() >= atKill+15 || other.Load() == perHub })
		down := time.Since(killAt)
		ready := h.Start()
		log = append(log, fmt.Sprintf("kill %d: hub %s at %d acks (commit in flight: %v), down %v (%d commits through the other meanwhile), ready %v after restart",
			i+1, h.name, atKill, hit, down.Round(time.Millisecond), ed.acked()-atKill, ready.Round(time.Millisecond)))
	}
	st := ed.wait(t)
	took := time.Since(start)

	th := converged(t, room, a, b)
	var frames, landed [2]int
	for i, h := range []*hubProc{a, b} {
		tags, n := tagsAt(t, h.URL, room, 3)
		landed[i] = checkTags(t, tags, n, st)
		if n != st.Acked+landed[i] {
			t.Errorf("hub %s: %d frames, %d acknowledged + %d unanswered that landed", h.name, n, st.Acked, landed[i])
		}
		frames[i] = n
		if info := h.info(room); info.Generation != int64(n) {
			t.Errorf("hub %s: generation %d with %d frames", h.name, info.Generation, n)
		}
	}
	for _, l := range log {
		t.Log(l)
	}
	t.Logf("1,000 commit attempts by 8 clients in %v; frames a %d b %d (unanswered that landed: %d); heads %s; %s",
		took.Round(time.Millisecond), frames[0], frames[1], landed[0], th, st)
}
