package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"framesync"
)

const (
	// blobsDir is the directory under the root that holds the shards.
	blobsDir = "sha256"
	// tempDir is the directory under the root that holds files being written.
	tempDir = "tmp"
	// staleTempAge is how old a file in tempDir must be for OpenDir to
	// remove it. A file being written is modified at least once per chunk,
	// so only files abandoned by a crash get this old.
	staleTempAge = time.Hour

	// chunkSize is the size of one buffer of the put pipeline. It is a
	// multiple of directAlign.
	chunkSize = 1 << 20
	// pipeDepth is the number of buffers of the put pipeline.
	pipeDepth = 3
	// directAlign is the alignment of offsets, lengths and buffer
	// addresses that O_DIRECT needs (the largest logical block size in
	// common use).
	directAlign = 4096
)

// Dir is a Store in a directory of the local filesystem: the embedded
// default. The package doc describes the layout and the guarantees. Several
// Dir values, in one process or several, may share a root.
type Dir struct {
	// Static after OpenDir.
	root  string // as given to OpenDir
	blobs string // root/sha256
	tmp   string // root/tmp

	// Changed only by ForTest, or once by the Dir itself.
	noSync   atomic.Bool // skip fsync (tests and benchmarks only)
	noDirect atomic.Bool // write through the page cache: set by ForTest, or when the filesystem refuses O_DIRECT

	syncNanos atomic.Int64 // time spent in fsync of blobs and shard directories, for benchmarks

	// afterPruneRename, if set (by internal tests), runs in Prune between
	// moving a blob aside and checking its ModTime again.
	afterPruneRename func()
}

var (
	_ Store  = (*Dir)(nil)
	_ Pruner = (*Dir)(nil)
)

// OpenDir opens the store rooted at root, creating the directory and its
// layout if needed, and removes temporary files left over by a crash (those
// more than an hour old).
func OpenDir(root string) (*Dir, error) {
	if root == "" {
		return nil, &framesync.Error{Kind: framesync.BadInput, Op: "blobstore: open dir", Msg: "empty path"}
	}
	d := &Dir{
		root:  root,
		blobs: filepath.Join(root, blobsDir),
		tmp:   filepath.Join(root, tempDir),
	}
	for _, p := range []string{d.blobs, d.tmp} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, fmt.Errorf("blobstore: open dir: %w", err)
		}
	}
	if err := d.removeStaleTemp(time.Now().Add(-staleTempAge)); err != nil {
		return nil, fmt.Errorf("blobstore: open dir: %w", err)
	}
	return d, nil
}

// SetSync turns the fsync of new blobs (and of their directories) on or
// off; it is on by default. Turn it off only for a cache whose content can
// be fetched again: a Put then survives a crash of the process but maybe
// not one of the machine, where Get reports the damage as ErrCorrupt.
func (d *Dir) SetSync(on bool) { d.noSync.Store(!on) }

// Root returns the root directory of d, as given to OpenDir.
func (d *Dir) Root() string { return d.root }

// removeStaleTemp removes the regular files of the temp directory last
// modified before cutoff. It is best effort: a file it cannot remove stays.
func (d *Dir) removeStaleTemp(cutoff time.Time) error {
	entries, err := os.ReadDir(d.tmp)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.ModTime().Before(cutoff) {
			continue
		}
		_ = os.Remove(filepath.Join(d.tmp, e.Name()))
	}
	return nil
}

// shard returns the directory of the blobs whose hex name starts like h's.
func (d *Dir) shard(h framesync.Hash) string {
	const digits = "0123456789abcdef"
	return filepath.Join(d.blobs, string([]byte{digits[h[0]>>4], digits[h[0]&0xf]}))
}

// path returns the file name of blob h.
func (d *Dir) path(h framesync.Hash) string {
	return filepath.Join(d.shard(h), h.Hex())
}

// Put implements Store. The content goes to a new file in the temp
// directory, is fsynced and renamed to its final name, and the shard
// directory is fsynced. If the blob turns out to be stored already, the new
// copy is dropped before the fsync and the stored blob's ModTime is set to
// now. If want names a blob already stored, Put refreshes its ModTime and
// only hashes r to check it, writing nothing. A re-put does not repair a
// corrupt blob: Delete it first.
func (d *Dir) Put(ctx context.Context, r io.Reader, want framesync.Hash) (Info, error) {
	return d.put(ctx, r, want, true)
}

