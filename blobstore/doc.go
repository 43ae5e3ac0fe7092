// Package blobstore stores blobs: immutable byte strings addressed by their
// SHA-256 (framesync.Hash, printed "sha256:<hex>").
//
// # Interface
//
// Store is the one interface: Put, Get, Stat, Delete and Walk. Put hashes
// while it streams and stores nothing unless the whole input arrived (and
// matched the expected hash, if one was given). Get returns a reader that
// hashes while it streams and turns the final io.EOF into an error wrapping
// ErrCorrupt if the stored bytes no longer match their name, so reading to
// the end never returns corrupt data as a success. Identical content is
// stored once; putting it again refreshes its ModTime. Has, ReadAll and
// PutBytes are helpers over any Store; Collect is the building block of
// garbage collection (delete what no one references, after a grace window);
// Pruner is an optional ability that makes Collect race-free.
//
// Errors wrap the sentinels ErrNotFound, ErrHashMismatch and ErrCorrupt,
// which carry the framesync kinds NotFound, BadInput and Corrupt, so callers
// can test errors.Is(err, blobstore.ErrNotFound) or map any error to a wire
// code with framesync.KindOf.
//
// The implementations are Dir, the filesystem store and embedded default;
// Memory, for tests and caches; and S3, a bucket of an S3-compatible object
// store (AWS S3, MinIO, versitygw...) that several hubs share. Open opens
// any of them from a location string: a directory path, file:///dir, or
// s3://ACCESS:SECRET@HOST[:PORT]/BUCKET[/PREFIX]?secure=false&region=R.
// Package blobstoretest holds the conformance suite that every Store
// passes; package s3test starts a real S3-compatible server for tests.
//
// # Dir layout
//
// A Dir rooted at root uses two directories:
//
//	root/sha256/ab/ab12…ef   one regular, read-only file per blob, named by the 64
//	                         lower-case hex digits of its hash, in the shard directory
//	                         named by the first two of them
//	root/tmp/                files being written (put-*) or being pruned (gc-*)
//
// Walk ignores everything else: files with other names, in the wrong shard
// or of another type, and the temp directory. Several processes may share a
// root (a shared directory serving many hubs).
//
// # Dir guarantees
//
// A Put writes the content to a new file in root/tmp while hashing it,
// fsyncs that file, renames it to its final name and fsyncs the shard
// directory before it returns. So a crash never leaves a partial or
// unverified blob under a final name, and a blob whose Put returned is on
// disk. Leftover temp files are removed by OpenDir once they are an hour
// old. Concurrent Puts of the same content are safe and store it once. A
// Put of content already stored skips the fsync and only refreshes the
// ModTime (the file's mtime); if the caller passes the expected hash of a
// blob already stored, Put only reads and hashes the input, writing
// nothing. A re-put does not repair a corrupt blob (Delete it first).
// Deletes are not fsynced: after a crash a deleted blob may be back,
// intact.
//
// On Linux, Put writes with O_DIRECT where the filesystem allows it (and
// falls back to the page cache where it does not): blobs are large and
// written once, and skipping the page cache copy made Put about twice as
// fast on the 2-core build machine (see BenchmarkDirPutVariants_2_4MB).
// Hashing overlaps the filesystem work: one
// goroutine reads and hashes while another creates the temp file and
// writes, with a few 1 MiB buffers between them.
//
// # S3 layout
//
// An S3 store with key prefix P (possibly empty) uses these keys of its
// bucket:
//
//	P/sha256/ab/ab12…ef   one object per blob, named as in a Dir
//	P/tmp/put-*           large blobs being put whose hash was not given
//
// plus incomplete multipart uploads to either. Walk lists P/sha256/ and
// ignores every key not named like a blob in the right shard. Several
// stores may share a bucket under different prefixes, and several hubs one
// prefix. ModTime is the object's LastModified, in whole seconds, by the
// server's clock.
//
// # S3 guarantees
//
// A Put reads up to 5 MiB (the smallest multipart part S3 accepts) into
// memory while hashing it. Content shorter than that goes up in one PUT
// that carries its SHA-256, which the server checks. Longer content goes
// up as a multipart upload of 5 MiB parts while the rest is read and
// hashed: straight to the blob's key if the caller gave its hash, and
// completed only if the content matched it; otherwise to a temporary key,
// then copied on the server to the blob's key, and the temporary object
// removed. A Put holds at most 5 MiB of buffers (1 MiB buffers, reused
// across Puts; OpenS3 sets one full set aside), whatever the size, which
// limits a blob to 10,000 parts (about 48.8 GiB). S3
// makes an object visible only once complete, so a blob is never seen
// partial or unverified; a failed Put aborts its upload (repeating the
// abort until the server no longer lists it), and OpenS3 removes uploads
// and temporary objects more than a day old. Requests other than part
// uploads are retried by the client library (up to 10 times within about
// 8 seconds) while ctx allows; a failed part fails the Put, and the
// caller puts again. An unreachable server, or one that reports a
// transient failure, gives errors of kind Unavailable.
//
// Unlike Dir, a Put of content already stored uploads it again: S3 has no
// way to refresh LastModified that works on every server (a copy onto
// itself keeps it on some). A re-put thus also repairs a corrupt object.
// Get sends one GET and verifies the body as it streams. S3 deletes a
// missing object without complaint, so Delete first checks that the blob
// exists; of concurrent Deletes of one blob through one S3 value exactly
// one succeeds, through several (several hubs) more than one may. S3 is
// not a Pruner: Collect deletes with Stat and Delete, which leaves a short
// race with a Put that re-puts the blob in between. Durability is the
// server's: versitygw's POSIX backend, used by the tests, does not fsync.
package blobstore
