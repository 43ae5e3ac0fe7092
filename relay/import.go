package relay

// Import jobs: POST /api/rooms/{room}/import spools an xyz or extxyz file
// to the data directory and answers 202 with a job at once; the job then
// runs in the background, in two passes:
//
//  1. parsing: read every frame with framesync.XYZReader, validate it and
//     store its blobs and manifest (content-addressed, so storing is
//     harmless even if the import fails later). Nothing is committed.
//  2. committing: only if the whole file parsed, take the room's
//     trajectory lock as holder "import:<job id>" (waiting while someone
//     else holds it) and append the frames through Server.commit in
//     batches of importBatch, renewing the lease as it goes.
//
// So a malformed file leaves the room untouched, and a job that stops
// early (hub shutdown, room deleted, lease lost) has committed whole
// batches only. Jobs live in memory: a restart forgets them and removes
// their spooled files.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"

	"framesync"
	"framesync/blobstore"
	"framesync/relay/lease"
	"framesync/relay/wire"
)

// Import limits and timing.
const (
	importBatch     = 100                    // frames per commit (at most Limits.FramesPerRequest)
	importSlots     = 2                      // jobs running at once per hub; the others wait, queued
	importPending   = 8                      // imports uploading, queued or running per hub; more are refused
	importKeep      = 50                     // jobs listed per room; older finished ones are forgotten
	importLockWait  = 2 * time.Minute        // longest wait for the trajectory lock
	importLockTTL   = 30 * time.Second       // the import's lease, renewed every third of it
	importNotifyGap = 250 * time.Millisecond // at most 4 progress messages a second per job
	importMaxName   = 255                    // longest ?name=, in bytes
	importSpoolDir  = "imports"              // under the data directory
)

// Job states and phases (wire.Job.State, wire.Job.Phase).
const (
	jobQueued     = "queued"
	jobRunning    = "running"
	jobDone       = "done"
	jobFailed     = "failed"
	jobParsing    = "parsing"
	jobCommitting = "committing"
)

// importer owns the hub's import jobs: their goroutines, the slots that
// bound how many run at once and the per-room listings.
//
// Lock order: importer.mu, then room.mu or job.mu (pruning asks rooms
// whether they were deleted and jobs whether they finished).
type importer struct {
	// Static after construction.
	srv   *Server
	dir   string        // spooled uploads
	slots chan struct{} // holds one token per running job
	wg    sync.WaitGroup

	mu      sync.Mutex       // guards the fields below
	rooms   map[*room][]*job // oldest first; finished ones beyond importKeep are dropped
	pending int              // imports uploading, queued or running
	closed  bool
}

// job is one import. Only its goroutine changes it, through update.
type job struct {
	// Static after construction.
	id     string
	room   *room
	name   string // the file's name, as given
	user   string // who uploaded it
	spool  string // the uploaded file
	holder string // lease holder: "import:<id>"

	mu   sync.Mutex // guards w and sent
	w    wire.Job
	sent time.Time // when the last job message went out
}

// newImporter prepares the spool directory, removing what a previous run
// left there: jobs do not survive a restart.
func newImporter(s *Server) (*importer, error) {
	dir := filepath.Join(s.dir, importSpoolDir)
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("relay: import spool: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("relay: import spool: %w", err)
	}
	return &importer{srv: s, dir: dir, slots: make(chan struct{}, importSlots), rooms: map[*room][]*job{}}, nil
}

// close refuses new jobs and waits for the running ones, which stop once
// the hub's context is canceled: they release their lock and remove their
// file. Call it after canceling the hub's context and before closing the
// lease backend.
func (im *importer) close() {
	im.mu.Lock()
	im.closed = true
	im.mu.Unlock()
	im.wg.Wait()
}

// reserve counts an import about to upload; unreserve undoes it. Too many
// at once is RateLimited: each may spool up to the upload limit on disk.
func (im *importer) reserve() error {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.closed {
		return &framesync.Error{Kind: framesync.Unavailable, Op: "import", Msg: "hub shutting down"}
	}
	if im.pending >= importPending {
		return &framesync.Error{Kind: framesync.RateLimited, Op: "import", Msg: fmt.Sprintf("%d imports are uploading or waiting on this hub, the most it takes: try again later", im.pending)}
	}
	im.pending++
	return nil
}

