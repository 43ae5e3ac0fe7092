package relay

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"framesync"
	"framesync/blobstore"
	"framesync/crdt"
	"framesync/relay/lease"
	"framesync/relay/wire"
)

// DefaultRoom is the room every hub has.
const DefaultRoom = "default"

// Options configure a Server. Dir and Blobs are required; the rest have
// defaults.
type Options struct {
	// Dir is the hub's data directory: room documents, hub identity, fencing
	// token high-water marks.
	Dir string
	// Blobs stores frame data.
	Blobs blobstore.Store
	// Leases holds locks and presenter tokens. Nil means RedisURL's
	// backend if set, else an embedded in-process backend; both persist
	// fencing token high-water marks under Dir/leases.
	Leases lease.Backend
	// RedisURL (redis://host:port/db) makes the hub keep locks, presenter
	// tokens and fencing counters in Redis, shared with every hub using
	// the same Redis and RedisPrefix (lease.NewRedis). While Redis is
	// unreachable the hub is not ready (/readyz 503) and refuses commits
	// and lock requests with an "unavailable" error; reads go on.
	RedisURL string
	// RedisPrefix starts the hub's Redis keys; empty means
	// lease.DefaultRedisPrefix. Hubs serving the same rooms share it.
	RedisPrefix string
	// MaxUpload is the largest request body accepted, in bytes. Zero means
	// 500 MB.
	MaxUpload int64
	// MaxMessage is the largest control channel message accepted, in
	// bytes. Zero means 16 MiB.
	MaxMessage int64
	// SendQueue is the number of messages queued for one WebSocket
	// connection before it is dropped as too slow. Zero means 1024.
	SendQueue int
	// PresenterTTL is how long a presenter token lives without renewal.
	// Zero means 5 s.
	PresenterTTL time.Duration
	// Logger receives the hub's logs. Nil discards them.
	Logger *slog.Logger
	// NoSync skips fsync of room documents (tests and benchmarks only).
	NoSync bool
	// Auth turns access control on; nil is local mode (everyone may do
	// everything).
	Auth *AuthOptions
	// Limits bound what one client may ask of the hub; zero fields take
	// the defaults of DefaultLimits.
	Limits Limits
	// UI serves the browser UI: every GET outside /api/ and the health
	// and metrics routes (package web);
	// nil serves none.
	UI http.Handler
	// P2P starts a libp2p host: room directory and circuit relay for
	// members; nil runs none.
	P2P *P2POptions
}

// Limits bound what one client may ask of the hub. Every refusal names
// the limit in its error message. MaxUpload and MaxMessage in Options
// bound request bodies and control messages.
type Limits struct {
	// FramesPerRequest bounds the frames of one commit and of one range
	// request.
	FramesPerRequest int
	// StateBytes bounds a room's state document (as stored); changes to a
	// room over it are refused.
	StateBytes int64
	// RoomsPerUser bounds the rooms a user may create (with access
	// control; the hub admin is exempt).
	RoomsPerUser int
	// ConnsPerAddr bounds the WebSocket connections from one address.
	ConnsPerAddr int
	// RequestsPerSecond and Burst bound the HTTP requests per token (per
	// address for requests without one): a token bucket.
	RequestsPerSecond float64
	Burst             int
}

// DefaultLimits are the limits of a hub that sets none: a lab can live
// with them.
var DefaultLimits = Limits{
	FramesPerRequest:  10000,
	StateBytes:        64 << 20,
	RoomsPerUser:      100,
	ConnsPerAddr:      256,
	RequestsPerSecond: 500,
	Burst:             2000,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.FramesPerRequest > 0 {
		d.FramesPerRequest = l.FramesPerRequest
	}
	if l.StateBytes > 0 {
		d.StateBytes = l.StateBytes
	}
	if l.RoomsPerUser > 0 {
		d.RoomsPerUser = l.RoomsPerUser
	}
	if l.ConnsPerAddr > 0 {
		d.ConnsPerAddr = l.ConnsPerAddr
	}
	if l.RequestsPerSecond > 0 {
		d.RequestsPerSecond = l.RequestsPerSecond
	}
	if l.Burst > 0 {
		d.Burst = l.Burst
	}
	return d
}

