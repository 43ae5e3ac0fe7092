package blobstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"framesync"
)

const (
	// s3ChunkSize is the size of one buffer of the S3 put pipeline.
	s3ChunkSize = 1 << 20
	// s3PartChunks is the number of buffers in one multipart part, and in
	// the set a Put holds: 5 MiB, the smallest part (but the last) that S3
	// accepts. Content that fits goes up in one request. Buffers return to
	// the reader as soon as the upload has sent them, so reading and
	// hashing the next part overlaps the upload of the current one.
	s3PartChunks = 5
	// s3MaxParts is the most parts a multipart upload may have, which
	// limits a blob to 10,000 × 5 MiB (about 48.8 GiB).
	s3MaxParts = 10000
	// s3MaxCopy is the largest object one CopyObject request may copy.
	s3MaxCopy = 5 << 30
	// s3StaleAge is how old an incomplete multipart upload or a temporary
	// object must be for OpenS3 to remove it.
	s3StaleAge = 24 * time.Hour
	// s3PartGrace is how long a Put whose context is done lets the part
	// it is sending finish before it cancels it.
	s3PartGrace = 5 * time.Second
	// s3CleanupTimeout bounds the requests that clean up after a failed
	// Put, which run even when the Put's context is done.
	s3CleanupTimeout = 30 * time.Second
)

// S3Config says where an S3 store keeps its blobs and how to reach the
// server. The zero value of every optional field is the usual choice.
type S3Config struct {
	Endpoint     string // host[:port] of the server, without a scheme: "s3.amazonaws.com", "127.0.0.1:7070". Required.
	Bucket       string // an existing bucket. Required.
	Prefix       string // optional key prefix, without leading or trailing slash: "hub/blobs"
	AccessKey    string // required
	SecretKey    string // required
	SessionToken string // optional, for temporary credentials
	Region       string // optional; empty asks the server
	PlainHTTP    bool   // use http instead of https (a server on the same machine, say)

	// Transport, if not nil, carries the requests instead of minio-go's
	// default transport.
	Transport http.RoundTripper
}

// S3 is a Store in a bucket of an S3-compatible object store (AWS S3,
// MinIO, versitygw...), for several hubs sharing their blobs. The package
// doc describes the layout and the guarantees. Several S3 values, in one
// process or several, may share a bucket and prefix.
type S3 struct {
	// Static after OpenS3.
	client *minio.Client
	core   minio.Core // the same client, with the multipart calls
	bucket string
	prefix string // "" or ends with "/"
	name   string // s3://endpoint/bucket/prefix, without credentials

	// deleteMu serializes the Stat and Delete of a blob within this S3
	// value (indexed by the first byte of the hash, modulo its length), so
	// that of concurrent Deletes of one blob exactly one succeeds.
	deleteMu [16]sync.Mutex
}

var _ Store = (*S3)(nil)

// OpenS3 opens the store described by cfg. It checks that the bucket
// exists, removes incomplete uploads and temporary objects left over by
// crashes (those more than a day old), and sets aside the 5 MiB of
// buffers that a Put uses, if no idle ones are.
func OpenS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:    !cfg.PlainHTTP,
		Region:    cfg.Region,
		Transport: cfg.Transport,
	})
	if err != nil {
		return nil, &framesync.Error{Kind: framesync.BadInput, Op: "blobstore: open s3", Err: err}
	}
	s := &S3{
		client: client,
		core:   minio.Core{Client: client},
		bucket: cfg.Bucket,
		name:   "s3://" + cfg.Endpoint + "/" + cfg.Bucket,
	}
	if cfg.Prefix != "" {
		s.prefix = cfg.Prefix + "/"
		s.name += "/" + cfg.Prefix
	}
	ok, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, s.opError(ctx, "open s3: bucket "+strconv.Quote(cfg.Bucket), err)
	}
	if !ok {
		return nil, &framesync.Error{Kind: framesync.NotFound, Op: "blobstore: open s3",
			Msg: fmt.Sprintf("bucket %q does not exist on %s", cfg.Bucket, cfg.Endpoint)}
	}
	s.removeStale(ctx, time.Now().Add(-s3StaleAge))
	// Have the buffers of one Put ready, so that the first Puts of a
	// process allocate little, like the later ones.
	prepareS3ChunkSet()
	return s, nil
}

