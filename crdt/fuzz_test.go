package crdt

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/automerge/automerge-go"

	"framesync"
)

// fuzzHash is a manifest hash for fuzz seeds.
func fuzzHash(i int) framesync.Hash { return framesync.Sum([]byte(fmt.Sprint(i))) }

// seedDocs returns saved documents of every kind this package writes.
func seedDocs(tb testing.TB) [][]byte {
	tb.Helper()
	clock := func() time.Time { return time.UnixMilli(1_700_000_000_000) }
	tr, err := NewTrajectory(&Options{Now: clock})
	if err != nil {
		tb.Fatal(err)
	}
	c, err := tr.Extend("a", []framesync.Hash{fuzzHash(1), fuzzHash(2), fuzzHash(3)})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := tr.Replace("b", c.Entries[1].ID, 1, fuzzHash(4)); err != nil {
		tb.Fatal(err)
	}
	trSaved := tr.Save()
	if _, err := tr.Delete("c", c.Entries[0].ID); err != nil {
		tb.Fatal(err)
	}
	inc := tr.Doc().SaveIncremental()

	st, err := NewState(&Options{Now: clock})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := st.Update("m", Update{Insert: []Item{{"id": "x", "v": []any{1, 2.5, "s", nil, true}, "o": map[string]any{"k": "v"}}}}); err != nil {
		tb.Fatal(err)
	}
	if err := st.SetSelection([]int64{1, 2, 3}); err != nil {
		tb.Fatal(err)
	}
	return [][]byte{trSaved, append(trSaved, inc...), st.Save(), bigDoc(tb).Save()}
}

// FuzzLoad feeds garbage to LoadDoc: it must return an error, never panic
// or crash. Checksums are not repaired here, so mutations rarely get past
// the chunk checks (see FuzzReceive for the deeper path).
func FuzzLoad(f *testing.F) {
	for _, b := range seedDocs(f) {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x85, 0x6f, 0x4a, 0x83})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := LoadDoc(b, nil)
		if err != nil {
			if framesync.KindOf(err) != framesync.BadInput {
				t.Fatalf("error of kind %v: %v", framesync.KindOf(err), err)
			}
			return
		}
		d.Save()
		d.Heads()
		if tr, err := OpenTrajectory(d, nil); err == nil {
			tr.Entries()
			tr.Generation()
		}
		if st, err := OpenState(d); err == nil {
			st.Diff(nil, st.Heads())
		}
	})
}

// seedMessages returns sync messages as they occur when a replica catches up
// with another, including the changes of bigDoc and of both typed documents.
func seedMessages(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	for _, b := range seedDocs(tb) {
		src, err := LoadDoc(b, nil)
		if err != nil {
			tb.Fatal(err)
		}
		dst, _ := NewDoc(nil)
		out = append(out, syncMessages(tb, NewSession(src, nil), NewSession(dst, nil))...)
	}
	return out
}

// syncMessages syncs two sessions and returns every message exchanged.
func syncMessages(tb testing.TB, a, b *Session) [][]byte {
	tb.Helper()
	var out [][]byte
	for range 20 {
		m1, ok1 := a.Next()
		if ok1 {
			out = append(out, m1)
			if err := b.Receive(m1); err != nil {
				tb.Fatal(err)
			}
		}
		m2, ok2 := b.Next()
		if ok2 {
			out = append(out, m2)
			if err := a.Receive(m2); err != nil {
				tb.Fatal(err)
			}
		}
		if !ok1 && !ok2 {
			return out
		}
	}
	tb.Fatal("sync did not settle")
	return nil
}

// FuzzInspect feeds garbage to the sync message parser: it must return an
// error or a result consistent with the input, never panic.
func FuzzInspect(f *testing.F) {
	for _, m := range seedMessages(f) {
		f.Add(m)
		f.Add(append(append([]byte(nil), m...), 0x02, 0x02, 0x84))
	}
	f.Add([]byte{0x42, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, msg []byte) {
		info, err := Inspect(msg)
		if err != nil {
			if framesync.KindOf(err) != framesync.BadInput {
				t.Fatalf("error of kind %v: %v", framesync.KindOf(err), err)
			}
			return
		}
		n := 32*(len(info.Heads)+len(info.Need)) + 11*len(info.Changes)
		if n > len(msg) {
			t.Fatalf("decoded %d hashes and %d changes from %d bytes", len(info.Heads)+len(info.Need), len(info.Changes), len(msg))
		}
		for _, c := range info.Changes {
			if c.StartOp == 0 || c.Size > len(msg) {
				t.Fatalf("bad change info %+v", c)
			}
		}
	})
}

