package framesync

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// readXYZ reads every frame of text, failing the test on an error.
func readXYZ(t testing.TB, text string) []*Frame {
	t.Helper()
	frames, err := readAllXYZ(strings.NewReader(text))
	if err != nil {
		t.Fatalf("read:\n%s\nerror: %v", text, err)
	}
	return frames
}

func readAllXYZ(r io.Reader) ([]*Frame, error) {
	xr := NewXYZReader(r)
	var frames []*Frame
	for {
		f, err := xr.Next()
		if err == io.EOF {
			return frames, nil
		}
		if err != nil {
			return frames, err
		}
		frames = append(frames, f)
	}
}

// writeXYZ writes frames, failing the test on an error.
func writeXYZ(t testing.TB, frames ...*Frame) string {
	t.Helper()
	var buf bytes.Buffer
	w := NewXYZWriter(&buf)
	for i, f := range frames {
		if err := w.Write(f); err != nil {
			t.Fatalf("write frame %d: %v", i, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// readOne reads text that must hold exactly one frame.
func readOne(t testing.TB, text string) *Frame {
	t.Helper()
	frames := readXYZ(t, text)
	if len(frames) != 1 {
		t.Fatalf("got %d frames, want 1", len(frames))
	}
	if err := frames[0].Validate(); err != nil {
		t.Fatalf("read frame does not validate: %v", err)
	}
	return frames[0]
}

// frameWith returns a one-atom frame whose comment line is header.
func frameWith(t testing.TB, header string) *Frame {
	t.Helper()
	return readOne(t, "1\n"+header+"\nH 0 0 0\n")
}

func floats(t testing.TB, a *Array) []float64 {
	t.Helper()
	v, err := a.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestXYZReadPlain(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("testdata", "xyz", "plain.xyz"))
	if err != nil {
		t.Fatal(err)
	}
	frames := readXYZ(t, string(text))
	if len(frames) != 2 {
		t.Fatalf("got %d frames, want 2", len(frames))
	}
	want := NewFrame([]int64{8, 1, 1}, []float64{0, 0, 0.1173, 0, 0.7572, -0.4692, 0, -0.7572, -0.4692})
	want.SetPBC(false, false, false)
	want.Info = map[string]any{"comment": "water, from some program (E = -76.4 a.u.)"}
	if !frames[0].Equal(want) {
		t.Errorf("frame 0 = %v, want %v", describeFrame(frames[0]), describeFrame(want))
	}
	if got := frames[1].Info["comment"]; got != "second frame: hydrogen molecule" {
		t.Errorf("frame 1 comment = %q", got)
	}
}

func TestXYZReadASEFile(t *testing.T) {
	// testdata/xyz/ase.extxyz was written by ase.io.write (ASE 3.22.1).
	text, err := os.ReadFile(filepath.Join("testdata", "xyz", "ase.extxyz"))
	if err != nil {
		t.Fatal(err)
	}
	frames := readXYZ(t, string(text))
	if len(frames) != 2 {
		t.Fatalf("got %d frames, want 2", len(frames))
	}
	w, si := frames[0], frames[1]

	want := NewFrame([]int64{1, 1, 8}, []float64{0.7586, 0, 0.5043, -0.7586, 0, 0.5043, 0, 0, 0})
	want.SetPBC(false, false, false)
	want.Arrays = map[string]*Array{
		"tags2":           Int64Array([]int64{1, 0, 0}),
		"fixed":           BoolArray([]bool{true, false, false}),
		"label":           StringArray([]string{"h1", "h2", "o"}),
		"initial_charges": Float64Array([]float64{0.4, 0.4, -0.8}),
	}
	want.Info = map[string]any{
		"config_type": "water molecule",
		"step":        int64(7),
		"temperature": 300.5,
		"converged":   true,
		"kpts":        Int64Array([]int64{4, 4, 1}),
		"weights":     Float64Array([]float64{0.25, 0.5}),
	}
	if !w.Equal(want) {
		t.Errorf("water =\n%v\nwant\n%v", describeFrame(w), describeFrame(want))
	}

	want = NewFrame([]int64{14, 14}, []float64{0, 0, 0, 1.3575, 1.3575, 1.3575})
	want.SetCell([9]float64{0, 2.715, 2.715, 2.715, 0, 2.715, 2.715, 2.715, 0})
	want.SetPBC(true, true, false)
	want.Info = map[string]any{"virial": Float64Array([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9}, 3, 3)}
	want.Calc = map[string]any{
		"energy": -10.5,
		"forces": Float64Array([]float64{0.1, 0.2, 0.3, -0.1, -0.2, -0.3}, 2, 3),
		"stress": Float64Array([]float64{1, 2, 3, 0.4, 0.5, 0.6}),
	}
	if !si.Equal(want) {
		t.Errorf("silicon =\n%v\nwant\n%v", describeFrame(si), describeFrame(want))
	}
}

func TestXYZReadQuirks(t *testing.T) {
	// ASE's comment line syntax: bracket and brace quotes, single quotes,
	// bare flags, spaces around '=', backslash escapes, _JSON values;
	// capitalization of symbols; extra columns ignored.
	text, err := os.ReadFile(filepath.Join("testdata", "xyz", "quirks.extxyz"))
	if err != nil {
		t.Fatal(err)
	}
	f := readOne(t, string(text))
	want := NewFrame([]int64{2, 2}, []float64{0, 0, 0, 1, 1, 1})
	want.SetCell([9]float64{4, 0, 0, 0, 4, 0, 0, 0, 4})
	want.SetPBC(true, true, true)
	want.Arrays = map[string]*Array{"vel": Float64Array([]float64{0.1, 0.2, 0.3, -0.1, -0.2, -0.3}, 2, 3)}
	want.Info = map[string]any{
		"have_forces": true,
		"name":        "a b",
		"list":        Int64Array([]int64{1, 2, 3}),
		"spaced":      int64(5),
		"esc":         `say "hi"`,
		"json":        Float64Array([]float64{1, 2, 3, 4.5}, 2, 2),
		"strs":        StringArray([]string{"x", "y"}),
		"t":           true,
		"f":           false,
	}
	if !f.Equal(want) {
		t.Errorf("got\n%v\nwant\n%v", describeFrame(f), describeFrame(want))
	}
}

func TestXYZInfoValues(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		value string // after "k="
		want  any
	}{
		{"3", int64(3)},
		{"-0", int64(0)},
		{"+7", int64(7)},
		{"1_000", int64(1000)},
		{"99999999999999999999", 1e20}, // beyond int64: a float, as numpy
		{"3.0", 3.0},
		{"1e3", 1000.0},
		{"-2.5E-3", -2.5e-3},
		{".5", 0.5},
		{"5.", 5.0},
		{"inf", math.Inf(1)},
		{"-Infinity", math.Inf(-1)},
		{"1e999", math.Inf(1)},
		{"nan", nan},
		{"-NaN", nan},
		{"T", true},
		{"F", false},
		{"True", true},
		{"false", false},
		{"TRUE", true},
		{"t", "t"},
		{"0x10", "0x10"},
		{"1__0", "1__0"},
		{"hello", "hello"},
		{`"hello world"`, "hello world"},
		{`'single quoted'`, "single quoted"},
		{`"say \"hi\""`, `say "hi"`},
		{`a\ b`, "a b"},
		{`back\\slash`, `back\slash`},
		{`"1 2 3"`, Int64Array([]int64{1, 2, 3})},
		{`"1 2.5"`, Float64Array([]float64{1, 2.5})},
		{`1,2,3`, Int64Array([]int64{1, 2, 3})},
		{`[1, 2, 3]`, Int64Array([]int64{1, 2, 3})},
		{`{4 5}`, Int64Array([]int64{4, 5})},
		{`"T F T"`, BoolArray([]bool{true, false, true})},
		{`"T x"`, "T x"},
		{`""`, Float64Array(nil)},
		{`"_JSON [[1, 2], [3, 4]]"`, Int64Array([]int64{1, 2, 3, 4}, 2, 2)},
		{`"_JSON [1.5]"`, Float64Array([]float64{1.5})},
		{`"_JSON [NaN, Infinity]"`, Float64Array([]float64{nan, math.Inf(1)})},
		{`"_JSON [true, false]"`, BoolArray([]bool{true, false})},
		{`"_JSON [[\"a\", \"bc\"]]"`, StringArray([]string{"a", "bc"}, 1, 2)},
		{`"_JSON []"`, Float64Array(nil)},
		{`"_JSON [[], []]"`, &Array{DType: Float64, Shape: []int{2, 0}, Data: []byte{}}},
		{`"_JSON \"3\""`, "3"},
		{`"_JSON \"a\\nb\""`, "a\nb"},
		{`"_JSON 5"`, int64(5)},
		{`"_JSON null"`, nil},
		{`"_JSON {\"a\": 1}"`, `_JSON {"a": 1}`},         // objects stay text
		{`"_JSON [[1], [2, 3]]"`, "_JSON [[1], [2, 3]]"}, // ragged
		{`"_JSON [1, \"a\"]"`, `_JSON [1, "a"]`},         // mixed
		{`"_JSON nope"`, "_JSON nope"},
		{`b=c`, "b=c"},
	} {
		f := frameWith(t, "k="+tc.value)
		got, ok := f.Info["k"]
		if !ok {
			t.Errorf("k=%s: no info k in %v", tc.value, describeFrame(f))
			continue
		}
		if !sameValue(got, tc.want) {
			t.Errorf("k=%s: got %s, want %s", tc.value, describeValue(got), describeValue(tc.want))
		}
	}
}

// sameValue compares info values: arrays by Equal, NaN equal to NaN.
func sameValue(a, b any) bool {
	if x, ok := a.(*Array); ok {
		y, ok := b.(*Array)
		return ok && x.Equal(y)
	}
	if x, ok := a.(float64); ok {
		y, ok := b.(float64)
		return ok && (x == y && math.Signbit(x) == math.Signbit(y) || math.IsNaN(x) && math.IsNaN(y))
	}
	return reflect.DeepEqual(a, b)
}

func describeValue(v any) string {
	if a, ok := v.(*Array); ok {
		var vals any
		switch a.DType.Kind() {
		case 'U', 'S':
			vals, _ = a.Strings()
		case 'b':
			vals, _ = a.Bools()
		default:
			vals, _ = a.Float64s()
		}
		return fmt.Sprintf("%s%v%v", a.DType, a.Shape, vals)
	}
	return fmt.Sprintf("%T(%#v)", v, v)
}

func describeFrame(f *Frame) string {
	var b strings.Builder
	for _, name := range f.Fields() {
		v, _ := f.Field(name)
		fmt.Fprintf(&b, "  %s: %s\n", name, describeValue(v))
	}
	return b.String()
}

func TestXYZCommentLine(t *testing.T) {
	for _, tc := range []struct {
		header string
		info   map[string]any
		calc   map[string]any
	}{
		// Plain comments: no key=value pair, or not parsable and no
		// Properties= or Lattice=.
		{"", nil, nil},
		{"just a title", map[string]any{"comment": "just a title"}, nil},
		{"flag", map[string]any{"comment": "flag"}, nil},
		{"E = -76.4 a.u.", map[string]any{"comment": "E = -76.4 a.u."}, nil},
		{`note="unterminated`, map[string]any{"comment": `note="unterminated`}, nil},
		// extxyz.
		{"a=1 flag", map[string]any{"a": int64(1), "flag": true}, nil},
		{"a = 1  b= 2 c =3", map[string]any{"a": int64(1), "b": int64(2), "c": int64(3)}, nil},
		{"a=1 a=2", map[string]any{"a": int64(2)}, nil},
		{"a==b", map[string]any{"a": "=b"}, nil},
		{`"quoted key"x=1`, map[string]any{"comment": `"quoted key"x=1`}, nil}, // invalid key
		{"uid=007 UID=T", map[string]any{"uid": "007", "UID": "T"}, nil},
		{"virial=\"1 2 3 4 5 6 7 8 9\"", map[string]any{"virial": Int64Array([]int64{1, 4, 7, 2, 5, 8, 3, 6, 9}, 3, 3)}, nil},
		{"energy=-1.5 free_energy=-1 magmom=0.5 dipole=\"0 0 1.5\" stress=\"1 6 5 6 2 4 5 4 3\"", nil, map[string]any{
			"energy":      -1.5,
			"free_energy": int64(-1),
			"magmom":      0.5,
			"dipole":      Float64Array([]float64{0, 0, 1.5}),
			"stress":      Float64Array([]float64{1, 2, 3, 4, 5, 6}),
		}},
	} {
		f := frameWith(t, tc.header)
		if !sameMap(f.Info, tc.info) || !sameMap(f.Calc, tc.calc) {
			t.Errorf("%q: got\n%vwant info %v calc %v", tc.header, describeFrame(f), tc.info, tc.calc)
		}
	}
}

func sameMap(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !sameValue(v, w) {
			return false
		}
	}
	return true
}

func TestXYZCellAndPBC(t *testing.T) {
	lattice := `Lattice="1 2 3 4 5 6 7 8 9.5"`
	for _, tc := range []struct {
		header string
		cell   []float64 // nil: no cell
		pbc    []bool
	}{
		{"", nil, []bool{false, false, false}},
		{"a=1", nil, []bool{false, false, false}},
		{lattice, []float64{1, 2, 3, 4, 5, 6, 7, 8, 9.5}, []bool{true, true, true}}, // ASE's default with a Lattice
		{lattice + ` pbc="T F T"`, []float64{1, 2, 3, 4, 5, 6, 7, 8, 9.5}, []bool{true, false, true}},
		{lattice + ` pbc="F F F"`, []float64{1, 2, 3, 4, 5, 6, 7, 8, 9.5}, []bool{false, false, false}},
		{`pbc="F T F"`, nil, []bool{false, true, false}},
		{`pbc=T`, nil, []bool{true, true, true}},
		{`pbc a=1`, nil, []bool{true, true, true}},
		{`pbc="1 0 1"`, nil, []bool{true, false, true}},
		{`pbc=[True,False,False]`, nil, []bool{true, false, false}},
	} {
		f := frameWith(t, tc.header)
		pbc, _ := f.PBC.Bools()
		if !reflect.DeepEqual(pbc, tc.pbc) {
			t.Errorf("%q: pbc %v, want %v", tc.header, pbc, tc.pbc)
		}
		switch {
		case tc.cell == nil && f.Cell != nil:
			t.Errorf("%q: cell %v, want none", tc.header, floats(t, f.Cell))
		case tc.cell != nil && (f.Cell == nil || !f.Cell.Equal(Float64Array(tc.cell, 3, 3))):
			t.Errorf("%q: cell %v, want %v", tc.header, f.Cell, tc.cell)
		}
	}
}

func TestXYZColumns(t *testing.T) {
	text := `2
Properties=species:S:1:pos:R:3:Z:I:1:forces:R:3:charge:R:1:magmoms:R:1:mask:L:2:name:S:1:n:I:1:ipos:I:3 pbc="F F F"
H 0 0 0 8 1 2 3 0.5 1 T False a -2147483648 1 2 3
x 1e-3 -2 3.5 1 4 5 6 -0.5 -1 True F b 2147483647 4 5 6
`
	f := readOne(t, text)
	want := NewFrame([]int64{8, 1}, []float64{0, 0, 0, 1e-3, -2, 3.5}) // Z wins over species, as in ASE
	want.SetPBC(false, false, false)
	want.Arrays = map[string]*Array{
		"mask": BoolArray([]bool{true, false, true, false}, 2, 2),
		"name": StringArray([]string{"a", "b"}),
		"n":    Int64Array([]int64{math.MinInt32, math.MaxInt32}),
		"ipos": Int64Array([]int64{1, 2, 3, 4, 5, 6}, 2, 3),
	}
	want.Calc = map[string]any{
		"forces":  Float64Array([]float64{1, 2, 3, 4, 5, 6}, 2, 3),
		"charges": Float64Array([]float64{0.5, -0.5}),
		"magmoms": Float64Array([]float64{1, -1}),
	}
	if !f.Equal(want) {
		t.Errorf("got\n%vwant\n%v", describeFrame(f), describeFrame(want))
	}

	// Integer positions, no species column (dummy atoms), zero atoms.
	f = readOne(t, "2\nProperties=positions:I:3\n1 2 3\n4 5 6\n")
	want = NewFrame([]int64{0, 0}, []float64{1, 2, 3, 4, 5, 6})
	want.SetPBC(false, false, false)
	if !f.Equal(want) {
		t.Errorf("got\n%vwant\n%v", describeFrame(f), describeFrame(want))
	}
	f = readOne(t, "0\n\n")
	if f.N() != 0 || f.Positions.Shape[0] != 0 || f.Positions.Shape[1] != 3 {
		t.Errorf("empty frame: %v", describeFrame(f))
	}
}

func TestXYZReadErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		line int
		msg  string
	}{
		{"count", "x\n", 1, `want the atom count of a frame, got "x"`},
		{"negative count", "-1\n\n", 1, "negative atom count"},
		{"absurd count", "99999999999\n\nH 0 0 0\n", 1, "exceeds the limit"},
		{"huge count, short file", "100000000\n\nH 0 0 0\n", 3, "frame declares 100000000 atoms, found 1"},
		{"vec_cell", "1\n\nH 0 0 0\nVEC1 1 0 0\n", 4, "VEC1..VEC3"},
		{"no comment", "1", 1, "has no comment line"},
		{"too few atoms", "2\n\nH 0 0 0\n", 3, "frame declares 2 atoms, found 1"},
		{"second frame", "1\n\nH 0 0 0\n2\n\nH 0 0 0\n", 6, "found 1"},
		{"missing column", "1\n\nH 0 0\n", 3, "want 4 columns (from Properties), got 3"},
		{"not a number", "1\n\nH 0 zero 0\n", 3, `column 3 (pos): want a real number, got "zero"`},
		{"hex", "1\n\nH 0x1p3 0 0\n", 3, "want a real number"},
		{"unknown element", "1\n\nQq 0 0 0\n", 3, `column 1 (species): unknown element symbol "Qq"`},
		{"bad integer", "1\nProperties=species:S:1:pos:R:3:n:I:1\nH 0 0 0 1.5\n", 3, `column 5 (n): want an integer within int32 (ASE reads I columns as int32), got "1.5"`},
		{"int32 range", "1\nProperties=species:S:1:pos:R:3:n:I:1\nH 0 0 0 2147483648\n", 3, `want an integer within int32`},
		{"bad logical", "1\nProperties=species:S:1:pos:R:3:m:L:1\nH 0 0 0 yes\n", 3, "want a logical"},
		{"bad Z", "1\nProperties=Z:I:1:pos:R:3\n200 0 0 0\n", 3, "atomic number from 0 to 118"},
		{"unterminated quote", "1\nProperties=species:S:1:pos:R:3 a=\"x\nH 0 0 0\n", 2, `unterminated quote (missing ")`},
		{"trailing backslash", "1\nProperties=species:S:1:pos:R:3 a=x\\\nH 0 0 0\n", 2, "ends with a backslash"},
		{"equals first", "1\nLattice= =1\nH 0 0 0\n", 2, "want 9 numbers"},
		{"lone equals", "1\n=Properties=x\nH 0 0 0\n", 2, "'=' without a key"},
		{"properties triples", "1\nProperties=species:S:1:pos:R\nH 0 0 0\n", 2, `Properties="species:S:1:pos:R": want name:type:columns triples`},
		{"properties type", "1\nProperties=species:S:1:pos:X:3\nH 0 0 0\n", 2, `Properties="species:S:1:pos:X:3": column pos has type "X" (want R, I, S or L)`},
		{"properties count", "1\nProperties=species:S:1:pos:R:0\nH 0 0 0\n", 2, `spans "0" columns`},
		{"too many values", "100000000\nProperties=species:S:1:pos:R:3:a:R:100\n", 2, "100000000 atoms of 100 a columns exceed the limit"},
		{"properties no pos", "1\nProperties=species:S:1\nH\n", 2, `Properties="species:S:1": no pos column`},
		{"properties dup", "1\nProperties=species:S:1:pos:R:3:positions:R:3\nH 0 0 0 0 0 0\n", 2, "columns pos and positions both give positions"},
		{"properties name", "1\nProperties=species:S:1:pos:R:3:a.b:R:1\nH 0 0 0 1\n", 2, `column name "a.b"`},
		{"species columns", "1\nProperties=species:S:2:pos:R:3\nH H 0 0 0\n", 2, "column species must be S:1, got S:2"},
		{"lattice", "1\nLattice=\"1 2 3\" Properties=species:S:1:pos:R:3\nH 0 0 0\n", 2, `Lattice="1 2 3": want 9 numbers`},
		{"stress", "1\nProperties=species:S:1:pos:R:3 stress=\"1 2 3 4 5 6\"\nH 0 0 0\n", 2, "stress="},
		{"pbc", "1\nProperties=species:S:1:pos:R:3 pbc=\"T F\"\nH 0 0 0\n", 2, `pbc="T F": want 3 logicals`},
		{"bad key", "1\nProperties=species:S:1:pos:R:3 a.b=1\nH 0 0 0\n", 2, `key "a.b": name contains '.'`},
		{"lone CR", "1\nabc\rdef\nH 0 0 0\n", 2, `unexpected '\r'`},
		{"NUL", "1\n\nH\x00 0 0 0\n", 3, `unexpected '\x00'`},
		{"invalid UTF-8", "1\n\xff\nH 0 0 0\n", 2, "invalid UTF-8"},
	} {
		r := NewXYZReader(strings.NewReader(tc.in))
		var err error
		for err == nil {
			_, err = r.Next()
		}
		var e *Error
		switch {
		case err == io.EOF:
			t.Errorf("%s: read without error", tc.name)
		case !errors.As(err, &e) || e.Kind != BadInput:
			t.Errorf("%s: error %v (%T), want a BadInput *Error", tc.name, err, err)
		case !strings.Contains(err.Error(), fmt.Sprintf("read xyz: line %d: ", tc.line)) || !strings.Contains(err.Error(), tc.msg):
			t.Errorf("%s: error %q, want line %d and %q", tc.name, err, tc.line, tc.msg)
		case r.Line() != tc.line:
			t.Errorf("%s: Line() = %d, want %d", tc.name, r.Line(), tc.line)
		}
		if _, again := r.Next(); again != err {
			t.Errorf("%s: error is not sticky: %v then %v", tc.name, err, again)
		}
	}
}