// validate checks the required fields and the form of the others.
func (cfg *S3Config) validate() error {
	bad := func(field, msg string) error {
		return &framesync.Error{Kind: framesync.BadInput, Op: "blobstore: open s3", Field: field, Msg: msg}
	}
	switch {
	case cfg.Endpoint == "":
		return bad("endpoint", "missing")
	case strings.Contains(cfg.Endpoint, "://"):
		return bad("endpoint", fmt.Sprintf("%q has a scheme; give host[:port] (and PlainHTTP for http)", cfg.Endpoint))
	case strings.ContainsAny(cfg.Endpoint, "/?#@"):
		return bad("endpoint", fmt.Sprintf("%q is not host[:port]", cfg.Endpoint))
	case cfg.Bucket == "":
		return bad("bucket", "missing")
	case cfg.AccessKey == "" || cfg.SecretKey == "":
		return bad("credentials", "both an access key and a secret key are needed")
	}
	if err := s3utils.CheckValidBucketNameStrict(cfg.Bucket); err != nil {
		return bad("bucket", fmt.Sprintf("%q: %v", cfg.Bucket, err))
	}
	if p := cfg.Prefix; p != "" {
		for seg := range strings.SplitSeq(p, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return bad("prefix", fmt.Sprintf("%q: want segments separated by single slashes, no leading or trailing slash, no . or ..", p))
			}
		}
	}
	return nil
}

// String returns the location of s as an s3:// URL without credentials.
func (s *S3) String() string { return s.name }

// key returns the object key of blob h: prefix/sha256/ab/ab12…ef.
func (s *S3) key(h framesync.Hash) string {
	x := h.Hex()
	return s.prefix + blobsDir + "/" + x[:2] + "/" + x
}

// tempPrefix is the start of the keys of temporary objects.
func (s *S3) tempPrefix() string { return s.prefix + tempDir + "/put-" }

// tempKey returns a new key for a blob being uploaded whose hash is not
// known yet.
func (s *S3) tempKey() string { return s.tempPrefix() + strconv.FormatUint(rand.Uint64(), 36) }

// parseKey returns the hash of the blob stored under key, or false if key
// is not named like a blob in the right shard.
func (s *S3) parseKey(key string) (framesync.Hash, bool) {
	rest, ok := strings.CutPrefix(key, s.prefix+blobsDir+"/")
	if !ok || len(rest) != 3+2*framesync.HashSize || rest[2] != '/' || rest[:2] != rest[3:5] {
		return framesync.Hash{}, false
	}
	h, err := framesync.ParseHash(framesync.HashPrefix + rest[3:])
	if err != nil {
		return framesync.Hash{}, false
	}
	return h, true
}

// modTime returns the ModTime of an object last modified at t. HEAD and GET
// report whole seconds and listings may report milliseconds, so all report
// whole seconds.
func modTime(t time.Time) time.Time { return t.Truncate(time.Second) }

