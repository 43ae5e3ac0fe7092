package relay

import (
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

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

	// hub → client
	MsgWelcome      = "welcome"       // hub, client, version
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
)

// Document names used in sync messages and snapshot routes.
const (
	DocTrajectory = "trajectory"
	DocState      = "state"
)

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
}

func encodeMsg(m *Msg) ([]byte, error) { return msgpack.Marshal(m) }

func decodeMsg(b []byte) (*Msg, error) {
	var m Msg
	if err := msgpack.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
