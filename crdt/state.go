package crdt

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/automerge/automerge-go"

	"framesync"
)

// StateLayout is the value of the "layout" key of a state document; it names
// the layout the package documentation describes.
const StateLayout = "framesync/state@1"

// Keys of the state document's root map.
const (
	keySelection   = "selection"
	keyBookmarks   = "bookmarks"
	keyStep        = "step"
	keyCamera      = "camera"
	keySettings    = "settings"
	keyCollections = "collections"
)

// Item is one item of a collection: a JSON object with a string "id".
// Values use the forms described in the package documentation (numbers are
// int64 or float64).
type Item map[string]any

// ID returns the item's "id", or "" if it has none.
func (it Item) ID() string {
	s, _ := it["id"].(string)
	return s
}

// Update is a batch change of one collection, applied in this order: if
// Reset, every item is removed; then the items whose IDs are in Remove are
// removed; then the items of Insert are written, each replacing any item
// with the same ID.
type Update struct {
	Remove []string
	Insert []Item
	Reset  bool
}

// ItemDiff is one item that changed. Old is nil for an insert, New is nil
// for a removal.
type ItemDiff struct {
	Collection string
	ID         string
	Old        Item
	New        Item
}

// BookmarkDiff is one bookmark that changed. Old is nil when the bookmark
// was added, New is nil when it was removed.
type BookmarkDiff struct {
	FrameID string
	Old     *string
	New     *string
}

// FieldDiff is one top-level field of the state document that changed
// ("selection", "step", "camera", "settings", or any other key a member
// wrote), with its old and new values (nil when absent).
type FieldDiff struct {
	Field string
	Old   any
	New   any
}

// StateDiff is what changed in a state document between two versions.
type StateDiff struct {
	From, To  Heads
	Items     []ItemDiff     // sorted by collection, then ID
	Bookmarks []BookmarkDiff // sorted by frame ID
	Fields    []FieldDiff    // sorted by field name
}

// Empty reports whether nothing changed.
func (d *StateDiff) Empty() bool {
	return len(d.Items)+len(d.Bookmarks)+len(d.Fields) == 0
}

// State is the state document of a room, written by every member:
// selection, bookmarks, current frame, camera, settings and named
// collections of JSON items. The package documentation describes its layout.
// A State is safe for concurrent use.
type State struct {
	doc *Doc // static after construction

	// last is the document's value at heads lastHeads, kept from the last
	// Diff (its to side), so that the next Diff, which usually starts
	// there, reads one side only instead of forking the document at the
	// other (a fork copies the whole document in C). Guarded by doc.mu;
	// never changed once stored.
	lastHeads Heads
	last      map[string]any
}

