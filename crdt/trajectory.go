package crdt

import (
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/automerge/automerge-go"

	"framesync"
)

// TrajectoryLayout is the value of the "layout" key of a trajectory document;
// it names the layout the package documentation describes.
const TrajectoryLayout = "framesync/trajectory@1"

// Keys of the trajectory document's root map.
const (
	keyLayout     = "layout"
	keyFrames     = "frames"
	keyHistory    = "history"
	keyGeneration = "generation"
)

// frameIDBytes is the number of random bytes in a frame ID (printed as hex).
const frameIDBytes = 8

// Entry is one frame of a trajectory: its stable ID, its current version
// and the hash of that version's manifest, plus when and by whom that version
// was written.
type Entry struct {
	ID      string         // stable random ID: 16 lower-case hex digits
	Version int64          // 1 for the first version, then 2, ...
	Hash    framesync.Hash // hash of the frame's manifest at Version
	Time    time.Time      // when Version was written (millisecond precision)
	Author  string         // who asked for Version (peer or user ID)
}

// Version is one version in the history of a frame.
type Version struct {
	Version int64
	Hash    framesync.Hash
	Time    time.Time
	Author  string
}

// Commit describes one committed change of a trajectory document.
type Commit struct {
	Hash       ChangeHash // the Automerge change (zero if nothing changed)
	Heads      Heads      // the document's heads after the change
	Generation int64      // the generation after the change
	Entries    []Entry    // the frames written (appended, inserted, replaced, moved or deleted)
}

// Trajectory is the trajectory document of a room: the ordered frame
// entries, their histories and the generation counter. The package
// documentation describes its layout. Only the hub writes it. A Trajectory is
// safe for concurrent use.
type Trajectory struct {
	// Static after construction.
	doc  *Doc
	rand io.Reader

	cache trajCache // guarded by doc.mu
	// lastDiff is the to side of the last Diff (a copy), so the next one,
	// which usually starts there, need not fork the document. Guarded by
	// doc.mu.
	lastDiff struct {
		heads   Heads
		entries []Entry
		gen     int64
		ok      bool
	}

	gate func(c *Commit, change []byte) error // set once by SetGate, before use
}

// SetGate makes every edit of t pass through fn before it takes effect:
// fn is called with the commit and the bytes of its change (an
// uncompressed change chunk, see ChangesMessage) while the document is
// locked, before any reader, session or listener can see the change. If fn
// returns an error the change is rolled back and the edit returns that
// error. A hub uses it to make a commit visible only once other hubs agreed
// (and got the change). Call SetGate before t is used; fn must not use t.
func (t *Trajectory) SetGate(fn func(c *Commit, change []byte) error) { t.gate = fn }

// trajCache holds the decoded frame list for one version of the document.
// Trajectory's own edits update it in place; any other change (sync,
// incremental load, rollback) invalidates it by bumping Doc.version.
type trajCache struct {
	valid   bool
	version uint64         // the Doc.version the entries belong to
	entries []Entry        // the frame list
	index   map[string]int // frame ID -> index of its first entry; nil until needed
}

// NewTrajectory returns a new, empty trajectory document. Its first change
// is the same on every replica, so independently created trajectory documents
// merge cleanly.
func NewTrajectory(opts *Options) (*Trajectory, error) {
	d, err := newSkeletonDoc(opts, "trajectory: create", func(am *automerge.Doc) error {
		root := am.RootMap()
		if err := root.Set(keyLayout, TrajectoryLayout); err != nil {
			return err
		}
		if err := root.Set(keyFrames, automerge.NewList()); err != nil {
			return err
		}
		if err := root.Set(keyHistory, automerge.NewMap()); err != nil {
			return err
		}
		return root.Set(keyGeneration, automerge.NewCounter(0))
	})
	if err != nil {
		return nil, err
	}
	return &Trajectory{doc: d, rand: opts.rand()}, nil
}

// LoadTrajectory loads a trajectory document saved with Save (see LoadDoc for
// the rules on input). A document of another layout is a framesync.BadInput
// error.
func LoadTrajectory(b []byte, opts *Options) (*Trajectory, error) {
	d, err := LoadDoc(b, opts)
	if err != nil {
		return nil, err
	}
	return OpenTrajectory(d, opts)
}

