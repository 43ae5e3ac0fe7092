package crdt

import (
	"errors"
	"unicode/utf8"
)

// errShort and the other reader errors are causes wrapped into framesync
// errors by the decoders; they never leave the package bare.
var (
	errShort    = errors.New("unexpected end of input")
	errOverlong = errors.New("LEB128 number is not minimally encoded")
	errTooLarge = errors.New("LEB128 number does not fit in 64 bits")
	errUTF8     = errors.New("invalid UTF-8")
)

// reader decodes the binary encodings Automerge uses (LEB128 numbers,
// length-prefixed byte strings, 32-byte hashes) from an in-memory buffer.
// Every method checks the remaining length before reading or allocating, so a
// declared length or count never makes it allocate more than the input holds.
// The first error sticks: later calls return zero values and err stays set.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail(errShort)
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

// uleb reads an unsigned LEB128 number with the same rules as the Rust core
// (automerge storage/parse/leb128.rs): at most 64 bits, no overlong encoding.
func (r *reader) uleb() uint64 {
	var v uint64
	var shift uint
	for {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if shift == 63 && c > 1 {
			r.fail(errTooLarge)
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if shift > 0 && c == 0 {
				r.fail(errOverlong)
				return 0
			}
			return v
		}
		shift += 7
		if shift > 63 {
			r.fail(errTooLarge)
			return 0
		}
	}
}

// sleb reads a signed LEB128 number (at most 64 bits, no overlong encoding).
func (r *reader) sleb() int64 {
	var v int64
	var shift uint
	var prev byte
	for {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if shift == 63 && c != 0 && c != 0x7f {
			r.fail(errTooLarge)
			return 0
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift > 7 && ((c == 0 && prev&0x40 == 0) || (c == 0x7f && prev&0x40 != 0)) {
				r.fail(errOverlong)
				return 0
			}
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
		if shift > 63 {
			r.fail(errTooLarge)
			return 0
		}
		prev = c
	}
}

// take returns the next n bytes (a sub-slice, not a copy).
func (r *reader) take(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(r.remaining()) {
		r.fail(errShort)
		return nil
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s
}

// bytes reads a uLEB128 length and that many bytes.
func (r *reader) bytes() []byte { return r.take(r.uleb()) }

// str reads a length-prefixed UTF-8 string.
func (r *reader) str() string {
	b := r.bytes()
	if r.err == nil && !utf8.Valid(b) {
		r.fail(errUTF8)
		return ""
	}
	return string(b)
}

// count reads a uLEB128 element count and checks that the rest of the input
// could hold that many elements of at least minSize bytes each.
func (r *reader) count(minSize int) int {
	n := r.uleb()
	if r.err != nil {
		return 0
	}
	if minSize < 1 {
		minSize = 1
	}
	if n > uint64(r.remaining()/minSize) {
		r.fail(errShort)
		return 0
	}
	return int(n)
}

// hashes reads a uLEB128 count followed by that many 32-byte change hashes.
func (r *reader) hashes() []ChangeHash {
	n := r.count(len(ChangeHash{}))
	if r.err != nil || n == 0 {
		return nil
	}
	out := make([]ChangeHash, n)
	for i := range out {
		copy(out[i][:], r.take(uint64(len(ChangeHash{}))))
	}
	return out
}

// appendUleb appends v as unsigned LEB128.
func appendUleb(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
