package crdt

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"framesync"
)

// ChangeHash identifies one Automerge change: the SHA-256 of its chunk. It
// prints as 64 lower-case hex digits, the form Automerge itself uses.
type ChangeHash [32]byte

// String returns the 64 hex digits of h.
func (h ChangeHash) String() string { return hex.EncodeToString(h[:]) }

// ParseChangeHash parses 64 hex digits.
func ParseChangeHash(s string) (ChangeHash, error) {
	var h ChangeHash
	if len(s) != 2*len(h) {
		return h, &framesync.Error{Kind: framesync.BadInput, Op: "parse change hash", Msg: fmt.Sprintf("want %d hex digits, got %d characters", 2*len(h), len(s))}
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, &framesync.Error{Kind: framesync.BadInput, Op: "parse change hash", Err: err}
	}
	return h, nil
}

// Heads names one version of a document: the hashes of the changes no other
// change depends on, sorted. The empty Heads is the empty document (before
// any change). Heads print as the hex hashes joined by commas, a form meant
// to be stored and sent (for example in a ?since= parameter) and read back
// with ParseHeads.
type Heads []ChangeHash

// String returns the hex hashes of h joined by commas ("" for no heads).
func (h Heads) String() string {
	parts := make([]string, len(h))
	for i, c := range h {
		parts[i] = c.String()
	}
	return strings.Join(parts, ",")
}

// MarshalText implements encoding.TextMarshaler with the form of String.
func (h Heads) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with the rules of ParseHeads.
func (h *Heads) UnmarshalText(b []byte) error {
	v, err := ParseHeads(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// Equal reports whether h and o name the same version.
func (h Heads) Equal(o Heads) bool {
	a, b := h.sorted(), o.sorted()
	return slices.Equal(a, b)
}

func (h Heads) sorted() Heads {
	s := slices.Clone(h)
	slices.SortFunc(s, func(a, b ChangeHash) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(s)
}

// maxHeads bounds how many hashes ParseHeads accepts; real documents have a
// handful of heads (one per concurrent writer).
const maxHeads = 1024

// ParseHeads parses the form printed by Heads.String: hex change hashes
// separated by commas; the empty string is the empty Heads. The result is
// sorted and free of duplicates.
func ParseHeads(s string) (Heads, error) {
	if s == "" {
		return Heads{}, nil
	}
	if n := strings.Count(s, ",") + 1; n > maxHeads {
		return nil, &framesync.Error{Kind: framesync.BadInput, Op: "parse heads", Msg: fmt.Sprintf("%d hashes, at most %d allowed", n, maxHeads)}
	}
	var out Heads
	for part := range strings.SplitSeq(s, ",") {
		h, err := ParseChangeHash(part)
		if err != nil {
			return nil, &framesync.Error{Kind: framesync.BadInput, Op: "parse heads", Err: err}
		}
		out = append(out, h)
	}
	return out.sorted(), nil
}