// PutUnsynced implements Batcher: Put without the fsyncs of the file and
// of its directory; Sync makes the blob durable.
func (d *Dir) PutUnsynced(ctx context.Context, r io.Reader, want framesync.Hash) (Info, error) {
	return d.put(ctx, r, want, false)
}

// Sync implements Batcher. On Linux it flushes the filesystem holding the
// store once (syncfs); elsewhere it fsyncs each blob and shard directory.
func (d *Dir) Sync(ctx context.Context, hs []framesync.Hash) error {
	if d.noSync.Load() || len(hs) == 0 {
		return nil
	}
	start := time.Now()
	err := d.syncBlobs(ctx, hs)
	d.syncNanos.Add(int64(time.Since(start)))
	if err != nil {
		return fmt.Errorf("blobstore: sync: %w", err)
	}
	return nil
}

// syncEach fsyncs the files of blobs hs and their shard directories.
func (d *Dir) syncEach(ctx context.Context, hs []framesync.Hash) error {
	dirs := map[string]bool{}
	for _, h := range hs {
		if err := ctxErr(ctx, "sync"); err != nil {
			return err
		}
		f, err := os.Open(d.path(h))
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
		dirs[d.shard(h)] = true
	}
	for dir := range dirs {
		if err := d.syncDir(dir); err != nil {
			return err
		}
	}
	return nil
}

func (d *Dir) put(ctx context.Context, r io.Reader, want framesync.Hash, durable bool) (Info, error) {
	if err := ctxErr(ctx, "put"); err != nil {
		return Info{}, err
	}
	if !want.IsZero() {
		if info, done, err := d.putExisting(ctx, r, want); done {
			return info, err
		}
	}
	w, h, size, err := d.fill(ctx, r)
	if err != nil {
		return Info{}, err
	}
	committed := false
	defer func() {
		if !committed {
			w.discard()
		}
	}()
	if !want.IsZero() && h != want {
		return Info{}, mismatchError(h, want)
	}
	final := d.path(h)
	if fi, err := os.Lstat(final); err == nil && fi.Mode().IsRegular() {
		// Already stored. Refresh its ModTime; if it vanished in the
		// meantime (a concurrent Delete or Prune), store this copy.
		now := time.Now()
		if err := os.Chtimes(final, now, now); err == nil {
			return Info{Hash: h, Size: size, ModTime: now}, nil
		}
	}
	if durable {
		if err := d.sync(w.f); err != nil {
			return Info{}, fmt.Errorf("blobstore: put %s: sync: %w", h, err)
		}
	}
	fi, err := w.f.Stat()
	if err != nil {
		return Info{}, fmt.Errorf("blobstore: put %s: %w", h, err)
	}
	if err := w.f.Close(); err != nil {
		return Info{}, fmt.Errorf("blobstore: put %s: %w", h, err)
	}
	if err := d.rename(w.name, h); err != nil {
		return Info{}, fmt.Errorf("blobstore: put %s: %w", h, err)
	}
	committed = true
	if durable {
		if err := d.syncDir(d.shard(h)); err != nil {
			return Info{}, fmt.Errorf("blobstore: put %s: sync directory: %w", h, err)
		}
	}
	return Info{Hash: h, Size: size, ModTime: fi.ModTime()}, nil
}

// putExisting is Put of content whose expected hash want is already stored:
// it refreshes the blob's ModTime, then only hashes r to check it, writing
// nothing. done is false, with nothing read from r, if blob want is not
// stored (or cannot be refreshed): Put must then store it. Refreshing first
// makes a concurrent Prune keep the blob, or fail the refresh.
func (d *Dir) putExisting(ctx context.Context, r io.Reader, want framesync.Hash) (info Info, done bool, err error) {
	final := d.path(want)
	if fi, err := os.Lstat(final); err != nil || !fi.Mode().IsRegular() {
		return Info{}, false, nil
	}
	now := time.Now()
	if err := os.Chtimes(final, now, now); err != nil {
		return Info{}, false, nil
	}
	h, size, err := hashAll(ctx, r)
	if err != nil {
		return Info{}, true, err
	}
	if h != want {
		return Info{}, true, mismatchError(h, want)
	}
	if _, err := os.Lstat(final); err != nil {
		// Deleted (not pruned) while we read: the content is gone.
		return Info{}, true, &framesync.Error{Kind: framesync.Unavailable, Op: "blobstore: put " + want.String(),
			Msg: "blob deleted while being put again; retry", Err: err}
	}
	return Info{Hash: h, Size: size, ModTime: now}, true, nil
}