func TestXYZLongLine(t *testing.T) {
	in := io.MultiReader(strings.NewReader("1\n"), &repeatReader{b: 'a', n: xyzMaxLine + 1})
	_, err := NewXYZReader(in).Next()
	if KindOf(err) != TooLarge || !strings.Contains(err.Error(), "line 2: longer than") {
		t.Fatalf("got %v, want a TooLarge error for line 2", err)
	}
}

// repeatReader yields n copies of b.
type repeatReader struct {
	b byte
	n int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.n)
	for i := range n {
		p[i] = r.b
	}
	r.n -= n
	return n, nil
}

func TestXYZReadSeparators(t *testing.T) {
	// CRLF line endings, blank lines between and after frames, no final
	// newline, tabs.
	frames := readXYZ(t, "1\r\n\r\nH\t0 0 0\r\n\n\n1\nk=1\nHe 1 1 1")
	if len(frames) != 2 || frames[0].Numbers.Size() != 1 || frames[1].Info["k"] != int64(1) {
		t.Fatalf("got %d frames: %v", len(frames), frames)
	}
	if got := readXYZ(t, ""); len(got) != 0 {
		t.Fatalf("empty input gave %d frames", len(got))
	}
	if got := readXYZ(t, "\n \n"); len(got) != 0 {
		t.Fatalf("blank input gave %d frames", len(got))
	}
}

