package lease

import (
	"context"
	"fmt"
	"time"

	"framesync"
)

// Grant is one live lease.
type Grant struct {
	Room    string
	Target  string
	Holder  string
	Token   int64 // fencing token: grows per room, never reused
	Expires time.Time
}

// Backend is what the hub needs from a lease store.
type Backend interface {
	// Acquire grants target to holder for ttl. If holder already holds it,
	// the lease is extended and keeps its token. If another holder has a
	// live lease the error is a *HeldError (errors.Is(err, framesync.Locked)).
	Acquire(ctx context.Context, room, target, holder string, ttl time.Duration) (Grant, error)
	// Renew extends holder's lease carrying token. A lease that expired is
	// a framesync.PreconditionFailed error; one held by another holder now
	// a *HeldError.
	Renew(ctx context.Context, room, target, holder string, token int64, ttl time.Duration) (Grant, error)
	// Release ends holder's lease carrying token. Releasing a lease that
	// is not held any more is not an error; one held by someone else is a
	// *HeldError.
	Release(ctx context.Context, room, target, holder string, token int64) error
	// ReleaseHolder ends every lease of holder in every room and returns
	// what it released.
	ReleaseHolder(ctx context.Context, holder string) ([]Grant, error)
	// Check returns the live grant of target if it carries token. An
	// expired or missing lease is framesync.PreconditionFailed; a lease
	// granted since to someone else, or under another token, a *HeldError.
	Check(ctx context.Context, room, target string, token int64) (Grant, error)
	// Get returns the live grant of target; ok is false if there is none.
	Get(ctx context.Context, room, target string) (g Grant, ok bool, err error)
	// List returns the live grants of room sorted by target.
	List(ctx context.Context, room string) ([]Grant, error)
	// DropRoom forgets every lease of room. Its tokens are never reused.
	DropRoom(ctx context.Context, room string) error
}

// HeldError says a target is held by someone else.
type HeldError struct {
	Grant Grant // the current holder's grant
}

// Error implements error.
func (e *HeldError) Error() string {
	return fmt.Sprintf("%s is locked by %s until %s", e.Grant.Target, e.Grant.Holder, e.Grant.Expires.UTC().Format(time.RFC3339Nano))
}

// Is makes errors.Is(err, framesync.Locked) true.
func (e *HeldError) Is(target error) bool { return target == framesync.Locked }

// Unwrap returns framesync.Locked, so framesync.KindOf reports Locked.
func (e *HeldError) Unwrap() error { return framesync.Locked }

// EventKind says what happened to a lease.
type EventKind uint8

// Event kinds.
const (
	Acquired EventKind = iota + 1
	Renewed
	Released
	Expired
)

// String returns "acquired", "renewed", "released" or "expired".
func (k EventKind) String() string {
	switch k {
	case Acquired:
		return "acquired"
	case Renewed:
		return "renewed"
	case Released:
		return "released"
	case Expired:
		return "expired"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is one change of a lease.
type Event struct {
	Kind  EventKind
	Grant Grant // for Released and Expired: the grant that ended
}

// CheckTarget returns an error unless target is a usable target string:
// 1 to 200 printable ASCII characters without spaces.
func CheckTarget(target string) error {
	if target == "" || len(target) > 200 {
		return &framesync.Error{Kind: framesync.BadInput, Op: "lease", Field: "target", Msg: "target must be 1 to 200 characters"}
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c > '~' {
			return &framesync.Error{Kind: framesync.BadInput, Op: "lease", Field: "target", Msg: fmt.Sprintf("target %q has a character that is not printable ASCII", target)}
		}
	}
	return nil
}
