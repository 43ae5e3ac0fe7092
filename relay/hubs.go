package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"framesync"
	"framesync/crdt"
	"framesync/relay/lease"
	"framesync/relay/wire"
)

// Many hubs (issue 8). Hubs that share one Redis (and RedisPrefix) and one
// blob store serve the same rooms. Each hub keeps its own replica of every
// room's two documents and writes the trajectory document with its own
// actor (its hub ID); what one hub changes reaches the others through Redis
// streams, which every hub reads from where it left off (kept in its data
// directory), so a hub that was down or is new catches up by reading.
//
// Keys, for prefix P, room R and incarnation I (random per creation of the
// room, so a room deleted and created again starts new streams):
//
//	P hubs                       set of the deployment's hub IDs (= trajectory actors)
//	P rooms                      hash R -> {"inc","created","acl"} or a tombstone {"inc","deleted":true}
//	P roomlog                    the deployment log, a stream: op create|delete|acl, room, inc, meta, hub;
//	                             op user|revoke (hubs_auth.go)
//	P room:R:doc:I:trajectory    stream: hub, m (changes message), note (commit JSON);
//	                             after compaction first hub, snap (saved document), upto (hubs_trim.go)
//	P room:R:doc:I:state         stream: hub, m (or hub, snap, upto)
//	P room:R:gen:I               the room's generation: the number of commits
//	P epoch                      "<id> <ms>": the data the hubs share (hubs_epoch.go)
//	P users, P revoked           accounts and revoked tokens (hubs_auth.go)
//	P room:R:jobs:I, P jobs      import jobs: hash and pub/sub channel (hubs_jobs.go)
//
// The lease backend's keys (locks, fencing counters, events) are listed in
// relay/lease/redis.go.
//
// A commit is accepted by Redis, not by the hub: lease.Redis.AppendFenced
// checks the lock's fencing token and that the generation is the one the
// hub's replica had before the commit, bumps it and appends the change to
// the trajectory stream, in one script. The hub's edit waits under the
// document lock (crdt.Trajectory.SetGate) and is rolled back if Redis
// refuses, so no client ever sees a change that other hubs will not get.
// A hub that is behind (another hub committed first) reads the stream until
// its replica has the generation Redis has and tries again; the client's
// base version is then checked against an up-to-date replica. Every commit,
// frame-level ones included, goes through the generation: frame versions
// need no keys of their own.
//
// State document changes (from clients, the presenter's last step, HTTP
// edits) are appended by the sync loop after they are applied and
// persisted; changes that came from the stream are not appended again.
// Entries are applied with crdt.Doc.ApplyChanges, with the checks of any
// change received from the network.
//
// After Redis loses its data (no persistence), every hub publishes its
// rooms again (hubs_epoch.go).
//
// A document stream longer than trimAbove entries is compacted: its
// entries are replaced by one holding the whole document (hubs_trim.go).
// The deployment log is not trimmed (one entry per room creation or
// deletion, user change, logout or access list change).

// Stream fields.
const (
	fieldHub  = "hub"
	fieldMsg  = "m"
	fieldNote = "note"
	fieldOp   = "op"
	fieldRoom = "room"
	fieldInc  = "inc"
	fieldMeta = "meta"
	fieldSnap = "snap"
	fieldUpto = "upto"
)

const (
	// hubsReadBlock is how long one XREAD waits for new entries.
	hubsReadBlock = 250 * time.Millisecond
	// hubsReadCount bounds the entries read per stream and round.
	hubsReadCount = 256
	// publishBatch bounds the changes of one state stream entry.
	publishBatch = 256
	// catchUpWait bounds how long a commit waits for its hub's replica to
	// catch up with another hub's commits before it is refused.
	catchUpWait = 5 * time.Second
	// commitRetryFor bounds how long a commit that keeps losing the race
	// to other hubs' commits is tried again (each loss is another commit's
	// progress, so only a very busy room gets near it).
	commitRetryFor = 15 * time.Second
)

// fencedAppender is the ability of a lease backend to append under a
// fencing token atomically (lease.Redis).
type fencedAppender interface {
	AppendFenced(ctx context.Context, room, target string, token int64, f lease.Fence, stream string, fields ...string) (string, error)
}

var _ fencedAppender = (*lease.Redis)(nil)

