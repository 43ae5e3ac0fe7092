package fault_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"framesync/relay/wire"
)

// trajectoryLocked reports whether hub h lists a trajectory lock in room.
func trajectoryLocked(h *hubProc, room string) bool {
	for _, l := range h.info(room).Locks {
		if l.Target == "trajectory" {
			return true
		}
	}
	return false
}

// refused checks that a replayed commit was refused because of its lock
// (412 lease gone, 423 held by another token) with an error body naming
// the problem, and returns the body's message.
func refused(t *testing.T, who string, code int, body []byte) string {
	t.Helper()
	if code != 412 && code != 423 {
		t.Fatalf("%s: stale commit answered %d %s, want 412 or 423", who, code, body)
	}
	var e map[string]any
	if json.Unmarshal(body, &e) != nil || len(e) == 0 {
		t.Fatalf("%s: refusal without an error body: %s", who, body)
	}
	msg := strings.ToLower(string(body))
	if !strings.Contains(msg, "lock") && !strings.Contains(msg, "token") && !strings.Contains(msg, "lease") {
		t.Fatalf("%s: refusal does not say it is about the lock: %s", who, body)
	}
	return string(body)
}

// TestKilledLockHolderIsFenced (issue 8, test 3): a client process holds
// the trajectory lock (TTL 2 s) and is in the middle of uploading when it
// is killed (SIGKILL) or frozen (SIGSTOP). The lock frees, another client
// on the other hub commits, and the first client's commit, sent late with
// its old fencing token, is refused by both hubs; nothing of it lands.
func TestKilledLockHolderIsFenced(t *testing.T) {
	d := newDeployment(t)
	a, b := d.startHub("a"), d.startHub("b")
	const room = "fence"
	createRoom(t, room, a, b)
	other := joinRoom(t, connect(t, b.URL, "other"), room)
	const ttl = 2 * time.Second

	for _, mode := range []string{"kill", "stop"} {
		t.Run(mode, func(t *testing.T) {
			ch := startChild(t, a.URL, room, ttl)
			ch.expect("LOCKED", 60*time.Second)
			ch.expect("UPLOADING", 30*time.Second)
			req := ch.savedRequest()
			eventually(t, 10*time.Second, "the child's lock to show on hub b", func() bool { return trajectoryLocked(b, room) })
			before := b.info(room)

			start := time.Now()
			if mode == "kill" {
				ch.kill()
			} else {
				ch.signal(syscall.SIGSTOP)
			}
			eventually(t, 3*ttl, "the lock to free", func() bool { return !trajectoryLocked(a, room) && !trajectoryLocked(b, room) })
			freed := time.Since(start)

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			l, _, err := lockTrajectory(ctx, other, ttl)
			if err != nil {
				t.Fatal(err)
			}
			if l.Token() <= req.Token {
				t.Fatalf("new lock's token %d is not above the old %d", l.Token(), req.Token)
			}
			res, err := other.Append(ctx, taggedFrame("winner-"+mode, 3))
			if err != nil {
				t.Fatal(err)
			}
			// The stale commit, once while the new lock is held (423 or
			// 412) and once after it is released (412).
			held := map[string]string{}
			for _, h := range []*hubProc{a, b} {
				code, body, _ := h.do("POST", "/api/rooms/"+room+"/commit", req)
				held[h.name] = refused(t, "replay on "+h.name+" while the new lock is held", code, body)
			}
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
			var late string
			if mode == "kill" {
				code, body, _ := a.do("POST", "/api/rooms/"+room+"/commit", req)
				late = refused(t, "replay on a after release", code, body)
			} else {
				ch.signal(syscall.SIGCONT)
				if _, err := ch.stdin.Write([]byte("commit\n")); err != nil {
					t.Fatal(err)
				}
				line := strings.TrimPrefix(ch.expect("STATUS", 30*time.Second), "STATUS ")
				codeStr, body, _ := strings.Cut(line, " ")
				code, _ := strconv.Atoi(codeStr)
				late = refused(t, "the resumed child's own commit", code, []byte(body))
			}
			th := converged(t, room, a, b)
			for _, h := range []*hubProc{a, b} {
				info := h.info(room)
				if info.Frames != before.Frames+1 || info.Generation != res.Generation {
					t.Fatalf("hub %s: %d frames at generation %d, want %d at %d", h.name, info.Frames, info.Generation, before.Frames+1, res.Generation)
				}
			}
			tags, _ := tagsAt(t, a.URL, room, 3)
			if tags[lateTag] != 0 || tags["winner-"+mode] != 1 {
				t.Fatalf("tags after the stale commit: %v", tags)
			}
			t.Logf("%s: lock freed %v after the holder was %s (TTL %v); old token %d, new %d; refused while held: a %s b %s; late: %s; heads %s",
				mode, freed.Round(time.Millisecond), map[string]string{"kill": "killed", "stop": "frozen"}[mode], ttl, req.Token, l.Token(),
				held["a"], held["b"], late, th)
			ch.kill()
		})
	}
}

