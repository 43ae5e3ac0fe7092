package crdt

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/automerge/automerge-go"

	"framesync"
)

// Options configure a document replica. A nil *Options means the defaults.
type Options struct {
	// ActorID is the Automerge actor ID this replica writes with, as an
	// even number of lower-case hex digits. Empty means a new random actor.
	// Two processes must never write with the same actor ID at once.
	ActorID string

	// Now returns the time recorded in commits and in frame history.
	// Nil means time.Now.
	Now func() time.Time

	// Rand is the source of random frame IDs. Nil means crypto/rand.
	Rand io.Reader
}

func (o *Options) rand() io.Reader {
	if o == nil || o.Rand == nil {
		return rand.Reader
	}
	return o.Rand
}

func (o *Options) now() func() time.Time {
	if o == nil || o.Now == nil {
		return time.Now
	}
	return o.Now
}

func (o *Options) actor() string {
	if o == nil {
		return ""
	}
	return o.ActorID
}

// initActor writes the skeleton change of the typed documents. Every replica
// creates the skeleton with the same actor, time and operations, so the
// change is byte-identical (same hash) everywhere and two replicas created
// independently merge without their root objects conflicting.
const initActor = "00000000000000000000000000000000"

// Doc is one replica of an Automerge document. It is safe for concurrent use:
// every read-modify-write of the typed views (Trajectory, State) and every
// sync step happens under one lock.
//
// Memory held by the Automerge core is released only by Go finalizers (the
// wrapped library has no Close); drop references to a Doc and the garbage
// collector frees it eventually.
type Doc struct {
	// Static after construction.
	now func() time.Time

	mu         sync.Mutex // guards the fields below
	am         *automerge.Doc
	version    uint64 // bumped on every change of the document; keys caches
	listeners  map[uint64]func(from, to Heads)
	nextID     uint64
	index      *docIndex // what the change check knows, as of indexHeads; nil until needed
	indexHeads Heads
	pending    map[ChangeHash]*parked // received changes waiting for their dependencies
	parkOrder  []ChangeHash           // pending, oldest first
	parkBytes  int                    // bytes held by pending
	readOnly   string                 // why local changes are refused; empty: they are not
}

// NewDoc returns an empty document.
func NewDoc(opts *Options) (*Doc, error) {
	am := automerge.New()
	if err := setActor(am, opts.actor()); err != nil {
		return nil, err
	}
	return &Doc{am: am, now: opts.now()}, nil
}

// newSkeletonDoc returns a document whose first change is the deterministic
// skeleton written by init (see initActor).
func newSkeletonDoc(opts *Options, msg string, init func(*automerge.Doc) error) (*Doc, error) {
	am := automerge.New()
	if err := am.SetActorID(initActor); err != nil {
		return nil, internal("create document", err)
	}
	if err := init(am); err != nil {
		return nil, internal("create document", err)
	}
	if _, err := am.Commit(msg, automerge.CommitOptions{Time: &time.Time{}}); err != nil {
		return nil, internal("create document", err)
	}
	if err := setActor(am, opts.actor()); err != nil {
		return nil, err
	}
	return &Doc{am: am, now: opts.now()}, nil
}

// setActor sets the actor ID of am: id, or a new random one if id is empty.
func setActor(am *automerge.Doc, id string) error {
	if id == "" {
		id = automerge.NewActorID()
	}
	if len(id)%2 != 0 || len(id) == 0 {
		return errorf(framesync.BadInput, "set actor", "actor ID %q: want an even number of hex digits", id)
	}
	for _, c := range id {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return errorf(framesync.BadInput, "set actor", "actor ID %q: want lower-case hex digits", id)
		}
	}
	if err := am.SetActorID(id); err != nil {
		return &framesync.Error{Kind: framesync.BadInput, Op: "set actor", Err: err}
	}
	return nil
}

// LoadDoc loads a document saved by Save (optionally followed by incremental
// saves). Input that is not a sequence of well-formed Automerge chunks with
// valid checksums is refused with a framesync.BadInput error.
//
// Only load documents from a trusted source (this process's own storage, the
// hub): the bundled Automerge core aborts the process on some malformed
// documents whose checksums are valid. See the package documentation.
func LoadDoc(b []byte, opts *Options) (*Doc, error) {
	const op = "load document"
	if err := checkChunks(op, b); err != nil {
		return nil, err
	}
	am, err := automerge.Load(b)
	if err != nil {
		return nil, &framesync.Error{Kind: framesync.BadInput, Op: op, Err: err}
	}
	if opts.actor() != "" {
		if err := setActor(am, opts.actor()); err != nil {
			return nil, err
		}
	}
	return &Doc{am: am, now: opts.now()}, nil
}

