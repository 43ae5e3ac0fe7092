package crdt

import (
	"bytes"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/automerge/automerge-go"

	"framesync"
)

// readCorpusBytes decodes a Go fuzz corpus file holding one []byte value.
func readCorpusBytes(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	s, ok := strings.CutPrefix(string(b), "go test fuzz v1\n[]byte(")
	s, ok2 := strings.CutSuffix(strings.TrimSpace(s), ")")
	if !ok || !ok2 {
		tb.Fatalf("%s: not a []byte fuzz corpus file", path)
	}
	v, err := strconv.Unquote(s)
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return []byte(v)
}

// changeHeader is a decoded change chunk, for crafting changes in tests.
type changeHeader struct {
	deps    []ChangeHash
	actor   []byte
	seq     uint64
	startOp uint64
	time    int64
	msg     string
	rest    []byte // other actors, column metadata and column data
}

func parseChangeHeader(tb testing.TB, raw []byte) changeHeader {
	tb.Helper()
	c, err := readChunk(&reader{b: raw})
	if err != nil {
		tb.Fatal(err)
	}
	d := &reader{b: c.data}
	h := changeHeader{deps: d.hashes(), actor: d.bytes(), seq: d.uleb(), startOp: d.uleb(), time: d.sleb(), msg: d.str()}
	h.rest = c.data[d.off:]
	if d.err != nil {
		tb.Fatal(d.err)
	}
	return h
}

func appendSleb(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// encode returns the change chunk, with a valid checksum.
func (h changeHeader) encode() []byte {
	data := appendHashes(nil, h.deps)
	data = appendUleb(data, uint64(len(h.actor)))
	data = append(data, h.actor...)
	data = appendUleb(data, h.seq)
	data = appendUleb(data, h.startOp)
	data = appendSleb(data, h.time)
	data = appendUleb(data, uint64(len(h.msg)))
	data = append(data, h.msg...)
	data = append(data, h.rest...)
	body := appendUleb([]byte{chunkChange}, uint64(len(data)))
	body = append(body, data...)
	sum := sha256.Sum256(body)
	return append(append(append([]byte(nil), chunkMagic...), sum[:4]...), body...)
}

// syncMessageWith encodes a sync message carrying the given change chunks.
func syncMessageWith(changes ...[]byte) []byte {
	m := []byte{msgTypeSync, 0, 0, 0}
	m = appendUleb(m, uint64(len(changes)))
	for _, c := range changes {
		m = appendUleb(m, uint64(len(c)))
		m = append(m, c...)
	}
	return m
}

// craftMapKeyOnList returns a document with a list L (one element) and a map M, and a sync
// message whose change sets a key of M, edited to address L instead.
func craftMapKeyOnList(tb testing.TB) (base, msg []byte) {
	tb.Helper()
	noTime := automerge.CommitOptions{Time: &time.Time{}}
	a := automerge.New()
	if err := a.SetActorID("aaaa"); err != nil {
		tb.Fatal(err)
	}
	a.RootMap().Set("L", []any{"x"})         // object 1@aaaa, element 2@aaaa
	a.RootMap().Set("M", automerge.NewMap()) // object 3@aaaa
	if _, err := a.Commit("base", noTime); err != nil {
		tb.Fatal(err)
	}
	b, _ := a.Fork()
	b.SetActorID("bbbb")
	mv, _ := b.Path("M").Get()
	if err := mv.Map().Set("k", "v"); err != nil {
		tb.Fatal(err)
	}
	if _, err := b.Commit("set M.k", noTime); err != nil {
		tb.Fatal(err)
	}
	chs, _ := b.Changes(a.Heads()...)
	h := parseChangeHeader(tb, chs[0].Save())
	// The object actor and counter columns hold one literal run each:
	// 7f 01 (other actor 1, aaaa) and 7f 03 (3@aaaa = M).
	i := bytes.Index(h.rest, []byte{0x7f, 0x01, 0x7f, 0x03})
	if i < 0 {
		tb.Fatalf("unexpected column layout %x", h.rest)
	}
	h.rest = bytes.Clone(h.rest)
	h.rest[i+3] = 0x01 // 1@aaaa = L
	return a.Save(), syncMessageWith(h.encode())
}

// abortCase is a sync message that makes the bundled core abort the process
// unless Session.Receive refuses it.
type abortCase struct {
	name string
	base []byte // the receiving document
	msg  []byte
}

func abortCases(tb testing.TB) []abortCase {
	files, err := filepath.Glob("testdata/fuzz/FuzzReceive/core-abort-*")
	if err != nil || len(files) == 0 {
		tb.Fatalf("no regression inputs: %v", err)
	}
	base, _ := receiveBase(tb)
	var cases []abortCase
	for _, f := range files {
		cases = append(cases, abortCase{filepath.Base(f), base, fixChecksums(readCorpusBytes(tb, f))})
	}
	b, m := craftMapKeyOnList(tb)
	return append(cases, abortCase{"crafted-map-key-on-list", b, m})
}

// TestCoreAbortRegressions replays sync messages whose changes made the
// bundled Automerge core abort the process (found by FuzzReceive before the
// operation check existed, and kept as its seeds; plus one crafted by hand).
// Each must now be refused, and, as a canary for upgrades of automerge-go,
// must still abort a child process that skips the check (TrustPeer).
func TestCoreAbortRegressions(t *testing.T) {
	cases := abortCases(t)
	if child := os.Getenv("CRDT_ABORT_CHILD"); child != "" {
		for _, c := range cases {
			if c.name != child {
				continue
			}
			// The steps of FuzzReceive, which found these inputs.
			d, _ := LoadDoc(c.base, nil)
			s := NewSession(d, &SessionOptions{TrustPeer: true})
			if err := s.Receive(c.msg); err == nil {
				s.Next()
				if st, err := OpenState(d); err == nil {
					st.Diff(nil, st.Heads())
				}
				readJSON(d.am.Root())
				d.Save()
			}
			os.Stdout.WriteString("survived\n")
		}
		return
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := LoadDoc(c.base, nil)
			if err != nil {
				t.Fatal(err)
			}
			before := d.Heads()
			err = NewSession(d, nil).Receive(c.msg)
			if framesync.KindOf(err) != framesync.BadInput {
				t.Fatalf("Receive: %v, want a bad_input error", err)
			}
			t.Log(err)
			if !d.Heads().Equal(before) {
				t.Fatal("document changed")
			}
			if testing.Short() {
				return
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestCoreAbortRegressions$")
			cmd.Env = append(os.Environ(), "CRDT_ABORT_CHILD="+c.name)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err = cmd.Run()
			if err == nil || !strings.Contains(out.String(), "panicked at") {
				t.Fatalf("without the check the core no longer aborts (err %v); if automerge-go was upgraded, revisit the operation check and the package documentation. Output:\n%s", err, out.String())
			}
			for _, line := range strings.Split(out.String(), "\n") {
				if strings.Contains(line, "panicked at") {
					t.Logf("without the check: %s", strings.TrimSpace(line))
				}
			}
		})
	}
}