func (im *importer) unreserve() {
	im.mu.Lock()
	im.pending--
	im.mu.Unlock()
}

// spool stores the request body in a new file of the spool directory and
// returns its name and size. The body is bounded by the upload limit.
func (im *importer) spool(w http.ResponseWriter, r *http.Request) (string, int64, error) {
	const op = "import"
	limit := im.srv.opts.MaxUpload
	f, err := os.CreateTemp(im.dir, "upload-*.xyz")
	if err != nil {
		return "", 0, fmt.Errorf("%s: spool: %w", op, err)
	}
	body := &countingReader{r: http.MaxBytesReader(w, r.Body, limit)}
	n, err := io.Copy(f, body)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		var mbe *http.MaxBytesError
		switch {
		case errors.As(body.err, &mbe):
			return "", 0, tooLargeUpload(limit)
		case body.err != nil:
			return "", 0, &framesync.Error{Kind: framesync.BadInput, Op: op, Msg: fmt.Sprintf("the upload broke off after %d bytes", n), Err: body.err}
		}
		return "", 0, fmt.Errorf("%s: spool: %w", op, err) // the disk
	}
	return f.Name(), n, nil
}

func tooLargeUpload(limit int64) error {
	return &framesync.Error{Kind: framesync.TooLarge, Op: "import", Msg: fmt.Sprintf("the file is over the hub's upload limit of %d bytes (%s)", limit, byteSize(limit))}
}

// byteSize formats n for people: "500 MB".
func byteSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%d bytes", n)
}

// start registers j with its room and runs it on a goroutine of its own.
func (im *importer) start(j *job) error {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.closed {
		return &framesync.Error{Kind: framesync.Unavailable, Op: "import", Msg: "hub shutting down"}
	}
	im.pruneLocked()
	im.rooms[j.room] = append(im.rooms[j.room], j)
	im.wg.Add(1)
	go func() {
		defer im.wg.Done()
		im.run(j)
	}()
	return nil
}

// pruneLocked forgets finished jobs beyond importKeep per room, and the
// jobs of deleted rooms once they have all finished.
func (im *importer) pruneLocked() {
	for r, jobs := range im.rooms {
		extra := len(jobs) - importKeep + 1 // room for one more
		jobs = slices.DeleteFunc(jobs, func(j *job) bool {
			if extra > 0 && j.finished() {
				extra--
				return true
			}
			return false
		})
		if len(jobs) == 0 || r.isDeleted() && !slices.ContainsFunc(jobs, func(j *job) bool { return !j.finished() }) {
			delete(im.rooms, r)
			continue
		}
		im.rooms[r] = jobs
	}
}

// list returns the jobs of room r, newest first.
func (im *importer) list(r *room) []wire.Job {
	im.mu.Lock()
	jobs := slices.Clone(im.rooms[r])
	im.mu.Unlock()
	out := make([]wire.Job, len(jobs))
	for i, j := range jobs {
		out[len(jobs)-1-i] = j.snapshot()
	}
	return out
}

// get returns job id of room r.
func (im *importer) get(r *room, id string) (wire.Job, error) {
	im.mu.Lock()
	i := slices.IndexFunc(im.rooms[r], func(j *job) bool { return j.id == id })
	var j *job
	if i >= 0 {
		j = im.rooms[r][i]
	}
	im.mu.Unlock()
	if j == nil {
		return wire.Job{}, &framesync.Error{Kind: framesync.NotFound, Op: "job", Msg: fmt.Sprintf("room %q has no job %q (the hub forgets jobs when it restarts)", r.name, id)}
	}
	return j.snapshot(), nil
}

// op names the job in its errors: "import" or "import <file name>".
func (j *job) op() string {
	if j.name == "" {
		return "import"
	}
	return "import " + j.name
}

func (j *job) snapshot() wire.Job {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.w
}