// NewState returns a new state document. Its first change is the same on
// every replica, so independently created state documents merge cleanly.
func NewState(opts *Options) (*State, error) {
	d, err := newSkeletonDoc(opts, "state: create", func(am *automerge.Doc) error {
		root := am.RootMap()
		for _, kv := range []struct {
			k string
			v any
		}{
			{keyLayout, StateLayout},
			{keySelection, automerge.NewList()},
			{keyBookmarks, automerge.NewMap()},
			{keyStep, int64(0)},
			{keyCamera, automerge.NewMap()},
			{keySettings, automerge.NewMap()},
			{keyCollections, automerge.NewMap()},
		} {
			if err := root.Set(kv.k, kv.v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &State{doc: d}, nil
}

// LoadState loads a state document saved with Save (see LoadDoc for the
// rules on input). A document of another layout is a framesync.BadInput
// error.
func LoadState(b []byte, opts *Options) (*State, error) {
	d, err := LoadDoc(b, opts)
	if err != nil {
		return nil, err
	}
	return OpenState(d)
}

// OpenState returns the state view of d, which must hold a state document.
func OpenState(d *Doc) (*State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := checkLayout(d.am, "open state", StateLayout); err != nil {
		return nil, err
	}
	return &State{doc: d}, nil
}

// Doc returns the underlying document, for Save, sync and change inspection.
func (s *State) Doc() *Doc { return s.doc }

// Save returns the whole document (see Doc.Save).
func (s *State) Save() []byte { return s.doc.Save() }

// Heads returns the current heads (see Doc.Heads).
func (s *State) Heads() Heads { return s.doc.Heads() }

// OnChange registers fn to be called with the diff of every change of the
// document, local or received by sync (see Doc.OnChange for when and how it
// runs). err is set if the diff could not be computed. The returned function
// unregisters fn.
func (s *State) OnChange(fn func(d *StateDiff, err error)) (cancel func()) {
	return s.doc.OnChange(func(from, to Heads) {
		fn(s.Diff(from, to))
	})
}

// Selection returns the selected atom indices.
func (s *State) Selection() ([]int64, error) {
	v, err := s.field(keySelection)
	if err != nil || v == nil {
		return nil, err
	}
	l, ok := v.([]any)
	if !ok {
		return nil, errorf(framesync.BadInput, "read selection", "selection is %T, want a list", v)
	}
	out := make([]int64, 0, len(l))
	for i, x := range l {
		n, ok := x.(int64)
		if !ok {
			return nil, errorf(framesync.BadInput, "read selection", "selection[%d] is %T, want an integer", i, x)
		}
		out = append(out, n)
	}
	return out, nil
}

// SetSelection replaces the selection. It is written as a new list, so of
// two concurrent selections one wins whole.
func (s *State) SetSelection(sel []int64) error {
	vals := make([]any, len(sel))
	for i, n := range sel {
		vals[i] = n
	}
	return s.setField("set selection", keySelection, vals)
}

// Step returns the current frame index.
func (s *State) Step() (int64, error) {
	v, err := s.field(keyStep)
	if err != nil || v == nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok {
		return 0, errorf(framesync.BadInput, "read step", "step is %T, want an integer", v)
	}
	return n, nil
}

// SetStep sets the current frame index.
func (s *State) SetStep(step int64) error {
	return s.setField("set step", keyStep, step)
}

// Camera returns the camera object.
func (s *State) Camera() (map[string]any, error) { return s.object(keyCamera) }

// SetCamera makes the camera object equal cam, writing only the keys that
// changed.
func (s *State) SetCamera(cam map[string]any) error {
	return s.setObject("set camera", keyCamera, cam)
}

// Settings returns the settings object.
func (s *State) Settings() (map[string]any, error) { return s.object(keySettings) }

// SetSettings makes the settings object equal settings, writing only the
// keys that changed, so concurrent edits of different settings merge.
func (s *State) SetSettings(settings map[string]any) error {
	return s.setObject("set settings", keySettings, settings)
}

// Bookmarks returns the bookmarks: frame ID to label.
func (s *State) Bookmarks() (map[string]string, error) {
	v, err := s.field(keyBookmarks)
	if err != nil || v == nil {
		return map[string]string{}, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errorf(framesync.BadInput, "read bookmarks", "bookmarks is %T, want a map", v)
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		label, ok := x.(string)
		if !ok {
			return nil, errorf(framesync.BadInput, "read bookmarks", "bookmark %q is %T, want a string", k, x)
		}
		out[k] = label
	}
	return out, nil
}

// SetBookmark sets the label of a frame's bookmark.
func (s *State) SetBookmark(frameID, label string) error {
	const op = "set bookmark"
	if !utf8.ValidString(frameID) || !utf8.ValidString(label) || frameID == "" {
		return errorf(framesync.BadInput, op, "frame ID must be non-empty and both must be valid UTF-8")
	}
	return s.edit(op, "state: set bookmark "+frameID, func(am *automerge.Doc) error {
		m, err := s.mapAt(am, op, keyBookmarks)
		if err != nil {
			return err
		}
		if v, err := m.Get(frameID); err == nil && v.Kind() == automerge.KindStr && v.Str() == label {
			return errNoChange
		}
		return m.Set(frameID, label)
	})
}

// DeleteBookmark removes a frame's bookmark; removing a missing one does
// nothing.
func (s *State) DeleteBookmark(frameID string) error {
	const op = "delete bookmark"
	return s.edit(op, "state: delete bookmark "+frameID, func(am *automerge.Doc) error {
		m, err := s.mapAt(am, op, keyBookmarks)
		if err != nil {
			return err
		}
		if v, err := m.Get(frameID); err != nil || v.IsVoid() {
			return errNoChange
		}
		return m.Delete(frameID)
	})
}

// Collections returns the names of the collections that hold items, sorted.
func (s *State) Collections() ([]string, error) {
	s.doc.mu.Lock()
	defer s.doc.mu.Unlock()
	keys, err := collectionKeys(s.doc.am)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, k := range keys {
		name, _, _ := strings.Cut(k, "/")
		if len(names) == 0 || names[len(names)-1] != name {
			names = append(names, name)
		}
	}
	return names, nil
}

// Items returns the items of a collection, sorted by ID.
func (s *State) Items(collection string) ([]Item, error) {
	const op = "read items"
	if err := checkCollection(op, collection); err != nil {
		return nil, err
	}
	s.doc.mu.Lock()
	defer s.doc.mu.Unlock()
	items, err := readItems(s.doc.am, collection)
	if err != nil {
		return nil, err
	}
	out := make([]Item, 0, len(items))
	for _, id := range sortedKeys(items) {
		out = append(out, items[id])
	}
	return out, nil
}

// Item returns one item. A missing item is a framesync.NotFound error.
func (s *State) Item(collection, id string) (Item, error) {
	const op = "read item"
	if err := checkCollection(op, collection); err != nil {
		return nil, err
	}
	s.doc.mu.Lock()
	defer s.doc.mu.Unlock()
	v, err := s.doc.am.Path(keyCollections, collection+"/"+id).Get()
	if err != nil {
		return nil, internal(op, err)
	}
	if v.IsVoid() {
		return nil, &framesync.Error{Kind: framesync.NotFound, Op: op, Field: collection + "/" + id, Msg: "no such item"}
	}
	return itemOf(op, v)
}

// Update applies a batch change to a collection as one change and returns
// what changed, sorted by ID (an insert equal to the existing item changes
// nothing and is not reported). Items are updated in place, key by key, so
// that concurrent edits of different keys of one item merge. Invalid items
// (not JSON, or without a non-empty string "id", or two with the same ID)
// are a framesync.BadInput error and nothing is written.
func (s *State) Update(collection string, u Update) ([]ItemDiff, error) {
	const op = "update collection"
	if err := checkCollection(op, collection); err != nil {
		return nil, err
	}
	inserts := make(map[string]Item, len(u.Insert))
	for i, it := range u.Insert {
		n, err := normalizeJSON(map[string]any(it))
		if err != nil {
			return nil, &framesync.Error{Kind: framesync.BadInput, Op: op, Field: fmt.Sprintf("insert[%d]", i), Err: err}
		}
		item := Item(n.(map[string]any))
		id := item.ID()
		if id == "" {
			return nil, &framesync.Error{Kind: framesync.BadInput, Op: op, Field: fmt.Sprintf("insert[%d]", i), Msg: `item has no non-empty string "id"`}
		}
		if _, dup := inserts[id]; dup {
			return nil, &framesync.Error{Kind: framesync.BadInput, Op: op, Field: fmt.Sprintf("insert[%d]", i), Msg: fmt.Sprintf("item %q inserted twice", id)}
		}
		inserts[id] = item
	}
	var diffs []ItemDiff
	msg := fmt.Sprintf("state: update %s (reset %v, remove %d, insert %d)", collection, u.Reset, len(u.Remove), len(u.Insert))
	err := s.edit(op, msg, func(am *automerge.Doc) error {
		diffs = nil
		coll, err := s.mapAt(am, op, keyCollections)
		if err != nil {
			return err
		}
		cur, err := readItems(am, collection)
		if err != nil {
			return err
		}
		remove := make(map[string]bool)
		if u.Reset {
			for id := range cur {
				remove[id] = true
			}
		}
		for _, id := range u.Remove {
			if _, ok := cur[id]; ok {
				remove[id] = true
			}
		}
		for _, id := range sortedKeys(remove) {
			if _, reinserted := inserts[id]; reinserted {
				continue
			}
			if err := coll.Delete(collection + "/" + id); err != nil {
				return internal(op, err)
			}
			diffs = append(diffs, ItemDiff{Collection: collection, ID: id, Old: cur[id]})
		}
		for _, id := range sortedKeys(inserts) {
			item := inserts[id]
			old, had := cur[id]
			key := collection + "/" + id
			switch {
			case had && reflect.DeepEqual(old, item):
				continue
			case had:
				v, err := coll.Get(key)
				if err != nil || v.Kind() != automerge.KindMap {
					return internal(op, fmt.Errorf("item %s is not a map", key))
				}
				if err := writeMapInPlace(v.Map(), old, item); err != nil {
					return internal(op, err)
				}
			default:
				if err := putJSON(coll, key, map[string]any(item)); err != nil {
					return internal(op, err)
				}
			}
			diffs = append(diffs, ItemDiff{Collection: collection, ID: id, Old: old, New: item})
		}
		if len(diffs) == 0 {
			return errNoChange
		}
		slices.SortFunc(diffs, func(a, b ItemDiff) int { return strings.Compare(a.ID, b.ID) })
		return nil
	})
	if err != nil {
		return nil, err
	}
	return diffs, nil
}

// Diff compares the state document at heads from with the document at heads
// to (for example Heads()). Empty from is the empty document. Heads the
// document does not contain are a framesync.NotFound error.
func (s *State) Diff(from, to Heads) (*StateDiff, error) {
	const op = "diff state"
	d := s.doc
	d.mu.Lock()
	defer d.mu.Unlock()
	var sides [2]map[string]any
	for i, h := range []Heads{from, to} {
		if s.last != nil && h.Equal(s.lastHeads) {
			sides[i] = s.last
			continue
		}
		am, err := d.viewLocked(op, h)
		if err != nil {
			return nil, err
		}
		v, err := readJSON(am.Root())
		if err != nil {
			return nil, internal(op, err)
		}
		sides[i] = v.(map[string]any)
	}
	// A copy: the diff hands out parts of sides[1] to callers.
	s.lastHeads, s.last = to.sorted(), cloneJSON(sides[1]).(map[string]any)
	old, cur := sides[0], sides[1]
	res := &StateDiff{From: from.sorted(), To: to.sorted()}

	// Collections: keys "<collection>/<id>".
	oc, _ := old[keyCollections].(map[string]any)
	nc, _ := cur[keyCollections].(map[string]any)
	for _, k := range unionKeys(oc, nc) {
		ov, nv := oc[k], nc[k]
		if reflect.DeepEqual(ov, nv) {
			continue
		}
		name, id, _ := strings.Cut(k, "/")
		oi, _ := ov.(map[string]any)
		ni, _ := nv.(map[string]any)
		res.Items = append(res.Items, ItemDiff{Collection: name, ID: id, Old: Item(oi), New: Item(ni)})
	}
	// Bookmarks.
	ob, _ := old[keyBookmarks].(map[string]any)
	nb, _ := cur[keyBookmarks].(map[string]any)
	for _, k := range unionKeys(ob, nb) {
		ov, nv := ob[k], nb[k]
		if reflect.DeepEqual(ov, nv) {
			continue
		}
		res.Bookmarks = append(res.Bookmarks, BookmarkDiff{FrameID: k, Old: labelOf(ov), New: labelOf(nv)})
	}
	// Every other field.
	for _, k := range unionKeys(old, cur) {
		if k == keyLayout || k == keyCollections || k == keyBookmarks {
			continue
		}
		if !reflect.DeepEqual(old[k], cur[k]) {
			res.Fields = append(res.Fields, FieldDiff{Field: k, Old: old[k], New: cur[k]})
		}
	}
	return res, nil
}

func labelOf(v any) *string {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return &x
	}
	s := fmt.Sprint(v)
	return &s
}

func unionKeys(a, b map[string]any) []string {
	keys := sortedKeys(a)
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// edit commits one change of the state document.
func (s *State) edit(op, msg string, fn func(am *automerge.Doc) error) error {
	_, err := s.doc.commit(op, msg, func(am *automerge.Doc, _ time.Time) error { return fn(am) }, nil)
	return err
}

// field reads a top-level field as a JSON value (nil if absent).
func (s *State) field(key string) (any, error) {
	s.doc.mu.Lock()
	defer s.doc.mu.Unlock()
	v, err := s.doc.am.RootMap().Get(key)
	if err != nil {
		return nil, internal("read "+key, err)
	}
	x, err := readJSON(v)
	if err != nil {
		return nil, internal("read "+key, err)
	}
	return x, nil
}

// setField writes a top-level field with a JSON value, replacing it whole.
func (s *State) setField(op, key string, v any) error {
	n, err := normalizeJSON(v)
	if err != nil {
		return &framesync.Error{Kind: framesync.BadInput, Op: op, Err: err}
	}
	return s.edit(op, "state: "+op, func(am *automerge.Doc) error {
		cur, err := am.RootMap().Get(key)
		if err != nil {
			return internal(op, err)
		}
		if old, err := readJSON(cur); err == nil && !cur.IsVoid() && reflect.DeepEqual(old, n) {
			return errNoChange
		}
		if err := putJSON(am.RootMap(), key, n); err != nil {
			return internal(op, err)
		}
		return nil
	})
}

// object reads a top-level JSON object field.
func (s *State) object(key string) (map[string]any, error) {
	v, err := s.field(key)
	if err != nil || v == nil {
		return map[string]any{}, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errorf(framesync.BadInput, "read "+key, "%s is %T, want an object", key, v)
	}
	return m, nil
}

// setObject updates a top-level JSON object field in place.
func (s *State) setObject(op, key string, obj map[string]any) error {
	n, err := normalizeJSON(obj)
	if err != nil {
		return &framesync.Error{Kind: framesync.BadInput, Op: op, Err: err}
	}
	nm, _ := n.(map[string]any)
	if nm == nil {
		nm = map[string]any{}
	}
	return s.edit(op, "state: "+op, func(am *automerge.Doc) error {
		m, err := s.mapAt(am, op, key)
		if err != nil {
			return err
		}
		v, err := am.RootMap().Get(key)
		if err != nil {
			return internal(op, err)
		}
		cur, err := readJSON(v)
		if err != nil {
			return internal(op, err)
		}
		om, _ := cur.(map[string]any)
		if reflect.DeepEqual(om, nm) {
			return errNoChange
		}
		if err := writeMapInPlace(m, om, nm); err != nil {
			return internal(op, err)
		}
		return nil
	})
}

// mapAt returns the map at a root key, creating it if it is missing.
func (s *State) mapAt(am *automerge.Doc, op, key string) (*automerge.Map, error) {
	root := am.RootMap()
	v, err := root.Get(key)
	if err != nil {
		return nil, internal(op, err)
	}
	switch v.Kind() {
	case automerge.KindMap:
		return v.Map(), nil
	case automerge.KindVoid:
		m := automerge.NewMap()
		if err := root.Set(key, m); err != nil {
			return nil, internal(op, err)
		}
		return m, nil
	}
	return nil, errorf(framesync.BadInput, op, "%s is %v, want a map", key, v.Kind())
}

// collectionKeys returns the sorted keys of the collections map.
func collectionKeys(am *automerge.Doc) ([]string, error) {
	v, err := am.RootMap().Get(keyCollections)
	if err != nil {
		return nil, internal("read collections", err)
	}
	if v.Kind() != automerge.KindMap {
		return nil, nil
	}
	keys, err := v.Map().Keys()
	if err != nil {
		return nil, internal("read collections", err)
	}
	slices.Sort(keys)
	return keys, nil
}

// readItems returns the items of one collection by ID.
func readItems(am *automerge.Doc, collection string) (map[string]Item, error) {
	const op = "read items"
	v, err := am.RootMap().Get(keyCollections)
	if err != nil {
		return nil, internal(op, err)
	}
	out := make(map[string]Item)
	if v.Kind() != automerge.KindMap {
		return out, nil
	}
	vals, err := v.Map().Values()
	if err != nil {
		return nil, internal(op, err)
	}
	prefix := collection + "/"
	for k, x := range vals {
		id, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if out[id], err = itemOf(op, x); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// itemOf converts an item value of the document.
func itemOf(op string, v *automerge.Value) (Item, error) {
	x, err := readJSON(v)
	if err != nil {
		return nil, internal(op, err)
	}
	m, ok := x.(map[string]any)
	if !ok {
		return nil, errorf(framesync.BadInput, op, "item is %T, want an object", x)
	}
	return Item(m), nil
}

// checkCollection validates a collection name.
func checkCollection(op, name string) error {
	if name == "" || strings.Contains(name, "/") || !utf8.ValidString(name) {
		return errorf(framesync.BadInput, op, "collection name %q: want non-empty UTF-8 without '/'", name)
	}
	return nil
}

// cloneJSON returns a deep copy of a value read by readJSON.
func cloneJSON(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = cloneJSON(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = cloneJSON(x)
		}
		return out
	case []byte:
		return slices.Clone(v)
	default:
		return v
	}
}