// fixChecksums recomputes the checksum of every change chunk in a sync
// message, as an attacker would, so that mutated changes get past the
// framing checks and reach the operation check and the core.
func fixChecksums(msg []byte) []byte {
	msg = append([]byte(nil), msg...)
	r := &reader{b: msg}
	if r.byte() != msgTypeSync {
		return msg
	}
	r.hashes()
	r.hashes()
	for range r.count(2) {
		r.hashes()
		r.bytes()
	}
	n := r.count(11)
	for range n {
		b := r.bytes()
		if r.err != nil || len(b) < 10 {
			return msg
		}
		cr := &reader{b: b, off: 9}
		l := cr.uleb()
		if cr.err != nil {
			return msg
		}
		dataEnd := len(b)
		if l < uint64(len(b)-cr.off) {
			dataEnd = cr.off + int(l)
		}
		sum := sha256.Sum256(b[8:dataEnd])
		copy(b[4:8], sum[:4])
	}
	return msg
}

// receiveBase returns a document for FuzzReceive to apply messages to, and
// messages that carry changes made on top of it: by automerge-go directly
// (text, counters, nested lists and maps, deletions) and by the typed views.
func receiveBase(tb testing.TB) (base []byte, msgs [][]byte) {
	tb.Helper()
	clock := func() time.Time { return time.UnixMilli(1_700_000_000_000) }
	st, err := NewState(&Options{ActorID: "aa01", Now: clock})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := st.Update("m", Update{Insert: []Item{{"id": "x", "list": []any{1, 2, 3}, "o": map[string]any{"k": "v"}}}}); err != nil {
		tb.Fatal(err)
	}
	am := st.doc.am
	if err := am.RootMap().Set("text", automerge.NewText("hello")); err != nil {
		tb.Fatal(err)
	}
	if err := am.RootMap().Set("count", automerge.NewCounter(1)); err != nil {
		tb.Fatal(err)
	}
	if _, err := am.Commit("raw", automerge.CommitOptions{Time: &time.Time{}}); err != nil {
		tb.Fatal(err)
	}
	base = st.Save()

	other, err := LoadState(base, &Options{ActorID: "bb02", Now: clock})
	if err != nil {
		tb.Fatal(err)
	}
	oam := other.doc.am
	tv, _ := oam.Path("text").Get()
	if err := tv.Text().Splice(1, 2, "EY"); err != nil {
		tb.Fatal(err)
	}
	if err := oam.Path("count").Counter().Inc(5); err != nil {
		tb.Fatal(err)
	}
	lv, _ := oam.Path(keyCollections, "m/x", "list").Get()
	if err := lv.List().Insert(1, "ins", map[string]any{"deep": []any{"a"}}); err != nil {
		tb.Fatal(err)
	}
	if err := lv.List().Delete(0); err != nil {
		tb.Fatal(err)
	}
	if _, err := oam.Commit("raw edits", automerge.CommitOptions{Time: &time.Time{}}); err != nil {
		tb.Fatal(err)
	}
	if _, err := other.Update("m", Update{Remove: []string{"x"}, Insert: []Item{{"id": "y", "z": 1}}}); err != nil {
		tb.Fatal(err)
	}
	if err := other.SetSettings(map[string]any{"a": map[string]any{"b": 1}}); err != nil {
		tb.Fatal(err)
	}
	recv, _ := LoadDoc(base, &Options{ActorID: "cc03"})
	return base, syncMessages(tb, NewSession(other.doc, nil), NewSession(recv, nil))
}

// FuzzReceive applies mutated sync messages, with repaired checksums, to a
// document through Session.Receive. The message must be refused or applied;
// the process must not crash. A crash here is the Automerge core aborting on
// a change the operation check let through.
func FuzzReceive(f *testing.F) {
	base, msgs := receiveBase(f)
	for _, m := range msgs {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		d, err := LoadDoc(base, nil)
		if err != nil {
			t.Fatal(err)
		}
		s := NewSession(d, nil)
		if err := s.Receive(fixChecksums(msg)); err != nil {
			return
		}
		s.Next()
		if st, err := OpenState(d); err == nil {
			st.Diff(nil, st.Heads())
		}
		d.Save()
	})
}