// Save returns the whole document in Automerge's compressed format.
func (d *Doc) Save() []byte {
	cHeapTick()
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.am.Save()
}

// SaveIncremental returns the changes made since the last Save or
// SaveIncremental, to append to a saved document (LoadDoc accepts a save
// followed by any number of incremental saves) or to pass to LoadIncremental.
// It returns an empty slice when nothing changed.
func (d *Doc) SaveIncremental() []byte {
	cHeapTick()
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.am.SaveIncremental()
}

// LoadIncremental applies changes saved by SaveIncremental or Save (of this or
// another replica of the same document). The same trust rule as for LoadDoc
// applies.
func (d *Doc) LoadIncremental(b []byte) error {
	const op = "load incremental"
	if err := checkChunks(op, b); err != nil {
		return err
	}
	return d.apply(op, func(am *automerge.Doc) error {
		if err := am.LoadIncremental(b); err != nil {
			return &framesync.Error{Kind: framesync.BadInput, Op: op, Err: err}
		}
		return nil
	})
}

// Heads returns the current heads of the document.
func (d *Doc) Heads() Heads {
	d.mu.Lock()
	defer d.mu.Unlock()
	return headsOf(d.am)
}

func headsOf(am *automerge.Doc) Heads {
	hs := am.Heads()
	out := make(Heads, len(hs))
	for i, h := range hs {
		out[i] = ChangeHash(h)
	}
	return out.sorted()
}

// ActorID returns the actor ID this replica writes with.
func (d *Doc) ActorID() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.am.ActorID()
}

// HasChange reports whether the document contains the change h.
func (d *Doc) HasChange(h ChangeHash) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return hasChange(d.am, h)
}

func hasChange(am *automerge.Doc, h ChangeHash) bool {
	_, err := am.Change(automerge.ChangeHash(h))
	return err == nil
}

// checkHeads returns a NotFound error if any of hs is not in the document.
// Automerge must never see unknown hashes: some of its calls then misbehave.
func checkHeads(am *automerge.Doc, op string, hs Heads) error {
	for _, h := range hs {
		if !hasChange(am, h) {
			return errorf(framesync.NotFound, op, "change %s is not in the document", h)
		}
	}
	return nil
}

// Changes returns the changes made after the version since (all changes for
// empty since), in an order where each change follows its dependencies.
func (d *Doc) Changes(since Heads) ([]ChangeInfo, error) {
	const op = "list changes"
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := checkHeads(d.am, op, since); err != nil {
		return nil, err
	}
	chs, err := d.am.Changes(amHeads(since)...)
	if err != nil {
		return nil, internal(op, err)
	}
	out := make([]ChangeInfo, 0, len(chs))
	for _, c := range chs {
		ci, _, err := parseChange(c.Save())
		if err != nil {
			return nil, internal(op, err)
		}
		out = append(out, ci)
	}
	return out, nil
}

func amHeads(hs Heads) []automerge.ChangeHash {
	out := make([]automerge.ChangeHash, len(hs))
	for i, h := range hs {
		out[i] = automerge.ChangeHash(h)
	}
	return out
}

// OnChange registers fn to be called after every change of the document,
// local or received, with the heads before and after. fn runs synchronously
// in the goroutine that changed the document, after the document's lock is
// released, so it may read the document (and call Diff). Changes made
// concurrently by several goroutines may be reported out of order; each call
// carries its own From and To. The returned function unregisters fn.
func (d *Doc) OnChange(fn func(from, to Heads)) (cancel func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.listeners == nil {
		d.listeners = make(map[uint64]func(from, to Heads))
	}
	id := d.nextID
	d.nextID++
	d.listeners[id] = fn
	return func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		delete(d.listeners, id)
	}
}

// notify calls the listeners if the heads moved. Called without d.mu held.
func notify(fns []func(from, to Heads), from, to Heads) {
	if from.Equal(to) {
		return
	}
	for _, fn := range fns {
		fn(from, to)
	}
}

