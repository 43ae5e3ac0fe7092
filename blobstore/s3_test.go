package blobstore_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/minio/minio-go/v7"

	"framesync"
	"framesync/blobstore"
	"framesync/blobstore/blobstoretest"
	"framesync/blobstore/s3test"
)

// openS3 opens an S3 store on bucket of srv with key prefix prefix. When
// the test ends it checks that no Put left a temporary object or an
// incomplete upload behind, listed or not.
func openS3(t testing.TB, srv *s3test.Server, bucket, prefix string) *blobstore.S3 {
	t.Helper()
	s, err := blobstore.OpenS3(context.Background(), s3Config(srv, bucket, prefix))
	if err != nil {
		t.Fatalf("OpenS3: %v", err)
	}
	t.Cleanup(func() {
		checkNoLeftovers(t, s)
		checkNoParts(t, srv, bucket)
	})
	return s
}

// checkNoLeftovers fails if s holds temporary objects or incomplete uploads.
func checkNoLeftovers(t testing.TB, s *blobstore.S3) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	left, err := s.ForTest().Leftovers(ctx)
	if err != nil {
		t.Errorf("listing leftovers: %v", err)
	}
	for _, k := range left {
		t.Errorf("left behind: %s", k)
	}
}

// s3Harness returns the conformance harness for S3 stores on srv: each
// subtest gets a new bucket and a two-segment key prefix.
func s3Harness(srv *s3test.Server) blobstoretest.Harness {
	return blobstoretest.Harness{
		Open: func(t *testing.T) blobstore.Store {
			return openS3(t, srv, srv.NewBucket(t), "hub/blobs")
		},
		Corrupt: func(t *testing.T, s blobstore.Store, h framesync.Hash) {
			t.Helper()
			if err := s.(*blobstore.S3).ForTest().Corrupt(context.Background(), h); err != nil {
				t.Fatal(err)
			}
		},
		SetModTime: func(t *testing.T, s blobstore.Store, h framesync.Hash, mt time.Time) {
			t.Helper()
			// No S3 call sets LastModified; versitygw's POSIX backend
			// reports the file's mtime.
			ft := s.(*blobstore.S3).ForTest()
			if err := os.Chtimes(srv.ObjectPath(ft.Bucket(), ft.Key(h)), mt, mt); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func TestS3Conformance(t *testing.T) {
	blobstoretest.Run(t, s3Harness(s3test.Start(t)))
}

// failAfter returns a reader of the first n bytes of content seed that
// then fails with errMidStream.
func failAfter(n int64, seed uint64) io.Reader {
	return io.MultiReader(io.LimitReader(blobstoretest.Generate(1<<40, seed), n), iotest.ErrReader(errMidStream))
}

// errMidStream is the error of the readers that fail in the middle of a Put.
var errMidStream = errors.New("boom")

// hashOf returns the hash of size bytes of content seed.
func hashOf(t testing.TB, size int64, seed uint64) framesync.Hash {
	t.Helper()
	h := framesync.NewHasher()
	if _, err := io.Copy(h, blobstoretest.Generate(size, seed)); err != nil {
		t.Fatal(err)
	}
	return framesync.HashOf(h)
}

// checkStream reads blob h of s to the end and fails unless it is size
// bytes of content seed.
func checkStream(t testing.TB, s blobstore.Store, h framesync.Hash, size int64, seed uint64) {
	t.Helper()
	rc, info, err := s.Get(context.Background(), h)
	if err != nil {
		t.Fatalf("Get(%s): %v", h, err)
	}
	defer rc.Close()
	if info.Size != size {
		t.Errorf("Get(%s) Info.Size = %d, want %d", h, info.Size, size)
	}
	want := blobstoretest.Generate(size, seed)
	a, b := make([]byte, 64<<10), make([]byte, 64<<10)
	var off int64
	for {
		n, rerr := io.ReadFull(rc, a)
		if _, err := io.ReadFull(want, b[:n]); err != nil {
			t.Fatalf("blob %s is longer than %d bytes", h, size)
		}
		if !bytes.Equal(a[:n], b[:n]) {
			t.Fatalf("blob %s differs within bytes %d-%d", h, off, off+int64(n))
		}
		off += int64(n)
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			t.Fatalf("reading %s at %d: %v", h, off, rerr)
		}
	}
	if off != size {
		t.Fatalf("blob %s has %d bytes, want %d", h, off, size)
	}
}

// TestS3Multipart puts blobs around the sizes where Put switches from one
// request to a multipart upload, and where parts end, with and without the
// expected hash.
func TestS3Multipart(t *testing.T) {
	srv := s3test.Start(t)
	s := openS3(t, srv, srv.Bucket, "mp")
	ctx := context.Background()
	const mib = 1 << 20
	sizes := []int64{5*mib - 1, 5 * mib, 5*mib + 1, 10 * mib, 10*mib + 1, 11 * mib, 17*mib + 3}
	for i, size := range sizes {
		seed := uint64(100 + i)
		h := hashOf(t, size, seed)
		for _, want := range []framesync.Hash{{}, h} {
			info, err := s.Put(ctx, iotest.HalfReader(blobstoretest.Generate(size, seed)), want)
			if err != nil {
				t.Fatalf("Put(%d bytes, want %v): %v", size, !want.IsZero(), err)
			}
			if info.Hash != h || info.Size != size {
				t.Fatalf("Put(%d bytes) = %s, %d bytes; want %s", size, info.Hash, info.Size, h)
			}
			checkStream(t, s, h, size, seed)
		}
		st, err := s.Stat(ctx, h)
		if err != nil || st.Size != size {
			t.Fatalf("Stat = %+v, %v; want %d bytes", st, err, size)
		}
	}
	if n := countBlobs(t, s); n != len(sizes) {
		t.Fatalf("Walk found %d blobs, want %d", n, len(sizes))
	}
}

// TestS3PutFailsHalfway checks that a Put that fails after some parts went
// up (reader error, hash mismatch, cancelled context) leaves no blob, no
// temporary object and no incomplete upload, and that a failed re-put
// leaves the stored blob intact.
func TestS3PutFailsHalfway(t *testing.T) {
	srv := s3test.Start(t)
	s := openS3(t, srv, srv.Bucket, "")
	ctx := context.Background()
	const size = 13<<20 + 5
	h := hashOf(t, size, 1)
	for _, want := range []framesync.Hash{{}, h} {
		_, err := s.Put(ctx, failAfter(12<<20, 1), want)
		if !errors.Is(err, errMidStream) {
			t.Fatalf("Put from a reader failing after 12 MiB (want %v): %v; want the reader's error", !want.IsZero(), err)
		}
		checkNoBlobs(t, s)
		checkNoLeftovers(t, s)

		cctx, cancel := context.WithCancel(ctx)
		r := &cancelAfter{r: blobstoretest.Generate(size, 1), after: 8 << 20, cancel: cancel}
		_, err = s.Put(cctx, r, want)
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Put cancelled after 8 MiB: %v; want context.Canceled", err)
		}
		checkNoBlobs(t, s)
		checkNoLeftovers(t, s)
	}
	wrong := h
	wrong[0] ^= 1
	_, err := s.Put(ctx, blobstoretest.Generate(size, 1), wrong)
	if !errors.Is(err, blobstore.ErrHashMismatch) {
		t.Fatalf("Put of %d bytes with a wrong hash: %v; want ErrHashMismatch", size, err)
	}
	checkNoBlobs(t, s)
	checkNoLeftovers(t, s)

	// A failed re-put leaves the stored blob intact.
	if _, err := s.Put(ctx, blobstoretest.Generate(size, 1), h); err != nil {
		t.Fatal(err)
	}
	for _, want := range []framesync.Hash{{}, h} {
		if _, err := s.Put(ctx, failAfter(12<<20, 1), want); !errors.Is(err, errMidStream) {
			t.Fatalf("re-Put from a failing reader: %v", err)
		}
	}
	other := hashOf(t, size, 2)
	if _, err := s.Put(ctx, blobstoretest.Generate(size, 2), h); !errors.Is(err, blobstore.ErrHashMismatch) {
		t.Fatalf("Put of other content under an existing hash: %v; want ErrHashMismatch", err)
	}
	if ok, err := blobstore.Has(ctx, s, other); ok || err != nil {
		t.Fatalf("Has(other content) = %v, %v; want false", ok, err)
	}
	checkStream(t, s, h, size, 1)
	if n := countBlobs(t, s); n != 1 {
		t.Fatalf("Walk found %d blobs, want 1", n)
	}
	checkNoParts(t, srv, srv.Bucket)
}

// checkNoParts fails if versitygw keeps files of multipart uploads of
// bucket: parts written after an abort are not listed by the S3 API, but
// stay on disk.
func checkNoParts(t testing.TB, srv *s3test.Server, bucket string) {
	t.Helper()
	root := filepath.Join(srv.Dir, bucket, ".sgwtmp", "multipart")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			t.Errorf("multipart upload file left on the server: %s", path)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("walking %s: %v", root, err)
	}
}

