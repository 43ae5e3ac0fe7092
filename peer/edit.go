package peer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"framesync"
	"framesync/crdt"
	"framesync/relay/wire"
)

// Lock targets.
const TrajectoryTarget = "trajectory" // structural edits: append, insert, delete, move

// FrameTarget is the lock target of one frame's content.
func FrameTarget(id string) string { return "frame:" + id }

// DefaultLockTTL is the TTL of locks taken with ttl 0. Held locks are
// renewed in the background well before they expire.
const DefaultLockTTL = 30 * time.Second

// Lock is a lease on a target of a room, held until Release and renewed in
// the background. A lock can be lost (its renewal failed, it expired, or
// the connection dropped): Lost is closed then and Err says why; edits
// under a lost lock fail at the hub, which is what fencing is for.
type Lock struct {
	// Static after Lock.
	r      *Room
	target string
	token  int64
	ttl    time.Duration
	stop   chan struct{} // closed by Release
	done   chan struct{} // closed when the renewer has stopped
	lostCh chan struct{}

	mu   sync.Mutex
	err  error // why it was lost
	once sync.Once
}

// Lock acquires the lock on target (TrajectoryTarget or FrameTarget(id))
// with ttl (0 = DefaultLockTTL) and renews it until Release. While held,
// the room's edits of that target use it instead of taking their own. If
// another client holds the lock, the error is an *Error of kind
// framesync.Locked naming the holder.
func (r *Room) Lock(ctx context.Context, target string, ttl time.Duration) (*Lock, error) {
	if ttl == 0 {
		ttl = DefaultLockTTL
	}
	m, err := r.c.request(ctx, &wire.Msg{T: wire.MsgLock, Room: r.name, Target: target, TTLms: ttl.Milliseconds()})
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", target, err)
	}
	l := &Lock{r: r, target: target, token: m.Token, ttl: ttl, stop: make(chan struct{}), done: make(chan struct{}), lostCh: make(chan struct{})}
	r.mu.Lock()
	r.locks[target] = l
	r.mu.Unlock()
	go l.renew()
	return l, nil
}

// Target returns the locked target.
func (l *Lock) Target() string { return l.target }

// Token returns the lock's fencing token.
func (l *Lock) Token() int64 { return l.token }

// Lost is closed when the lock is lost.
func (l *Lock) Lost() <-chan struct{} { return l.lostCh }

// Err returns why the lock was lost, nil while it is held.
func (l *Lock) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// renew renews the lock every third of its TTL until Release or loss.
func (l *Lock) renew() {
	defer close(l.done)
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.lostCh:
			return
		case <-l.r.c.ctx.Done():
			l.lose(ErrClosed)
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(l.r.c.ctx, l.ttl/3)
		_, err := l.r.c.request(ctx, &wire.Msg{T: wire.MsgRenew, Room: l.r.name, Target: l.target, Token: l.token, TTLms: l.ttl.Milliseconds()})
		cancel()
		if err != nil {
			l.lose(fmt.Errorf("renewal failed: %w", err))
			return
		}
	}
}

// lose marks the lock lost and tells the room's subscribers.
func (l *Lock) lose(err error) {
	l.once.Do(func() {
		l.mu.Lock()
		l.err = err
		l.mu.Unlock()
		close(l.lostCh)
		l.r.forget(l)
		l.r.emit(Event{Type: EventLockLost, Msg: &wire.Msg{T: EventLockLost, Room: l.r.name, Target: l.target, Token: l.token}, Err: err})
	})
}

// forget removes l from the room's held locks.
func (r *Room) forget(l *Lock) {
	r.mu.Lock()
	if r.locks[l.target] == l {
		delete(r.locks, l.target)
	}
	r.mu.Unlock()
}

