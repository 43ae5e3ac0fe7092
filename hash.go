package framesync

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
)

// HashPrefix is the algorithm prefix of a printed Hash.
const HashPrefix = "sha256:"

// HashSize is the length in bytes of a SHA-256 digest.
const HashSize = sha256.Size

// hashStringLen is the length of a printed Hash: prefix plus 64 hex digits.
const hashStringLen = len(HashPrefix) + 2*HashSize

// Hash is the SHA-256 digest of a blob's bytes: the blob's address.
// It prints as "sha256:" followed by 64 lower-case hex digits.
// The zero Hash is not the hash of any content and means "no hash".
type Hash [HashSize]byte

// Sum returns the Hash of b.
func Sum(b []byte) Hash { return Hash(sha256.Sum256(b)) }

// NewHasher returns a hash.Hash whose Sum, converted with HashOf, gives a Hash.
func NewHasher() hash.Hash { return sha256.New() }

// HashOf converts the digest of a hasher made by NewHasher into a Hash.
func HashOf(h hash.Hash) Hash {
	var out Hash
	h.Sum(out[:0])
	return out
}

// ParseHash parses the printed form "sha256:<64 lower-case hex digits>".
// Anything else, including upper-case hex, other prefixes and surrounding
// space, is a BadInput error.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != hashStringLen || s[:len(HashPrefix)] != HashPrefix {
		return h, &Error{Kind: BadInput, Op: "parse hash", Msg: fmt.Sprintf("want %q followed by %d hex digits, got %s", HashPrefix, 2*HashSize, quoteShort(s))}
	}
	for i := len(HashPrefix); i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return h, &Error{Kind: BadInput, Op: "parse hash", Msg: fmt.Sprintf("invalid character %q at offset %d (lower-case hex only)", c, i)}
		}
	}
	if _, err := hex.Decode(h[:], []byte(s[len(HashPrefix):])); err != nil {
		return h, &Error{Kind: BadInput, Op: "parse hash", Err: err}
	}
	return h, nil
}

// MustParseHash is ParseHash for constants in tests and examples; it panics on error.
func MustParseHash(s string) Hash {
	h, err := ParseHash(s)
	if err != nil {
		panic(err)
	}
	return h
}

// String returns "sha256:<hex>".
func (h Hash) String() string {
	var buf [hashStringLen]byte
	copy(buf[:], HashPrefix)
	hex.Encode(buf[len(HashPrefix):], h[:])
	return string(buf[:])
}

// Hex returns the 64 hex digits without the prefix.
func (h Hash) Hex() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero Hash ("no hash").
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText implements encoding.TextMarshaler.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with the rules of ParseHash.
func (h *Hash) UnmarshalText(b []byte) error {
	v, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// quoteShort quotes s for an error message, cutting it to a readable length.
func quoteShort(s string) string {
	const max = 80
	if len(s) > max {
		return fmt.Sprintf("%q... (%d bytes)", s[:max], len(s))
	}
	return fmt.Sprintf("%q", s)
}