func (j *job) finished() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.w.State == jobDone || j.w.State == jobFailed
}

// update changes the job and tells the room's members: at once when force
// (a new state, phase or message), otherwise at most every importNotifyGap.
func (im *importer) update(j *job, force bool, change func(*wire.Job)) {
	j.mu.Lock()
	change(&j.w)
	now := time.Now()
	if !force && now.Sub(j.sent) < importNotifyGap {
		j.mu.Unlock()
		return
	}
	j.sent = now
	w := j.w
	j.mu.Unlock()
	im.srv.broadcast(j.room, &wire.Msg{T: wire.MsgJob, Room: j.room.name, Payload: jobPayload(w)}, nil)
	if hs := im.srv.hs; hs != nil && j.room.sync != nil {
		hs.publishJob(j.room, w, force) // the other hubs' members (hubs_jobs.go)
	}
}

// jobPayload returns j as the payload of a job message: the map its
// msgpack encoding decodes to, so that clients decode the payload into a
// wire.Job with the same tags.
func jobPayload(j wire.Job) map[string]any {
	b, err := msgpack.Marshal(&j)
	if err != nil {
		panic(fmt.Sprintf("relay: encode job: %v", err)) // a wire.Job always encodes
	}
	var m map[string]any
	if err := msgpack.Unmarshal(b, &m); err != nil {
		panic(fmt.Sprintf("relay: decode job: %v", err))
	}
	return m
}

// run runs job j to its end, cleans up after it and records how it ended:
// a client that sees the job finished may upload again at once.
func (im *importer) run(j *job) {
	im.update(j, true, func(*wire.Job) {}) // tell the room about the new job
	err := im.runJob(j)
	if rerr := os.Remove(j.spool); rerr != nil {
		im.srv.log.Error("import: remove the spooled file", "job", j.id, "err", rerr)
	}
	im.unreserve()
	log := im.srv.log.With("room", j.room.name, "job", j.id, "file", j.name)
	msg := ""
	switch {
	case err == nil:
	case kindOf(err) == framesync.Internal:
		// As errorBody does: the details are for the operator.
		log.Error("import failed", "err", err)
		msg = j.op() + ": internal error (see the hub log)"
	default:
		log.Warn("import failed", "err", err)
		msg = err.Error()
	}
	im.update(j, true, func(w *wire.Job) {
		w.State, w.Message, w.Finished = jobDone, "", time.Now().UTC()
		if err != nil {
			w.State, w.Error = jobFailed, msg
		}
	})
	if err == nil {
		log.Info("import done", "frames", j.snapshot().Committed)
	}
}

// runJob takes a slot, parses the file and commits its frames.
func (im *importer) runJob(j *job) error {
	ctx := im.srv.ctx
	select {
	case im.slots <- struct{}{}:
	default:
		im.update(j, true, func(w *wire.Job) {
			w.Message = fmt.Sprintf("waiting for a free import slot (the hub runs %d imports at once)", importSlots)
		})
		select {
		case im.slots <- struct{}{}:
		case <-ctx.Done():
			return stopped(ctx, j, 0)
		}
	}
	defer func() { <-im.slots }()
	hashes, err := im.parse(ctx, j)
	if err != nil {
		return err
	}
	return im.commit(ctx, j, hashes)
}

// alive returns an error once the job must stop: the hub is shutting down
// or the room was deleted.
func alive(ctx context.Context, j *job, committed int) error {
	if ctx.Err() != nil {
		return stopped(ctx, j, committed)
	}
	if j.room.isDeleted() {
		return &framesync.Error{Kind: framesync.NotFound, Op: j.op(), Msg: fmt.Sprintf("room %q was deleted", j.room.name) + committedNote(j, committed)}
	}
	return nil
}

// stopped is the error of a job stopped by its context: the hub shut down,
// or its lease was lost.
func stopped(ctx context.Context, j *job, committed int) error {
	cause := context.Cause(ctx)
	var fe *framesync.Error
	if errors.As(cause, &fe) {
		return cause
	}
	return &framesync.Error{Kind: framesync.Unavailable, Op: j.op(), Msg: "the hub shut down" + committedNote(j, committed), Err: cause}
}

