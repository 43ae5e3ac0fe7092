package framesync

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// Manifest maps the field names of a frame to the hashes of their blobs. Its
// canonical encoding (Encode) is a msgpack map from field name to the printed
// hash ("sha256:<hex>"), keys sorted; the hash of that encoding is the
// frame's hash.
type Manifest map[string]Hash

// Encode returns the canonical msgpack encoding of m.
func (m Manifest) Encode() []byte {
	var buf bytes.Buffer
	buf.Grow(len(m) * 96)
	enc := newEncoder(&buf)
	enc.EncodeMapLen(len(m))
	for _, name := range sortedKeys(m) {
		enc.EncodeString(name)
		enc.EncodeString(m[name].String())
	}
	return buf.Bytes()
}

// Hash returns the hash of m's canonical encoding: the frame's hash.
func (m Manifest) Hash() Hash { return Sum(m.Encode()) }

// Fields returns the field names of m, sorted.
func (m Manifest) Fields() []string { return sortedKeys(m) }

// Select returns the part of m naming the selected fields (names or groups,
// as ParseFieldList returns). A selected field name m lacks is a NotFound
// error; a group that matches nothing selects nothing.
func (m Manifest) Select(sel ...string) (Manifest, error) {
	out := make(Manifest, len(sel))
	for name, h := range m {
		if matchSelection(name, sel) {
			out[name] = h
		}
	}
	for _, s := range sel {
		if s == GroupArrays || s == GroupInfo || s == GroupCalc {
			continue
		}
		if _, ok := m[s]; !ok {
			return nil, &Error{Kind: NotFound, Op: "select", Field: s, Msg: "frame has no such field"}
		}
	}
	return out, nil
}

// Changed returns the sorted names of the fields whose hash differs between
// prev and m, including fields only m has. A client stepping from one frame
// to the next fetches just these.
func (m Manifest) Changed(prev Manifest) []string {
	var names []string
	for name, h := range m {
		if p, ok := prev[name]; !ok || p != h {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// DecodeManifest decodes a manifest, checking every field name and hash.
func DecodeManifest(b []byte) (Manifest, error) {
	bad := func(format string, args ...any) error {
		return &Error{Kind: BadInput, Op: "decode manifest", Msg: fmt.Sprintf(format, args...)}
	}
	r := bytes.NewReader(b)
	d := msgpack.NewDecoder(r)
	n, err := readMapLen(d, r)
	if err != nil {
		return nil, bad("%v", err)
	}
	m := make(Manifest, n)
	for range n {
		name, err := readKey(d, r)
		if err != nil {
			return nil, bad("field name: %v", err)
		}
		if err := CheckFieldName(name); err != nil {
			return nil, &Error{Kind: BadInput, Op: "decode manifest", Err: err}
		}
		s, err := readKey(d, r)
		if err != nil {
			return nil, bad("%s: hash: %v", name, err)
		}
		h, err := ParseHash(s)
		if err != nil {
			return nil, &Error{Kind: BadInput, Op: "decode manifest", Field: name, Err: err}
		}
		if _, dup := m[name]; dup {
			return nil, bad("%s: field appears twice", name)
		}
		m[name] = h
	}
	if r.Len() != 0 {
		return nil, bad("%d trailing bytes", r.Len())
	}
	return m, nil
}

// Split encodes every field of f as its own blob and returns the manifest
// and the blobs by hash. Fields with equal content share one blob. f is
// checked with ValidatePartial first.
func (f *Frame) Split() (Manifest, map[Hash][]byte, error) {
	if err := f.ValidatePartial(); err != nil {
		return nil, nil, err
	}
	m := make(Manifest)
	blobs := make(map[Hash][]byte)
	var err error
	f.each(func(name string, v any) {
		if err != nil {
			return
		}
		var b []byte
		if b, err = EncodeValue(v); err != nil {
			err = &Error{Kind: BadInput, Op: "split frame", Field: name, Err: err}
			return
		}
		h := Sum(b)
		m[name] = h
		blobs[h] = b
	})
	if err != nil {
		return nil, nil, err
	}
	return m, blobs, nil
}

// BlobSource returns the bytes of a blob. Join functions do not verify the
// bytes against the hash: a blobstore.Store verifies on read already.
type BlobSource func(Hash) ([]byte, error)

// JoinFrame rebuilds a (possibly partial) frame from a manifest and its blobs.
func JoinFrame(m Manifest, get BlobSource) (*Frame, error) {
	f := &Frame{}
	for _, name := range m.Fields() {
		b, err := get(m[name])
		if err != nil {
			return nil, fmt.Errorf("join frame: %s: %w", name, err)
		}
		v, err := DecodeValue(name, b)
		if err != nil {
			return nil, err
		}
		if err := f.SetField(name, v); err != nil {
			return nil, err
		}
	}
	if err := f.ValidatePartial(); err != nil {
		return nil, err
	}
	return f, nil
}

// JoinEncoded returns the frame encoding of the fields of m by concatenating
// their blobs, without decoding them. For blobs made by Split the result
// equals the Encode of the joined frame; serving a frame this way costs a
// copy, not a decode.
func JoinEncoded(m Manifest, get BlobSource) ([]byte, error) {
	names := m.Fields()
	parts := make([][]byte, len(names))
	size := 8
	for i, name := range names {
		b, err := get(m[name])
		if err != nil {
			return nil, fmt.Errorf("join frame: %s: %w", name, err)
		}
		parts[i] = b
		size += len(b) + len(name) + 4
	}
	var buf bytes.Buffer
	buf.Grow(size)
	enc := newEncoder(&buf)
	enc.EncodeMapLen(len(names))
	for i, name := range names {
		enc.EncodeString(name)
		buf.Write(parts[i])
	}
	return buf.Bytes(), nil
}