// listenersLocked returns a snapshot of the listeners. d.mu must be held.
func (d *Doc) listenersLocked() []func(from, to Heads) {
	fns := make([]func(from, to Heads), 0, len(d.listeners))
	for _, fn := range d.listeners {
		fns = append(fns, fn)
	}
	return fns
}

// apply runs fn, which changes the document by other means than a local
// commit (sync, incremental load), under the lock, then notifies listeners.
func (d *Doc) apply(op string, fn func(am *automerge.Doc) error) error {
	cHeapTick()
	d.mu.Lock()
	before := headsOf(d.am)
	err := fn(d.am)
	after := headsOf(d.am)
	if !before.Equal(after) {
		d.version++
	}
	fns := d.listenersLocked()
	d.mu.Unlock()
	notify(fns, before, after)
	return err
}

// errNoChange is returned by an edit function that had nothing to write.
var errNoChange = errors.New("no change")

// commit runs edit under the lock and commits what it wrote as one change
// with message msg. If edit returns errNoChange nothing is committed and
// commit returns the zero hash and no error. If edit fails after writing, the
// document is rolled back to its state before (Automerge keeps uncommitted
// operations otherwise, and would commit them with the next change).
// after, if not nil, runs under the lock once the change is committed; if
// it returns an error the change is rolled back (it never left the lock,
// so no reader, session or listener saw it) and commit returns that error.
func (d *Doc) commit(op, msg string, edit func(am *automerge.Doc, now time.Time) error, after func(am *automerge.Doc, h automerge.ChangeHash) error) (ChangeHash, error) {
	cHeapTick()
	d.mu.Lock()
	if d.readOnly != "" {
		d.mu.Unlock()
		return ChangeHash{}, errorf(framesync.Forbidden, op, "%s", d.readOnly)
	}
	before := headsOf(d.am)
	now := d.now()
	err := edit(d.am, now)
	if errors.Is(err, errNoChange) {
		d.mu.Unlock()
		return ChangeHash{}, nil
	}
	if err != nil {
		err = errors.Join(err, d.rollbackLocked(op, before))
		d.mu.Unlock()
		return ChangeHash{}, err
	}
	h, err := d.am.Commit(msg, automerge.CommitOptions{Time: &now})
	if err != nil {
		err = errors.Join(internal(op, err), d.rollbackLocked(op, before))
		d.mu.Unlock()
		return ChangeHash{}, err
	}
	d.version++
	if after != nil {
		if err := after(d.am, h); err != nil {
			err = errors.Join(err, d.rollbackLocked(op, before))
			d.mu.Unlock()
			return ChangeHash{}, err
		}
	}
	to := headsOf(d.am)
	fns := d.listenersLocked()
	d.mu.Unlock()
	notify(fns, before, to)
	return ChangeHash(h), nil
}

// SetReadOnly makes local edits fail with a framesync.Forbidden error
// carrying reason, for a replica whose changes nobody would accept (a
// reader's copy of a room's state); an empty reason allows them again.
// Changes received by sync are applied either way.
func (d *Doc) SetReadOnly(reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.readOnly = reason
}

// rollbackLocked replaces the document by its version at heads, dropping any
// uncommitted operations. d.mu must be held.
func (d *Doc) rollbackLocked(op string, heads Heads) error {
	actor := d.am.ActorID()
	am := automerge.New()
	if len(heads) > 0 {
		f, err := d.am.Fork(amHeads(heads)...)
		if err != nil {
			return internal(op+": roll back", err)
		}
		am = f
	}
	if err := am.SetActorID(actor); err != nil {
		return internal(op+": roll back", err)
	}
	d.am = am
	d.version++
	d.index = nil
	return nil
}

// docIndex is what the change check needs to know about a document: the
// kind of every object, and how many changes each actor wrote.
type docIndex struct {
	objs objTable
	seqs map[string]uint64
}

// indexLocked returns the index of the document, updating it with the
// changes made since it was last used. d.mu must be held.
func (d *Doc) indexLocked() (*docIndex, error) {
	const op = "index document"
	heads := headsOf(d.am)
	if d.index != nil && heads.Equal(d.indexHeads) {
		return d.index, nil
	}
	var chs []*automerge.Change
	var err error
	if d.index == nil {
		d.index = &docIndex{objs: objTable{}, seqs: map[string]uint64{}}
		chs, err = d.am.Changes()
	} else {
		chs, err = d.am.Changes(amHeads(d.indexHeads)...)
	}
	if err != nil {
		d.index = nil
		return nil, internal(op, err)
	}
	for _, c := range chs {
		ci, rest, err := parseChange(c.Save())
		if err == nil {
			var co *changeOps
			if co, err = parseChangeOps(ci, rest); err == nil {
				err = co.collectObjects(d.index.objs)
			}
		}
		if err != nil {
			d.index = nil
			return nil, internal(op, err)
		}
		d.index.seqs[ci.Actor]++
	}
	d.indexHeads = heads
	return d.index, nil
}