// OpenTrajectory returns the trajectory view of d, which must hold a
// trajectory document (for example one received by sync into a document made
// by NewTrajectory, or loaded with LoadDoc). opts only supplies Rand.
func OpenTrajectory(d *Doc, opts *Options) (*Trajectory, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := checkLayout(d.am, "open trajectory", TrajectoryLayout); err != nil {
		return nil, err
	}
	return &Trajectory{doc: d, rand: opts.rand()}, nil
}

// checkLayout checks the root "layout" key of am.
func checkLayout(am *automerge.Doc, op, want string) error {
	v, err := am.RootMap().Get(keyLayout)
	if err != nil {
		return internal(op, err)
	}
	got, ok := stringOf(v)
	if !ok || got != want {
		return errorf(framesync.BadInput, op, "document layout is %q, want %q", got, want)
	}
	return nil
}

// Doc returns the underlying document, for Save, sync and change inspection.
func (t *Trajectory) Doc() *Doc { return t.doc }

// Save returns the whole document (see Doc.Save).
func (t *Trajectory) Save() []byte { return t.doc.Save() }

// Heads returns the current heads (see Doc.Heads).
func (t *Trajectory) Heads() Heads { return t.doc.Heads() }

// Len returns the number of frames.
func (t *Trajectory) Len() (int, error) {
	t.doc.mu.Lock()
	defer t.doc.mu.Unlock()
	if err := t.loadLocked(); err != nil {
		return 0, err
	}
	return len(t.cache.entries), nil
}

// At returns the frame at index i. An index out of range is a
// framesync.NotFound error.
func (t *Trajectory) At(i int) (Entry, error) {
	t.doc.mu.Lock()
	defer t.doc.mu.Unlock()
	if err := t.loadLocked(); err != nil {
		return Entry{}, err
	}
	if err := checkIndex("frame at index", i, len(t.cache.entries)); err != nil {
		return Entry{}, err
	}
	return t.cache.entries[i], nil
}

// IndexOf returns the index of the frame with the given ID. An unknown ID is
// a framesync.NotFound error.
func (t *Trajectory) IndexOf(id string) (int, error) {
	t.doc.mu.Lock()
	defer t.doc.mu.Unlock()
	if err := t.loadLocked(); err != nil {
		return 0, err
	}
	return t.indexLocked("index of frame", id)
}

// Entries returns all frames in order.
func (t *Trajectory) Entries() ([]Entry, error) {
	t.doc.mu.Lock()
	defer t.doc.mu.Unlock()
	if err := t.loadLocked(); err != nil {
		return nil, err
	}
	out := make([]Entry, len(t.cache.entries))
	copy(out, t.cache.entries)
	return out, nil
}

// Generation returns the generation counter: the number of changes the hub
// committed (summed over hubs when several write concurrently).
func (t *Trajectory) Generation() (int64, error) {
	t.doc.mu.Lock()
	defer t.doc.mu.Unlock()
	return readGeneration(t.doc.am)
}

// History returns every version of the frame with the given ID, oldest
// first, including for a deleted frame. An unknown ID is a
// framesync.NotFound error.
func (t *Trajectory) History(id string) ([]Version, error) {
	const op = "frame history"
	t.doc.mu.Lock()
	defer t.doc.mu.Unlock()
	if err := t.loadLocked(); err != nil {
		return nil, err
	}
	hist, err := readHistory(t.doc.am, id)
	if err != nil {
		return nil, err
	}
	if hist != nil {
		return hist, nil
	}
	i, err := t.indexLocked(op, id)
	if err != nil {
		return nil, err
	}
	e := t.cache.entries[i]
	return []Version{{Version: e.Version, Hash: e.Hash, Time: e.Time, Author: e.Author}}, nil
}

// Append adds one frame at the end; the new entry is Commit.Entries[0].
func (t *Trajectory) Append(author string, h framesync.Hash) (*Commit, error) {
	return t.Extend(author, []framesync.Hash{h})
}