// Server is a hub: rooms, their documents, the data channel (HTTP) and the
// control channel (WebSocket). New builds one; Handler serves it; Close
// stops it. It never listens on its own.
type Server struct {
	// Static after construction.
	opts       Options
	log        *slog.Logger
	dir        string
	blobs      blobstore.Store
	leases     lease.Backend
	ownsLeases io.Closer // non-nil if New created the lease backend
	hubID      string
	metrics    *metrics
	ctx        context.Context
	cancel     context.CancelCauseFunc
	wg         sync.WaitGroup
	manifests  *manifestCache
	blobCache  *lru[framesync.Hash, []byte] // verified blob bytes, for warm reads
	auth       *auth                        // nil in local mode
	imports    *importer                    // import jobs (import.go)
	rate       *rateLimiter
	p2p        *p2pHub  // nil without a libp2p host
	hs         *hubSync // nil unless several hubs share Redis (hubs.go)

	mu        sync.Mutex // guards the fields below; taken before room.mu, never after
	rooms     map[string]*room
	hubGen    int64            // hub-wide generation: bumped on every change of any room
	fullBelow int64            // a rooms ?since= below this gets the full listing
	removed   map[string]int64 // deleted room -> hub generation of its deletion
	conns     map[*conn]struct{}
	holders   map[string]int // client ID -> open connections
	addrConns map[string]int // remote address -> open WebSocket connections
	closed    bool

	syncMu    sync.Mutex // guards syncDirty
	syncDirty map[*room]bool
	syncPoke  chan struct{}
}

var errNotPresenter = &framesync.Error{Kind: framesync.Forbidden, Op: "frame", Msg: "only the presenter's frame messages are accepted: send present first"}

type hubFile struct {
	ID         string `json:"id"`
	Generation int64  `json:"generation"`
}

// New opens the hub's data directory, loads every room and starts the
// hub's background work. Close stops it.
func New(opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("relay: Options.Dir is required")
	}
	if opts.Blobs == nil {
		return nil, errors.New("relay: Options.Blobs is required")
	}
	if opts.MaxUpload <= 0 {
		opts.MaxUpload = 500 << 20
	}
	if opts.MaxMessage <= 0 {
		opts.MaxMessage = 16 << 20
	}
	if opts.SendQueue <= 0 {
		opts.SendQueue = 1024
	}
	if opts.PresenterTTL <= 0 {
		opts.PresenterTTL = 5 * time.Second
	}
	opts.Limits = opts.Limits.withDefaults()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "rooms"), 0o755); err != nil {
		return nil, fmt.Errorf("relay: data directory: %w", err)
	}
	s := &Server{
		opts:      opts,
		log:       log,
		dir:       opts.Dir,
		blobs:     opts.Blobs,
		leases:    opts.Leases,
		rooms:     map[string]*room{},
		removed:   map[string]int64{},
		conns:     map[*conn]struct{}{},
		holders:   map[string]int{},
		addrConns: map[string]int{},
		metrics:   newMetrics(),
		syncDirty: map[*room]bool{},
		syncPoke:  make(chan struct{}, 1),
		manifests: newManifestCache(4096),
		blobCache: newLRU[framesync.Hash, []byte](256<<20, 16<<20, func(b []byte) int64 { return int64(len(b)) }),
	}
	if opts.Auth != nil {
		a, err := openAuth(*opts.Auth, opts.Dir)
		if err != nil {
			return nil, err
		}
		s.auth = a
		log.Info("access control on", "admin", opts.Auth.AdminUser, "open_registration", opts.Auth.OpenRegistration)
	} else {
		log.Warn("local mode: no admin configured, everyone who can reach the hub may do everything (set FRAMESYNC_ADMIN_USERNAME, FRAMESYNC_ADMIN_PASSWORD and FRAMESYNC_SECRET_KEY for access control)")
	}
	s.rate = newRateLimiter(opts.Limits.RequestsPerSecond, opts.Limits.Burst)
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	imports, err := newImporter(s)
	if err != nil {
		return nil, err
	}
	s.imports = imports
	hf, err := s.loadHubFile()
	if err != nil {
		return nil, err
	}
	s.hubID = hf.ID
	// The hub generation is not made durable on every change: after a
	// restart it continues above the last saved value, and any ?since=
	// older than the restart gets the full listing.
	s.hubGen = hf.Generation + 1
	s.fullBelow = s.hubGen
	if s.leases == nil {
		toks, err := lease.OpenFileTokens(filepath.Join(opts.Dir, "leases"))
		if err != nil {
			return nil, fmt.Errorf("relay: fencing tokens: %w", err)
		}
		if opts.RedisURL != "" {
			// The marks go to the blob store every hub shares, so no hub
			// grants a token another hub granted, whatever Redis loses.
			shared := lease.NewBlobTokens(opts.Blobs, toks)
			r, err := lease.NewRedis(s.ctx, opts.RedisURL, &lease.RedisOptions{Prefix: opts.RedisPrefix, Tokens: shared, Logger: log})
			if err != nil {
				return nil, fmt.Errorf("relay: redis: %w", err)
			}
			s.leases, s.ownsLeases = r, r
		} else {
			m, err := lease.NewMemory(&lease.Options{Tokens: toks})
			if err != nil {
				return nil, err
			}
			s.leases, s.ownsLeases = m, m
		}
	}
	if err := s.loadRooms(); err != nil {
		s.closeLeases()
		return nil, err
	}
	if opts.RedisURL != "" {
		if err := s.openHubs(); err != nil {
			s.closeLeases()
			return nil, err
		}
	}
	if _, ok := s.rooms[DefaultRoom]; !ok {
		if _, err := s.createRoom(DefaultRoom, "", ""); err != nil {
			s.closeHubs()
			s.closeLeases()
			return nil, err
		}
	}
	if opts.P2P != nil {
		if err := s.startP2P(*opts.P2P); err != nil {
			s.closeHubs()
			s.closeLeases()
			return nil, err
		}
	}
	if s.hs != nil {
		s.wg.Add(2)
		go func() {
			defer s.wg.Done()
			s.hs.loop(s.ctx)
		}()
		go func() {
			defer s.wg.Done()
			s.hs.jobsLoop(s.ctx)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.syncLoop(s.ctx)
	}()
	if sub, ok := s.leases.(leaseSubscriber); ok {
		events, cancel := sub.Subscribe(4096)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer cancel()
			s.leaseEvents(events)
		}()
	}
	log.Info("hub opened", "hub", s.hubID, "dir", s.dir, "rooms", len(s.rooms))
	return s, nil
}

