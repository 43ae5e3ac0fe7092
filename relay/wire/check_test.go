package wire

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestCheckMsgpack(t *testing.T) {
	step := int64(3)
	for _, v := range []any{
		&Msg{T: MsgFrame, Room: "r", Step: &step, Payload: map[string]any{"camera": []any{1.5, "x", nil, true, map[string]any{"a": []byte{1, 2}}}}},
		&CommitRequest{Op: OpPatch, Fields: map[string]string{"positions": "sha256:00"}, Frames: []msgpack.RawMessage{{0x80}}},
		[]any{int64(-1 << 40), uint64(1 << 63), float32(1.5), strings.Repeat("s", 70000), bytes.Repeat([]byte{1}, 300)},
	} {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckMsgpack(b); err != nil {
			t.Errorf("%T: %v", v, err)
		}
	}
	nested := bytes.Repeat([]byte{0xdd, 0xff, 0xff, 0xff, 0xff}, 60) // arrays claiming 4 billion elements
	deep := append(bytes.Repeat([]byte{0x91}, MaxDepth+1), 0xc0)
	for name, b := range map[string][]byte{
		"nested huge arrays": nested,
		"huge map":           {0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0},
		"huge string":        {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'},
		"too deep":           deep,
		"trailing bytes":     {0xc0, 0xc0},
		"empty":              {},
		"never used":         {0xc1},
		"cut ext":            {0xc9, 0, 0, 1, 0, 1},
	} {
		if err := CheckMsgpack(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := CheckMsgpack(append(bytes.Repeat([]byte{0x91}, MaxDepth), 0xc0)); err != nil {
		t.Errorf("nesting at the limit: %v", err)
	}
}

// FuzzCheckMsgpack: whatever passes the check decodes without the
// decoder allocating more than the input can describe, and valid
// encodings always pass.
func FuzzCheckMsgpack(f *testing.F) {
	b, _ := msgpack.Marshal(&Msg{T: MsgPresence, Payload: map[string]any{"x": []any{1, "a"}}})
	f.Add(b)
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if CheckMsgpack(b) != nil {
			return
		}
		var v any
		if err := msgpack.Unmarshal(b, &v); err != nil {
			return
		}
		again, err := msgpack.Marshal(v)
		if err != nil {
			return
		}
		if err := CheckMsgpack(again); err != nil {
			t.Fatalf("a re-encoded value fails the check: %v", err)
		}
	})
}