// Extend adds frames at the end in one change, one per manifest hash, in
// order; the new entries are Commit.Entries.
func (t *Trajectory) Extend(author string, hs []framesync.Hash) (*Commit, error) {
	const op = "extend trajectory"
	if len(hs) == 0 {
		return nil, errorf(framesync.BadInput, op, "no frames given")
	}
	if err := checkEdit(op, author, hs...); err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("trajectory: extend by %d %s (%s)", len(hs), plural(len(hs), "frame", "frames"), author)
	return t.write(op, msg, func(w *trajWrite) error {
		c := &t.cache
		entries := make([]Entry, len(hs))
		strs := make([]any, len(hs))
		for i, h := range hs {
			id, err := w.newID()
			if err != nil {
				return err
			}
			entries[i] = Entry{ID: id, Version: 1, Hash: h, Time: w.now, Author: author}
			strs[i] = formatEntry(entries[i])
			if c.index != nil {
				c.index[id] = len(c.entries) + i
			}
		}
		if err := w.frames.Append(strs...); err != nil {
			return internal(op, err)
		}
		c.entries = append(c.entries, entries...)
		w.written = entries
		return nil
	})
}

// Insert adds one frame so that it ends up at index i (0 <= i <= Len). An
// index out of range is a framesync.NotFound error.
func (t *Trajectory) Insert(author string, i int, h framesync.Hash) (*Commit, error) {
	const op = "insert frame"
	if err := checkEdit(op, author, h); err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("trajectory: insert frame at %d (%s)", i, author)
	return t.write(op, msg, func(w *trajWrite) error {
		c := &t.cache
		if err := checkIndex(op, i, len(c.entries)+1); err != nil {
			return err
		}
		id, err := w.newID()
		if err != nil {
			return err
		}
		e := Entry{ID: id, Version: 1, Hash: h, Time: w.now, Author: author}
		if err := w.frames.Insert(i, formatEntry(e)); err != nil {
			return internal(op, err)
		}
		c.entries = append(c.entries[:i], append([]Entry{e}, c.entries[i:]...)...)
		c.index = nil
		w.written = []Entry{e}
		return nil
	})
}

// Delete removes the frame with the given ID. Its history stays in the
// document, so History still answers for it. An unknown ID is a
// framesync.NotFound error.
func (t *Trajectory) Delete(author, id string) (*Commit, error) {
	const op = "delete frame"
	if err := checkEdit(op, author); err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("trajectory: delete frame %s (%s)", id, author)
	return t.write(op, msg, func(w *trajWrite) error {
		c := &t.cache
		i, err := t.indexLocked(op, id)
		if err != nil {
			return err
		}
		e := c.entries[i]
		if _, err := w.ensureHistory(e); err != nil {
			return err
		}
		if err := w.frames.Delete(i); err != nil {
			return internal(op, err)
		}
		c.entries = append(c.entries[:i], c.entries[i+1:]...)
		c.index = nil
		w.written = []Entry{e}
		return nil
	})
}

// Move moves the frame with the given ID so that it ends up at index to
// (0 <= to < Len). Automerge has no move operation: the entry is deleted and
// inserted again, so concurrent moves of one frame by two hubs would
// duplicate it (hubs serialize structural edits with the trajectory lock).
// Moving a frame to where it is commits nothing. An unknown ID or an index
// out of range is a framesync.NotFound error.
func (t *Trajectory) Move(author, id string, to int) (*Commit, error) {
	const op = "move frame"
	if err := checkEdit(op, author); err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("trajectory: move frame %s to %d (%s)", id, to, author)
	return t.write(op, msg, func(w *trajWrite) error {
		c := &t.cache
		i, err := t.indexLocked(op, id)
		if err != nil {
			return err
		}
		if err := checkIndex(op, to, len(c.entries)); err != nil {
			return err
		}
		if i == to {
			return errNoChange
		}
		e := c.entries[i]
		if err := w.frames.Delete(i); err != nil {
			return internal(op, err)
		}
		if err := w.frames.Insert(to, formatEntry(e)); err != nil {
			return internal(op, err)
		}
		c.entries = append(c.entries[:i], c.entries[i+1:]...)
		c.entries = append(c.entries[:to], append([]Entry{e}, c.entries[to:]...)...)
		c.index = nil
		w.written = []Entry{e}
		return nil
	})
}

