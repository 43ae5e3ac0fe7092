// Package wire is the hub's protocol: the control channel's messages and
// the bodies of the HTTP API, shared by the hub (package relay) and its
// clients (package peer). docs/protocol.md describes every message and
// route.
package wire

import (
	"fmt"
	"regexp"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"framesync"
)

// CommitRequest is the body of POST /api/rooms/{room}/commit, in msgpack or
// JSON. docs/protocol.md describes which fields each operation uses.
type CommitRequest struct {
	Op     string `json:"op" msgpack:"op"`
	Token  int64  `json:"token" msgpack:"token"`                       // fencing token of the lock
	Target string `json:"target,omitempty" msgpack:"target,omitempty"` // lock target; empty = the operation's default
	// Frame names the frame to change: its ID, or its index as a decimal
	// number (negative counts from the end).
	Frame string `json:"frame,omitempty" msgpack:"frame,omitempty"`
	Index *int64 `json:"index,omitempty" msgpack:"index,omitempty"` // insert position or move destination
	// Base is the version of Frame the change was made against
	// (replace, patch, revert). For structural operations it is optional
	// and, when given, must equal the room's generation.
	Base *int64 `json:"base,omitempty" msgpack:"base,omitempty"`
	// Manifests name the new frames by the hash of their manifests, whose
	// blobs are already uploaded. Alternatively Frames carries the frames
	// themselves, msgpack-encoded (msgpack bodies only).
	Manifests []string             `json:"manifests,omitempty" msgpack:"manifests,omitempty"`
	Frames    []msgpack.RawMessage `json:"-" msgpack:"frames,omitempty"`
	// Fields (patch) maps field names to the hashes of their new blobs.
	Fields map[string]string `json:"fields,omitempty" msgpack:"fields,omitempty"`
	// Remove (patch) lists fields to remove.
	Remove []string `json:"remove,omitempty" msgpack:"remove,omitempty"`
	// Version (revert) is the version whose data becomes the new version.
	Version int64 `json:"version,omitempty" msgpack:"version,omitempty"`
	// Author is recorded in the frame history; empty = the lock holder.
	Author string `json:"author,omitempty" msgpack:"author,omitempty"`
}

// FrameRef is one frame in a commit result or change feed.
type FrameRef struct {
	ID      string `json:"id" msgpack:"id"`
	Index   int    `json:"index" msgpack:"index"`
	Version int64  `json:"version" msgpack:"version"`
	Hash    string `json:"hash" msgpack:"hash"`
}

// CommitResult answers a successful commit.
type CommitResult struct {
	Generation int64      `json:"generation" msgpack:"generation"`
	Frames     []FrameRef `json:"frames" msgpack:"frames"`
	Length     int        `json:"length" msgpack:"length"`
}

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

// CreateRoomRequest is the body of POST /api/rooms.
type CreateRoomRequest struct {
	Name string `json:"name" msgpack:"name"`
	// From names a room whose trajectory and state the new room starts
	// with; its frames share their blobs.
	From string `json:"from,omitempty" msgpack:"from,omitempty"`
}

// HistoryEntry is one version in GET .../history.
type HistoryEntry struct {
	Version int64     `json:"version"`
	Hash    string    `json:"hash"`
	Time    time.Time `json:"time"`
	Author  string    `json:"author"`
}

// BlobPut answers PUT /api/blobs/{hash}.
type BlobPut struct {
	Hash    string `json:"hash"`
	Size    int64  `json:"size"`
	Created bool   `json:"created"` // false when the hub had it already
}

// BlobsPut answers POST /api/blobs: one entry per blob of the request, in
// order.
type BlobsPut struct {
	Blobs []BlobRef `json:"blobs"`
}

// BlobRef names a stored blob.
type BlobRef struct {
	Hash string `json:"hash"`
	Size int64  `json:"size"`
}

// MissingRequest is the body of POST /api/blobs/missing.
type MissingRequest struct {
	Hashes []string `json:"hashes" msgpack:"hashes"`
}

