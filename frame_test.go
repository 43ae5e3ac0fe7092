package framesync

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// goldenFrame is the small frame of testdata/frame-small.msgpack; the Python
// cross-check builds the same frame in crosscheck.py (golden_frame).
func goldenFrame() *Frame {
	f := NewFrame([]int64{8, 1, 1}, []float64{0, 0, 0.119, 0, 0.763, -0.477, 0, -0.763, -0.477})
	f.SetCell([9]float64{10, 0, 0, 0, 10, 0, 0, 0, 10})
	f.SetPBC(true, true, false)
	f.Arrays = map[string]*Array{"forces": Float64Array([]float64{0, 0, -0.5, 0.25, 0, 0.25, -0.25, 0, 0.25}, 3, 3)}
	f.Info = map[string]any{"converged": true, "name": "water", "step": 7}
	f.Calc = map[string]any{"energy": -14.25, "stress": Float64Array([]float64{0.5, 0.5, 0.5, 0, 0, 0})}
	return f
}

func TestGoldenFrame(t *testing.T) {
	got, err := goldenFrame().Encode()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "frame-small.msgpack")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding changed:\n got %x\nwant %x\n(run go test -run TestGoldenFrame -update if the format change is intended, and update docs/frame-format.md)", got, want)
	}
	f, err := DecodeFrame(want)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	if !f.Equal(goldenFrame()) {
		t.Fatal("decoded golden frame differs from the original")
	}
	if n := f.N(); n != 3 {
		t.Fatalf("N = %d, want 3", n)
	}
	if v, _ := f.Field("info.step"); v != int64(7) {
		t.Fatalf("info.step = %#v, want int64(7)", v)
	}
}

func TestEncodeCanonical(t *testing.T) {
	// Map iteration order is random: encode many times, expect one result.
	f := goldenFrame()
	f.Info["a"], f.Info["z"], f.Info["m"] = 1.5, "x", nil
	first, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		b, err := f.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, first) {
			t.Fatal("two encodings of one frame differ")
		}
	}
	// Go int, int32 and int64 encode the same; so do float32 and float64 of the same value.
	g := goldenFrame()
	g.Info["step"] = int64(7)
	if !g.Equal(goldenFrame()) {
		t.Fatal("int and int64 info values encode differently")
	}
	// Decoding and re-encoding is the identity on canonical bytes.
	d, err := DecodeFrame(first)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := d.Encode()
	if !bytes.Equal(again, first) {
		t.Fatal("decode+encode changed canonical bytes")
	}
}

