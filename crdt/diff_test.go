package crdt_test

import (
	"slices"
	"testing"

	"framesync"
	"framesync/crdt"
	"framesync/crdt/crdttest"
)

func ids(fds []crdt.FrameDiff) []string {
	var out []string
	for _, fd := range fds {
		out = append(out, fd.ID)
	}
	return out
}

func TestTrajectoryDiff(t *testing.T) {
	tr := newTrajectory(t)
	c, err := tr.Extend("a", crdttest.Hashes(0, 6))
	if err != nil {
		t.Fatal(err)
	}
	id := func(i int) string { return c.Entries[i].ID }
	from := tr.Heads()
	gen0, _ := tr.Generation()

	// remove 1, replace 2, move 5 to the front, insert a new frame at the end.
	if _, err := tr.Delete("b", id(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Replace("b", id(2), 1, crdttest.Hash(100)); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Move("b", id(5), 0); err != nil {
		t.Fatal(err)
	}
	n, _ := tr.Len()
	ins, err := tr.Insert("b", n, crdttest.Hash(200))
	if err != nil {
		t.Fatal(err)
	}
	to := tr.Heads()

	// Round-trip the heads through their printed form, as a change feed would.
	fromP, err := crdt.ParseHeads(from.String())
	if err != nil {
		t.Fatal(err)
	}
	d, err := tr.Diff(fromP, to)
	if err != nil {
		t.Fatal(err)
	}
	if d.FromGeneration != gen0 || d.ToGeneration != gen0+4 {
		t.Fatalf("generations %d -> %d, want %d -> %d", d.FromGeneration, d.ToGeneration, gen0, gen0+4)
	}
	if got := ids(d.Removed); !slices.Equal(got, []string{id(1)}) {
		t.Errorf("removed %v", got)
	}
	if got := ids(d.Added); !slices.Equal(got, []string{ins.Entries[0].ID}) {
		t.Errorf("added %v", got)
	}
	if got := ids(d.Changed); !slices.Equal(got, []string{id(2)}) {
		t.Errorf("changed %v", got)
	} else if ch := d.Changed[0]; ch.Old.Version != 1 || ch.New.Version != 2 || ch.New.Hash != crdttest.Hash(100) {
		t.Errorf("changed entry %+v -> %+v", ch.Old, ch.New)
	}
	if got := ids(d.Moved); !slices.Equal(got, []string{id(5)}) {
		t.Errorf("moved %v (frames that only shifted must not count)", got)
	} else if mv := d.Moved[0]; mv.OldIndex != 5 || mv.NewIndex != 0 {
		t.Errorf("moved %d -> %d", mv.OldIndex, mv.NewIndex)
	}

	// From the empty document: everything is added.
	d, err = tr.Diff(nil, to)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := tr.Len(); len(d.Added) != n || len(d.Removed)+len(d.Changed)+len(d.Moved) != 0 || d.FromGeneration != 0 {
		t.Fatalf("diff from empty: %+v", d)
	}
	// Backwards: the inverse.
	d, err = tr.Diff(to, from)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(d.Added), []string{id(1)}) || !slices.Equal(ids(d.Removed), []string{ins.Entries[0].ID}) {
		t.Fatalf("backwards diff: %+v", d)
	}
	// No change.
	if d, err := tr.Diff(to, to); err != nil || !d.Empty() {
		t.Fatalf("diff to itself: %+v, %v", d, err)
	}
	// Unknown heads.
	var bogus crdt.ChangeHash
	bogus[0] = 1
	wantKind(t, second(tr.Diff(crdt.Heads{bogus}, to)), framesync.NotFound)
	if _, err := crdt.ParseHeads("xyz"); err == nil {
		t.Fatal("ParseHeads accepted garbage")
	}
}

func TestDiffManyMoves(t *testing.T) {
	// Reversing a list moves all but one frame.
	tr := newTrajectory(t)
	c, err := tr.Extend("a", crdttest.Hashes(0, 8))
	if err != nil {
		t.Fatal(err)
	}
	from := tr.Heads()
	for _, e := range c.Entries {
		// Moving each frame to the front in turn reverses the list.
		if _, err := tr.Move("a", e.ID, 0); err != nil {
			t.Fatal(err)
		}
	}
	d, err := tr.Diff(from, tr.Heads())
	if err != nil {
		t.Fatal(err)
	}
	es := mustEntries(t, tr)
	if es[0].ID != c.Entries[7].ID || es[7].ID != c.Entries[0].ID {
		t.Fatalf("order after moves: %v", es)
	}
	if len(d.Moved) != 7 || len(d.Added)+len(d.Removed)+len(d.Changed) != 0 {
		t.Fatalf("moved %d frames (want 7): %+v", len(d.Moved), d)
	}
}
