package crdt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"framesync"
)

// Automerge storage chunks (https://automerge.org/automerge-binary-format-spec/):
//
//	magic     4 bytes  85 6f 4a 83
//	checksum  4 bytes  first 4 bytes of the chunk hash
//	type      1 byte   0 document, 1 change, 2 deflate-compressed change
//	length    uLEB128  length of data
//	data      length bytes
//
// The chunk hash is SHA-256(type || uLEB128(length) || data); for a change
// chunk it is the change hash. A compressed change's checksum is that of the
// uncompressed change.
const (
	chunkDocument   = 0
	chunkChange     = 1
	chunkCompressed = 2
)

var chunkMagic = []byte{0x85, 0x6f, 0x4a, 0x83}

// chunk is one parsed chunk header with its data.
type chunk struct {
	typ      byte
	checksum [4]byte
	data     []byte
	hash     ChangeHash // SHA-256 of type, length and data
	size     int        // bytes of the whole chunk, header included
}

// checksumOK reports whether the stored checksum matches the data. It cannot
// be checked for compressed changes without inflating them.
func (c *chunk) checksumOK() bool {
	return c.typ == chunkCompressed || bytes.Equal(c.checksum[:], c.hash[:4])
}

// readChunk parses one chunk from r.
func readChunk(r *reader) (chunk, error) {
	var c chunk
	start := r.off
	magic := r.take(4)
	if r.err != nil {
		return c, r.err
	}
	if !bytes.Equal(magic, chunkMagic) {
		return c, fmt.Errorf("bad magic bytes %x at offset %d (want %x)", magic, start, chunkMagic)
	}
	copy(c.checksum[:], r.take(4))
	c.typ = r.byte()
	lenStart := r.off
	n := r.uleb()
	lenEnd := r.off
	c.data = r.take(n)
	if r.err != nil {
		return c, r.err
	}
	if c.typ > chunkCompressed {
		return c, fmt.Errorf("unknown chunk type %d at offset %d", c.typ, start)
	}
	h := sha256.New()
	h.Write([]byte{c.typ})
	h.Write(r.b[lenStart:lenEnd])
	h.Write(c.data)
	h.Sum(c.hash[:0])
	c.size = r.off - start
	return c, nil
}

// checkChunks validates the framing of a saved document or incremental save:
// a sequence of whole chunks of known types whose checksums match. The Rust
// core checks this too, but this gives clear errors. It does not make
// arbitrary input safe to load: see the package documentation.
func checkChunks(op string, b []byte) error {
	if len(b) == 0 {
		return &framesync.Error{Kind: framesync.BadInput, Op: op, Msg: "empty input"}
	}
	r := &reader{b: b}
	for i := 0; r.remaining() > 0; i++ {
		start := r.off
		c, err := readChunk(r)
		if err != nil {
			return &framesync.Error{Kind: framesync.BadInput, Op: op, Msg: fmt.Sprintf("not an Automerge document: chunk %d at offset %d", i, start), Err: err}
		}
		if !c.checksumOK() {
			return &framesync.Error{Kind: framesync.BadInput, Op: op, Msg: fmt.Sprintf("chunk %d at offset %d: checksum mismatch (data corrupted)", i, start)}
		}
	}
	return nil
}

// ChangeInfo describes one change as found in a sync message, read without
// applying it.
type ChangeInfo struct {
	Hash    ChangeHash   // the change hash (SHA-256 of the change chunk)
	Actor   string       // the author's actor ID, lower-case hex
	Seq     uint64       // 1 for the actor's first change, then 2, ...
	StartOp uint64       // counter of the change's first operation
	Time    int64        // timestamp as written: milliseconds from automerge-go, seconds from JS Automerge; 0 if unset
	Message string       // commit message, may be empty
	Deps    []ChangeHash // hashes of the changes it depends on
	Size    int          // bytes of the change chunk
}

// parseChange decodes the metadata of an uncompressed change chunk whose
// bytes are exactly b (no trailing data). It mirrors the Rust core's
// Change::parse_following_header up to the message and the other actors.
func parseChange(b []byte) (ChangeInfo, []byte, error) {
	var ci ChangeInfo
	r := &reader{b: b}
	c, err := readChunk(r)
	if err != nil {
		return ci, nil, err
	}
	if c.typ != chunkChange {
		return ci, nil, fmt.Errorf("chunk type %d, want %d (change)", c.typ, chunkChange)
	}
	if r.remaining() != 0 {
		return ci, nil, fmt.Errorf("%d bytes after the change chunk", r.remaining())
	}
	if !c.checksumOK() {
		return ci, nil, fmt.Errorf("checksum mismatch")
	}
	ci.Hash = c.hash
	ci.Size = c.size
	d := &reader{b: c.data}
	ci.Deps = d.hashes()
	ci.Actor = hex.EncodeToString(d.bytes())
	ci.Seq = d.uleb()
	ci.StartOp = d.uleb()
	ci.Time = d.sleb()
	ci.Message = d.str()
	if d.err != nil {
		return ci, nil, fmt.Errorf("change header: %w", d.err)
	}
	if ci.StartOp == 0 {
		return ci, nil, fmt.Errorf("change header: start op is 0")
	}
	return ci, c.data[d.off:], nil
}
