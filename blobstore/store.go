package blobstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math"
	"sync"
	"time"

	"framesync"
)

// ErrNotFound is returned, wrapped, when a blob is not in the store. It
// satisfies errors.Is(err, framesync.NotFound).
var ErrNotFound = &framesync.Error{Kind: framesync.NotFound, Msg: "blob not found"}

// ErrHashMismatch is returned, wrapped, by Put when the content does not hash
// to the expected hash. Nothing is stored. It satisfies
// errors.Is(err, framesync.BadInput).
var ErrHashMismatch = &framesync.Error{Kind: framesync.BadInput, Msg: "content does not match the expected hash"}

// ErrCorrupt is returned, wrapped, by the final Read of a blob whose stored
// bytes do not hash to its name. It satisfies errors.Is(err, framesync.Corrupt).
var ErrCorrupt = &framesync.Error{Kind: framesync.Corrupt, Msg: "stored blob does not match its hash"}

// errBadRead reports a reader that returned an impossible count.
var errBadRead = errors.New("blobstore: reader returned an invalid count")

// maxEmptyReads is how many (0, nil) results from a reader in a row are
// taken as a stuck reader (io.ErrNoProgress), as bufio does.
const maxEmptyReads = 100

// Info describes a stored blob.
type Info struct {
	Hash    framesync.Hash // the SHA-256 of the content: the blob's address
	Size    int64          // the content length in bytes
	ModTime time.Time      // when the blob was last stored or re-stored (see Put)
}

// Store is content-addressed storage: blobs are immutable byte strings named
// by their SHA-256. Implementations are safe for concurrent use, and every
// error about a missing blob, a hash mismatch or corrupt content wraps
// ErrNotFound, ErrHashMismatch or ErrCorrupt. Every method returns the
// context's error if ctx is done when it is called.
type Store interface {
	// Put stores the bytes of r, hashing them while streaming, and returns
	// the blob's Info. want, if non-zero, is the expected hash: a mismatch
	// returns ErrHashMismatch and stores nothing. If r returns an error, or
	// ctx is done before the end of r, Put returns that error and stores
	// nothing. Put of content already stored does not store it again but
	// sets its ModTime to now, so a garbage collection grace window (see
	// Collect) protects content that was just re-put. Put never limits the
	// size: callers wrap r (io.LimitReader, http.MaxBytesReader) for that.
	Put(ctx context.Context, r io.Reader, want framesync.Hash) (Info, error)

	// Get opens the blob h for reading. The reader verifies while
	// streaming: if the stored bytes do not hash to h, its final Read
	// returns an error wrapping ErrCorrupt instead of io.EOF, so a caller
	// reading to the end never takes corrupt content for a success. Reads
	// also fail once ctx is done. The caller must Close the reader.
	Get(ctx context.Context, h framesync.Hash) (io.ReadCloser, Info, error)

	// Stat returns the Info of blob h, or ErrNotFound. It does not verify
	// the content.
	Stat(ctx context.Context, h framesync.Hash) (Info, error)

	// Delete removes blob h. Deleting a missing blob returns ErrNotFound.
	// Readers already open may still read the old content.
	Delete(ctx context.Context, h framesync.Hash) error

	// Walk calls fn for every stored blob, in no particular order. fn may
	// call other methods of the store, including Delete of the blob it was
	// given. An error from fn stops the walk and Walk returns it
	// unchanged. Blobs put or deleted during the walk may or may not be
	// seen.
	Walk(ctx context.Context, fn func(Info) error) error
}

// Pruner is an optional ability of a Store, found by type assertion and used
// by Collect: a delete that is conditional on the blob still being old.
type Pruner interface {
	// Prune deletes blob h if its ModTime is before olderThan, and reports
	// whether it did. It is atomic with respect to Put: a Put that
	// refreshed h's ModTime before Prune decided keeps the blob. A missing
	// blob returns ErrNotFound.
	Prune(ctx context.Context, h framesync.Hash, olderThan time.Time) (deleted bool, err error)
}

// Batcher is an optional ability of a Store, found by type assertion: put
// many blobs and make them durable together, which costs one barrier
// instead of one per blob. Until Sync returns, blobs put with PutUnsynced
// may be lost (never corrupted unnoticed: reads verify) by a machine crash.
type Batcher interface {
	// PutUnsynced is Put without the durability barrier.
	PutUnsynced(ctx context.Context, r io.Reader, want framesync.Hash) (Info, error)
	// Sync makes the blobs hs, put before, durable.
	Sync(ctx context.Context, hs []framesync.Hash) error
}