func TestDecodeNonCanonicalInput(t *testing.T) {
	// Unsorted keys, str keys in the numpy map, a numpy scalar: decodes, and
	// re-encodes canonically.
	in := []byte{0x82,
		0xa9, 'p', 'o', 's', 'i', 't', 'i', 'o', 'n', 's',
		0x84, 0xa2, 'n', 'd', 0xc3, 0xa4, 't', 'y', 'p', 'e', 0xa3, '<', 'f', '8',
		0xa5, 's', 'h', 'a', 'p', 'e', 0x92, 0x01, 0x03,
		0xa4, 'd', 'a', 't', 'a', 0xc4, 24,
		0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0x08, 0x40,
		0xa9, 'i', 'n', 'f', 'o', '.', 's', 't', 'e', 'p',
		0x83, 0xc4, 2, 'n', 'd', 0xc2, 0xc4, 4, 't', 'y', 'p', 'e', 0xa3, '<', 'i', '8',
		0xc4, 4, 'd', 'a', 't', 'a', 0xc4, 8, 9, 0, 0, 0, 0, 0, 0, 0,
	}
	f, err := DecodeFrame(in)
	if err != nil {
		t.Fatal(err)
	}
	if v := f.Info["step"]; v != int64(9) {
		t.Fatalf("numpy scalar decoded as %#v, want int64(9)", v)
	}
	p, err := f.Positions.Float64s()
	if err != nil || len(p) != 3 || p[0] != 1 || p[1] != 2 || p[2] != 3 {
		t.Fatalf("positions = %v, %v", p, err)
	}
	if err := f.Validate(); err == nil || !strings.Contains(err.Error(), "numbers") {
		t.Fatalf("Validate of a frame without numbers: %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(f *Frame)
		field  string // expected in the error; "" means valid
		msg    string
	}{
		{"valid", func(f *Frame) {}, "", ""},
		{"nan allowed", func(f *Frame) {
			f.Positions = Float64Array([]float64{math.NaN(), 0, 0, 0, 0, 0, 0, 0, math.Inf(1)}, 3, 3)
		}, "", ""},
		{"missing numbers", func(f *Frame) { f.Numbers = nil }, "numbers", "missing"},
		{"missing positions", func(f *Frame) { f.Positions = nil }, "positions", "missing"},
		{"positions shape", func(f *Frame) { f.Positions = Float64Array(make([]float64, 9), 9) }, "positions", "want [N 3]"},
		{"positions dtype", func(f *Frame) { f.Positions = Int64Array(make([]int64, 9), 3, 3) }, "positions", "dtype <i8"},
		{"numbers dtype", func(f *Frame) { f.Numbers = Float64Array([]float64{1, 2, 3}) }, "numbers", "integer dtype"},
		{"N mismatch", func(f *Frame) { f.Numbers = Int64Array([]int64{1, 1}) }, "positions", "has 3 rows but the frame has 2 atoms"},
		{"array N mismatch", func(f *Frame) { f.Arrays["forces"] = Float64Array(make([]float64, 6), 2, 3) }, "arrays.forces", "2 rows"},
		{"array 3-d", func(f *Frame) { f.Arrays["forces"] = Float64Array(make([]float64, 9), 3, 3, 1) }, "arrays.forces", "want [N] or [N k]"},
		{"cell shape", func(f *Frame) { f.Cell = Float64Array(make([]float64, 3)) }, "cell", "want [3 3]"},
		{"pbc dtype", func(f *Frame) { f.PBC = Int64Array([]int64{1, 1, 1}) }, "pbc", "want |b1"},
		{"pbc byte", func(f *Frame) { f.PBC = &Array{DType: Bool, Shape: []int{3}, Data: []byte{1, 2, 0}} }, "pbc", "byte value 2"},
		{"truncated data", func(f *Frame) { f.Positions.Data = f.Positions.Data[:70] }, "positions", "truncated"},
		{"big endian", func(f *Frame) { f.Positions.DType = ">f8" }, "positions", "big-endian"},
		{"bad dtype", func(f *Frame) { f.Arrays["x"] = &Array{DType: "<c16", Shape: []int{3}, Data: make([]byte, 48)} }, "arrays.x", "unsupported dtype"},
		{"negative dim", func(f *Frame) { f.Arrays["x"] = &Array{DType: Uint8, Shape: []int{3, -1}} }, "arrays.x", "negative dimension"},
		{"bad name", func(f *Frame) { f.Info["a.b"] = 1 }, "info.a.b", "no '.'"},
		{"comma name", func(f *Frame) { f.Calc["a,b"] = 1 }, "calc.a,b", "','"},
		{"empty name", func(f *Frame) { f.Arrays[""] = f.Numbers }, "arrays.", "empty name"},
		{"bad info type", func(f *Frame) { f.Info["list"] = []int{1} }, "info.list", "unsupported value type []int"},
		{"nil array", func(f *Frame) { f.Arrays["x"] = nil }, "arrays.x", "nil array"},
		{"string array ok", func(f *Frame) { f.Arrays["species"] = StringArray([]string{"O", "H", "H"}) }, "", ""},
		{"uint64 overflow", func(f *Frame) { f.Info["big"] = uint64(math.MaxUint64) }, "info.big", "overflows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := goldenFrame()
			tt.mutate(f)
			err := f.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if _, err := f.Encode(); err != nil {
					t.Fatalf("valid frame does not encode: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			var fe *Error
			if !errors.As(err, &fe) || fe.Kind != BadInput || fe.Field != tt.field || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q (field %q), want BadInput naming field %q and containing %q", err, fe.Field, tt.field, tt.msg)
			}
			if !errors.Is(err, BadInput) {
				t.Fatal("errors.Is(err, BadInput) is false")
			}
			if tt.msg != "missing" {
				if _, err := f.Encode(); err == nil {
					t.Fatal("invalid frame encodes")
				}
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	good, _ := goldenFrame().Encode()
	arr := func(b ...byte) []byte { // frame {"positions": <b>}
		return append([]byte{0x81, 0xa9, 'p', 'o', 's', 'i', 't', 'i', 'o', 'n', 's'}, b...)
	}
	tests := []struct {
		name string
		in   []byte
		msg  string
	}{
		{"empty", nil, "truncated"},
		{"not a map", []byte{0x93, 1, 2, 3}, "want a map, got array"},
		{"truncated", good[:len(good)/2], "truncated"},
		{"trailing", append(append([]byte{}, good...), 0xc0), "trailing bytes"},
		{"huge map", []byte{0xdf, 0x7f, 0xff, 0xff, 0xff}, "does not fit"},
		{"huge bin", arr(0x85, 0xc4, 2, 'n', 'd', 0xc3, 0xc4, 4, 'd', 'a', 't', 'a', 0xc6, 0xff, 0xff, 0xff, 0xf0), "exceeds"},
		{"unknown field", []byte{0x81, 0xa3, 'f', 'o', 'o', 0xc0}, "unknown field"},
		{"positions as list", arr(0x93, 1, 2, 3), "want a msgpack-numpy array map, got array"},
		{"duplicate", []byte{0x82, 0xa6, 'i', 'n', 'f', 'o', '.', 'x', 0x01, 0xa6, 'i', 'n', 'f', 'o', '.', 'x', 0x02}, "twice"},
		{"not nd map", arr(0x81, 0xa1, 'x', 0x01), "unexpected key"},
		{"missing shape", arr(0x83, 0xa2, 'n', 'd', 0xc3, 0xa4, 't', 'y', 'p', 'e', 0xa3, '<', 'f', '8', 0xa4, 'd', 'a', 't', 'a', 0xc4, 0), "missing shape"},
		{"object dtype", arr(0x82, 0xa2, 'n', 'd', 0xc3, 0xa4, 'k', 'i', 'n', 'd', 0xa1, 'O'), "object arrays"},
		{"ext value", []byte{0x81, 0xa8, 'i', 'n', 'f', 'o', '.', 'x', 'y', 'z', 0xd4, 1, 1}, "extension"},
		{"uint64 overflow", []byte{0x81, 0xa6, 'i', 'n', 'f', 'o', '.', 'x', 0xcf, 0xff, 0, 0, 0, 0, 0, 0, 0}, "overflows"},
		{"invalid code", []byte{0xc1}, "invalid code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeFrame(tt.in)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, BadInput) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q, want BadInput containing %q", err, tt.msg)
			}
		})
	}
}

func TestDecodeAllocBound(t *testing.T) {
	// Small inputs declaring huge sizes must not allocate in proportion to
	// the declared size.
	inputs := [][]byte{
		{0x81, 0xa9, 'p', 'o', 's', 'i', 't', 'i', 'o', 'n', 's', 0x81, 0xa4, 'd', 'a', 't', 'a', 0xc6, 0x7f, 0xff, 0xff, 0xff},
		{0xdf, 0x7f, 0xff, 0xff, 0xff, 0xa1, 'x'},
		{0x81, 0xa6, 'i', 'n', 'f', 'o', '.', 'x', 0x81, 0xa5, 's', 'h', 'a', 'p', 'e', 0xdd, 0x7f, 0xff, 0xff, 0xff},
		{0x81, 0xa6, 'i', 'n', 'f', 'o', '.', 'x', 0xdb, 0x7f, 0xff, 0xff, 0xff},
	}
	for i, in := range inputs {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const runs = 100
		for range runs {
			if _, err := DecodeFrame(in); err == nil {
				t.Fatalf("input %d decoded without error", i)
			}
		}
		runtime.ReadMemStats(&after)
		if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 64<<10 {
			t.Errorf("input %d (%d bytes) allocates %d bytes per decode", i, len(in), per)
		}
	}
}

func TestSelect(t *testing.T) {
	f := goldenFrame()
	sel, err := ParseFieldList("positions,info,arrays.forces")
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Select(sel...)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"arrays.forces", "info.converged", "info.name", "info.step", "positions"}
	if got := p.Fields(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("selected %v, want %v", got, want)
	}
	if err := p.ValidatePartial(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Select("arrays.velocities"); !errors.Is(err, NotFound) {
		t.Fatalf("selecting a missing field: %v, want NotFound", err)
	}
	for _, bad := range []string{"", "positions,", "positions,positions", "foo", "arrays.", "info.a b", "arrays.x.y"} {
		if _, err := ParseFieldList(bad); !errors.Is(err, BadInput) {
			t.Errorf("ParseFieldList(%q) = %v, want BadInput", bad, err)
		}
	}
	// Selection by manifest agrees with selection by frame.
	m, blobs, err := f.Split()
	if err != nil {
		t.Fatal(err)
	}
	ms, err := m.Select(sel...)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := JoinEncoded(ms, func(h Hash) ([]byte, error) { return blobs[h], nil })
	if err != nil {
		t.Fatal(err)
	}
	pe, _ := p.Encode()
	if !bytes.Equal(enc, pe) {
		t.Fatal("JoinEncoded of a selected manifest differs from Encode of the selected frame")
	}
}

func TestSplitJoin(t *testing.T) {
	f := goldenFrame()
	f.Arrays["same"] = f.Cell.Clone() // same content as cell: one blob
	m, blobs, err := f.Split()
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != len(f.Fields()) {
		t.Fatalf("manifest has %d fields, frame %d", len(m), len(f.Fields()))
	}
	if len(blobs) != len(m)-1 {
		t.Fatalf("%d blobs for %d fields, want identical fields to share a blob", len(blobs), len(m))
	}
	for h, b := range blobs {
		if Sum(b) != h {
			t.Fatalf("blob stored under the wrong hash")
		}
	}
	get := func(h Hash) ([]byte, error) {
		b, ok := blobs[h]
		if !ok {
			return nil, NotFound
		}
		return b, nil
	}
	g, err := JoinFrame(m, get)
	if err != nil {
		t.Fatal(err)
	}
	if !g.Equal(f) {
		t.Fatal("joined frame differs")
	}
	enc, err := JoinEncoded(m, get)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := f.Encode()
	if !bytes.Equal(enc, want) {
		t.Fatal("JoinEncoded differs from Encode")
	}
	// Manifest round trip and hash.
	mb := m.Encode()
	m2, err := DecodeManifest(mb)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Hash() != m.Hash() || len(m2) != len(m) {
		t.Fatal("manifest round trip changed it")
	}
	// A delta: only positions changed.
	f2 := goldenFrame()
	f2.Arrays["same"] = f.Cell.Clone()
	f2.Positions = Float64Array(make([]float64, 9), 3, 3)
	m3, _, _ := f2.Split()
	if got := m3.Changed(m); len(got) != 1 || got[0] != "positions" {
		t.Fatalf("Changed = %v, want [positions]", got)
	}
	if m3.Hash() == m.Hash() {
		t.Fatal("different frames, same hash")
	}
	// A missing blob is reported with the field.
	delete(blobs, m["positions"])
	if _, err := JoinFrame(m, get); !errors.Is(err, NotFound) || !strings.Contains(err.Error(), "positions") {
		t.Fatalf("join with a missing blob: %v", err)
	}
	// Bad manifests.
	for _, bad := range [][]byte{{0x81, 0xa3, 'f', 'o', 'o', 0xa1, 'x'}, {0x81, 0xa9, 'p', 'o', 's', 'i', 't', 'i', 'o', 'n', 's', 0xa1, 'x'}, append(mb, 0)} {
		if _, err := DecodeManifest(bad); !errors.Is(err, BadInput) {
			t.Errorf("DecodeManifest(%x) = %v, want BadInput", bad, err)
		}
	}
}

func TestArrayConversions(t *testing.T) {
	s := StringArray([]string{"Ca", "é", ""})
	if s.DType != "<U2" {
		t.Fatalf("dtype %s, want <U2", s.DType)
	}
	got, err := s.Strings()
	if err != nil || strings.Join(got, "|") != "Ca|é|" {
		t.Fatalf("Strings = %q, %v", got, err)
	}
	b := &Array{DType: BytesDType(3), Shape: []int{2}, Data: []byte("ab\x00xyz")}
	if got, _ := b.Strings(); strings.Join(got, "|") != "ab|xyz" {
		t.Fatalf("byte strings = %q", got)
	}
	i32 := Int32Array([]int32{-1, 2})
	if v, _ := i32.Int64s(); v[0] != -1 || v[1] != 2 {
		t.Fatalf("Int64s = %v", v)
	}
	if v, _ := i32.Float64s(); v[0] != -1 {
		t.Fatalf("Float64s = %v", v)
	}
	u := &Array{DType: Uint64, Shape: []int{1}, Data: []byte{0, 0, 0, 0, 0, 0, 0, 0x80}}
	if _, err := u.Int64s(); err == nil {
		t.Fatal("uint64 overflow not reported")
	}
	if _, err := Float64Array([]float64{1}).Strings(); err == nil {
		t.Fatal("Strings of a float array")
	}
	for _, dt := range []DType{"<U0", "<U01", "<U-1", "|S", ">i8", "<f16", "<U99999999"} {
		if _, err := dt.ItemSize(); err == nil {
			t.Errorf("dtype %q accepted", dt)
		}
	}
}
