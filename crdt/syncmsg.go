package crdt

import (
	"fmt"

	"framesync"
)

// Sync message (version 1), as encoded by automerge 0.5.0 (the core bundled in
// automerge-go) and by JS Automerge for peers that do not advertise V2:
//
//	type     1 byte   0x42
//	heads    uLEB128 count, then count 32-byte change hashes (sorted)
//	need     uLEB128 count, then count 32-byte change hashes
//	have     uLEB128 count, then for each:
//	           lastSync  uLEB128 count + 32-byte hashes
//	           bloom     uLEB128 length + bytes (see checkBloom)
//	changes  uLEB128 count, then for each: uLEB128 length + one change chunk
//	trailer  anything else (JS sends capability flags here); ignored
const msgTypeSync = 0x42

// Bloom filter limits. Automerge writes 10 bits per entry and 7 probes; the
// limits leave room for other tunings while refusing filters that make the
// Rust core divide by zero (no bits) or loop and allocate per probe (it
// allocates num_probes words per hash looked up).
const (
	maxBloomBitsPerEntry = 64
	maxBloomProbes       = 64
)

// MessageInfo is the content of a sync message, decoded without applying it.
type MessageInfo struct {
	Heads   []ChangeHash // the sender's heads
	Need    []ChangeHash // changes the sender asks for
	Have    int          // number of "have" summaries (Bloom filters)
	Changes []ChangeInfo // the changes carried, in message order
}

// Inspect decodes the container of a sync message and the header of every
// change in it, without applying anything. It lets a receiver decide about a
// message (who wrote its changes, whether they are known) before handing it to
// Automerge. It never panics, and it allocates in proportion to the input.
//
// Inspect is stricter than Automerge: it refuses change chunks that are
// compressed, carry trailing bytes or have a wrong checksum, and Bloom filters
// with parameters that would make the Rust core crash or stall. A message
// Inspect accepts is decoded by Automerge to the same heads and changes.
// Errors are of kind framesync.BadInput.
func Inspect(msg []byte) (*MessageInfo, error) {
	p, err := parseMessage(msg)
	if err != nil {
		return nil, err
	}
	return p.info, nil
}

// parsedMessage is a decoded sync message with what is needed to check its
// changes and to re-encode it with fewer changes or more needs.
type parsedMessage struct {
	info      *MessageInfo
	raws      [][]byte // each change's chunk
	rests     [][]byte // each change's bytes after its message field
	msg       []byte   // the whole message
	needAt    int      // offset of the need count
	haveAt    int      // offset of the have count
	changesAt int      // offset of the change count
	trailerAt int      // offset of the bytes after the changes
}

// parseMessage decodes a sync message for Inspect and Session.Receive.
func parseMessage(msg []byte) (*parsedMessage, error) {
	bad := func(msg string, err error) error {
		return &framesync.Error{Kind: framesync.BadInput, Op: "inspect sync message", Msg: msg, Err: err}
	}
	r := &reader{b: msg}
	if t := r.byte(); r.err != nil {
		return nil, bad("empty message", nil)
	} else if t != msgTypeSync {
		return nil, bad(fmt.Sprintf("message type 0x%02x, want 0x%02x (sync V1)", t, msgTypeSync), nil)
	}
	p := &parsedMessage{info: &MessageInfo{}, msg: msg}
	p.info.Heads = r.hashes()
	p.needAt = r.off
	p.info.Need = r.hashes()
	if r.err != nil {
		return nil, bad("heads and need", r.err)
	}
	p.haveAt = r.off
	p.info.Have = r.count(2)
	for i := 0; i < p.info.Have && r.err == nil; i++ {
		r.hashes()
		bloom := r.bytes()
		if r.err != nil {
			break
		}
		if err := checkBloom(bloom); err != nil {
			return nil, bad(fmt.Sprintf("have %d: Bloom filter", i), err)
		}
	}
	if r.err != nil {
		return nil, bad("have", r.err)
	}
	p.changesAt = r.off
	// A change is at least its length prefix and a 10-byte chunk header.
	n := r.count(11)
	if r.err != nil {
		return nil, bad("changes", r.err)
	}
	p.info.Changes = make([]ChangeInfo, 0, n)
	p.raws = make([][]byte, 0, n)
	p.rests = make([][]byte, 0, n)
	for i := range n {
		b := r.bytes()
		if r.err != nil {
			return nil, bad(fmt.Sprintf("change %d", i), r.err)
		}
		ci, rest, err := parseChange(b)
		if err != nil {
			return nil, bad(fmt.Sprintf("change %d", i), err)
		}
		p.info.Changes = append(p.info.Changes, ci)
		p.raws = append(p.raws, b)
		p.rests = append(p.rests, rest)
	}
	p.trailerAt = r.off
	return p, nil
}

// withChanges re-encodes the message keeping only the changes whose
// indexes are in keep (in order).
func (p *parsedMessage) withChanges(keep []int) []byte {
	out := append([]byte(nil), p.msg[:p.changesAt]...)
	out = appendUleb(out, uint64(len(keep)))
	for _, i := range keep {
		out = appendUleb(out, uint64(len(p.raws[i])))
		out = append(out, p.raws[i]...)
	}
	return append(out, p.msg[p.trailerAt:]...)
}

// withNeed re-encodes the message with more hashes in its need list.
func (p *parsedMessage) withNeed(more []ChangeHash) []byte {
	need := Heads(append(append([]ChangeHash(nil), p.info.Need...), more...)).sorted()
	out := append([]byte(nil), p.msg[:p.needAt]...)
	out = appendHashes(out, need)
	return append(out, p.msg[p.haveAt:]...)
}

// appendHashes appends a uLEB128 count and the hashes.
func appendHashes(b []byte, hs []ChangeHash) []byte {
	b = appendUleb(b, uint64(len(hs)))
	for _, h := range hs {
		b = append(b, h[:]...)
	}
	return b
}

// needMessage encodes a sync message that only asks for changes: our heads,
// the hashes needed, no Bloom filter and no changes.
func needMessage(heads Heads, need []ChangeHash) []byte {
	b := []byte{msgTypeSync}
	b = appendHashes(b, heads)
	b = appendHashes(b, Heads(need).sorted())
	b = appendUleb(b, 0)    // have
	return appendUleb(b, 0) // changes
}

// checkBloom validates a serialized Bloom filter: empty, or uLEB128 entries,
// bits per entry and probes (each at most 32 bits) followed by
// ceil(entries*bitsPerEntry/8) bytes of bits. Trailing bytes are ignored, as
// Automerge does.
func checkBloom(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	r := &reader{b: b}
	entries, bits, probes := r.uleb(), r.uleb(), r.uleb()
	if r.err != nil {
		return r.err
	}
	const max32 = 1<<32 - 1
	if entries > max32 || bits > max32 || probes > max32 {
		return fmt.Errorf("parameter does not fit in 32 bits")
	}
	if entries == 0 {
		// Automerge writes an empty filter for no entries, and never probes one.
		return nil
	}
	if bits == 0 || bits > maxBloomBitsPerEntry {
		return fmt.Errorf("%d bits per entry, want 1 to %d", bits, maxBloomBitsPerEntry)
	}
	if probes == 0 || probes > maxBloomProbes {
		return fmt.Errorf("%d probes, want 1 to %d", probes, maxBloomProbes)
	}
	need := (entries*bits + 7) / 8
	if need > uint64(r.remaining()) {
		return fmt.Errorf("%d bytes of bits for %d entries, have %d", need, entries, r.remaining())
	}
	return nil
}
