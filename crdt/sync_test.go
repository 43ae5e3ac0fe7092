package crdt_test

import (
	"reflect"
	"slices"
	"sync"
	"testing"

	"framesync"
	"framesync/crdt"
	"framesync/crdt/crdttest"
)

// diffLog collects the diffs a State reports through OnChange.
type diffLog struct {
	mu    sync.Mutex
	diffs []*crdt.StateDiff
}

func watch(t *testing.T, s *crdt.State) *diffLog {
	l := &diffLog{}
	cancel := s.OnChange(func(d *crdt.StateDiff, err error) {
		if err != nil {
			t.Errorf("OnChange: %v", err)
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.diffs = append(l.diffs, d)
	})
	t.Cleanup(cancel)
	return l
}

// take returns the item diffs and field names reported so far and forgets them.
func (l *diffLog) take() (items []string, fields []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, d := range l.diffs {
		items = append(items, diffSummary(d.Items)...)
		for _, f := range d.Fields {
			fields = append(fields, f.Field)
		}
	}
	l.diffs = nil
	slices.Sort(items)
	slices.Sort(fields)
	return slices.Compact(items), slices.Compact(fields)
}

// stateValues reads everything typed out of a state document.
func stateValues(t *testing.T, s *crdt.State) map[string]any {
	t.Helper()
	out := map[string]any{}
	var err error
	read := func(name string, v any, e error) {
		out[name] = v
		if e != nil && err == nil {
			err = e
		}
	}
	sel, e := s.Selection()
	read("selection", sel, e)
	st, e := s.Step()
	read("step", st, e)
	cam, e := s.Camera()
	read("camera", cam, e)
	set, e := s.Settings()
	read("settings", set, e)
	bm, e := s.Bookmarks()
	read("bookmarks", bm, e)
	names, e := s.Collections()
	read("collections", names, e)
	for _, n := range names {
		items, e := s.Items(n)
		read("items/"+n, items, e)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStateConvergesAfterOfflineEdits(t *testing.T) {
	a := newState(t)
	b := newState(t) // created independently: the shared skeleton makes them one document
	sa := crdt.NewSession(a.Doc(), nil)
	sb := crdt.NewSession(b.Doc(), nil)

	if _, err := a.Update("markers", crdt.Update{Insert: []crdt.Item{
		{"id": "s1", "color": "red", "size": 1},
		{"id": "s2", "color": "green"},
	}}); err != nil {
		t.Fatal(err)
	}
	crdttest.Sync(t, sa, sb)
	if items, _ := b.Items("markers"); len(items) != 2 {
		t.Fatalf("b has %d items after first sync", len(items))
	}
	logA, logB := watch(t, a), watch(t, b)

	// Offline: both edit the same collection, the selection and the settings.
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.Update("markers", crdt.Update{Insert: []crdt.Item{
		{"id": "s1", "color": "blue", "size": 1}, // a changes the color
		{"id": "a1", "label": "from a"},
	}}))
	must(nil, a.SetSelection([]int64{1, 2}))
	must(nil, a.SetSettings(map[string]any{"theme": "dark"}))
	must(nil, a.SetStep(10))
	must(b.Update("markers", crdt.Update{
		Remove: []string{"s2"},
		Insert: []crdt.Item{
			{"id": "s1", "color": "red", "size": 2}, // b changes the size
			{"id": "b1", "label": "from b"},
		},
	}))
	must(nil, b.SetSelection([]int64{5}))
	must(nil, b.SetSettings(map[string]any{"fps": 60}))
	must(nil, b.SetBookmark("frame-x", "b's bookmark"))
	logA.take()
	logB.take() // forget the diffs of local edits

	st := crdttest.Sync(t, sa, sb)
	t.Logf("sync after offline edits: %d messages, %d bytes", st.Messages, st.Bytes)

	if !a.Heads().Equal(b.Heads()) {
		t.Fatalf("heads differ: %s / %s", a.Heads(), b.Heads())
	}
	va, vb := stateValues(t, a), stateValues(t, b)
	if !reflect.DeepEqual(va, vb) {
		t.Fatalf("values differ:\n a %v\n b %v", va, vb)
	}
	// Concurrent edits of different keys of one item, and of different
	// settings, both survive; the removed item stays removed.
	s1, _ := a.Item("markers", "s1")
	if s1["color"] != "blue" || s1["size"] != int64(2) {
		t.Errorf("s1 = %v, want color blue (a) and size 2 (b)", s1)
	}
	if set, _ := a.Settings(); !reflect.DeepEqual(set, map[string]any{"theme": "dark", "fps": int64(60)}) {
		t.Errorf("settings %v", set)
	}
	if _, err := a.Item("markers", "s2"); framesync.KindOf(err) != framesync.NotFound {
		t.Errorf("s2 still there: %v", err)
	}
	// One selection wins whole.
	if sel := va["selection"].([]int64); !slices.Equal(sel, []int64{1, 2}) && !slices.Equal(sel, []int64{5}) {
		t.Errorf("selection %v is a mix", sel)
	}

	// Each side was told what the other did.
	itemsA, fieldsA := logA.take()
	itemsB, fieldsB := logB.take()
	if want := []string{"markers/b1:insert", "markers/s1:change", "markers/s2:remove"}; !slices.Equal(itemsA, want) {
		t.Errorf("a saw item diffs %v, want %v", itemsA, want)
	}
	if want := []string{"markers/a1:insert", "markers/s1:change"}; !slices.Equal(itemsB, want) {
		t.Errorf("b saw item diffs %v, want %v", itemsB, want)
	}
	if !slices.Contains(fieldsA, "settings") || !slices.Contains(fieldsB, "settings") || !slices.Contains(fieldsB, "step") {
		t.Errorf("field diffs a %v, b %v", fieldsA, fieldsB)
	}
}

func TestForgedTrajectoryChangeRefused(t *testing.T) {
	hub := newTrajectory(t)
	if _, err := hub.Extend("hub", crdttest.Hashes(0, 3)); err != nil {
		t.Fatal(err)
	}
	hubActor := hub.Doc().ActorID()

	for _, tc := range []struct {
		name   string
		actor  string // the forger's actor ID; "" for a random one
		accept func(crdt.ChangeInfo) error
	}{
		{"other actor, allow-list", "", crdt.AllowActors(hubActor)},
		{"other actor, refuse new", "", crdt.RefuseNew},
		{"hub's actor, refuse new", hubActor, crdt.RefuseNew},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The client holds a replica and writes to it, which only the hub may do.
			client, err := crdt.LoadTrajectory(hub.Save(), &crdt.Options{ActorID: tc.actor})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := client.Append("mallory", crdttest.Hash(666)); err != nil {
				t.Fatal(err)
			}
			before := hub.Heads()
			hs := crdt.NewSession(hub.Doc(), &crdt.SessionOptions{Accept: tc.accept})
			cs := crdt.NewSession(client.Doc(), nil)
			var refused error
			var forged []crdt.ChangeInfo
			for range 10 {
				m, ok := cs.Next()
				if !ok {
					break
				}
				info, err := crdt.Inspect(m)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range info.Changes {
					if !hub.Doc().HasChange(c.Hash) {
						forged = append(forged, c)
					}
				}
				if err := hs.Receive(m); err != nil {
					refused = err
					break
				}
				if r, ok := hs.Next(); ok {
					if err := cs.Receive(r); err != nil {
						t.Fatal(err)
					}
				}
			}
			wantKind(t, refused, framesync.Forbidden)
			t.Log(refused)
			if len(forged) != 1 || forged[0].Actor != client.Doc().ActorID() || forged[0].Message != "trajectory: extend by 1 frame (mallory)" {
				t.Fatalf("forged changes seen by Inspect: %+v", forged)
			}
			if !hub.Heads().Equal(before) {
				t.Fatal("the hub's document changed")
			}
			if n, _ := hub.Len(); n != 3 {
				t.Fatalf("hub has %d frames", n)
			}
		})
	}
}

