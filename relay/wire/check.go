package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxDepth is how deeply msgpack values may nest in messages and bodies.
const MaxDepth = 64

// errTruncated is a declared length beyond the end of the input.
var errTruncated = errors.New("msgpack: a length points past the end of the input")

// CheckMsgpack walks b as one msgpack value and refuses it unless every
// declared length fits in the bytes that are left and nesting stays within
// MaxDepth. It allocates nothing, so it runs before a decoder that would
// allocate what a hostile header declares (a 300-byte message of nested
// 4-billion-element arrays made the generic decoder allocate gigabytes).
func CheckMsgpack(b []byte) error {
	// pending[i] counts the values still to read at nesting level i.
	var pending [MaxDepth + 1]uint64
	depth := 0
	pending[0] = 1
	i := 0
	for {
		for depth > 0 && pending[depth] == 0 {
			depth--
		}
		if pending[depth] == 0 {
			if i != len(b) {
				return fmt.Errorf("msgpack: %d bytes after the value", len(b)-i)
			}
			return nil
		}
		pending[depth]--
		if i >= len(b) {
			return errTruncated
		}
		c := b[i]
		i++
		var skip, items uint64 // bytes to skip; child values to read
		n := func(k int) (uint64, bool) {
			if len(b)-i < k {
				return 0, false
			}
			var v uint64
			switch k {
			case 1:
				v = uint64(b[i])
			case 2:
				v = uint64(binary.BigEndian.Uint16(b[i:]))
			case 4:
				v = uint64(binary.BigEndian.Uint32(b[i:]))
			}
			i += k
			return v, true
		}
		ok := true
		switch {
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		case c >= 0xa0 && c <= 0xbf:
			skip = uint64(c & 0x1f)
		case c >= 0x90 && c <= 0x9f:
			items = uint64(c & 0x0f)
		case c >= 0x80 && c <= 0x8f:
			items = 2 * uint64(c&0x0f)
		case c == 0xc4 || c == 0xd9:
			skip, ok = n(1)
		case c == 0xc5 || c == 0xda:
			skip, ok = n(2)
		case c == 0xc6 || c == 0xdb:
			skip, ok = n(4)
		case c == 0xcc || c == 0xd0:
			skip = 1
		case c == 0xcd || c == 0xd1:
			skip = 2
		case c == 0xca || c == 0xce || c == 0xd2:
			skip = 4
		case c == 0xcb || c == 0xcf || c == 0xd3:
			skip = 8
		case c == 0xd4:
			skip = 2
		case c == 0xd5:
			skip = 3
		case c == 0xd6:
			skip = 5
		case c == 0xd7:
			skip = 9
		case c == 0xd8:
			skip = 17
		case c == 0xc7:
			skip, ok = n(1)
			skip++
		case c == 0xc8:
			skip, ok = n(2)
			skip++
		case c == 0xc9:
			skip, ok = n(4)
			skip++
		case c == 0xdc:
			items, ok = n(2)
		case c == 0xdd:
			items, ok = n(4)
		case c == 0xde:
			items, ok = n(2)
			items *= 2
		case c == 0xdf:
			items, ok = n(4)
			items *= 2
		default: // 0xc1 is never used
			return fmt.Errorf("msgpack: invalid type byte 0x%02x", c)
		}
		if !ok || skip > uint64(len(b)-i) || items > uint64(len(b)-i) {
			return errTruncated // every child value takes at least one byte
		}
		i += int(skip)
		if items > 0 {
			if depth == MaxDepth {
				return fmt.Errorf("msgpack: nested deeper than %d", MaxDepth)
			}
			depth++
			pending[depth] = items
		}
	}
}
