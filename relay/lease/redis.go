package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"framesync"
)

// Defaults of RedisOptions.
const (
	DefaultRedisPrefix       = "framesync:"
	DefaultRedisTimeout      = 2 * time.Second
	DefaultRedisReapInterval = time.Second
)

const (
	// reapBatch is the most expired leases one reap script ends.
	reapBatch = 256
	// eventsHealthInterval is how long the event subscription may be
	// silent before it is pinged; a ping unanswered for as long again
	// makes it reconnect.
	eventsHealthInterval = time.Second
	// maxReserveRounds bounds Acquire's rounds of reserving fencing tokens
	// while other hubs move the counter.
	maxReserveRounds = 8
	// maxRetryWait caps the back-off of the background loops while Redis
	// is unreachable.
	maxRetryWait = time.Second
)

// RedisOptions configure a Redis backend. A nil *RedisOptions means the
// defaults.
type RedisOptions struct {
	// Prefix starts every key and the event channel, so several
	// deployments (or tests) can share one Redis. Hubs that serve the same
	// rooms use the same prefix. Empty means DefaultRedisPrefix.
	Prefix string
	// Tokens persists this hub's fencing token high-water marks: the floor
	// tokens restart from if Redis loses its counters (see the package
	// doc). Nil keeps the marks in memory only.
	Tokens TokenStore
	// Timeout bounds every operation against Redis, retries included, when
	// the caller's context has no earlier deadline. Zero means
	// DefaultRedisTimeout.
	Timeout time.Duration
	// ReapInterval is the longest time between two looks for expired
	// leases; the look is otherwise timed by the earliest known expiry.
	// Zero means DefaultRedisReapInterval.
	ReapInterval time.Duration
	// Logger receives outage and recovery messages. Nil discards them.
	Logger *slog.Logger
}

// Redis is the lease backend for several hubs sharing one Redis server:
// leases are keys set with SET NX PXAT, renewed and released by
// compare-and-set Lua scripts, with fencing tokens from a per-room counter
// that never goes below the floor this hub persists. Events of every hub's
// leases arrive over Redis pub/sub. See the package doc for the key layout
// and what is and is not guaranteed. It is safe for concurrent use. Close
// stops it.
type Redis struct {
	// Static after construction.
	client  *redis.Client
	addr    string
	prefix  string
	channel string
	tokens  TokenStore
	// sharedTokens: tokens is a SharedStore every hub reserves in.
	sharedTokens bool
	timeout      time.Duration
	interval     time.Duration
	log          *slog.Logger
	ctx          context.Context // canceled by Close
	cancel       context.CancelCauseFunc
	wake         chan struct{} // pokes reapLoop
	wg           sync.WaitGroup

	// Owned by eventLoop (and by NewRedis before it starts).
	view map[roomTarget]Grant // live grants as the events tell them
	seq  int64                // sequence number of the last event applied

	mu     sync.Mutex // guards the fields below; never held with redisRoom.mu
	rooms  map[string]*redisRoom
	ps     *redis.PubSub // the live event subscription; nil while down
	reapBy int64         // earliest expiry (Redis ms) reported to reapLoop since it last looked; 0 for none
	closed bool

	fanout // events
}

// redisRoom is this hub's fencing token bookkeeping for one room.
type redisRoom struct {
	mu       sync.Mutex // guards the fields below and serialises Reserve calls
	loaded   bool       // the mark was read from Tokens
	seen     int64      // highest token this hub granted, saw or loaded
	reserved int64      // durable mark in Tokens: tokens up to it may be granted
}

type roomTarget struct{ room, target string }

var _ Backend = (*Redis)(nil)

// NewRedis connects to the Redis at url (redis://[user:pass@]host:port/db,
// rediss:// for TLS, or unix://path), subscribes to lease events and
// starts the goroutine that reports expiries. It fails, with a
// framesync.Unavailable error, if Redis does not answer before ctx ends or
// within the operation timeout.
// Once running it survives Redis outages: operations fail with
// framesync.Unavailable meanwhile, and everything resumes when Redis is
// back.
func NewRedis(ctx context.Context, url string, opts *RedisOptions) (*Redis, error) {
	const op = "connect to redis"
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, &framesync.Error{Kind: framesync.BadInput, Op: op, Field: "url", Msg: "not a Redis URL (redis://host:port/db)", Err: err}
	}
	// Let every call's context deadline bound its socket reads and writes,
	// so an unanswering Redis costs at most Timeout.
	o.ContextTimeoutEnabled = true
	// Dial once per attempt: a refused connection fails the operation (after
	// go-redis's few command retries) instead of a dial loop filling the
	// whole Timeout.
	o.DialerRetries = 1
	var ro RedisOptions
	if opts != nil {
		ro = *opts
	}
	if ro.Prefix == "" {
		ro.Prefix = DefaultRedisPrefix
	}
	if strings.ContainsAny(ro.Prefix, " \t\r\n") {
		return nil, &framesync.Error{Kind: framesync.BadInput, Op: op, Field: "prefix", Msg: fmt.Sprintf("key prefix %q has white space", ro.Prefix)}
	}
	if ro.Timeout <= 0 {
		ro.Timeout = DefaultRedisTimeout
	}
	if ro.ReapInterval <= 0 {
		ro.ReapInterval = DefaultRedisReapInterval
	}
	if ro.Logger == nil {
		ro.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Redis{
		client:   redis.NewClient(o),
		addr:     o.Addr,
		prefix:   ro.Prefix,
		channel:  ro.Prefix + "events",
		tokens:   ro.Tokens,
		timeout:  ro.Timeout,
		interval: ro.ReapInterval,
		log:      ro.Logger.With("redis", o.Addr, "prefix", ro.Prefix),
		wake:     make(chan struct{}, 1),
		view:     map[roomTarget]Grant{},
		rooms:    map[string]*redisRoom{},
	}
	if sh, ok := ro.Tokens.(SharedStore); ok {
		r.sharedTokens = sh.Shared()
	}
	r.ctx, r.cancel = context.WithCancelCause(context.Background())
	sctx, cancel := r.opContext(ctx)
	ps, snap, err := r.subscribeEvents(sctx)
	cancel()
	if err != nil {
		err = r.opError(op, err)
		r.cancel(errors.New("lease: redis backend failed to start"))
		r.client.Close()
		return nil, err
	}
	r.ps = ps
	r.reconcile(snap, false)
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		r.eventLoop(ps)
	}()
	go func() {
		defer r.wg.Done()
		r.reapLoop()
	}()
	return r, nil
}