// parked is a received change that waits for its dependencies.
type parked struct {
	info ChangeInfo
	raw  []byte // the change chunk
	rest []byte // the chunk after its message field
}

// maxParkedBytes bounds the received changes a document holds while they
// wait for their dependencies.
const maxParkedBytes = 16 << 20

// parkLocked keeps received changes until their dependencies arrive.
func (d *Doc) parkLocked(ps []*parked) error {
	n := 0
	for _, p := range ps {
		n += len(p.raw)
	}
	if d.parkBytes+n > maxParkedBytes {
		return errorf(framesync.TooLarge, "receive sync message", "%d bytes of changes waiting for their dependencies, at most %d", d.parkBytes+n, maxParkedBytes)
	}
	if d.pending == nil {
		d.pending = make(map[ChangeHash]*parked)
	}
	for _, p := range ps {
		if d.pending[p.info.Hash] != nil {
			continue
		}
		d.pending[p.info.Hash] = p
		d.parkOrder = append(d.parkOrder, p.info.Hash)
		d.parkBytes += len(p.raw)
	}
	return nil
}

// unparkLocked forgets a parked change.
func (d *Doc) unparkLocked(h ChangeHash) {
	if p := d.pending[h]; p != nil {
		d.parkBytes -= len(p.raw)
		delete(d.pending, h)
		d.parkOrder = slices.DeleteFunc(d.parkOrder, func(x ChangeHash) bool { return x == h })
	}
}

// drainLocked applies the parked changes whose dependencies are now all in
// the document, after checking them. Changes that fail the check are
// dropped and reported.
func (d *Doc) drainLocked() error {
	var errs []error
	for progress := true; progress; {
		progress = false
		for _, h := range slices.Clone(d.parkOrder) {
			p := d.pending[h]
			if hasChange(d.am, h) {
				d.unparkLocked(h)
				continue
			}
			if slices.IndexFunc(p.info.Deps, func(dep ChangeHash) bool { return !hasChange(d.am, dep) }) >= 0 {
				continue // still waiting
			}
			d.unparkLocked(h)
			idx, err := d.indexLocked()
			if err != nil {
				return err
			}
			budget := maxOpsPerMessage
			if err := newOverlay(idx).check(p.info, p.rest, &budget); err != nil {
				errs = append(errs, &framesync.Error{Kind: framesync.BadInput, Op: "apply waiting change", Msg: fmt.Sprintf("change %s by %s", h, p.info.Actor), Err: err})
				continue
			}
			if err := d.am.LoadIncremental(p.raw); err != nil {
				errs = append(errs, &framesync.Error{Kind: framesync.BadInput, Op: "apply waiting change", Msg: fmt.Sprintf("change %s by %s", h, p.info.Actor), Err: err})
				continue
			}
			progress = true
		}
	}
	return errors.Join(errs...)
}

// wantsLocked returns the dependencies of parked changes that are neither
// in the document nor parked: what to ask the peers for.
func (d *Doc) wantsLocked() []ChangeHash {
	var out []ChangeHash
	for _, h := range d.parkOrder {
		for _, dep := range d.pending[h].info.Deps {
			if d.pending[dep] == nil && !hasChange(d.am, dep) && !slices.Contains(out, dep) {
				out = append(out, dep)
			}
		}
	}
	return out
}

// view returns a read-only Automerge document at heads: the live document if
// heads are the current ones (the caller holds d.mu), else a fork. Empty heads
// give an empty document.
func (d *Doc) viewLocked(op string, heads Heads) (*automerge.Doc, error) {
	if heads.Equal(headsOf(d.am)) {
		return d.am, nil
	}
	if len(heads) == 0 {
		return automerge.New(), nil
	}
	if err := checkHeads(d.am, op, heads); err != nil {
		return nil, err
	}
	cHeapTick() // a fork copies the document in C
	f, err := d.am.Fork(amHeads(heads)...)
	if err != nil {
		return nil, internal(op, err)
	}
	return f, nil
}
