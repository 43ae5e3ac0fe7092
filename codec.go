package framesync

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Frame encoding (docs/frame-format.md has the full description):
//
// A frame is one msgpack map from field name (str) to value, keys sorted by
// bytes. An array value is a msgpack-numpy map with bin keys, in this order:
//
//	{b"nd": true, b"type": "<f8", b"kind": b"", b"shape": [N, 3], b"data": <raw little-endian bytes>}
//
// Info and calc values are msgpack nil, bool, int (smallest encoding),
// float64 or str, or an array map. The encoding of a field's value alone is
// the field's blob; a frame's encoding is the map header followed by each key
// and its blob, so frames join from blobs by concatenation (JoinEncoded).

// ndKeys are the keys of an array map in canonical order.
var ndKeys = [...]string{"nd", "type", "kind", "shape", "data"}

// Encode returns the canonical msgpack encoding of f: the same frame always
// encodes to the same bytes. It checks f with ValidatePartial first.
func (f *Frame) Encode() ([]byte, error) {
	if err := f.ValidatePartial(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(f.encodedSizeHint())
	enc := newEncoder(&buf)
	names := f.Fields()
	if err := enc.EncodeMapLen(len(names)); err != nil {
		return nil, err
	}
	for _, name := range names {
		v, _ := f.Field(name)
		if err := enc.EncodeString(name); err != nil {
			return nil, err
		}
		if err := encodeValue(enc, v); err != nil {
			return nil, &Error{Kind: BadInput, Op: "encode frame", Field: name, Err: err}
		}
	}
	return buf.Bytes(), nil
}

func (f *Frame) encodedSizeHint() int {
	n := 16
	f.each(func(name string, v any) {
		n += len(name) + 64
		if a, ok := v.(*Array); ok && a != nil {
			n += len(a.Data)
		}
	})
	return n
}

func newEncoder(w io.Writer) *msgpack.Encoder {
	enc := msgpack.NewEncoder(w)
	enc.UseCompactInts(true)
	return enc
}

// EncodeValue returns the canonical msgpack encoding of one field value
// (an *Array, or an info/calc value): the bytes of the field's blob.
func EncodeValue(v any) ([]byte, error) {
	var buf bytes.Buffer
	if a, ok := v.(*Array); ok && a != nil {
		buf.Grow(len(a.Data) + 64)
	}
	if err := encodeValue(newEncoder(&buf), v); err != nil {
		return nil, &Error{Kind: BadInput, Op: "encode value", Err: err}
	}
	return buf.Bytes(), nil
}

func encodeValue(enc *msgpack.Encoder, v any) error {
	switch v := v.(type) {
	case nil:
		return enc.EncodeNil()
	case bool:
		return enc.EncodeBool(v)
	case int:
		return enc.EncodeInt(int64(v))
	case int32:
		return enc.EncodeInt(int64(v))
	case int64:
		return enc.EncodeInt(v)
	case uint32:
		return enc.EncodeInt(int64(v))
	case uint64:
		if v > math.MaxInt64 {
			return fmt.Errorf("value %d overflows int64", v)
		}
		return enc.EncodeInt(int64(v))
	case float32:
		return enc.EncodeFloat64(float64(v))
	case float64:
		return enc.EncodeFloat64(v)
	case string:
		return enc.EncodeString(v)
	case *Array:
		if err := v.check(); err != nil {
			return err
		}
		return encodeArray(enc, v)
	}
	return fmt.Errorf("unsupported value type %T", v)
}

func encodeArray(enc *msgpack.Encoder, a *Array) error {
	enc.EncodeMapLen(len(ndKeys))
	enc.EncodeBytes([]byte(ndKeys[0]))
	enc.EncodeBool(true)
	enc.EncodeBytes([]byte(ndKeys[1]))
	enc.EncodeString(string(a.DType))
	enc.EncodeBytes([]byte(ndKeys[2]))
	enc.EncodeBytes([]byte{})
	enc.EncodeBytes([]byte(ndKeys[3]))
	enc.EncodeArrayLen(len(a.Shape))
	for _, d := range a.Shape {
		enc.EncodeInt(int64(d))
	}
	enc.EncodeBytes([]byte(ndKeys[4]))
	return enc.EncodeBytes(a.Data)
}

// DecodeFrame decodes a frame encoded as a msgpack map of field name to
// value, as Encode writes it or as Python writes it with
// msgpack.packb(frame, default=msgpack_numpy.encode). Keys may be str or bin
// and in any order; numpy scalars ({nd: false, ...}) become int64, float64
// or bool. The result is checked with ValidatePartial (call Validate to
// require numbers and positions). Malformed input gives a BadInput error
// naming the field; the decoder never allocates much more than len(b).
func DecodeFrame(b []byte) (*Frame, error) {
	r := bytes.NewReader(b)
	d := msgpack.NewDecoder(r)
	n, err := readMapLen(d, r)
	if err != nil {
		return nil, decodeErr("", err)
	}
	f := &Frame{}
	for range n {
		name, err := readKey(d, r)
		if err != nil {
			return nil, decodeErr("", fmt.Errorf("field name: %w", err))
		}
		if err := CheckFieldName(name); err != nil {
			return nil, &Error{Kind: BadInput, Op: "decode frame", Err: err}
		}
		if _, dup := f.Field(name); dup {
			return nil, decodeErr(name, errors.New("field appears twice"))
		}
		v, err := decodeFieldValue(name, d, r)
		if err != nil {
			return nil, decodeErr(name, err)
		}
		_ = f.SetField(name, v)
	}
	if r.Len() != 0 {
		return nil, decodeErr("", fmt.Errorf("%d trailing bytes after the frame", r.Len()))
	}
	if err := f.ValidatePartial(); err != nil {
		return nil, err
	}
	return f, nil
}

// DecodeValue decodes the blob of the named field: an *Array for numbers,
// positions, cell, pbc and arrays.*, any allowed value for info.* and calc.*.
func DecodeValue(name string, b []byte) (any, error) {
	if err := CheckFieldName(name); err != nil {
		return nil, err
	}
	r := bytes.NewReader(b)
	d := msgpack.NewDecoder(r)
	v, err := decodeFieldValue(name, d, r)
	if err == nil && r.Len() != 0 {
		err = fmt.Errorf("%d trailing bytes after the value", r.Len())
	}
	if err != nil {
		return nil, &Error{Kind: BadInput, Op: "decode value", Field: name, Err: err}
	}
	return v, nil
}

func decodeErr(field string, err error) error {
	var fe *Error
	if errors.As(err, &fe) && fe.Kind == BadInput && fe.Op == "" {
		return &Error{Kind: BadInput, Op: "decode frame", Field: field, Msg: fe.Msg, Err: fe.Err}
	}
	return &Error{Kind: BadInput, Op: "decode frame", Field: field, Err: err}
}

func decodeFieldValue(name string, d *msgpack.Decoder, r *bytes.Reader) (any, error) {
	isValue := len(name) > 5 && (name[:5] == GroupInfo+"." || name[:5] == GroupCalc+".")
	if !isValue {
		c, err := d.PeekCode()
		if err != nil {
			return nil, truncated(err)
		}
		if !isMapCode(c) {
			return nil, fmt.Errorf("want a msgpack-numpy array map, got %s", codeName(c))
		}
	}
	return decodeAny(d, r)
}

// decodeAny decodes nil, bool, int, float, str or a msgpack-numpy map.
func decodeAny(d *msgpack.Decoder, r *bytes.Reader) (any, error) {
	c, err := d.PeekCode()
	if err != nil {
		return nil, truncated(err)
	}
	switch {
	case c == msgpcode.Nil:
		return nil, d.DecodeNil()
	case c == msgpcode.True || c == msgpcode.False:
		return d.DecodeBool()
	case c == msgpcode.Uint64:
		u, err := d.DecodeUint64()
		if err != nil {
			return nil, truncated(err)
		}
		if u > math.MaxInt64 {
			return nil, fmt.Errorf("integer %d overflows int64", u)
		}
		return int64(u), nil
	case msgpcode.IsFixedNum(c) || (c >= msgpcode.Uint8 && c <= msgpcode.Int64):
		v, err := d.DecodeInt64()
		return v, truncated(err)
	case c == msgpcode.Float || c == msgpcode.Double:
		v, err := d.DecodeFloat64()
		return v, truncated(err)
	case isStrCode(c):
		n, err := readBytesLen(d, r)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		if err := d.ReadFull(buf); err != nil {
			return nil, truncated(err)
		}
		return string(buf), nil
	case isMapCode(c):
		return decodeNDMap(d, r)
	}
	return nil, fmt.Errorf("unsupported value: %s (want bool, integer, float, string or a msgpack-numpy array)", codeName(c))
}

// decodeNDMap decodes a msgpack-numpy map: an *Array for nd=true, a scalar
// for nd=false.
func decodeNDMap(d *msgpack.Decoder, r *bytes.Reader) (any, error) {
	n, err := readMapLen(d, r)
	if err != nil {
		return nil, err
	}
	var (
		nd, haveND, haveType, haveShape, haveData bool
		dtype                                     DType
		shape                                     []int
		data                                      []byte
		seen                                      = map[string]bool{}
	)
	for range n {
		key, err := readKey(d, r)
		if err != nil {
			return nil, fmt.Errorf("array map key: %w", err)
		}
		if seen[key] {
			return nil, fmt.Errorf("array map has key %q twice", key)
		}
		seen[key] = true
		switch key {
		case "nd":
			if nd, err = d.DecodeBool(); err != nil {
				return nil, fmt.Errorf("array map: nd: %w", truncated(err))
			}
			haveND = true
		case "type":
			c, err := d.PeekCode()
			if err != nil {
				return nil, truncated(err)
			}
			if !isStrCode(c) {
				return nil, fmt.Errorf("array map: type: want a dtype string, got %s (structured dtypes are not supported)", codeName(c))
			}
			s, err := readKey(d, r)
			if err != nil {
				return nil, fmt.Errorf("array map: type: %w", err)
			}
			dtype, haveType = DType(s), true
		case "kind":
			s, err := readKey(d, r)
			if err != nil {
				return nil, fmt.Errorf("array map: kind: %w", err)
			}
			if s != "" {
				return nil, fmt.Errorf("array map: kind %q (structured and object arrays are not supported)", s)
			}
		case "shape":
			m, err := readArrayLen(d, r)
			if err != nil {
				return nil, fmt.Errorf("array map: shape: %w", err)
			}
			if m > maxDims {
				return nil, fmt.Errorf("array map: shape has %d dimensions (at most %d)", m, maxDims)
			}
			shape = make([]int, m)
			for i := range shape {
				c, err := d.PeekCode()
				if err != nil {
					return nil, truncated(err)
				}
				if !(msgpcode.IsFixedNum(c) || (c >= msgpcode.Uint8 && c <= msgpcode.Int64)) {
					return nil, fmt.Errorf("array map: shape: want integers, got %s", codeName(c))
				}
				v, err := d.DecodeInt64()
				if err != nil {
					return nil, truncated(err)
				}
				if v < 0 || v > math.MaxInt32 || c == msgpcode.Uint64 {
					return nil, fmt.Errorf("array map: shape: dimension %d out of range", v)
				}
				shape[i] = int(v)
			}
			haveShape = true
		case "data":
			c, err := d.PeekCode()
			if err != nil {
				return nil, truncated(err)
			}
			if !isBinCode(c) && !isStrCode(c) {
				return nil, fmt.Errorf("array map: data: want bytes, got %s", codeName(c))
			}
			m, err := readBytesLen(d, r)
			if err != nil {
				return nil, fmt.Errorf("array map: data: %w", err)
			}
			data = make([]byte, m)
			if err := d.ReadFull(data); err != nil {
				return nil, truncated(err)
			}
			haveData = true
		default:
			return nil, fmt.Errorf("map is not a msgpack-numpy array: unexpected key %q", key)
		}
	}
	switch {
	case !haveND || !haveType || !haveData:
		return nil, fmt.Errorf("map is not a msgpack-numpy array: want keys nd, type and data")
	case !nd:
		if haveShape {
			return nil, fmt.Errorf("numpy scalar map has a shape")
		}
		return decodeNumpyScalar(dtype, data)
	case !haveShape:
		return nil, fmt.Errorf("array map: missing shape")
	}
	a := &Array{DType: dtype, Shape: shape, Data: data}
	if err := a.check(); err != nil {
		return nil, err
	}
	return a, nil
}

// decodeNumpyScalar converts msgpack-numpy's {nd: false, type, data} form.
func decodeNumpyScalar(t DType, data []byte) (any, error) {
	a := &Array{DType: t, Shape: []int{}, Data: data}
	if err := a.check(); err != nil {
		return nil, fmt.Errorf("numpy scalar: %w", err)
	}
	switch k := t.Kind(); {
	case k == 'b':
		return data[0] == 1, nil
	case t.IsFloat():
		v, _ := a.Float64s()
		return v[0], nil
	case t.IsInteger():
		v, err := a.Int64s()
		if err != nil {
			return nil, fmt.Errorf("numpy scalar: %w", err)
		}
		return v[0], nil
	}
	return nil, fmt.Errorf("numpy scalar of dtype %s is not supported", t)
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("truncated data")
	}
	return err
}