func (s *Server) closeLeases() {
	if s.ownsLeases != nil {
		s.ownsLeases.Close()
	}
}

// ID returns the hub's identity, stable across restarts.
func (s *Server) ID() string { return s.hubID }

func (s *Server) loadHubFile() (hubFile, error) {
	name := filepath.Join(s.dir, "hub.json")
	var hf hubFile
	b, err := os.ReadFile(name)
	switch {
	case errors.Is(err, os.ErrNotExist):
		hf.ID = randomID()
		return hf, s.saveHubFile(hf)
	case err != nil:
		return hf, fmt.Errorf("relay: %w", err)
	}
	if err := json.Unmarshal(b, &hf); err != nil || len(hf.ID) != 16 {
		return hf, &framesync.Error{Kind: framesync.Corrupt, Op: "open hub", Msg: fmt.Sprintf("%s is not a valid hub file (remove it to give the hub a new identity)", name), Err: err}
	}
	if _, err := hex.DecodeString(hf.ID); err != nil {
		return hf, &framesync.Error{Kind: framesync.Corrupt, Op: "open hub", Msg: fmt.Sprintf("%s: hub id is not hex", name)}
	}
	return hf, nil
}

func (s *Server) saveHubFile(hf hubFile) error {
	b, _ := json.Marshal(hf)
	return writeFileAtomic(filepath.Join(s.dir, "hub.json"), b, s.opts.NoSync)
}

// DropClients closes every control connection (close code 1001); the hub
// keeps running and clients may connect again. With an HTTP server that
// stops accepting, it takes the hub off the network while its libp2p host
// (directory and relay) stays up.
func (s *Server) DropClients() {
	s.mu.Lock()
	conns := slices.Collect(maps.Keys(s.conns))
	s.mu.Unlock()
	dropAll(conns)
}

// dropAll shuts the connections down and waits until they are gone.
func dropAll(conns []*conn) {
	for _, c := range conns {
		c.shutdown("hub shutting down")
	}
	for _, c := range conns {
		<-c.done
	}
}

