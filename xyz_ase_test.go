package framesync

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// Cross-checks of the XYZ reader and writer against ASE (Debian's
// python3-ase), run with debianPython (frame_python_test.go).

// needASE skips the test when Debian's Python with ASE is missing, unless
// FRAMESYNC_REQUIRE_PYTHON=1, where a missing dependency fails the test.
func needASE(t *testing.T) {
	t.Helper()
	err := exec.Command(debianPython, "-c", "import ase.io, numpy").Run()
	if err == nil {
		return
	}
	if os.Getenv("FRAMESYNC_REQUIRE_PYTHON") == "1" {
		t.Fatalf("%s with ASE is required (apt-get install python3-ase): %v", debianPython, err)
	}
	t.Skipf("%s with ASE not available: %v", debianPython, err)
}

// aseScript describes frames as ASE reads them, in the JSON form that
// describeForASE gives for a Frame. Modes:
//
//	write PATH      write varied frames with ase.io.write, print ASE's reading of PATH
//	describe PATH   print ASE's reading of PATH
//	compare A B     exit 1 with a message unless ASE reads A and B to the same values
//
// Calculator results are listed under "calc" only (ASE 3.22 also leaves
// them in info and arrays). Non-finite floats are the strings "nan", "inf"
// and "-inf".
const aseScript = `
import json, math, sys
import numpy as np
import ase.io
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

def fl(x):
    x = float(x)
    return x if math.isfinite(x) else repr(x)

def desc(v):
    if v is None:
        return {"t": "none"}
    if isinstance(v, (bool, np.bool_)):
        return {"t": "bool", "v": bool(v)}
    if isinstance(v, (int, np.integer)):
        return {"t": "int", "v": int(v)}
    if isinstance(v, (float, np.floating)):
        return {"t": "float", "v": fl(v)}
    if isinstance(v, str):
        return {"t": "str", "v": v}
    a = np.asarray(v)
    if a.ndim == 0:
        return desc(a.item())
    k = {"u": "i", "S": "U", "O": "U"}.get(a.dtype.kind, a.dtype.kind)
    flat = a.ravel().tolist()
    if k == "U" and not all(isinstance(x, str) for x in flat):
        return {"t": "object", "v": repr(v)}
    conv = {"U": str, "b": bool, "i": int, "f": fl}[k]
    return {"t": "array", "k": k, "s": list(a.shape), "v": [conv(x) for x in flat]}

def describe(atoms):
    calc = dict(atoms.calc.results) if atoms.calc is not None else {}
    return {
        "numbers": [int(z) for z in atoms.numbers],
        "positions": desc(atoms.positions),
        "cell": desc(np.array(atoms.cell[:], dtype=float)),
        "pbc": [bool(p) for p in atoms.pbc],
        "info": {k: desc(v) for k, v in atoms.info.items() if k not in calc},
        "arrays": {k: desc(v) for k, v in atoms.arrays.items()
                   if k not in ("numbers", "positions") and k not in calc},
        "calc": {k: desc(v) for k, v in calc.items()},
    }

def read(path):
    return [describe(a) for a in ase.io.read(path, index=":", format="extxyz")]

def images():
    w = Atoms("H2O", positions=[[0.7586, 0, 0.5043], [-0.7586, 0, 0.5043], [0, 0, 0]])
    w.info.update(config_type="water molecule", step=7, temperature=300.5, converged=True,
                  flag=False, big=2**40, neg=-3, tiny=1e-300, huge=-1.5e300, intlike=2.0,
                  kpts=np.array([4, 4, 1]), weights=np.array([0.25, 0.5]),
                  mask=np.array([True, False, True]), grid=np.arange(6.0).reshape(2, 3),
                  names=["a", "b c"], quoted='say "hi"', one=np.array([1.5]))
    w.arrays["tag"] = np.array([1, 0, -2])
    w.arrays["fixed"] = np.array([True, False, True])
    w.arrays["label"] = np.array(["h1", "h2", "o"])
    w.arrays["vel"] = np.array([[0.1, -0.2, 0.3], [1e-5, 2e5, 0], [-1, 1, 0.5]])
    w.set_initial_charges([0.4, 0.4, -0.8])

    si = bulk("Si", "diamond", a=5.43)
    si.pbc = [True, True, False]
    si.calc = SinglePointCalculator(si, energy=-10.5,
                                    forces=[[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]],
                                    stress=[1.0, 2.0, 3.0, 0.4, 0.5, 0.6])
    si.info["virial"] = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])

    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.rattle(0.01, seed=1)
    cu.calc = SinglePointCalculator(cu, energy=-14.0, free_energy=-14.1, magmom=0.5,
                                    dipole=[0.0, 0.0, 0.1], energies=[-3.5, -3.5, -3.4, -3.6],
                                    magmoms=[0.1, 0.2, 0.1, 0.1])

    n = Atoms("N", positions=[[1, 2, 3]], cell=[10, 11, 12], pbc=[False, True, False])
    empty = Atoms(cell=[3, 3, 3], pbc=True)
    heavy = Atoms(numbers=[0, 118, 92], positions=np.arange(9.0).reshape(3, 3) / 7)
    return [w, si, cu, n, empty, heavy]

mode = sys.argv[1]
if mode == "write":
    ase.io.write(sys.argv[2], images(), format="extxyz")
    print(json.dumps(read(sys.argv[2])))
elif mode == "describe":
    print(json.dumps(read(sys.argv[2])))
elif mode == "compare":
    a, b = read(sys.argv[2]), read(sys.argv[3])
    if len(a) != len(b):
        sys.exit("ASE reads %d frames from %s and %d from %s" % (len(a), sys.argv[2], len(b), sys.argv[3]))
    for i, (x, y) in enumerate(zip(a, b)):
        for key in x:
            if x[key] != y[key]:
                sys.exit("frame %d %s: ASE reads\n%s\nfrom %s, but\n%s\nfrom %s" % (
                    i, key, json.dumps(x[key]), sys.argv[2], json.dumps(y[key]), sys.argv[3]))
else:
    sys.exit("unknown mode " + mode)
`