// Close stops the background goroutines, waits for them and closes the
// connections. Leases are left in Redis: they end by their TTL (or by
// another hub's ReleaseHolder), as they would if this hub died.
func (r *Redis) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	ps := r.ps
	r.ps = nil
	r.mu.Unlock()
	r.cancel(errRedisClosed)
	if ps != nil {
		_ = ps.Close() // unblocks eventLoop's read
	}
	r.wg.Wait()
	return r.client.Close()
}

var errRedisClosed = errors.New("lease: redis backend closed")

// Ping reports whether the backend can serve: Redis answers and the event
// subscription is up. Otherwise the error is framesync.Unavailable.
func (r *Redis) Ping(ctx context.Context) error {
	const op = "ping redis"
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	if err := r.client.Ping(ctx).Err(); err != nil {
		return r.opError(op, err)
	}
	r.mu.Lock()
	up := r.ps != nil
	r.mu.Unlock()
	if !up {
		return &framesync.Error{Kind: framesync.Unavailable, Op: op, Msg: fmt.Sprintf("the lease event subscription to redis at %s is down; reconnecting", r.addr)}
	}
	return nil
}

// opContext bounds ctx by the operation timeout.
func (r *Redis) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

// opError turns a failure to talk to Redis into a framesync error.
func (r *Redis) opError(op string, err error) error {
	if r.ctx.Err() != nil {
		return &framesync.Error{Kind: framesync.Unavailable, Op: op, Msg: "lease backend closed"}
	}
	var re redis.Error
	if errors.As(err, &re) && !transientReply(re.Error()) {
		return &framesync.Error{Kind: framesync.Internal, Op: op, Msg: "redis refused the lease script", Err: err}
	}
	return &framesync.Error{Kind: framesync.Unavailable, Op: op, Msg: fmt.Sprintf("redis at %s is unreachable or not answering; locks cannot change until it is back", r.addr), Err: err}
}

