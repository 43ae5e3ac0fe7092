package framesync

import (
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

// benchFrame returns a frame of n atoms: float64 positions and int64 numbers.
func benchFrame(n int) *Frame {
	r := rand.New(rand.NewPCG(1, 2))
	nums := make([]int64, n)
	pos := make([]float64, 3*n)
	for i := range nums {
		nums[i] = int64(1 + r.IntN(20))
	}
	for i := range pos {
		pos[i] = r.Float64() * 100
	}
	return NewFrame(nums, pos)
}

const benchAtoms = 100_000

// BenchmarkMemcpy is the baseline: copying the frame's array bytes once.
func BenchmarkMemcpy100k(b *testing.B) {
	f := benchFrame(benchAtoms)
	size := len(f.Positions.Data) + len(f.Numbers.Data)
	dst := make([]byte, size)
	b.SetBytes(int64(size))
	for b.Loop() {
		copy(dst, f.Positions.Data)
		copy(dst[len(f.Positions.Data):], f.Numbers.Data)
	}
}

func BenchmarkSHA256Frame100k(b *testing.B) {
	enc, _ := benchFrame(benchAtoms).Encode()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		sha256.Sum256(enc)
	}
}

func BenchmarkEncode100k(b *testing.B) {
	f := benchFrame(benchAtoms)
	enc, _ := f.Encode()
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode100k(b *testing.B) {
	enc, _ := benchFrame(benchAtoms).Encode()
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeFrame(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSplit100k(b *testing.B) {
	f := benchFrame(benchAtoms)
	enc, _ := f.Encode()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, _, err := f.Split(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJoinEncoded100k(b *testing.B) {
	m, blobs, _ := benchFrame(benchAtoms).Split()
	get := func(h Hash) ([]byte, error) { return blobs[h], nil }
	enc, _ := JoinEncoded(m, get)
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := JoinEncoded(m, get); err != nil {
			b.Fatal(err)
		}
	}
}
