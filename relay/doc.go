// Package relay is the framesync hub: rooms with their Automerge documents,
// the HTTP data channel, the WebSocket control channel, locks with fencing
// tokens, commit authority and the presenter token.
//
// A Server is built with New from plain Options (a data directory and a
// blob store at least) and serves through Handler; it never listens on its
// own. cmd/framesync wires it to a listener.
//
// Data channel (HTTP, docs/protocol.md has every route): rooms under
// /api/rooms, frames by index or ID with field selection (?data=), ranges,
// manifests and histories, commits, ?since= change feeds, document
// snapshots, and content-addressed blobs under /api/blobs. Errors are JSON
// {code, message, ...details} with the status of the error kind.
//
// Control channel (WebSocket at /api/ws): one connection per client,
// msgpack messages (Msg), any number of rooms. The hub syncs both room
// documents with each member but refuses every change a client makes to
// the trajectory document: frames change only through commits, which the
// hub checks atomically against the lock's fencing token, the base version
// and the presence of every blob.
//
// Import jobs (import.go): POST /api/rooms/{room}/import takes an xyz or
// extxyz file, spools it to <data>/imports and imports it in the
// background: the whole file is parsed and its blobs stored first, so a
// malformed file changes nothing, then the frames are committed in batches
// under the trajectory lock like any client's. Members follow the job
// through "job" messages; jobs are kept in memory only.
//
// Each connection has one writer goroutine fed by a bounded queue; a
// client that does not keep up is dropped (close code wire.CloseTooSlow), never
// waited for.
//
// Persistence: each room is a directory under <data>/rooms holding its
// documents as a snapshot plus an fsynced log of changes (see docFile);
// fencing token high-water marks live under <data>/leases. A restart loses
// no committed frame, version or state.
package relay
