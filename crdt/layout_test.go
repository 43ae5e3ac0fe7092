package crdt

// Measurements behind the trajectory document layout (see the package
// documentation). They build 100,000-frame documents, so they only run as
// benchmarks or when CRDT_LAYOUT_TABLE is set:
//
//	CRDT_LAYOUT_TABLE=1 go test -run TestLayoutTable -v ./crdt/
//	go test -run '^$' -bench Layout -benchtime 1x ./crdt/

import (
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/automerge/automerge-go"

	"framesync"
)

// layout builds and reads a trajectory document in one layout.
type layout struct {
	name string
	// new returns an empty document.
	new func(tb testing.TB) *Doc
	// extend appends frames with the given hashes in one change.
	extend func(tb testing.TB, d *Doc, hs []framesync.Hash)
	// read decodes every frame entry and returns how many there are.
	read func(tb testing.TB, d *Doc) int
}

var benchNow = time.UnixMilli(1_763_900_000_000)

// layouts returns the layouts compared: "compact" is the one this package
// implements (Trajectory); "compact+history" adds a history list for every
// frame from its first version; "naive" stores each frame as a map and each
// frame's history as a list of maps.
func layouts() []layout {
	views := map[*Doc]*Trajectory{} // the Trajectory of each document built, so its cache is used
	return []layout{
		{
			name: "compact",
			new: func(tb testing.TB) *Doc {
				t, err := NewTrajectory(&Options{Now: func() time.Time { return benchNow }})
				if err != nil {
					tb.Fatal(err)
				}
				views[t.doc] = t
				return t.doc
			},
			extend: func(tb testing.TB, d *Doc, hs []framesync.Hash) {
				t := views[d]
				if _, err := t.Extend("user-1234", hs); err != nil {
					tb.Fatal(err)
				}
			},
			read: func(tb testing.TB, d *Doc) int {
				t, err := OpenTrajectory(d, nil)
				if err != nil {
					tb.Fatal(err)
				}
				n, err := t.Len()
				if err != nil {
					tb.Fatal(err)
				}
				return n
			},
		},
		{
			// compact entries, but a history list for every frame from the start
			name: "compact+history",
			new: func(tb testing.TB) *Doc {
				d, err := NewDoc(nil)
				if err != nil {
					tb.Fatal(err)
				}
				return d
			},
			extend: func(tb testing.TB, d *Doc, hs []framesync.Hash) {
				d.mu.Lock()
				defer d.mu.Unlock()
				am := d.am
				frames := am.Path("frames").List()
				hist := am.Path("history").Map()
				for i, h := range hs {
					id := hex.EncodeToString([]byte(fmt.Sprintf("%08d", frames.Len()+i)))[:16]
					v := Version{Version: 1, Hash: h, Time: benchNow, Author: "user-1234"}
					must(tb, frames.Append(id+" "+formatVersion(v)))
					l := automerge.NewList()
					must(tb, hist.Set(id, l))
					must(tb, l.Append(formatVersion(v)))
				}
				must(tb, am.Path("generation").Counter().Inc(1))
				if _, err := am.Commit("extend", automerge.CommitOptions{Time: &benchNow}); err != nil {
					tb.Fatal(err)
				}
				d.version++
			},
			read: func(tb testing.TB, d *Doc) int {
				d.mu.Lock()
				defer d.mu.Unlock()
				es, err := readEntries(d.am)
				if err != nil {
					tb.Fatal(err)
				}
				return len(es)
			},
		},
		{
			name: "naive",
			new: func(tb testing.TB) *Doc {
				d, err := NewDoc(nil)
				if err != nil {
					tb.Fatal(err)
				}
				return d
			},
			extend: func(tb testing.TB, d *Doc, hs []framesync.Hash) {
				d.mu.Lock()
				defer d.mu.Unlock()
				am := d.am
				frames := am.Path("frames").List()
				hist := am.Path("history").Map()
				for i, h := range hs {
					id := hex.EncodeToString([]byte(fmt.Sprintf("%08d", frames.Len()+i)))[:16]
					m := automerge.NewMap()
					must(tb, frames.Append(m))
					must(tb, m.Set("id", id))
					must(tb, m.Set("version", int64(1)))
					must(tb, m.Set("hash", h.String()))
					l := automerge.NewList()
					must(tb, hist.Set(id, l))
					v := automerge.NewMap()
					must(tb, l.Append(v))
					must(tb, v.Set("version", int64(1)))
					must(tb, v.Set("hash", h.String()))
					must(tb, v.Set("time", benchNow.UnixMilli()))
					must(tb, v.Set("author", "user-1234"))
				}
				must(tb, am.Path("generation").Counter().Inc(1))
				if _, err := am.Commit("extend", automerge.CommitOptions{Time: &benchNow}); err != nil {
					tb.Fatal(err)
				}
				d.version++
			},
			read: func(tb testing.TB, d *Doc) int {
				d.mu.Lock()
				defer d.mu.Unlock()
				v, err := d.am.Path("frames").Get()
				if err != nil {
					tb.Fatal(err)
				}
				vals, err := v.List().Values()
				if err != nil {
					tb.Fatal(err)
				}
				for _, x := range vals {
					m, err := x.Map().Values()
					if err != nil || m["id"].Kind() != automerge.KindStr || m["version"].Kind() != automerge.KindInt64 {
						tb.Fatalf("bad entry %v", err)
					}
					if _, err := framesync.ParseHash(m["hash"].Str()); err != nil {
						tb.Fatal(err)
					}
				}
				return len(vals)
			},
		},
	}
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// build makes a document of n frames in batches of batch frames.
func (l layout) build(tb testing.TB, n, batch int) *Doc {
	d := l.new(tb)
	for start := 0; start < n; start += batch {
		hs := make([]framesync.Hash, min(batch, n-start))
		for i := range hs {
			hs[i] = framesync.Sum([]byte(strconv.Itoa(start + i)))
		}
		l.extend(tb, d, hs)
	}
	return d
}

// syncFresh syncs d to an empty replica through Sessions (with the receive
// check on) and returns the bytes and messages exchanged.
func syncFresh(tb testing.TB, d *Doc) (bytes, msgs int, replica *Doc) {
	replica, err := NewDoc(nil)
	if err != nil {
		tb.Fatal(err)
	}
	a, b := NewSession(d, nil), NewSession(replica, nil)
	for range 100 {
		m1, ok1 := a.Next()
		if ok1 {
			bytes += len(m1)
			msgs++
			must(tb, b.Receive(m1))
		}
		m2, ok2 := b.Next()
		if ok2 {
			bytes += len(m2)
			msgs++
			must(tb, a.Receive(m2))
		}
		if !ok1 && !ok2 {
			return bytes, msgs, replica
		}
	}
	tb.Fatal("sync did not settle")
	return
}

const layoutFrames = 100_000

func TestLayoutTable(t *testing.T) {
	if os.Getenv("CRDT_LAYOUT_TABLE") == "" {
		t.Skip("set CRDT_LAYOUT_TABLE=1 to build 100,000-frame documents and print the layout table")
	}
	n := layoutFrames
	if s := os.Getenv("CRDT_LAYOUT_FRAMES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	type row struct {
		name                    string
		build1000, build1       time.Duration
		size                    int
		save, load, read, syncT time.Duration
		syncBytes, syncMsgs     int
	}
	var rows []row
	for _, l := range layouts() {
		var r row
		r.name = l.name
		t0 := time.Now()
		d := l.build(t, n, 1000)
		r.build1000 = time.Since(t0)

		t0 = time.Now()
		l.build(t, n, n)
		r.build1 = time.Since(t0)

		t0 = time.Now()
		saved := d.Save()
		r.save = time.Since(t0)
		r.size = len(saved)

		t0 = time.Now()
		loaded, err := LoadDoc(saved, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.load = time.Since(t0)
		t0 = time.Now()
		if got := l.read(t, loaded); got != n {
			t.Fatalf("%s: read %d frames, want %d", l.name, got, n)
		}
		r.read = time.Since(t0)

		t0 = time.Now()
		r.syncBytes, r.syncMsgs, _ = syncFresh(t, loaded)
		r.syncT = time.Since(t0)
		rows = append(rows, r)
	}
	fmt.Printf("\nTrajectory document with %d frames (built as 100 extends of 1,000; the second build column is one extend of %d)\n\n", n, n)
	fmt.Printf("| layout | build 100×1,000 | build 1×%d | snapshot | save | load | read all entries | sync fresh replica | sync bytes (messages) |\n", n)
	fmt.Printf("|---|---|---|---|---|---|---|---|---|\n")
	ms := func(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s | %.2f MB | %s | %s | %s | %s | %.2f MB (%d) |\n", r.name, ms(r.build1000), ms(r.build1), float64(r.size)/1e6, ms(r.save), ms(r.load), ms(r.read), ms(r.syncT), float64(r.syncBytes)/1e6, r.syncMsgs)
	}
	fmt.Println()
}

func BenchmarkLayout(b *testing.B) {
	for _, l := range layouts() {
		b.Run(l.name+"/extend-100x1000", func(b *testing.B) {
			for b.Loop() {
				l.build(b, layoutFrames, 1000)
			}
		})
		b.Run(l.name+"/extend-1x100000", func(b *testing.B) {
			for b.Loop() {
				l.build(b, layoutFrames, layoutFrames)
			}
		})
		d := l.build(b, layoutFrames, 1000)
		saved := d.Save()
		b.Run(l.name+"/load", func(b *testing.B) {
			for b.Loop() {
				if _, err := LoadDoc(saved, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(saved)), "snapshot-bytes")
		})
		b.Run(l.name+"/load-and-read", func(b *testing.B) {
			for b.Loop() {
				d, err := LoadDoc(saved, nil)
				if err != nil {
					b.Fatal(err)
				}
				l.read(b, d)
			}
		})
		b.Run(l.name+"/sync-fresh-replica", func(b *testing.B) {
			var bytes, msgs int
			for b.Loop() {
				bytes, msgs, _ = syncFresh(b, d)
			}
			b.ReportMetric(float64(bytes), "sync-bytes")
			b.ReportMetric(float64(msgs), "messages")
		})
	}
}