// hashAll reads r to the end, checking ctx between chunks, and returns the
// hash and size of the content.
func hashAll(ctx context.Context, r io.Reader) (framesync.Hash, int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	h := framesync.NewHasher()
	var size int64
	for {
		if err := ctxErr(ctx, "put"); err != nil {
			return framesync.Hash{}, 0, err
		}
		n, err := readFull(r, *bp)
		h.Write((*bp)[:n])
		size += int64(n)
		if err == io.EOF {
			if err := ctxErr(ctx, "put"); err != nil {
				return framesync.Hash{}, 0, err
			}
			return framesync.HashOf(h), size, nil
		}
		if err != nil {
			return framesync.Hash{}, 0, fmt.Errorf("blobstore: put: read: %w", err)
		}
	}
}

// rename moves the temp file name to the final name of blob h, creating the
// shard directory if needed. A blob already there is replaced: it has the
// same content.
func (d *Dir) rename(name string, h framesync.Hash) error {
	err := os.Rename(name, d.path(h))
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if _, serr := os.Stat(name); serr != nil {
		return err // the temp file is gone, not the shard
	}
	if err := os.Mkdir(d.shard(h), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := d.syncDir(d.blobs); err != nil {
		return err
	}
	return os.Rename(name, d.path(h))
}

// sync fsyncs f, unless syncing is off.
func (d *Dir) sync(f *os.File) error {
	if d.noSync.Load() {
		return nil
	}
	start := time.Now()
	err := f.Sync()
	d.syncNanos.Add(int64(time.Since(start)))
	return err
}

// syncDir fsyncs the directory dir, so that entries created or renamed in it
// survive a crash. Windows cannot sync a directory; there it does nothing.
func (d *Dir) syncDir(dir string) error {
	if d.noSync.Load() || runtime.GOOS == "windows" {
		return nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.sync(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Get implements Store.
func (d *Dir) Get(ctx context.Context, h framesync.Hash) (io.ReadCloser, Info, error) {
	if err := ctxErr(ctx, "get"); err != nil {
		return nil, Info{}, err
	}
	f, err := os.Open(d.path(h))
	if err != nil {
		if isNotExist(err) {
			return nil, Info{}, notFound("get", h)
		}
		return nil, Info{}, fmt.Errorf("blobstore: get %s: %w", h, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, Info{}, fmt.Errorf("blobstore: get %s: %w", h, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, Info{}, notFound("get", h)
	}
	return newVerifier(ctx, f, f, h), Info{Hash: h, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Stat implements Store.
func (d *Dir) Stat(ctx context.Context, h framesync.Hash) (Info, error) {
	if err := ctxErr(ctx, "stat"); err != nil {
		return Info{}, err
	}
	return d.stat("stat", h)
}

// stat returns the Info of blob h for operation op.
func (d *Dir) stat(op string, h framesync.Hash) (Info, error) {
	fi, err := os.Stat(d.path(h))
	if err != nil {
		if isNotExist(err) {
			return Info{}, notFound(op, h)
		}
		return Info{}, fmt.Errorf("blobstore: %s %s: %w", op, h, err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, notFound(op, h)
	}
	return Info{Hash: h, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete implements Store. Deletes are not fsynced: after a crash a deleted
// blob may be back, intact.
func (d *Dir) Delete(ctx context.Context, h framesync.Hash) error {
	if err := ctxErr(ctx, "delete"); err != nil {
		return err
	}
	if _, err := d.stat("delete", h); err != nil {
		return err
	}
	if err := os.Remove(d.path(h)); err != nil {
		if isNotExist(err) {
			return notFound("delete", h)
		}
		return fmt.Errorf("blobstore: delete %s: %w", h, err)
	}
	return nil
}

// Prune implements Pruner. It moves the blob aside to the temp directory
// (so a concurrent Put no longer finds it and stores its own copy), checks
// its ModTime again, and then removes it or, if a Put refreshed it in the
// meantime, links it back. During that short time a Stat or Get of the blob
// may report it missing.
func (d *Dir) Prune(ctx context.Context, h framesync.Hash, olderThan time.Time) (bool, error) {
	if err := ctxErr(ctx, "prune"); err != nil {
		return false, err
	}
	info, err := d.stat("prune", h)
	if err != nil {
		return false, err
	}
	if !info.ModTime.Before(olderThan) {
		return false, nil
	}
	final := d.path(h)
	aside := filepath.Join(d.tmp, "gc-"+h.Hex()+"-"+strconv.FormatUint(rand.Uint64(), 36))
	if err := os.Rename(final, aside); err != nil {
		if isNotExist(err) {
			return false, notFound("prune", h)
		}
		return false, fmt.Errorf("blobstore: prune %s: %w", h, err)
	}
	if d.afterPruneRename != nil {
		d.afterPruneRename()
	}
	fi, err := os.Lstat(aside)
	if err == nil && fi.ModTime().Before(olderThan) {
		if err := os.Remove(aside); err != nil {
			return false, fmt.Errorf("blobstore: prune %s: %w", h, err)
		}
		return true, nil
	}
	// Refreshed by a Put after the first check: put it back. If a Put
	// stored a new copy meanwhile, Link fails and the copy stays.
	if err := os.Link(aside, final); err != nil && !errors.Is(err, fs.ErrExist) {
		if err := os.Rename(aside, final); err != nil {
			return false, fmt.Errorf("blobstore: prune %s: restore: %w", h, err)
		}
		return false, nil
	}
	_ = os.Remove(aside)
	return false, nil
}

// Walk implements Store. It ignores everything under the root that is not
// a regular file named like a blob in the right shard.
func (d *Dir) Walk(ctx context.Context, fn func(Info) error) error {
	if err := ctxErr(ctx, "walk"); err != nil {
		return err
	}
	shards, err := os.ReadDir(d.blobs)
	if err != nil {
		return fmt.Errorf("blobstore: walk: %w", err)
	}
	for _, sh := range shards {
		if !sh.IsDir() || !isShardName(sh.Name()) {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(d.blobs, sh.Name()))
		if err != nil {
			if isNotExist(err) {
				continue
			}
			return fmt.Errorf("blobstore: walk: %w", err)
		}
		for _, e := range entries {
			if err := ctxErr(ctx, "walk"); err != nil {
				return err
			}
			name := e.Name()
			if !e.Type().IsRegular() || len(name) != 2*framesync.HashSize || name[:2] != sh.Name() {
				continue
			}
			h, err := framesync.ParseHash(framesync.HashPrefix + name)
			if err != nil {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				if isNotExist(err) {
					continue // deleted since ReadDir
				}
				return fmt.Errorf("blobstore: walk: %w", err)
			}
			if err := fn(Info{Hash: h, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// isShardName reports whether s is two lower-case hex digits.
func isShardName(s string) bool {
	isHex := func(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }
	return len(s) == 2 && isHex(s[0]) && isHex(s[1])
}

// isNotExist reports whether err means a path does not exist, including a
// path through a file where a directory should be.
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// tempFile is a file being written in the temp directory.
type tempFile struct {
	d      *Dir
	f      *os.File
	name   string
	direct bool // f is open with O_DIRECT
}

// createTemp creates a new file in the temp directory, with O_DIRECT where
// the platform and filesystem support it. Blob files are read-only.
func (d *Dir) createTemp() (*tempFile, error) {
	for {
		name := filepath.Join(d.tmp, "put-"+strconv.FormatUint(rand.Uint64(), 36))
		direct := directIO && !d.noDirect.Load()
		flag := os.O_RDWR | os.O_CREATE | os.O_EXCL
		if direct {
			flag |= oDirect
		}
		f, err := os.OpenFile(name, flag, 0o444)
		switch {
		case err == nil:
			return &tempFile{d: d, f: f, name: name, direct: direct}, nil
		case direct && errors.Is(err, syscall.EINVAL):
			d.noDirect.Store(true) // the filesystem does not do O_DIRECT
		case errors.Is(err, fs.ErrExist):
			// name taken: try another
		default:
			return nil, err
		}
	}
}

// discard closes and removes the temp file.
func (t *tempFile) discard() {
	t.f.Close()
	os.Remove(t.name)
}

// write appends b to the file. With O_DIRECT, b must start at an aligned
// address, and at an aligned file offset unless the file has left O_DIRECT.
// If len(b) is not a multiple of directAlign, b must be the last: its
// aligned part is written directly and the rest through the page cache.
func (t *tempFile) write(b []byte) error {
	if t.direct && len(b)%directAlign != 0 {
		if n := len(b) &^ (directAlign - 1); n > 0 {
			if err := t.write(b[:n]); err != nil {
				return err
			}
			b = b[n:]
		}
		if t.direct {
			if err := setDirect(t.f, false); err != nil {
				return err
			}
			t.direct = false
		}
	}
	n, err := t.f.Write(b)
	if err != nil && t.direct && errors.Is(err, syscall.EINVAL) {
		// The filesystem took O_DIRECT at open but refuses the write.
		if setDirect(t.f, false) == nil {
			t.direct = false
			t.d.noDirect.Store(true)
			_, err = t.f.Write(b[n:])
		}
	}
	return err
}

// fill copies r to a new temp file until r ends, and returns the file and
// the hash and size of the content. On error it removes the file.
//
// Reading and hashing run on this goroutine; creating the file and writing
// run on another, with pipeDepth buffers between them, so that hashing
// overlaps both (creating a file can take a millisecond on a busy
// filesystem). Content that fits one buffer is written without a goroutine.
func (d *Dir) fill(ctx context.Context, r io.Reader) (*tempFile, framesync.Hash, int64, error) {
	set := chunkSets.Get().(*chunkSet)
	defer chunkSets.Put(set)
	h := framesync.NewHasher()
	fail := func(t *tempFile, err error) (*tempFile, framesync.Hash, int64, error) {
		if t != nil {
			t.discard()
		}
		return nil, framesync.Hash{}, 0, err
	}

	buf := set[0]
	n, rerr := readFull(r, buf)
	if rerr != nil && rerr != io.EOF {
		return fail(nil, fmt.Errorf("blobstore: put: read: %w", rerr))
	}
	if err := ctxErr(ctx, "put"); err != nil {
		return fail(nil, err)
	}
	if rerr == io.EOF {
		h.Write(buf[:n])
		t, err := d.createTemp()
		if err != nil {
			return fail(nil, fmt.Errorf("blobstore: put: %w", err))
		}
		if err := t.write(buf[:n]); err != nil {
			return fail(t, fmt.Errorf("blobstore: put: write: %w", err))
		}
		return t, framesync.HashOf(h), int64(n), nil
	}

	type result struct {
		t   *tempFile
		err error
	}
	work := make(chan []byte, pipeDepth)
	free := make(chan []byte, pipeDepth)
	done := make(chan result, 1)
	var failed atomic.Bool
	for _, b := range set[1:] {
		free <- b
	}
	go func() {
		t, err := d.createTemp()
		if err != nil {
			failed.Store(true)
		}
		for b := range work {
			if err == nil {
				if err = t.write(b); err != nil {
					failed.Store(true)
				}
			}
			free <- b[:cap(b)]
		}
		done <- result{t, err}
	}()
	var res *result
	stop := func() result {
		if res == nil {
			close(work)
			r := <-done
			res = &r
		}
		return *res
	}
	defer stop() // on early returns; the writer must be done before the buffers are reused

	var size int64
	for n > 0 {
		work <- buf[:n]
		h.Write(buf[:n])
		size += int64(n)
		if rerr == io.EOF || failed.Load() {
			break
		}
		if err := ctxErr(ctx, "put"); err != nil {
			return fail(stop().t, err)
		}
		buf = <-free
		n, rerr = readFull(r, buf)
		if rerr != nil && rerr != io.EOF {
			return fail(stop().t, fmt.Errorf("blobstore: put: read: %w", rerr))
		}
	}
	wr := stop()
	if wr.err != nil {
		return fail(wr.t, fmt.Errorf("blobstore: put: write: %w", wr.err))
	}
	if err := ctxErr(ctx, "put"); err != nil {
		return fail(wr.t, err)
	}
	return wr.t, framesync.HashOf(h), size, nil
}

// chunkSet is the buffers of one put pipeline, aligned for O_DIRECT.
type chunkSet [pipeDepth][]byte

// chunkSets recycles chunkSets between puts.
var chunkSets = sync.Pool{New: func() any {
	slab := make([]byte, pipeDepth*chunkSize+directAlign)
	if off := int(uintptr(unsafe.Pointer(unsafe.SliceData(slab))) % directAlign); off != 0 {
		slab = slab[directAlign-off:]
	}
	var set chunkSet
	for i := range set {
		set[i] = slab[i*chunkSize : (i+1)*chunkSize : (i+1)*chunkSize]
	}
	return &set
}}