func isMapCode(c byte) bool {
	return msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32
}

func isStrCode(c byte) bool {
	return msgpcode.IsFixedString(c) || c == msgpcode.Str8 || c == msgpcode.Str16 || c == msgpcode.Str32
}

func isBinCode(c byte) bool {
	return c == msgpcode.Bin8 || c == msgpcode.Bin16 || c == msgpcode.Bin32
}

// readMapLen reads a map header, refusing counts the remaining input cannot hold
// (every entry takes at least two bytes).
func readMapLen(d *msgpack.Decoder, r *bytes.Reader) (int, error) {
	c, err := d.PeekCode()
	if err != nil {
		return 0, truncated(err)
	}
	if !isMapCode(c) {
		return 0, fmt.Errorf("want a map, got %s", codeName(c))
	}
	n, err := d.DecodeMapLen()
	if err != nil {
		return 0, truncated(err)
	}
	if n < 0 || n > r.Len()/2 {
		return 0, fmt.Errorf("map of %d entries does not fit in the %d remaining bytes (truncated data)", n, r.Len())
	}
	return n, nil
}

// readArrayLen reads an array header, refusing counts the input cannot hold.
func readArrayLen(d *msgpack.Decoder, r *bytes.Reader) (int, error) {
	c, err := d.PeekCode()
	if err != nil {
		return 0, truncated(err)
	}
	if !msgpcode.IsFixedArray(c) && c != msgpcode.Array16 && c != msgpcode.Array32 {
		return 0, fmt.Errorf("want an array, got %s", codeName(c))
	}
	n, err := d.DecodeArrayLen()
	if err != nil {
		return 0, truncated(err)
	}
	if n < 0 || n > r.Len() {
		return 0, fmt.Errorf("array of %d items does not fit in the %d remaining bytes (truncated data)", n, r.Len())
	}
	return n, nil
}

