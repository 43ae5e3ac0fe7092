package crdt_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"framesync"
	"framesync/crdt"
	"framesync/crdt/crdttest"
)

// fixedClock returns a clock that advances by one second per call.
func fixedClock() func() time.Time {
	t := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(time.Second)
		return t
	}
}

func newTrajectory(t testing.TB) *crdt.Trajectory {
	t.Helper()
	tr, err := crdt.NewTrajectory(&crdt.Options{Now: fixedClock()})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func mustEntries(t testing.TB, tr *crdt.Trajectory) []crdt.Entry {
	t.Helper()
	es, err := tr.Entries()
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func hashesOf(es []crdt.Entry) []framesync.Hash {
	out := make([]framesync.Hash, len(es))
	for i, e := range es {
		out[i] = e.Hash
	}
	return out
}

func wantKind(t *testing.T, err error, k framesync.Kind) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", k.Code())
	}
	if got := framesync.KindOf(err); got != k {
		t.Fatalf("error %q has kind %v, want %v", err, got.Code(), k.Code())
	}
}

func TestTrajectoryEdits(t *testing.T) {
	tr := newTrajectory(t)
	h := crdttest.Hashes(0, 10)

	c, err := tr.Append("alice", h[0])
	if err != nil {
		t.Fatal(err)
	}
	if c.Generation != 1 || len(c.Entries) != 1 || c.Entries[0].Version != 1 || c.Entries[0].Hash != h[0] || len(c.Entries[0].ID) != 16 {
		t.Fatalf("append: %+v", c)
	}
	if !c.Heads.Equal(tr.Heads()) {
		t.Fatalf("commit heads %s, document heads %s", c.Heads, tr.Heads())
	}
	if _, err := tr.Extend("bob", h[1:4]); err != nil {
		t.Fatal(err)
	}
	if got := hashesOf(mustEntries(t, tr)); !slices.Equal(got, h[0:4]) {
		t.Fatalf("after extend: %v", got)
	}
	ins, err := tr.Insert("carol", 1, h[4])
	if err != nil {
		t.Fatal(err)
	}
	insID := ins.Entries[0].ID
	if got := hashesOf(mustEntries(t, tr)); !slices.Equal(got, []framesync.Hash{h[0], h[4], h[1], h[2], h[3]}) {
		t.Fatalf("after insert: %v", got)
	}
	if i, err := tr.IndexOf(insID); err != nil || i != 1 {
		t.Fatalf("IndexOf(inserted) = %d, %v", i, err)
	}

	// Move the inserted frame to the end and back to the front.
	if _, err := tr.Move("dave", insID, 4); err != nil {
		t.Fatal(err)
	}
	if got := hashesOf(mustEntries(t, tr)); !slices.Equal(got, []framesync.Hash{h[0], h[1], h[2], h[3], h[4]}) {
		t.Fatalf("after move: %v", got)
	}
	if _, err := tr.Move("dave", insID, 0); err != nil {
		t.Fatal(err)
	}
	if e, _ := tr.At(0); e.ID != insID {
		t.Fatalf("after move to 0, At(0) = %+v", e)
	}
	gen, _ := tr.Generation()
	if c, err := tr.Move("dave", insID, 0); err != nil || c.Hash != (crdt.ChangeHash{}) || c.Generation != gen {
		t.Fatalf("no-op move: %+v, %v", c, err)
	}

	// Replace with base-version check, then revert.
	e2, _ := tr.At(2)
	if _, err := tr.Replace("erin", e2.ID, 2, h[5]); err == nil {
		t.Fatal("replace with stale base succeeded")
	} else {
		wantKind(t, err, framesync.Conflict)
	}
	r, err := tr.Replace("erin", e2.ID, 1, h[5])
	if err != nil {
		t.Fatal(err)
	}
	if r.Entries[0].Version != 2 || r.Entries[0].Hash != h[5] || r.Entries[0].Author != "erin" {
		t.Fatalf("replace: %+v", r.Entries[0])
	}
	if _, err := tr.Replace("frank", e2.ID, 0, h[6]); err != nil {
		t.Fatal(err)
	}
	rv, err := tr.Revert("gina", e2.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if rv.Entries[0].Version != 4 || rv.Entries[0].Hash != e2.Hash {
		t.Fatalf("revert: %+v, want version 4 with hash %s", rv.Entries[0], e2.Hash)
	}
	hist, err := tr.History(e2.ID)
	if err != nil {
		t.Fatal(err)
	}
	var vs []int64
	var hs []framesync.Hash
	var authors []string
	for _, v := range hist {
		vs = append(vs, v.Version)
		hs = append(hs, v.Hash)
		authors = append(authors, v.Author)
	}
	if !slices.Equal(vs, []int64{1, 2, 3, 4}) || !slices.Equal(hs, []framesync.Hash{e2.Hash, h[5], h[6], e2.Hash}) || !slices.Equal(authors, []string{"bob", "erin", "frank", "gina"}) {
		t.Fatalf("history: %+v", hist)
	}
	for i := 1; i < len(hist); i++ {
		if !hist[i].Time.After(hist[i-1].Time) {
			t.Fatalf("history times not increasing: %+v", hist)
		}
	}
	// A frame with one version has a one-record history.
	if hist, err := tr.History(insID); err != nil || len(hist) != 1 || hist[0].Author != "carol" {
		t.Fatalf("history of single-version frame: %+v, %v", hist, err)
	}

	// Delete keeps the history addressable.
	if _, err := tr.Delete("hank", insID); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.IndexOf(insID); err == nil {
		t.Fatal("deleted frame still found")
	}
	if hist, err := tr.History(insID); err != nil || len(hist) != 1 || hist[0].Hash != h[4] {
		t.Fatalf("history of deleted frame: %+v, %v", hist, err)
	}
	if n, _ := tr.Len(); n != 4 {
		t.Fatalf("Len = %d, want 4", n)
	}
	// 1 append + 1 extend + 1 insert + 2 moves + 2 replaces + 1 revert + 1 delete.
	if g, _ := tr.Generation(); g != 9 {
		t.Fatalf("generation %d, want 9", g)
	}
	changes, err := tr.Doc().Changes(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 10 { // the skeleton and 9 edits
		t.Fatalf("%d changes, want 10", len(changes))
	}
	if last := changes[len(changes)-1]; last.Message != "trajectory: delete frame "+insID+" (hank)" || last.Actor != tr.Doc().ActorID() {
		t.Fatalf("last change %+v", last)
	}
}

func TestTrajectoryErrors(t *testing.T) {
	tr := newTrajectory(t)
	if _, err := tr.Extend("a", crdttest.Hashes(0, 3)); err != nil {
		t.Fatal(err)
	}
	before := tr.Heads()
	for name, err := range map[string]error{
		"at -1":            second(tr.At(-1)),
		"at len":           second(tr.At(3)),
		"insert past end":  second(tr.Insert("a", 4, crdttest.Hash(9))),
		"insert negative":  second(tr.Insert("a", -1, crdttest.Hash(9))),
		"index of unknown": second(tr.IndexOf("nope")),
		"delete unknown":   second(tr.Delete("a", "nope")),
		"move unknown":     second(tr.Move("a", "nope", 0)),
		"replace unknown":  second(tr.Replace("a", "nope", 0, crdttest.Hash(9))),
		"revert unknown":   second(tr.Revert("a", "nope", 1)),
		"history unknown":  second(tr.History("nope")),
	} {
		t.Run(name, func(t *testing.T) { wantKind(t, err, framesync.NotFound) })
	}
	e, _ := tr.At(0)
	wantKind(t, second(tr.Move("a", e.ID, 3)), framesync.NotFound)
	wantKind(t, second(tr.Revert("a", e.ID, 7)), framesync.NotFound)
	wantKind(t, second(tr.Append("a", framesync.Hash{})), framesync.BadInput)
	wantKind(t, second(tr.Extend("a", nil)), framesync.BadInput)
	wantKind(t, second(tr.Append("\xff", crdttest.Hash(1))), framesync.BadInput)
	if !tr.Heads().Equal(before) {
		t.Fatal("failed edits changed the document")
	}
	var fe *framesync.Error
	if err := second(tr.At(5)); !errors.As(err, &fe) || fe.Msg != "index 5 out of range [0, 3)" {
		t.Fatalf("error %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

func TestTrajectorySaveLoad(t *testing.T) {
	tr := newTrajectory(t)
	if _, err := tr.Extend("a", crdttest.Hashes(0, 50)); err != nil {
		t.Fatal(err)
	}
	e, _ := tr.At(7)
	if _, err := tr.Replace("b", e.ID, 1, crdttest.Hash(100)); err != nil {
		t.Fatal(err)
	}
	saved := tr.Save()
	inc := tr.Doc().SaveIncremental() // nothing since Save
	if len(inc) != 0 {
		t.Fatalf("incremental save after save: %d bytes", len(inc))
	}
	if _, err := tr.Append("c", crdttest.Hash(200)); err != nil {
		t.Fatal(err)
	}
	inc = tr.Doc().SaveIncremental()

	loaded, err := crdt.LoadTrajectory(append(slices.Clone(saved), inc...), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(mustEntries(t, loaded), mustEntries(t, tr)) {
		t.Fatal("loaded entries differ")
	}
	if !loaded.Heads().Equal(tr.Heads()) {
		t.Fatal("loaded heads differ")
	}
	h1, _ := tr.History(e.ID)
	h2, _ := loaded.History(e.ID)
	if !slices.Equal(h1, h2) {
		t.Fatalf("history %v, loaded %v", h1, h2)
	}

	// Incremental load into a replica loaded from the snapshot alone.
	part, err := crdt.LoadTrajectory(saved, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := part.Doc().LoadIncremental(inc); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(mustEntries(t, part), mustEntries(t, tr)) {
		t.Fatal("entries differ after LoadIncremental")
	}

	// Another layout is refused.
	st, _ := crdt.NewState(nil)
	if _, err := crdt.LoadTrajectory(st.Save(), nil); err == nil {
		t.Fatal("loaded a state document as a trajectory")
	} else {
		wantKind(t, err, framesync.BadInput)
	}
}

func TestLoadGarbage(t *testing.T) {
	tr := newTrajectory(t)
	if _, err := tr.Append("a", crdttest.Hash(1)); err != nil {
		t.Fatal(err)
	}
	good := tr.Save()
	flipped := slices.Clone(good)
	flipped[len(flipped)/2] ^= 0x10
	for name, b := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("hello, world"),
		"truncated": good[:len(good)-3],
		"flipped":   flipped,
		"magic":     good[:4],
		"trailing":  append(slices.Clone(good), 0x85, 0x6f),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := crdt.LoadDoc(b, nil)
			wantKind(t, err, framesync.BadInput)
			t.Log(err)
		})
	}
}

func TestSkeletonIsShared(t *testing.T) {
	// Two hubs create the same room's trajectory independently, each appends,
	// then they sync: both frames survive, because the root objects come from
	// one identical skeleton change.
	a, b := newTrajectory(t), newTrajectory(t)
	ca, _ := a.Doc().Changes(nil)
	cb, _ := b.Doc().Changes(nil)
	if len(ca) != 1 || len(cb) != 1 || ca[0].Hash != cb[0].Hash {
		t.Fatalf("skeleton changes differ: %+v %+v", ca, cb)
	}
	if _, err := a.Append("a", crdttest.Hash(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append("b", crdttest.Hash(2)); err != nil {
		t.Fatal(err)
	}
	crdttest.Sync(t, crdt.NewSession(a.Doc(), nil), crdt.NewSession(b.Doc(), nil))
	ea, eb := mustEntries(t, a), mustEntries(t, b)
	if len(ea) != 2 || !slices.Equal(ea, eb) {
		t.Fatalf("entries after merge: %v / %v", ea, eb)
	}
	if g, _ := a.Generation(); g != 2 {
		t.Fatalf("merged generation %d, want 2 (a counter sums concurrent bumps)", g)
	}
}

func TestTrajectoryCacheFollowsSync(t *testing.T) {
	hub := newTrajectory(t)
	client, err := crdt.OpenTrajectory(mustDoc(t, hub.Save()), nil)
	if err != nil {
		t.Fatal(err)
	}
	sh := crdt.NewSession(hub.Doc(), nil)
	sc := crdt.NewSession(client.Doc(), &crdt.SessionOptions{Accept: crdt.AllowActors(hub.Doc().ActorID())})
	for i := range 5 {
		if _, err := client.Len(); err != nil { // fill the client's cache
			t.Fatal(err)
		}
		if _, err := hub.Extend("a", crdttest.Hashes(10*i, 3)); err != nil {
			t.Fatal(err)
		}
		e, _ := hub.At(0)
		if _, err := hub.Replace("a", e.ID, 0, crdttest.Hash(1000+i)); err != nil {
			t.Fatal(err)
		}
		crdttest.Sync(t, sh, sc)
		if !slices.Equal(mustEntries(t, client), mustEntries(t, hub)) {
			t.Fatalf("round %d: client entries differ", i)
		}
	}
}

func TestAllowActorsFromScratch(t *testing.T) {
	// An empty replica syncs a trajectory accepting only the hub's changes
	// (and the shared skeleton).
	hub := newTrajectory(t)
	if _, err := hub.Extend("a", crdttest.Hashes(0, 3)); err != nil {
		t.Fatal(err)
	}
	d, err := crdt.NewDoc(nil)
	if err != nil {
		t.Fatal(err)
	}
	crdttest.Sync(t, crdt.NewSession(hub.Doc(), nil), crdt.NewSession(d, &crdt.SessionOptions{Accept: crdt.AllowActors(hub.Doc().ActorID())}))
	client, err := crdt.OpenTrajectory(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(mustEntries(t, client), mustEntries(t, hub)) {
		t.Fatal("entries differ")
	}
}

func mustDoc(t testing.TB, b []byte) *crdt.Doc {
	t.Helper()
	d, err := crdt.LoadDoc(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