// hubSync is what a hub shares with the other hubs of its deployment.
type hubSync struct {
	// Static after construction.
	s      *Server
	rdb    *redis.Client
	prefix string
	fence  fencedAppender
	log    *slog.Logger
	file   string // <data>/hubsync.json
	// republish: the hub found a new epoch when it started (set by
	// openHubSync for start).
	republish bool
	jobsSub   *redis.PubSub // P jobs, for jobsLoop
	// jobsFailed is when publishing a job update last failed (unix ns; 0:
	// the last one worked).
	jobsFailed atomic.Int64
	// recoverNow asks the loop to recover at once (a commit found the
	// epoch changed).
	recoverNow chan struct{}

	logMu sync.Mutex // serialises applying the deployment log; taken before mu

	// extended is the epoch recover last made settle; only the hub loop
	// (recover) uses it.
	extended string

	mu      sync.Mutex // guards the fields below
	hubs    []string   // hub IDs of the deployment, sorted
	logLast string     // last roomlog entry applied
	epoch   string     // the data epoch this hub's rooms are published under (P epoch)
	// epochSaved is the epoch in hubsync.json: the last one whose
	// publishing finished, so a hub that stops before it has published
	// everything does it again when it starts.
	epochSaved string
}

// roomSync is a room's position in its streams.
type roomSync struct {
	// Static after construction.
	inc  string
	file string // <room dir>/hubsync.json

	mu         sync.Mutex // serialises applying and publishing; taken after room.mu
	last       [2]string  // last stream IDs applied: trajectory, state
	published  crdt.Heads // state document changes up to these are in the stream
	fromStream map[crdt.ChangeHash]bool
	pubFailed  bool
}

const (
	docTraj  = 0
	docState = 1
)

var docNames = [2]string{"trajectory", "state"}

type roomSyncFile struct {
	Inc        string     `json:"inc"`
	Trajectory string     `json:"trajectory"`
	State      string     `json:"state"`
	Published  crdt.Heads `json:"published"`
}

// roomEntry is a room in the registry (P rooms).
type roomEntry struct {
	Inc     string        `json:"inc"`
	Created time.Time     `json:"created,omitzero"`
	ACL     *wire.RoomACL `json:"acl,omitempty"`
	Deleted bool          `json:"deleted,omitempty"`
}

// randomID returns 64 random bits in hex: hub, client, job and room
// incarnation IDs.
func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (h *hubSync) key(parts ...string) string { return h.prefix + strings.Join(parts, ":") }
func (h *hubSync) docKey(room, inc string, doc int) string {
	return h.key("room", room, "doc", inc, docNames[doc])
}
func (h *hubSync) genKey(room, inc string) string { return h.key("room", room, "gen", inc) }

// openHubSync connects to Redis and registers the hub. The rooms are
// reconciled by start.
func openHubSync(s *Server, url, prefix string) (*hubSync, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	o.ContextTimeoutEnabled = true
	if prefix == "" {
		prefix = lease.DefaultRedisPrefix
	}
	fence, _ := s.leases.(fencedAppender)
	if fence == nil {
		return nil, errors.New("relay: several hubs need the Redis lease backend")
	}
	h := &hubSync{s: s, rdb: redis.NewClient(o), prefix: prefix, fence: fence, log: s.log.With("hubs", prefix), file: filepath.Join(s.dir, "hubsync.json"), recoverNow: make(chan struct{}, 1)}
	var f struct {
		Roomlog string `json:"roomlog"`
		Epoch   string `json:"epoch"`
	}
	if b, err := os.ReadFile(h.file); err == nil {
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, &framesync.Error{Kind: framesync.Corrupt, Op: "open hub", Msg: h.file, Err: err}
		}
	}
	h.logLast = f.Roomlog
	ctx, cancel := h.opCtx(s.ctx)
	defer cancel()
	if err := h.rdb.SAdd(ctx, h.key("hubs"), s.hubID).Err(); err != nil {
		h.rdb.Close()
		return nil, fmt.Errorf("relay: register hub in redis: %w", err)
	}
	// A hub that was in the deployment before and finds no epoch: Redis
	// lost the data while every hub was down; commits settle first.
	// A hub that finds an epoch other than the one it saved: Redis lost
	// its data while this hub was down, and another hub made a new epoch;
	// it publishes everything again (see start).
	_, statErr := os.Stat(h.file)
	epoch, err := h.ensureEpoch(ctx, statErr == nil, false)
	if err == nil && f.Epoch != "" && f.Epoch != epoch {
		h.republish = true
		epoch, err = h.ensureEpoch(ctx, true, true)
	}
	if err != nil {
		h.rdb.Close()
		return nil, fmt.Errorf("relay: read the deployment's epoch from redis: %w", err)
	}
	h.epoch, h.epochSaved = epoch, epoch
	if h.republish {
		h.epochSaved = f.Epoch // until start has published everything
	}
	if err := h.saveLocked(); err != nil {
		h.rdb.Close()
		return nil, err
	}
	if h.jobsSub, err = h.subscribeJobs(ctx); err != nil {
		h.rdb.Close()
		return nil, err
	}
	h.refreshHubs(ctx)
	return h, nil
}