// Put implements Store. Content shorter than 5 MiB is read into memory, hashed
// and sent in one request that carries its SHA-256, so the server checks
// it too. Larger content goes up as a multipart upload of 5 MiB parts,
// straight to the blob's key if want is given, or else to a temporary key
// and then copied, on the server, to the blob's key. The blob appears only
// once the whole content arrived and matched: a failed Put aborts its
// upload. Put of content already stored uploads it again, which sets its
// ModTime (the object's LastModified) to now.
func (s *S3) Put(ctx context.Context, r io.Reader, want framesync.Hash) (Info, error) {
	if err := ctxErr(ctx, "put"); err != nil {
		return Info{}, err
	}
	set := getS3ChunkSet()
	defer putS3ChunkSet(set)
	hasher := framesync.NewHasher()
	var size int64
	filled := make([][]byte, 0, len(set))
	for i := range set {
		buf := set.chunk(i)
		n, err := readFull(r, buf)
		if err != nil && err != io.EOF {
			return Info{}, fmt.Errorf("blobstore: put: read: %w", err)
		}
		if err := ctxErr(ctx, "put"); err != nil {
			return Info{}, err
		}
		hasher.Write(buf[:n])
		size += int64(n)
		if n > 0 {
			filled = append(filled, buf[:n])
		}
		if err == io.EOF {
			return s.putSmall(ctx, filled, size, framesync.HashOf(hasher), want)
		}
	}
	return s.putLarge(ctx, r, set, hasher, size, want)
}

// putSmall stores content that was read whole into chunks, with hash h, in
// one request.
func (s *S3) putSmall(ctx context.Context, chunks [][]byte, size int64, h, want framesync.Hash) (Info, error) {
	if !want.IsZero() && h != want {
		return Info{}, mismatchError(h, want)
	}
	body := &chunkReader{chunks: chunks, size: size}
	_, err := s.core.PutObject(ctx, s.bucket, s.key(h), body, size, "", h.Hex(),
		minio.PutObjectOptions{DisableContentSha256: true})
	body.detach()
	if err != nil {
		return Info{}, s.opError(ctx, "put "+h.String(), err)
	}
	return Info{Hash: h, Size: size, ModTime: time.Now()}, nil
}

// putLarge stores content too large for one request: the chunks of set
// are full and hashed into hasher, and r holds the rest.
func (s *S3) putLarge(ctx context.Context, r io.Reader, set *s3ChunkSet, hasher hash.Hash, size int64, want framesync.Hash) (Info, error) {
	key := s.tempKey()
	if !want.IsZero() {
		key = s.key(want)
	}
	uploadID, err := s.core.NewMultipartUpload(ctx, s.bucket, key, minio.PutObjectOptions{})
	if err != nil {
		return Info{}, s.opError(ctx, "put", err)
	}
	completed := false
	defer func() {
		if !completed {
			s.abort(ctx, key, uploadID)
		}
	}()
	up := &s3Upload{s: s, key: key, uploadID: uploadID, r: r, set: set, hasher: hasher, size: size}
	parts, err := up.run(ctx)
	if err != nil {
		return Info{}, err
	}
	h, size := framesync.HashOf(hasher), up.size
	if !want.IsZero() && h != want {
		return Info{}, mismatchError(h, want)
	}
	if err := ctxErr(ctx, "put"); err != nil {
		return Info{}, err
	}
	// Once asked, the server may complete the upload whatever happens to
	// the request: wait for its answer even if ctx is done meanwhile.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s3CleanupTimeout)
	_, err = s.core.CompleteMultipartUpload(cctx, s.bucket, key, uploadID, parts, minio.PutObjectOptions{})
	cancel()
	if err != nil {
		return Info{}, s.opError(ctx, "put "+h.String(), err)
	}
	completed = true
	if key == s.key(h) {
		return Info{Hash: h, Size: size, ModTime: time.Now()}, nil
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s3CleanupTimeout)
		defer cancel()
		_ = s.client.RemoveObject(cctx, s.bucket, key, minio.RemoveObjectOptions{})
	}()
	if err := s.copy(ctx, key, s.key(h), size); err != nil {
		return Info{}, s.opError(ctx, "put "+h.String(), err)
	}
	return Info{Hash: h, Size: size, ModTime: time.Now()}, nil
}