// Replace writes a new version of the frame with the given ID: version+1,
// with manifest hash h. If base is not 0 it is the version the new one was
// made from, and Replace fails with a framesync.Conflict error naming the
// current version unless that is base. An unknown ID is a framesync.NotFound
// error.
func (t *Trajectory) Replace(author, id string, base int64, h framesync.Hash) (*Commit, error) {
	const op = "replace frame"
	if err := checkEdit(op, author, h); err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("trajectory: replace frame %s (%s)", id, author)
	return t.write(op, msg, func(w *trajWrite) error {
		i, err := t.indexLocked(op, id)
		if err != nil {
			return err
		}
		if cur := t.cache.entries[i].Version; base != 0 && base != cur {
			return &framesync.Error{Kind: framesync.Conflict, Op: op, Field: id, Msg: fmt.Sprintf("frame is at version %d, not %d", cur, base)}
		}
		return w.newVersion(i, h, author)
	})
}

// Revert writes a new version of the frame with the given ID whose manifest
// hash is that of its earlier version v: undo and redo are pointer changes.
// An unknown ID or version is a framesync.NotFound error.
func (t *Trajectory) Revert(author, id string, v int64) (*Commit, error) {
	const op = "revert frame"
	if err := checkEdit(op, author); err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("trajectory: revert frame %s to version %d (%s)", id, v, author)
	return t.write(op, msg, func(w *trajWrite) error {
		i, err := t.indexLocked(op, id)
		if err != nil {
			return err
		}
		hist, err := w.ensureHistory(t.cache.entries[i])
		if err != nil {
			return err
		}
		for _, old := range hist {
			if old.Version == v {
				return w.newVersion(i, old.Hash, author)
			}
		}
		return &framesync.Error{Kind: framesync.NotFound, Op: op, Field: id, Msg: fmt.Sprintf("no version %d", v)}
	})
}

// trajWrite is the state of one trajectory edit, under the document lock.
type trajWrite struct {
	t       *Trajectory
	am      *automerge.Doc
	now     time.Time
	frames  *automerge.List
	history *automerge.Map
	written []Entry
}

