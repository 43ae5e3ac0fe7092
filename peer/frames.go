package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"framesync"
	"framesync/blobstore"
	"framesync/crdt"
)

// frameReader reads frames through the blob cache, fetching what is
// missing from the hub when it can (fetch non-nil).
type frameReader struct {
	blobs *blobstore.Dir
	// fetchFields downloads fields names of frame e into the cache; nil
	// when offline.
	fetchFields func(ctx context.Context, e crdt.Entry, m framesync.Manifest, names []string) error
	// fetchBlob downloads one blob into the cache; nil when offline.
	fetchBlob func(ctx context.Context, h framesync.Hash) ([]byte, error)

	mu        sync.Mutex
	manifests map[framesync.Hash]framesync.Manifest
}

// maxManifests bounds the in-memory manifest cache.
const maxManifests = 8192

func (fr *frameReader) manifest(ctx context.Context, h framesync.Hash) (framesync.Manifest, error) {
	fr.mu.Lock()
	m, ok := fr.manifests[h]
	fr.mu.Unlock()
	if ok {
		return m, nil
	}
	b, err := blobstore.ReadAll(ctx, fr.blobs, h)
	if err != nil && fr.fetchBlob != nil && cacheMiss(err) {
		b, err = fr.fetchBlob(ctx, h)
	}
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", h, notCached(err))
	}
	if m, err = framesync.DecodeManifest(b); err != nil {
		return nil, err
	}
	fr.mu.Lock()
	if len(fr.manifests) >= maxManifests {
		clear(fr.manifests)
	}
	fr.manifests[h] = m
	fr.mu.Unlock()
	return m, nil
}

// cacheMiss reports whether err means the blob is not (usably) cached.
func cacheMiss(err error) bool {
	return errors.Is(err, blobstore.ErrNotFound) || errors.Is(err, blobstore.ErrCorrupt)
}

func notCached(err error) error {
	if errors.Is(err, blobstore.ErrNotFound) {
		return &framesync.Error{Kind: framesync.NotFound, Msg: "not in the local blob cache (read it once while connected)", Err: err}
	}
	return err
}

