package relay

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"framesync/relay/wire"
)

// FuzzDecodeMsg feeds arbitrary bytes to the control channel and commit
// decoders: they return an error or a value, never panic.
func FuzzDecodeMsg(f *testing.F) {
	for _, m := range []*wire.Msg{
		{T: wire.MsgHello, Client: "a", Name: "Alice"},
		{T: wire.MsgJoin, ID: 1, Room: "default"},
		{T: wire.MsgLock, ID: 2, Room: "default", Target: "frame:0123456789abcdef", TTLms: 5000},
		{T: wire.MsgFrame, Room: "default", Step: new(int64), Payload: map[string]any{"camera": []any{1.0, 2.0}}},
		{T: wire.MsgSync, Room: "default", Doc: wire.DocState, Data: []byte{0x42, 1, 2}},
	} {
		b, _ := encodeMsg(m)
		f.Add(b)
	}
	b, _ := msgpack.Marshal(&wire.CommitRequest{Op: wire.OpPatch, Token: 3, Frame: "1", Fields: map[string]string{"positions": "sha256:00"}, Frames: []msgpack.RawMessage{{0x80}}})
	f.Add(b)
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff}) // map claiming 4 billion entries
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff}) // array claiming 4 billion entries
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := decodeMsg(b); err == nil {
			if _, err := encodeMsg(m); err != nil {
				t.Fatalf("decoded message does not encode: %v", err)
			}
		}
		// Commit bodies, as decodeBody reads them.
		if wire.CheckMsgpack(b) == nil {
			var req wire.CommitRequest
			msgpack.Unmarshal(b, &req)
		}
	})
}

// FuzzDocFileLog loads a room document log of arbitrary bytes: intact
// records are returned, the rest is cut off, nothing panics, and a record
// appended afterwards is read back.
func FuzzDocFileLog(f *testing.F) {
	rec := func(p []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(p)))
		s := sha256.Sum256(p)
		return append(append(b, s[:]...), p...)
	}
	f.Add(rec([]byte("change one")))
	f.Add(append(rec([]byte("a")), rec([]byte("bb"))[:10]...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, log []byte) {
		dir := t.TempDir()
		df := openDocFile(dir, "doc")
		df.noSync = true
		if err := os.WriteFile(df.snap, []byte("snapshot"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(df.log, log, 0o644); err != nil {
			t.Fatal(err)
		}
		_, recs, ok, err := df.load()
		if err != nil || !ok {
			t.Fatalf("load: %v %v", ok, err)
		}
		total := 0
		for _, r := range recs {
			total += logHeader + len(r)
		}
		if !bytes.Equal(log[:total], mustRead(t, df.log)) {
			t.Fatal("the log was not cut at the last intact record")
		}
		if err := df.append([]byte("next")); err != nil {
			t.Fatal(err)
		}
		_, recs2, _, err := df.load()
		if err != nil || len(recs2) != len(recs)+1 || string(recs2[len(recs)]) != "next" {
			t.Fatalf("after append: %d records (had %d), %v", len(recs2), len(recs), err)
		}
	})
}

func mustRead(t *testing.T, name string) []byte {
	b, err := os.ReadFile(filepath.Clean(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
