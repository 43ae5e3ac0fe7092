package blobstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"framesync"
	"framesync/blobstore"
	"framesync/blobstore/blobstoretest"
)

// openDir opens a Dir in a new temp directory. When the test ends it checks
// that no temp file was left behind.
func openDir(t testing.TB) *blobstore.Dir {
	t.Helper()
	d, err := blobstore.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { checkNoTemp(t, d) })
	return d
}

// checkNoTemp fails if the temp directory of d holds any file.
func checkNoTemp(t testing.TB, d *blobstore.Dir) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(d.Root(), "tmp"))
	if err != nil {
		t.Errorf("reading temp directory: %v", err)
		return
	}
	for _, e := range entries {
		t.Errorf("temp file left behind: %s", e.Name())
	}
}

// dirHarness returns the conformance harness for Dir, with direct I/O on or off.
func dirHarness(direct bool) blobstoretest.Harness {
	return blobstoretest.Harness{
		Open: func(t *testing.T) blobstore.Store {
			d := openDir(t)
			d.ForTest().SetDirectIO(direct)
			return d
		},
		Corrupt: func(t *testing.T, s blobstore.Store, h framesync.Hash) {
			t.Helper()
			if err := s.(*blobstore.Dir).ForTest().Corrupt(h); err != nil {
				t.Fatal(err)
			}
		},
		SetModTime: func(t *testing.T, s blobstore.Store, h framesync.Hash, mt time.Time) {
			t.Helper()
			// The layout is documented, so a plain os.Chtimes does it.
			if err := os.Chtimes(s.(*blobstore.Dir).ForTest().Path(h), mt, mt); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func TestDirConformance(t *testing.T) {
	blobstoretest.Run(t, dirHarness(true))
}

func TestDirConformanceBuffered(t *testing.T) {
	if testing.Short() {
		t.Skip("the page cache path is also taken for every blob tail")
	}
	blobstoretest.Run(t, dirHarness(false))
}

func TestDirLayout(t *testing.T) {
	d := openDir(t)
	ctx := context.Background()
	data := []byte("layout")
	info, err := blobstore.PutBytes(ctx, d, data)
	if err != nil {
		t.Fatal(err)
	}
	hex := info.Hash.Hex()
	p := filepath.Join(d.Root(), "sha256", hex[:2], hex)
	if got := d.ForTest().Path(info.Hash); got != p {
		t.Fatalf("Path = %s, want %s", got, p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatalf("blob not at its documented place: %v", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != int64(len(data)) {
		t.Fatalf("blob file %v, %d bytes", fi.Mode(), fi.Size())
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("blob file mode %v, want read-only", fi.Mode().Perm())
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob file holds %q, %v", got, err)
	}
}

func TestOpenDirErrors(t *testing.T) {
	if _, err := blobstore.OpenDir(""); !errors.Is(err, framesync.BadInput) {
		t.Errorf("OpenDir(\"\"): %v; want a BadInput error", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := blobstore.OpenDir(file); err == nil {
		t.Errorf("OpenDir of a regular file succeeded")
	}
	if _, err := blobstore.OpenDir(filepath.Join(file, "sub")); err == nil {
		t.Errorf("OpenDir under a regular file succeeded")
	}
}

func TestDirRemovesStaleTemp(t *testing.T) {
	root := t.TempDir()
	d, err := blobstore.OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(root, "tmp")
	stale := filepath.Join(tmp, "put-stale")
	fresh := filepath.Join(tmp, "put-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	// A crash leaves temp files; they are never blobs.
	if n := countBlobs(t, d); n != 0 {
		t.Fatalf("Walk found %d blobs among temp files, want 0", n)
	}
	if _, err := blobstore.OpenDir(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file still there after OpenDir: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file (maybe another process's Put) removed by OpenDir: %v", err)
	}
}

// countBlobs returns the number of blobs Walk finds in s.
func countBlobs(t testing.TB, s blobstore.Store) int {
	t.Helper()
	n := 0
	if err := s.Walk(context.Background(), func(blobstore.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// contentInShard returns content whose hash starts with the byte first.
func contentInShard(first byte) []byte {
	for i := 0; ; i++ {
		b := []byte(strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26))
		if framesync.Sum(b)[0] == first {
			return b
		}
	}
}

func TestDirIgnoresJunk(t *testing.T) {
	d := openDir(t)
	ctx := context.Background()
	real, err := blobstore.PutBytes(ctx, d, []byte("real"))
	if err != nil {
		t.Fatal(err)
	}
	hex := real.Hash.Hex()
	blobs := filepath.Join(d.Root(), "sha256")
	other := framesync.Sum([]byte("other")).Hex()
	dirLike := framesync.Sum([]byte("a directory"))
	files := map[string]string{
		filepath.Join(blobs, hex[:2], "README"):                     "not a blob",
		filepath.Join(blobs, hex[:2], strings.ToUpper(hex)):         "upper case",
		filepath.Join(blobs, hex[:2], hex+".tmp"):                   "suffix",
		filepath.Join(blobs, hex[:2], other):                        "wrong shard",
		filepath.Join(blobs, "zz", other):                           "bad shard name",
		filepath.Join(blobs, strings.ToUpper(other[:2]), other):     "upper-case shard",
		filepath.Join(blobs, other[:2]+"x", other):                  "long shard name",
		filepath.Join(blobs, "stray"):                               "file in the blob directory",
		filepath.Join(d.Root(), other):                              "file at the root",
		filepath.Join(blobs, dirLike.Hex()[:2], dirLike.Hex(), "x"): "a directory named like a blob",
	}
	for p, body := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if runtime.GOOS != "windows" {
		link := framesync.Sum([]byte("link")).Hex()
		if err := os.MkdirAll(filepath.Join(blobs, link[:2]), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(d.ForTest().Path(real.Hash), filepath.Join(blobs, link[:2], link)); err != nil {
			t.Fatal(err)
		}
	}
	var seen []framesync.Hash
	if err := d.Walk(ctx, func(info blobstore.Info) error { seen = append(seen, info.Hash); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != real.Hash {
		t.Fatalf("Walk found %v, want only %s", seen, real.Hash)
	}

	// A directory where a blob would be is not a blob, and breaks nothing.
	if _, err := d.Stat(ctx, dirLike); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Stat of a directory named like a blob: %v; want ErrNotFound", err)
	}
	if _, _, err := d.Get(ctx, dirLike); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Get of a directory named like a blob: %v; want ErrNotFound", err)
	}
	if err := d.Delete(ctx, dirLike); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Delete of a directory named like a blob: %v; want ErrNotFound", err)
	}
	if _, err := blobstore.PutBytes(ctx, d, []byte("a directory")); err == nil {
		t.Errorf("Put of a blob whose place is taken by a directory succeeded")
	}

	// A file where a shard directory would be: errors, no panic.
	shardFile := contentInShard(0xcd)
	if err := os.WriteFile(filepath.Join(blobs, "cd"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Stat(ctx, framesync.Sum(shardFile)); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Stat under a file: %v; want ErrNotFound", err)
	}
	if _, err := blobstore.PutBytes(ctx, d, shardFile); err == nil {
		t.Errorf("Put into a shard that is a file succeeded")
	}
	if n := countBlobs(t, d); n != 1 {
		t.Errorf("Walk found %d blobs, want 1", n)
	}
}

func TestDirShared(t *testing.T) {
	// Two Dirs on one root, as two hubs sharing a directory.
	root := t.TempDir()
	a, err := blobstore.OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	b, err := blobstore.OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := bytes.Repeat([]byte("shared"), 200_000)
	var wg sync.WaitGroup
	for _, s := range []*blobstore.Dir{a, b, a, b} {
		wg.Go(func() {
			if _, err := blobstore.PutBytes(ctx, s, data); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := blobstore.ReadAll(ctx, b, framesync.Sum(data))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll through the other Dir: %d bytes, %v", len(got), err)
	}
	if n := countBlobs(t, a); n != 1 {
		t.Fatalf("Walk found %d blobs, want 1", n)
	}
	checkNoTemp(t, a)
}

func TestDirSyncOff(t *testing.T) {
	d := openDir(t)
	d.ForTest().SetSync(false)
	ctx := context.Background()
	data := bytes.Repeat([]byte{1, 2, 3}, 1<<20)
	info, err := blobstore.PutBytes(ctx, d, data)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.ForTest().SyncTime(); got != 0 {
		t.Errorf("SyncTime with sync off = %v, want 0", got)
	}
	d.ForTest().SetSync(true)
	if _, err := blobstore.PutBytes(ctx, d, data[1:]); err != nil {
		t.Fatal(err)
	}
	if got := d.ForTest().SyncTime(); got <= 0 {
		t.Errorf("SyncTime with sync on = %v, want > 0", got)
	}
	got, err := blobstore.ReadAll(ctx, d, info.Hash)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll: %d bytes, %v", len(got), err)
	}
}

func TestDirGetReaderIsNotAFile(t *testing.T) {
	// The reader verifies: it must not hand out the *os.File (which
	// io.Copy could use to bypass the check with sendfile).
	d := openDir(t)
	ctx := context.Background()
	info, err := blobstore.PutBytes(ctx, d, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := d.Get(ctx, info.Hash)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, ok := rc.(*os.File); ok {
		t.Fatal("Get returned an *os.File")
	}
	if _, ok := rc.(io.ReaderFrom); ok {
		t.Fatal("Get returned an io.ReaderFrom")
	}
}

func TestDirBatch(t *testing.T) {
	d, err := blobstore.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var b blobstore.Batcher = d
	ctx := context.Background()
	var hs []framesync.Hash
	for i := range 20 {
		data := []byte(fmt.Sprintf("blob %d", i))
		info, err := b.PutUnsynced(ctx, bytes.NewReader(data), framesync.Hash{})
		if err != nil {
			t.Fatal(err)
		}
		if info.Hash != framesync.Sum(data) {
			t.Fatalf("blob %d: hash %s", i, info.Hash)
		}
		hs = append(hs, info.Hash)
	}
	// A wrong expected hash stores nothing, as with Put.
	if _, err := b.PutUnsynced(ctx, strings.NewReader("x"), hs[0]); !errors.Is(err, blobstore.ErrHashMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
	if err := b.Sync(ctx, hs); err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		got, err := blobstore.ReadAll(ctx, d, h)
		if err != nil || string(got) != fmt.Sprintf("blob %d", i) {
			t.Fatalf("blob %d: %q %v", i, got, err)
		}
	}
}