// Close stops the hub: it closes every control connection, waits for the
// background work, saves every room document and the hub generation.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := slices.Collect(maps.Keys(s.conns))
	s.mu.Unlock()
	dropAll(conns)
	s.cancel(errors.New("hub closed"))
	s.imports.close() // before the leases: jobs release their locks
	if s.p2p != nil {
		s.p2p.close()
	}
	s.closeLeases()
	s.wg.Wait()
	s.closeHubs()
	var errs []error
	s.mu.Lock()
	rooms := slices.Collect(maps.Values(s.rooms))
	gen := s.hubGen
	s.mu.Unlock()
	for _, r := range rooms {
		if err := r.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.saveHubFile(hubFile{ID: s.hubID, Generation: gen}); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// bumpHubGen advances the hub generation and returns it.
func (s *Server) bumpHubGen() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hubGen++
	return s.hubGen
}

func (s *Server) loadRooms() error {
	ents, err := os.ReadDir(filepath.Join(s.dir, "rooms"))
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || wire.CheckRoomName(e.Name()) != nil {
			continue
		}
		r, err := s.openRoom(e.Name())
		if err != nil {
			return fmt.Errorf("relay: room %s: %w", e.Name(), err)
		}
		r.hubGen = s.hubGen
		s.rooms[r.name] = r
	}
	return nil
}

// room returns the named room or a NotFound error.
func (s *Server) room(name string) (*room, error) {
	s.mu.Lock()
	r, ok := s.rooms[name]
	s.mu.Unlock()
	if !ok {
		if err := wire.CheckRoomName(name); err != nil {
			return nil, err
		}
		return nil, &framesync.Error{Kind: framesync.NotFound, Op: "room", Msg: fmt.Sprintf("no room %q", name)}
	}
	return r, nil
}

