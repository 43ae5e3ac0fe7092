package framesync

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// DType is a numpy array-protocol type string, as msgpack-numpy writes it:
// a byte order ('<' little-endian, '|' not applicable), a kind and an item
// size. Only little-endian data is supported.
type DType string

// The supported numeric dtypes. Unicode strings are "<U<n>" (n UTF-32 code
// units per item) and byte strings "|S<n>"; see UnicodeDType and BytesDType.
const (
	Float64 DType = "<f8"
	Float32 DType = "<f4"
	Int64   DType = "<i8"
	Int32   DType = "<i4"
	Int16   DType = "<i2"
	Int8    DType = "|i1"
	Uint64  DType = "<u8"
	Uint32  DType = "<u4"
	Uint16  DType = "<u2"
	Uint8   DType = "|u1"
	Bool    DType = "|b1"
)

// maxStringItem bounds the item length of string dtypes.
const maxStringItem = 1 << 16

// UnicodeDType returns the dtype of fixed-width unicode strings of n code points ("<U<n>").
func UnicodeDType(n int) DType { return DType("<U" + strconv.Itoa(n)) }

// BytesDType returns the dtype of fixed-width byte strings of n bytes ("|S<n>").
func BytesDType(n int) DType { return DType("|S" + strconv.Itoa(n)) }

// Kind returns the numpy kind character: 'f' float, 'i' signed integer,
// 'u' unsigned integer, 'b' boolean, 'U' unicode string, 'S' byte string;
// 0 for an unsupported dtype.
func (t DType) Kind() byte {
	if _, err := t.ItemSize(); err != nil {
		return 0
	}
	return t[1]
}

// ItemSize returns the size in bytes of one element, or a BadInput error for
// an unsupported dtype (big-endian, structured, object, complex, ...).
func (t DType) ItemSize() (int, error) {
	switch t {
	case Float64, Int64, Uint64:
		return 8, nil
	case Float32, Int32, Uint32:
		return 4, nil
	case Int16, Uint16:
		return 2, nil
	case Int8, Uint8, Bool:
		return 1, nil
	}
	s := string(t)
	if len(s) >= 3 && (s[:2] == "<U" || s[:2] == "|S") {
		n, err := strconv.Atoi(s[2:])
		if err == nil && n > 0 && n <= maxStringItem && strconv.Itoa(n) == s[2:] {
			if s[1] == 'U' {
				return 4 * n, nil
			}
			return n, nil
		}
	}
	msg := fmt.Sprintf("unsupported dtype %s", quoteShort(s))
	if len(s) > 0 && s[0] == '>' {
		msg += " (big-endian data is not supported; convert to little-endian)"
	}
	return 0, &Error{Kind: BadInput, Msg: msg}
}

// IsFloat reports whether t is a floating-point dtype.
func (t DType) IsFloat() bool { return t == Float64 || t == Float32 }

// IsInteger reports whether t is a signed or unsigned integer dtype.
func (t DType) IsInteger() bool { k := t.Kind(); return k == 'i' || k == 'u' }

// maxDims bounds the number of dimensions of an Array.
const maxDims = 32

// Array is an n-dimensional numpy-style array: a dtype, a shape and the raw
// little-endian bytes in C (row-major) order. It maps one to one onto a
// msgpack-numpy map {nd, type, kind, shape, data}.
type Array struct {
	DType DType
	Shape []int
	Data  []byte
}

// Size returns the number of elements (the product of Shape; 1 for a 0-d array).
func (a *Array) Size() int {
	n, _ := elemCount(a.Shape)
	return n
}

// Len returns the length of the first dimension (0 for a 0-d array).
func (a *Array) Len() int {
	if len(a.Shape) == 0 {
		return 0
	}
	return a.Shape[0]
}