// cancelAfter is a reader that calls cancel once it has returned after bytes.
type cancelAfter struct {
	r      io.Reader
	after  int64
	n      int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n >= c.after {
		c.cancel()
	}
	return n, err
}

// checkNoBlobs fails if s holds any blob.
func checkNoBlobs(t testing.TB, s blobstore.Store) {
	t.Helper()
	if n := countBlobs(t, s); n != 0 {
		t.Fatalf("store holds %d blobs, want none", n)
	}
}

// TestS3CorruptObject overwrites blobs through the S3 API, as a faulty
// server or another writer could, and checks that reading them to the end
// reports ErrCorrupt while Stat still finds them.
func TestS3CorruptObject(t *testing.T) {
	srv := s3test.Start(t)
	s := openS3(t, srv, srv.Bucket, "c")
	ctx := context.Background()
	ft := s.ForTest()
	good := []byte("the right content")
	for name, bad := range map[string][]byte{
		"flipped":   []byte("the right cOntent"),
		"truncated": good[:5],
		"longer":    append(bytes.Clone(good), '!'),
		"empty":     nil,
		"other":     bytes.Repeat([]byte{7}, 8<<20), // and longer than one request
	} {
		info, err := blobstore.PutBytes(ctx, s, good)
		if err != nil {
			t.Fatal(err)
		}
		if err := ft.PutObject(ctx, ft.Key(info.Hash), bad); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, info.Hash); err != nil {
			t.Errorf("%s: Stat of a corrupt blob: %v", name, err)
		}
		rc, _, err := s.Get(ctx, info.Hash)
		if err != nil {
			t.Fatalf("%s: Get: %v", name, err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if !errors.Is(err, blobstore.ErrCorrupt) || framesync.KindOf(err) != framesync.Corrupt {
			t.Errorf("%s: reading a corrupt blob: %v; want ErrCorrupt", name, err)
		}
		if b, err := blobstore.ReadAll(ctx, s, info.Hash); !errors.Is(err, blobstore.ErrCorrupt) || b != nil {
			t.Errorf("%s: ReadAll of a corrupt blob = %d bytes, %v; want ErrCorrupt", name, len(b), err)
		}
		if err := s.Delete(ctx, info.Hash); err != nil {
			t.Fatal(err)
		}
	}
}

// TestS3LargeBlobMemory puts and gets a 64 MiB blob, generated on the fly,
// and checks that memory use stays a small fraction of its size, through
// both multipart paths (unknown hash: temporary key and server-side copy;
// known hash: straight to the blob's key).
func TestS3LargeBlobMemory(t *testing.T) {
	srv := s3test.Start(t)
	s := openS3(t, srv, srv.Bucket, "big")
	ctx := context.Background()
	const size = 64 << 20
	const limit = 16 << 20 // a quarter of the blob
	h := hashOf(t, size, 9)
	for _, want := range []framesync.Hash{{}, h} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		info, err := s.Put(ctx, blobstoretest.Generate(size, 9), want)
		elapsed := time.Since(start)
		runtime.ReadMemStats(&after)
		if err != nil || info.Hash != h {
			t.Fatalf("Put = %s, %v; want %s", info.Hash, err, h)
		}
		alloc := after.TotalAlloc - before.TotalAlloc
		heap := int64(after.HeapInuse) - int64(before.HeapInuse)
		t.Logf("Put of 64 MiB (hash known: %v): %v, %.0f MB/s, allocated %d KiB, heap in use grew %d KiB",
			!want.IsZero(), elapsed, size/1e6/elapsed.Seconds(), alloc>>10, heap>>10)
		if alloc > limit || heap > limit {
			t.Errorf("Put of 64 MiB allocated %d MiB, heap grew %d MiB; want at most %d MiB", alloc>>20, heap>>20, limit>>20)
		}

		runtime.GC()
		runtime.ReadMemStats(&before)
		start = time.Now()
		rc, _, err := s.Get(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		elapsed = time.Since(start)
		runtime.ReadMemStats(&after)
		if err != nil || n != size {
			t.Fatalf("Get: %d bytes, %v", n, err)
		}
		alloc = after.TotalAlloc - before.TotalAlloc
		t.Logf("verified Get of 64 MiB: %v, %.0f MB/s, allocated %d KiB", elapsed, size/1e6/elapsed.Seconds(), alloc>>10)
		if alloc > limit {
			t.Errorf("Get of 64 MiB allocated %d MiB; want at most %d MiB", alloc>>20, limit>>20)
		}
	}
}

// TestS3ServerRestart restarts the server between operations: the same
// store works again once it is back, and fails while it is down.
func TestS3ServerRestart(t *testing.T) {
	srv := s3test.Start(t)
	s := openS3(t, srv, srv.Bucket, "restart")
	ctx := context.Background()
	small := mustPut(t, s, []byte("before the restart"))
	const size = 7<<20 + 1
	large, err := s.Put(ctx, blobstoretest.Generate(size, 3), framesync.Hash{})
	if err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = s.Stat(dctx, small.Hash)
	cancel()
	if err == nil {
		t.Fatal("Stat with the server down succeeded")
	}
	t.Logf("Stat with the server down: %v (kind %s)", err, framesync.KindOf(err).Code())
	srv.Restart(t)

	checkBytes(t, s, small.Hash, []byte("before the restart"))
	checkStream(t, s, large.Hash, size, 3)
	srv.Restart(t)
	// Puts first this time: both kinds of upload.
	again := mustPut(t, s, []byte("after the restart"))
	h2 := hashOf(t, size, 4)
	if _, err := s.Put(ctx, blobstoretest.Generate(size, 4), h2); err != nil {
		t.Fatalf("multipart Put after a restart: %v", err)
	}
	srv.Restart(t)
	if n := countBlobs(t, s); n != 4 {
		t.Fatalf("Walk after a restart found %d blobs, want 4", n)
	}
	srv.Restart(t)
	if err := s.Delete(ctx, again.Hash); err != nil {
		t.Fatalf("Delete after a restart: %v", err)
	}
	checkStream(t, s, h2, size, 4)
}

// mustPut stores b in s.
func mustPut(t testing.TB, s blobstore.Store, b []byte) blobstore.Info {
	t.Helper()
	info, err := blobstore.PutBytes(context.Background(), s, b)
	if err != nil {
		t.Fatalf("PutBytes: %v", err)
	}
	return info
}

// checkBytes fails unless blob h of s reads back as want.
func checkBytes(t testing.TB, s blobstore.Store, h framesync.Hash, want []byte) {
	t.Helper()
	got, err := blobstore.ReadAll(context.Background(), s, h)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ReadAll(%s) = %q, %v; want %q", h, got, err, want)
	}
}

