package peer_test

import (
	"context"
	"errors"
	"fmt"
	"framesync/internal/testproc"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"framesync"
	"framesync/crdt"
	"framesync/peer"
	"framesync/relay"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

// connect connects a client with its own replica directory (cache "" =
// a new temporary one) and closes it when the test ends.
func connect(t testing.TB, h *relaytest.Hub, name, cache string, offline bool) *peer.Client {
	t.Helper()
	if cache == "" {
		cache = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := peer.Connect(ctx, h.URL, &peer.Options{
		Name: name, Cache: cache, Offline: offline,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Logger: testproc.Logger(t, slog.LevelWarn),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func join(t testing.TB, c *peer.Client, room string) *peer.Room {
	t.Helper()
	r, err := c.Join(ctxT(t), room)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ctxT is a context that ends with a generous deadline.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

func TestAppendReadAndConverge(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	a := join(t, connect(t, h, "a", "", false), "default")
	bc := connect(t, h, "b", "", false)
	b := join(t, bc, "default")
	events, cancel := b.Subscribe(64)
	defer cancel()

	frames := []*framesync.Frame{relaytest.Frame(5, 1), relaytest.Frame(5, 2), relaytest.Frame(5, 3)}
	res := must[*wire.CommitResult](t)(a.Append(ctxT(t), frames...))
	if res.Length != 3 || a.Len() != 3 || a.Generation() != res.Generation {
		t.Fatalf("after append: result %+v, len %d, generation %d", res, a.Len(), a.Generation())
	}
	got := must[*framesync.Frame](t)(a.Frame(ctxT(t), 1))
	if !got.Equal(frames[1]) {
		t.Fatal("A reads back another frame")
	}

	// B is told and converges.
	seen := map[string]bool{}
	for len(seen) < 3 {
		select {
		case e := <-events:
			if e.Type == wire.MsgFrameUpdated {
				seen[e.Msg.Frame] = true
			}
		case <-time.After(10 * time.Second):
			t.Fatal("B got no frame_updated")
		}
	}
	if err := b.WaitGeneration(ctxT(t), res.Generation); err != nil {
		t.Fatal(err)
	}
	for i, want := range frames {
		f := must[*framesync.Frame](t)(b.Frame(ctxT(t), i))
		if !f.Equal(want) {
			t.Fatalf("B frame %d differs", i)
		}
	}
	fetched := bc.Stats().BytesFetched
	if fetched == 0 {
		t.Fatal("B fetched nothing")
	}
	// Cached: reading again costs nothing, and field selection works.
	f := must[*framesync.Frame](t)(b.Frame(ctxT(t), -1, "positions"))
	if bc.Stats().BytesFetched != fetched || f.Numbers != nil || f.Positions == nil {
		t.Fatalf("re-read fetched %d bytes; numbers %v", bc.Stats().BytesFetched-fetched, f.Numbers)
	}
	if _, err := b.Frame(ctxT(t), 3); !errors.Is(err, framesync.NotFound) {
		t.Fatalf("frame 3 of 3: %v", err)
	}
}

func TestSteppingFetchesOnlyChangedFields(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	a := join(t, connect(t, h, "a", "", false), "default")
	var frames []*framesync.Frame
	for i := range 20 {
		frames = append(frames, relaytest.Frame(1000, float64(i))) // only positions change
	}
	res := must[*wire.CommitResult](t)(a.Append(ctxT(t), frames...))
	bc := connect(t, h, "b", "", false)
	b := join(t, bc, "default")
	if err := b.WaitGeneration(ctxT(t), res.Generation); err != nil {
		t.Fatal(err)
	}
	enc := must[[]byte](t)(frames[0].Encode())
	pos := must[[]byte](t)(framesync.EncodeValue(frames[0].Positions))
	must[*framesync.Frame](t)(b.Frame(ctxT(t), 0))
	for i := 1; i < len(frames); i++ {
		before := bc.Stats().BytesFetched
		f := must[*framesync.Frame](t)(b.Frame(ctxT(t), i))
		if !f.Equal(frames[i]) {
			t.Fatalf("frame %d differs", i)
		}
		got := bc.Stats().BytesFetched - before
		// The manifest blob plus the positions field; not the whole frame.
		if got < int64(len(pos)) || got > int64(len(pos))+1024 {
			t.Fatalf("frame %d: fetched %d bytes; positions are %d, the frame %d", i, got, len(pos), len(enc))
		}
	}
}

func TestConflictsAndLocks(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	ac := connect(t, h, "a", "", false)
	a := join(t, ac, "default")
	b := join(t, connect(t, h, "b", "", false), "default")
	res := must[*wire.CommitResult](t)(a.Append(ctxT(t), relaytest.Frame(4, 1)))
	if err := b.WaitGeneration(ctxT(t), res.Generation); err != nil {
		t.Fatal(err)
	}
	e := must[crdt.Entry](t)(a.Entry(0))

	// B changes the frame; A's change from the old version is refused.
	must[*wire.CommitResult](t)(b.Set(ctxT(t), 0, relaytest.Frame(4, 2)))
	_, err := a.Replace(ctxT(t), e.ID, e.Version, relaytest.Frame(4, 3))
	var pe *peer.Error
	if !errors.As(err, &pe) || !errors.Is(err, framesync.Conflict) {
		t.Fatalf("stale replace: %v", err)
	}
	if cur, ok := pe.CurrentVersion(); !ok || cur != 2 {
		t.Fatalf("conflict carries version %d %v, want 2", cur, ok)
	}
	// Update retries on the new version: nothing is lost.
	res = must[*wire.CommitResult](t)(a.Update(ctxT(t), 0, 0, func(f *framesync.Frame) error {
		return f.SetField("info.note", "from a")
	}))
	if res.Frames[0].Version != 3 {
		t.Fatalf("update wrote version %d, want 3", res.Frames[0].Version)
	}
	if err := b.WaitGeneration(ctxT(t), res.Generation); err != nil {
		t.Fatal(err)
	}
	f := must[*framesync.Frame](t)(b.Frame(ctxT(t), 0))
	if v, _ := f.Field("info.note"); v != "from a" || !f.Equal(withNote(relaytest.Frame(4, 2), "from a")) {
		t.Fatalf("B sees %v", v)
	}

	// A holds the frame's lock across edits; B is told who holds it.
	l := must[*peer.Lock](t)(a.Lock(ctxT(t), peer.FrameTarget(e.ID), 0))
	_, err = b.Set(ctxT(t), 0, relaytest.Frame(4, 9))
	if !errors.As(err, &pe) || !errors.Is(err, framesync.Locked) || pe.Holder() != ac.ID() {
		t.Fatalf("set under A's lock: %v", err)
	}
	for i := range 3 {
		res = must[*wire.CommitResult](t)(a.Set(ctxT(t), 0, relaytest.Frame(4, float64(10+i))))
	}
	if err := l.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// Once B's replica has A's last version, B's Set applies on top of it.
	if err := b.WaitGeneration(ctxT(t), res.Generation); err != nil {
		t.Fatal(err)
	}
	must[*wire.CommitResult](t)(b.Set(ctxT(t), 0, relaytest.Frame(4, 20)))
}

func withNote(f *framesync.Frame, note string) *framesync.Frame {
	f.SetField("info.note", note)
	return f
}

func TestConcurrentAppendsLandOnce(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	rooms := []*peer.Room{
		join(t, connect(t, h, "a", "", false), "default"),
		join(t, connect(t, h, "b", "", false), "default"),
	}
	const each = 8
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for k, r := range rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				f := relaytest.Frame(3, float64(100*k+i))
				for {
					_, err := r.Append(ctxT(t), f)
					if errors.Is(err, framesync.Locked) {
						continue // the other client holds the trajectory lock: retry
					}
					if err != nil {
						errs <- err
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	info := must[*wire.RoomInfo](t)(rooms[0].Client().RoomInfo(ctxT(t), "default"))
	for _, r := range rooms {
		if err := r.WaitGeneration(ctxT(t), info.Generation); err != nil {
			t.Fatal(err)
		}
		if r.Len() != 2*each {
			t.Fatalf("%d frames, want %d", r.Len(), 2*each)
		}
	}
	seen := map[float64]bool{}
	err := rooms[1].Range(ctxT(t), 0, rooms[1].Len(), nil, func(i int, e crdt.Entry, f *framesync.Frame) error {
		p, _ := f.Positions.Float64s()
		if seen[p[0]] {
			return fmt.Errorf("frame with seed %v twice", p[0])
		}
		seen[p[0]] = true
		return nil
	})
	if err != nil || len(seen) != 2*each {
		t.Fatalf("range: %v, %d distinct frames", err, len(seen))
	}
}

func TestStateEditsSurviveNetworkCut(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	cacheA := t.TempDir()
	ac := connect(t, h, "a", cacheA, false)
	a := join(t, ac, "default")
	b := join(t, connect(t, h, "b", "", false), "default")
	res := must[*wire.CommitResult](t)(a.Append(ctxT(t), relaytest.Frame(3, 1), relaytest.Frame(3, 2)))
	id := res.Frames[1].ID
	lock := must[*peer.Lock](t)(a.Lock(ctxT(t), peer.TrajectoryTarget, 0))

	// The hub goes away: A's lock is reported lost, A keeps editing state.
	h.Stop()
	select {
	case <-lock.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("lock not reported lost after the hub went away")
	}
	eventually(t, "A to notice", func() bool { return !ac.Connected() })
	st := a.State()
	if err := st.SetSelection([]int64{0, 2}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetBookmark(id, "offline note"); err != nil {
		t.Fatal(err)
	}
	// A even restarts while the hub is down: its replica keeps the edits.
	if err := ac.Close(); err != nil {
		t.Fatal(err)
	}
	ac = connect(t, h, "a", cacheA, true)
	a = join(t, ac, "default")
	if sel, _ := a.State().Selection(); len(sel) != 2 {
		t.Fatalf("after restart A's selection is %v", sel)
	}

	h.Resume()
	if err := ac.WaitConnected(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B to converge", func() bool {
		sel, _ := b.State().Selection()
		bm, _ := b.State().Bookmarks()
		return len(sel) == 2 && sel[1] == 2 && bm[id] == "offline note"
	})
	// And a client that joins now sees it too.
	c := join(t, connect(t, h, "c", "", false), "default")
	eventually(t, "C to converge", func() bool {
		bm, _ := c.State().Bookmarks()
		return bm[id] == "offline note"
	})
}

func TestOfflineView(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	cache := t.TempDir()
	ac := connect(t, h, "a", cache, false)
	a := join(t, ac, "default")
	frames := []*framesync.Frame{relaytest.Frame(4, 1), relaytest.Frame(4, 2), relaytest.Frame(4, 3)}
	must[*wire.CommitResult](t)(a.Append(ctxT(t), frames...))
	if err := a.State().SetStep(2); err != nil {
		t.Fatal(err)
	}
	if err := ac.Close(); err != nil {
		t.Fatal(err)
	}
	h.Stop()

	rp := must[*peer.Replica](t)(peer.Open(cache, h.URL))
	if rooms := must[[]string](t)(rp.Rooms()); len(rooms) != 1 || rooms[0] != "default" {
		t.Fatalf("rooms %v", rooms)
	}
	v := must[*peer.View](t)(rp.View("default"))
	if v.Len() != 3 || v.Meta().Generation == 0 {
		t.Fatalf("view: %d frames, meta %+v", v.Len(), v.Meta())
	}
	if step, _ := v.State().Step(); step != 2 {
		t.Fatalf("step %d", step)
	}
	n := 0
	err := v.Range(context.Background(), 0, v.Len(), nil, func(i int, e crdt.Entry, f *framesync.Frame) error {
		if !f.Equal(frames[i]) {
			return fmt.Errorf("frame %d differs", i)
		}
		n++
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("range: %v after %d frames", err, n)
	}
	if _, err := rp.View("nope"); !errors.Is(err, framesync.NotFound) {
		t.Fatalf("unknown room: %v", err)
	}
}

func TestPresenter(t *testing.T) {
	h := relaytest.Start(t, relay.Options{PresenterTTL: time.Second})
	a := join(t, connect(t, h, "a", "", false), "default")
	b := join(t, connect(t, h, "b", "", false), "default")
	events, cancel := b.Subscribe(64)
	defer cancel()
	p := must[*peer.Presenter](t)(a.Present(ctxT(t)))
	if _, err := b.Present(ctxT(t)); !errors.Is(err, framesync.Locked) {
		t.Fatalf("second presenter: %v", err)
	}
	// Renewed in the background past its TTL.
	deadline := time.After(10 * time.Second)
	for step := int64(0); step < 30; step++ {
		if err := p.Show(step, map[string]any{"camera": "x"}); err != nil {
			t.Fatal(err)
		}
		for got := false; !got; {
			select {
			case e := <-events:
				got = e.Type == wire.MsgFrame && *e.Msg.Step == step
			case <-deadline:
				t.Fatalf("B never saw step %d", step)
			}
		}
		time.Sleep(50 * time.Millisecond) // pacing the stream, like a 20 Hz player
	}
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	if err := p.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the last step in the state document", func() bool {
		s, _ := b.State().Step()
		return s == 29
	})
}

func TestEditOperations(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	a := join(t, connect(t, h, "a", "", false), "default")
	bc := connect(t, h, "b", "", false)
	b := join(t, bc, "default")
	must[*wire.CommitResult](t)(a.Append(ctxT(t), relaytest.Frame(3, 0), relaytest.Frame(3, 1), relaytest.Frame(3, 2)))
	ids := func(r *peer.Room) []string {
		es := must[[]crdt.Entry](t)(r.Trajectory().Entries())
		out := make([]string, len(es))
		for i, e := range es {
			out[i] = e.ID
		}
		return out
	}
	before := ids(a)

	// Insert at 1: the others keep their IDs.
	res := must[*wire.CommitResult](t)(a.Insert(ctxT(t), 1, relaytest.Frame(3, 9)))
	got := ids(a)
	if len(got) != 4 || got[0] != before[0] || got[2] != before[1] || got[3] != before[2] || res.Frames[0].Index != 1 {
		t.Fatalf("after insert: %v (was %v)", got, before)
	}
	// Move the inserted frame to the end, delete the first.
	must[*wire.CommitResult](t)(a.Move(ctxT(t), 1, 3))
	must[*wire.CommitResult](t)(a.Delete(ctxT(t), 0))
	got = ids(a)
	if len(got) != 3 || got[0] != before[1] || got[1] != before[2] || got[2] != res.Frames[0].ID {
		t.Fatalf("after move and delete: %v", got)
	}
	// Patch one field: a new version sharing the other blobs.
	extra := &framesync.Frame{Info: map[string]any{"note": "patched"}}
	res = must[*wire.CommitResult](t)(a.Patch(ctxT(t), 0, extra))
	f := must[*framesync.Frame](t)(a.Frame(ctxT(t), 0))
	if v, _ := f.Field("info.note"); v != "patched" || res.Frames[0].Version != 2 {
		t.Fatalf("after patch: note %v, version %d", v, res.Frames[0].Version)
	}
	m1 := must[*framesync.Frame](t)(a.Frame(ctxT(t), 0, "positions"))
	if !m1.Positions.Equal(relaytest.Frame(3, 1).Positions) {
		t.Fatal("patch changed positions")
	}
	// Remove it again with a patch, then revert to version 2 (undo).
	must[*wire.CommitResult](t)(a.Patch(ctxT(t), 0, nil, "info.note"))
	res = must[*wire.CommitResult](t)(a.Revert(ctxT(t), 0, 2))
	f = must[*framesync.Frame](t)(a.Frame(ctxT(t), 0))
	if v, _ := f.Field("info.note"); v != "patched" || res.Frames[0].Version != 4 {
		t.Fatalf("after revert: note %v, version %d", v, res.Frames[0].Version)
	}
	// B converges to the same order, versions and data.
	if err := b.WaitGeneration(ctxT(t), res.Generation); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids(b)) != fmt.Sprint(ids(a)) {
		t.Fatalf("B has %v, A %v", ids(b), ids(a))
	}
	hist := must[[]crdt.Version](t)(b.Trajectory().History(ids(b)[0]))
	if len(hist) != 4 || hist[3].Hash != hist[1].Hash {
		t.Fatalf("history %+v", hist)
	}
	if g := must[*framesync.Frame](t)(b.Frame(ctxT(t), 0)); !g.Equal(f) {
		t.Fatal("B reads another frame 0")
	}
	if _, err := a.Move(ctxT(t), 0, 7); !errors.Is(err, framesync.NotFound) && !errors.Is(err, framesync.BadInput) {
		t.Fatalf("move out of range: %v", err)
	}
}

func TestUploadSurvivesHubRestart(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	retrying := &signalWriter{match: "retrying", ch: make(chan struct{})}
	c, err := peer.Connect(ctxT(t), h.URL, &peer.Options{
		Cache: t.TempDir(), Logger: slog.New(slog.NewTextHandler(retrying, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := join(t, c, "default")
	h.Stop()
	done := make(chan error, 1)
	var hs []framesync.Hash
	go func() {
		var err error
		hs, err = a.Upload(ctxT(t), relaytest.Frame(10, 1))
		done <- err
	}()
	// The upload failed once and is retrying; the hub comes back.
	select {
	case <-retrying.ch:
	case err := <-done:
		t.Fatalf("upload ended with the hub down: %v", err)
	}
	h.Resume()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if code, _ := h.Do("HEAD", "/api/blobs/"+hs[0].String(), nil); code != 200 {
		t.Fatalf("manifest blob after the retried upload: %d", code)
	}
}

// signalWriter closes ch the first time a write contains match.
type signalWriter struct {
	match string
	ch    chan struct{}
	once  sync.Once
}

func (w *signalWriter) Write(b []byte) (int, error) {
	if strings.Contains(string(b), w.match) {
		w.once.Do(func() { close(w.ch) })
	}
	return len(b), nil
}

func TestStateEventsAndPresence(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	a := join(t, connect(t, h, "a", "", false), "default")
	b := join(t, connect(t, h, "b", "", false), "default")
	events, cancel := b.Subscribe(256)
	defer cancel()
	next := func(what string, ok func(e peer.Event) bool) peer.Event {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case e := <-events:
				if ok(e) {
					return e
				}
			case <-timeout:
				t.Fatalf("B got no %s", what)
			}
		}
	}
	item := crdt.Item{"id": "a1", "text": "look here", "frame": int64(3)}
	if _, err := a.State().Update("annotations", crdt.Update{Insert: []crdt.Item{item}}); err != nil {
		t.Fatal(err)
	}
	e := next("insert diff", func(e peer.Event) bool { return e.Type == peer.EventState && len(e.State.Items) > 0 })
	d := e.State.Items[0]
	if e.Local || d.Collection != "annotations" || d.ID != "a1" || d.Old != nil || d.New["text"] != "look here" {
		t.Fatalf("insert event %+v local %v", d, e.Local)
	}
	changed := crdt.Item{"id": "a1", "text": "look there", "frame": int64(3)}
	if _, err := a.State().Update("annotations", crdt.Update{Insert: []crdt.Item{changed}}); err != nil {
		t.Fatal(err)
	}
	e = next("change diff", func(e peer.Event) bool { return e.Type == peer.EventState && len(e.State.Items) > 0 })
	if d := e.State.Items[0]; d.Old["text"] != "look here" || d.New["text"] != "look there" {
		t.Fatalf("change event %+v", d)
	}
	// B's own edit is reported as local.
	if err := b.State().SetSelection([]int64{1}); err != nil {
		t.Fatal(err)
	}
	e = next("local selection", func(e peer.Event) bool { return e.Type == peer.EventState && len(e.State.Fields) > 0 })
	if !e.Local || e.State.Fields[0].Field != "selection" {
		t.Fatalf("local event %+v", e)
	}
	// Presence is relayed, not stored.
	if err := a.SetPresence(map[string]any{"cursor": int64(7)}); err != nil {
		t.Fatal(err)
	}
	e = next("presence", func(e peer.Event) bool { return e.Type == wire.MsgPresence })
	if fmt.Sprint(e.Msg.Payload["cursor"]) != "7" || e.Msg.Name != "a" {
		t.Fatalf("presence %+v", e.Msg)
	}
}

func TestLoginAndTokenRefresh(t *testing.T) {
	h := relaytest.Start(t, relay.Options{Auth: &relay.AuthOptions{
		AdminUser: "root", AdminPassword: "root-password", Secret: []byte("0123456789abcdef0123456789abcdef"),
		PasswordCost: 4, TokenTTL: time.Hour, // under an hour left: Connect refreshes
	}})
	cache := t.TempDir()
	rp := must[*peer.Replica](t)(peer.Open(cache, h.URL))
	if _, err := rp.Login(ctxT(t), "root", "nope"); !errors.Is(err, framesync.Unauthorized) {
		t.Fatalf("wrong password: %v", err)
	}
	must[*wire.LoginResponse](t)(rp.Login(ctxT(t), "root", "root-password"))
	first := rp.Token()
	if fi, err := os.Stat(filepath.Join(rp.Dir(), "token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi.Mode(), err)
	}
	c := connect(t, h, "root", cache, false)
	if rp.Token() == first || rp.Token() == "" {
		t.Fatal("the token was not refreshed")
	}
	if code, _ := h.Do("GET", "/api/rooms/default", nil, "Authorization", "Bearer "+first); code != 401 {
		t.Fatalf("the old token still works: %d", code)
	}
	join(t, c, "default") // the client uses the new one
	if err := c.Logout(ctxT(t)); err != nil || rp.Token() != "" {
		t.Fatalf("logout: %v, token %q", err, rp.Token())
	}
}

func TestWaitSyncedCoversState(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	a := join(t, connect(t, h, "a", "", false), "default")
	const id = "0123456789abcdef" // no frame committed: the trajectory is at generation 0
	if err := a.State().SetBookmark(id, "look"); err != nil {
		t.Fatal(err)
	}
	// Once the hub has the bookmark, a new member's WaitSynced includes it
	// (the trajectory alone would let it return at once).
	c := join(t, connect(t, h, "c", "", false), "default")
	eventually(t, "the hub to have the bookmark", func() bool {
		bm, _ := c.State().Bookmarks()
		return bm[id] == "look"
	})
	b := join(t, connect(t, h, "b", "", false), "default")
	if err := b.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if bm, _ := b.State().Bookmarks(); bm[id] != "look" {
		t.Fatalf("after WaitSynced: bookmarks %v", bm)
	}
}