// committedNote says how much of the file made it into the room.
func committedNote(j *job, committed int) string {
	if committed == 0 {
		return ": nothing was committed"
	}
	return fmt.Sprintf(": %d of the file's %d frames had been committed", committed, j.snapshot().Frames)
}

// parse is pass 1: it reads every frame of the spooled file, validates it
// and stores its blobs and manifest, and returns the manifest hashes in
// order. The room is not touched.
func (im *importer) parse(ctx context.Context, j *job) ([]framesync.Hash, error) {
	f, err := os.Open(j.spool)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	im.update(j, true, func(w *wire.Job) {
		w.State, w.Phase, w.Message, w.Started = jobRunning, jobParsing, "", time.Now().UTC()
	})
	cr := &countingReader{r: f}
	xr := framesync.NewXYZReader(cr)
	var hashes, unsynced []framesync.Hash
	for {
		if ctx.Err() != nil {
			return nil, stopped(ctx, j, 0)
		}
		fr, err := xr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			// "read xyz: line N: ..." names the line.
			return nil, &framesync.Error{Kind: framesync.KindOf(err), Op: j.op(), Err: err}
		}
		if err := fr.Validate(); err != nil {
			return nil, &framesync.Error{Kind: framesync.KindOf(err), Op: j.op(), Msg: fmt.Sprintf("the frame ending at line %d", xr.Line()), Err: err}
		}
		h, put, err := im.store(ctx, fr)
		if err != nil {
			return nil, storeError(ctx, j, err)
		}
		hashes, unsynced = append(hashes, h), append(unsynced, put...)
		if len(hashes)%importBatch == 0 {
			if err := im.sync(ctx, unsynced); err != nil {
				return nil, storeError(ctx, j, err)
			}
			unsynced = unsynced[:0]
			// Not every frame: the room's lock is busy while it commits.
			if err := alive(ctx, j, 0); err != nil {
				return nil, err
			}
		}
		im.update(j, false, func(w *wire.Job) { w.Frames, w.Bytes = len(hashes), cr.n })
	}
	if err := im.sync(ctx, unsynced); err != nil {
		return nil, storeError(ctx, j, err)
	}
	im.update(j, false, func(w *wire.Job) { w.Frames, w.Bytes = len(hashes), cr.n })
	if len(hashes) == 0 {
		return nil, &framesync.Error{Kind: framesync.BadInput, Op: j.op(), Msg: "the file holds no frames"}
	}
	return hashes, nil
}

// storeError is the error of a failed store or sync: the store's, or the
// reason the job was stopped while it ran.
func storeError(ctx context.Context, j *job, err error) error {
	if ctx.Err() != nil {
		return stopped(ctx, j, 0)
	}
	return err
}

// store splits f and stores its blobs and manifest; it returns the
// manifest's hash and the blobs it put. With a store that batches, the
// blobs are not durable until sync.
func (im *importer) store(ctx context.Context, f *framesync.Frame) (framesync.Hash, []framesync.Hash, error) {
	s := im.srv
	batch, ok := s.blobs.(blobstore.Batcher)
	if !ok {
		h, err := s.storeFrame(ctx, f)
		return h, nil, err
	}
	m, blobs, err := f.Split()
	if err != nil {
		return framesync.Hash{}, nil, err
	}
	var put []framesync.Hash
	for h, b := range blobs {
		if ok, err := blobstore.Has(ctx, s.blobs, h); err == nil && ok {
			continue
		}
		if _, err := batch.PutUnsynced(ctx, bytes.NewReader(b), h); err != nil {
			return framesync.Hash{}, nil, err
		}
		s.metrics.blobBytesIn.Add(float64(len(b)))
		put = append(put, h)
	}
	mh := m.Hash()
	if ok, err := blobstore.Has(ctx, s.blobs, mh); err != nil || !ok {
		if _, err := batch.PutUnsynced(ctx, bytes.NewReader(m.Encode()), mh); err != nil {
			return framesync.Hash{}, nil, err
		}
		put = append(put, mh)
	}
	s.manifests.add(mh, m)
	return mh, put, nil
}

