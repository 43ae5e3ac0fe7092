package relay

import (
	"sort"

	"framesync/crdt"
	"framesync/relay/wire"
)

// changes computes the change feed since generation since.
func (r *room) changes(since int64) (*wire.Changes, error) {
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
	out := &wire.Changes{Room: r.name, Generation: gen, Since: since, Length: length}
	if !found {
		out.Full = true
		out.Frames = make([]wire.FrameRef, len(entries))
		for i, e := range entries {
			out.Frames[i] = wire.FrameRef{ID: e.ID, Index: i, Version: e.Version, Hash: e.Hash.String()}
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

func ref(e *crdt.Entry, index int) wire.FrameRef {
	return wire.FrameRef{ID: e.ID, Index: index, Version: e.Version, Hash: e.Hash.String()}
}
