package peer

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"framesync"
	"framesync/relay/wire"
)

// ErrOffline is returned by operations that need the hub while the client
// is not connected. The client keeps reconnecting in the background.
var ErrOffline = &framesync.Error{Kind: framesync.Unavailable, Msg: "not connected to the hub"}

// ErrClosed is returned by operations on a closed client.
var ErrClosed = errors.New("peer: client closed")

// Error is an error answer of the hub, over HTTP or the control channel.
// errors.Is(err, framesync.Conflict) and the other kinds work on it.
type Error struct {
	Op      string         // what the client was doing
	Status  int            // HTTP status; 0 for the control channel
	Kind    framesync.Kind // from the wire code
	Code    string         // the wire code as sent
	Message string         // the hub's message
	Details map[string]any // current_version, holder, expires, ...
}

func (e *Error) Error() string {
	if e.Op == "" {
		return e.Message
	}
	return e.Op + ": " + e.Message
}

// Is reports whether target is e's Kind.
func (e *Error) Is(target error) bool {
	k, ok := target.(framesync.Kind)
	return ok && k == e.Kind
}

// CurrentVersion is the frame's current version carried by a conflict.
func (e *Error) CurrentVersion() (int64, bool) { return e.number("current_version") }

// CurrentGeneration is the room's generation carried by a conflict on a
// structural edit.
func (e *Error) CurrentGeneration() (int64, bool) { return e.number("current_generation") }

// Holder is the client holding the lock, for a Locked error.
func (e *Error) Holder() string {
	s, _ := e.Details["holder"].(string)
	return s
}

// Expires is when the holder's lock expires, for a Locked error.
func (e *Error) Expires() time.Time {
	switch v := e.Details["expires"].(type) {
	case string:
		t, _ := time.Parse(time.RFC3339Nano, v)
		return t
	case int64:
		return time.UnixMilli(v)
	case float64:
		return time.UnixMilli(int64(v))
	}
	return time.Time{}
}

func (e *Error) number(key string) (int64, bool) {
	// Numbers in details come from the hub's JSON error bodies: float64.
	switch v := e.Details[key].(type) {
	case float64:
		return int64(v), true
	case int64:
		return v, true
	}
	return 0, false
}

// httpError reads an error response of the hub.
func httpError(op string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := &Error{Op: op, Status: resp.StatusCode, Kind: framesync.Internal, Message: resp.Status}
	var body map[string]any
	if json.Unmarshal(b, &body) == nil {
		e.Code, _ = body["code"].(string)
		if m, ok := body["message"].(string); ok {
			e.Message = m
		}
		delete(body, "code")
		delete(body, "message")
		e.Details = body
	}
	if k, ok := framesync.KindFromCode(e.Code); ok {
		e.Kind = k
	} else {
		e.Kind = kindOfStatus(resp.StatusCode)
	}
	return e
}

// msgError turns an error message of the control channel into an *Error.
func msgError(op string, m *wire.Msg) error {
	e := &Error{Op: op, Code: m.Code, Message: m.Message, Details: m.Payload}
	e.Kind, _ = framesync.KindFromCode(m.Code)
	return e
}

func kindOfStatus(status int) framesync.Kind {
	for k := framesync.Internal; k <= framesync.RateLimited; k++ {
		if k.HTTPStatus() == status {
			return k
		}
	}
	return framesync.Internal
}