// TestRedisRestart (issue 8, test 4): Redis is killed and started again
// empty (no persistence) while clients of two hubs edit. Afterwards no
// token from before is accepted, the hubs report ready again, the clients
// commit again without anyone doing anything, and a new hub gets the room
// (the hubs published it again).
func TestRedisRestart(t *testing.T) {
	d := newDeployment(t)
	a, b := d.startHub("a"), d.startHub("b")
	const room = "restart"
	createRoom(t, room, a, b)
	hubs := []*hubProc{a, b}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Editors on both hubs run throughout.
	ed := startEditors(t, ctx, room, hubs, 2, 0, 3*time.Second)
	ed.waitAcked(t, 20)

	// A stale request: lock through a (among the editors), upload, commit
	// once, and keep a second request; Redis dies while the lock is held.
	stale := joinRoom(t, connect(t, a.URL, "stale"), room)
	sl, _, err := lockTrajectory(ctx, stale, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hashes, err := stale.Upload(ctx, taggedFrame(lateTag, 3))
	if err != nil {
		t.Fatal(err)
	}
	staleReq := wire.CommitRequest{Op: wire.OpAppend, Token: sl.Token(), Manifests: []string{hashes[0].String()}}
	if _, err := stale.Append(ctx, taggedFrame("stale-holder-ok", 3)); err != nil {
		t.Fatal(err)
	}

	restartAt := time.Now()
	d.redis.Restart()
	restarted := time.Since(restartAt)
	ackedAtRestart := ed.acked()

	// The stale token, on both hubs, as soon as they answer.
	for _, h := range hubs {
		var code int
		var body []byte
		eventually(t, 30*time.Second, "hub "+h.name+" to answer the stale commit", func() bool {
			code, body, _ = h.do("POST", "/api/rooms/"+room+"/commit", staleReq)
			return code != 503 && code != 0
		})
		msg := refused(t, "stale token on "+h.name+" after the Redis restart", code, body)
		t.Logf("stale token %d on %s after restart: %d %s", staleReq.Token, h.name, code, msg)
	}
	for _, h := range hubs {
		eventually(t, 30*time.Second, "hub "+h.name+" ready", h.Ready)
	}
	readyAfter := time.Since(restartAt)
	// Clients recover by themselves: more commits after the restart.
	recover := eventually(t, 60*time.Second, "commits after the restart", func() bool { return ed.acked() >= ackedAtRestart+20 })
	// The stale holder's client is told its lock is gone; its next edit
	// takes a new lock (a new token) or is refused, never uses the old one.
	eventually(t, 10*time.Second, "the stale holder's lock reported lost", func() bool {
		select {
		case <-sl.Lost():
			return true
		default:
			return false
		}
	})
	afterTag := "stale-holder-after"
	_, afterErr := stale.Append(ctx, taggedFrame(afterTag, 3))
	t.Logf("stale holder: lock lost (%v); its next append, under a lock of its own: %v", sl.Err(), afterErr)
	sl.Release(ctx)
	// Tokens granted after the restart, through the other hub, are above
	// the stale one.
	fresh := joinRoom(t, connect(t, b.URL, "fresh"), room)
	fl, _, err := lockTrajectory(ctx, fresh, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if fl.Token() <= staleReq.Token {
		t.Fatalf("token %d granted through b after the restart is not above the stale %d", fl.Token(), staleReq.Token)
	}
	t.Logf("stale token %d (through a, before the restart); granted through b after it: %d", staleReq.Token, fl.Token())
	// And the stale token again, while the fresh lock is held and after.
	code, body, _ := a.do("POST", "/api/rooms/"+room+"/commit", staleReq)
	refused(t, "stale token on a while b's client holds the lock", code, body)
	fl.Release(ctx)
	for _, h := range hubs {
		code, body, _ := h.do("POST", "/api/rooms/"+room+"/commit", staleReq)
		refused(t, "stale token on "+h.name+" after new grants", code, body)
	}
	st := ed.stop(t)
	converged(t, room, a, b)
	// A hub that joins after the restart, with an empty data directory,
	// gets the room: the others published it again.
	c := d.startHub("c")
	eventually(t, 30*time.Second, "the room on the new hub c", func() bool {
		code, _, _ := c.do("GET", "/api/rooms/"+room, nil)
		return code == 200
	})
	converged(t, room, a, b, c)
	tags, n := tagsAt(t, b.URL, room, 3)
	extra := []string{"stale-holder-ok"}
	if afterErr == nil {
		extra = append(extra, afterTag)
	}
	checkTags(t, tags, n, st, extra...)
	if tags[lateTag] != 0 || afterErr != nil && tags[afterTag] != 0 {
		t.Fatalf("stale commits landed: %v", tags)
	}
	t.Logf("redis restart took %v; hubs ready %v after it; first 20 commits after it within %v; %s",
		restarted.Round(time.Millisecond), readyAfter.Round(time.Millisecond), recover.Round(time.Millisecond), st)
}
