// Package peer is the client side of framesync: a connection to a hub,
// rooms that read like lists of frames, edits under locks with fencing,
// the shared state document, the presenter token, and a local replica on
// disk that keeps working offline.
//
// # Connecting
//
// Connect opens the replica of a hub (under Options.Cache, by default the
// user cache directory) and one WebSocket control channel for every room.
// When the connection drops, the client reconnects with exponential backoff
// and full jitter, rejoins its rooms and resumes Automerge sync from the
// sessions' saved state, so only what changed travels. Operations that need
// the hub return ErrOffline meanwhile; reading and state edits keep working.
//
// # Rooms and frames
//
// Client.Join returns a *Room. Len, Entry, Frame, FrameByID and Range read
// the local replica of the trajectory document and fetch frame data over
// HTTP through the blob cache: a field whose blob is cached is never fetched
// again, so stepping through a trajectory where only positions change
// downloads only positions.
//
// Append, Extend, Insert, Set, Replace, Update, Patch, Delete, Move and
// Revert commit edits. Each uploads only the blobs the hub lacks, takes the
// lock it needs unless the caller holds it (Room.Lock, renewed in the
// background until released), commits with the lock's fencing token and the
// base version, and waits until the replica has the commit. A hub refusal is
// an *Error: errors.Is(err, framesync.Conflict) with CurrentVersion, or
// framesync.Locked with Holder and Expires. Locks are never re-taken behind
// the caller's back: a lock lost to a disconnect or an expiry is reported
// (Lock.Lost, an EventLockLost event).
//
// # State, presence and presenter
//
// Room.State is the shared state document (selection, bookmarks, step,
// camera, settings, named collections). Edit it directly; changes are sent
// when connected, kept in the replica when not, and merge on reconnect.
// Room.Subscribe delivers events: the hub's notifications, state and
// trajectory diffs ({id, old, new} for collection items), lock losses.
// SetPresence sends ephemeral presence; Present takes the presenter token.
//
// # Replica
//
// Open and Replica.View read a replica with no network at all: the last
// synced documents and every cached frame. Files are replaced atomically and
// processes sharing a replica merge their saves under a lock file.
package peer
