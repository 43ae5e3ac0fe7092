package crdt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/automerge/automerge-go"
)

func TestReaderLEB(t *testing.T) {
	// Cases from the Rust core's storage/parse/leb128.rs.
	for _, tc := range []struct {
		in   []byte
		want uint64
		ok   bool
	}{
		{[]byte{0}, 0, true},
		{[]byte{0x7f}, 127, true},
		{[]byte{0x80, 0x01}, 128, true},
		{[]byte{0xff, 0x7f}, 16383, true},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1}, 1<<64 - 1, true},
		{[]byte{129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129}, 0, false},
		{[]byte{129, 129, 129, 129, 129, 129, 129, 129, 129, 2}, 0, false},
		{[]byte{129, 0}, 0, false},
		{[]byte{255}, 0, false},
	} {
		r := &reader{b: tc.in}
		got := r.uleb()
		if (r.err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("uleb(%x) = %d, %v; want %d, ok %v", tc.in, got, r.err, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		in   []byte
		want int64
		ok   bool
	}{
		{[]byte{0}, 0, true},
		{[]byte{0x7f}, -1, true},
		{[]byte{0x3f}, 63, true},
		{[]byte{0x40}, -64, true},
		{[]byte{0x80, 0x01}, 128, true},
		{[]byte{0xff, 0x3f}, 8191, true},
		{[]byte{0x80, 0x40}, -8192, true},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0}, 1<<63 - 1, true},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f}, -1 << 63, true},
		{[]byte{129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129}, 0, false},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 0, false},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7e}, 0, false},
		{[]byte{0xbf, 0}, 0, false},
		{[]byte{0x81, 0xff, 0x7f}, 0, false},
		{[]byte{0x90}, 0, false},
	} {
		r := &reader{b: tc.in}
		got := r.sleb()
		if (r.err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("sleb(%x) = %d, %v; want %d, ok %v", tc.in, got, r.err, tc.want, tc.ok)
		}
	}
}

// bigDoc returns an automerge document with several actors, merges, and a
// change large enough that Automerge compresses it when storing it.
func bigDoc(t testing.TB) *automerge.Doc {
	t.Helper()
	a := automerge.New()
	for i := range 5 {
		if err := a.RootMap().Set(fmt.Sprint("k", i), int64(i)); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Commit(fmt.Sprint("change ", i)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := a.Fork()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.RootMap().Set("big", strings.Repeat("ab", 2000)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit("big change ü"); err != nil {
		t.Fatal(err)
	}
	if err := a.RootMap().Set("x", "y"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Commit("", automerge.CommitOptions{Time: &time.Time{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestInspectMatchesAutomerge checks the parser against messages generated
// by the core: every field must match what automerge-go decodes.
func TestInspectMatchesAutomerge(t *testing.T) {
	src := bigDoc(t)
	dst := automerge.New()
	ss, sd := automerge.NewSyncState(src), automerge.NewSyncState(dst)
	var nchanges int
	for round := 0; round < 10; round++ {
		progressed := false
		for _, p := range []struct{ from, to *automerge.SyncState }{{ss, sd}, {sd, ss}} {
			m, ok := p.from.GenerateMessage()
			if !ok {
				continue
			}
			progressed = true
			raw := m.Bytes()
			info, err := Inspect(raw)
			if err != nil {
				t.Fatalf("Inspect(%x): %v", raw, err)
			}
			// With the JS capability trailer the result is the same.
			info2, err := Inspect(append(slices.Clone(raw), 0x02, 0x02, 0x84))
			if err != nil || len(info2.Changes) != len(info.Changes) {
				t.Fatalf("Inspect with trailer: %v", err)
			}
			heads := m.Heads()
			if len(heads) != len(info.Heads) {
				t.Fatalf("heads %d, automerge %d", len(info.Heads), len(heads))
			}
			for i := range heads {
				if ChangeHash(heads[i]) != info.Heads[i] {
					t.Fatalf("head %d differs", i)
				}
			}
			chs := m.Changes()
			if len(chs) != len(info.Changes) {
				t.Fatalf("%d changes, automerge %d", len(info.Changes), len(chs))
			}
			for i, c := range chs {
				ci := info.Changes[i]
				var deps []ChangeHash
				for _, d := range c.Dependencies() {
					deps = append(deps, ChangeHash(d))
				}
				if ci.Hash != ChangeHash(c.Hash()) || ci.Actor != c.ActorID() || ci.Seq != c.ActorSeq() ||
					ci.Message != c.Message() || ci.Time != c.Timestamp().UnixMilli() || !slices.Equal(ci.Deps, deps) {
					t.Fatalf("change %d: got %+v, automerge hash %s actor %s seq %d msg %q time %v deps %v",
						i, ci, c.Hash(), c.ActorID(), c.ActorSeq(), c.Message(), c.Timestamp(), deps)
				}
				if sum := sha256.Sum256(nil); ci.Hash == ChangeHash(sum) {
					t.Fatal("hash of nothing")
				}
			}
			nchanges += len(chs)
			if _, err := p.to.ReceiveMessage(raw); err != nil {
				t.Fatal(err)
			}
		}
		if !progressed {
			break
		}
	}
	all, _ := src.Changes()
	if nchanges != len(all) {
		t.Fatalf("inspected %d changes, document has %d", nchanges, len(all))
	}
	// Doc.Changes decodes the same metadata.
	d := &Doc{am: src}
	infos, err := d.Changes(nil)
	if err != nil || len(infos) != len(all) {
		t.Fatalf("Changes: %d, %v", len(infos), err)
	}
	for i, c := range all {
		if infos[i].Hash != ChangeHash(c.Hash()) || infos[i].Actor != c.ActorID() {
			t.Fatalf("Changes()[%d] = %+v", i, infos[i])
		}
	}
}

func TestInspectChecksum(t *testing.T) {
	src := bigDoc(t)
	ss := automerge.NewSyncState(src)
	m, _ := ss.GenerateMessage()
	// Ask for everything: a reply carrying all changes.
	dst := automerge.New()
	sd := automerge.NewSyncState(dst)
	if _, err := sd.ReceiveMessage(m.Bytes()); err != nil {
		t.Fatal(err)
	}
	req, _ := sd.GenerateMessage()
	if _, err := ss.ReceiveMessage(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	full, _ := ss.GenerateMessage()
	raw := full.Bytes()
	info, err := Inspect(raw)
	if err != nil || len(info.Changes) == 0 {
		t.Fatalf("Inspect: %d changes, %v", len(info.Changes), err)
	}
	// Find the first change's magic bytes and corrupt a byte of its data.
	i := bytes.Index(raw, chunkMagic)
	bad := slices.Clone(raw)
	bad[i+20] ^= 1
	if _, err := Inspect(bad); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("corrupted change: %v", err)
	}
	t.Logf("first change at %d: %s", i, hex.EncodeToString(raw[i:i+12]))
}
