package peer

import (
	"bytes"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// FuzzDecodeFieldMap: the hub's frame answers are decoded without panics,
// whatever the bytes.
func FuzzDecodeFieldMap(f *testing.F) {
	good, _ := msgpack.Marshal(map[string]msgpack.RawMessage{"positions": {0x93, 1, 2, 3}, "numbers": {0xc0}})
	f.Add(good)
	f.Add([]byte{0x81})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeFieldMap(msgpack.NewDecoder(bytes.NewReader(b)))
		if err != nil {
			return
		}
		for name, raw := range m {
			if len(raw) == 0 {
				t.Fatalf("field %q decoded to no bytes", name)
			}
		}
	})
}