// Release releases the lock. Releasing a lost lock returns why it was
// lost.
func (l *Lock) Release(ctx context.Context) error {
	select {
	case <-l.stop:
		return nil // released before
	default:
	}
	close(l.stop)
	<-l.done
	if err := l.Err(); err != nil {
		return fmt.Errorf("lock %s was lost: %w", l.target, err)
	}
	l.once.Do(func() {
		l.mu.Lock()
		l.err = errors.New("released")
		l.mu.Unlock()
		close(l.lostCh)
	})
	l.r.forget(l)
	_, err := l.r.c.request(ctx, &wire.Msg{T: wire.MsgUnlock, Room: l.r.name, Target: l.target, Token: l.token})
	if err != nil {
		return fmt.Errorf("unlock %s: %w", l.target, err)
	}
	return nil
}

// held returns a held lock that covers target: the target's own, or the
// trajectory lock, which covers every frame.
func (r *Room) held(target string) *Lock {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.locks[target]; l != nil {
		return l
	}
	if strings.HasPrefix(target, "frame:") {
		return r.locks[TrajectoryTarget]
	}
	return nil
}

// withLock runs fn with a token for target: that of a lock the caller
// holds, or of one taken for fn and released after.
func (r *Room) withLock(ctx context.Context, target string, fn func(l *Lock) error) error {
	if l := r.held(target); l != nil {
		if err := l.Err(); err != nil {
			return fmt.Errorf("lock %s was lost: %w", l.target, err)
		}
		return fn(l)
	}
	l, err := r.Lock(ctx, target, 0)
	if err != nil {
		return err
	}
	err = fn(l)
	if rerr := l.Release(context.WithoutCancel(ctx)); err == nil {
		err = rerr
	}
	return err
}

// Upload stores the frames' blobs at the hub, sending only those it
// lacks, and returns the hashes of their manifests. The blobs also go to
// the local cache, so reading the frames back costs nothing.
func (r *Room) Upload(ctx context.Context, frames ...*framesync.Frame) ([]framesync.Hash, error) {
	return r.c.upload(ctx, frames)
}

func (c *Client) upload(ctx context.Context, frames []*framesync.Frame) ([]framesync.Hash, error) {
	hashes := make([]framesync.Hash, len(frames))
	all := map[framesync.Hash][]byte{}
	for i, f := range frames {
		if err := f.Validate(); err != nil {
			return nil, fmt.Errorf("frame %d: %w", i, err)
		}
		m, blobs, err := f.Split()
		if err != nil {
			return nil, fmt.Errorf("frame %d: %w", i, err)
		}
		blobs[m.Hash()] = m.Encode()
		hashes[i] = m.Hash()
		maps.Copy(all, blobs)
	}
	if err := c.storeBlobs(ctx, all); err != nil {
		return nil, err
	}
	return hashes, nil
}

// storeBlobs puts blobs in the local cache and uploads those the hub
// lacks, from memory.
func (c *Client) storeBlobs(ctx context.Context, blobs map[framesync.Hash][]byte) error {
	hs := make([]framesync.Hash, 0, len(blobs))
	for h, b := range blobs {
		if _, err := c.rep.blobs.Put(ctx, bytes.NewReader(b), h); err != nil {
			return fmt.Errorf("cache: %w", err)
		}
		hs = append(hs, h)
	}
	missing, err := c.missing(ctx, hs)
	if err != nil {
		return err
	}
	return c.putBlobs(ctx, missing, blobs)
}

// missing asks the hub which of hs it lacks.
func (c *Client) missing(ctx context.Context, hs []framesync.Hash) ([]framesync.Hash, error) {
	var out []framesync.Hash
	const batch = 10000
	for len(hs) > 0 {
		n := min(batch, len(hs))
		req := wire.MissingRequest{Hashes: make([]string, n)}
		for i, h := range hs[:n] {
			req.Hashes[i] = h.String()
		}
		var resp struct {
			Missing []string `json:"missing"`
		}
		err := c.retry(ctx, func() error {
			return c.doJSON(ctx, "missing blobs", "POST", "/api/blobs/missing", req, &resp)
		})
		if err != nil {
			return nil, err
		}
		for _, s := range resp.Missing {
			h, err := framesync.ParseHash(s)
			if err != nil {
				return nil, fmt.Errorf("missing blobs: bad answer: %w", err)
			}
			out = append(out, h)
		}
		hs = hs[n:]
	}
	return out, nil
}