// sync makes blobs put by store durable.
func (im *importer) sync(ctx context.Context, hs []framesync.Hash) error {
	if batch, ok := im.srv.blobs.(blobstore.Batcher); ok && len(hs) > 0 {
		return batch.Sync(ctx, hs)
	}
	return nil
}

// commit is pass 2: it takes the trajectory lock and appends the frames in
// batches, each one commit. It stops between batches only.
func (im *importer) commit(ctx context.Context, j *job, hashes []framesync.Hash) error {
	s := im.srv
	r := j.room
	g, err := im.lock(ctx, j)
	if err != nil {
		return err
	}
	im.update(j, true, func(w *wire.Job) { w.State, w.Phase, w.Message = jobRunning, jobCommitting, "" })

	// The lease is renewed on a goroutine of this job's, so that a slow
	// commit cannot let it expire; losing it stops the job.
	jctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { im.renew(jctx, cancel, j, g) })
	defer func() {
		cancel(nil)
		wg.Wait()
		// Released on a context that outlives shutdown: the lease backend
		// closes only after every job has stopped.
		if err := s.leases.Release(context.WithoutCancel(ctx), r.name, targetTrajectory, j.holder, g.Token); err != nil {
			s.log.Warn("import: release the trajectory lock", "room", r.name, "job", j.id, "err", err)
		}
	}()

	author := j.user
	if author == "" {
		author = j.holder
	}
	batch := min(importBatch, s.opts.Limits.FramesPerRequest)
	done := 0
	for done < len(hashes) {
		if err := alive(jctx, j, done); err != nil {
			return err
		}
		n := min(batch, len(hashes)-done)
		req := &wire.CommitRequest{Op: wire.OpExtend, Token: g.Token, Target: targetTrajectory, Author: author, Manifests: make([]string, n)}
		for i, h := range hashes[done : done+n] {
			req.Manifests[i] = h.String()
		}
		if _, err := s.commit(jctx, r, req); err != nil {
			if jctx.Err() != nil {
				return stopped(jctx, j, done)
			}
			return &framesync.Error{Kind: kindOf(err), Op: j.op(), Msg: fmt.Sprintf("commit frames %d to %d", done, done+n-1) + committedNote(j, done), Err: err}
		}
		done += n
		im.update(j, false, func(w *wire.Job) { w.Committed = done })
	}
	return nil
}

