package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"framesync"
	"framesync/relay/lease"
)

// Redis losing its data (a restart without persistence, a flush, a
// failover to an empty replica). The key P epoch names the data the hubs
// share: "<random id> <ms>", made by the first hub that finds it missing;
// commits are held back until the Redis time ms.
// Every hub reads it every epochCheckEvery; a hub that finds it missing or
// different recovers (recover): it registers itself, raises each room's
// generation in Redis to at least its replica's, registers its rooms that
// the registry lacks, publishes every room's documents whole, and then
// takes the new epoch. Commits name the epoch their hub is at
// (lease.Fence): a hub that has not recovered yet has its commits refused
// and recovers first, and until epochSettle after the last hub began to
// recover every commit is refused (held back: the commit waits), so that
// every running hub has raised the generations before anyone commits on
// them and no hub that is behind accepts a commit on a stale base. A hub
// that starts and finds an epoch other than the one it saved recovers the
// same way; one that was in the deployment and finds none makes a settling
// one; a new hub that finds none makes one that does not settle (a new
// deployment), which the hubs that recover then make settle.
//
// What this does not recover: leases and presenter tokens (gone: holders
// lock again; tokens stay above every earlier one, lease.BlobTokens), the
// import jobs' and users' lists are as the hubs have them, a room deleted
// while Redis was away on one hub may be registered again by another, and
// entries of the deployment log that a hub had not read yet.

const (
	// epochCheckEvery is how often a hub looks at the epoch.
	epochCheckEvery = time.Second
	// epochSettle is how long after a new epoch commits are held back.
	epochSettle = 3 * time.Second
)

// scriptEpoch: KEYS epoch; ARGV new id, settle ms (0: none), extend (1:
// an existing epoch settles for at least settle ms from now). Replies the
// epoch's ID, made if missing.
var scriptEpoch = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local settle = tonumber(ARGV[2])
local e = redis.call('GET', KEYS[1])
local id, ms = ARGV[1], 0
local eid, ems = string.match(e or '', '^(%S+) (%d+)$')
if eid then -- anything else (missing, or not an epoch) is replaced
  id, ms = eid, tonumber(ems)
  if ARGV[3] ~= '1' or ms >= now + settle then return id end
end
if settle > 0 then ms = math.max(ms, now + settle) end
redis.call('SET', KEYS[1], id .. ' ' .. string.format('%d', ms))
return id
`)

// scriptRaiseGen: KEYS genkey; ARGV generation. Raises the counter to at
// least the generation.
var scriptRaiseGen = redis.NewScript(`
local g = tonumber(redis.call('GET', KEYS[1]) or '-1')
if g < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
`)

// ensureEpoch returns the ID of the epoch, making one (settling for
// epochSettle if settle) if Redis has none; with extend, an existing one
// settles for at least epochSettle from now.
func (h *hubSync) ensureEpoch(ctx context.Context, settle, extend bool) (string, error) {
	ms := int64(0)
	if settle || extend {
		ms = epochSettle.Milliseconds()
	}
	return scriptEpoch.Run(ctx, h.rdb, []string{h.key("epoch")}, randomID(), ms, boolArg(extend)).Text()
}

// epochID is the ID part of an epoch value.
func epochID(v string) string {
	id, _, _ := strings.Cut(v, " ")
	return id
}

func (h *hubSync) currentEpoch() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.epoch
}

// raiseGens raises the generation in Redis of every room of this hub to
// at least its replica's.
func (h *hubSync) raiseGens(ctx context.Context) error {
	pipe := h.rdb.Pipeline()
	for _, r := range h.syncedRooms() {
		if r.isDeleted() {
			continue
		}
		g, _ := r.traj.Generation()
		// Eval, not Run: a pipeline cannot fall back from EVALSHA, and
		// after a restart Redis has no scripts.
		scriptRaiseGen.Eval(ctx, pipe, []string{h.genKey(r.name, r.sync.inc)}, g)
	}
	_, err := pipe.Exec(ctx)
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	return err
}

// raiseGen raises the generation of room r in Redis to at least gen.
func (h *hubSync) raiseGen(ctx context.Context, r *room, gen int64) error {
	ctx, cancel := h.opCtx(ctx)
	defer cancel()
	if err := scriptRaiseGen.Run(ctx, h.rdb, []string{h.genKey(r.name, r.sync.inc)}, gen).Err(); err != nil {
		return &framesync.Error{Kind: framesync.Unavailable, Op: "commit", Msg: "redis is unreachable: commits wait until it is back", Err: err}
	}
	return nil
}

// recover publishes this hub's rooms again if Redis lost its data (the
// epoch is missing or not the one this hub is at); otherwise it does
// nothing. Only the hub loop calls it; a commit that found the epoch
// changed asks the loop (recoverNow) and waits for the new epoch.
func (h *hubSync) recover(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cur, err := h.rdb.Get(ctx, h.key("epoch")).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return err // unreachable: try later
	}
	if cur != "" && epochID(cur) == h.currentEpoch() {
		return nil
	}
	t0 := time.Now()
	h.log.Warn("redis lost the deployment's data (restarted without persistence, flushed or replaced): publishing this hub's rooms again; commits wait meanwhile", "epoch", cur)
	// Make the epoch settle from now, once per epoch: a hub whose
	// recovery keeps failing must not hold every hub's commits for ever.
	extend := cur == "" || epochID(cur) != h.extended
	epoch, err := h.ensureEpoch(ctx, true, extend)
	if err != nil {
		return err
	}
	h.extended = epoch
	if err := h.rdb.SAdd(ctx, h.key("hubs"), h.s.hubID).Err(); err != nil {
		return err
	}
	if err := h.start(true); err != nil {
		return err
	}
	h.mu.Lock()
	h.epoch = epoch
	h.mu.Unlock()
	if err := h.published(); err != nil {
		return err
	}
	h.log.Warn("published this hub's rooms again after redis lost its data", "epoch", epoch, "took", time.Since(t0).Round(time.Millisecond))
	return nil
}

// awaitEpoch handles a commit refused for its epoch (made under epoch
// used): it waits for the settling time, or has the loop recover and waits
// for that, so the commit can be tried again; it fails if that does not
// happen before deadline.
func (h *hubSync) awaitEpoch(ctx context.Context, ee *lease.EpochError, used string, deadline time.Time) error {
	if ee.Settle > 0 {
		wait := min(ee.Settle, time.Until(deadline))
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	select {
	case h.recoverNow <- struct{}{}:
	default: // already asked
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for h.currentEpoch() == used {
		if time.Now().After(deadline) {
			return &framesync.Error{Kind: framesync.Unavailable, Op: "commit", Msg: fmt.Sprintf("room %s: redis lost its data and this hub has not published its rooms again yet; try again", ee.Room), Err: ee}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// published records that this hub has published everything under its
// epoch.
func (h *hubSync) published() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.epochSaved = h.epoch
	return h.saveLocked()
}