// elemCount multiplies shape, failing on negative dimensions or overflow.
func elemCount(shape []int) (int, error) {
	if len(shape) > maxDims {
		return 0, fmt.Errorf("%d dimensions (at most %d)", len(shape), maxDims)
	}
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d in shape %v", d, shape)
		}
		if d != 0 && n > math.MaxInt32/d {
			return 0, fmt.Errorf("shape %v is too large", shape)
		}
		n *= d
	}
	return n, nil
}

// check verifies that the dtype is supported and Data has exactly the length
// the shape and dtype call for.
func (a *Array) check() error {
	if a == nil {
		return &Error{Kind: BadInput, Msg: "missing array"}
	}
	item, err := a.DType.ItemSize()
	if err != nil {
		return err
	}
	n, err := elemCount(a.Shape)
	if err != nil {
		return &Error{Kind: BadInput, Msg: err.Error()}
	}
	if n > math.MaxInt/item || n*item != len(a.Data) {
		return &Error{Kind: BadInput, Msg: fmt.Sprintf("dtype %s shape %v needs %d bytes of data, got %d (truncated or padded data)", a.DType, a.Shape, int64(n)*int64(item), len(a.Data))}
	}
	if a.DType == Bool {
		for i, b := range a.Data {
			if b > 1 {
				return &Error{Kind: BadInput, Msg: fmt.Sprintf("bool element %d has byte value %d (want 0 or 1)", i, b)}
			}
		}
	}
	return nil
}

// Float64Array returns a float64 array of the given shape holding v.
// It panics if len(v) does not match the shape: that is a programming error.
func Float64Array(v []float64, shape ...int) *Array {
	a := newArray(Float64, len(v), shape)
	for i, x := range v {
		binary.LittleEndian.PutUint64(a.Data[8*i:], math.Float64bits(x))
	}
	return a
}

// Float32Array returns a float32 array of the given shape holding v.
func Float32Array(v []float32, shape ...int) *Array {
	a := newArray(Float32, len(v), shape)
	for i, x := range v {
		binary.LittleEndian.PutUint32(a.Data[4*i:], math.Float32bits(x))
	}
	return a
}

// Int64Array returns an int64 array of the given shape holding v.
func Int64Array(v []int64, shape ...int) *Array {
	a := newArray(Int64, len(v), shape)
	for i, x := range v {
		binary.LittleEndian.PutUint64(a.Data[8*i:], uint64(x))
	}
	return a
}

// Int32Array returns an int32 array of the given shape holding v.
func Int32Array(v []int32, shape ...int) *Array {
	a := newArray(Int32, len(v), shape)
	for i, x := range v {
		binary.LittleEndian.PutUint32(a.Data[4*i:], uint32(x))
	}
	return a
}

// BoolArray returns a bool array of the given shape holding v.
func BoolArray(v []bool, shape ...int) *Array {
	a := newArray(Bool, len(v), shape)
	for i, x := range v {
		if x {
			a.Data[i] = 1
		}
	}
	return a
}

// StringArray returns a unicode string array ("<U<n>", n the longest string
// in code points, at least 1) of the given shape holding v.
func StringArray(v []string, shape ...int) *Array {
	width := 1
	for _, s := range v {
		width = max(width, utf8.RuneCountInString(s))
	}
	a := newArray(UnicodeDType(width), len(v), shape)
	for i, s := range v {
		off := 4 * width * i
		for _, r := range s {
			binary.LittleEndian.PutUint32(a.Data[off:], uint32(r))
			off += 4
		}
	}
	return a
}

func newArray(t DType, n int, shape []int) *Array {
	if shape == nil {
		shape = []int{n}
	}
	if c, err := elemCount(shape); err != nil || c != n {
		panic(fmt.Sprintf("framesync: %d values do not fit shape %v", n, shape))
	}
	item, err := t.ItemSize()
	if err != nil {
		panic(err)
	}
	return &Array{DType: t, Shape: append([]int(nil), shape...), Data: make([]byte, n*item)}
}

