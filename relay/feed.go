package relay

import (
	"sort"

	"framesync/crdt"
)

// Changes answers GET /api/rooms/{room}/changes?since=G: what happened to
// the room's frames after generation G. When the hub cannot tell (G is
// older than what it remembers, newer than the room, or absent), Full is
// set and Frames lists every frame; the client replaces its listing.
type Changes struct {
	Room       string     `json:"room"`
	Generation int64      `json:"generation"`
	Since      int64      `json:"since"`
	Full       bool       `json:"full"`
	Frames     []FrameRef `json:"frames,omitempty"`  // Full: every frame, in order
	Added      []FrameRef `json:"added,omitempty"`   // frames new since G, with their index now
	Changed    []FrameRef `json:"changed,omitempty"` // frames with a new version or index
	Removed    []string   `json:"removed,omitempty"` // IDs of frames deleted since G
	Length     int        `json:"length"`            // frame count now
}

// changes computes the change feed since generation since.
func (r *room) changes(since int64) (*Changes, error) {
	r.mu.Lock()
	gen := r.feed[len(r.feed)-1].gen
	heads := r.feed[len(r.feed)-1].heads
	var from crdt.Heads
	found := false
	if since >= r.feedFloor && since <= gen {
		i := sort.Search(len(r.feed), func(i int) bool { return r.feed[i].gen >= since })
		if i < len(r.feed) && r.feed[i].gen == since {
			from, found = r.feed[i].heads, true
		}
	}
	length, _ := r.traj.Len()
	var entries []crdt.Entry
	var err error
	if !found {
		entries, err = r.traj.Entries()
	}
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out := &Changes{Room: r.name, Generation: gen, Since: since, Length: length}
	if !found {
		out.Full = true
		out.Frames = make([]FrameRef, len(entries))
		for i, e := range entries {
			out.Frames[i] = FrameRef{ID: e.ID, Index: i, Version: e.Version, Hash: e.Hash.String()}
		}
		return out, nil
	}
	d, err := r.traj.Diff(from, heads)
	if err != nil {
		return nil, err
	}
	for _, f := range d.Added {
		out.Added = append(out.Added, ref(f.New, f.NewIndex))
	}
	for _, f := range d.Removed {
		out.Removed = append(out.Removed, f.ID)
	}
	changed := map[string]bool{}
	for _, f := range d.Changed {
		changed[f.ID] = true
		out.Changed = append(out.Changed, ref(f.New, f.NewIndex))
	}
	for _, f := range d.Moved {
		if !changed[f.ID] {
			out.Changed = append(out.Changed, ref(f.New, f.NewIndex))
		}
	}
	sort.Slice(out.Changed, func(i, j int) bool { return out.Changed[i].Index < out.Changed[j].Index })
	return out, nil
}

func ref(e *crdt.Entry, index int) FrameRef {
	return FrameRef{ID: e.ID, Index: index, Version: e.Version, Hash: e.Hash.String()}
}