// write runs one edit of the trajectory as one change that also bumps the
// generation.
func (t *Trajectory) write(op, msg string, fn func(w *trajWrite) error) (*Commit, error) {
	var w trajWrite
	res := &Commit{}
	var genErr error
	h, err := t.doc.commit(op, msg, func(am *automerge.Doc, now time.Time) error {
		if err := t.loadLocked(); err != nil {
			return err
		}
		frames, history, err := trajObjects(am)
		if err != nil {
			return err
		}
		w = trajWrite{t: t, am: am, now: time.UnixMilli(now.UnixMilli()), frames: frames, history: history}
		if err := fn(&w); err != nil {
			return err
		}
		if err := am.Path(keyGeneration).Counter().Inc(1); err != nil {
			return internal(op, err)
		}
		return nil
	}, func(am *automerge.Doc, h automerge.ChangeHash) error {
		t.cache.version = t.doc.version
		res.Heads = headsOf(am)
		res.Generation, genErr = readGeneration(am)
		if t.gate == nil || genErr != nil {
			return nil
		}
		c, err := am.Change(h)
		if err != nil {
			return internal(op, err)
		}
		res.Hash, res.Entries = ChangeHash(h), w.written
		return t.gate(res, c.Save())
	})
	if err != nil {
		return nil, err
	}
	if genErr != nil {
		return nil, genErr
	}
	res.Hash = h
	res.Entries = w.written
	if h == (ChangeHash{}) {
		// Nothing changed: report the current state.
		res.Heads = t.doc.Heads()
		if res.Generation, err = t.Generation(); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// newID returns a random frame ID not used by any frame.
func (w *trajWrite) newID() (string, error) {
	var b [frameIDBytes]byte
	for {
		if _, err := io.ReadFull(w.t.rand, b[:]); err != nil {
			return "", &framesync.Error{Kind: framesync.Internal, Op: "new frame ID", Err: err}
		}
		id := hex.EncodeToString(b[:])
		if _, used := w.t.indexOfLocked(id); !used {
			return id, nil
		}
	}
}

// ensureHistory returns the history of frame e, writing it to the document
// first if the frame had none stored (frames with one version keep it in
// their entry only).
func (w *trajWrite) ensureHistory(e Entry) ([]Version, error) {
	hist, err := readHistory(w.am, e.ID)
	if err != nil || hist != nil {
		return hist, err
	}
	first := Version{Version: e.Version, Hash: e.Hash, Time: e.Time, Author: e.Author}
	l := automerge.NewList()
	if err := w.history.Set(e.ID, l); err != nil {
		return nil, internal("write history", err)
	}
	if err := l.Append(formatVersion(first)); err != nil {
		return nil, internal("write history", err)
	}
	return []Version{first}, nil
}

// newVersion writes version+1 of the frame at index i with hash h.
func (w *trajWrite) newVersion(i int, h framesync.Hash, author string) error {
	const op = "write frame version"
	e := w.t.cache.entries[i]
	if _, err := w.ensureHistory(e); err != nil {
		return err
	}
	e.Version++
	e.Hash, e.Time, e.Author = h, w.now, author
	v, err := w.history.Get(e.ID)
	if err != nil || v.Kind() != automerge.KindList {
		return internal(op, fmt.Errorf("history of %s is not a list (%v)", e.ID, err))
	}
	if err := v.List().Append(formatVersion(Version{Version: e.Version, Hash: e.Hash, Time: e.Time, Author: e.Author})); err != nil {
		return internal(op, err)
	}
	if err := w.frames.Set(i, formatEntry(e)); err != nil {
		return internal(op, err)
	}
	w.t.cache.entries[i] = e
	w.written = []Entry{e}
	return nil
}

// trajObjects returns the frames list and history map of am.
func trajObjects(am *automerge.Doc) (*automerge.List, *automerge.Map, error) {
	const op = "open trajectory"
	root := am.RootMap()
	fv, err := root.Get(keyFrames)
	if err != nil {
		return nil, nil, internal(op, err)
	}
	hv, err := root.Get(keyHistory)
	if err != nil {
		return nil, nil, internal(op, err)
	}
	if fv.Kind() != automerge.KindList || hv.Kind() != automerge.KindMap {
		return nil, nil, errorf(framesync.BadInput, op, "not a trajectory document: frames is %v, history is %v", fv.Kind(), hv.Kind())
	}
	return fv.List(), hv.Map(), nil
}

// loadLocked makes t.cache reflect the current document. t.doc.mu must be held.
func (t *Trajectory) loadLocked() error {
	c := &t.cache
	if c.valid && c.version == t.doc.version {
		return nil
	}
	entries, err := readEntries(t.doc.am)
	if err != nil {
		c.valid = false
		return err
	}
	*c = trajCache{valid: true, version: t.doc.version, entries: entries}
	return nil
}

// indexOfLocked returns the index of the first entry with the given ID.
func (t *Trajectory) indexOfLocked(id string) (int, bool) {
	c := &t.cache
	if c.index == nil {
		c.index = make(map[string]int, len(c.entries))
		for i := len(c.entries) - 1; i >= 0; i-- {
			c.index[c.entries[i].ID] = i
		}
	}
	i, ok := c.index[id]
	return i, ok
}

// indexLocked is indexOfLocked with a NotFound error for unknown IDs.
func (t *Trajectory) indexLocked(op, id string) (int, error) {
	i, ok := t.indexOfLocked(id)
	if !ok {
		return 0, &framesync.Error{Kind: framesync.NotFound, Op: op, Field: id, Msg: "no frame with this ID"}
	}
	return i, nil
}

// readEntries decodes the frame list of am.
func readEntries(am *automerge.Doc) ([]Entry, error) {
	const op = "read frames"
	v, err := am.RootMap().Get(keyFrames)
	if err != nil {
		return nil, internal(op, err)
	}
	switch v.Kind() {
	case automerge.KindVoid:
		return nil, nil
	case automerge.KindList:
	default:
		return nil, errorf(framesync.BadInput, op, "frames is %v, want a list", v.Kind())
	}
	vals, err := v.List().Values()
	if err != nil {
		return nil, internal(op, err)
	}
	out := make([]Entry, len(vals))
	for i, x := range vals {
		s, ok := stringOf(x)
		if !ok {
			return nil, errorf(framesync.BadInput, op, "frames[%d] is %v, want a string", i, x.Kind())
		}
		if out[i], err = parseEntry(s); err != nil {
			return nil, &framesync.Error{Kind: framesync.BadInput, Op: op, Field: fmt.Sprintf("frames[%d]", i), Err: err}
		}
	}
	return out, nil
}

// readHistory decodes the stored history of a frame; nil if none is stored.
func readHistory(am *automerge.Doc, id string) ([]Version, error) {
	const op = "read history"
	v, err := am.Path(keyHistory, id).Get()
	if err != nil {
		return nil, internal(op, err)
	}
	switch v.Kind() {
	case automerge.KindVoid:
		return nil, nil
	case automerge.KindList:
	default:
		return nil, errorf(framesync.BadInput, op, "history of %s is %v, want a list", id, v.Kind())
	}
	vals, err := v.List().Values()
	if err != nil {
		return nil, internal(op, err)
	}
	out := make([]Version, len(vals))
	for i, x := range vals {
		s, ok := stringOf(x)
		if !ok {
			return nil, errorf(framesync.BadInput, op, "history[%s][%d] is %v, want a string", id, i, x.Kind())
		}
		if out[i], err = parseVersion(s); err != nil {
			return nil, &framesync.Error{Kind: framesync.BadInput, Op: op, Field: fmt.Sprintf("history[%s][%d]", id, i), Err: err}
		}
	}
	return out, nil
}

// readGeneration returns the generation counter of am.
func readGeneration(am *automerge.Doc) (int64, error) {
	v, err := am.RootMap().Get(keyGeneration)
	if err != nil {
		return 0, internal("read generation", err)
	}
	switch v.Kind() {
	case automerge.KindVoid:
		return 0, nil
	case automerge.KindCounter, automerge.KindInt64:
		return automerge.As[int64](v)
	}
	return 0, errorf(framesync.BadInput, "read generation", "generation is %v, want a counter", v.Kind())
}

// stringOf returns the string held by a scalar string or a Text object.
func stringOf(v *automerge.Value) (string, bool) {
	switch v.Kind() {
	case automerge.KindStr:
		return v.Str(), true
	case automerge.KindText:
		s, err := v.Text().Get()
		return s, err == nil
	}
	return "", false
}

// formatEntry encodes an entry: "<id> <version> <hash> <unix ms> <author>".
func formatEntry(e Entry) string {
	return e.ID + " " + formatVersion(Version{Version: e.Version, Hash: e.Hash, Time: e.Time, Author: e.Author})
}

// formatVersion encodes a history record: "<version> <hash> <unix ms> <author>".
func formatVersion(v Version) string {
	return strconv.FormatInt(v.Version, 10) + " " + v.Hash.String() + " " + strconv.FormatInt(v.Time.UnixMilli(), 10) + " " + v.Author
}

func parseEntry(s string) (Entry, error) {
	id, rest, ok := strings.Cut(s, " ")
	if !ok || id == "" {
		return Entry{}, fmt.Errorf("entry %q: want \"<id> <version> <hash> <time> <author>\"", s)
	}
	v, err := parseVersion(rest)
	if err != nil {
		return Entry{}, fmt.Errorf("entry of %s: %w", id, err)
	}
	return Entry{ID: id, Version: v.Version, Hash: v.Hash, Time: v.Time, Author: v.Author}, nil
}

func parseVersion(s string) (Version, error) {
	parts := strings.SplitN(s, " ", 4)
	if len(parts) != 4 {
		return Version{}, fmt.Errorf("record %q: want \"<version> <hash> <time> <author>\"", s)
	}
	ver, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || ver < 1 {
		return Version{}, fmt.Errorf("record %q: bad version", s)
	}
	h, err := framesync.ParseHash(parts[1])
	if err != nil {
		return Version{}, fmt.Errorf("record %q: %w", s, err)
	}
	ms, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return Version{}, fmt.Errorf("record %q: bad time", s)
	}
	return Version{Version: ver, Hash: h, Time: time.UnixMilli(ms), Author: parts[3]}, nil
}

// checkEdit validates the arguments common to trajectory edits.
func checkEdit(op, author string, hs ...framesync.Hash) error {
	if !utf8.ValidString(author) {
		return errorf(framesync.BadInput, op, "author is not valid UTF-8")
	}
	for i, h := range hs {
		if h.IsZero() {
			return errorf(framesync.BadInput, op, "hash %d is the zero hash", i)
		}
	}
	return nil
}

// checkIndex returns a NotFound error unless 0 <= i < n.
func checkIndex(op string, i, n int) error {
	if i < 0 || i >= n {
		return &framesync.Error{Kind: framesync.NotFound, Op: op, Msg: fmt.Sprintf("index %d out of range [0, %d)", i, n)}
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