// Uploads go in batches (POST /api/blobs), which the hub makes durable
// with one filesystem barrier each rather than one fsync per blob.
const (
	uploadWorkers  = 4       // batches in flight at once
	batchBytes     = 8 << 20 // a batch holds at most this many bytes...
	batchBlobs     = 1024    // ...and this many blobs
	uploadAttempts = 9       // tries of one request (see retry)
)

// putBlobs uploads blobs hs, whose bytes data holds, in batches, a few at
// a time.
func (c *Client) putBlobs(ctx context.Context, hs []framesync.Hash, data map[framesync.Hash][]byte) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan []framesync.Hash)
	var wg sync.WaitGroup
	for range min(uploadWorkers, len(hs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				if err := c.putBatch(ctx, b, data); err != nil {
					cancel(err)
				}
			}
		}()
	}
	var cur []framesync.Hash
	var size int
	send := func() bool {
		if len(cur) == 0 {
			return true
		}
		select {
		case work <- cur:
			cur, size = nil, 0
			return true
		case <-ctx.Done():
			return false
		}
	}
	for _, h := range hs {
		n := len(data[h])
		if len(cur) > 0 && (size+n > batchBytes || len(cur) == batchBlobs) && !send() {
			break
		}
		cur = append(cur, h)
		size += n
	}
	send()
	close(work)
	wg.Wait()
	return context.Cause(ctx)
}

// putBatch uploads blobs hs in one request, retrying as retry does.
func (c *Client) putBatch(ctx context.Context, hs []framesync.Hash, data map[framesync.Hash][]byte) error {
	var body []byte
	for _, h := range hs {
		b, ok := data[h]
		if !ok {
			return fmt.Errorf("upload %s: the hub asked for a blob not sent", h)
		}
		body = binary.BigEndian.AppendUint32(body, uint32(len(b)))
		body = append(body, b...)
	}
	return c.retry(ctx, func() error {
		resp, err := c.do(ctx, "upload blobs", "POST", "/api/blobs", bytes.NewReader(body), wire.ContentBlobs)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var out wire.BlobsPut
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return fmt.Errorf("upload blobs: bad answer: %w", err)
		}
		if len(out.Blobs) != len(hs) {
			return fmt.Errorf("upload blobs: the hub stored %d of %d blobs", len(out.Blobs), len(hs))
		}
		for i, b := range out.Blobs {
			if b.Hash != hs[i].String() {
				return fmt.Errorf("upload blobs: blob %d stored as %s, sent as %s", i, b.Hash, hs[i])
			}
		}
		c.uploaded.Add(int64(len(body) - 4*len(hs)))
		return nil
	})
}

// retry runs an idempotent request until it succeeds or fails for good:
// failures that may pass (the hub is unreachable or answers 5xx) are
// retried with jittered exponential backoff for about half a minute, so an
// upload survives a hub restart. Commits are never retried: a lost answer
// could make a retried append land twice.
func (c *Client) retry(ctx context.Context, fn func() error) error {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		var he *Error
		if attempt == uploadAttempts || ctx.Err() != nil || !errors.As(err, &he) || (he.Status != 0 && he.Status < 500) {
			return err
		}
		c.log.Debug("request failed, retrying", "attempt", attempt, "err", err)
		t := time.NewTimer(wait/2 + rand.N(wait))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, 8*time.Second)
	}
}

// commitWait bounds how long an edit waits for the local replica to catch
// up with its commit before returning.
const commitWait = 10 * time.Second

// commit sends a commit and waits until the replica has it.
func (r *Room) commit(ctx context.Context, req *wire.CommitRequest) (*wire.CommitResult, error) {
	res, err := r.send(ctx, req)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, commitWait)
	defer cancel()
	r.WaitGeneration(wctx, res.Generation) // the commit stands either way
	return res, nil
}