// RoomInfo answers GET /api/rooms/{room} and is sent in "joined".
type RoomInfo struct {
	Name       string       `json:"name" msgpack:"name"`
	Created    time.Time    `json:"created" msgpack:"created"`
	Frames     int          `json:"frames" msgpack:"frames"`
	Generation int64        `json:"generation" msgpack:"generation"`
	Members    []MemberInfo `json:"members" msgpack:"members"`
	Locks      []LockInfo   `json:"locks" msgpack:"locks"`
	Presenter  *LockInfo    `json:"presenter,omitempty" msgpack:"presenter,omitempty"`
	Step       *int64       `json:"step,omitempty" msgpack:"step,omitempty"`
	// Role is the asking user's role in the room (reader, writer or admin;
	// admin for everyone when the hub runs without access control).
	Role string `json:"role,omitempty" msgpack:"role,omitempty"`
}

// LoginRequest is the body of POST /api/auth/login, /api/auth/register
// and /api/users (where Admin makes a hub administrator).
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Admin    bool   `json:"admin,omitempty"`
}

// LoginResponse carries a token: send it as "Authorization: Bearer
// <token>" (or ?token= on the WebSocket URL).
type LoginResponse struct {
	Token   string    `json:"token"`
	User    string    `json:"user"`
	Expires time.Time `json:"expires"`
	Admin   bool      `json:"admin,omitempty"`
}

// RoomACL is who may use a room (GET/PUT /api/rooms/{room}/acl). Roles
// are "reader", "writer" and "admin"; each includes the ones before.
type RoomACL struct {
	// Public lets anyone, logged in or not, read the room.
	Public bool `json:"public,omitempty" msgpack:"public,omitempty"`
	// DefaultRole is the role of every logged-in user not listed in Roles
	// ("" = none).
	DefaultRole string `json:"default_role,omitempty" msgpack:"default_role,omitempty"`
	// Roles maps user names to roles.
	Roles map[string]string `json:"roles,omitempty" msgpack:"roles,omitempty"`
}

// MemberInfo is one member of a room.
type MemberInfo struct {
	Client string `json:"client" msgpack:"client"`
	Name   string `json:"name,omitempty" msgpack:"name,omitempty"`
}

// LockInfo is one live lease of a room.
type LockInfo struct {
	Target  string    `json:"target" msgpack:"target"`
	Holder  string    `json:"holder" msgpack:"holder"`
	Expires time.Time `json:"expires" msgpack:"expires"`
}

// RoomSummary is one room in the rooms listing.
type RoomSummary struct {
	Name       string `json:"name" msgpack:"name"`
	Frames     int    `json:"frames" msgpack:"frames"`
	Generation int64  `json:"generation" msgpack:"generation"`
	Members    int    `json:"members" msgpack:"members"`
	Changed    int64  `json:"changed" msgpack:"changed"` // hub generation of the room's last change
}

// RoomsListing answers GET /api/rooms.
type RoomsListing struct {
	Hub        string        `json:"hub"`
	Generation int64         `json:"generation"` // hub-wide generation
	Full       bool          `json:"full"`       // Rooms lists every room; otherwise only those changed since
	Rooms      []RoomSummary `json:"rooms"`
	Removed    []string      `json:"removed,omitempty"` // rooms deleted since (only when not Full)
}

// Job is a background import job of a room: POST
// /api/rooms/{room}/import answers one, GET /api/rooms/{room}/jobs lists
// them, and "job" messages carry one as their payload (encoded with these
// msgpack tags, so msgpack-decoding the payload into a Job gives it back).
// Times are RFC 3339 in JSON and msgpack timestamps on the control channel.
type Job struct {
	ID   string `json:"id" msgpack:"id"`
	Room string `json:"room" msgpack:"room"`
	Name string `json:"name" msgpack:"name"` // the uploaded file's name (?name=)
	User string `json:"user" msgpack:"user"` // who uploaded it; empty in local mode
	// State is "queued" (waiting for an import slot or for the trajectory
	// lock), "running", "done" or "failed".
	State string `json:"state" msgpack:"state"`
	// Phase is "parsing" (reading, checking and storing every frame) or
	// "committing" (appending the frames to the room in batches).
	Phase   string `json:"phase,omitempty" msgpack:"phase,omitempty"`
	Message string `json:"message,omitempty" msgpack:"message,omitempty"` // what a queued job waits for
	// Bytes of the file parsed so far, of TotalBytes.
	Bytes      int64     `json:"bytes" msgpack:"bytes"`
	TotalBytes int64     `json:"total_bytes" msgpack:"total_bytes"`
	Frames     int       `json:"frames" msgpack:"frames"`                   // frames parsed so far
	Committed  int       `json:"committed" msgpack:"committed"`             // frames appended to the room so far
	Error      string    `json:"error,omitempty" msgpack:"error,omitempty"` // why a failed job failed
	Created    time.Time `json:"created" msgpack:"created"`
	Started    time.Time `json:"started,omitzero" msgpack:"started,omitempty"`
	Finished   time.Time `json:"finished,omitzero" msgpack:"finished,omitempty"`
}

