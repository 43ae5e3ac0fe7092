package framesync

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The fuzz targets check that decoders never panic, and that whatever decodes
// re-encodes canonically and decodes again to the same value.
// Run one with: go test -run '^$' -fuzz FuzzDecodeFrame -fuzztime 60s .

func FuzzDecodeFrame(f *testing.F) {
	golden, err := os.ReadFile(filepath.Join("testdata", "frame-small.msgpack"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	g := goldenFrame()
	g.Arrays["species"] = StringArray([]string{"O", "H", "H"})
	g.Info["f32"] = Float32Array([]float32{1, 2})
	if b, err := g.Encode(); err == nil {
		f.Add(b)
	}
	f.Add([]byte{0x80})
	f.Add([]byte{0x81, 0xa6, 'i', 'n', 'f', 'o', '.', 'x', 0x83, 0xc4, 2, 'n', 'd', 0xc2, 0xc4, 4, 't', 'y', 'p', 'e', 0xa3, '<', 'i', '8', 0xc4, 4, 'd', 'a', 't', 'a', 0xc4, 8, 9, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		fr, err := DecodeFrame(in)
		if err != nil {
			return
		}
		b, err := fr.Encode()
		if err != nil {
			t.Fatalf("decoded frame does not encode: %v", err)
		}
		fr2, err := DecodeFrame(b)
		if err != nil {
			t.Fatalf("canonical encoding does not decode: %v", err)
		}
		b2, err := fr2.Encode()
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("re-encoding is not stable: %v", err)
		}
		// Split and join agree with Encode.
		m, blobs, err := fr.Split()
		if err != nil {
			t.Fatalf("split: %v", err)
		}
		j, err := JoinEncoded(m, func(h Hash) ([]byte, error) { return blobs[h], nil })
		if err != nil || !bytes.Equal(j, b) {
			t.Fatalf("JoinEncoded differs from Encode: %v", err)
		}
	})
}

func FuzzDecodeManifest(f *testing.F) {
	m, _, err := goldenFrame().Split()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(m.Encode())
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := DecodeManifest(in)
		if err != nil {
			return
		}
		m2, err := DecodeManifest(m.Encode())
		if err != nil || m2.Hash() != m.Hash() {
			t.Fatalf("manifest round trip: %v", err)
		}
	})
}

func FuzzParseHash(f *testing.F) {
	f.Add(Sum([]byte("x")).String())
	f.Add("sha256:")
	f.Add("SHA256:00")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHash(s)
		if err != nil {
			return
		}
		if h.String() != s {
			t.Fatalf("ParseHash(%q).String() = %q", s, h.String())
		}
	})
}

func FuzzParseFieldList(f *testing.F) {
	f.Add("positions,numbers,arrays.forces,info")
	f.Add("arrays.é")
	f.Fuzz(func(t *testing.T, s string) {
		names, err := ParseFieldList(s)
		if err != nil {
			return
		}
		// Every accepted name selects safely.
		if _, err := goldenFrame().Select(names...); err != nil && !isKind(err, NotFound) {
			t.Fatalf("Select(%q): %v", names, err)
		}
	})
}

func isKind(err error, k Kind) bool { return KindOf(err) == k }