// send sends a commit.
func (r *Room) send(ctx context.Context, req *wire.CommitRequest) (*wire.CommitResult, error) {
	body, err := msgpack.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := r.c.do(ctx, req.Op, "POST", "/api/rooms/"+r.name+"/commit", bytes.NewReader(body), wire.ContentMsgpack)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var res wire.CommitResult
	if err := msgpackOrJSON(resp, &res); err != nil {
		return nil, fmt.Errorf("%s: bad answer from the hub: %w", req.Op, err)
	}
	return &res, nil
}

// edit runs one commit under the lock of target.
func (r *Room) edit(ctx context.Context, target string, req *wire.CommitRequest) (*wire.CommitResult, error) {
	var res *wire.CommitResult
	err := r.withLock(ctx, target, func(l *Lock) error {
		req.Token, req.Target = l.token, l.target
		var err error
		res, err = r.commit(ctx, req)
		return err
	})
	return res, err
}

// Append adds frames at the end of the room's trajectory.
func (r *Room) Append(ctx context.Context, frames ...*framesync.Frame) (*wire.CommitResult, error) {
	if len(frames) == 0 {
		return &wire.CommitResult{Generation: r.Generation(), Length: r.Len(), Frames: []wire.FrameRef{}}, nil
	}
	hs, err := r.Upload(ctx, frames...)
	if err != nil {
		return nil, err
	}
	op := wire.OpAppend
	if len(hs) > 1 {
		op = wire.OpExtend
	}
	return r.edit(ctx, TrajectoryTarget, &wire.CommitRequest{Op: op, Manifests: hashStrings(hs)})
}

// Extend is Append of many frames.
func (r *Room) Extend(ctx context.Context, frames []*framesync.Frame) (*wire.CommitResult, error) {
	return r.Append(ctx, frames...)
}

// Insert adds frame f at index i (0 <= i <= Len).
func (r *Room) Insert(ctx context.Context, i int, f *framesync.Frame) (*wire.CommitResult, error) {
	hs, err := r.Upload(ctx, f)
	if err != nil {
		return nil, err
	}
	idx := int64(i)
	return r.edit(ctx, TrajectoryTarget, &wire.CommitRequest{Op: wire.OpInsert, Index: &idx, Manifests: hashStrings(hs)})
}

// Set replaces frame i with f: a new version of the same frame (same ID),
// based on the version the local replica has now. To be sure not to
// overwrite a change made since the frame was read, use Replace with the
// version read, or Update.
func (r *Room) Set(ctx context.Context, i int, f *framesync.Frame) (*wire.CommitResult, error) {
	e, err := r.Entry(i)
	if err != nil {
		return nil, err
	}
	return r.Replace(ctx, e.ID, e.Version, f)
}

// Replace writes f as the new version of frame id, made from version base.
// If the frame has another version at the hub by now, nothing is written
// and the error is an *Error of kind framesync.Conflict whose
// CurrentVersion says which.
func (r *Room) Replace(ctx context.Context, id string, base int64, f *framesync.Frame) (*wire.CommitResult, error) {
	hs, err := r.Upload(ctx, f)
	if err != nil {
		return nil, err
	}
	return r.edit(ctx, FrameTarget(id), &wire.CommitRequest{Op: wire.OpReplace, Frame: id, Base: &base, Manifests: hashStrings(hs)})
}

// Update changes frame i by read, modify, write: it reads the frame, calls
// fn on it and commits the result with the version read as base. When
// another client changed the frame in between, it waits for the replica
// to have that version and tries again, up to attempts times (0 = 5).
func (r *Room) Update(ctx context.Context, i int, attempts int, fn func(f *framesync.Frame) error) (*wire.CommitResult, error) {
	if attempts <= 0 {
		attempts = 5
	}
	e, err := r.Entry(i)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		f, err := r.FrameByID(ctx, e.ID)
		if err != nil {
			return nil, err
		}
		if err := fn(f); err != nil {
			return nil, err
		}
		res, err := r.Replace(ctx, e.ID, e.Version, f)
		var he *Error
		if err == nil || attempt == attempts || !errors.As(err, &he) || he.Kind != framesync.Conflict {
			return res, err
		}
		cur, _ := he.CurrentVersion()
		if err := r.waitVersion(ctx, e.ID, cur); err != nil {
			return nil, err
		}
		if e, err = r.entryByID(e.ID); err != nil {
			return nil, err
		}
	}
}