// frame returns the fields sel (all when empty) of the frame at entry e.
func (fr *frameReader) frame(ctx context.Context, e crdt.Entry, sel []string) (*framesync.Frame, error) {
	m, err := fr.manifest(ctx, e.Hash)
	if err != nil {
		return nil, fmt.Errorf("frame %s: %w", e.ID, err)
	}
	if len(sel) > 0 {
		if m, err = m.Select(sel...); err != nil {
			return nil, err
		}
	}
	if fr.fetchFields != nil {
		var missing []string
		for _, name := range m.Fields() {
			if _, err := fr.blobs.Stat(ctx, m[name]); err != nil {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			if err := fr.fetchFields(ctx, e, m, missing); err != nil {
				return nil, fmt.Errorf("frame %s: %w", e.ID, err)
			}
		}
	}
	f, err := framesync.JoinFrame(m, func(h framesync.Hash) ([]byte, error) {
		b, err := blobstore.ReadAll(ctx, fr.blobs, h)
		return b, notCached(err)
	})
	if err != nil {
		return nil, fmt.Errorf("frame %s: %w", e.ID, err)
	}
	return f, nil
}

// newFrameReader makes the room's reader, which fetches from the hub.
func (r *Room) reader() *frameReader {
	r.readerOnce.Do(func() {
		r.fr = &frameReader{
			blobs:       r.c.rep.blobs,
			manifests:   map[framesync.Hash]framesync.Manifest{},
			fetchFields: r.fetchFields,
			fetchBlob:   r.c.fetchBlob,
		}
		if p := r.c.p2p; p != nil {
			// The hub's HTTP first; the room's members when it fails.
			r.fr.fetchFields = func(ctx context.Context, e crdt.Entry, m framesync.Manifest, names []string) error {
				err := r.fetchFields(ctx, e, m, names)
				if err == nil {
					return nil
				}
				for _, name := range names {
					if _, perr := p.fetchBlob(ctx, r, m[name]); perr != nil {
						return errors.Join(err, perr)
					}
				}
				return nil
			}
			r.fr.fetchBlob = func(ctx context.Context, h framesync.Hash) ([]byte, error) {
				b, err := r.c.fetchBlob(ctx, h)
				if err == nil {
					return b, nil
				}
				b, perr := p.fetchBlob(ctx, r, h)
				if perr != nil {
					return nil, errors.Join(err, perr)
				}
				return b, nil
			}
		}
	})
	return r.fr
}

// Frame returns frame i (negative counts from the end) with the fields sel
// (all when none). Fields already in the blob cache are not fetched again:
// stepping through frames downloads only what changed.
func (r *Room) Frame(ctx context.Context, i int, sel ...string) (*framesync.Frame, error) {
	e, err := entryAt(r.data.traj, i)
	if err != nil {
		return nil, err
	}
	return r.reader().frame(ctx, e, sel)
}

// entryAt returns the entry at index i of traj, negative from the end.
func entryAt(traj *crdt.Trajectory, i int) (crdt.Entry, error) {
	n, err := traj.Len()
	if err != nil {
		return crdt.Entry{}, err
	}
	if i < 0 {
		i += n
	}
	if i < 0 || i >= n {
		return crdt.Entry{}, &framesync.Error{Kind: framesync.NotFound, Op: "frame", Msg: fmt.Sprintf("index %d is out of range: the room has %d frames", i, n)}
	}
	return traj.At(i)
}

// FrameByID returns the frame with ID id.
func (r *Room) FrameByID(ctx context.Context, id string, sel ...string) (*framesync.Frame, error) {
	i, err := r.data.traj.IndexOf(id)
	if err != nil {
		return nil, err
	}
	return r.Frame(ctx, i, sel...)
}

// Range calls fn for the frames start <= i < stop in order (negative
// bounds count from the end), with the fields sel (all when none). Whole
// frames missing from the cache are fetched in batches.
func (r *Room) Range(ctx context.Context, start, stop int, sel []string, fn func(i int, e crdt.Entry, f *framesync.Frame) error) error {
	prefetch := func(entries []crdt.Entry, b, end int) error {
		if len(sel) > 0 {
			return nil // fetched frame by frame, only the fields asked for
		}
		return r.prefetch(ctx, entries, b, end)
	}
	return rangeFrames(ctx, r.data.traj, r.reader(), start, stop, sel, prefetch, fn)
}

// rangeFrames is Range over any trajectory and reader; prefetch (nil:
// none) runs before each batch.
func rangeFrames(ctx context.Context, traj *crdt.Trajectory, fr *frameReader, start, stop int, sel []string,
	prefetch func(entries []crdt.Entry, b, end int) error, fn func(i int, e crdt.Entry, f *framesync.Frame) error) error {
	entries, err := traj.Entries()
	if err != nil {
		return err
	}
	start, stop = clampRange(start, stop, len(entries))
	for b := start; b < stop; b += rangeBatch {
		end := min(b+rangeBatch, stop)
		if prefetch != nil {
			if err := prefetch(entries, b, end); err != nil {
				return err
			}
		}
		for i := b; i < end; i++ {
			f, err := fr.frame(ctx, entries[i], sel)
			if err != nil {
				return fmt.Errorf("frame %d: %w", i, err)
			}
			if err := fn(i, entries[i], f); err != nil {
				return err
			}
		}
	}
	return nil
}

// rangeBatch is how many frames one range request fetches.
const rangeBatch = 64

func clampRange(start, stop, n int) (int, int) {
	if start < 0 {
		start = max(0, start+n)
	}
	if stop < 0 {
		stop += n
	}
	stop = min(stop, n)
	return start, max(start, stop)
}

// prefetch downloads the whole frames entries[start:stop] that are not in
// the cache, with one range request per run of missing frames.
func (r *Room) prefetch(ctx context.Context, entries []crdt.Entry, start, stop int) error {
	var missing []int
	for i := start; i < stop; i++ {
		if ok, _ := blobstore.Has(ctx, r.c.rep.blobs, entries[i].Hash); !ok {
			missing = append(missing, i)
		}
	}
	for len(missing) > 0 {
		// A run of consecutive indices.
		n := 1
		for n < len(missing) && missing[n] == missing[0]+n {
			n++
		}
		if err := r.fetchRange(ctx, entries, missing[0], missing[0]+n); err != nil {
			return err
		}
		missing = missing[n:]
	}
	return nil
}

// fetchRange downloads frames [start, stop) in one request and stores
// their fields and manifests in the cache. A frame that changed at the
// hub meanwhile (its manifest no longer matches) is skipped: reading it
// fetches it on its own.
func (r *Room) fetchRange(ctx context.Context, entries []crdt.Entry, start, stop int) error {
	q := url.Values{"start": {strconv.Itoa(start)}, "stop": {strconv.Itoa(stop)}}
	resp, err := r.c.do(ctx, "fetch frames", "GET", "/api/rooms/"+r.name+"/frames?"+q.Encode(), nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	cr := &countingReader{r: resp.Body, n: &r.c.fetched}
	dec := msgpack.NewDecoder(cr)
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return fmt.Errorf("fetch frames: bad answer: %w", err)
	}
	for k := 0; k < n; k++ {
		fields, err := decodeFieldMap(dec)
		if err != nil {
			return fmt.Errorf("fetch frames: frame %d: %w", start+k, err)
		}
		if start+k >= stop {
			continue
		}
		m := framesync.Manifest{}
		for name, raw := range fields {
			m[name] = framesync.Sum(raw)
		}
		if m.Hash() != entries[start+k].Hash {
			continue
		}
		for name, raw := range fields {
			if _, err := r.c.rep.blobs.Put(ctx, bytes.NewReader(raw), m[name]); err != nil {
				return err
			}
		}
		if _, err := r.c.rep.blobs.Put(ctx, bytes.NewReader(m.Encode()), m.Hash()); err != nil {
			return err
		}
	}
	return nil
}

// decodeFieldMap reads one frame of the hub's msgpack answer: a map of
// field name to the field's encoded bytes (each exactly a field blob).
func decodeFieldMap(dec *msgpack.Decoder) (map[string][]byte, error) {
	n, err := dec.DecodeMapLen()
	if err != nil {
		return nil, err
	}
	if n < 0 || n > 1<<16 {
		return nil, fmt.Errorf("bad field count %d", n)
	}
	out := make(map[string][]byte, n)
	for range n {
		name, err := dec.DecodeString()
		if err != nil {
			return nil, err
		}
		raw, err := dec.DecodeRaw()
		if err != nil {
			return nil, err
		}
		out[name] = raw
	}
	return out, nil
}

// fetchFields downloads fields names of frame e (at e's version) into the
// cache, in one request, checking each against the manifest m.
func (r *Room) fetchFields(ctx context.Context, e crdt.Entry, m framesync.Manifest, names []string) error {
	q := url.Values{"version": {strconv.FormatInt(e.Version, 10)}, "data": {strings.Join(names, ",")}}
	resp, err := r.c.do(ctx, "fetch frame", "GET", "/api/rooms/"+r.name+"/frames/"+e.ID+"?"+q.Encode(), nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	fields, err := decodeFieldMap(msgpack.NewDecoder(&countingReader{r: resp.Body, n: &r.c.fetched}))
	if err != nil {
		return fmt.Errorf("fetch frame: bad answer: %w", err)
	}
	for _, name := range names {
		raw, ok := fields[name]
		if !ok {
			return fmt.Errorf("fetch frame: the hub sent no field %q", name)
		}
		if _, err := r.c.rep.blobs.Put(ctx, bytes.NewReader(raw), m[name]); err != nil {
			return fmt.Errorf("fetch frame: field %s: %w", name, err)
		}
	}
	return nil
}

// fetchBlob downloads blob h into the cache and returns it.
func (c *Client) fetchBlob(ctx context.Context, h framesync.Hash) ([]byte, error) {
	resp, err := c.do(ctx, "fetch blob", "GET", "/api/blobs/"+h.String(), nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(&countingReader{r: resp.Body, n: &c.fetched})
	if err != nil {
		return nil, fmt.Errorf("fetch blob %s: %w", h, err)
	}
	if _, err := c.rep.blobs.Put(ctx, bytes.NewReader(b), h); err != nil {
		return nil, fmt.Errorf("fetch blob %s: %w", h, err)
	}
	return b, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n interface{ Add(int64) int64 }
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