// abort aborts a multipart upload and checks that it is gone, repeating
// the abort (with backoff, for up to s3CleanupTimeout, even if ctx is done)
// while the server fails it or still lists the upload: S3 documents that
// an abort may need repeating when parts were being uploaded. If the
// server cannot be reached, abort gives up at once. What remains is
// removed by OpenS3 a day later.
func (s *S3) abort(ctx context.Context, key, uploadID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s3CleanupTimeout)
	defer cancel()
	backoff := 10 * time.Millisecond
	for {
		err := s.core.AbortMultipartUpload(ctx, s.bucket, key, uploadID)
		var resp minio.ErrorResponse
		answered := errors.As(err, &resp) && resp.StatusCode != 0
		switch {
		case err == nil || answered && resp.Code == "NoSuchUpload":
			listed, err := s.uploadListed(ctx, key, uploadID)
			if err != nil || !listed {
				return
			}
		case !answered:
			return
		}
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}

// uploadListed reports whether the multipart upload uploadID of key is
// still listed.
func (s *S3) uploadListed(ctx context.Context, key, uploadID string) (bool, error) {
	res, err := s.core.ListMultipartUploads(ctx, s.bucket, key, "", "", "", 1000)
	if err != nil {
		return false, err
	}
	for _, u := range res.Uploads {
		if u.Key == key && u.UploadID == uploadID {
			return true, nil
		}
	}
	return false, nil
}

// copy copies the object src of the given size to dst on the server.
func (s *S3) copy(ctx context.Context, src, dst string, size int64) error {
	to := minio.CopyDestOptions{Bucket: s.bucket, Object: dst}
	from := minio.CopySrcOptions{Bucket: s.bucket, Object: src}
	var err error
	if size <= s3MaxCopy {
		_, err = s.client.CopyObject(ctx, to, from)
	} else {
		_, err = s.client.ComposeObject(ctx, to, from)
	}
	return err
}

// s3Upload is the part of a Put that runs a multipart upload. Reading and
// hashing run on the calling goroutine; the parts go up on another, one at
// a time, and each buffer returns to the reader as soon as the upload has
// sent it.
type s3Upload struct {
	// Static.
	s        *S3
	key      string
	uploadID string
	set      *s3ChunkSet

	// Owned by the calling goroutine.
	r      io.Reader
	hasher hash.Hash
	size   int64 // bytes read so far
}

// s3Part is a part of a multipart upload handed to the sending goroutine.
type s3Part struct {
	num    int
	chunks [][]byte
	size   int64
}

// run uploads the chunks of u.set, all full, then the rest of u.r, and
// returns the parts to complete the upload with. On error, the caller
// aborts the upload.
func (u *s3Upload) run(ctx context.Context) ([]minio.CompletePart, error) {
	// Parts go up under their own context, cancelled only s3PartGrace
	// after ctx is done: the abort that follows a failure must reach the
	// server after the part it was sending, or the server may store the
	// part after the abort and keep it.
	pctx, pcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer pcancel()
	var (
		free   = make(chan []byte, len(u.set)) // buffers the reader may fill; never blocks
		todo   = make(chan s3Part)
		failed = make(chan struct{}) // closed when a part fails
		done   = make(chan struct{}) // closed when the sender returns
		parts  []minio.CompletePart  // owned by the sender until done
		upErr  error                 // owned by the sender until done
	)
	go func() {
		defer close(done)
		for p := range todo {
			if upErr != nil {
				for _, c := range p.chunks {
					free <- c[:cap(c)]
				}
				continue
			}
			body := &partReader{chunks: p.chunks, free: free}
			op, err := u.s.core.PutObjectPart(pctx, u.s.bucket, u.key, u.uploadID, p.num, body, p.size,
				minio.PutObjectPartOptions{DisableContentSha256: true})
			body.detach()
			if err != nil {
				upErr = err
				close(failed)
				continue
			}
			parts = append(parts, minio.CompletePart{PartNumber: p.num, ETag: op.ETag})
		}
	}()
	err := u.feed(ctx, todo, free, failed)
	close(todo)
	// The part being sent, if any, has all its bytes in memory: it ends
	// on its own, unless the server stalls after ctx is done.
	grace := time.NewTimer(s3PartGrace)
	select {
	case <-done:
	case <-grace.C:
		if ctx.Err() != nil {
			pcancel()
		}
		<-done
	}
	grace.Stop()
	switch {
	case err != nil && err != errPartFailed:
		return nil, err
	case upErr != nil:
		return nil, u.s.opError(ctx, "put: upload part", upErr)
	}
	return parts, nil
}

