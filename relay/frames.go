package relay

import (
	"bytes"
	"container/list"
	"context"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"framesync"
	"framesync/blobstore"
)

// lru is a least-recently-used cache bounded by the total cost of its
// values. It is safe for concurrent use.
type lru[K comparable, V any] struct {
	mu      sync.Mutex
	max     int64
	cost    int64
	ll      *list.List
	items   map[K]*list.Element
	costOf  func(V) int64
	maxItem int64
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
	c   int64
}

func newLRU[K comparable, V any](max, maxItem int64, costOf func(V) int64) *lru[K, V] {
	return &lru[K, V]{max: max, maxItem: maxItem, ll: list.New(), items: map[K]*list.Element{}, costOf: costOf}
}

func (c *lru[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*lruEntry[K, V]).val, true
	}
	var zero V
	return zero, false
}

func (c *lru[K, V]) add(k K, v V) {
	cost := c.costOf(v)
	if cost > c.maxItem {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		return
	}
	c.items[k] = c.ll.PushFront(&lruEntry[K, V]{key: k, val: v, c: cost})
	c.cost += cost
	for c.cost > c.max && c.ll.Len() > 0 {
		e := c.ll.Back()
		ent := e.Value.(*lruEntry[K, V])
		c.ll.Remove(e)
		delete(c.items, ent.key)
		c.cost -= ent.c
	}
}

type manifestCache = lru[framesync.Hash, framesync.Manifest]

func newManifestCache(n int64) *manifestCache {
	return newLRU[framesync.Hash, framesync.Manifest](n, 1, func(framesync.Manifest) int64 { return 1 })
}

// manifest returns the manifest stored as blob h.
func (s *Server) manifest(ctx context.Context, h framesync.Hash) (framesync.Manifest, error) {
	if m, ok := s.manifests.get(h); ok {
		return m, nil
	}
	b, err := s.blob(ctx, h)
	if err != nil {
		return nil, err
	}
	m, err := framesync.DecodeManifest(b)
	if err != nil {
		return nil, err
	}
	s.manifests.add(h, m)
	return m, nil
}

// blob returns the verified bytes of blob h, from the cache when warm.
func (s *Server) blob(ctx context.Context, h framesync.Hash) ([]byte, error) {
	if b, ok := s.blobCache.get(h); ok {
		return b, nil
	}
	b, err := blobstore.ReadAll(ctx, s.blobs, h)
	if err != nil {
		return nil, err
	}
	s.blobCache.add(h, b)
	return b, nil
}

// loadFrame reads the frame whose manifest is blob h. With validate it
// decodes every field and checks the whole frame.
func (s *Server) loadFrame(ctx context.Context, h framesync.Hash, validate bool) (*framesync.Frame, error) {
	m, err := s.manifest(ctx, h)
	if err != nil {
		return nil, missingBlob(err, h, "manifest")
	}
	f, err := framesync.JoinFrame(m, func(fh framesync.Hash) ([]byte, error) {
		b, err := s.blob(ctx, fh)
		if err != nil {
			return nil, missingBlob(err, fh, "")
		}
		return b, nil
	})
	if err != nil {
		return nil, err
	}
	if validate {
		if err := f.Validate(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// encodedFrame is a frame's msgpack encoding as pieces: map headers and
// field names between the cached blob bytes, so a download copies no field.
type encodedFrame struct {
	parts [][]byte
	size  int
}

// encodeFrame prepares the msgpack encoding of the fields sel (all when
// empty) of the frame whose manifest is blob h: a map of field name to
// the field's encoded bytes, which is the frame codec's own layout.
func (s *Server) encodeFrame(ctx context.Context, h framesync.Hash, sel []string) (*encodedFrame, error) {
	m, err := s.manifest(ctx, h)
	if err != nil {
		return nil, err
	}
	if len(sel) > 0 {
		if m, err = m.Select(sel...); err != nil {
			return nil, err
		}
	}
	names := m.Fields()
	// The map header and field names in one buffer; parts slice into it.
	var hdr bytes.Buffer
	enc := msgpack.NewEncoder(&hdr)
	enc.EncodeMapLen(len(names))
	ends := make([]int, len(names))
	for i, name := range names {
		enc.EncodeString(name)
		ends[i] = hdr.Len()
	}
	head := hdr.Bytes()
	f := &encodedFrame{parts: make([][]byte, 0, 2*len(names)+1), size: len(head)}
	if len(names) == 0 {
		f.parts = append(f.parts, head)
	}
	start := 0
	for i, name := range names {
		b, err := s.blob(ctx, m[name])
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", name, err)
		}
		f.parts = append(f.parts, head[start:ends[i]], b)
		f.size += len(b)
		start = ends[i]
	}
	return f, nil
}

// writeTo writes the frame to w.
func (f *encodedFrame) writeTo(w io.Writer) error {
	for _, p := range f.parts {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// frameJSON renders a frame as JSON-friendly values: arrays as nested
// lists, info and calc values as they are.
func frameJSON(f *framesync.Frame) (map[string]any, error) {
	out := map[string]any{}
	for _, name := range f.Fields() {
		v, _ := f.Field(name)
		if a, ok := v.(*framesync.Array); ok {
			j, err := arrayJSON(a)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			out[name] = j
			continue
		}
		if x, ok := v.(float64); ok {
			out[name] = jsonFloat(x)
			continue
		}
		out[name] = v
	}
	return out, nil
}

func arrayJSON(a *framesync.Array) (any, error) {
	var flat []any
	switch {
	case a.DType.IsFloat():
		v, err := a.Float64s()
		if err != nil {
			return nil, err
		}
		flat = make([]any, len(v))
		for i, x := range v {
			flat[i] = jsonFloat(x)
		}
	case a.DType.IsInteger():
		v, err := a.Int64s()
		if err != nil {
			return nil, err
		}
		flat = make([]any, len(v))
		for i, x := range v {
			flat[i] = x
		}
	case a.DType == framesync.Bool:
		v, err := a.Bools()
		if err != nil {
			return nil, err
		}
		flat = make([]any, len(v))
		for i, x := range v {
			flat[i] = x
		}
	default:
		v, err := a.Strings()
		if err != nil {
			return nil, err
		}
		flat = make([]any, len(v))
		for i, x := range v {
			flat[i] = x
		}
	}
	return reshape(flat, a.Shape), nil
}

func reshape(flat []any, shape []int) any {
	if len(shape) == 0 {
		if len(flat) == 1 {
			return flat[0]
		}
		return flat
	}
	if len(shape) == 1 {
		return flat
	}
	step := len(flat) / max(shape[0], 1)
	out := make([]any, shape[0])
	for i := range out {
		out[i] = reshape(flat[i*step:(i+1)*step], shape[1:])
	}
	return out
}

// jsonFloat returns x, or nil for NaN and infinities, which JSON cannot
// represent.
func jsonFloat(x float64) any {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return x
}