// readBytesLen reads a str or bin header, refusing lengths beyond the input.
func readBytesLen(d *msgpack.Decoder, r *bytes.Reader) (int, error) {
	n, err := d.DecodeBytesLen()
	if err != nil {
		return 0, truncated(err)
	}
	if n < 0 || n > r.Len() {
		return 0, fmt.Errorf("declared length %d exceeds the %d remaining bytes (truncated data)", n, r.Len())
	}
	return n, nil
}

// maxKeyLen bounds map keys: field names and msgpack-numpy keys.
const maxKeyLen = 4 * maxNameLen

// readKey reads a str or bin map key.
func readKey(d *msgpack.Decoder, r *bytes.Reader) (string, error) {
	c, err := d.PeekCode()
	if err != nil {
		return "", truncated(err)
	}
	if !isStrCode(c) && !isBinCode(c) {
		return "", fmt.Errorf("want a string, got %s", codeName(c))
	}
	n, err := readBytesLen(d, r)
	if err != nil {
		return "", err
	}
	if n > maxKeyLen {
		return "", fmt.Errorf("string of %d bytes is too long (at most %d)", n, maxKeyLen)
	}
	buf := make([]byte, n)
	if err := d.ReadFull(buf); err != nil {
		return "", truncated(err)
	}
	return string(buf), nil
}

// codeName names the msgpack type starting with code c, for error messages.
func codeName(c byte) string {
	switch {
	case c == msgpcode.Nil:
		return "nil"
	case c == msgpcode.True || c == msgpcode.False:
		return "bool"
	case msgpcode.IsFixedNum(c) || (c >= msgpcode.Uint8 && c <= msgpcode.Int64):
		return "integer"
	case c == msgpcode.Float || c == msgpcode.Double:
		return "float"
	case isStrCode(c):
		return "string"
	case isBinCode(c):
		return "bytes"
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		return "array"
	case isMapCode(c):
		return "map"
	case msgpcode.IsExt(c):
		return "extension"
	}
	return fmt.Sprintf("invalid code 0x%02x", c)
}
