package blobstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"framesync"
)

// Memory is a Store that keeps blobs in memory, for tests and caches. It is
// safe for concurrent use. Its zero value is not usable: call NewMemory.
type Memory struct {
	mu    sync.RWMutex
	blobs map[framesync.Hash]memBlob // guarded by mu
	now   func() time.Time           // guarded by mu; time.Now unless set by ForTest
}

// memBlob is one blob of a Memory store. data is never modified once
// stored, so readers may use it without holding the lock.
type memBlob struct {
	data []byte
	mod  time.Time
}

var (
	_ Store  = (*Memory)(nil)
	_ Pruner = (*Memory)(nil)
)

// NewMemory returns an empty Memory store.
func NewMemory() *Memory {
	return &Memory{blobs: make(map[framesync.Hash]memBlob), now: time.Now}
}

// Put implements Store. The whole content is held in memory: callers limit
// its size.
func (m *Memory) Put(ctx context.Context, r io.Reader, want framesync.Hash) (Info, error) {
	if err := ctxErr(ctx, "put"); err != nil {
		return Info{}, err
	}
	data, h, err := readHashed(ctx, r)
	if err != nil {
		return Info{}, err
	}
	if !want.IsZero() && h != want {
		return Info{}, mismatchError(h, want)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[h]
	if !ok {
		b.data = data
	}
	b.mod = m.now()
	m.blobs[h] = b
	return Info{Hash: h, Size: int64(len(b.data)), ModTime: b.mod}, nil
}

// readHashed reads r to the end, checking ctx between chunks, and returns
// the content and its hash. It reads into chunks of growing size and joins
// them once at the end, so it allocates about twice the content size (a
// doubling slice would allocate up to five times as much).
func readHashed(ctx context.Context, r io.Reader) ([]byte, framesync.Hash, error) {
	const (
		firstChunk = 32 << 10
		maxChunk   = 4 << 20
	)
	size := firstChunk
	if l, ok := r.(interface{ Len() int }); ok && l.Len() >= 0 && l.Len() < maxChunk {
		size = l.Len() + 1 // bytes.Reader, strings.Reader, bytes.Buffer: room for the final io.EOF
	}
	h := framesync.NewHasher()
	var chunks [][]byte
	total := 0
	buf := make([]byte, 0, size)
	for {
		if err := ctxErr(ctx, "put"); err != nil {
			return nil, framesync.Hash{}, err
		}
		if len(buf) == cap(buf) {
			chunks = append(chunks, buf)
			buf = make([]byte, 0, min(2*cap(buf), maxChunk))
		}
		n, err := readSome(r, buf[len(buf):cap(buf)])
		h.Write(buf[len(buf) : len(buf)+n])
		buf = buf[:len(buf)+n]
		total += n
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, framesync.Hash{}, fmt.Errorf("blobstore: put: read: %w", err)
		}
	}
	if len(chunks) == 0 {
		return buf, framesync.HashOf(h), nil
	}
	data := make([]byte, 0, total)
	for _, c := range chunks {
		data = append(data, c...)
	}
	return append(data, buf...), framesync.HashOf(h), nil
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, h framesync.Hash) (io.ReadCloser, Info, error) {
	if err := ctxErr(ctx, "get"); err != nil {
		return nil, Info{}, err
	}
	m.mu.RLock()
	b, ok := m.blobs[h]
	m.mu.RUnlock()
	if !ok {
		return nil, Info{}, notFound("get", h)
	}
	return newVerifier(ctx, bytes.NewReader(b.data), nil, h), b.info(h), nil
}

// Stat implements Store.
func (m *Memory) Stat(ctx context.Context, h framesync.Hash) (Info, error) {
	if err := ctxErr(ctx, "stat"); err != nil {
		return Info{}, err
	}
	m.mu.RLock()
	b, ok := m.blobs[h]
	m.mu.RUnlock()
	if !ok {
		return Info{}, notFound("stat", h)
	}
	return b.info(h), nil
}

// Delete implements Store.
func (m *Memory) Delete(ctx context.Context, h framesync.Hash) error {
	if err := ctxErr(ctx, "delete"); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.blobs[h]; !ok {
		return notFound("delete", h)
	}
	delete(m.blobs, h)
	return nil
}

// Prune implements Pruner.
func (m *Memory) Prune(ctx context.Context, h framesync.Hash, olderThan time.Time) (bool, error) {
	if err := ctxErr(ctx, "prune"); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[h]
	if !ok {
		return false, notFound("prune", h)
	}
	if !b.mod.Before(olderThan) {
		return false, nil
	}
	delete(m.blobs, h)
	return true, nil
}

// Walk implements Store. It walks a snapshot taken when it starts.
func (m *Memory) Walk(ctx context.Context, fn func(Info) error) error {
	if err := ctxErr(ctx, "walk"); err != nil {
		return err
	}
	m.mu.RLock()
	infos := make([]Info, 0, len(m.blobs))
	for h, b := range m.blobs {
		infos = append(infos, b.info(h))
	}
	m.mu.RUnlock()
	for _, info := range infos {
		if err := ctxErr(ctx, "walk"); err != nil {
			return err
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// info returns the Info of b, stored as h.
func (b memBlob) info(h framesync.Hash) Info {
	return Info{Hash: h, Size: int64(len(b.data)), ModTime: b.mod}
}