// feed reads the rest of u.r into free buffers and hands parts to the
// sender through todo, until u.r ends, a part fails or ctx is done.
func (u *s3Upload) feed(ctx context.Context, todo chan<- s3Part, free chan []byte, failed <-chan struct{}) error {
	num := 0
	var pending [][]byte
	var pendingSize int64
	send := func() error {
		num++
		if num > s3MaxParts {
			return &framesync.Error{Kind: framesync.TooLarge, Op: "blobstore: put",
				Msg: fmt.Sprintf("content larger than %d parts of %d bytes", s3MaxParts, s3PartChunks*s3ChunkSize)}
		}
		select {
		case todo <- s3Part{num: num, chunks: pending, size: pendingSize}:
		case <-failed:
			return errPartFailed
		case <-ctx.Done():
			return ctxErr(ctx, "put")
		}
		pending, pendingSize = nil, 0
		return nil
	}
	for _, c := range u.set {
		pending = append(pending, c)
		pendingSize += int64(len(c))
		if len(pending) == s3PartChunks {
			if err := send(); err != nil {
				return err
			}
		}
	}
	for {
		var buf []byte
		select {
		case buf = <-free:
		case <-failed:
			return errPartFailed
		case <-ctx.Done():
			return ctxErr(ctx, "put")
		}
		n, rerr := readFull(u.r, buf)
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("blobstore: put: read: %w", rerr)
		}
		if err := ctxErr(ctx, "put"); err != nil {
			return err
		}
		u.hasher.Write(buf[:n])
		u.size += int64(n)
		if n > 0 {
			pending = append(pending, buf[:n])
			pendingSize += int64(n)
		} else {
			free <- buf
		}
		if len(pending) == s3PartChunks || rerr == io.EOF && len(pending) > 0 {
			if err := send(); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
	}
}

// errPartFailed stops feeding parts once the sender reports an error; run
// returns the sender's error instead.
var errPartFailed = errors.New("blobstore: put: part upload failed")

// errDetached is returned by a request body read after its request ended.
var errDetached = errors.New("blobstore: request body read after the request ended")

// partReader is the body of one part: it reads its chunks in order and
// hands each back to the reader of the input once it has been sent. It is
// not an io.Seeker, so the client does not retry a failed part.
type partReader struct {
	mu     sync.Mutex
	chunks [][]byte      // guarded by mu; chunks[0][off:] is read next
	off    int           // guarded by mu
	free   chan<- []byte // where sent chunks go
	done   bool          // guarded by mu; set by detach
}

// Read implements io.Reader.
func (p *partReader) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return 0, errDetached
	}
	n := 0
	for n < len(b) && len(p.chunks) > 0 {
		c := p.chunks[0]
		m := copy(b[n:], c[p.off:])
		n += m
		p.off += m
		if p.off == len(c) {
			p.free <- c[:cap(c)]
			p.chunks, p.off = p.chunks[1:], 0
		}
	}
	if n == 0 && len(p.chunks) == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// detach ends the reader once its request has returned: the HTTP client
// may still hold the body (it closes it, and may read it, on its own
// goroutine), so after detach every Read fails and the chunks not sent are
// handed back.
func (p *partReader) detach() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = true
	for _, c := range p.chunks {
		p.free <- c[:cap(c)]
	}
	p.chunks = nil
}

// chunkReader is the body of a single-request Put: an io.ReadSeeker over
// chunks, so that the client can retry the request.
type chunkReader struct {
	mu     sync.Mutex
	chunks [][]byte // guarded by mu
	size   int64    // total length of chunks
	pos    int64    // guarded by mu
	done   bool     // guarded by mu; set by detach
}

