package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"framesync"
	"framesync/relay/wire"
)

// Accounts and access lists shared by the hubs of a deployment. User
// accounts, token revocations and room access lists change through the
// deployment log (P roomlog) like room creations: a hub that changes one
// runs a script that updates the current value in Redis and appends the
// change to the log, atomically, and then applies the log up to that entry
// itself; every other hub applies it when it reads the log (within a read
// round, under a second) and a hub that was down applies what it missed
// when it starts. All hubs apply the same entries in the same order, so
// they end with the same accounts and lists even when two hubs change the
// same one at once. Keys, for prefix P:
//
//	P users     hash user -> userRecord JSON (bcrypt hash, admin, created)
//	P revoked   sorted set of revoked token IDs scored by their expiry
//
// and log entries op=user (user, meta = record JSON, empty for a deletion),
// op=revoke (meta = {"id","exp"}), op=acl (room, inc, meta = access list).
//
// The configured admin (FRAMESYNC_ADMIN_USERNAME and its password) is never
// shared: every hub makes it from its own environment. Local users a hub
// had before it joined the deployment (or that Redis lost) are published
// when it starts or recovers, unless the deployment has a user of that
// name; so are its revocations of tokens that have not expired. While
// Redis is unreachable these changes fail with unavailable; logins, token
// checks and access checks go on with what the hub has.

// Deployment log operations besides create and delete.
const (
	opUser   = "user"
	opRevoke = "revoke"
	opACL    = "acl"
	fieldUsr = "user"
)

// revokeNote is the meta of a revoke entry.
type revokeNote struct {
	ID  string `json:"id"`
	Exp int64  `json:"exp"`
}

// scriptUserPut: KEYS users, roomlog; ARGV user, record JSON (empty:
// delete), create (1: fail if the user exists), hub. Replies {ok, id},
// {exists} or {gone}.
var scriptUserPut = redis.NewScript(`
local have = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
if ARGV[3] == '1' and have then return {'exists'} end
if ARGV[2] == '' then
  if not have then return {'gone'} end
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
local id = redis.call('XADD', KEYS[2], '*', 'op', 'user', 'user', ARGV[1], 'meta', ARGV[2], 'hub', ARGV[4])
return {'ok', id}
`)

// scriptRevoke: KEYS revoked, roomlog; ARGV token ID, expiry (unix s),
// meta, hub, now (unix s). Replies the log entry's ID.
var scriptRevoke = redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[5])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return redis.call('XADD', KEYS[2], '*', 'op', 'revoke', 'meta', ARGV[3], 'hub', ARGV[4])
`)

// scriptACL: KEYS rooms, roomlog; ARGV room, inc, entry JSON, access list
// JSON, hub. Replies {ok, id} or {gone} (the room was deleted or created
// again).
var scriptACL = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v or string.find(v, '"deleted":true', 1, true) or not string.find(v, '"inc":"' .. ARGV[2] .. '"', 1, true) then return {'gone'} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local id = redis.call('XADD', KEYS[2], '*', 'op', 'acl', 'room', ARGV[1], 'inc', ARGV[2], 'meta', ARGV[4], 'hub', ARGV[5])
return {'ok', id}
`)

func (h *hubSync) unavailable(op, what string, err error) error {
	return &framesync.Error{Kind: framesync.Unavailable, Op: op, Msg: fmt.Sprintf("redis is unreachable: %s cannot change until it is back", what), Err: err}
}

