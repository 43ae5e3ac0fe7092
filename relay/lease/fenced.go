package lease

import (
	"context"
	"fmt"
	"strconv"

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

// AppendFenced adds an entry to the Redis stream named stream, and moves
// the counter genKey from base to base+1, in one atomic step, only while
// target of room is leased under token and genKey holds base (or does not
// exist: Redis lost it, and base re-seeds it). It returns the entry's
// stream ID. A lease that is gone is a framesync.PreconditionFailed error,
// one held under another token a *HeldError (as Check), and a counter not
// at base a *BehindError. stream and genKey are full key names (the caller
// adds the prefix); fields are the entry's field and value pairs. This is
// how several hubs agree on the order of commits: the fencing check, the
// base-version check and the publication of the change are one step.
func (r *Redis) AppendFenced(ctx context.Context, room, target string, token int64, genKey string, base int64, stream string, fields ...string) (string, error) {
	const op = "commit"
	if err := checkRoom(room); err != nil {
		return "", err
	}
	if len(fields) == 0 || len(fields)%2 != 0 {
		return "", fmt.Errorf("lease: AppendFenced needs field and value pairs")
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	args := append([]any{room, target, token, genKey, base, stream}, toAny(fields)...)
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
		return "", &BehindError{Room: room, Base: base, Current: cur}
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
// field/value pairs. Replies {ok, id}, {gone}, {held, value, exp} or
// {behind, generation}.
var scriptAppendFenced = redis.NewScript(luaPrelude + `
local room, target, token = ARGV[2], ARGV[3], ARGV[4]
local genkey, base, stream = ARGV[5], ARGV[6], ARGV[7]
local v = redis.call('GET', lockkey(room, target))
if not v then return {'gone'} end
local t = parse(v)
if t ~= token then return {'held', v, expiry(room, target)} end
local g = redis.call('GET', genkey)
if g and g ~= base then return {'behind', g} end
redis.call('SET', genkey, int(tonumber(base) + 1))
local id = redis.call('XADD', stream, '*', unpack(ARGV, 8))
return {'ok', id}
`)