// Msg is one control channel message. Only the fields its type uses are
// set; the rest are omitted on the wire.
//
// A flat struct rather than one Go type per message: every client (Go,
// browser, Python) decodes the same map, and the decoding code stays one
// line. The table of message types above says which fields each uses.
type Msg struct {
	T       string         `msgpack:"t"`
	ID      uint64         `msgpack:"id,omitempty"`
	Room    string         `msgpack:"room,omitempty"`
	Client  string         `msgpack:"client,omitempty"`
	Name    string         `msgpack:"name,omitempty"`
	Hub     string         `msgpack:"hub,omitempty"`
	Hubs    []string       `msgpack:"hubs,omitempty"` // welcome: every hub ID of the deployment (trajectory writers)
	Version int64          `msgpack:"version,omitempty"`
	Doc     string         `msgpack:"doc,omitempty"`
	Data    []byte         `msgpack:"data,omitempty"`
	Target  string         `msgpack:"target,omitempty"`
	Token   int64          `msgpack:"token,omitempty"`
	TTLms   int64          `msgpack:"ttl_ms,omitempty"`
	Holder  string         `msgpack:"holder,omitempty"`
	Expires int64          `msgpack:"expires,omitempty"` // unix milliseconds
	State   string         `msgpack:"state,omitempty"`
	Frame   string         `msgpack:"frame,omitempty"` // frame ID
	Index   *int64         `msgpack:"index,omitempty"`
	Step    *int64         `msgpack:"step,omitempty"`
	Hash    string         `msgpack:"hash,omitempty"`
	Gen     int64          `msgpack:"generation,omitempty"`
	Frames  *int64         `msgpack:"frames,omitempty"` // frame count
	Code    string         `msgpack:"code,omitempty"`
	Message string         `msgpack:"message,omitempty"`
	Info    *RoomInfo      `msgpack:"info,omitempty"`
	Payload map[string]any `msgpack:"payload,omitempty"` // presence data, presenter camera, error details
	Sent    int64          `msgpack:"sent,omitempty"`    // unix nanoseconds, set by a sender that measures latency
	Peer    string         `msgpack:"peer,omitempty"`    // a libp2p peer ID (welcome: the hub's; p2p: the client's)
	Addrs   []string       `msgpack:"addrs,omitempty"`   // libp2p multiaddrs (welcome: the hub's)
	Sig     []byte         `msgpack:"sig,omitempty"`     // p2p: signature proving the client holds Peer's key
}

// ProtocolVersion is the control channel protocol version sent in welcome.
const ProtocolVersion = 1

// Message types of the control channel. Every message is one WebSocket
// binary message holding one msgpack map, decoded into Msg; "t" names the
// type. docs/protocol.md describes each message, its fields and who may send
// it. Requests carry an "id" chosen by the client; the hub answers each
// request with a reply carrying the same id: the message named below, or
// "error". New types are only ever added.
const (
	// client → hub
	MsgHello     = "hello"     // client, name → welcome
	MsgJoin      = "join"      // room → joined
	MsgLeave     = "leave"     // room → ok
	MsgSync      = "sync"      // room, doc, data (no reply; also hub → client)
	MsgLock      = "lock"      // room, target, ttl_ms → granted
	MsgRenew     = "renew"     // room, target, token, ttl_ms → granted
	MsgUnlock    = "unlock"    // room, target, token → ok
	MsgPresent   = "present"   // room → granted (target "presenter"); also renews
	MsgUnpresent = "unpresent" // room → ok
	MsgFrame     = "frame"     // room, step, frame (presenter only; also hub → client)
	MsgPresence  = "presence"  // room, data (ephemeral; also hub → client)
	MsgP2P       = "p2p"       // peer, sig → ok: binds the client's libp2p peer to this connection

	// hub → client
	MsgWelcome      = "welcome"       // hub, client, version, hubs (several hubs)
	MsgJoined       = "joined"        // room, info
	MsgOK           = "ok"            // id
	MsgError        = "error"         // id, code, message, details
	MsgGranted      = "granted"       // room, target, token, expires
	MsgFrameUpdated = "frame_updated" // room, frame, index, version, hash, generation
	MsgGeneration   = "generation"    // room, generation, frames (count): after every commit
	MsgMember       = "member"        // room, client, name, state (joined|left)
	MsgLockState    = "lock_state"    // room, target, holder, expires, state (acquired|renewed|released|expired)
	MsgPresenter    = "presenter"     // room, holder, expires, state
	MsgRoomDeleted  = "room_deleted"  // room
	MsgRole         = "role"          // room, state (the member's new role, after the room's access list changed)
	MsgJob          = "job"           // room, payload (a Job): an import job of the room changed
)

