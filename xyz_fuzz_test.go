package framesync

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// Run with: go test -run '^$' -fuzz '^FuzzXYZReader$' -fuzztime 60s .

// FuzzXYZReader checks that reading arbitrary bytes never panics and fails
// only with a line-numbered *Error, that every frame read validates, and
// that the frames read write out and read back Equal, with stable text.
func FuzzXYZReader(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "xyz", "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(writeXYZ(f, richFrame())))
	for _, s := range []string{
		"1\n\nH 0 0 0\n",
		"1\na=\"x\" b='y' c={1 2} d=[T, F] e flag = 3\nH 0 0 0\n",
		"1\nk=\"_JSON [[1, 2.5], [NaN, -Infinity]]\" s=\"_JSON \\\"\\\\u00e9\\\"\"\nH 0 0 0\n",
		"2\nLattice=\"1 0 0 0 1 0 0 0 1\" Properties=species:S:1:pos:I:3:Z:I:1:m:L:2:s:S:1 stress=\"1 2 3 4 5 6 7 8 9\" virial=\"1 2 3 4 5 6 7 8 9\" uid=x\nh 1 2 3 1 T F a\nHe 4 5 6 2 True False b\n",
		"0\nProperties=species:R:1:pos:R:3 pbc=\"T F T\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewXYZReader(bytes.NewReader(in))
		var frames []*Frame
		for len(frames) < 64 {
			fr, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || (e.Kind != BadInput && e.Kind != TooLarge) || !strings.HasPrefix(err.Error(), "read xyz: line ") {
					t.Fatalf("error %q (%T) is not a line-numbered BadInput *Error", err, err)
				}
				break
			}
			if err := fr.Validate(); err != nil {
				t.Fatalf("frame %d read but does not validate: %v", len(frames), err)
			}
			frames = append(frames, fr)
		}
		if len(frames) == 0 {
			return
		}
		text := writeXYZ(t, frames...)
		back, err := readAllXYZ(strings.NewReader(text))
		if err != nil {
			t.Fatalf("written frames do not read back: %v\n%s", err, text)
		}
		if len(back) != len(frames) {
			t.Fatalf("wrote %d frames, read back %d\n%s", len(frames), len(back), text)
		}
		for i := range frames {
			if !back[i].Equal(frames[i]) {
				t.Fatalf("frame %d reads back different:\n%s\nread\n%vwant\n%v", i, text, describeFrame(back[i]), describeFrame(frames[i]))
			}
		}
		if again := writeXYZ(t, back...); again != text {
			t.Fatalf("writing is not stable:\n%s\nthen\n%s", text, again)
		}
	})
}

// FuzzXYZString checks that any valid UTF-8 string round trips as an info
// value, as a verbatim uid and, when it has no white space, as a per-atom
// string; the writer rejects what it cannot represent with an error.
func FuzzXYZString(f *testing.F) {
	for _, s := range []string{"", "x", "3", "T F", `a "b" \c`, "_JSON [1]", "a\nb", "\x00", "é 😀", "1,2", "{x}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fr := NewFrame([]int64{1}, []float64{0, 0, 0})
		fr.SetPBC(false, false, false)
		fr.Info = map[string]any{"s": s}
		var buf bytes.Buffer
		err := NewXYZWriter(&buf).Write(fr)
		if !utf8.ValidString(s) {
			if KindOf(err) != BadInput {
				t.Fatalf("invalid UTF-8 %q: got %v, want a BadInput error", s, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("info %q: %v", s, err)
		}
		if got := readOne(t, writeXYZ(t, fr)); !got.Equal(fr) {
			t.Fatalf("info %q reads back as %v", s, describeFrame(got))
		}

		fr.Info = map[string]any{"uid": s}
		uidOK := !strings.ContainsAny(s, "\r\n\x00")
		if err := NewXYZWriter(io.Discard).Write(fr); (err == nil) != uidOK {
			t.Fatalf("uid %q: write error %v", s, err)
		}
		if uidOK {
			if got := readOne(t, writeXYZ(t, fr)); !got.Equal(fr) {
				t.Fatalf("uid %q reads back as %v", s, describeFrame(got))
			}
		}

		fr.Info = nil
		fr.Arrays = map[string]*Array{"label": StringArray([]string{s})}
		column, _ := fr.Arrays["label"].Strings() // numpy strings end at NUL
		colOK := column[0] != "" && strings.IndexFunc(column[0], isPySpace) < 0
		if err := NewXYZWriter(io.Discard).Write(fr); (err == nil) != colOK {
			t.Fatalf("column %q: write error %v", s, err)
		}
		if colOK {
			got, _ := readOne(t, writeXYZ(t, fr)).Arrays["label"].Strings()
			if len(got) != 1 || got[0] != column[0] {
				t.Fatalf("column %q reads back as %q", column[0], got)
			}
		}
	})
}