// putUser creates (create), replaces or, with rec nil, deletes a user of
// the deployment, and applies the change on this hub before it returns.
func (h *hubSync) putUser(name string, rec *userRecord, create bool) error {
	op := "create user"
	meta := ""
	if rec != nil {
		b, _ := json.Marshal(rec)
		meta = string(b)
	} else {
		op = "delete user"
	}
	ctx, cancel := h.opCtx(h.s.ctx)
	defer cancel()
	res, err := scriptUserPut.Run(ctx, h.rdb, []string{h.key("users"), h.key("roomlog")}, name, meta, boolArg(create), h.s.hubID).StringSlice()
	if err != nil {
		return h.unavailable(op, "user accounts", err)
	}
	switch {
	case len(res) == 1 && res[0] == "exists":
		return &framesync.Error{Kind: framesync.Conflict, Op: op, Msg: fmt.Sprintf("user %q exists", name)}
	case len(res) == 1 && res[0] == "gone":
		return &framesync.Error{Kind: framesync.NotFound, Op: op, Msg: fmt.Sprintf("no user %q", name)}
	case len(res) == 2 && res[0] == "ok":
		return h.syncLog(ctx, op, res[1])
	}
	return &framesync.Error{Kind: framesync.Internal, Op: op, Msg: fmt.Sprintf("unexpected reply from redis: %q", res)}
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// revoke revokes a token on every hub, this one before it returns.
func (h *hubSync) revoke(id string, exp int64) error {
	const op = "revoke token"
	b, _ := json.Marshal(revokeNote{ID: id, Exp: exp})
	ctx, cancel := h.opCtx(h.s.ctx)
	defer cancel()
	entry, err := scriptRevoke.Run(ctx, h.rdb, []string{h.key("revoked"), h.key("roomlog")}, id, exp, string(b), h.s.hubID, time.Now().Unix()).Text()
	if err != nil {
		return h.unavailable(op, "tokens", err)
	}
	return h.syncLog(ctx, op, entry)
}

// setACL replaces the access list of room r on every hub, this one before
// it returns.
func (h *hubSync) setACL(r *room, acl wire.RoomACL) error {
	const op = "room access"
	inc := r.sync.inc
	eb, _ := json.Marshal(roomEntry{Inc: inc, Created: r.created, ACL: &acl})
	ab, _ := json.Marshal(acl)
	ctx, cancel := h.opCtx(h.s.ctx)
	defer cancel()
	res, err := scriptACL.Run(ctx, h.rdb, []string{h.key("rooms"), h.key("roomlog")}, r.name, inc, string(eb), string(ab), h.s.hubID).StringSlice()
	if err != nil {
		return h.unavailable(op, "access lists", err)
	}
	switch {
	case len(res) == 1 && res[0] == "gone":
		return &framesync.Error{Kind: framesync.NotFound, Op: op, Msg: fmt.Sprintf("room %q was deleted", r.name)}
	case len(res) == 2 && res[0] == "ok":
		return h.syncLog(ctx, op, res[1])
	}
	return &framesync.Error{Kind: framesync.Internal, Op: op, Msg: fmt.Sprintf("unexpected reply from redis: %q", res)}
}

// syncLog applies the deployment log up to entry upTo (at least).
func (h *hubSync) syncLog(ctx context.Context, op, upTo string) error {
	return h.readLog(ctx, op, upTo, func(err error) error { return h.unavailable(op, "the deployment log", err) })
}

// readLog applies the deployment log up to entry upTo, or to its end for
// upTo "". Redis errors are passed through redisErr; applying entry upTo
// may fail too (this hub could not save its own change).
func (h *hubSync) readLog(ctx context.Context, op, upTo string, redisErr func(error) error) error {
	h.logMu.Lock()
	defer h.logMu.Unlock()
	for {
		h.mu.Lock()
		last := h.logLast
		h.mu.Unlock()
		if upTo != "" && last != "" && !streamIDLess(last, upTo) {
			return nil
		}
		msgs, err := h.after(ctx, h.key("roomlog"), last, logReadCount)
		if err != nil {
			return redisErr(err)
		}
		if len(msgs) == 0 {
			if upTo == "" {
				return nil
			}
			return &framesync.Error{Kind: framesync.Internal, Op: op, Msg: fmt.Sprintf("entry %s is missing from the deployment log in redis", upTo)}
		}
		if err := h.applyRoomlogLocked(msgs, upTo); err != nil {
			return err
		}
	}
}

// logReadCount bounds the deployment log entries read at once.
const logReadCount = 1024

// applyShared applies a user, revoke or acl entry of the deployment log;
// the error is this hub's failure to save it (malformed entries are
// logged and skipped).
func (h *hubSync) applyShared(m redis.XMessage, op string) error {
	meta, _ := m.Values[fieldMeta].(string)
	switch op {
	case opUser:
		name, _ := m.Values[fieldUsr].(string)
		a := h.s.auth
		if a == nil || name == a.opts.AdminUser || !userNameRE.MatchString(name) {
			return nil
		}
		var rec *userRecord
		if meta != "" {
			rec = new(userRecord)
			if json.Unmarshal([]byte(meta), rec) != nil || rec.Hash == "" {
				h.log.Error("malformed user in the deployment log", "id", m.ID)
				return nil
			}
		}
		err := a.apply(name, rec)
		if err != nil {
			h.log.Error("save a user change of the deployment", "user", name, "err", err)
		}
		if rec == nil {
			h.s.disconnect(func(p principal) bool { return p.user == name }, "user deleted")
		}
		return err
	case opRevoke:
		var n revokeNote
		if json.Unmarshal([]byte(meta), &n) != nil || n.ID == "" {
			h.log.Error("malformed revocation in the deployment log", "id", m.ID)
			return nil
		}
		var err error
		if a := h.s.auth; a != nil {
			if err = a.applyRevoke(n.ID, n.Exp); err != nil {
				h.log.Error("save a revocation of the deployment", "err", err)
			}
		}
		h.s.disconnect(func(p principal) bool { return p.tokenID == n.ID }, "token revoked")
		return err
	case opACL:
		name, _ := m.Values[fieldRoom].(string)
		inc, _ := m.Values[fieldInc].(string)
		var acl wire.RoomACL
		if json.Unmarshal([]byte(meta), &acl) != nil {
			h.log.Error("malformed access list in the deployment log", "id", m.ID)
			return nil
		}
		r := h.roomAt(name, inc)
		if r == nil {
			return nil
		}
		if err := r.setACL(acl); err != nil {
			h.log.Error("save an access list of the deployment", "room", name, "err", err)
			return err
		}
		h.s.evictOutsiders(r)
	}
	return nil
}

// publishUsers offers the deployment the local users it does not have (a
// hub that had accounts before it joined, or after Redis lost them).
func (h *hubSync) publishUsers(ctx context.Context) error {
	a := h.s.auth
	if a == nil {
		return nil
	}
	have, err := h.rdb.HKeys(ctx, h.key("users")).Result()
	if err != nil {
		return fmt.Errorf("relay: read users from redis: %w", err)
	}
	known := map[string]bool{a.opts.AdminUser: true}
	for _, u := range have {
		known[u] = true
	}
	for name, rec := range a.snapshot() {
		if known[name] {
			continue
		}
		if err := h.putUser(name, rec, true); err != nil && !errors.Is(err, framesync.Conflict) {
			return err
		}
	}
	// Revocations too (Redis may have lost them): a token logged out on
	// any hub stays refused on every hub, a new one included.
	now := time.Now().Unix()
	have, err = h.rdb.ZRangeByScore(ctx, h.key("revoked"), &redis.ZRangeBy{Min: strconv.FormatInt(now, 10), Max: "+inf"}).Result()
	if err != nil {
		return fmt.Errorf("relay: read revoked tokens from redis: %w", err)
	}
	revoked := map[string]bool{}
	for _, id := range have {
		revoked[id] = true
	}
	for id, exp := range a.revocations() {
		if exp >= now && !revoked[id] {
			if err := h.revoke(id, exp); err != nil {
				return err
			}
		}
	}
	return nil
}