func runASE(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(debianPython, append([]string{"-c", aseScript}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ASE %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// describeForASE describes f the way aseScript describes ASE's Atoms: a
// missing cell is zeros, a missing pbc is F F F.
func describeForASE(t *testing.T, f *Frame) map[string]any {
	t.Helper()
	numbers, err := f.Numbers.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	cell := f.Cell
	if cell == nil {
		cell = Float64Array(make([]float64, 9), 3, 3)
	}
	pbc := []bool{false, false, false}
	if f.PBC != nil {
		pbc, _ = f.PBC.Bools()
	}
	group := func(m map[string]any) map[string]any {
		out := make(map[string]any)
		for k, v := range m {
			out[k] = describeASEValue(t, v)
		}
		return out
	}
	arrays := make(map[string]any)
	for k, v := range f.Arrays {
		arrays[k] = describeASEValue(t, v)
	}
	return map[string]any{
		"numbers":   numbers,
		"positions": describeASEValue(t, f.Positions),
		"cell":      describeASEValue(t, cell),
		"pbc":       pbc,
		"info":      group(f.Info),
		"arrays":    arrays,
		"calc":      group(f.Calc),
	}
}

func aseFloat(x float64) any {
	switch {
	case math.IsNaN(x):
		return "nan"
	case math.IsInf(x, 1):
		return "inf"
	case math.IsInf(x, -1):
		return "-inf"
	}
	return x
}

func describeASEValue(t *testing.T, v any) map[string]any {
	t.Helper()
	switch v := v.(type) {
	case nil:
		return map[string]any{"t": "none"}
	case bool:
		return map[string]any{"t": "bool", "v": v}
	case int64:
		return map[string]any{"t": "int", "v": v}
	case float64:
		return map[string]any{"t": "float", "v": aseFloat(v)}
	case string:
		return map[string]any{"t": "str", "v": v}
	case *Array:
		var vals []any
		kind := string(v.DType.Kind())
		switch kind {
		case "U", "S":
			kind = "U"
			s, _ := v.Strings()
			for _, x := range s {
				vals = append(vals, x)
			}
		case "b":
			b, _ := v.Bools()
			for _, x := range b {
				vals = append(vals, x)
			}
		case "f":
			fs, _ := v.Float64s()
			for _, x := range fs {
				vals = append(vals, aseFloat(x))
			}
		default:
			kind = "i"
			is, err := v.Int64s()
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range is {
				vals = append(vals, x)
			}
		}
		if len(v.Shape) == 0 {
			return describeASEValue(t, vals[0])
		}
		if vals == nil {
			vals = []any{}
		}
		return map[string]any{"t": "array", "k": kind, "s": v.Shape, "v": vals}
	}
	t.Fatalf("unexpected value %T", v)
	return nil
}

// normalizeJSON round-trips v through JSON, so Go and Python descriptions
// compare with reflect.DeepEqual.
func normalizeJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// compareWithASE checks that Go's frames match ASE's JSON description.
func compareWithASE(t *testing.T, frames []*Frame, aseJSON []byte) {
	t.Helper()
	var want []any
	if err := json.Unmarshal(aseJSON, &want); err != nil {
		t.Fatalf("parse ASE output: %v\n%s", err, aseJSON)
	}
	if len(frames) != len(want) {
		t.Fatalf("framesync has %d frames, ASE %d", len(frames), len(want))
	}
	for i, f := range frames {
		got := normalizeJSON(t, describeForASE(t, f)).(map[string]any)
		w := want[i].(map[string]any)
		for _, key := range sortedKeys(w) {
			if !reflect.DeepEqual(got[key], w[key]) {
				t.Errorf("frame %d %s:\nframesync %s\nASE       %s", i, key, diffJSON(t, got[key], w[key]), diffJSON(t, w[key], got[key]))
			}
		}
	}
}

// diffJSON renders a, or only the entries of map a that differ from b.
func diffJSON(t *testing.T, a, b any) string {
	am, ok1 := a.(map[string]any)
	bm, ok2 := b.(map[string]any)
	if ok1 && ok2 && am["t"] == nil {
		var keys []string
		for k := range am {
			if !reflect.DeepEqual(am[k], bm[k]) {
				keys = append(keys, k)
			}
		}
		for k := range bm {
			if _, ok := am[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%s", k, mustJSON(t, am[k])))
		}
		return strings.Join(parts, " ")
	}
	return string(mustJSON(t, a))
}

func TestXYZReadsASE(t *testing.T) {
	// ASE writes varied frames; framesync reads them to what ASE reads;
	// framesync writes them again and ASE reads that to the same values.
	needASE(t)
	dir := t.TempDir()
	aseFile := filepath.Join(dir, "ase.extxyz")
	aseDesc := runASE(t, "write", aseFile)
	in, err := os.Open(aseFile)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	frames, err := readAllXYZ(in)
	if err != nil {
		t.Fatal(err)
	}
	compareWithASE(t, frames, aseDesc)

	goFile := filepath.Join(dir, "go.extxyz")
	if err := os.WriteFile(goFile, []byte(writeXYZ(t, frames...)), 0o644); err != nil {
		t.Fatal(err)
	}
	runASE(t, "compare", aseFile, goFile)
}

func TestASEReadsXYZ(t *testing.T) {
	// framesync writes frames built in Go; ASE reads them to the same values.
	needASE(t)
	rich := richFrame()
	// ASE 3.22 reads a charge column as initial charges, later versions as
	// calculator charges: leave calculator charges out here.
	delete(rich.Calc, "charges")
	rich.Arrays["initial_charges"] = Float64Array([]float64{0.5, -0.5, 0, 1})
	noPBC := NewFrame([]int64{6, 1}, []float64{0, 0, 0, 0, 0, 1.09})
	noPBC.SetCell([9]float64{5, 0, 0, 0, 5, 0, 0, 0, 5}) // pbc nil: written as F F F
	empty := NewFrame(nil, nil)
	empty.Info = map[string]any{"note": "no atoms"}
	frames := []*Frame{rich, noPBC, empty, richFrame()}
	delete(frames[3].Calc, "charges")

	path := filepath.Join(t.TempDir(), "go.extxyz")
	if err := os.WriteFile(path, []byte(writeXYZ(t, frames...)), 0o644); err != nil {
		t.Fatal(err)
	}
	compareWithASE(t, frames, runASE(t, "describe", path))
}