// TestS3Layout checks the documented keys, that Walk ignores keys not
// named like blobs, and that stores with different prefixes in one bucket
// do not see each other's blobs.
func TestS3Layout(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	root := openS3(t, srv, srv.Bucket, "")
	a := openS3(t, srv, srv.Bucket, "a")
	ab := openS3(t, srv, srv.Bucket, "a/b")
	a2 := openS3(t, srv, srv.Bucket, "a2")

	info := mustPut(t, a, []byte("in a"))
	hex := info.Hash.Hex()
	if key := a.ForTest().Key(info.Hash); key != "a/sha256/"+hex[:2]+"/"+hex {
		t.Fatalf("Key = %s", key)
	}
	if _, err := os.Stat(srv.ObjectPath(srv.Bucket, "a/sha256/"+hex[:2]+"/"+hex)); err != nil {
		t.Fatalf("blob not at its documented key: %v", err)
	}
	mustPut(t, root, []byte("at the root"))
	mustPut(t, ab, []byte("in a/b"))
	for name, s := range map[string]*blobstore.S3{"root": root, "a": a, "a/b": ab} {
		if n := countBlobs(t, s); n != 1 {
			t.Errorf("store %s: Walk found %d blobs, want 1", name, n)
		}
	}
	checkNoBlobs(t, a2)
	if ok, _ := blobstore.Has(ctx, ab, info.Hash); ok {
		t.Errorf("store a/b sees a blob of store a")
	}

	other := framesync.Sum([]byte("other")).Hex()
	shard := otherShard(hex)
	ft := a.ForTest()
	for _, key := range []string{
		"a/sha256/" + shard + "/" + hex,                        // wrong shard
		"a/sha256/" + hex,                                      // no shard
		"a/sha256/" + other[:2] + "/" + other + ".tmp",         // suffix
		"a/sha256/" + other[:2] + "/" + strings.ToUpper(other), // upper case
		"a/sha256/" + other[:2] + "/" + other[:63],             // short
		"a/sha256/" + other[:2] + "/x/" + other,                // deeper
		"a/sha256/zz/" + other,                                 // not a shard
		"a/tmp/put-junk",                                       // a temporary object
		"a/other/" + other,                                     // another directory
	} {
		if err := ft.PutObject(ctx, key, []byte("junk")); err != nil {
			t.Fatalf("PutObject(%s): %v", key, err)
		}
	}
	var seen []framesync.Hash
	err := a.Walk(ctx, func(i blobstore.Info) error { seen = append(seen, i.Hash); return nil })
	if err != nil || len(seen) != 1 || seen[0] != info.Hash {
		t.Fatalf("Walk among junk = %v, %v; want only %s", seen, err, info.Hash)
	}
	// The temporary object is young: OpenS3 leaves it; an old one goes.
	if _, err := blobstore.OpenS3(ctx, s3Config(srv, srv.Bucket, "a")); err != nil {
		t.Fatal(err)
	}
	if left, _ := ft.Leftovers(ctx); len(left) != 1 {
		t.Fatalf("leftovers after OpenS3 = %v, want the young temporary object", left)
	}
	mc, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	core := minio.Core{Client: mc}
	if _, err := core.NewMultipartUpload(ctx, srv.Bucket, "a/sha256/"+hex[:2]+"/"+hex, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if left, _ := ft.Leftovers(ctx); len(left) != 2 {
		t.Fatalf("leftovers = %v, want the temporary object and the upload", left)
	}
	// Not the store's: other programs may share the bucket.
	if err := ft.PutObject(ctx, "a/tmp/not-ours", []byte("keep")); err != nil {
		t.Fatal(err)
	}
	otherID, err := core.NewMultipartUpload(ctx, srv.Bucket, "a/other/upload", minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ft.RemoveStale(ctx, time.Now().Add(time.Minute))
	if left, err := ft.Leftovers(ctx); err != nil || strings.Join(left, " ") != "upload:a/other/upload a/tmp/not-ours" {
		t.Fatalf("leftovers after removing stale ones = %v, %v; want only those not the store's", left, err)
	}
	if err := core.AbortMultipartUpload(ctx, srv.Bucket, "a/other/upload", otherID); err != nil {
		t.Fatal(err)
	}
	if err := mc.RemoveObject(ctx, srv.Bucket, "a/tmp/not-ours", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	checkBytes(t, a, info.Hash, []byte("in a"))
}

// otherShard returns a shard name that is not hex's.
func otherShard(hex string) string {
	if hex[:2] == "00" {
		return "01"
	}
	return "00"
}

// s3Config returns the configuration of a store on bucket of srv.
func s3Config(srv *s3test.Server, bucket, prefix string) blobstore.S3Config {
	return blobstore.S3Config{
		Endpoint: srv.Endpoint, Bucket: bucket, Prefix: prefix,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Region: "us-east-1", PlainHTTP: true,
	}
}

// TestOpenS3Errors checks the errors of OpenS3 for a bad configuration, a
// missing bucket and wrong credentials.
func TestOpenS3Errors(t *testing.T) {
	srv := s3test.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	good := s3Config(srv, srv.Bucket, "")
	for name, mod := range map[string]func(*blobstore.S3Config){
		"no endpoint":      func(c *blobstore.S3Config) { c.Endpoint = "" },
		"scheme":           func(c *blobstore.S3Config) { c.Endpoint = "http://" + c.Endpoint },
		"no bucket":        func(c *blobstore.S3Config) { c.Bucket = "" },
		"bad bucket":       func(c *blobstore.S3Config) { c.Bucket = "No_Such" },
		"no secret":        func(c *blobstore.S3Config) { c.SecretKey = "" },
		"prefix slash":     func(c *blobstore.S3Config) { c.Prefix = "/a" },
		"prefix trailing":  func(c *blobstore.S3Config) { c.Prefix = "a/" },
		"prefix dot dot":   func(c *blobstore.S3Config) { c.Prefix = "a/../b" },
		"prefix empty seg": func(c *blobstore.S3Config) { c.Prefix = "a//b" },
	} {
		cfg := good
		mod(&cfg)
		if _, err := blobstore.OpenS3(ctx, cfg); framesync.KindOf(err) != framesync.BadInput {
			t.Errorf("%s: OpenS3: %v; want a BadInput error", name, err)
		}
	}
	cfg := good
	cfg.Bucket = "no-such-bucket"
	if _, err := blobstore.OpenS3(ctx, cfg); !errors.Is(err, framesync.NotFound) || !strings.Contains(err.Error(), "no-such-bucket") {
		t.Errorf("OpenS3 of a missing bucket: %v; want a NotFound error naming it", err)
	}
	cfg = good
	cfg.SecretKey = "wrong-secret"
	_, err := blobstore.OpenS3(ctx, cfg)
	if err == nil || strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("OpenS3 with a wrong secret: %v; want an error without the secret", err)
	}
	t.Logf("OpenS3 with a wrong secret: %v", err)
}

// TestOpen checks Open's location forms against a real server and
// directories.
func TestOpen(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	noEnv := func(string) string { return "" }

	st, err := blobstore.Open(ctx, srv.URL(srv.Bucket, "via/url"), noEnv)
	if err != nil {
		t.Fatalf("Open(s3 URL): %v", err)
	}
	s, ok := st.(*blobstore.S3)
	if !ok {
		t.Fatalf("Open(s3 URL) = %T, want *blobstore.S3", st)
	}
	t.Cleanup(func() { checkNoLeftovers(t, s) })
	if want := "s3://" + srv.Endpoint + "/" + srv.Bucket + "/via/url"; s.String() != want {
		t.Errorf("String() = %q, want %q", s.String(), want)
	}
	info := mustPut(t, s, []byte("through a URL"))
	if key := s.ForTest().Key(info.Hash); !strings.HasPrefix(key, "via/url/sha256/") {
		t.Errorf("Key = %s, want it under via/url/", key)
	}

	// Credentials from the environment.
	env := map[string]string{"AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": srv.SecretKey}
	loc := "s3://" + srv.Endpoint + "/" + srv.Bucket + "/via/url?secure=false"
	st, err = blobstore.Open(ctx, loc, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("Open(%s) with credentials in env: %v", loc, err)
	}
	checkBytes(t, st, info.Hash, []byte("through a URL"))

	dir := t.TempDir()
	for _, loc := range []string{dir, "file://" + dir, "file://localhost" + dir} {
		st, err := blobstore.Open(ctx, loc, nil)
		if err != nil {
			t.Fatalf("Open(%s): %v", loc, err)
		}
		if d, ok := st.(*blobstore.Dir); !ok || d.Root() != dir {
			t.Fatalf("Open(%s) = %T %v, want a Dir at %s", loc, st, st, dir)
		}
	}

	// Failures return a nil Store, not one holding a nil pointer.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := "s3://" + srv.AccessKey + ":" + srv.SecretKey + "@" + srv.Endpoint + "/no-such-bucket?secure=false"
	for _, loc := range []string{filepath.Join(file, "sub"), "file://" + filepath.Join(file, "sub"), missing} {
		st, err := blobstore.Open(ctx, loc, nil)
		if err == nil || st != nil {
			t.Errorf("Open(%s) = %#v, %v; want nil and an error", loc, st, err)
		}
	}
}

func TestParseS3URL(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	cfg, err := blobstore.ParseS3URL("s3://AK:s%2Fe%2Bcret@example.com:9000/bkt/a/b/?secure=false&region=eu-west-1", getenv)
	want := blobstore.S3Config{Endpoint: "example.com:9000", Bucket: "bkt", Prefix: "a/b",
		AccessKey: "AK", SecretKey: "s/e+cret", Region: "eu-west-1", PlainHTTP: true}
	if err != nil || cfg != want {
		t.Fatalf("ParseS3URL = %+v, %v; want %+v", cfg, err, want)
	}
	cfg, err = blobstore.ParseS3URL("s3://s3.amazonaws.com/bkt", getenv)
	if err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Fatalf("ParseS3URL without credentials = %+v, %v; want an error naming the variables", cfg, err)
	}
	env = map[string]string{"AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "sk", "AWS_SESSION_TOKEN": "tok"}
	cfg, err = blobstore.ParseS3URL("s3://s3.amazonaws.com/bkt", getenv)
	want = blobstore.S3Config{Endpoint: "s3.amazonaws.com", Bucket: "bkt", AccessKey: "ak", SecretKey: "sk", SessionToken: "tok"}
	if err != nil || cfg != want {
		t.Fatalf("ParseS3URL with env credentials = %+v, %v; want %+v", cfg, err, want)
	}
	cfg, err = blobstore.ParseS3URL("s3://u:p@host/bkt?secure=true", getenv)
	if err != nil || cfg.PlainHTTP || cfg.AccessKey != "u" || cfg.SessionToken != "" {
		t.Fatalf("ParseS3URL with URL credentials = %+v, %v; want https, URL credentials, no token", cfg, err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	const secret = "TOPSECRETvalue"
	env := func(k string) string {
		return map[string]string{"AWS_ACCESS_KEY_ID": "ak"}[k]
	}
	for _, c := range []struct{ loc, want string }{
		{"", "empty location"},
		{"ftp://host/x", `unknown scheme "ftp"`},
		{"s3:bucket", "://"},
		{"file:relative", "://"},
		{"file://otherhost/dir", `host "otherhost"`},
		{"file:///dir?x=1", "no query"},
		{"file://", "no path"},
		{"s3://", "no host"},
		{"s3://ak:" + secret + "@", "no host"},
		{"s3://ak:" + secret + "@host:99999/b", `bad port "99999"`},
		{"s3://ak:" + secret + "@host:port/b", "bad s3 URL"},
		{"s3://ak:" + secret + "@host", "no bucket"},
		{"s3://ak:" + secret + "@host/", "no bucket"},
		{"s3://ak:" + secret + "@host/Bad_Bucket", "bucket"},
		{"s3://ak:" + secret + "@host/b?secure=maybe", `secure="maybe"`},
		{"s3://ak:" + secret + "@host/bkt?secure=true&secure=false", `"secure" given 2 times`},
		{"s3://ak:" + secret + "@host/bkt?bucket=x", `unknown parameter "bucket"`},
		{"s3://ak:" + secret + "@host/bkt?region=", "empty region"},
		{"s3://ak:" + secret + "@host/bkt#frag", "fragment"},
		{"s3://ak:" + secret + "@host/bkt/a//b", "prefix"},
		{"s3://ak:" + secret + "@host/bkt/../b", "prefix"},
		{"s3://ak@host/bkt", "access key without a secret key"},
		{"s3://:" + secret + "@host/bkt", "without an access key"},
		{"s3://host/bkt", "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"},
	} {
		st, err := blobstore.Open(ctx, c.loc, env)
		if st != nil {
			t.Errorf("Open(%q) returned a store with its error", c.loc)
		}
		if framesync.KindOf(err) != framesync.BadInput || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q): %v; want a BadInput error containing %q", c.loc, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Open(%q): error %q shows the secret key", c.loc, err)
		}
	}
}

// BenchmarkStores compares Put (without and with the expected hash) and
// Get of fresh 1 MB and 16 MB blobs (the first 8 bytes count the
// iterations, so no Put is a re-put) on a Dir and on an S3 store served by
// a local versitygw, on the same disk.
// "dir" is Dir as shipped (O_DIRECT where possible, fsync); "dir-nosync"
// skips the fsync, as versitygw's POSIX backend does.
func BenchmarkStores(b *testing.B) {
	srv := s3test.Start(b)
	stores := []struct {
		name string
		open func(b *testing.B) blobstore.Store
	}{
		{"dir", func(b *testing.B) blobstore.Store { return benchDir(b, true, true) }},
		{"dir-nosync", func(b *testing.B) blobstore.Store { return benchDir(b, true, false) }},
		{"s3", func(b *testing.B) blobstore.Store {
			s, err := blobstore.OpenS3(context.Background(), s3Config(srv, srv.NewBucket(b), ""))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, size := range []int{1_000_000, 16_000_000} {
		for _, st := range stores {
			name := fmt.Sprintf("%dMB/%s", size/1_000_000, st.name)
			b.Run("Put/"+name, func(b *testing.B) { benchPutSize(b, st.open(b), size, false) })
			b.Run("PutKnownHash/"+name, func(b *testing.B) { benchPutSize(b, st.open(b), size, true) })
			b.Run("Get/"+name, func(b *testing.B) { benchGetSize(b, st.open(b), size) })
		}
	}
}

// benchPutSize puts fresh blobs of size bytes into s, with their hash as
// the expected hash if known (hashed with the timer stopped), as the hub's
// blob route does.
func benchPutSize(b *testing.B, s blobstore.Store, size int, known bool) {
	data, err := io.ReadAll(blobstoretest.Generate(int64(size), 1))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		binary.LittleEndian.PutUint64(data, uint64(n))
		n++
		var want framesync.Hash
		if known {
			b.StopTimer()
			want = framesync.Sum(data)
			b.StartTimer()
		}
		if _, err := s.Put(ctx, bytes.NewReader(data), want); err != nil {
			b.Fatal(err)
		}
	}
}

// benchGetSize reads one blob of size bytes of s to the end, verified,
// every iteration.
func benchGetSize(b *testing.B, s blobstore.Store, size int) {
	ctx := context.Background()
	info, err := s.Put(ctx, blobstoretest.Generate(int64(size), 2), framesync.Hash{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		rc, _, err := s.Get(ctx, info.Hash)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, rc); err != nil || n != int64(size) {
			b.Fatalf("read %d bytes, %v", n, err)
		}
		rc.Close()
	}
}
