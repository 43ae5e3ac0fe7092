package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"framesync"
	"framesync/blobstore"
	"framesync/crdt"
	"framesync/relay/lease"
	"framesync/relay/wire"
)

// Lock targets.
const (
	targetTrajectory = "trajectory"
	targetPresenter  = "presenter"
	targetFramePref  = "frame:"
)

// prepared is a commit whose data has been checked, before the room lock
// is taken.
type prepared struct {
	hashes []framesync.Hash // new manifests (append, extend, insert, replace, revert: set inside)
	patch  framesync.Manifest
	remove []string
}

// defaultTarget returns the lock target an operation needs by default.
func defaultTarget(op, frameID string) string {
	switch op {
	case wire.OpReplace, wire.OpPatch, wire.OpRevert:
		return targetFramePref + frameID
	}
	return targetTrajectory
}

// commit runs one commit request against room r.
func (s *Server) commit(ctx context.Context, r *room, req *wire.CommitRequest) (*wire.CommitResult, error) {
	const op = "commit"
	switch req.Op {
	case wire.OpAppend, wire.OpExtend, wire.OpInsert, wire.OpReplace, wire.OpPatch, wire.OpRevert, wire.OpDelete, wire.OpMove:
	case "":
		return nil, badInput(op, "op", "missing: one of append, extend, insert, replace, patch, revert, delete, move")
	default:
		return nil, badInput(op, "op", fmt.Sprintf("unknown operation %q", req.Op))
	}
	if req.Token == 0 {
		return nil, &framesync.Error{Kind: framesync.PreconditionRequired, Op: op, Field: "token", Msg: "a commit needs the fencing token of a lock on its target"}
	}
	p, err := s.prepare(ctx, req)
	if err != nil {
		return nil, err
	}
	if s.hs == nil {
		return s.commitPrepared(ctx, r, req, p)
	}
	// Several hubs: Redis orders the commits (see hubs.go). A hub that is
	// behind catches up and checks the request again.
	deadline := time.Now().Add(commitRetryFor)
	for {
		again := time.Now().Before(deadline)
		seen, _ := r.traj.Generation()
		epoch := s.hs.currentEpoch()
		res, err := s.commitPrepared(ctx, r, req, p)
		var (
			be *lease.BehindError
			ce *conflictError
			ee *lease.EpochError
		)
		if errors.As(err, &ee) {
			if !again {
				return nil, &framesync.Error{Kind: framesync.Unavailable, Op: op, Msg: ee.Error() + "; try again", Err: err}
			}
			if err := s.hs.awaitEpoch(ctx, ee, epoch, deadline); err != nil {
				return nil, err
			}
			continue
		}
		if errors.As(err, &ce) && again {
			// The client may have seen a newer version through another
			// hub: a conflict is final only once this hub is current.
			want, gerr := s.hs.generation(ctx, r)
			if gerr != nil {
				return nil, gerr
			}
			if seen >= want { // the conflict was checked on a current replica
				return nil, err
			}
			if err := s.hs.catchUp(ctx, r, want); err != nil {
				return nil, err
			}
			continue
		}
		if !errors.As(err, &be) {
			return res, err
		}
		if !again {
			return nil, &framesync.Error{Kind: framesync.Conflict, Op: op, Msg: fmt.Sprintf("other hubs committed to room %s meanwhile; try again", r.name), Err: err}
		}
		if be.Current < be.Base {
			// Redis has a generation below this hub's replica (it lost
			// data, or a hub registered the room from an older replica):
			// raise it, never lower it, and try again.
			if err := s.hs.raiseGen(ctx, r, be.Base); err != nil {
				return nil, err
			}
			continue
		}
		if err := s.hs.catchUp(ctx, r, be.Current); err != nil {
			return nil, err
		}
	}
}

