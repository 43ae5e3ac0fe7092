package framesync

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Names of the fixed fields and of the field groups of a Frame.
const (
	FieldNumbers   = "numbers"
	FieldPositions = "positions"
	FieldCell      = "cell"
	FieldPBC       = "pbc"
	GroupArrays    = "arrays"
	GroupInfo      = "info"
	GroupCalc      = "calc"
)

// maxNameLen bounds the length of an arrays/info/calc entry name.
const maxNameLen = 128

// Frame is one configuration of atoms, with the field names of ASE and ZnDraw.
//
// Every field is optional in a partial frame (the result of Select); a full
// frame, checked by Validate, has Numbers and Positions. Field names on the
// wire are "numbers", "positions", "cell", "pbc", "arrays.<name>",
// "info.<name>" and "calc.<name>".
//
// Info and Calc values are nil, bool, int64, float64, string or *Array.
// When encoding, Go int, int32, uint32 and float32 values are accepted too
// and written as int64 or float64.
type Frame struct {
	Numbers   *Array            // "numbers": N atomic numbers, integer dtype, shape [N]
	Positions *Array            // "positions": float dtype, shape [N 3]
	Cell      *Array            // "cell": float dtype, shape [3 3]; nil when absent
	PBC       *Array            // "pbc": dtype |b1, shape [3]; nil when absent
	Arrays    map[string]*Array // "arrays.<name>": per-atom arrays, shape [N] or [N k]
	Info      map[string]any    // "info.<name>": per-frame values
	Calc      map[string]any    // "calc.<name>": calculator results
}

// NewFrame returns a frame of len(numbers) atoms with the given atomic
// numbers and positions (3 values per atom, x y z).
func NewFrame(numbers []int64, positions []float64) *Frame {
	return &Frame{
		Numbers:   Int64Array(numbers, len(numbers)),
		Positions: Float64Array(positions, len(positions)/3, 3),
	}
}

// SetCell sets the cell from its three lattice vectors, row by row.
func (f *Frame) SetCell(cell [9]float64) { f.Cell = Float64Array(cell[:], 3, 3) }

// SetPBC sets the periodic boundary flags.
func (f *Frame) SetPBC(a, b, c bool) { f.PBC = BoolArray([]bool{a, b, c}) }

// N returns the number of atoms, taken from the first per-atom field present
// (numbers, positions, then arrays); 0 for a frame without per-atom fields.
func (f *Frame) N() int {
	switch {
	case f.Numbers != nil:
		return f.Numbers.Len()
	case f.Positions != nil:
		return f.Positions.Len()
	}
	for _, name := range sortedKeys(f.Arrays) {
		return f.Arrays[name].Len()
	}
	return 0
}

// Fields returns the names of the fields present, sorted (byte order).
func (f *Frame) Fields() []string {
	var names []string
	f.each(func(name string, _ any) { names = append(names, name) })
	slices.Sort(names)
	return names
}

// each calls fn for every field present, in no particular order.
func (f *Frame) each(fn func(name string, v any)) {
	for name, a := range map[string]*Array{FieldNumbers: f.Numbers, FieldPositions: f.Positions, FieldCell: f.Cell, FieldPBC: f.PBC} {
		if a != nil {
			fn(name, a)
		}
	}
	for k, v := range f.Arrays {
		fn(GroupArrays+"."+k, v)
	}
	for k, v := range f.Info {
		fn(GroupInfo+"."+k, v)
	}
	for k, v := range f.Calc {
		fn(GroupCalc+"."+k, v)
	}
}

// Field returns the value of the named field and whether it is present.
// Array fields return *Array; info and calc fields return their value.
func (f *Frame) Field(name string) (any, bool) {
	switch name {
	case FieldNumbers:
		return f.Numbers, f.Numbers != nil
	case FieldPositions:
		return f.Positions, f.Positions != nil
	case FieldCell:
		return f.Cell, f.Cell != nil
	case FieldPBC:
		return f.PBC, f.PBC != nil
	}
	group, key, ok := strings.Cut(name, ".")
	if !ok {
		return nil, false
	}
	switch group {
	case GroupArrays:
		a, ok := f.Arrays[key]
		return a, ok
	case GroupInfo:
		v, ok := f.Info[key]
		return v, ok
	case GroupCalc:
		v, ok := f.Calc[key]
		return v, ok
	}
	return nil, false
}

