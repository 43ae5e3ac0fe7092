package blobstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"framesync"
	"framesync/blobstore"
	"framesync/blobstore/blobstoretest"
)

// benchSize is the blob size of the benchmarks: a large frame field
// (100,000 atoms × 3 × float64 is 2.4 MB).
const benchSize = 2_400_000

// benchData returns benchSize deterministic bytes.
func benchData(b *testing.B) []byte {
	b.Helper()
	data, err := io.ReadAll(blobstoretest.Generate(benchSize, 1))
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkSHA256_2_4MB is the baseline: crypto/sha256 over the bytes that
// BenchmarkDirPut_2_4MB stores, changed the same way every iteration.
func BenchmarkSHA256_2_4MB(b *testing.B) {
	data := benchData(b)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	var sum [sha256.Size]byte
	for i := 0; b.Loop(); i++ {
		binary.LittleEndian.PutUint64(data, uint64(i))
		sum = sha256.Sum256(data)
	}
	_ = sum
}

// benchPut puts fresh 2.4 MB blobs (the first 8 bytes count the iterations,
// so no Put is a dedup) into s, and reports the time spent in fsync.
func benchPut(b *testing.B, s blobstore.Store) {
	data := benchData(b)
	ctx := context.Background()
	d, _ := s.(*blobstore.Dir)
	var synced0 float64
	if d != nil {
		synced0 = float64(d.ForTest().SyncTime())
	}
	b.SetBytes(benchSize)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		binary.LittleEndian.PutUint64(data, uint64(n))
		n++
		if _, err := s.Put(ctx, bytes.NewReader(data), framesync.Hash{}); err != nil {
			b.Fatal(err)
		}
	}
	if d != nil {
		b.ReportMetric((float64(d.ForTest().SyncTime())-synced0)/float64(n)/1e3, "fsync-µs/op")
	}
}

// benchDir opens a Dir in a temp directory, with direct I/O and fsync on or
// off. It creates the 256 shard directories first, as in a store in use:
// otherwise the first few hundred Puts each pay for a mkdir, which costs as
// much as the Put itself on some filesystems.
func benchDir(b *testing.B, direct, sync bool) *blobstore.Dir {
	d, err := blobstore.OpenDir(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	for i := range 256 {
		if err := os.Mkdir(filepath.Join(d.Root(), "sha256", fmt.Sprintf("%02x", i)), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	d.ForTest().SetDirectIO(direct)
	d.ForTest().SetSync(sync)
	return d
}

// BenchmarkDirPut_2_4MB measures Dir.Put as shipped: durable (fsync of the
// blob and its directory), with O_DIRECT on Linux.
func BenchmarkDirPut_2_4MB(b *testing.B) {
	benchPut(b, benchDir(b, true, true))
}

// BenchmarkDirPutVariants_2_4MB breaks BenchmarkDirPut_2_4MB down: through
// the page cache instead of O_DIRECT, without fsync (not durable: for
// comparison only), and Puts of content already stored, with and without
// its hash as the expected hash.
func BenchmarkDirPutVariants_2_4MB(b *testing.B) {
	b.Run("buffered+fsync", func(b *testing.B) { benchPut(b, benchDir(b, false, true)) })
	b.Run("direct+nosync", func(b *testing.B) { benchPut(b, benchDir(b, true, false)) })
	b.Run("buffered+nosync", func(b *testing.B) { benchPut(b, benchDir(b, false, false)) })
	b.Run("dedup", func(b *testing.B) { benchDedup(b, true) })
	b.Run("dedup-unknown-hash", func(b *testing.B) { benchDedup(b, false) })
}

// benchDedup puts the same content again and again, with or without its
// hash as the expected hash.
func benchDedup(b *testing.B, known bool) {
	{
		d := benchDir(b, true, true)
		data := benchData(b)
		ctx := context.Background()
		if _, err := blobstore.PutBytes(ctx, d, data); err != nil {
			b.Fatal(err)
		}
		want := framesync.Hash{}
		if known {
			want = framesync.Sum(data)
		}
		b.SetBytes(benchSize)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.Put(ctx, bytes.NewReader(data), want); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// benchGet reads one 2.4 MB blob of s to the end, verified, every iteration.
func benchGet(b *testing.B, s blobstore.Store) {
	data := benchData(b)
	ctx := context.Background()
	info, err := blobstore.PutBytes(ctx, s, data)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		rc, _, err := s.Get(ctx, info.Hash)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, rc); err != nil || n != benchSize {
			b.Fatalf("read %d bytes, %v", n, err)
		}
		rc.Close()
	}
}

// BenchmarkDirGet_2_4MB measures a verified read of a blob (warm page cache
// after the first iteration).
func BenchmarkDirGet_2_4MB(b *testing.B) {
	benchGet(b, benchDir(b, true, true))
}

// BenchmarkMemoryPut_2_4MB measures Memory.Put, for comparison.
func BenchmarkMemoryPut_2_4MB(b *testing.B) {
	benchPut(b, blobstore.NewMemory())
}

// BenchmarkMemoryGet_2_4MB measures a verified read from Memory, for comparison.
func BenchmarkMemoryGet_2_4MB(b *testing.B) {
	benchGet(b, blobstore.NewMemory())
}
