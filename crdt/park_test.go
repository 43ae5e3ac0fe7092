package crdt

import (
	"slices"
	"testing"
	"time"

	"github.com/automerge/automerge-go"

	"framesync"
)

// TestParkedChangeWaitsForDependency plays what a Bloom filter false
// positive causes: the peer sends a change without the change it depends on.
// The change is held back, its dependency is asked for, and both are applied
// once it arrives.
func TestParkedChangeWaitsForDependency(t *testing.T) {
	noTime := automerge.CommitOptions{Time: &time.Time{}}
	base := automerge.New()
	base.SetActorID("aaaa")
	base.RootMap().Set("m", automerge.NewMap())
	base.Commit("base", noTime)

	s := automerge.New()
	s.LoadIncremental(base.Save())
	s.SetActorID("bbbb")
	s.RootMap().Set("obj", automerge.NewMap()) // X creates an object
	s.Commit("X", noTime)
	s.SetActorID("cccc")
	ov, _ := s.Path("obj").Get()
	ov.Map().Set("k", "v") // Y uses it
	s.Commit("Y", noTime)
	chs, _ := s.Changes(base.Heads()...)
	x, y := chs[0].Save(), chs[1].Save()
	xi, _, _ := parseChange(x)
	yi, _, _ := parseChange(y)

	r, err := LoadDoc(base.Save(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var notified []Heads
	r.OnChange(func(from, to Heads) { notified = append(notified, to) })
	sess := NewSession(r, nil)
	if err := sess.Receive(syncMessageWith(y)); err != nil {
		t.Fatal(err)
	}
	if r.HasChange(yi.Hash) || len(notified) != 0 {
		t.Fatal("Y applied without its dependency")
	}
	msg, ok := sess.Next()
	if !ok {
		t.Fatal("no message asking for the dependency")
	}
	info, err := Inspect(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(info.Need, xi.Hash) {
		t.Fatalf("need %v does not ask for X %s", Heads(info.Need), xi.Hash)
	}
	if _, ok := sess.Next(); ok {
		t.Fatal("asks again before any reply")
	}
	if err := sess.Receive(syncMessageWith(x)); err != nil {
		t.Fatal(err)
	}
	if !r.HasChange(xi.Hash) || !r.HasChange(yi.Hash) {
		t.Fatal("X and Y not both applied")
	}
	if len(notified) != 1 {
		t.Fatalf("%d notifications", len(notified))
	}
	v, _ := r.am.Path("obj", "k").Get()
	if v.Kind() != automerge.KindStr || v.Str() != "v" {
		t.Fatalf("obj.k = %v", v)
	}

	// A held-back change that fails the check when its dependency arrives
	// is dropped and reported; the dependency is applied.
	r2, _ := LoadDoc(base.Save(), nil)
	bad := parseChangeHeader(t, y)
	bad.seq = 2 // cccc has no first change
	badRaw := bad.encode()
	sess2 := NewSession(r2, nil)
	if err := sess2.Receive(syncMessageWith(badRaw)); err != nil {
		t.Fatal(err)
	}
	err = sess2.Receive(syncMessageWith(x))
	if framesync.KindOf(err) != framesync.BadInput {
		t.Fatalf("draining a bad change: %v", err)
	}
	t.Log(err)
	if !r2.HasChange(xi.Hash) || len(r2.pending) != 0 {
		t.Fatal("X not applied or bad change kept")
	}
}
