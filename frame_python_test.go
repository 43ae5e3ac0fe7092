package framesync

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

// debianPython is Debian's interpreter, which has python3-msgpack-numpy;
// the python3 first on PATH may be another one.
const debianPython = "/usr/bin/python3"

// needPython skips the test when Debian's Python with msgpack_numpy is
// missing, unless FRAMESYNC_REQUIRE_PYTHON=1 (set by make test), where a
// missing dependency fails the test.
func needPython(t *testing.T) {
	t.Helper()
	err := exec.Command(debianPython, "-c", "import msgpack, msgpack_numpy, numpy").Run()
	if err == nil {
		return
	}
	if os.Getenv("FRAMESYNC_REQUIRE_PYTHON") == "1" {
		t.Fatalf("%s with msgpack_numpy is required (apt-get install python3-msgpack-numpy): %v", debianPython, err)
	}
	t.Skipf("%s with msgpack_numpy not available: %v", debianPython, err)
}

func runPython(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(debianPython, append([]string{filepath.Join("testdata", "crosscheck.py")}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("crosscheck.py %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// fieldDesc is crosscheck.py's JSON description of one decoded field.
type fieldDesc struct {
	DType  string `json:"dtype,omitempty"`
	Shape  []int  `json:"shape,omitempty"`
	Values []any  `json:"values,omitempty"`
	Type   string `json:"type,omitempty"`
	Value  any    `json:"value,omitempty"`
}

// describe describes a Go frame the way crosscheck.py describes a Python one.
func describe(t *testing.T, f *Frame) map[string]fieldDesc {
	t.Helper()
	out := make(map[string]fieldDesc)
	for _, name := range f.Fields() {
		v, _ := f.Field(name)
		var d fieldDesc
		switch v := v.(type) {
		case *Array:
			d.DType, d.Shape = string(v.DType), append([]int{}, v.Shape...)
			switch k := v.DType.Kind(); {
			case k == 'U' || k == 'S':
				s, err := v.Strings()
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range s {
					d.Values = append(d.Values, x)
				}
			case k == 'b':
				b, _ := v.Bools()
				for _, x := range b {
					d.Values = append(d.Values, x)
				}
			default:
				fs, err := v.Float64s()
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range fs {
					d.Values = append(d.Values, x)
				}
			}
		case bool:
			d.Type, d.Value = "bool", v
		case int64:
			d.Type, d.Value = "int", float64(v)
		case float64:
			d.Type, d.Value = "float", v
		case string:
			d.Type, d.Value = "str", v
		case nil:
			d.Type = "none"
		default:
			t.Fatalf("%s: unexpected %T", name, v)
		}
		out[name] = d
	}
	return out
}

func parseDesc(t *testing.T, b []byte) map[string]fieldDesc {
	t.Helper()
	var m map[string]fieldDesc
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("parse crosscheck output: %v\n%s", err, b)
	}
	return m
}

func TestPythonReadsGoFrames(t *testing.T) {
	needPython(t)
	f := goldenFrame()
	f.Arrays["species"] = StringArray([]string{"O", "H", "H"})
	f.Arrays["tags"] = Int32Array([]int32{0, 1, -1})
	f.Arrays["fixed"] = BoolArray([]bool{true, false, false})
	f.Info["empty"] = nil
	b, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "frame.msgpack")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got := parseDesc(t, runPython(t, "describe", path))
	back, err := DecodeFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	want := parseDesc(t, mustJSON(t, describe(t, back)))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Python decoded\n%v\nwant\n%v", got, want)
	}
}

func TestGoReadsPythonFrames(t *testing.T) {
	needPython(t)
	path := filepath.Join(t.TempDir(), "frame.msgpack")
	want := parseDesc(t, runPython(t, "write", path))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := DecodeFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	got := parseDesc(t, mustJSON(t, describe(t, f)))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Go decoded\n%v\nwant (Python)\n%v", got, want)
	}
	if f.Positions.DType != Float32 || f.Numbers.DType != Int32 {
		t.Fatalf("dtypes not preserved: positions %s numbers %s", f.Positions.DType, f.Numbers.DType)
	}
}

func TestPythonGoldenBytes(t *testing.T) {
	// Python packing the golden frame (keys in sorted order) gives exactly
	// the bytes of our canonical encoding.
	needPython(t)
	got := runPython(t, "golden")
	want, err := goldenFrame().Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Python packed\n%x\nGo encoded\n%x", got, want)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