// entryByID returns the local entry of frame id.
func (r *Room) entryByID(id string) (crdt.Entry, error) {
	i, err := r.data.traj.IndexOf(id)
	if err != nil {
		return crdt.Entry{}, err
	}
	return r.data.traj.At(i)
}

// waitVersion waits until the replica has version v of frame id.
func (r *Room) waitVersion(ctx context.Context, id string, v int64) error {
	return r.waitTrajectory(ctx, func() (bool, error) {
		e, err := r.entryByID(id)
		return err == nil && e.Version >= v, err
	})
}

// Patch writes a new version of frame i in which the fields of fields are
// replaced (or added) and the fields named in remove are removed; the
// others keep their blobs. fields is a partial frame: it need not hold
// numbers or positions. Conflicts are reported as by Set.
func (r *Room) Patch(ctx context.Context, i int, fields *framesync.Frame, remove ...string) (*wire.CommitResult, error) {
	e, err := r.Entry(i)
	if err != nil {
		return nil, err
	}
	req := &wire.CommitRequest{Op: wire.OpPatch, Frame: e.ID, Base: &e.Version, Remove: remove, Fields: map[string]string{}}
	if fields != nil {
		if err := fields.ValidatePartial(); err != nil {
			return nil, err
		}
		m, blobs, err := fields.Split()
		if err != nil {
			return nil, err
		}
		if err := r.c.storeBlobs(ctx, blobs); err != nil {
			return nil, err
		}
		for name, h := range m {
			req.Fields[name] = h.String()
		}
	}
	return r.edit(ctx, FrameTarget(e.ID), req)
}

// Delete removes frame i.
func (r *Room) Delete(ctx context.Context, i int) (*wire.CommitResult, error) {
	e, err := r.Entry(i)
	if err != nil {
		return nil, err
	}
	return r.edit(ctx, TrajectoryTarget, &wire.CommitRequest{Op: wire.OpDelete, Frame: e.ID})
}

// Clear deletes every frame of the room (one commit per frame, under one
// trajectory lock), last to first.
func (r *Room) Clear(ctx context.Context) error {
	return r.withLock(ctx, TrajectoryTarget, func(l *Lock) error {
		entries, err := r.data.traj.Entries()
		if err != nil {
			return err
		}
		var gen int64
		for i := len(entries) - 1; i >= 0; i-- {
			res, err := r.send(ctx, &wire.CommitRequest{Op: wire.OpDelete, Frame: entries[i].ID, Token: l.token, Target: l.target})
			if err != nil {
				return fmt.Errorf("clear: frame %d: %w", i, err)
			}
			gen = res.Generation
		}
		wctx, cancel := context.WithTimeout(ctx, commitWait)
		defer cancel()
		r.WaitGeneration(wctx, gen)
		return nil
	})
}

// Move moves frame i to index to; the frame keeps its ID.
func (r *Room) Move(ctx context.Context, i, to int) (*wire.CommitResult, error) {
	e, err := r.Entry(i)
	if err != nil {
		return nil, err
	}
	idx := int64(to)
	return r.edit(ctx, TrajectoryTarget, &wire.CommitRequest{Op: wire.OpMove, Frame: e.ID, Index: &idx})
}

// Revert writes a new version of frame i whose data is that of its
// earlier version (undo). Conflicts are reported as by Set.
func (r *Room) Revert(ctx context.Context, i int, version int64) (*wire.CommitResult, error) {
	e, err := r.Entry(i)
	if err != nil {
		return nil, err
	}
	return r.edit(ctx, FrameTarget(e.ID), &wire.CommitRequest{Op: wire.OpRevert, Frame: e.ID, Base: &e.Version, Version: version})
}

func hashStrings(hs []framesync.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.String()
	}
	return out
}