// SetField sets the named field. The name must be valid (see CheckFieldName);
// fixed fields and arrays.* take an *Array; info.* and calc.* take any
// allowed value. Values are not otherwise checked here: call Validate.
func (f *Frame) SetField(name string, v any) error {
	if err := CheckFieldName(name); err != nil {
		return err
	}
	group, key, _ := strings.Cut(name, ".")
	if group == GroupInfo || group == GroupCalc {
		m := &f.Info
		if group == GroupCalc {
			m = &f.Calc
		}
		if *m == nil {
			*m = make(map[string]any)
		}
		(*m)[key] = v
		return nil
	}
	a, ok := v.(*Array)
	if !ok || a == nil {
		return &Error{Kind: BadInput, Op: "set field", Field: name, Msg: fmt.Sprintf("want an array, got %T", v)}
	}
	switch name {
	case FieldNumbers:
		f.Numbers = a
	case FieldPositions:
		f.Positions = a
	case FieldCell:
		f.Cell = a
	case FieldPBC:
		f.PBC = a
	default:
		if f.Arrays == nil {
			f.Arrays = make(map[string]*Array)
		}
		f.Arrays[key] = a
	}
	return nil
}

// DeleteField removes the named field; removing an absent field does nothing.
func (f *Frame) DeleteField(name string) {
	switch name {
	case FieldNumbers:
		f.Numbers = nil
	case FieldPositions:
		f.Positions = nil
	case FieldCell:
		f.Cell = nil
	case FieldPBC:
		f.PBC = nil
	}
	group, key, _ := strings.Cut(name, ".")
	switch group {
	case GroupArrays:
		delete(f.Arrays, key)
	case GroupInfo:
		delete(f.Info, key)
	case GroupCalc:
		delete(f.Calc, key)
	}
}

// CheckFieldName reports whether name is a valid field name: one of the fixed
// fields, or "arrays.", "info." or "calc." followed by a name of 1 to 128
// bytes of valid UTF-8 without '.', ',', white space or control characters.
func CheckFieldName(name string) error {
	switch name {
	case FieldNumbers, FieldPositions, FieldCell, FieldPBC:
		return nil
	}
	group, key, ok := strings.Cut(name, ".")
	if !ok || (group != GroupArrays && group != GroupInfo && group != GroupCalc) {
		return &Error{Kind: BadInput, Field: quoteShort(name), Msg: "unknown field (want numbers, positions, cell, pbc, arrays.<name>, info.<name> or calc.<name>)"}
	}
	if err := checkKey(key); err != nil {
		return &Error{Kind: BadInput, Field: quoteShort(name), Msg: err.Error()}
	}
	return nil
}

func checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("empty name")
	}
	if len(key) > maxNameLen {
		return fmt.Errorf("name longer than %d bytes", maxNameLen)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("name is not valid UTF-8")
	}
	for _, r := range key {
		if r == '.' || r == ',' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("name contains %q (no '.', ',', spaces or control characters)", r)
		}
	}
	return nil
}

// ParseFieldList parses a comma-separated field selection such as
// "positions,numbers,arrays.forces". Besides field names it accepts the
// group names "arrays", "info" and "calc", which select every field of the
// group. Empty entries and duplicates are errors.
func ParseFieldList(s string) ([]string, error) {
	if s == "" {
		return nil, &Error{Kind: BadInput, Op: "parse field list", Msg: "empty field list"}
	}
	parts := strings.Split(s, ",")
	seen := make(map[string]bool, len(parts))
	for _, p := range parts {
		if p != GroupArrays && p != GroupInfo && p != GroupCalc {
			if err := CheckFieldName(p); err != nil {
				return nil, &Error{Kind: BadInput, Op: "parse field list", Err: err}
			}
		}
		if seen[p] {
			return nil, &Error{Kind: BadInput, Op: "parse field list", Field: p, Msg: "listed twice"}
		}
		seen[p] = true
	}
	return parts, nil
}

// matchSelection reports whether field is selected by sel, a list of field
// and group names as ParseFieldList returns.
func matchSelection(field string, sel []string) bool {
	for _, s := range sel {
		if s == field || (strings.HasPrefix(field, s) && len(field) > len(s) && field[len(s)] == '.') {
			return true
		}
	}
	return false
}

// Select returns a partial frame holding only the selected fields (names or
// groups, as ParseFieldList returns). Values are shared with f, not copied.
// A selected field name that f lacks is a NotFound error; a group that
// matches nothing selects nothing.
func (f *Frame) Select(sel ...string) (*Frame, error) {
	out := &Frame{}
	f.each(func(name string, v any) {
		if matchSelection(name, sel) {
			_ = out.SetField(name, v)
		}
	})
	for _, s := range sel {
		if s == GroupArrays || s == GroupInfo || s == GroupCalc {
			continue
		}
		if _, ok := f.Field(s); !ok {
			return nil, &Error{Kind: NotFound, Op: "select", Field: s, Msg: "frame has no such field"}
		}
	}
	return out, nil
}

// Validate checks a full frame: Numbers and Positions present, and every
// field well formed (see ValidatePartial).
func (f *Frame) Validate() error { return f.validate(true) }

// ValidatePartial checks the fields present, without requiring any:
// numbers has an integer dtype and shape [N]; positions a float dtype and
// shape [N 3]; cell a float dtype and shape [3 3]; pbc dtype |b1 and shape
// [3]; arrays.* shape [N] or [N k]; N agrees across per-atom fields; data
// lengths match dtype and shape; info and calc values are of allowed types;
// names are valid. NaN and Inf are allowed. Errors are BadInput and name the
// field.
func (f *Frame) ValidatePartial() error { return f.validate(false) }