// commitPrepared checks and writes a prepared commit under the room lock.
func (s *Server) commitPrepared(ctx context.Context, r *room, req *wire.CommitRequest, p *prepared) (*wire.CommitResult, error) {
	const op = "commit"
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.deleted {
		return nil, &framesync.Error{Kind: framesync.NotFound, Op: op, Msg: fmt.Sprintf("room %q was deleted", r.name)}
	}
	var id string
	if needsFrame(req.Op) {
		e, _, err := r.resolveFrame(req.Frame)
		if err != nil {
			return nil, err
		}
		id = e.ID
	}
	target := req.Target
	if target == "" {
		target = defaultTarget(req.Op, id)
	}
	if !allowedTarget(req.Op, id, target) {
		return nil, badInput(op, "target", fmt.Sprintf("%s needs a lock on %s, not %s", req.Op, defaultTarget(req.Op, id), target))
	}
	grant, err := s.leases.Check(ctx, r.name, target, req.Token)
	if err != nil {
		return nil, err
	}
	author := req.Author
	if author == "" {
		author = grant.Holder
	}
	r.fence = &fenceArgs{target: target, token: req.Token, op: req.Op}
	defer func() { r.fence = nil }()
	var c *crdt.Commit
	switch req.Op {
	case wire.OpAppend, wire.OpExtend:
		if err := r.checkGenLocked(req.Base); err != nil {
			return nil, err
		}
		if len(p.hashes) == 1 {
			c, err = r.traj.Append(author, p.hashes[0])
		} else {
			c, err = r.traj.Extend(author, p.hashes)
		}
	case wire.OpInsert:
		if err := r.checkGenLocked(req.Base); err != nil {
			return nil, err
		}
		if req.Index == nil {
			return nil, badInput(op, "index", "insert needs an index")
		}
		if len(p.hashes) != 1 {
			return nil, badInput(op, "manifests", "insert takes exactly one frame")
		}
		c, err = r.traj.Insert(author, int(*req.Index), p.hashes[0])
	case wire.OpDelete:
		if err := r.checkGenLocked(req.Base); err != nil {
			return nil, err
		}
		c, err = r.traj.Delete(author, id)
	case wire.OpMove:
		if err := r.checkGenLocked(req.Base); err != nil {
			return nil, err
		}
		if req.Index == nil {
			return nil, badInput(op, "index", "move needs a destination index")
		}
		c, err = r.traj.Move(author, id, int(*req.Index))
	case wire.OpReplace, wire.OpPatch, wire.OpRevert:
		if req.Base == nil {
			return nil, &framesync.Error{Kind: framesync.PreconditionRequired, Op: op, Field: "base", Msg: "a change of a frame needs the base version it was made against"}
		}
		cur, _, _ := r.resolveFrame(id)
		if cur.Version != *req.Base {
			return nil, &conflictError{frame: id, current: cur.Version, base: *req.Base, hash: cur.Hash}
		}
		switch req.Op {
		case wire.OpReplace:
			if len(p.hashes) != 1 {
				return nil, badInput(op, "manifests", "replace takes exactly one frame")
			}
			c, err = r.traj.Replace(author, id, *req.Base, p.hashes[0])
		case wire.OpRevert:
			c, err = r.traj.Revert(author, id, req.Version)
		case wire.OpPatch:
			h, perr := s.patchManifest(ctx, cur.Hash, p.patch, p.remove)
			if perr != nil {
				return nil, perr
			}
			c, err = r.traj.Replace(author, id, *req.Base, h)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := r.persistTrajLocked(); err != nil {
		// The change is in memory but not on disk: refuse to go on
		// pretending, the operator must look.
		s.log.Error("persist trajectory", "room", r.name, "err", err)
		return nil, &framesync.Error{Kind: framesync.Internal, Op: op, Msg: "could not write the room document", Err: err}
	}
	r.recordCommitLocked(c)
	res := &wire.CommitResult{Generation: c.Generation, Frames: make([]wire.FrameRef, 0, len(c.Entries))}
	res.Length, _ = r.traj.Len()
	for _, e := range c.Entries {
		idx, ierr := r.traj.IndexOf(e.ID)
		if ierr != nil {
			idx = -1 // deleted
		}
		res.Frames = append(res.Frames, wire.FrameRef{ID: e.ID, Index: idx, Version: e.Version, Hash: e.Hash.String()})
	}
	s.metrics.commits.WithLabelValues(req.Op).Inc()
	s.afterCommit(r, req.Op, res)
	return res, nil
}

func needsFrame(op string) bool {
	switch op {
	case wire.OpReplace, wire.OpPatch, wire.OpRevert, wire.OpDelete, wire.OpMove:
		return true
	}
	return false
}

func allowedTarget(op, id, target string) bool {
	switch op {
	case wire.OpReplace, wire.OpPatch, wire.OpRevert:
		return target == targetFramePref+id || target == targetTrajectory
	}
	return target == targetTrajectory
}

// checkGenLocked checks an optional base generation of a structural change.
func (r *room) checkGenLocked(base *int64) error {
	if base == nil {
		return nil
	}
	gen, err := r.traj.Generation()
	if err != nil {
		return err
	}
	if gen != *base {
		return &conflictError{generation: gen, baseGen: *base}
	}
	return nil
}

// conflictError is a 409: the change was made against an old version.
type conflictError struct {
	frame         string
	current, base int64
	hash          framesync.Hash
	generation    int64
	baseGen       int64
}

func (e *conflictError) Error() string {
	if e.frame == "" {
		return fmt.Sprintf("the trajectory is at generation %d, not %d", e.generation, e.baseGen)
	}
	return fmt.Sprintf("frame %s is at version %d, not %d: fetch it and redo the change", e.frame, e.current, e.base)
}

func (e *conflictError) Is(target error) bool { return target == framesync.Conflict }

func (e *conflictError) details() map[string]any {
	if e.frame == "" {
		return map[string]any{"current_generation": e.generation}
	}
	return map[string]any{"frame": e.frame, "current_version": e.current, "current_hash": e.hash.String()}
}

// heldDetails returns the details of a 423.
func heldDetails(err error) map[string]any {
	var he *lease.HeldError
	if errors.As(err, &he) {
		return map[string]any{"target": he.Grant.Target, "holder": he.Grant.Holder, "expires": he.Grant.Expires.UTC().Format("2006-01-02T15:04:05.000Z07:00")}
	}
	return nil
}

// resolveFrame finds a frame by ID or by decimal index (negative from the end).
func (r *room) resolveFrame(ref string) (crdt.Entry, int, error) {
	const op = "" // the field name says it all
	if ref == "" {
		return crdt.Entry{}, 0, badInput(op, "frame", "missing frame ID or index")
	}
	if isFrameID(ref) {
		i, err := r.traj.IndexOf(ref)
		if err != nil {
			return crdt.Entry{}, 0, err
		}
		e, err := r.traj.At(i)
		return e, i, err
	}
	i, err := parseIndex(ref)
	if err != nil {
		return crdt.Entry{}, 0, badInput(op, "frame", fmt.Sprintf("%q is neither a frame ID (16 hex digits) nor an index", ref))
	}
	n, err := r.traj.Len()
	if err != nil {
		return crdt.Entry{}, 0, err
	}
	if i < 0 {
		i += n
	}
	if i < 0 || i >= n {
		return crdt.Entry{}, 0, &framesync.Error{Kind: framesync.NotFound, Op: op, Field: "frame", Msg: fmt.Sprintf("index %s out of range: room %q has %d frames", ref, r.name, n)}
	}
	e, err := r.traj.At(i)
	return e, i, err
}

func isFrameID(s string) bool {
	if len(s) != 16 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func parseIndex(s string) (int, error) {
	var n int
	neg := strings.HasPrefix(s, "-")
	d := strings.TrimPrefix(s, "-")
	if d == "" || len(d) > 12 {
		return 0, errors.New("bad index")
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, errors.New("bad index")
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

func badInput(op, field, msg string) error {
	return &framesync.Error{Kind: framesync.BadInput, Op: op, Field: field, Msg: msg}
}

// prepare checks the data of a commit before the room is locked: frames
// sent inline are validated, split and stored; manifests named by hash are
// read and their frames validated, so that every committed frame is whole
// and valid and every blob it references exists.
func (s *Server) prepare(ctx context.Context, req *wire.CommitRequest) (*prepared, error) {
	const op = "commit"
	p := &prepared{}
	wantsFrames := 0
	switch req.Op {
	case wire.OpAppend, wire.OpExtend, wire.OpInsert, wire.OpReplace:
		wantsFrames = 1
	}
	if len(req.Frames) > 0 && len(req.Manifests) > 0 {
		return nil, badInput(op, "frames", "give frames or manifests, not both")
	}
	if n, limit := len(req.Frames)+len(req.Manifests), s.opts.Limits.FramesPerRequest; n > limit {
		return nil, &framesync.Error{Kind: framesync.TooLarge, Op: op, Msg: fmt.Sprintf("%d frames in one commit; the limit of frames per request is %d", n, limit)}
	}
	if wantsFrames == 0 && (len(req.Frames) > 0 || len(req.Manifests) > 0) && req.Op != wire.OpPatch {
		return nil, badInput(op, "frames", req.Op+" takes no frames")
	}
	if wantsFrames == 1 && len(req.Frames) == 0 && len(req.Manifests) == 0 {
		return nil, badInput(op, "manifests", req.Op+" needs frames or manifests")
	}
	for i, raw := range req.Frames {
		f, err := framesync.DecodeFrame(raw)
		if err != nil {
			return nil, wrapField(err, fmt.Sprintf("frames[%d]", i))
		}
		if req.Op == wire.OpPatch {
			if len(req.Frames) != 1 {
				return nil, badInput(op, "frames", "patch takes one partial frame")
			}
			m, blobs, err := f.Split()
			if err != nil {
				return nil, wrapField(err, "frames[0]")
			}
			if err := s.putBlobs(ctx, blobs); err != nil {
				return nil, err
			}
			p.patch = m
			continue
		}
		if err := f.Validate(); err != nil {
			return nil, wrapField(err, fmt.Sprintf("frames[%d]", i))
		}
		h, err := s.storeFrame(ctx, f)
		if err != nil {
			return nil, err
		}
		p.hashes = append(p.hashes, h)
	}
	for i, hs := range req.Manifests {
		h, err := framesync.ParseHash(hs)
		if err != nil {
			return nil, wrapField(err, fmt.Sprintf("manifests[%d]", i))
		}
		if _, err := s.loadFrame(ctx, h, true); err != nil {
			return nil, wrapField(err, fmt.Sprintf("manifests[%d]", i))
		}
		p.hashes = append(p.hashes, h)
	}
	if req.Op == wire.OpPatch {
		if p.patch == nil {
			p.patch = framesync.Manifest{}
		}
		for name, hs := range req.Fields {
			if err := framesync.CheckFieldName(name); err != nil {
				return nil, wrapField(err, "fields")
			}
			h, err := framesync.ParseHash(hs)
			if err != nil {
				return nil, wrapField(err, "fields."+name)
			}
			if _, err := s.blobs.Stat(ctx, h); err != nil {
				return nil, missingBlob(err, h, "fields."+name)
			}
			p.patch[name] = h
		}
		for _, name := range req.Remove {
			if err := framesync.CheckFieldName(name); err != nil {
				return nil, wrapField(err, "remove")
			}
		}
		p.remove = req.Remove
		if len(p.patch) == 0 && len(p.remove) == 0 {
			return nil, badInput(op, "fields", "patch changes nothing: give fields, a partial frame or remove")
		}
	}
	return p, nil
}

// patchManifest builds, stores and validates the manifest of frame base
// with the fields of patch set and the fields of remove removed.
func (s *Server) patchManifest(ctx context.Context, base framesync.Hash, patch framesync.Manifest, remove []string) (framesync.Hash, error) {
	old, err := s.manifest(ctx, base)
	if err != nil {
		return framesync.Hash{}, err
	}
	m := make(framesync.Manifest, len(old)+len(patch))
	for k, v := range old {
		m[k] = v
	}
	for _, k := range remove {
		delete(m, k)
	}
	for k, v := range patch {
		m[k] = v
	}
	b := m.Encode()
	h := m.Hash()
	if _, err := blobstore.PutBytes(ctx, s.blobs, b); err != nil {
		return framesync.Hash{}, err
	}
	if _, err := s.loadFrame(ctx, h, true); err != nil {
		return framesync.Hash{}, err
	}
	return h, nil
}

// storeFrame splits f into blobs, stores them and its manifest, and returns
// the frame's hash.
func (s *Server) storeFrame(ctx context.Context, f *framesync.Frame) (framesync.Hash, error) {
	m, blobs, err := f.Split()
	if err != nil {
		return framesync.Hash{}, err
	}
	if err := s.putBlobs(ctx, blobs); err != nil {
		return framesync.Hash{}, err
	}
	if _, err := blobstore.PutBytes(ctx, s.blobs, m.Encode()); err != nil {
		return framesync.Hash{}, err
	}
	s.manifests.add(m.Hash(), m)
	return m.Hash(), nil
}

func (s *Server) putBlobs(ctx context.Context, blobs map[framesync.Hash][]byte) error {
	for h, b := range blobs {
		if ok, err := blobstore.Has(ctx, s.blobs, h); err == nil && ok {
			continue
		}
		if _, err := blobstore.PutBytes(ctx, s.blobs, b); err != nil {
			return err
		}
		s.metrics.blobBytesIn.Add(float64(len(b)))
	}
	return nil
}

func wrapField(err error, field string) error {
	var fe *framesync.Error
	if errors.As(err, &fe) {
		c := *fe
		if c.Field == "" {
			c.Field = field
		} else {
			c.Field = field + "." + c.Field
		}
		return &c
	}
	return &framesync.Error{Kind: framesync.KindOf(err), Field: field, Err: err}
}

func missingBlob(err error, h framesync.Hash, field string) error {
	if errors.Is(err, framesync.NotFound) {
		return &framesync.Error{Kind: framesync.PreconditionFailed, Op: "commit", Field: field, Msg: fmt.Sprintf("blob %s is not on the hub: upload it first", h)}
	}
	return err
}