// Document names used in sync messages and snapshot routes.
const (
	DocTrajectory = "trajectory"
	DocState      = "state"
)

// Commit operations.
const (
	OpAppend  = "append"  // add frames at the end (lock: trajectory)
	OpExtend  = "extend"  // same as append, for many frames
	OpInsert  = "insert"  // add one frame at Index (lock: trajectory)
	OpReplace = "replace" // new version of Frame (lock: frame:<id> or trajectory)
	OpPatch   = "patch"   // new version of Frame with some fields changed (lock as replace)
	OpRevert  = "revert"  // new version of Frame pointing at an earlier version's data (lock as replace)
	OpDelete  = "delete"  // remove Frame (lock: trajectory)
	OpMove    = "move"    // move Frame to Index (lock: trajectory)
)

// Content types of the data channel.
const (
	// ContentBlobs is the body of POST /api/blobs: blobs one after another,
	// each a 4-byte big-endian length followed by that many bytes.
	ContentBlobs   = "application/vnd.framesync.blobs"
	ContentMsgpack = "application/msgpack"
	ContentJSON    = "application/json"
	ContentAM      = "application/octet-stream" // Automerge document bytes
)

// Close codes the hub uses besides the standard ones.
const (
	CloseTooSlow  = 4001 // the client did not read fast enough: its send queue overflowed
	CloseBadHello = 4002 // the first message was not a valid hello
)

// P2PProof is what a client signs with its libp2p key to bind its peer ID
// to a control connection: the hub's ID and the nonce of the welcome.
func P2PProof(hubID string, nonce []byte) []byte {
	return append([]byte("framesync-p2p-bind:"+hubID+":"), nonce...)
}

// libp2p protocol IDs of the hub and of peers.
const (
	ProtocolDirectory = "/framesync/dir/1.0.0"  // peer → hub: the members of a room
	ProtocolSync      = "/framesync/sync/1.0.0" // peer ↔ peer: Automerge sync of a room's documents
	ProtocolBlob      = "/framesync/blob/1.0.0" // peer → peer: a blob by hash
)

// DirRequest asks the hub's directory for the members of Room.
type DirRequest struct {
	Room string `msgpack:"room"`
}

// DirMember is one member of a room in a directory answer.
type DirMember struct {
	Client string   `msgpack:"client"`
	Peer   string   `msgpack:"peer"`
	Record []byte   `msgpack:"record,omitempty"` // signed peer record envelope (addresses, signed by the peer)
	Addrs  []string `msgpack:"addrs,omitempty"`  // addresses the hub saw (unsigned)
	Role   string   `msgpack:"role,omitempty"`   // the member's role in the room (peers accept state changes from writers only)
}

// DirAnswer is the directory's answer: the members with a bound peer and
// the hub's circuit address to reach them through its relay.
type DirAnswer struct {
	Error   string      `msgpack:"error,omitempty"`
	Circuit []string    `msgpack:"circuit,omitempty"` // <hub addr>/p2p/<hub>/p2p-circuit
	Members []DirMember `msgpack:"members"`
}

// roomNameRE is the rule for room names.
var roomNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckRoomName returns an error of kind framesync.BadInput if name is not a
// valid room name: 1 to 64 letters, digits, '.', '_' or '-', starting with a
// letter or digit. Hub and clients apply the same rule.
func CheckRoomName(name string) error {
	if !roomNameRE.MatchString(name) {
		return &framesync.Error{Kind: framesync.BadInput, Op: "room name", Msg: fmt.Sprintf("%q is not a valid room name: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)}
	}
	return nil
}

// Encode returns m as one control channel message.
func Encode(m *Msg) ([]byte, error) { return msgpack.Marshal(m) }

// Decode parses one control channel message.
func Decode(b []byte) (*Msg, error) {
	if err := CheckMsgpack(b); err != nil {
		return nil, err
	}
	var m Msg
	if err := msgpack.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &m, nil
}