// Read implements io.Reader.
func (c *chunkReader) Read(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return 0, errDetached
	}
	if c.pos >= c.size {
		return 0, io.EOF
	}
	n := 0
	off := c.pos
	for _, ch := range c.chunks {
		if n == len(b) {
			break
		}
		if off >= int64(len(ch)) {
			off -= int64(len(ch))
			continue
		}
		m := copy(b[n:], ch[off:])
		n += m
		off = 0
	}
	c.pos += int64(n)
	return n, nil
}

// Seek implements io.Seeker.
func (c *chunkReader) Seek(offset int64, whence int) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += c.pos
	case io.SeekEnd:
		offset += c.size
	default:
		return 0, errors.New("blobstore: seek: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("blobstore: seek: negative position")
	}
	c.pos = offset
	return offset, nil
}

// detach ends the reader once its request has returned (see
// partReader.detach).
func (c *chunkReader) detach() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	c.chunks = nil
}

// s3ChunkSet is the buffers of one Put. A buffer is allocated when a Put
// first needs it, so a set that has only served small blobs holds one.
type s3ChunkSet [s3PartChunks][]byte

// chunk returns buffer i of set, allocating it if needed.
func (set *s3ChunkSet) chunk(i int) []byte {
	if set[i] == nil {
		set[i] = make([]byte, s3ChunkSize)
	}
	return set[i]
}

// s3ChunkSets holds up to four idle s3ChunkSets (20 MiB) for the next Puts.
// Unlike a sync.Pool, garbage collection does not empty it: a Put of a
// large blob then allocates a small fraction of its size even when the
// process has not put anything for a while.
var s3ChunkSets = make(chan *s3ChunkSet, 4)

// getS3ChunkSet returns an idle chunk set, or a new, empty one.
func getS3ChunkSet() *s3ChunkSet {
	select {
	case set := <-s3ChunkSets:
		return set
	default:
		return new(s3ChunkSet)
	}
}

// putS3ChunkSet keeps set for the next Put, unless enough sets are idle.
func putS3ChunkSet(set *s3ChunkSet) {
	select {
	case s3ChunkSets <- set:
	default:
	}
}

// prepareS3ChunkSet makes sure an idle chunk set has all its buffers.
func prepareS3ChunkSet() {
	set := getS3ChunkSet()
	for i := range set {
		set.chunk(i)
	}
	putS3ChunkSet(set)
}

// Get implements Store. It sends one GET request; the reader streams the
// response body and verifies it.
func (s *S3) Get(ctx context.Context, h framesync.Hash) (io.ReadCloser, Info, error) {
	if err := ctxErr(ctx, "get"); err != nil {
		return nil, Info{}, err
	}
	body, oi, _, err := s.core.GetObject(ctx, s.bucket, s.key(h), minio.GetObjectOptions{})
	if err != nil {
		return nil, Info{}, s.blobError(ctx, "get", h, err)
	}
	return newVerifier(ctx, body, body, h), Info{Hash: h, Size: oi.Size, ModTime: modTime(oi.LastModified)}, nil
}

// Stat implements Store. It sends one HEAD request.
func (s *S3) Stat(ctx context.Context, h framesync.Hash) (Info, error) {
	if err := ctxErr(ctx, "stat"); err != nil {
		return Info{}, err
	}
	return s.stat(ctx, "stat", h)
}

// stat returns the Info of blob h for operation op.
func (s *S3) stat(ctx context.Context, op string, h framesync.Hash) (Info, error) {
	oi, err := s.client.StatObject(ctx, s.bucket, s.key(h), minio.StatObjectOptions{})
	if err != nil {
		return Info{}, s.blobError(ctx, op, h, err)
	}
	return Info{Hash: h, Size: oi.Size, ModTime: modTime(oi.LastModified)}, nil
}

