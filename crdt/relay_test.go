package crdt_test

import (
	"errors"
	"testing"

	"framesync"
	"framesync/crdt"
)

// TestGateAndChangesMessage: a gated edit is rolled back when the gate
// refuses it, and the changes of one replica reach another through
// ChangesAfter, ChangesMessage and ApplyChanges.
func TestGateAndChangesMessage(t *testing.T) {
	a, err := crdt.NewTrajectory(&crdt.Options{ActorID: "aaaaaaaaaaaaaaaa"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := crdt.NewTrajectory(&crdt.Options{ActorID: "bbbbbbbbbbbbbbbb"})
	if err != nil {
		t.Fatal(err)
	}
	refuse := errors.New("refused")
	var sent [][]byte
	pass := true
	a.SetGate(func(c *crdt.Commit, change []byte) error {
		if !pass {
			return refuse
		}
		sent = append(sent, change)
		return nil
	})
	if _, err := a.Append("alice", framesync.Sum([]byte("1"))); err != nil {
		t.Fatal(err)
	}
	pass = false
	if _, err := a.Append("alice", framesync.Sum([]byte("2"))); !errors.Is(err, refuse) {
		t.Fatalf("refused gate: %v", err)
	}
	if n, _ := a.Len(); n != 1 {
		t.Fatalf("%d frames after a refused edit", n)
	}
	pass = true
	if _, err := a.Append("alice", framesync.Sum([]byte("3"))); err != nil {
		t.Fatal(err)
	}
	if len(sent) != 2 {
		t.Fatalf("%d changes through the gate", len(sent))
	}
	// The gate's changes, out of order: the second waits for the first.
	for _, c := range [][]byte{sent[1], sent[0]} {
		if _, err := b.Doc().ApplyChanges(crdt.ChangesMessage([][]byte{c}), nil); err != nil {
			t.Fatal(err)
		}
	}
	if !a.Heads().Equal(b.Heads()) {
		t.Fatalf("heads %v and %v", a.Heads(), b.Heads())
	}
	if g, _ := b.Generation(); g != 2 {
		t.Fatalf("generation %d", g)
	}
	// Everything after the skeleton, again: nothing new.
	chunks, hs, heads, err := a.Doc().ChangesAfter(nil)
	if err != nil || len(chunks) != len(hs) || !heads.Equal(a.Heads()) {
		t.Fatal(err, len(chunks), len(hs))
	}
	if _, err := b.Doc().ApplyChanges(crdt.ChangesMessage(chunks), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Doc().ApplyChanges([]byte{0x42, 1}, nil); !errors.Is(err, framesync.BadInput) {
		t.Fatalf("garbage: %v", err)
	}
}
