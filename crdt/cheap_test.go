package crdt_test

import (
	"fmt"
	"reflect"
	"testing"

	"framesync"
	"framesync/crdt"
)

// TestDiffCache: diffs computed one after the other (the from side comes
// from the previous diff, not from a fork of the document) equal the
// diffs a fresh replica computes by forking, also after a caller changed
// the values of a returned diff.
func TestDiffCache(t *testing.T) {
	s := newState(t)
	tr, err := crdt.NewTrajectory(&crdt.Options{Now: fixedClock()})
	if err != nil {
		t.Fatal(err)
	}
	prevS, prevT := s.Heads(), tr.Heads()
	for i := range 12 {
		switch i % 4 {
		case 0:
			err = s.SetStep(int64(i))
		case 1:
			_, err = s.Update("atoms", crdt.Update{Insert: []crdt.Item{{"id": fmt.Sprint(i), "v": int64(i)}}})
		case 2:
			err = s.SetSettings(map[string]any{"k": int64(i), "nested": map[string]any{"a": []any{int64(i)}}})
		case 3:
			err = s.SetBookmark(fmt.Sprint("f", i), "label")
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Append("me", framesync.Sum([]byte{byte(i)})); err != nil {
			t.Fatal(err)
		}
		curS, curT := s.Heads(), tr.Heads()
		got, err := s.Diff(prevS, curS)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := crdt.LoadState(s.Save(), nil)
		if err != nil {
			t.Fatal(err)
		}
		want, err := fresh.Diff(prevS, curS)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("state diff %d: %+v, a fresh replica says %+v", i, got, want)
		}
		// A caller scribbling on the diff changes nothing for the next.
		for _, it := range got.Items {
			if it.New != nil {
				it.New["v"] = "scribbled"
			}
		}
		gotT, err := tr.Diff(prevT, curT)
		if err != nil {
			t.Fatal(err)
		}
		freshT, err := crdt.LoadTrajectory(tr.Save(), nil)
		if err != nil {
			t.Fatal(err)
		}
		wantT, err := freshT.Diff(prevT, curT)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gotT, wantT) {
			t.Fatalf("trajectory diff %d: %+v, a fresh replica says %+v", i, gotT, wantT)
		}
		prevS, prevT = curS, curT
	}
}

// TestCHeapPacer: C garbage (forks of a state document with a long
// history and a small value, made by diffs from heads that are not
// cached: little Go memory, much C memory) starts collections, so the C
// heap stays near its live size; with the pacer off, the same work leaves
// far more C heap in use.
func TestCHeapPacer(t *testing.T) {
	s := newState(t)
	var heads []crdt.Heads
	for i := range 3000 {
		if err := s.SetStep(int64(i)); err != nil {
			t.Fatal(err)
		}
		if i%300 == 0 {
			heads = append(heads, s.Heads())
		}
	}
	cur := s.Heads()
	churn := func() (peak int64) {
		start := crdt.CHeapInUse()
		for i := range 200 {
			if _, err := s.Diff(heads[i%len(heads)], cur); err != nil {
				t.Fatal(err)
			}
			peak = max(peak, crdt.CHeapInUse()-start)
		}
		return peak
	}
	restore := crdt.SetCHeapPacer(false)
	off := churn()
	restore()
	gcs := crdt.CHeapCollections()
	on := churn()
	t.Logf("C heap growth during 200 forking diffs: pacer off %d MB, on %d MB (%d collections)", off>>20, on>>20, crdt.CHeapCollections()-gcs)
	if crdt.CHeapCollections() == gcs {
		t.Fatal("the pacer started no collection")
	}
	if on > off/2 {
		t.Fatalf("C heap growth with the pacer %d MB, without %d MB: want at most half", on>>20, off>>20)
	}
}