// Has reports whether s holds blob h.
func Has(ctx context.Context, s Store, h framesync.Hash) (bool, error) {
	_, err := s.Stat(ctx, h)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, framesync.NotFound):
		return false, nil
	}
	return false, err
}

// ReadAll returns the content of blob h, verified against h: corrupt content
// is an error wrapping ErrCorrupt, never data.
func ReadAll(ctx context.Context, s Store, h framesync.Hash) ([]byte, error) {
	rc, info, err := s.Get(ctx, h)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	// One spare byte, so the read that returns io.EOF needs no new buffer.
	n := 512
	if info.Size >= 0 && info.Size < math.MaxInt32 {
		n = int(info.Size) + 1
	}
	b := make([]byte, 0, n)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := rc.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// PutBytes stores b and returns its Info.
func PutBytes(ctx context.Context, s Store, b []byte) (Info, error) {
	return s.Put(ctx, bytes.NewReader(b), framesync.Hash{})
}

// readSome calls r.Read(p) and turns a misbehaving reader into an error: an
// impossible count, or (0, nil) too many times in a row. It never returns
// (0, nil) when p is not empty.
func readSome(r io.Reader, p []byte) (int, error) {
	for range maxEmptyReads {
		n, err := r.Read(p)
		if n < 0 || n > len(p) {
			return 0, errBadRead
		}
		if n > 0 || err != nil || len(p) == 0 {
			return n, err
		}
	}
	return 0, io.ErrNoProgress
}

// readFull reads from r until p is full or r ends. err is io.EOF if r ended
// (whatever n), nil if p is full, or the reader's error.
func readFull(r io.Reader, p []byte) (n int, err error) {
	for n < len(p) {
		m, err := readSome(r, p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// ctxErr wraps the error of a done context for operation op.
func ctxErr(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blobstore: %s: %w", op, err)
	}
	return nil
}

// mismatchError returns the error for content that hashes to got instead of want.
func mismatchError(got, want framesync.Hash) error {
	return fmt.Errorf("blobstore: put: content hashes to %s, want %s: %w", got, want, ErrHashMismatch)
}

// notFound returns the error for a missing blob h in operation op.
func notFound(op string, h framesync.Hash) error {
	return fmt.Errorf("blobstore: %s %s: %w", op, h, ErrNotFound)
}

// verifier is the reader returned by Get: it hashes what it passes on and
// replaces the final io.EOF with an ErrCorrupt error if the hash is wrong.
type verifier struct {
	ctx  context.Context
	r    io.Reader
	c    io.Closer // may be nil
	h    hash.Hash
	want framesync.Hash
	err  error // sticky: once set, every Read returns it
}

// newVerifier returns a reader over r that verifies the content hashes to want.
func newVerifier(ctx context.Context, r io.Reader, c io.Closer, want framesync.Hash) *verifier {
	return &verifier{ctx: ctx, r: r, c: c, h: framesync.NewHasher(), want: want}
}

// Read implements io.Reader.
func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if err := v.ctx.Err(); err != nil {
		v.err = fmt.Errorf("blobstore: read %s: %w", v.want, err)
		return 0, v.err
	}
	n, err := readSome(v.r, p)
	v.h.Write(p[:n])
	switch {
	case err == io.EOF:
		if got := framesync.HashOf(v.h); got != v.want {
			v.err = fmt.Errorf("blobstore: read %s: stored bytes hash to %s: %w", v.want, got, ErrCorrupt)
		} else {
			v.err = io.EOF
		}
	case err != nil:
		v.err = fmt.Errorf("blobstore: read %s: %w", v.want, err)
	}
	return n, v.err
}

// WriteTo implements io.WriterTo, so io.Copy uses large reads.
func (v *verifier) WriteTo(w io.Writer) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := v.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr == nil && m < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return total, werr
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// Close implements io.Closer. Reads after Close fail.
func (v *verifier) Close() error {
	if v.err == nil || v.err == io.EOF {
		v.err = fmt.Errorf("blobstore: read %s: %w", v.want, fs.ErrClosed)
	}
	if v.c == nil {
		return nil
	}
	c := v.c
	v.c = nil
	return c.Close()
}

// copyBufs holds buffers for verifier.WriteTo.
var copyBufs = sync.Pool{New: func() any {
	b := make([]byte, 256<<10)
	return &b
}}
