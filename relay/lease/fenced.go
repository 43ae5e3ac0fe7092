package lease

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// BehindError says a fenced append was refused because the generation in
// Redis is not the one the writer based its change on: another writer
// appended first (the writer is behind and should catch up), or the writer
// is ahead of a Redis that lost its data.
type BehindError struct {
	Room    string
	Base    int64 // the generation the writer's change was made on
	Current int64 // the generation in Redis
}

// Error implements error.
func (e *BehindError) Error() string {
	return fmt.Sprintf("room %s is at generation %d in redis, the change was made at %d", e.Room, e.Current, e.Base)
}

// Fence is what AppendFenced checks besides the lease: the base version,
// and optionally the data epoch of the deployment.
type Fence struct {
	// GenKey is the counter that must hold Base, or not exist (Redis lost
	// it: Base re-seeds it). A full key name (the caller adds the prefix).
	GenKey string
	Base   int64
	// EpochKey, if not empty, must hold "<Epoch> <ms>", where ms is the
	// Redis time (milliseconds) before which appends are refused as
	// settling. A missing epoch, or one with another ID, means Redis lost
	// (or was given) the deployment's data since the writer last looked,
	// and is an *EpochError.
	EpochKey, Epoch string
}

// EpochError says a fenced append was refused because of the data epoch:
// Current is not the epoch the writer named ("" if missing), or it is the
// same but still settling for Settle.
type EpochError struct {
	Room    string
	Current string
	Settle  time.Duration
}

// Error implements error.
func (e *EpochError) Error() string {
	if e.Settle > 0 {
		return fmt.Sprintf("room %s: redis lost its data and the hubs are publishing their rooms again; commits resume in %v", e.Room, e.Settle.Round(time.Millisecond))
	}
	return fmt.Sprintf("room %s: redis lost its data (its epoch is %q now); the hub is publishing its rooms again", e.Room, e.Current)
}

// AppendFenced adds an entry to the Redis stream named stream, and moves
// the counter f.GenKey from f.Base to f.Base+1, in one atomic step, only
// while target of room is leased under token, the counter holds f.Base (or
// does not exist: Redis lost it, and f.Base re-seeds it) and the epoch is
// f.Epoch and settled. It returns the entry's stream ID. A lease that is
// gone is a framesync.PreconditionFailed error, one held under another
// token a *HeldError (as Check), a counter not at base a *BehindError, an
// epoch that differs or is settling an *EpochError. stream is a full key
// name; fields are the entry's field and value pairs. This is how several
// hubs agree on the order of commits: the fencing check, the base-version
// check and the publication of the change are one step.
func (r *Redis) AppendFenced(ctx context.Context, room, target string, token int64, f Fence, stream string, fields ...string) (string, error) {
	const op = "commit"
	if err := checkRoom(room); err != nil {
		return "", err
	}
	if len(fields) == 0 || len(fields)%2 != 0 {
		return "", fmt.Errorf("lease: AppendFenced needs field and value pairs")
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	args := append([]any{room, target, token, f.GenKey, f.Base, stream, f.EpochKey, f.Epoch}, toAny(fields)...)
	res, err := r.run(ctx, op, scriptAppendFenced, args...)
	if err != nil {
		return "", err
	}
	switch {
	case len(res) == 2 && res[0] == "ok":
		return res[1], nil
	case len(res) == 1 && res[0] == "gone":
		return "", expiredErr(op, target, token)
	case len(res) > 0 && res[0] == "held":
		return "", heldErr(op, room, target, res)
	case len(res) == 2 && res[0] == "behind":
		cur, err := strconv.ParseInt(res[1], 10, 64)
		if err != nil {
			return "", badReply(op, err)
		}
		return "", &BehindError{Room: room, Base: f.Base, Current: cur}
	case len(res) == 2 && res[0] == "epoch":
		return "", &EpochError{Room: room, Current: res[1]}
	case len(res) == 2 && res[0] == "settling":
		ms, err := strconv.ParseInt(res[1], 10, 64)
		if err != nil {
			return "", badReply(op, err)
		}
		return "", &EpochError{Room: room, Current: f.Epoch, Settle: time.Duration(ms) * time.Millisecond}
	}
	return "", badReply(op, fmt.Errorf("reply %q", res))
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// scriptAppendFenced: ARGV room, target, token, genkey, base, stream,
// epoch key, epoch, field/value pairs. Replies {ok, id}, {gone}, {held,
// value, exp}, {behind, generation}, {epoch, current} or {settling, ms}.
var scriptAppendFenced = redis.NewScript(luaPrelude + `
local room, target, token = ARGV[2], ARGV[3], ARGV[4]
local genkey, base, stream = ARGV[5], ARGV[6], ARGV[7]
local ekey, epoch = ARGV[8], ARGV[9]
if ekey ~= '' then
  local e = redis.call('GET', ekey)
  if not e or string.match(e, '^(%S+)') ~= epoch then return {'epoch', e or ''} end
  local settled = tonumber(string.match(e, ' (%d+)$') or '0')
  local now = now_ms()
  if now < settled then return {'settling', int(settled - now)} end
end
local v = redis.call('GET', lockkey(room, target))
if not v then return {'gone'} end
local t = parse(v)
if t ~= token then return {'held', v, expiry(room, target)} end
local g = redis.call('GET', genkey)
if g and g ~= base then return {'behind', g} end
redis.call('SET', genkey, int(tonumber(base) + 1))
local id = redis.call('XADD', stream, '*', unpack(ARGV, 10))
return {'ok', id}
`)