// transientReply says whether a Redis error reply means "not now" rather
// than a bug: loading, failing over, busy, out of memory, full.
func transientReply(msg string) bool {
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "OOM", "NOREPLICAS", "ERR max number of clients"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// checkRoom rejects room names that cannot be part of a key unambiguously.
// Hub room names (wire.CheckRoomName) always pass.
func checkRoom(room string) error {
	if room == "" || len(room) > 200 {
		return &framesync.Error{Kind: framesync.BadInput, Op: "lease", Field: "room", Msg: "room must be 1 to 200 characters"}
	}
	for i := 0; i < len(room); i++ {
		if c := room[i]; c <= ' ' || c > '~' || c == ':' {
			return &framesync.Error{Kind: framesync.BadInput, Op: "lease", Field: "room", Msg: fmt.Sprintf("room %q has a character that is not printable ASCII or is ':'", room)}
		}
	}
	return nil
}

// ms converts a positive TTL to whole milliseconds, rounding up.
func ms(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

func newNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// parseGrant decodes a lock value "<token> <nonce> <holder>" and an expiry
// in Redis milliseconds.
func parseGrant(room, target, v, exp string) (Grant, error) {
	f := strings.SplitN(v, " ", 3)
	if len(f) != 3 {
		return Grant{}, fmt.Errorf("malformed lock value %q", v)
	}
	return grantOf(room, target, f[0], f[2], exp)
}

// grantOf makes a grant from its parts as Redis has them.
func grantOf(room, target, token, holder, exp string) (Grant, error) {
	tok, err := strconv.ParseInt(token, 10, 64)
	if err != nil {
		return Grant{}, fmt.Errorf("malformed token %q", token)
	}
	e, err := parseMillis(exp)
	if err != nil {
		return Grant{}, err
	}
	return Grant{Room: room, Target: target, Holder: holder, Token: tok, Expires: time.UnixMilli(e)}, nil
}

// parseMillis parses a Redis score or integer reply in milliseconds.
func parseMillis(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64) // scores may come back as doubles
	if err != nil {
		return 0, fmt.Errorf("malformed time %q", s)
	}
	return int64(f), nil
}

// run runs a script with the key prefix as its first argument and returns
// its reply as strings.
func (r *Redis) run(ctx context.Context, op string, s *redis.Script, args ...any) ([]string, error) {
	v, err := s.Run(ctx, r.client, nil, append([]any{r.prefix}, args...)...).Slice()
	if err != nil {
		return nil, r.opError(op, err)
	}
	out := make([]string, len(v))
	for i, x := range v {
		str, ok := x.(string)
		if !ok {
			return nil, badReply(op, fmt.Errorf("reply element %T", x))
		}
		out[i] = str
	}
	return out, nil
}

func badReply(op string, err error) error {
	return &framesync.Error{Kind: framesync.Internal, Op: op, Msg: "unexpected reply from the lease script", Err: err}
}

// heldErr decodes the current holder's grant of a "held" reply.
func heldErr(op, room, target string, res []string) error {
	if len(res) != 3 {
		return badReply(op, fmt.Errorf("held reply %q", res))
	}
	g, err := parseGrant(room, target, res[1], res[2])
	if err != nil {
		return badReply(op, err)
	}
	return &HeldError{Grant: g}
}

// room returns this hub's token bookkeeping for room, made on first use.
func (r *Redis) room(room string) *redisRoom {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.rooms[room]
	if st == nil {
		st = &redisRoom{}
		r.rooms[room] = st
	}
	return st
}

// roomState returns this hub's token bookkeeping for room, loading the
// persisted mark on first use; fresh says it was loaded by this call.
func (r *Redis) roomState(room string) (st *redisRoom, fresh bool, err error) {
	st = r.room(room)
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.loaded && r.tokens != nil {
		hwm, err := r.tokens.Load(room)
		if err != nil {
			return nil, false, err
		}
		st.seen = max(st.seen, hwm)
		st.reserved = hwm
		st.loaded = true
		fresh = true
	}
	return st, fresh, nil
}

// reload raises the floor of room to the mark in the token store, which
// other hubs sharing the store may have raised, or which this hub reserved
// beyond the tokens it knows of. Acquire calls it when the room's counter
// is missing in Redis.
func (r *Redis) reload(st *redisRoom, room string) error {
	hwm, err := r.tokens.Load(room)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.seen = max(st.seen, hwm)
	st.reserved = max(st.reserved, hwm)
	return nil
}

// bounds returns the floor (every token this hub knows of is at most it)
// and the limit (the highest token it may grant without reserving more;
// -1 for no token store) of room.
func (st *redisRoom) bounds(haveStore bool) (floor, limit int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !haveStore {
		return st.seen, -1
	}
	return st.seen, st.reserved
}

// see raises the floor to tok.
func (st *redisRoom) see(tok int64) {
	st.mu.Lock()
	st.seen = max(st.seen, tok)
	st.mu.Unlock()
}

// observe raises the floor of room to tok, reserving durably when tok is
// above the reserved mark (a token another hub granted).
func (r *Redis) observe(room string, tok int64) error {
	if r.sharedTokens {
		// The granting hub reserved it in the store every hub shares:
		// only the floor in memory moves (no store I/O in the event loop).
		r.room(room).see(tok)
		return nil
	}
	st, _, err := r.roomState(room)
	if err != nil {
		return err
	}
	st.see(tok)
	return r.reserve(st, room, tok)
}

// reserve makes sure tokens up to need are durably reserved for room.
func (r *Redis) reserve(st *redisRoom, room string, need int64) error {
	if r.tokens == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if need <= st.reserved {
		return nil
	}
	upTo := need + tokenBlock - 1
	if err := r.tokens.Reserve(room, upTo); err != nil {
		return fmt.Errorf("reserve fencing tokens: %w", err)
	}
	st.reserved = upTo
	return nil
}

// Acquire implements Backend.
func (r *Redis) Acquire(ctx context.Context, room, target, holder string, ttl time.Duration) (Grant, error) {
	const op = "acquire lock"
	if err := checkRoom(room); err != nil {
		return Grant{}, err
	}
	if err := CheckTarget(target); err != nil {
		return Grant{}, err
	}
	if err := checkTTL(op, ttl); err != nil {
		return Grant{}, err
	}
	if holder == "" {
		return Grant{}, &framesync.Error{Kind: framesync.BadInput, Op: op, Field: "holder", Msg: "empty holder"}
	}
	st, fresh, err := r.roomState(room)
	if err != nil {
		return Grant{}, err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	reloaded := r.tokens == nil || fresh // nothing to reload from, or just loaded
	for range maxReserveRounds {
		floor, limit := st.bounds(r.tokens != nil)
		res, err := r.run(ctx, op, scriptAcquire, room, target, holder, ms(ttl), newNonce(), floor, limit, reloaded)
		if err != nil {
			return Grant{}, err
		}
		switch {
		case len(res) == 3 && res[0] == "ok":
			g, err := parseGrant(room, target, res[1], res[2])
			if err != nil {
				return Grant{}, badReply(op, err)
			}
			st.see(g.Token) // within the reserved block: nothing to persist
			return g, nil
		case len(res) > 0 && res[0] == "held":
			return Grant{}, heldErr(op, room, target, res)
		case len(res) == 2 && res[0] == "need":
			need, err := strconv.ParseInt(res[1], 10, 64)
			if err != nil {
				return Grant{}, badReply(op, err)
			}
			if err := r.reserve(st, room, need); err != nil {
				return Grant{}, err
			}
		case len(res) == 1 && res[0] == "floor":
			if err := r.reload(st, room); err != nil {
				return Grant{}, err
			}
			reloaded = true
		default:
			return Grant{}, badReply(op, fmt.Errorf("reply %q", res))
		}
	}
	return Grant{}, &framesync.Error{Kind: framesync.Unavailable, Op: op, Msg: "other hubs kept moving the fencing token counter while this hub reserved tokens; try again"}
}

// Renew implements Backend.
func (r *Redis) Renew(ctx context.Context, room, target, holder string, token int64, ttl time.Duration) (Grant, error) {
	const op = "renew lock"
	if err := checkTTL(op, ttl); err != nil {
		return Grant{}, err
	}
	if err := checkRoom(room); err != nil {
		return Grant{}, err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	res, err := r.run(ctx, op, scriptRenew, room, target, holder, token, ms(ttl))
	if err != nil {
		return Grant{}, err
	}
	switch {
	case len(res) == 3 && res[0] == "ok":
		g, err := parseGrant(room, target, res[1], res[2])
		if err != nil {
			return Grant{}, badReply(op, err)
		}
		return g, nil
	case len(res) > 0 && res[0] == "held":
		return Grant{}, heldErr(op, room, target, res)
	case len(res) == 1 && res[0] == "gone":
		return Grant{}, expiredErr(op, target, token)
	}
	return Grant{}, badReply(op, fmt.Errorf("reply %q", res))
}

// Release implements Backend.
func (r *Redis) Release(ctx context.Context, room, target, holder string, token int64) error {
	const op = "release lock"
	if err := checkRoom(room); err != nil {
		return err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	res, err := r.run(ctx, op, scriptRelease, room, target, holder, token)
	if err != nil {
		return err
	}
	switch {
	case len(res) == 1 && res[0] == "ok":
		return nil
	case len(res) > 0 && res[0] == "held":
		return heldErr(op, room, target, res)
	}
	return badReply(op, fmt.Errorf("reply %q", res))
}

// ReleaseHolder implements Backend. It ends the leases that Redis lists
// for holder under this prefix, whichever hub granted them.
func (r *Redis) ReleaseHolder(ctx context.Context, holder string) ([]Grant, error) {
	const op = "release holder"
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	res, err := r.run(ctx, op, scriptReleaseHolder, holder)
	if err != nil {
		return nil, err
	}
	if len(res)%4 != 0 {
		return nil, badReply(op, fmt.Errorf("%d elements", len(res)))
	}
	var out []Grant
	for i := 0; i < len(res); i += 4 {
		g, err := parseGrant(res[i], res[i+1], res[i+2], res[i+3])
		if err != nil {
			return nil, badReply(op, err)
		}
		out = append(out, g)
	}
	sortGrants(out)
	return out, nil
}

// get returns the live grant of target, ok false if there is none.
func (r *Redis) get(ctx context.Context, op, room, target string) (Grant, bool, error) {
	if err := checkRoom(room); err != nil {
		return Grant{}, false, err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	res, err := r.run(ctx, op, scriptGet, room, target)
	if err != nil {
		return Grant{}, false, err
	}
	switch {
	case len(res) == 1 && res[0] == "gone":
		return Grant{}, false, nil
	case len(res) == 3 && res[0] == "ok":
		g, err := parseGrant(room, target, res[1], res[2])
		if err != nil {
			return Grant{}, false, badReply(op, err)
		}
		return g, true, nil
	}
	return Grant{}, false, badReply(op, fmt.Errorf("reply %q", res))
}

// Check implements Backend. Redis decides whether the lease is live, on
// its own clock, in the same step that reads the token.
func (r *Redis) Check(ctx context.Context, room, target string, token int64) (Grant, error) {
	const op = "check lock"
	g, ok, err := r.get(ctx, op, room, target)
	if err != nil {
		return Grant{}, err
	}
	if !ok {
		return Grant{}, expiredErr(op, target, token)
	}
	if g.Token != token {
		return Grant{}, &HeldError{Grant: g}
	}
	return g, nil
}

// Get implements Backend.
func (r *Redis) Get(ctx context.Context, room, target string) (Grant, bool, error) {
	return r.get(ctx, "get lock", room, target)
}

// List implements Backend.
func (r *Redis) List(ctx context.Context, room string) ([]Grant, error) {
	const op = "list locks"
	if err := checkRoom(room); err != nil {
		return nil, err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	res, err := r.run(ctx, op, scriptList, room)
	if err != nil {
		return nil, err
	}
	if len(res)%3 != 0 {
		return nil, badReply(op, fmt.Errorf("%d elements", len(res)))
	}
	var out []Grant
	for i := 0; i < len(res); i += 3 {
		g, err := parseGrant(room, res[i], res[i+1], res[i+2])
		if err != nil {
			return nil, badReply(op, err)
		}
		out = append(out, g)
	}
	sortGrants(out)
	return out, nil
}

// DropRoom implements Backend. The room's token counter stays in Redis
// (and its mark in Tokens), so a re-created room continues above it.
func (r *Redis) DropRoom(ctx context.Context, room string) error {
	const op = "drop room leases"
	if err := checkRoom(room); err != nil {
		return err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	_, err := r.run(ctx, op, scriptDropRoom, room)
	return err
}

// subscribeEvents opens a new subscription to the event channel, waits
// for Redis to confirm it and then takes a snapshot of the live grants:
// every event after the snapshot's sequence number will arrive on the
// subscription.
func (r *Redis) subscribeEvents(ctx context.Context) (*redis.PubSub, []string, error) {
	ps := r.client.Subscribe(ctx)
	if err := ps.Subscribe(ctx, r.channel); err != nil {
		_ = ps.Close()
		return nil, nil, err
	}
	for {
		wait := r.timeout
		if d, ok := ctx.Deadline(); ok {
			wait = time.Until(d)
		}
		if wait <= 0 {
			_ = ps.Close()
			return nil, nil, context.DeadlineExceeded
		}
		msg, err := ps.ReceiveTimeout(ctx, wait)
		if err != nil {
			_ = ps.Close()
			return nil, nil, err
		}
		if s, ok := msg.(*redis.Subscription); ok && s.Kind == "subscribe" && s.Channel == r.channel {
			break
		}
	}
	snap, err := r.run(ctx, "subscribe to lease events", scriptSnapshot)
	if err != nil {
		_ = ps.Close()
		return nil, nil, err
	}
	return ps, snap, nil
}

// setSubscription records the live subscription (nil while down). It
// returns false if the backend is closed, so ps must be closed by the
// caller.
func (r *Redis) setSubscription(ps *redis.PubSub) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.ps = ps
	return true
}

// eventLoop receives lease events from Redis and hands them to
// subscribers, resubscribing (and reconciling) after every interruption.
func (r *Redis) eventLoop(ps *redis.PubSub) {
	wait := 50 * time.Millisecond
	for {
		err := r.receive(ps)
		_ = ps.Close()
		if !r.setSubscription(nil) || r.ctx.Err() != nil {
			return
		}
		r.log.Warn("lease events from redis interrupted; resubscribing", "err", err)
		for {
			t := time.NewTimer(wait)
			select {
			case <-r.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			wait = min(2*wait, maxRetryWait)
			ctx, cancel := r.opContext(r.ctx)
			p, snap, err := r.subscribeEvents(ctx)
			cancel()
			if err != nil {
				continue
			}
			if !r.setSubscription(p) {
				_ = p.Close()
				return
			}
			if err := r.reconcile(snap, true); err != nil {
				r.log.Error("lease event snapshot", "err", err)
			}
			ps = p
			wait = 50 * time.Millisecond
			r.log.Info("lease events from redis restored")
			break
		}
	}
}

// errEventGap says events were lost: the sequence numbers jumped.
var errEventGap = errors.New("lease events were lost")

// receive handles messages of ps until it fails.
func (r *Redis) receive(ps *redis.PubSub) error {
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(r.ctx, eventsHealthInterval)
		if r.ctx.Err() != nil {
			return r.ctx.Err()
		}
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return err
			}
			if pinged {
				return errors.New("redis did not answer a ping on the event subscription")
			}
			if err := ps.Ping(r.ctx); err != nil {
				return err
			}
			pinged = true
			continue
		}
		pinged = false
		m, ok := msg.(*redis.Message)
		if !ok {
			continue // *redis.Pong, *redis.Subscription
		}
		err = r.handle(m.Payload)
		if errors.Is(err, errEventGap) {
			ctx, cancel := r.opContext(r.ctx)
			snap, serr := r.run(ctx, "resync lease events", scriptSnapshot)
			cancel()
			if serr != nil {
				return serr
			}
			if err := r.reconcile(snap, true); err != nil {
				return err
			}
			err = r.handle(m.Payload) // after the snapshot: applied or already in it
		}
		if err != nil {
			r.log.Error("lease event", "payload", m.Payload, "err", err)
		}
	}
}

// handle applies one event "<seq> <kind> <room> <target> <token> <exp>
// <holder>" to the view and reports it.
func (r *Redis) handle(payload string) error {
	f := strings.SplitN(payload, " ", 7)
	if len(f) != 7 {
		return fmt.Errorf("malformed lease event %q", payload)
	}
	seq, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return fmt.Errorf("malformed lease event %q", payload)
	}
	if seq <= r.seq {
		return nil // already in the snapshot
	}
	if seq != r.seq+1 {
		return errEventGap
	}
	var k EventKind
	switch f[1] {
	case "acquired":
		k = Acquired
	case "renewed":
		k = Renewed
	case "released":
		k = Released
	case "expired":
		k = Expired
	default:
		return fmt.Errorf("unknown lease event %q", payload)
	}
	g, err := grantOf(f[2], f[3], f[4], f[6], f[5])
	if err != nil {
		return err
	}
	r.seq = seq
	key := roomTarget{g.Room, g.Target}
	switch k {
	case Acquired, Renewed:
		r.view[key] = g
		r.pokeReaper(g.Expires.UnixMilli())
	case Released, Expired:
		if cur, ok := r.view[key]; ok && cur.Token == g.Token {
			delete(r.view, key)
		}
	}
	if err := r.observe(g.Room, g.Token); err != nil {
		r.log.Error("raise fencing token floor", "room", g.Room, "token", g.Token, "err", err)
	}
	r.emit(k, g)
	return nil
}

// reconcile replaces the view by a snapshot "<now> <seq> (<room> <target>
// <value> <exp>)*". With report, it tells subscribers what changed: grants
// gone as Expired, new grants as Acquired, moved expiries as Renewed.
func (r *Redis) reconcile(snap []string, report bool) error {
	if len(snap) < 2 || (len(snap)-2)%4 != 0 {
		return fmt.Errorf("malformed snapshot of %d elements", len(snap))
	}
	seq, err := strconv.ParseInt(snap[1], 10, 64)
	if err != nil {
		return fmt.Errorf("malformed snapshot sequence %q", snap[1])
	}
	view := make(map[roomTarget]Grant, (len(snap)-2)/4)
	for i := 2; i < len(snap); i += 4 {
		g, err := parseGrant(snap[i], snap[i+1], snap[i+2], snap[i+3])
		if err != nil {
			return err
		}
		view[roomTarget{g.Room, g.Target}] = g
	}
	if report {
		var gone, added, moved []Grant
		for k, g := range r.view {
			if n, ok := view[k]; !ok || n.Token != g.Token {
				gone = append(gone, g)
			}
		}
		for k, n := range view {
			g, ok := r.view[k]
			switch {
			case !ok || g.Token != n.Token:
				added = append(added, n)
			case !g.Expires.Equal(n.Expires):
				moved = append(moved, n)
			}
		}
		sortGrants(gone)
		sortGrants(added)
		sortGrants(moved)
		for _, g := range gone {
			r.emit(Expired, g)
		}
		for _, g := range added {
			r.emit(Acquired, g)
		}
		for _, g := range moved {
			r.emit(Renewed, g)
		}
	}
	for _, g := range view {
		if err := r.observe(g.Room, g.Token); err != nil {
			r.log.Error("raise fencing token floor", "room", g.Room, "token", g.Token, "err", err)
		}
	}
	r.view, r.seq = view, seq
	r.pokeReaper(1) // look again now: the earliest expiry may have changed
	return nil
}

// pokeReaper tells reapLoop about an expiry (Redis ms) it may not know.
func (r *Redis) pokeReaper(exp int64) {
	r.mu.Lock()
	if r.reapBy == 0 || exp < r.reapBy {
		r.reapBy = exp
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// reapLoop ends expired leases and publishes their Expired events. Every
// hub runs one; the reap script is atomic, so each expiry is reported
// once, by whichever hub looks first. It looks when the earliest known
// lease is due, and at least every ReapInterval (which also covers leases
// it was not told about).
func (r *Redis) reapLoop() {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var (
		redisNow int64     // Redis time (ms) at the last look
		base     time.Time // local time of the last look
		deadline time.Time // when the timer fires
		wait     = 50 * time.Millisecond
		down     bool // the last look failed (to log transitions only)
	)
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.wake:
			r.mu.Lock()
			exp := r.reapBy
			r.reapBy = 0
			r.mu.Unlock()
			if exp == 0 || base.IsZero() {
				continue
			}
			// Redis deletes a key once its time is past its expiry.
			at := base.Add(time.Duration(exp+1-redisNow) * time.Millisecond)
			if at.Before(deadline) {
				deadline = at
				timer.Reset(max(time.Until(at), 0))
			}
			continue
		case <-timer.C:
		}
		ctx, cancel := r.opContext(r.ctx)
		res, err := r.run(ctx, "reap leases", scriptReap, reapBatch)
		cancel()
		if err == nil && len(res) != 2 {
			err = badReply("reap leases", fmt.Errorf("reply %q", res))
		}
		var now, next int64
		if err == nil {
			now, err = parseMillis(res[0])
		}
		if err == nil && res[1] != "" {
			next, err = parseMillis(res[1])
		}
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			if !down {
				r.log.Warn("cannot look for expired leases", "err", err)
				down = true
			}
			wait = min(2*wait, maxRetryWait, r.interval)
			deadline = time.Now().Add(wait)
			timer.Reset(wait)
			continue
		}
		if down {
			r.log.Info("looking for expired leases again")
			down = false
		}
		wait = 50 * time.Millisecond
		redisNow, base = now, time.Now()
		d := r.interval
		if res[1] != "" {
			d = min(d, time.Duration(next+1-now)*time.Millisecond)
		}
		d = max(d, time.Millisecond)
		deadline = base.Add(d)
		timer.Reset(d)
	}
}

// The Lua scripts. Every script gets the key prefix as ARGV[1]. Keys, for
// prefix P, room R (no ':' or space), target T (no space) and holder H:
//
//	P room:R:lock:T  "<token> <nonce> <holder>", expiring at the lease's end (SET NX PXAT)
//	P room:R:token   the last fencing token granted in R
//	P room:R:grants  hash T -> lock value: index of R's grants, may hold ended ones until reaped
//	P expiries       sorted set "R T" -> expiry (Redis ms): what to reap when
//	P holder:H       set of "R T" held by H, for ReleaseHolder
//	P seq            sequence number of the last event
//	P events         pub/sub channel: "<seq> <kind> <room> <target> <token> <exp> <holder>"
//
// A lease is live exactly while its lock key exists with the value the
// index names; Redis itself deletes the key at its expiry, whether or not
// any hub is running. The index, the expiry set and the holder sets only
// serve List, ReleaseHolder, DropRoom and expiry events, and are cleaned
// by whichever script next touches the target (acquire, renew, release,
// reap). Scripts build key names themselves, so this needs one Redis
// server (or a primary), not Redis Cluster.
const luaPrelude = `
local P = ARGV[1]
local EXP = P .. 'expiries'
local function int(n) return string.format('%d', n) end
local function lockkey(room, target) return P .. 'room:' .. room .. ':lock:' .. target end
local function grantskey(room) return P .. 'room:' .. room .. ':grants' end
local function tokenkey(room) return P .. 'room:' .. room .. ':token' end
local function holderkey(holder) return P .. 'holder:' .. holder end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function parse(v)
  return string.match(v, '^(%d+) %x+ (.*)$')
end
local function publish(kind, room, target, token, exp, holder)
  local seq = redis.call('INCR', P .. 'seq')
  redis.call('PUBLISH', P .. 'events', int(seq) .. ' ' .. kind .. ' ' .. room .. ' ' .. target .. ' ' .. token .. ' ' .. exp .. ' ' .. holder)
end
local function forget(room, target, v)
  local member = room .. ' ' .. target
  local exp = redis.call('ZSCORE', EXP, member) or '0'
  redis.call('ZREM', EXP, member)
  redis.call('HDEL', grantskey(room), target)
  local token, holder = parse(v)
  redis.call('SREM', holderkey(holder), member)
  return token, holder, exp
end
local function reap(room, target)
  local v = redis.call('HGET', grantskey(room), target)
  if not v then
    redis.call('ZREM', EXP, room .. ' ' .. target)
    return
  end
  if redis.call('GET', lockkey(room, target)) == v then return end
  local token, holder, exp = forget(room, target, v)
  publish('expired', room, target, token, exp, holder)
end
local function expiry(room, target)
  return redis.call('ZSCORE', EXP, room .. ' ' .. target) or '0'
end
local function extend(room, target, lk, token, holder, exp)
  redis.call('PEXPIREAT', lk, exp)
  redis.call('ZADD', EXP, exp, room .. ' ' .. target)
  publish('renewed', room, target, token, exp, holder)
end
local function drop(room, target, lk, v)
  redis.call('DEL', lk)
  local t, h, exp = forget(room, target, v)
  publish('released', room, target, t, exp, h)
  return exp
end
`

// scriptAcquire: ARGV room, target, holder, ttl ms, nonce, floor, limit
// (-1: none), reloaded (1: the floor is fresh from the token store).
// Replies {ok, value, exp}, {held, value, exp}, {need, token}: the token
// to grant is above limit, reserve it and call again, or {floor}: the
// room has no counter (new, or Redis lost it), reload the floor from the
// token store and call again.
var scriptAcquire = redis.NewScript(luaPrelude + `
local room, target, holder = ARGV[2], ARGV[3], ARGV[4]
local ttl, floor, limit = tonumber(ARGV[5]), tonumber(ARGV[7]), tonumber(ARGV[8])
local lk = lockkey(room, target)
local member = room .. ' ' .. target
local now = now_ms()
local v = redis.call('GET', lk)
if v then
  local token, h = parse(v)
  if h ~= holder then return {'held', v, expiry(room, target)} end
  local exp = int(now + ttl)
  extend(room, target, lk, token, holder, exp)
  return {'ok', v, exp}
end
reap(room, target)
local last = redis.call('GET', tokenkey(room))
if not last and ARGV[9] ~= '1' then return {'floor'} end
local token = math.max(tonumber(last or '0'), floor) + 1
if limit >= 0 and token > limit then return {'need', int(token)} end
redis.call('SET', tokenkey(room), int(token))
v = int(token) .. ' ' .. ARGV[6] .. ' ' .. holder
local exp = int(now + ttl)
if not redis.call('SET', lk, v, 'NX', 'PXAT', exp) then
  return redis.error_reply('lease: lock key appeared during acquire')
end
redis.call('HSET', grantskey(room), target, v)
redis.call('ZADD', EXP, exp, member)
redis.call('SADD', holderkey(holder), member)
publish('acquired', room, target, int(token), exp, holder)
return {'ok', v, exp}
`)

// scriptRenew: ARGV room, target, holder, token, ttl ms. Replies {ok,
// value, exp}, {held, value, exp} or {gone}.
var scriptRenew = redis.NewScript(luaPrelude + `
local room, target, holder, token = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local lk = lockkey(room, target)
local v = redis.call('GET', lk)
if not v then
  reap(room, target)
  return {'gone'}
end
local t, h = parse(v)
if h ~= holder or t ~= token then return {'held', v, expiry(room, target)} end
local exp = int(now_ms() + tonumber(ARGV[6]))
extend(room, target, lk, t, h, exp)
return {'ok', v, exp}
`)

// scriptRelease: ARGV room, target, holder, token. Replies {ok} or {held,
// value, exp}. Compare-and-delete: only the holder's lease under its token
// goes; an older token of a lease that ended is not an error.
var scriptRelease = redis.NewScript(luaPrelude + `
local room, target, holder, token = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local lk = lockkey(room, target)
local v = redis.call('GET', lk)
if not v then
  reap(room, target)
  return {'ok'}
end
local t, h = parse(v)
if h ~= holder or t ~= token then
  if tonumber(token) < tonumber(t) then return {'ok'} end
  return {'held', v, expiry(room, target)}
end
drop(room, target, lk, v)
return {'ok'}
`)

// scriptGet: ARGV room, target. Replies {ok, value, exp} or {gone}.
var scriptGet = redis.NewScript(luaPrelude + `
local v = redis.call('GET', lockkey(ARGV[2], ARGV[3]))
if not v then return {'gone'} end
return {'ok', v, expiry(ARGV[2], ARGV[3])}
`)

// scriptList: ARGV room. Replies {target, value, exp}* of the live grants.
var scriptList = redis.NewScript(luaPrelude + `
local room = ARGV[2]
local out = {}
local all = redis.call('HGETALL', grantskey(room))
for i = 1, #all, 2 do
  local target, v = all[i], all[i + 1]
  if redis.call('GET', lockkey(room, target)) == v then
    table.insert(out, target)
    table.insert(out, v)
    table.insert(out, expiry(room, target))
  end
end
return out
`)

// scriptReleaseHolder: ARGV holder. Replies {room, target, value, exp}*
// of the leases released.
var scriptReleaseHolder = redis.NewScript(luaPrelude + `
local holder = ARGV[2]
local hk = holderkey(holder)
local out = {}
for _, member in ipairs(redis.call('SMEMBERS', hk)) do
  local room, target = string.match(member, '^(%S+) (%S+)$')
  local lk = lockkey(room, target)
  local v = redis.call('GET', lk)
  if v then
    local _, h = parse(v)
    if h == holder then
      local exp = drop(room, target, lk, v)
      table.insert(out, room)
      table.insert(out, target)
      table.insert(out, v)
      table.insert(out, exp)
    end
  else
    reap(room, target)
  end
end
redis.call('DEL', hk)
return out
`)

// scriptDropRoom: ARGV room. Ends every lease of the room; keeps its token
// counter.
var scriptDropRoom = redis.NewScript(luaPrelude + `
local room = ARGV[2]
local all = redis.call('HGETALL', grantskey(room))
for i = 1, #all, 2 do
  local target, v = all[i], all[i + 1]
  local lk = lockkey(room, target)
  if redis.call('GET', lk) == v then
    drop(room, target, lk, v)
  else
    local t, h, exp = forget(room, target, v)
    publish('expired', room, target, t, exp, h)
  end
end
return {}
`)

// scriptReap: ARGV batch size. Ends the leases whose time has passed,
// publishing Expired for each. Replies {now, next}: Redis time and the
// earliest expiry still pending (empty for none), both in ms.
var scriptReap = redis.NewScript(luaPrelude + `
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', EXP, '-inf', '(' .. int(now), 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local room, target = string.match(member, '^(%S+) (%S+)$')
  local lk = lockkey(room, target)
  local v = redis.call('HGET', grantskey(room), target)
  if v and redis.call('GET', lk) == v then
    -- Still live: the key outlives its score by the script's clock
    -- snapshot, or lost its expiry. Look again when it is due.
    local pt = redis.call('PTTL', lk)
    if pt < 0 then pt = 60000 end
    redis.call('ZADD', EXP, int(now + math.max(pt, 1)), member)
  else
    reap(room, target)
  end
end
local first = redis.call('ZRANGE', EXP, 0, 0, 'WITHSCORES')
return {int(now), first[2] or ''}
`)

// scriptSnapshot: no ARGV. Replies {now, seq, (room, target, value, exp)*}
// of every live grant under the prefix.
var scriptSnapshot = redis.NewScript(luaPrelude + `
local out = {int(now_ms()), redis.call('GET', P .. 'seq') or '0'}
local all = redis.call('ZRANGE', EXP, 0, -1, 'WITHSCORES')
for i = 1, #all, 2 do
  local room, target = string.match(all[i], '^(%S+) (%S+)$')
  local v = redis.call('HGET', grantskey(room), target)
  if v and redis.call('GET', lockkey(room, target)) == v then
    table.insert(out, room)
    table.insert(out, target)
    table.insert(out, v)
    table.insert(out, all[i + 1])
  end
end
return out
`)