// lock acquires the room's trajectory lock for j, waiting (queued) while
// someone else holds it, for at most importLockWait.
func (im *importer) lock(ctx context.Context, j *job) (lease.Grant, error) {
	s := im.srv
	deadline := time.Now().Add(importLockWait)
	wait := 20 * time.Millisecond
	for {
		if err := alive(ctx, j, 0); err != nil {
			return lease.Grant{}, err
		}
		g, err := s.leases.Acquire(ctx, j.room.name, targetTrajectory, j.holder, importLockTTL)
		if err == nil {
			return g, nil
		}
		var he *lease.HeldError
		if !errors.As(err, &he) {
			return lease.Grant{}, err
		}
		if time.Now().After(deadline) {
			return lease.Grant{}, &framesync.Error{Kind: framesync.Locked, Op: j.op(), Msg: fmt.Sprintf("%s held the room's trajectory lock for over %v: nothing was committed; import again once it is free", he.Grant.Holder, importLockWait)}
		}
		msg := "waiting for the trajectory lock, held by " + he.Grant.Holder
		im.update(j, j.snapshot().Message != msg, func(w *wire.Job) { w.State, w.Phase, w.Message = jobQueued, jobCommitting, msg })
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return lease.Grant{}, stopped(ctx, j, 0)
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// renew keeps j's lease alive until ctx is done; if it is lost, it stops
// the job with the reason.
func (im *importer) renew(ctx context.Context, stop context.CancelCauseFunc, j *job, g lease.Grant) {
	t := time.NewTicker(importLockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := im.srv.leases.Renew(ctx, g.Room, g.Target, g.Holder, g.Token, importLockTTL); err != nil {
			if ctx.Err() == nil {
				stop(&framesync.Error{Kind: framesync.KindOf(err), Op: j.op(), Msg: "lost the trajectory lock", Err: err})
			}
			return
		}
	}
}

// countingReader counts the bytes read through it and keeps the first
// error other than io.EOF.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// importHolderPrefix starts the lease holder of an import job; clients may
// not use it as their ID (hello refuses it), so none can take over or
// release a job's lock.
const importHolderPrefix = "import:"

// newJobID returns a random job ID: 16 hex digits.
// checkImportName checks the file name given with ?name=: shown in job
// lists, so printable and short.
func checkImportName(name string) error {
	if len(name) > importMaxName || !utf8.ValidString(name) || slices.ContainsFunc([]rune(name), unicode.IsControl) {
		return badInput("import", "name", fmt.Sprintf("the file name must be valid UTF-8 without control characters, at most %d bytes", importMaxName))
	}
	return nil
}

// handleImport is POST /api/rooms/{room}/import: the body is an xyz or
// extxyz file, appended to the room's frames by a background job. It
// answers 202 with the job once the file is spooled.
func (s *Server) handleImport(w http.ResponseWriter, r *http.Request) error {
	const op = "import"
	rm, err := s.room(r.PathValue("room"))
	if err != nil {
		return err
	}
	q := r.URL.Query()
	name := q.Get("name")
	if err := checkImportName(name); err != nil {
		return err
	}
	if v := q.Get("append"); v != "" {
		if ok, err := strconv.ParseBool(v); err != nil || !ok {
			return badInput(op, "append", "an import always appends to the room's frames: leave append out or set it to 1")
		}
	}
	if r.ContentLength > s.opts.MaxUpload {
		return tooLargeUpload(s.opts.MaxUpload)
	}
	if r.ContentLength == 0 {
		return badInput(op, "", "the file is empty")
	}
	if err := s.imports.reserve(); err != nil {
		return err
	}
	spool, size, err := s.imports.spool(w, r)
	if err == nil && size == 0 {
		os.Remove(spool)
		err = badInput(op, "", "the file is empty")
	}
	if err != nil {
		s.imports.unreserve()
		return err
	}
	id, user := randomID(), who(r.Context()).user
	j := &job{id: id, room: rm, name: name, user: user, spool: spool, holder: importHolderPrefix + id, w: wire.Job{
		ID: id, Room: rm.name, Name: name, User: user,
		State: jobQueued, TotalBytes: size, Created: time.Now().UTC(),
	}}
	// Snapshot before the job can change.
	out := j.w
	if err := s.imports.start(j); err != nil {
		os.Remove(spool)
		s.imports.unreserve()
		return err
	}
	s.log.Info("import queued", "room", rm.name, "job", id, "file", name, "bytes", size, "user", user)
	w.Header().Set("Location", "/api/rooms/"+rm.name+"/jobs/"+id)
	writeJSON(w, http.StatusAccepted, out)
	return nil
}

// handleJobs is GET /api/rooms/{room}/jobs: the room's import jobs, newest
// first.
func (s *Server) handleJobs(w http.ResponseWriter, r *http.Request) error {
	rm, err := s.room(r.PathValue("room"))
	if err != nil {
		return err
	}
	jobs := s.imports.list(rm)
	if s.hs != nil {
		// Every hub's jobs; with Redis away, this hub's.
		if all, err := s.hs.jobs(r.Context(), rm, jobs); err == nil {
			jobs = all
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"room": rm.name, "jobs": jobs})
	return nil
}

// handleJob is GET /api/rooms/{room}/jobs/{id}.
func (s *Server) handleJob(w http.ResponseWriter, r *http.Request) error {
	rm, err := s.room(r.PathValue("room"))
	if err != nil {
		return err
	}
	j, err := s.imports.get(rm, r.PathValue("id"))
	if errors.Is(err, framesync.NotFound) && s.hs != nil {
		j, err = s.hs.job(r.Context(), rm, r.PathValue("id")) // another hub's
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, j)
	return nil
}