// richFrame is a frame using every kind of value the writer supports.
func richFrame() *Frame {
	f := NewFrame([]int64{8, 1, 1, 0}, []float64{0, 0, 0.1173, 0, 0.7572, -0.4692, 0, -0.7572, -0.4692, 1e-300, math.Copysign(0, -1), 1e21})
	f.SetCell([9]float64{10, 0, 0, 0.1, 11, 0, 0, 0, 12.000000000000002})
	f.SetPBC(true, false, true)
	f.Arrays = map[string]*Array{
		"ints":    Int64Array([]int64{1, -2, 3, math.MinInt32}),
		"flags":   BoolArray([]bool{true, false, true, false}),
		"labels":  StringArray([]string{"a", "bé", `"q"`, "x=y"}),
		"vel":     Float64Array([]float64{0.1, 0.2, 0.3, 1, 2, 3, math.NaN(), math.Inf(1), math.Inf(-1), 4, 5, 6}, 4, 3),
		"pair":    Int64Array([]int64{1, 2, 3, 4, 5, 6, 7, 8}, 4, 2),
		"charges": Float64Array([]float64{0.1, 0.2, 0.3, 0.4}),
	}
	f.Info = map[string]any{
		"int":      int64(-42),
		"float":    2.0,
		"tiny":     5e-324,
		"nan":      math.NaN(),
		"yes":      true,
		"no":       false,
		"str":      "hello world",
		"plain":    "bulk",
		"numstr":   "3",
		"boolstr":  "T",
		"empty":    "",
		"quote":    `say "hi" \o/`,
		"newline":  "a\nb",
		"jsonstr":  "_JSON [1]",
		"nil":      nil,
		"floats":   Float64Array([]float64{1, 2.5, math.Copysign(0, -1)}),
		"ints":     Int64Array([]int64{1, 2, 3}),
		"one":      Float64Array([]float64{1.5}),
		"oneint":   Int64Array([]int64{7}),
		"bools":    BoolArray([]bool{true, false}),
		"onebool":  BoolArray([]bool{true}),
		"matrix":   Float64Array([]float64{1, 2, 3, 4, 5, 6}, 2, 3),
		"imatrix":  Int64Array([]int64{1, 2, 3, 4}, 2, 2),
		"strs":     StringArray([]string{"a", "b c"}),
		"virial":   Float64Array([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9.5}, 3, 3),
		"uid":      "0123 x",
		"comment":  "made by framesync",
		"key=with": "odd key",
	}
	f.Calc = map[string]any{
		"energy":      -123.456,
		"free_energy": -123.5,
		"magmom":      int64(2),
		"dipole":      Float64Array([]float64{0.1, 0, 0}),
		"stress":      Float64Array([]float64{1, 2, 3, 4, 5, 6}),
		"forces":      Float64Array([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, 4, 3),
		"energies":    Float64Array([]float64{-1, -2, -3, -4}),
		"stresses":    Float64Array(make([]float64, 24), 4, 6),
		"magmoms":     Float64Array([]float64{0, 1, 0, -1}),
	}
	delete(f.Arrays, "charges")
	f.Calc["charges"] = Float64Array([]float64{0.1, 0.2, 0.3, 0.4})
	return f
}

func TestXYZRoundTrip(t *testing.T) {
	small := NewFrame([]int64{1}, []float64{1, 2, 3})
	small.SetPBC(false, false, false)
	empty := NewFrame(nil, nil)
	empty.SetPBC(true, true, true)
	empty.SetCell([9]float64{1, 0, 0, 0, 1, 0, 0, 0, 1})
	frames := []*Frame{richFrame(), small, empty, richFrame()}
	text := writeXYZ(t, frames...)
	got := readXYZ(t, text)
	if len(got) != len(frames) {
		t.Fatalf("read %d frames, want %d", len(got), len(frames))
	}
	for i := range frames {
		if !got[i].Equal(frames[i]) {
			t.Errorf("frame %d:\n%s\nread back\n%vwant\n%v", i, text, describeFrame(got[i]), describeFrame(frames[i]))
		}
	}
}

func TestXYZWriteNormalizes(t *testing.T) {
	// Values that extxyz cannot distinguish come back in a normal form.
	f := &Frame{Numbers: Int32Array([]int32{1, 2}), Positions: Float32Array([]float32{1, 2, 3, 0.1, 5, 6}, 2, 3)}
	f.Arrays = map[string]*Array{"col": Float64Array([]float64{1, 2}, 2, 1), "u8": {DType: Uint8, Shape: []int{2}, Data: []byte{1, 255}}}
	f.Info = map[string]any{"i": 3, "f32": float32(0.5), "empty": Int64Array(nil), "scalar": &Array{DType: Int64, Data: Int64Array([]int64{9}).Data}}
	f.Calc = map[string]any{"energy": float32(1.5)}
	want := NewFrame([]int64{1, 2}, []float64{1, 2, 3, float64(float32(0.1)), 5, 6})
	want.SetPBC(false, false, false) // nil pbc is written as ASE's default
	want.Arrays = map[string]*Array{"col": Float64Array([]float64{1, 2}), "u8": Int64Array([]int64{1, 255})}
	want.Info = map[string]any{"i": int64(3), "f32": 0.5, "empty": Float64Array(nil), "scalar": int64(9)}
	want.Calc = map[string]any{"energy": 1.5}
	if got := readOne(t, writeXYZ(t, f)); !got.Equal(want) {
		t.Errorf("got\n%vwant\n%v", describeFrame(got), describeFrame(want))
	}
}

func TestXYZWriterOutput(t *testing.T) {
	f := NewFrame([]int64{14, 8}, []float64{0, 0, 0, 1.25, 2, -3.0625})
	f.SetCell([9]float64{5.43, 0, 0, 0, 5.43, 0, 0, 0, 5.43})
	f.SetPBC(true, true, false)
	f.Arrays = map[string]*Array{"tag": Int64Array([]int64{1, 2})}
	f.Info = map[string]any{"config_type": "bulk", "step": int64(3), "T": 300.0, "note": "two words"}
	f.Calc = map[string]any{"energy": -10.5, "forces": Float64Array([]float64{0.1, 0, 0, -0.1, 0, 0}, 2, 3), "stress": Float64Array([]float64{1, 2, 3, 4, 5, 6})}
	want := `2
Lattice="5.43 0.0 0.0 0.0 5.43 0.0 0.0 0.0 5.43" Properties=species:S:1:pos:R:3:tag:I:1:forces:R:3 T=300.0 config_type=bulk note="two words" step=3 energy=-10.5 stress="1.0 6.0 5.0 6.0 2.0 4.0 5.0 4.0 3.0" pbc="T T F"
Si              0.0              0.0              0.0        1              0.1              0.0              0.0
O              1.25              2.0          -3.0625        2             -0.1              0.0              0.0
`
	if got := writeXYZ(t, f); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestXYZWriteErrors(t *testing.T) {
	base := func() *Frame {
		f := NewFrame([]int64{1, 1}, []float64{0, 0, 0, 1, 1, 1})
		f.Arrays, f.Info, f.Calc = map[string]*Array{}, map[string]any{}, map[string]any{}
		return f
	}
	for _, tc := range []struct {
		name  string
		edit  func(*Frame)
		field string
		msg   string
	}{
		{"invalid frame", func(f *Frame) { f.Positions = nil }, "positions", "missing"},
		{"atomic number", func(f *Frame) { f.Numbers = Int64Array([]int64{1, 119}) }, "numbers", "atom 1 has atomic number 119"},
		{"reserved column", func(f *Frame) { f.Arrays["species"] = StringArray([]string{"H", "H"}) }, "arrays.species", "reserves"},
		{"calc column", func(f *Frame) { f.Arrays["forces"] = Float64Array(make([]float64, 6), 2, 3) }, "arrays.forces", "store it in Calc"},
		{"charge column", func(f *Frame) { f.Arrays["charge"] = Float64Array(make([]float64, 2)) }, "arrays.charge", "store it in Calc"},
		{"colon", func(f *Frame) { f.Arrays["a:b"] = Float64Array(make([]float64, 2)) }, "arrays.a:b", "':'"},
		{"no columns", func(f *Frame) { f.Arrays["z"] = Float64Array(nil, 2, 0) }, "arrays.z", "no columns"},
		{"empty string", func(f *Frame) { f.Arrays["s"] = StringArray([]string{"a", ""}) }, "arrays.s", "element 1"},
		{"space in string", func(f *Frame) { f.Arrays["s"] = StringArray([]string{"a b", "c"}) }, "arrays.s", "element 0"},
		{"reserved info", func(f *Frame) { f.Info["Lattice"] = "x" }, "info.Lattice", "reserves"},
		{"calc in info", func(f *Frame) { f.Info["energy"] = 1.0 }, "info.energy", "store it in Calc"},
		{"virial shape", func(f *Frame) { f.Info["virial"] = Float64Array(make([]float64, 9)) }, "info.virial", "shape [3 3]"},
		{"uid", func(f *Frame) { f.Info["uid"] = int64(3) }, "info.uid", "verbatim"},
		{"invalid UTF-8", func(f *Frame) { f.Info["s"] = "\xff" }, "info.s", "UTF-8"},
		{"unknown calc", func(f *Frame) { f.Calc["bandgap"] = 1.0 }, "calc.bandgap", "store it in Info"},
		{"forces shape", func(f *Frame) { f.Calc["forces"] = Float64Array(make([]float64, 3), 1, 3) }, "calc.forces", "per-atom array"},
		{"stress shape", func(f *Frame) { f.Calc["stress"] = Float64Array(make([]float64, 9), 3, 3) }, "calc.stress", "Voigt"},
		{"int32 column", func(f *Frame) { f.Arrays["n"] = Int64Array([]int64{1, math.MaxInt32 + 1}) }, "arrays.n", "element 1 (2147483648) is outside the int32 range"},
		{"uint64", func(f *Frame) {
			f.Info["u"] = &Array{DType: Uint64, Shape: []int{2}, Data: bytes.Repeat([]byte{0xff}, 16)}
		}, "info.u", "overflows"},
	} {
		f := base()
		tc.edit(f)
		var buf bytes.Buffer
		w := NewXYZWriter(&buf)
		err := w.Write(f)
		var e *Error
		switch {
		case err == nil:
			t.Errorf("%s: no error", tc.name)
		case !errors.As(err, &e) || e.Kind != BadInput:
			t.Errorf("%s: error %v, want a BadInput *Error", tc.name, err)
		case !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.msg):
			t.Errorf("%s: error %q, want field %s and %q", tc.name, err, tc.field, tc.msg)
		}
		if w.Flush(); buf.Len() != 0 {
			t.Errorf("%s: a rejected frame wrote %q", tc.name, buf.String())
		}
	}
}

func TestXYZStrings(t *testing.T) {
	// Every string reads back as itself, whatever it looks like.
	for _, s := range []string{
		"", " ", "  x  ", "x", "3", "-1.5", "1e3", "nan", "inf", "T", "F", "True", "false",
		"T F", "1 2", "1,2", "[1]", "{x}", `"`, `'`, `\`, `\"`, `a\`, "=", "a=b", "a = b",
		"_JSON", "_JSON ", "_JSON 3", `_JSON "x"`, "_JSON {}", "tab\there", "nl\nhere", "cr\rhere",
		"\x00", "\x1c", "\u00a0", "\u2028", "é", "日本", "😀", "Properties=species:S:1",
		"uid", "#", "a,b", ",", "0x10", "1_0",
	} {
		f := NewFrame(nil, nil)
		f.SetPBC(false, false, false)
		f.Info = map[string]any{"s": s, "uid": strings.NewReplacer("\n", "", "\r", "", "\x00", "").Replace(s)}
		text := writeXYZ(t, f)
		got := readOne(t, text)
		if !got.Equal(f) {
			t.Errorf("%q: wrote %q, read back %v", s, text, describeFrame(got))
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestXYZStreaming(t *testing.T) {
	// 20k frames through a pipe: the reader returns each frame having
	// consumed no more than that frame plus its read buffer, and its heap
	// does not grow with the stream.
	const nframes = 20000
	frame := func(i int) *Frame {
		n := 5 + i%7
		f := NewFrame(make([]int64, n), make([]float64, 3*n))
		f.SetPBC(false, false, false)
		f.Info = map[string]any{"step": int64(i)}
		f.Calc = map[string]any{"forces": Float64Array(make([]float64, 3*n), n, 3), "energy": float64(i) / 3}
		return f
	}
	ends := make([]int64, nframes) // byte offset of the end of each frame
	var total int64
	for i := range ends {
		total += int64(len(writeXYZ(t, frame(i))))
		ends[i] = total
	}

	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		w := NewXYZWriter(pw)
		for i := range nframes {
			if err := w.Write(frame(i)); err != nil {
				done <- err
				pw.CloseWithError(err)
				return
			}
		}
		err := w.Flush()
		pw.CloseWithError(err)
		done <- err
	}()
	t.Cleanup(func() { pr.Close() })

	cr := &countingReader{r: pr}
	r := NewXYZReader(cr)
	var heap [2]uint64
	for i := 0; ; i++ {
		f, err := r.Next()
		if err == io.EOF {
			if i != nframes {
				t.Fatalf("EOF after %d frames, want %d", i, nframes)
			}
			break
		}
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Info["step"] != int64(i) || f.N() != 5+i%7 {
			t.Fatalf("frame %d: step %v, %d atoms", i, f.Info["step"], f.N())
		}
		if cr.n > ends[i]+xyzBufSize {
			t.Fatalf("after frame %d the reader consumed %d bytes; the frame ends at %d", i, cr.n, ends[i])
		}
		if i == 1000 || i == nframes-1 {
			heap[min(i/1000-1, 1)] = heapInUse()
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if grow := int64(heap[1]) - int64(heap[0]); grow > 4<<20 {
		t.Errorf("heap grew by %d bytes over %d frames (%d bytes of input)", grow, nframes, total)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func TestAtomicNumber(t *testing.T) {
	for z, s := range elementSymbols {
		for _, v := range []string{s, strings.ToUpper(s), strings.ToLower(s)} {
			if got, ok := atomicNumber(v); !ok || got != int64(z) {
				t.Errorf("atomicNumber(%q) = %d, %v; want %d", v, got, ok, z)
			}
		}
	}
	if len(elementSymbols) != 119 || elementSymbols[118] != "Og" {
		t.Fatalf("table has %d symbols ending %s", len(elementSymbols), elementSymbols[len(elementSymbols)-1])
	}
	for _, s := range []string{"", "Q", "Xx", "Hee", "H1", "é"} {
		if _, ok := atomicNumber(s); ok {
			t.Errorf("atomicNumber(%q) succeeded", s)
		}
	}
}