// Delete implements Store. S3 deletes a missing object without complaint,
// so Delete first checks that the blob exists. Of concurrent Deletes of one
// blob through one S3 value exactly one succeeds; through different S3
// values (several hubs), more than one may.
func (s *S3) Delete(ctx context.Context, h framesync.Hash) error {
	if err := ctxErr(ctx, "delete"); err != nil {
		return err
	}
	mu := &s.deleteMu[int(h[0])%len(s.deleteMu)]
	mu.Lock()
	defer mu.Unlock()
	if _, err := s.stat(ctx, "delete", h); err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, s.key(h), minio.RemoveObjectOptions{}); err != nil {
		return s.blobError(ctx, "delete", h, err)
	}
	return nil
}

// Walk implements Store. It lists the blob keys, a thousand per request,
// and ignores every key that is not named like a blob in the right shard.
func (s *S3) Walk(ctx context.Context, fn func(Info) error) error {
	if err := ctxErr(ctx, "walk"); err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	noOwner := false
	opts := minio.ListObjectsOptions{Prefix: s.prefix + blobsDir + "/", Recursive: true, FetchOwner: &noOwner}
	for oi := range s.client.ListObjectsIter(lctx, s.bucket, opts) {
		if oi.Err != nil {
			return s.opError(ctx, "walk", oi.Err)
		}
		if err := ctxErr(ctx, "walk"); err != nil {
			return err
		}
		h, ok := s.parseKey(oi.Key)
		if !ok {
			continue
		}
		if err := fn(Info{Hash: h, Size: oi.Size, ModTime: modTime(oi.LastModified)}); err != nil {
			return err
		}
	}
	// The listing stops without an error when ctx is done.
	return ctxErr(ctx, "walk")
}

// removeStale aborts the incomplete multipart uploads of blobs and of
// temporary objects under the prefix of s, and removes the temporary
// objects, started before cutoff. It touches nothing else of the bucket,
// which other programs may share. It is best effort: what it cannot
// remove stays.
func (s *S3) removeStale(ctx context.Context, cutoff time.Time) {
	for _, prefix := range []string{s.prefix + blobsDir + "/", s.tempPrefix()} {
		keyMarker, idMarker := "", ""
		for range 100 { // at most 100,000 uploads per prefix and open
			res, err := s.core.ListMultipartUploads(ctx, s.bucket, prefix, keyMarker, idMarker, "", 1000)
			if err != nil {
				break
			}
			for _, u := range res.Uploads {
				if u.Initiated.Before(cutoff) {
					_ = s.core.AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID)
				}
			}
			if !res.IsTruncated || res.NextKeyMarker == "" && res.NextUploadIDMarker == "" {
				break
			}
			keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
		}
	}
	noOwner := false
	opts := minio.ListObjectsOptions{Prefix: s.tempPrefix(), Recursive: true, FetchOwner: &noOwner}
	for oi := range s.client.ListObjectsIter(ctx, s.bucket, opts) {
		if oi.Err != nil {
			break
		}
		if oi.LastModified.Before(cutoff) {
			_ = s.client.RemoveObject(ctx, s.bucket, oi.Key, minio.RemoveObjectOptions{})
		}
	}
}

// blobError turns an error of the S3 client during operation op on blob h
// into a blobstore error, as opError does, with ErrNotFound for a missing
// object.
func (s *S3) blobError(ctx context.Context, op string, h framesync.Hash, err error) error {
	var resp minio.ErrorResponse
	if ctx.Err() == nil && errors.As(err, &resp) && resp.Code == minio.NoSuchKey {
		return notFound(op, h)
	}
	return s.opError(ctx, op+" "+h.String(), err)
}