func TestResumedSyncSendsLess(t *testing.T) {
	a := newState(t)
	b, err := crdt.LoadState(a.Save(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if err := a.SetStep(int64(i + 1)); err != nil {
			t.Fatal(err)
		}
	}
	sa, sb := crdt.NewSession(a.Doc(), nil), crdt.NewSession(b.Doc(), nil)
	crdttest.Sync(t, sa, sb)
	savedA, savedB := sa.Save(), sb.Save()

	// The peers disconnect; both edit; they reconnect.
	if err := a.SetStep(1000); err != nil {
		t.Fatal(err)
	}
	if err := b.SetBookmark("f", "x"); err != nil {
		t.Fatal(err)
	}
	snapA, snapB := a.Save(), b.Save()

	ra, err := crdt.LoadSession(a.Doc(), savedA, nil)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := crdt.LoadSession(b.Doc(), savedB, nil)
	if err != nil {
		t.Fatal(err)
	}
	resumed := crdttest.Sync(t, ra, rb)
	if !a.Heads().Equal(b.Heads()) {
		t.Fatal("resumed sync did not converge")
	}

	// The same reconnection with fresh sync states.
	a2, _ := crdt.LoadState(snapA, nil)
	b2, _ := crdt.LoadState(snapB, nil)
	fresh := crdttest.Sync(t, crdt.NewSession(a2.Doc(), nil), crdt.NewSession(b2.Doc(), nil))
	if !a2.Heads().Equal(a.Heads()) {
		t.Fatal("fresh sync did not converge to the same heads")
	}
	t.Logf("resumed: %d messages, %d bytes; fresh: %d messages, %d bytes", resumed.Messages, resumed.Bytes, fresh.Messages, fresh.Bytes)
	if resumed.Bytes >= fresh.Bytes {
		t.Fatalf("resumed sync sent %d bytes, fresh %d", resumed.Bytes, fresh.Bytes)
	}
}

func TestLoadSessionGarbage(t *testing.T) {
	a := newState(t)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"wrong":     {0x42, 0},
		"truncated": {0x43, 2, 1, 2, 3},
		"count":     {0x43, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		t.Run(name, func(t *testing.T) {
			wantKind(t, second(crdt.LoadSession(a.Doc(), b, nil)), framesync.BadInput)
		})
	}
	// A saved state naming changes this document does not have still works.
	var unknown [32]byte
	unknown[0] = 9
	s, err := crdt.LoadSession(a.Doc(), append([]byte{0x43, 1}, unknown[:]...), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := crdt.LoadState(a.Save(), nil)
	if err := a.SetStep(5); err != nil {
		t.Fatal(err)
	}
	crdttest.Sync(t, s, crdt.NewSession(b.Doc(), nil))
	if !a.Heads().Equal(b.Heads()) {
		t.Fatal("did not converge")
	}
}

func TestReceiveGarbage(t *testing.T) {
	a := newState(t)
	s := crdt.NewSession(a.Doc(), nil)
	before := a.Heads()
	for name, m := range map[string][]byte{
		"empty":       nil,
		"not sync":    {0x43, 0, 0, 0, 0},
		"truncated":   {0x42, 1, 0},
		"huge count":  {0x42, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"bloom zero":  {0x42, 0, 0, 1, 0, 3, 1, 0, 7, 0},
		"bloom probe": {0x42, 0, 0, 1, 0, 9, 1, 10, 0xff, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff, 0},
		"bad change":  {0x42, 0, 0, 0, 1, 11, 0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 1, 0, 0},
	} {
		t.Run(name, func(t *testing.T) {
			err := s.Receive(m)
			wantKind(t, err, framesync.BadInput)
			t.Log(err)
		})
	}
	if !a.Heads().Equal(before) {
		t.Fatal("document changed")
	}
	// The session still works afterwards.
	b, _ := crdt.LoadState(a.Save(), nil)
	if err := a.SetStep(1); err != nil {
		t.Fatal(err)
	}
	crdttest.Sync(t, s, crdt.NewSession(b.Doc(), nil))
	if !a.Heads().Equal(b.Heads()) {
		t.Fatal("did not converge")
	}
}