// Float64s returns the elements converted to float64, for any numeric or bool dtype.
func (a *Array) Float64s() ([]float64, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	n := a.Size()
	out := make([]float64, n)
	d := a.Data
	switch a.DType {
	case Float64:
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:]))
		}
	case Float32:
		for i := range out {
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:])))
		}
	default:
		ints, err := a.Int64s()
		if err != nil {
			return nil, err
		}
		for i, v := range ints {
			out[i] = float64(v)
		}
	}
	return out, nil
}

// Int64s returns the elements converted to int64, for integer and bool
// dtypes. A uint64 value above the int64 range is an error.
func (a *Array) Int64s() ([]int64, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	n := a.Size()
	out := make([]int64, n)
	d := a.Data
	switch a.DType {
	case Int64:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(d[8*i:]))
		}
	case Uint64:
		for i := range out {
			v := binary.LittleEndian.Uint64(d[8*i:])
			if v > math.MaxInt64 {
				return nil, &Error{Kind: BadInput, Msg: fmt.Sprintf("element %d (%d) overflows int64", i, v)}
			}
			out[i] = int64(v)
		}
	case Int32:
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(d[4*i:])))
		}
	case Uint32:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint32(d[4*i:]))
		}
	case Int16:
		for i := range out {
			out[i] = int64(int16(binary.LittleEndian.Uint16(d[2*i:])))
		}
	case Uint16:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint16(d[2*i:]))
		}
	case Int8:
		for i := range out {
			out[i] = int64(int8(d[i]))
		}
	case Uint8, Bool:
		for i := range out {
			out[i] = int64(d[i])
		}
	default:
		return nil, &Error{Kind: BadInput, Msg: fmt.Sprintf("dtype %s is not an integer type", a.DType)}
	}
	return out, nil
}

// Bools returns the elements of a bool array.
func (a *Array) Bools() ([]bool, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	if a.DType != Bool {
		return nil, &Error{Kind: BadInput, Msg: fmt.Sprintf("dtype %s is not %s", a.DType, Bool)}
	}
	out := make([]bool, len(a.Data))
	for i, b := range a.Data {
		out[i] = b != 0
	}
	return out, nil
}

// Strings returns the elements of a unicode ("<U<n>") or byte ("|S<n>")
// string array, without numpy's trailing NUL padding. Invalid code points
// become U+FFFD.
func (a *Array) Strings() ([]string, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	k := a.DType.Kind()
	if k != 'U' && k != 'S' {
		return nil, &Error{Kind: BadInput, Msg: fmt.Sprintf("dtype %s is not a string type", a.DType)}
	}
	item, _ := a.DType.ItemSize()
	out := make([]string, a.Size())
	buf := make([]byte, 0, item)
	for i := range out {
		raw := a.Data[i*item : (i+1)*item]
		buf = buf[:0]
		if k == 'S' {
			end := len(raw)
			for end > 0 && raw[end-1] == 0 {
				end--
			}
			out[i] = string(raw[:end])
			continue
		}
		for j := 0; j < len(raw); j += 4 {
			r := rune(binary.LittleEndian.Uint32(raw[j:]))
			if r == 0 {
				break
			}
			if !utf8.ValidRune(r) {
				r = utf8.RuneError
			}
			buf = utf8.AppendRune(buf, r)
		}
		out[i] = string(buf)
	}
	return out, nil
}

// Equal reports whether a and b have the same dtype, shape and bytes.
func (a *Array) Equal(b *Array) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.DType != b.DType || len(a.Shape) != len(b.Shape) || string(a.Data) != string(b.Data) {
		return false
	}
	for i := range a.Shape {
		if a.Shape[i] != b.Shape[i] {
			return false
		}
	}
	return true
}

// Clone returns a deep copy of a.
func (a *Array) Clone() *Array {
	if a == nil {
		return nil
	}
	return &Array{DType: a.DType, Shape: append([]int(nil), a.Shape...), Data: append([]byte(nil), a.Data...)}
}
