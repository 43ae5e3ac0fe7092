package peer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"framesync"
	"framesync/crdt"
	"framesync/relay/wire"
)

// View is a read-only look at a room of a replica, with no network: the
// last synced documents and the frames whose blobs are cached.
type View struct {
	data *roomData
	fr   *frameReader
}

// View opens room name of the replica for reading.
func (rp *Replica) View(name string) (*View, error) {
	if err := wire.CheckRoomName(name); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(rp.dir, "rooms", name, "trajectory.am")); err != nil {
		return nil, &framesync.Error{Kind: framesync.NotFound, Op: "replica", Msg: fmt.Sprintf("room %q is not in the local replica %s (join it once while connected)", name, rp.dir)}
	}
	data, err := rp.openRoom(name, "")
	if err != nil {
		return nil, err
	}
	return &View{data: data, fr: &frameReader{blobs: rp.blobs, manifests: map[framesync.Hash]framesync.Manifest{}}}, nil
}

// Meta returns what the replica knows about the room.
func (v *View) Meta() RoomMeta { return v.data.Meta() }

// Trajectory returns the room's trajectory document.
func (v *View) Trajectory() *crdt.Trajectory { return v.data.traj }

// State returns the room's state document (changes to it are not saved).
func (v *View) State() *crdt.State { return v.data.state }

// Len returns the number of frames.
func (v *View) Len() int {
	n, _ := v.data.traj.Len()
	return n
}

// Entry returns the frame at index i (negative from the end).
func (v *View) Entry(i int) (crdt.Entry, error) { return entryAt(v.data.traj, i) }

// Frame returns frame i with the fields sel (all when none), from the blob
// cache; a field that was never fetched is a framesync.NotFound error.
func (v *View) Frame(ctx context.Context, i int, sel ...string) (*framesync.Frame, error) {
	e, err := v.Entry(i)
	if err != nil {
		return nil, err
	}
	return v.fr.frame(ctx, e, sel)
}

// Range calls fn for frames start <= i < stop, as Room.Range but from the
// cache only.
func (v *View) Range(ctx context.Context, start, stop int, sel []string, fn func(i int, e crdt.Entry, f *framesync.Frame) error) error {
	return rangeFrames(ctx, v.data.traj, v.fr, start, stop, sel, nil, fn)
}