func (f *Frame) validate(full bool) error {
	bad := func(field, format string, args ...any) error {
		return &Error{Kind: BadInput, Op: "validate frame", Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if full {
		if f.Numbers == nil {
			return bad(FieldNumbers, "missing (a frame needs numbers and positions)")
		}
		if f.Positions == nil {
			return bad(FieldPositions, "missing (a frame needs numbers and positions)")
		}
	}
	n := -1 // atom count fixed by the first per-atom field checked
	perAtom := func(name string, a *Array) error {
		if len(a.Shape) == 0 {
			return bad(name, "want a per-atom array of shape [N] or [N k], got a 0-d array")
		}
		if n < 0 {
			n = a.Shape[0]
		} else if a.Shape[0] != n {
			return bad(name, "has %d rows but the frame has %d atoms", a.Shape[0], n)
		}
		return nil
	}
	checkArr := func(name string, a *Array) error {
		if a == nil {
			return bad(name, "nil array")
		}
		if err := a.check(); err != nil {
			return bad(name, "%s", err.(*Error).Msg)
		}
		return nil
	}
	if a := f.Numbers; a != nil {
		if err := checkArr(FieldNumbers, a); err != nil {
			return err
		}
		if !a.DType.IsInteger() {
			return bad(FieldNumbers, "dtype %s: want an integer dtype such as %s", a.DType, Int64)
		}
		if len(a.Shape) != 1 {
			return bad(FieldNumbers, "shape %v: want [N]", a.Shape)
		}
		if err := perAtom(FieldNumbers, a); err != nil {
			return err
		}
	}
	if a := f.Positions; a != nil {
		if err := checkArr(FieldPositions, a); err != nil {
			return err
		}
		if !a.DType.IsFloat() {
			return bad(FieldPositions, "dtype %s: want %s or %s", a.DType, Float64, Float32)
		}
		if len(a.Shape) != 2 || a.Shape[1] != 3 {
			return bad(FieldPositions, "shape %v: want [N 3]", a.Shape)
		}
		if err := perAtom(FieldPositions, a); err != nil {
			return err
		}
	}
	if a := f.Cell; a != nil {
		if err := checkArr(FieldCell, a); err != nil {
			return err
		}
		if !a.DType.IsFloat() {
			return bad(FieldCell, "dtype %s: want %s or %s", a.DType, Float64, Float32)
		}
		if len(a.Shape) != 2 || a.Shape[0] != 3 || a.Shape[1] != 3 {
			return bad(FieldCell, "shape %v: want [3 3]", a.Shape)
		}
		v, _ := a.Float64s()
		for i, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return bad(FieldCell, "element %d is %v: a cell holds finite numbers", i, x)
			}
		}
	}
	if a := f.PBC; a != nil {
		if err := checkArr(FieldPBC, a); err != nil {
			return err
		}
		if a.DType != Bool {
			return bad(FieldPBC, "dtype %s: want %s", a.DType, Bool)
		}
		if len(a.Shape) != 1 || a.Shape[0] != 3 {
			return bad(FieldPBC, "shape %v: want [3]", a.Shape)
		}
	}
	for _, key := range sortedKeys(f.Arrays) {
		name := GroupArrays + "." + key
		if err := checkKey(key); err != nil {
			return bad(name, "%v", err)
		}
		a := f.Arrays[key]
		if err := checkArr(name, a); err != nil {
			return err
		}
		if len(a.Shape) > 2 {
			return bad(name, "shape %v: want [N] or [N k]", a.Shape)
		}
		if err := perAtom(name, a); err != nil {
			return err
		}
	}
	for _, g := range []struct {
		group string
		m     map[string]any
	}{{GroupInfo, f.Info}, {GroupCalc, f.Calc}} {
		for _, key := range sortedKeys(g.m) {
			name := g.group + "." + key
			if err := checkKey(key); err != nil {
				return bad(name, "%v", err)
			}
			switch v := g.m[key].(type) {
			case nil, bool, int, int32, int64, uint32, float32, float64, string:
			case uint64:
				if v > math.MaxInt64 {
					return bad(name, "value %d overflows int64", v)
				}
			case *Array:
				if err := checkArr(name, v); err != nil {
					return err
				}
			default:
				return bad(name, "unsupported value type %T (want bool, integer, float, string or array)", v)
			}
		}
	}
	return nil
}

// Equal reports whether f and g hold the same fields with the same values
// (arrays compared by dtype, shape and bytes; integer info values by value).
func (f *Frame) Equal(g *Frame) bool {
	a, err1 := f.Encode()
	b, err2 := g.Encode()
	return err1 == nil && err2 == nil && string(a) == string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
