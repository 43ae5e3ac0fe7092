package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"framesync"
	"framesync/relay"
	"framesync/relay/relaytest"
)

// benchFrames is the size of the push benchmark's file: FRAMESYNC_BENCH_FRAMES
// frames (default 10,000) of 1,000 atoms.
func benchFrames() int {
	if n, err := strconv.Atoi(os.Getenv("FRAMESYNC_BENCH_FRAMES")); err == nil && n > 0 {
		return n
	}
	return 10000
}

// writeBenchFile writes an extxyz trajectory of n frames of atoms atoms
// where every frame has new positions and forces (an MD run) and the same
// numbers and cell.
func writeBenchFile(tb testing.TB, path string, n, atoms int) int64 {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w := framesync.NewXYZWriter(bw)
	rng := rand.New(rand.NewPCG(1, 2))
	nums := make([]int64, atoms)
	for i := range nums {
		nums[i] = []int64{1, 6, 7, 8}[i%4]
	}
	for k := range n {
		pos := make([]float64, 3*atoms)
		forces := make([]float64, 3*atoms)
		for i := range pos {
			pos[i] = rng.Float64() * 20
			forces[i] = rng.NormFloat64()
		}
		fr := framesync.NewFrame(nums, pos)
		fr.SetCell([9]float64{20, 0, 0, 0, 20, 0, 0, 0, 20})
		fr.SetPBC(true, true, true)
		fr.SetField("calc.forces", framesync.Float64Array(forces, atoms, 3))
		fr.SetField("calc.energy", rng.NormFloat64())
		fr.SetField("info.step", int64(k))
		if err := w.Write(fr); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	bw.Flush()
	fi, _ := f.Stat()
	f.Close()
	return fi.Size()
}

// BenchmarkPush pushes a 10,000-frame, 1,000-atom extxyz file to a hub on
// 127.0.0.1 (directory blob store with fsync, as in production) and
// reports frames/s and MB/s end to end; parse is reading the same file
// with no hub, the baseline measured in the same run.
func BenchmarkPush(b *testing.B) {
	n := benchFrames()
	dir := b.TempDir()
	in := filepath.Join(dir, "bench.extxyz")
	size := writeBenchFile(b, in, n, 1000)
	b.Run("parse", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			f, _ := os.Open(in)
			r := framesync.NewXYZReader(f)
			for {
				if _, err := r.Next(); err == io.EOF {
					break
				} else if err != nil {
					b.Fatal(err)
				}
			}
			f.Close()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	})
	b.Run("push", func(b *testing.B) {
		// A data directory of its own: documents and blobs are fsynced,
		// as in production.
		h := relaytest.Start(b, relay.Options{Dir: b.TempDir()})
		b.SetBytes(size)
		k := 0
		for b.Loop() {
			k++
			cache := filepath.Join(dir, fmt.Sprint("cache", k))
			var out, errb nopWriter
			code := run(context.Background(), []string{"push", in, "--room", fmt.Sprint("bench", k), "-q", "--hub", h.URL, "--cache", cache}, &out, &errb)
			if code != 0 {
				b.Fatalf("push: exit %d", code)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	})
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
