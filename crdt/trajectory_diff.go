package crdt

import (
	"slices"
	"sort"
)

// FrameDiff is one frame that differs between two versions of a trajectory.
// Old and New are nil where the frame is absent; OldIndex and NewIndex are
// then -1.
type FrameDiff struct {
	ID       string
	Old      *Entry
	New      *Entry
	OldIndex int
	NewIndex int
}

// TrajectoryDiff is what changed in a trajectory document between two
// versions, From and To.
type TrajectoryDiff struct {
	From, To                     Heads
	FromGeneration, ToGeneration int64

	Added   []FrameDiff // frames in To but not in From, by NewIndex
	Removed []FrameDiff // frames in From but not in To, by OldIndex
	Changed []FrameDiff // frames in both whose version or hash differ, by NewIndex
	// Moved lists frames in both whose order relative to the other frames
	// changed (a smallest such set), by NewIndex. Frames that only shift
	// because others were added or removed are not moved.
	Moved []FrameDiff
}

// Empty reports whether nothing changed.
func (d *TrajectoryDiff) Empty() bool {
	return len(d.Added)+len(d.Removed)+len(d.Changed)+len(d.Moved) == 0 && d.FromGeneration == d.ToGeneration
}

// Diff compares the trajectory at heads from with the trajectory at heads to
// (for example Heads()). Empty from is the empty document. Heads the
// document does not contain are a framesync.NotFound error.
func (t *Trajectory) Diff(from, to Heads) (*TrajectoryDiff, error) {
	const op = "diff trajectory"
	d := t.doc
	d.mu.Lock()
	defer d.mu.Unlock()
	res := &TrajectoryDiff{From: from.sorted(), To: to.sorted()}
	var old, cur []Entry
	for _, side := range []struct {
		heads   Heads
		entries *[]Entry
		gen     *int64
	}{{from, &old, &res.FromGeneration}, {to, &cur, &res.ToGeneration}} {
		if l := &t.lastDiff; l.ok && side.heads.Equal(l.heads) {
			*side.entries, *side.gen = l.entries, l.gen
			continue
		}
		am, err := d.viewLocked(op, side.heads)
		if err != nil {
			return nil, err
		}
		if am == d.am {
			if err := t.loadLocked(); err != nil {
				return nil, err
			}
			*side.entries = t.cache.entries
		} else if *side.entries, err = readEntries(am); err != nil {
			return nil, err
		}
		if *side.gen, err = readGeneration(am); err != nil {
			return nil, err
		}
	}
	diffEntries(res, old, cur)
	l := &t.lastDiff
	l.heads, l.entries, l.gen, l.ok = to.sorted(), slices.Clone(cur), res.ToGeneration, true
	return res, nil
}

// diffEntries fills the frame lists of res.
func diffEntries(res *TrajectoryDiff, old, cur []Entry) {
	oldIdx := firstIndex(old)
	curIdx := firstIndex(cur)
	for i := range old {
		e := &old[i]
		if oldIdx[e.ID] != i {
			continue // duplicate entry (concurrent moves): the first counts
		}
		if _, ok := curIdx[e.ID]; !ok {
			o := *e
			res.Removed = append(res.Removed, FrameDiff{ID: e.ID, Old: &o, OldIndex: i, NewIndex: -1})
		}
	}
	// Frames present in both, in their new order, with their old index.
	var common []FrameDiff
	for j := range cur {
		e := &cur[j]
		if curIdx[e.ID] != j {
			continue
		}
		n := *e
		i, ok := oldIdx[e.ID]
		if !ok {
			res.Added = append(res.Added, FrameDiff{ID: e.ID, New: &n, OldIndex: -1, NewIndex: j})
			continue
		}
		o := old[i]
		fd := FrameDiff{ID: e.ID, Old: &o, New: &n, OldIndex: i, NewIndex: j}
		common = append(common, fd)
		if o.Version != n.Version || o.Hash != n.Hash {
			res.Changed = append(res.Changed, fd)
		}
	}
	// The frames that kept their relative order are a longest increasing
	// subsequence of old indexes; every other common frame moved.
	keep := lis(common)
	for k, fd := range common {
		if !keep[k] {
			res.Moved = append(res.Moved, fd)
		}
	}
}

// firstIndex maps each ID to the index of its first entry.
func firstIndex(es []Entry) map[string]int {
	m := make(map[string]int, len(es))
	for i := len(es) - 1; i >= 0; i-- {
		m[es[i].ID] = i
	}
	return m
}

// lis marks a longest strictly increasing subsequence of the OldIndex values
// of fds, in O(n log n).
func lis(fds []FrameDiff) []bool {
	n := len(fds)
	keep := make([]bool, n)
	tails := make([]int, 0, n) // tails[k]: position in fds ending an increasing run of length k+1
	prev := make([]int, n)
	for p, fd := range fds {
		k := sort.Search(len(tails), func(k int) bool { return fds[tails[k]].OldIndex >= fd.OldIndex })
		if k > 0 {
			prev[p] = tails[k-1]
		} else {
			prev[p] = -1
		}
		if k == len(tails) {
			tails = append(tails, p)
		} else {
			tails[k] = p
		}
	}
	if len(tails) > 0 {
		for p := tails[len(tails)-1]; p >= 0; p = prev[p] {
			keep[p] = true
		}
	}
	return keep
}