func (h *hubSync) close() {
	if h.jobsSub != nil {
		h.jobsSub.Close() // again after jobsLoop: harmless
	}
	h.rdb.Close()
}

func (h *hubSync) refreshHubs(ctx context.Context) {
	ids, err := h.rdb.SMembers(ctx, h.key("hubs")).Result()
	if err != nil {
		return
	}
	slices.Sort(ids)
	h.mu.Lock()
	h.hubs = ids
	h.mu.Unlock()
}

// hubIDs returns the deployment's hub IDs (trajectory actors).
func (h *hubSync) hubIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.hubs)
}

func (h *hubSync) saveLocked() error {
	b, _ := json.Marshal(map[string]string{"roomlog": h.logLast, "epoch": h.epochSaved})
	return writeFileAtomic(h.file, b, h.s.opts.NoSync)
}

// attach gives room r its stream positions: from its hubsync.json, or new
// (inc) ones.
func (h *hubSync) attach(r *room, inc string) error {
	rs := &roomSync{file: filepath.Join(r.dir, "hubsync.json"), fromStream: map[crdt.ChangeHash]bool{}}
	if b, err := os.ReadFile(rs.file); err == nil {
		var f roomSyncFile
		if err := json.Unmarshal(b, &f); err != nil {
			return &framesync.Error{Kind: framesync.Corrupt, Op: "open room", Msg: rs.file, Err: err}
		}
		rs.inc, rs.last, rs.published = f.Inc, [2]string{f.Trajectory, f.State}, f.Published
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	changed := false
	if inc != "" && rs.inc != inc {
		rs.inc, rs.last, rs.published = inc, [2]string{}, nil
		changed = true
	}
	for _, hd := range rs.published {
		if !r.state.Doc().HasChange(hd) {
			rs.published = nil // lost locally: publish again
			changed = true
			break
		}
	}
	r.sync = rs
	r.traj.SetGate(func(c *crdt.Commit, change []byte) error { return h.gate(r, c, change) })
	if changed {
		return rs.save(h.s.opts.NoSync)
	}
	return nil
}

func (rs *roomSync) save(noSync bool) error {
	b, _ := json.Marshal(roomSyncFile{Inc: rs.inc, Trajectory: rs.last[docTraj], State: rs.last[docState], Published: rs.published})
	return writeFileAtomic(rs.file, b, noSync)
}

// fenceArgs are the lock a commit is made under; set by commit under
// room.mu for the gate.
type fenceArgs struct {
	target string
	token  int64
	op     string
}

// commitNote is what other hubs need to tell their clients about a commit.
type commitNote struct {
	Op     string      `json:"op"`
	Gen    int64       `json:"gen"`
	Frames [][3]string `json:"frames"` // id, version, hash
}

// gate runs under the trajectory document's lock for every commit: Redis
// accepts it (and publishes it) or it is rolled back.
func (h *hubSync) gate(r *room, c *crdt.Commit, change []byte) error {
	f := r.fence
	if f == nil {
		return &framesync.Error{Kind: framesync.Internal, Op: "commit", Msg: "trajectory edit outside a commit"}
	}
	note := commitNote{Op: f.op, Gen: c.Generation}
	for _, e := range c.Entries {
		note.Frames = append(note.Frames, [3]string{e.ID, strconv.FormatInt(e.Version, 10), e.Hash.String()})
	}
	nb, _ := json.Marshal(note)
	inc := r.sync.inc
	fence := lease.Fence{GenKey: h.genKey(r.name, inc), Base: c.Generation - 1, EpochKey: h.key("epoch"), Epoch: h.currentEpoch()}
	_, err := h.fence.AppendFenced(h.s.ctx, r.name, f.target, f.token, fence, h.docKey(r.name, inc, docTraj),
		fieldHub, h.s.hubID, fieldMsg, string(crdt.ChangesMessage([][]byte{change})), fieldNote, string(nb))
	return err
}

// generation returns the room's generation in Redis.
func (h *hubSync) generation(ctx context.Context, r *room) (int64, error) {
	ctx, cancel := h.opCtx(ctx)
	defer cancel()
	g, err := h.rdb.Get(ctx, h.genKey(r.name, r.sync.inc)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, &framesync.Error{Kind: framesync.Unavailable, Op: "commit", Msg: "redis is unreachable: commits wait until it is back", Err: err}
	}
	return g, nil
}

// catchUp reads the room's trajectory stream until the replica is at
// generation want, or the wait ends.
func (h *hubSync) catchUp(ctx context.Context, r *room, want int64) error {
	ctx, cancel := context.WithTimeout(ctx, catchUpWait)
	defer cancel()
	wait := time.Millisecond
	for {
		if g, _ := r.traj.Generation(); g >= want {
			return nil
		}
		n, err := h.pull(ctx, r, docTraj)
		if err != nil {
			return err
		}
		if n > 0 {
			wait = time.Millisecond
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return &framesync.Error{Kind: framesync.Unavailable, Op: "commit", Msg: fmt.Sprintf("this hub could not catch up with generation %d of room %s from redis in time; try again", want, r.name)}
		case <-t.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// pull reads and applies what is new in one of the room's streams and
// returns how many entries it read.
func (h *hubSync) pull(ctx context.Context, r *room, doc int) (int, error) {
	rs := r.sync
	rs.mu.Lock()
	last := rs.last[doc]
	rs.mu.Unlock()
	msgs, err := h.after(ctx, h.docKey(r.name, rs.inc, doc), last, hubsReadCount)
	if err != nil {
		return 0, &framesync.Error{Kind: framesync.Unavailable, Op: "read from redis", Err: err}
	}
	h.apply(r, doc, msgs)
	return len(msgs), nil
}

// syncedRooms returns the rooms that have streams (an incarnation).
func (h *hubSync) syncedRooms() []*room {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	rooms := make([]*room, 0, len(h.s.rooms))
	for _, r := range h.s.rooms {
		if r.sync != nil && r.sync.inc != "" {
			rooms = append(rooms, r)
		}
	}
	return rooms
}

// roomAt returns room name if this hub has it in incarnation inc, or nil.
func (h *hubSync) roomAt(name, inc string) *room {
	h.s.mu.Lock()
	r := h.s.rooms[name]
	h.s.mu.Unlock()
	if r == nil || r.sync == nil || r.sync.inc != inc {
		return nil
	}
	return r
}

// redisOpTimeout bounds one Redis operation of the hub's own (registry,
// log, generation, jobs).
const redisOpTimeout = 5 * time.Second

// opCtx returns parent bounded by redisOpTimeout.
func (h *hubSync) opCtx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, redisOpTimeout)
}

// after reads up to n entries of stream key after entry last ("": from
// the start).
func (h *hubSync) after(ctx context.Context, key, last string, n int64) ([]redis.XMessage, error) {
	return h.rdb.XRangeN(ctx, key, "("+cmpID(last), "+", n).Result()
}

// streamIDLess compares two stream IDs "<ms>-<seq>"; "" is before all.
func streamIDLess(a, b string) bool {
	pa, pb := parseStreamID(a), parseStreamID(b)
	return pa[0] < pb[0] || pa[0] == pb[0] && pa[1] < pb[1]
}

func parseStreamID(s string) [2]uint64 {
	ms, seq, _ := strings.Cut(s, "-")
	a, _ := strconv.ParseUint(ms, 10, 64)
	b, _ := strconv.ParseUint(seq, 10, 64)
	return [2]uint64{a, b}
}

// apply applies stream entries to one of the room's documents (skipping
// those applied before), persists and tells the members.
func (h *hubSync) apply(r *room, doc int, msgs []redis.XMessage) {
	if len(msgs) == 0 {
		return
	}
	rs := r.sync
	var notes []commitNote
	changed, stateSaved := false, false
	// room.mu before roomSync.mu, for both documents (the lock order).
	r.mu.Lock()
	defer func() {
		r.mu.Unlock()
		for _, n := range notes {
			h.s.afterCommit(r, n.Op, h.result(r, n))
		}
		if stateSaved {
			r.markChanged()
		}
		if doc == docTraj && changed || stateSaved {
			h.s.pokeSync(r)
		}
	}()
	if r.deleted {
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	d := r.traj.Doc()
	if doc == docState {
		d = r.state.Doc()
	}
	advanced := false
	for _, m := range msgs {
		if !streamIDLess(rs.last[doc], m.ID) {
			continue
		}
		prev := rs.last[doc]
		rs.last[doc], advanced = m.ID, true
		if snap, ok := m.Values[fieldSnap].(string); ok {
			// A compacted stream's first entry (hubs_trim.go): what a
			// hub at or past upto has, saved whole.
			if upto, _ := m.Values[fieldUpto].(string); prev != "" && !streamIDLess(prev, upto) {
				continue
			}
			before := d.Heads()
			if err := d.LoadIncremental([]byte(snap)); err != nil {
				h.log.Error("refused a stream snapshot", "room", r.name, "doc", docNames[doc], "id", m.ID, "err", err)
				continue
			}
			if before.Equal(d.Heads()) {
				continue
			}
			changed = true
			if doc == docState {
				// Not this hub's to publish.
				_, hs, _, err := d.ChangesAfter(before)
				if err == nil {
					for _, hd := range hs {
						rs.fromStream[hd] = true
					}
				}
				continue
			}
			gen, _ := r.traj.Generation()
			r.feedMarkLocked(gen, r.traj.Heads())
			continue
		}
		raw, _ := m.Values[fieldMsg].(string)
		before := d.Heads()
		hs, err := d.ApplyChanges([]byte(raw), nil)
		if err != nil {
			h.log.Error("refused a stream entry", "room", r.name, "doc", docNames[doc], "id", m.ID, "err", err)
			continue
		}
		if before.Equal(d.Heads()) {
			continue
		}
		changed = true
		if doc == docState {
			for _, hd := range hs {
				rs.fromStream[hd] = true
			}
			continue
		}
		gen, _ := r.traj.Generation()
		r.feedMarkLocked(gen, r.traj.Heads())
		if s, _ := m.Values[fieldNote].(string); s != "" {
			var n commitNote
			if json.Unmarshal([]byte(s), &n) == nil {
				notes = append(notes, n)
			}
		}
	}
	if changed {
		var err error
		if doc == docTraj {
			err = r.persistTrajLocked()
		} else {
			err = persist(r.stateFile, r.state.Doc())
		}
		if err != nil {
			h.log.Error("persist room document", "room", r.name, "doc", docNames[doc], "err", err)
			return // the positions stay: read again after a restart
		}
		stateSaved = doc == docState
	}
	if advanced {
		if err := rs.save(h.s.opts.NoSync); err != nil {
			h.log.Error("save stream positions", "room", r.name, "err", err)
		}
	}
}

// result builds the commit result of another hub's commit from the note
// and this hub's replica.
func (h *hubSync) result(r *room, n commitNote) *wire.CommitResult {
	res := &wire.CommitResult{Generation: n.Gen}
	res.Length, _ = r.traj.Len()
	for _, f := range n.Frames {
		idx, err := r.traj.IndexOf(f[0])
		if err != nil {
			idx = -1
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		res.Frames = append(res.Frames, wire.FrameRef{ID: f[0], Index: idx, Version: v, Hash: f[2]})
	}
	return res
}

// publishState appends the state document's changes that are not in the
// stream yet.
func (h *hubSync) publishState(r *room) {
	rs := r.sync
	if rs == nil || r.isDeleted() {
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	chunks, hashes, heads, err := r.state.Doc().ChangesAfter(rs.published)
	if err != nil {
		h.log.Error("list state changes", "room", r.name, "err", err)
		rs.published = nil
		return
	}
	var out [][]byte
	for i, c := range chunks {
		if !rs.fromStream[hashes[i]] {
			out = append(out, c)
		}
	}
	if err := h.publish(r.name, rs.inc, docState, out); err != nil {
		if !rs.pubFailed {
			h.log.Warn("publish state changes", "room", r.name, "err", err)
		}
		rs.pubFailed = true
		return
	}
	rs.pubFailed = false
	for _, hd := range hashes {
		delete(rs.fromStream, hd)
	}
	if !rs.published.Equal(heads) {
		rs.published = heads
		if err := rs.save(h.s.opts.NoSync); err != nil {
			h.log.Error("save stream positions", "room", r.name, "err", err)
		}
	}
}

// publish appends changes to a document stream in batches.
func (h *hubSync) publish(room, inc string, doc int, chunks [][]byte) error {
	for len(chunks) > 0 {
		n := min(len(chunks), publishBatch)
		ctx, cancel := h.opCtx(h.s.ctx)
		err := h.rdb.XAdd(ctx, &redis.XAddArgs{Stream: h.docKey(room, inc, doc), Values: []string{fieldHub, h.s.hubID, fieldMsg, string(crdt.ChangesMessage(chunks[:n]))}}).Err()
		cancel()
		if err != nil {
			return err
		}
		chunks = chunks[n:]
	}
	return nil
}

// scriptRegister: KEYS rooms, roomlog, genkey; ARGV room, entry JSON, inc,
// generation, hub. Registers a room unless a live one of that name is
// registered, raising (never lowering: another hub may have raised it
// after Redis lost its data) the generation; replies {ok} or {exists,
// entry}.
var scriptRegister = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and not string.find(v, '"deleted":true', 1, true) then return {'exists', v} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local g = tonumber(redis.call('GET', KEYS[3]) or '-1')
if g < tonumber(ARGV[4]) then redis.call('SET', KEYS[3], ARGV[4]) end
redis.call('XADD', KEYS[2], '*', 'op', 'create', 'room', ARGV[1], 'inc', ARGV[3], 'meta', ARGV[2], 'hub', ARGV[5])
return {'ok'}
`)

// scriptUnregister: KEYS rooms, roomlog, genkey, trajectory stream, state
// stream; ARGV room, inc, tombstone, hub. Replies {ok} or {gone}.
var scriptUnregister = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v or string.find(v, '"deleted":true', 1, true) or not string.find(v, '"inc":"' .. ARGV[2] .. '"', 1, true) then return {'gone'} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
redis.call('XADD', KEYS[2], '*', 'op', 'delete', 'room', ARGV[1], 'inc', ARGV[2], 'hub', ARGV[4])
return {'ok'}
`)

// register records a new room in Redis; an existing live room of that name
// is returned as a *roomEntry with an errRoomExists.
func (h *hubSync) register(name string, e roomEntry, gen int64) (*roomEntry, error) {
	b, _ := json.Marshal(e)
	ctx, cancel := h.opCtx(h.s.ctx)
	defer cancel()
	res, err := scriptRegister.Run(ctx, h.rdb, []string{h.key("rooms"), h.key("roomlog"), h.genKey(name, e.Inc)}, name, string(b), e.Inc, gen, h.s.hubID).StringSlice()
	if err != nil {
		return nil, &framesync.Error{Kind: framesync.Unavailable, Op: "create room", Msg: "redis is unreachable: rooms cannot be created", Err: err}
	}
	if len(res) == 2 && res[0] == "exists" {
		var cur roomEntry
		if err := json.Unmarshal([]byte(res[1]), &cur); err != nil {
			return nil, &framesync.Error{Kind: framesync.Internal, Op: "create room", Msg: "malformed room entry in redis", Err: err}
		}
		return &cur, errRoomExists
	}
	return nil, nil
}

var errRoomExists = errors.New("room exists")

// unregister records the deletion of a room in Redis and drops its streams.
func (h *hubSync) unregister(name, inc string) error {
	b, _ := json.Marshal(roomEntry{Inc: inc, Deleted: true})
	ctx, cancel := h.opCtx(h.s.ctx)
	defer cancel()
	err := scriptUnregister.Run(ctx, h.rdb, []string{h.key("rooms"), h.key("roomlog"), h.genKey(name, inc), h.docKey(name, inc, docTraj), h.docKey(name, inc, docState)}, name, inc, string(b), h.s.hubID).Err()
	if err != nil {
		return &framesync.Error{Kind: framesync.Unavailable, Op: "delete room", Msg: "redis is unreachable: rooms cannot be deleted", Err: err}
	}
	return nil
}

// publishAll appends every change of a room's documents (a copy, a room
// this hub had before it joined the deployment, or every room after Redis
// lost its data), including changes that came from other hubs.
func (h *hubSync) publishAll(r *room) error {
	rs := r.sync
	for doc, d := range []*crdt.Doc{r.traj.Doc(), r.state.Doc()} {
		rs.mu.Lock()
		chunks, _, heads, err := d.ChangesAfter(nil)
		if err == nil {
			err = h.publish(r.name, rs.inc, doc, chunks)
		}
		if err == nil && doc == docState {
			rs.published = heads
			rs.pubFailed = false
			clear(rs.fromStream)
			err = rs.save(h.s.opts.NoSync)
		}
		rs.mu.Unlock()
		if err != nil {
			return fmt.Errorf("relay: publish room %s: %w", r.name, err)
		}
	}
	return nil
}

// start brings the hub's rooms in line with the deployment: deletions and
// creations it missed, rooms it has that the deployment does not (they are
// registered and published). With republish (after Redis lost its data)
// every room this hub shares with the deployment is published whole again.
func (h *hubSync) start(republish bool) error {
	ctx, cancel := context.WithTimeout(h.s.ctx, 30*time.Second)
	defer cancel()
	if republish {
		if err := h.raiseGens(ctx); err != nil {
			return fmt.Errorf("relay: raise room generations in redis: %w", err)
		}
		// The streams are new: read them from their start (stream IDs
		// come from the Redis clock, which may now be behind the old
		// ones); what was applied before is applied again harmlessly.
		h.logMu.Lock()
		h.mu.Lock()
		h.logLast = ""
		h.mu.Unlock()
		h.logMu.Unlock()
		h.s.mu.Lock()
		for _, r := range h.s.rooms {
			if r.sync != nil {
				r.sync.mu.Lock()
				r.sync.last = [2]string{}
				r.sync.mu.Unlock()
			}
		}
		h.s.mu.Unlock()
	}
	// What happened while this hub was away.
	if err := h.readLog(ctx, "start hub", "", func(err error) error { return fmt.Errorf("relay: read room log from redis: %w", err) }); err != nil {
		return err
	}
	if err := h.publishUsers(ctx); err != nil {
		return err
	}
	// The registry and the log entries that syncLog may apply meanwhile
	// (for a request on another goroutine) must not interleave.
	h.logMu.Lock()
	defer h.logMu.Unlock()
	reg, err := h.rdb.HGetAll(ctx, h.key("rooms")).Result()
	if err != nil {
		return fmt.Errorf("relay: read rooms from redis: %w", err)
	}
	live := map[string]roomEntry{}
	for name, v := range reg {
		var e roomEntry
		if json.Unmarshal([]byte(v), &e) == nil && !e.Deleted {
			live[name] = e
		}
	}
	h.s.mu.Lock()
	local := maps.Clone(h.s.rooms)
	h.s.mu.Unlock()
	for name, e := range live {
		r := local[name]
		switch {
		case r == nil:
		case r.sync.inc == e.Inc:
			if republish {
				if err := h.publishAll(r); err != nil {
					return err
				}
			}
			continue
		case r.sync.inc == "":
			if g, _ := r.traj.Generation(); g == 0 {
				// A room this hub made before it knew the deployment, with
				// no commits: adopt the deployment's (state changes merge).
				r.sync.mu.Lock()
				r.sync.inc = e.Inc
				err := r.sync.save(h.s.opts.NoSync)
				r.sync.mu.Unlock()
				if err != nil {
					return err
				}
				h.publishState(r)
				continue
			}
			h.log.Error("room exists in the deployment and on this hub with other commits; this hub's copy is set aside", "room", name)
			fallthrough
		default:
			if err := h.s.dropLocalRoom(name, true); err != nil {
				return err
			}
		}
		if err := h.s.installRoom(name, e); err != nil {
			return err
		}
	}
	for name, r := range local {
		if _, ok := live[name]; ok || r.isDeleted() {
			continue
		}
		inc := r.sync.inc
		if inc == "" {
			inc = randomID()
		}
		gen, _ := r.traj.Generation()
		cur, err := h.register(name, roomEntry{Inc: inc, Created: r.created, ACL: r.acl.Load()}, gen)
		if errors.Is(err, errRoomExists) && cur.Inc == r.sync.inc {
			// Registered meanwhile by another hub that has it too (both
			// publish it again after Redis lost its data).
			if err := h.publishAll(r); err != nil {
				return err
			}
			continue
		}
		if errors.Is(err, errRoomExists) { // registered meanwhile by another hub
			if err := h.s.dropLocalRoom(name, r.sync.inc == "" && gen > 0); err != nil {
				return err
			}
			if err := h.s.installRoom(name, *cur); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if r.sync.inc != inc {
			// Only at startup (rooms made before the hub joined): inc is
			// read without locks once the hub runs.
			r.sync.mu.Lock()
			r.sync.inc = inc
			err = r.sync.save(h.s.opts.NoSync)
			r.sync.mu.Unlock()
			if err != nil {
				return err
			}
		}
		if err := h.publishAll(r); err != nil {
			return err
		}
	}
	return nil
}

// applyRoomlog applies entries of the deployment log: room creations and
// deletions, users, revocations and access lists (hubs_auth.go).
func (h *hubSync) applyRoomlog(msgs []redis.XMessage) {
	h.logMu.Lock()
	defer h.logMu.Unlock()
	h.applyRoomlogLocked(msgs, "")
}

// applyRoomlogLocked applies msgs and returns the error of applying entry
// want, if it is among them (other errors are logged).
func (h *hubSync) applyRoomlogLocked(msgs []redis.XMessage, want string) error {
	if len(msgs) == 0 {
		return nil
	}
	var wantErr error
	for _, m := range msgs {
		h.mu.Lock()
		done := h.logLast != "" && !streamIDLess(h.logLast, m.ID)
		h.mu.Unlock()
		if done { // applied already, by syncLog
			continue
		}
		op, _ := m.Values[fieldOp].(string)
		name, _ := m.Values[fieldRoom].(string)
		inc, _ := m.Values[fieldInc].(string)
		h.s.mu.Lock()
		r := h.s.rooms[name]
		h.s.mu.Unlock()
		switch op {
		case "create":
			var e roomEntry
			meta, _ := m.Values[fieldMeta].(string)
			if json.Unmarshal([]byte(meta), &e) != nil || e.Inc != inc {
				h.log.Error("malformed room log entry", "id", m.ID)
				break
			}
			if r != nil && r.sync.inc == inc {
				break
			}
			if r != nil {
				if err := h.s.dropLocalRoom(name, false); err != nil {
					h.log.Error("drop replaced room", "room", name, "err", err)
					break
				}
			}
			if err := h.s.installRoom(name, e); err != nil {
				h.log.Error("create room of another hub", "room", name, "err", err)
			}
		case "delete":
			if r != nil && r.sync.inc == inc {
				if err := h.s.dropLocalRoom(name, false); err != nil {
					h.log.Error("delete room of another hub", "room", name, "err", err)
				}
			}
		case opUser, opRevoke, opACL:
			if err := h.applyShared(m, op); err != nil && m.ID == want {
				wantErr = err
			}
		}
		h.mu.Lock()
		h.logLast = m.ID
		h.mu.Unlock()
	}
	// One write for the batch: an entry applied again after a crash is
	// harmless (each checks or overwrites).
	h.mu.Lock()
	err := h.saveLocked()
	h.mu.Unlock()
	if err != nil {
		h.log.Error("save room log position", "err", err)
	}
	return wantErr
}

// loop reads every stream of the deployment until the hub closes.
func (h *hubSync) loop(ctx context.Context) {
	wait := 50 * time.Millisecond
	lastHubs := time.Now()
	lastEpoch, lastTrim := time.Now(), time.Now()
	for ctx.Err() == nil {
		if time.Since(lastHubs) > 5*time.Second {
			h.refreshHubs(ctx)
			lastHubs = time.Now()
		}
		if time.Since(lastTrim) > trimCheckEvery {
			h.trim(ctx)
			lastTrim = time.Now()
		}
		poked := false
		select {
		case <-h.recoverNow:
			poked = true
		default:
		}
		if poked || time.Since(lastEpoch) > epochCheckEvery {
			if err := h.recover(ctx); err != nil && ctx.Err() == nil {
				h.log.Warn("publish again after redis lost its data", "err", err)
			}
			lastEpoch = time.Now()
		}
		rooms := h.syncedRooms()
		h.mu.Lock()
		keys := []string{h.key("roomlog")}
		ids := []string{cmpID(h.logLast)}
		h.mu.Unlock()
		byKey := map[string]func([]redis.XMessage){}
		for _, r := range rooms {
			r.sync.mu.Lock()
			failed := r.sync.pubFailed
			r.sync.mu.Unlock()
			if failed {
				h.publishState(r)
			}
			for doc := range 2 {
				k := h.docKey(r.name, r.sync.inc, doc)
				r.sync.mu.Lock()
				ids = append(ids, cmpID(r.sync.last[doc]))
				r.sync.mu.Unlock()
				keys = append(keys, k)
				byKey[k] = func(msgs []redis.XMessage) { h.apply(r, doc, msgs) }
			}
		}
		res, err := h.rdb.XRead(ctx, &redis.XReadArgs{Streams: append(keys, ids...), Count: hubsReadCount, Block: hubsReadBlock}).Result()
		if errors.Is(err, redis.Nil) {
			wait = 50 * time.Millisecond
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.log.Warn("read streams from redis", "err", err)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			wait = min(2*wait, time.Second)
			continue
		}
		wait = 50 * time.Millisecond
		for _, st := range res {
			if st.Stream == keys[0] {
				h.applyRoomlog(st.Messages)
				continue
			}
			if f := byKey[st.Stream]; f != nil {
				f(st.Messages)
			}
		}
	}
}

func cmpID(id string) string {
	if id == "" {
		return "0-0"
	}
	return id
}