// createRoom creates room name, empty or copying room from; creator (if
// any) becomes its admin. Frames of a copy share their blobs with the
// original. With several hubs the room is registered in Redis first, so
// two hubs never create the same room.
func (s *Server) createRoom(name, from, creator string) (*room, error) {
	if err := wire.CheckRoomName(name); err != nil {
		return nil, err
	}
	var trajSnap, stateSnap []byte
	var gen int64
	if from != "" {
		src, err := s.room(from)
		if err != nil {
			return nil, err
		}
		trajSnap, stateSnap, gen = src.snapshots()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exists := &framesync.Error{Kind: framesync.Conflict, Op: "create room", Msg: fmt.Sprintf("room %q exists", name)}
	if _, ok := s.rooms[name]; ok {
		return nil, exists
	}
	acl := defaultACL(name)
	if creator != "" {
		acl.Roles = map[string]string{creator: RoleAdmin}
		if n, limit := s.roomsAdministeredLocked(creator), s.opts.Limits.RoomsPerUser; n >= limit && !s.auth.isAdmin(creator) {
			return nil, &framesync.Error{Kind: framesync.TooLarge, Op: "create room", Msg: fmt.Sprintf("%s administers %d rooms, the limit of rooms per user", creator, n)}
		}
	}
	var inc string
	if s.hs != nil {
		inc = randomID()
		cur, err := s.hs.register(name, roomEntry{Inc: inc, Created: time.Now().UTC(), ACL: &acl}, gen)
		if errors.Is(err, errRoomExists) {
			if name == DefaultRoom && from == "" { // every hub makes it: take the deployment's
				return s.installRoomLocked(name, *cur)
			}
			return nil, exists
		}
		if err != nil {
			return nil, err
		}
	}
	r, err := s.newRoom(name, trajSnap, stateSnap, acl)
	if err != nil {
		return nil, err
	}
	if s.hs != nil {
		if err := s.hs.attach(r, inc); err != nil {
			return nil, err
		}
		if trajSnap != nil {
			if err := s.hs.publishAll(r); err != nil {
				s.log.Error("publish copied room", "room", name, "err", err)
			}
		}
	}
	s.hubGen++
	r.hubGen = s.hubGen
	delete(s.removed, name)
	s.rooms[name] = r
	return r, nil
}

// installRoom creates the local replica of a room another hub created;
// its documents come from its streams.
func (s *Server) installRoom(name string, e roomEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.rooms[name]; ok {
		return nil
	}
	_, err := s.installRoomLocked(name, e)
	return err
}

func (s *Server) installRoomLocked(name string, e roomEntry) (*room, error) {
	acl := defaultACL(name)
	if e.ACL != nil {
		acl = *e.ACL
	}
	r, err := s.newRoom(name, nil, nil, acl)
	if err != nil {
		return nil, err
	}
	if !e.Created.IsZero() {
		r.created = e.Created
		if err := r.saveMetaLocked(); err != nil {
			return nil, err
		}
	}
	if err := s.hs.attach(r, e.Inc); err != nil {
		return nil, err
	}
	s.hubGen++
	r.hubGen = s.hubGen
	delete(s.removed, name)
	s.rooms[name] = r
	return r, nil
}

// roomsAdministeredLocked counts the rooms user is admin of.
func (s *Server) roomsAdministeredLocked(user string) int {
	n := 0
	for _, r := range s.rooms {
		if r.acl.Load().Roles[user] == RoleAdmin {
			n++
		}
	}
	return n
}

// deleteRoom removes a room, its documents and its leases, on every hub.
// Blobs stay until garbage collection.
func (s *Server) deleteRoom(name string) error {
	s.mu.Lock()
	r, ok := s.rooms[name]
	s.mu.Unlock()
	if !ok {
		return &framesync.Error{Kind: framesync.NotFound, Op: "delete room", Msg: fmt.Sprintf("no room %q", name)}
	}
	if s.hs != nil {
		if err := s.hs.unregister(name, r.sync.inc); err != nil {
			return err
		}
	}
	if err := s.leases.DropRoom(context.Background(), name); err != nil {
		s.log.Warn("drop leases of deleted room", "room", name, "err", err)
	}
	return s.dropLocalRoom(name, false)
}

// dropLocalRoom removes this hub's replica of a room; with setAside its
// directory is kept under another name.
func (s *Server) dropLocalRoom(name string, setAside bool) error {
	s.mu.Lock()
	r, ok := s.rooms[name]
	if !ok {
		s.mu.Unlock()
		return nil
	}
	delete(s.rooms, name)
	s.hubGen++
	s.removed[name] = s.hubGen
	s.mu.Unlock()
	r.markDeleted()
	s.broadcast(r, &wire.Msg{T: wire.MsgRoomDeleted, Room: name}, nil)
	for _, c := range r.memberConns() {
		c.leaveRoom(r)
	}
	r.membersMu.Lock()
	r.members = nil // a join racing with the deletion sees it
	r.membersMu.Unlock()
	if setAside {
		return os.Rename(r.dir, r.dir+".set-aside-"+fmt.Sprint(time.Now().UnixNano()))
	}
	return r.remove()
}

// listRooms returns the rooms changed after hub generation since, or every
// room when since is negative, older than the hub's memory or newer than
// the current generation.
func (s *Server) listRooms(since int64, p principal) wire.RoomsListing {
	s.mu.Lock()
	out := wire.RoomsListing{Hub: s.hubID, Generation: s.hubGen}
	out.Full = since < s.fullBelow || since > s.hubGen
	rooms := slices.Collect(maps.Values(s.rooms))
	if !out.Full {
		for name, g := range s.removed {
			if g > since {
				out.Removed = append(out.Removed, name)
			}
		}
	}
	s.mu.Unlock()
	for _, r := range rooms {
		if roleRank[s.roleIn(p, r)] < roleRank[RoleReader] {
			continue
		}
		sum := r.summary()
		if out.Full || sum.Changed > since {
			out.Rooms = append(out.Rooms, sum)
		}
	}
	sort.Slice(out.Rooms, func(i, j int) bool { return out.Rooms[i].Name < out.Rooms[j].Name })
	sort.Strings(out.Removed)
	if out.Rooms == nil {
		out.Rooms = []wire.RoomSummary{}
	}
	return out
}

// openHubs joins the hubs sharing Redis: rooms are reconciled with the
// deployment's before the hub serves.
func (s *Server) openHubs() error {
	h, err := openHubSync(s, s.opts.RedisURL, s.opts.RedisPrefix)
	if err != nil {
		return err
	}
	s.hs = h
	if s.auth != nil {
		s.auth.shared = h
	}
	for _, r := range s.rooms {
		if err := h.attach(r, ""); err != nil {
			s.closeHubs()
			return err
		}
	}
	if err := h.start(h.republish); err != nil {
		s.closeHubs()
		return err
	}
	if h.republish {
		if err := h.published(); err != nil {
			s.closeHubs()
			return err
		}
	}
	return nil
}

func (s *Server) closeHubs() {
	if s.hs != nil {
		s.hs.close()
	}
}

// hubActor is the Automerge actor the hub writes the trajectory documents with.
func (s *Server) docOptions() *crdt.Options { return &crdt.Options{ActorID: s.hubID} }
