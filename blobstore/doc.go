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
// The implementations are Dir, the filesystem store and embedded default,
// and Memory, for tests and caches. Package blobstoretest holds the
// conformance suite that every Store passes.
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
package blobstore
