package fault_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"framesync/peer"
	"framesync/relay/wire"
)

// editors are Go clients spread over hubs, each committing in rounds:
// lock the trajectory, append a frame tagged with the client and round,
// bookmark it in the state document, unlock.
type editors struct {
	// Static after startEditors.
	rooms []*peer.Room
	names []string
	stopc chan struct{}
	wg    sync.WaitGroup

	ackN     atomic.Int64
	finished map[string]*atomic.Int64 // by hub name: clients done with their rounds
	inflight map[string]*atomic.Int64 // by hub name: commit requests sent and not answered
	hubOf    []string

	mu         sync.Mutex // guards the fields below
	ackedTags  map[string]*wire.CommitResult
	uncertain  map[string]error // commits whose answer was lost: landed or not
	refused    map[string]error // commits the hub refused
	lockWaits  int              // lock attempts refused (held, hub or Redis away)
	stateEdits int
	failures   []string // unexpected errors, with the client
	durations  []time.Duration
}

// editStats are an editors' counts when they stopped.
type editStats struct {
	Acked, Uncertain, Refused, LockWaits, StateEdits int
	P50, P99                                         time.Duration
	acked                                            map[string]*wire.CommitResult
	uncertain                                        map[string]error
}

func (s editStats) String() string {
	return fmt.Sprintf("commits acked %d, answer lost %d, refused %d, lock attempts refused %d, state edits %d, commit p50 %v p99 %v",
		s.Acked, s.Uncertain, s.Refused, s.LockWaits, s.StateEdits, s.P50, s.P99)
}

// startEditors starts perHub clients on each hub in room. Each does rounds
// rounds (0: until stop) with locks of ttl.
func startEditors(t *testing.T, ctx context.Context, room string, hubs []*hubProc, perHub, rounds int, ttl time.Duration) *editors {
	t.Helper()
	e := &editors{stopc: make(chan struct{}), ackedTags: map[string]*wire.CommitResult{}, uncertain: map[string]error{}, refused: map[string]error{}, inflight: map[string]*atomic.Int64{}, finished: map[string]*atomic.Int64{}}
	for _, h := range hubs {
		e.inflight[h.name] = new(atomic.Int64)
		e.finished[h.name] = new(atomic.Int64)
	}
	for i := range perHub {
		for _, h := range hubs {
			e.hubOf = append(e.hubOf, h.name)
			name := fmt.Sprintf("%s%d", h.name, i)
			hc := &http.Client{Transport: commitCounter{base: http.DefaultTransport.(*http.Transport).Clone(), inflight: e.inflight[h.name]}}
			e.rooms = append(e.rooms, joinRoom(t, connectWith(t, h.URL, name, hc), room))
			e.names = append(e.names, name)
		}
	}
	for i, r := range e.rooms {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer e.finished[e.hubOf[i]].Add(1)
			e.run(ctx, e.names[i], r, rounds, ttl)
		}()
	}
	t.Cleanup(func() {
		select {
		case <-e.stopc:
		default:
			close(e.stopc)
		}
		e.wg.Wait()
	})
	return e
}

func (e *editors) run(ctx context.Context, name string, r *peer.Room, rounds int, ttl time.Duration) {
	for i := 0; rounds == 0 || i < rounds; i++ {
		select {
		case <-e.stopc:
			return
		default:
		}
		if ctx.Err() != nil {
			return
		}
		tag := fmt.Sprintf("%s-%d", name, i)
		l, waits, err := lockTrajectory(ctx, r, ttl)
		e.mu.Lock()
		e.lockWaits += waits
		e.mu.Unlock()
		if err != nil {
			e.fail(name, "lock", err)
			continue
		}
		start := time.Now()
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := r.Append(actx, taggedFrame(tag, 3))
		cancel()
		took := time.Since(start)
		e.mu.Lock()
		switch {
		case err == nil:
			e.ackedTags[tag] = res
			e.durations = append(e.durations, took)
			e.ackN.Add(1)
		case isRefusal(err):
			e.refused[tag] = err
		default:
			e.uncertain[tag] = err
		}
		e.mu.Unlock()
		if err == nil {
			if err := r.State().SetBookmark(res.Frames[0].ID, tag); err != nil {
				e.fail(name, "bookmark", err)
			} else {
				e.mu.Lock()
				e.stateEdits++
				e.mu.Unlock()
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		l.Release(rctx) // may fail: the lock was lost with a hub or Redis
		cancel()
	}
}

func (e *editors) fail(name, op string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failures = append(e.failures, fmt.Sprintf("%s %s: %v", name, op, err))
}

func (e *editors) acked() int { return int(e.ackN.Load()) }

// waitAcked waits until n commits were acknowledged.
func (e *editors) waitAcked(t *testing.T, n int) {
	t.Helper()
	eventually(t, 2*time.Minute, fmt.Sprintf("%d acknowledged commits", n), func() bool { return e.acked() >= n })
}

// wait waits for editors with a number of rounds to finish.
func (e *editors) wait(t *testing.T) editStats {
	t.Helper()
	e.wg.Wait()
	return e.stats(t)
}

// stop stops editors that run until stopped, and waits for them.
func (e *editors) stop(t *testing.T) editStats {
	t.Helper()
	close(e.stopc)
	e.wg.Wait()
	return e.stats(t)
}

func (e *editors) stats(t *testing.T) editStats {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.failures) > 0 {
		t.Errorf("editors failed %d times: %s", len(e.failures), strings.Join(e.failures[:min(len(e.failures), 10)], "; "))
	}
	d := append([]time.Duration(nil), e.durations...)
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	s := editStats{Acked: len(e.ackedTags), Uncertain: len(e.uncertain), Refused: len(e.refused), LockWaits: e.lockWaits, StateEdits: e.stateEdits,
		acked: e.ackedTags, uncertain: e.uncertain}
	if len(d) > 0 {
		s.P50 = d[len(d)/2].Round(time.Millisecond)
		s.P99 = d[len(d)*99/100].Round(time.Millisecond)
	}
	for tag, err := range e.uncertain {
		t.Logf("answer lost for %s: %v", tag, err)
	}
	for tag, err := range e.refused {
		t.Logf("refused %s: %v", tag, err)
	}
	return s
}

// checkTags checks the frames read back against the commits: every
// acknowledged commit's frame is there exactly once, every frame there is
// from an acknowledged commit, one whose answer was lost, or one of extra,
// and nothing else (no duplicate, nothing half-written: tagsAt has read
// and verified each frame). It returns how many commits whose answer was
// lost landed.
func checkTags(t *testing.T, tags map[string]int, n int, s editStats, extra ...string) int {
	t.Helper()
	for tag := range s.acked {
		if tags[tag] != 1 {
			t.Errorf("acknowledged commit %s is there %d times", tag, tags[tag])
		}
	}
	landedLost := 0
	sum := 0
	for tag, c := range tags {
		sum += c
		if c != 1 {
			t.Errorf("frame %s is there %d times", tag, c)
		}
		_, ok := s.acked[tag]
		if _, lost := s.uncertain[tag]; lost {
			landedLost++
			ok = true
		}
		for _, x := range extra {
			ok = ok || tag == x
		}
		if !ok {
			t.Errorf("frame %s is from no commit that was sent", tag)
		}
	}
	if sum != n {
		t.Errorf("%d frames but %d tags counted", n, sum)
	}
	return landedLost
}