// opError turns an error of the S3 client during operation op into a
// blobstore error: the context's error if ctx is done, an Unavailable
// error if the server could not be reached or reported a transient
// failure.
func (s *S3) opError(ctx context.Context, op string, err error) error {
	what := "blobstore: " + op
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w", what, cerr)
	}
	var resp minio.ErrorResponse
	errors.As(err, &resp)
	switch {
	case resp.Code == minio.NoSuchBucket:
		return &framesync.Error{Kind: framesync.Unavailable, Op: what,
			Msg: fmt.Sprintf("bucket %q of %s does not exist", s.bucket, s.name), Err: err}
	case resp.StatusCode >= 500, resp.Code == "SlowDown", resp.Code == "RequestTimeout",
		resp.Code == "" && resp.StatusCode == 0: // no S3 response: the network or the server is down
		return &framesync.Error{Kind: framesync.Unavailable, Op: what, Msg: "object store " + s.name + " unavailable", Err: err}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ForTest returns test-only methods of s: corrupting a blob and finding
// leftovers of failed Puts. The result's type is unexported to make clear
// it is not a stable API. ForTest panics outside a test binary.
func (s *S3) ForTest() s3ForTest {
	if !testing.Testing() {
		panic("blobstore: S3.ForTest called outside a test")
	}
	return s3ForTest{s}
}

// s3ForTest holds the test-only methods of an S3 store.
type s3ForTest struct{ s *S3 }

// Key returns the object key of blob h, whether or not it is stored.
func (t s3ForTest) Key(h framesync.Hash) string { return t.s.key(h) }

// Bucket returns the bucket of the store.
func (t s3ForTest) Bucket() string { return t.s.bucket }

// Prefix returns the key prefix of the store: "" or ending with a slash.
func (t s3ForTest) Prefix() string { return t.s.prefix }

// RemoveStale does what OpenS3 does with leftovers, for cutoff instead of
// a day ago.
func (t s3ForTest) RemoveStale(ctx context.Context, cutoff time.Time) { t.s.removeStale(ctx, cutoff) }

// Corrupt overwrites blob h through the S3 API with a copy whose middle
// byte has its bits flipped (or, for an empty blob, one byte long), as a
// faulty server or another writer would.
func (t s3ForTest) Corrupt(ctx context.Context, h framesync.Hash) error {
	rc, _, _, err := t.s.core.GetObject(ctx, t.s.bucket, t.s.key(h), minio.GetObjectOptions{})
	if err != nil {
		return err
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return err
	}
	if len(data) == 0 {
		data = []byte{0}
	} else {
		data[len(data)/2] ^= 0xff
	}
	return t.PutObject(ctx, t.s.key(h), data)
}

// PutObject stores data under key (relative to the bucket, not the
// prefix), bypassing the store.
func (t s3ForTest) PutObject(ctx context.Context, key string, data []byte) error {
	// The same request as the store's small puts: versitygw 1.8 misreads an
	// empty body sent with minio-go's default (streaming) signature and
	// answers the connection's next request with 400.
	sum := sha256.Sum256(data)
	_, err := t.s.core.PutObject(ctx, t.s.bucket, key, bytes.NewReader(data), int64(len(data)), "", hex.EncodeToString(sum[:]),
		minio.PutObjectOptions{DisableContentSha256: true})
	return err
}

// Leftovers returns what failed or running Puts left under the prefix:
// the keys of temporary objects and of incomplete multipart uploads.
func (t s3ForTest) Leftovers(ctx context.Context) ([]string, error) {
	var keys []string
	res, err := t.s.core.ListMultipartUploads(ctx, t.s.bucket, t.s.prefix, "", "", "", 1000)
	if err != nil {
		return nil, err
	}
	for _, u := range res.Uploads {
		keys = append(keys, "upload:"+u.Key)
	}
	for oi := range t.s.client.ListObjectsIter(ctx, t.s.bucket, minio.ListObjectsOptions{Prefix: t.s.prefix + tempDir + "/", Recursive: true}) {
		if oi.Err != nil {
			return nil, oi.Err
		}
		keys = append(keys, oi.Key)
	}
	return keys, nil
}
