package peer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	lpeer "github.com/libp2p/go-libp2p/core/peer"

	"framesync/crdt"
	"framesync/relay/wire"
)

// Event types besides the hub's message types (wire.MsgFrameUpdated,
// wire.MsgGeneration, wire.MsgMember, wire.MsgLockState,
// wire.MsgPresenter, wire.MsgPresence, wire.MsgFrame, wire.MsgRoomDeleted).
const (
	EventState        = "state"        // the state document changed: State holds the diff
	EventTrajectory   = "trajectory"   // the trajectory document changed: Trajectory holds the diff
	EventJoined       = "joined"       // the room was (re)joined after a connection came up
	EventDisconnected = "disconnected" // the connection dropped; the client is reconnecting
	EventLockLost     = "lock_lost"    // a lock held through Room.Lock was lost: Msg.Target names it
	EventError        = "error"        // something failed in the background: Err
)

// Event is something that happened in a room.
type Event struct {
	Room       string
	Type       string
	Msg        *wire.Msg            // the hub's message, for hub message types
	State      *crdt.StateDiff      // EventState
	Trajectory *crdt.TrajectoryDiff // EventTrajectory
	Local      bool                 // EventState: the change was made by this client
	Err        error                // EventError
}

// Room is a room joined by a Client: its replicated documents, its frames
// (read through the blob cache) and the edit operations. Its methods are
// safe for concurrent use.
type Room struct {
	// Static after Join.
	c    *Client
	name string
	data *roomData
	kick chan struct{} // something to send or save (capacity 1)
	stop chan struct{} // closed by close
	done chan struct{} // closed when the room's loop has stopped

	smu       sync.Mutex // guards the sessions and joined
	trajSess  *crdt.Session
	stateSess *crdt.Session
	joined    uint64 // connection epoch the room is joined on; 0 = not joined

	readerOnce sync.Once
	fr         *frameReader

	mu      sync.Mutex             // guards the fields below
	peers   map[lpeer.ID]string    // libp2p peers of the other members and their roles, from the hub's directory
	syncs   map[*peerSync]struct{} // open sync streams with members
	subs    map[chan Event]struct{}
	dropped int64         // events dropped on full subscriber channels
	changed chan struct{} // closed and replaced when the trajectory changes
	locks   map[string]*Lock
	info    *wire.RoomInfo // from the last joined
}

// Join joins room name: it opens the room's replica and, when connected,
// joins it at the hub and starts syncing. Offline (with Options.Offline),
// the room works from the replica and joins once the hub is reachable.
// Joining a room twice returns the same *Room.
func (c *Client) Join(ctx context.Context, name string) (*Room, error) {
	if err := wire.CheckRoomName(name); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if r, ok := c.rooms[name]; ok {
		c.mu.Unlock()
		return r, nil
	}
	c.mu.Unlock()
	if c.ctx.Err() != nil {
		return nil, ErrClosed
	}
	data, err := c.rep.openRoom(name, "")
	if err != nil {
		return nil, err
	}
	r := &Room{
		c: c, name: name, data: data,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		subs: map[chan Event]struct{}{}, changed: make(chan struct{}), locks: map[string]*Lock{},
		peers: map[lpeer.ID]string{}, syncs: map[*peerSync]struct{}{},
	}
	r.trajSess = r.session(data.traj.Doc(), data.trajSync)
	r.stateSess = r.session(data.state.Doc(), data.stateSync)
	data.traj.Doc().OnChange(func(from, to crdt.Heads) {
		r.mu.Lock()
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
		r.poke()
		if d, err := data.traj.Diff(from, to); err == nil && !d.Empty() {
			r.emit(Event{Type: EventTrajectory, Trajectory: d})
		}
	})
	data.state.OnChange(func(d *crdt.StateDiff, err error) {
		if err != nil {
			r.emit(Event{Type: EventError, Err: fmt.Errorf("state diff: %w", err)})
			return
		}
		r.poke()
		if !d.Empty() {
			r.emit(Event{Type: EventState, State: d, Local: madeHere(data.state.Doc(), d.From)})
		}
	})

	c.mu.Lock()
	if other, ok := c.rooms[name]; ok { // joined concurrently
		c.mu.Unlock()
		return other, nil
	}
	c.rooms[name] = r
	epoch := c.epoch
	connected := c.ws != nil
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		r.loop()
	}()
	if connected {
		if err := r.join(ctx, epoch); err != nil && !errors.Is(err, ErrOffline) {
			c.mu.Lock()
			delete(c.rooms, name)
			c.mu.Unlock()
			r.stopLoop() // nothing to save: the hub refused the room
			return nil, err
		}
	}
	return r, nil
}

// madeHere reports whether the changes of d after from were all written by
// this replica's actor.
func madeHere(d *crdt.Doc, from crdt.Heads) bool {
	cs, err := d.Changes(from)
	if err != nil || len(cs) == 0 {
		return false
	}
	for _, c := range cs {
		if c.Actor != d.ActorID() {
			return false
		}
	}
	return true
}

// session resumes a sync session from saved state, or starts one.
func (r *Room) session(d *crdt.Doc, saved []byte) *crdt.Session {
	if saved != nil {
		if s, err := crdt.LoadSession(d, saved, nil); err == nil {
			return s
		}
	}
	return crdt.NewSession(d, nil)
}

// Name returns the room's name.
func (r *Room) Name() string { return r.name }

// Client returns the client the room belongs to.
func (r *Room) Client() *Client { return r.c }

// join joins the room on connection epoch and starts syncing.
func (r *Room) join(ctx context.Context, epoch uint64) error {
	if p := r.c.p2p; p != nil {
		// Bind the libp2p peer first, so the members told of this join
		// find it in the hub's directory.
		if err := p.waitBound(ctx); err != nil {
			return err
		}
	}
	m, err := r.c.request(ctx, &wire.Msg{T: wire.MsgJoin, Room: r.name})
	if err != nil {
		return err
	}
	r.setInfo(m.Info)
	r.smu.Lock()
	// A new connection: resume from what the hub was known to have, with
	// nothing in flight (the saved form of a session drops that).
	r.trajSess = r.session(r.data.traj.Doc(), r.trajSess.Save())
	r.stateSess = r.session(r.data.state.Doc(), r.stateSess.Save())
	r.joined = epoch
	r.smu.Unlock()
	r.flush()
	r.emit(Event{Type: EventJoined, Msg: m})
	if p := r.c.p2p; p != nil {
		go p.joined(r.c.ctx, r)
	}
	return nil
}

// disconnected is called when the connection the room was joined on ends.
func (r *Room) disconnected() {
	r.smu.Lock()
	r.joined = 0
	r.smu.Unlock()
	r.mu.Lock()
	locks := make([]*Lock, 0, len(r.locks))
	for _, l := range r.locks {
		locks = append(locks, l)
	}
	r.mu.Unlock()
	for _, l := range locks {
		l.lose(errors.New("the connection to the hub dropped; the hub releases a disconnected client's locks"))
	}
	r.emit(Event{Type: EventDisconnected})
}

// handle takes a message of the hub about this room.
func (r *Room) handle(m *wire.Msg) {
	switch m.T {
	case wire.MsgSync:
		r.receive(m)
		return
	case wire.MsgLockState:
		if m.State == "expired" && m.Holder == r.c.ID() {
			r.mu.Lock()
			l := r.locks[m.Target]
			r.mu.Unlock()
			if l != nil {
				l.lose(errors.New("the lock expired at the hub"))
			}
		}
	case wire.MsgJoined:
		r.setInfo(m.Info)
	case wire.MsgRole:
		r.mu.Lock()
		if r.info != nil {
			info := *r.info // Info's callers may hold the old one
			info.Role = m.State
			r.info = &info
		}
		r.mu.Unlock()
		r.setRole(m.State)
	case wire.MsgMember:
		if p := r.c.p2p; p != nil && m.State == "joined" {
			go p.refresh(r.c.ctx, r) // a new member: learn its peer
		}
	}
	r.emit(Event{Type: m.T, Msg: m})
}

// setInfo keeps the room's info from a "joined" message.
func (r *Room) setInfo(info *wire.RoomInfo) {
	r.mu.Lock()
	r.info = info
	r.mu.Unlock()
	if info != nil {
		r.setRole(info.Role)
	}
}

// setRole makes the state document read-only for a reader: the hub and
// the other members would refuse its changes, so they fail at once with a
// clear error instead of staying local forever.
func (r *Room) setRole(role string) {
	reason := ""
	if role == "reader" {
		reason = fmt.Sprintf("room %q: you are a reader here; changing the shared state needs the writer role", r.name)
	}
	r.data.state.Doc().SetReadOnly(reason)
}

// receive applies a sync message of the hub.
func (r *Room) receive(m *wire.Msg) {
	r.smu.Lock()
	var err error
	switch m.Doc {
	case wire.DocTrajectory:
		err = r.trajSess.Receive(m.Data)
	case wire.DocState:
		err = r.stateSess.Receive(m.Data)
	default:
		err = fmt.Errorf("sync message for unknown document %q", m.Doc)
	}
	r.smu.Unlock()
	if err != nil {
		r.c.log.Warn("sync message refused", "room", r.name, "doc", m.Doc, "err", err)
		r.emit(Event{Type: EventError, Err: fmt.Errorf("sync %s: %w", m.Doc, err)})
	}
	r.data.mu.Lock()
	r.data.meta.Synced = time.Now().UTC()
	r.data.mu.Unlock()
	r.poke()
}

// flush sends every sync message the sessions have for the hub.
func (r *Room) flush() {
	r.smu.Lock()
	defer r.smu.Unlock()
	if r.joined == 0 {
		return
	}
	for _, d := range []struct {
		name string
		s    *crdt.Session
	}{{wire.DocTrajectory, r.trajSess}, {wire.DocState, r.stateSess}} {
		for {
			msg, ok := d.s.Next()
			if !ok {
				break
			}
			if err := r.c.send(&wire.Msg{T: wire.MsgSync, Room: r.name, Doc: d.name, Data: msg}); err != nil {
				return // the reconnect resumes from the saved sessions
			}
		}
	}
}

// poke wakes the room's loop (something may need sending and saving) and
// its peer sync streams.
func (r *Room) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
	r.mu.Lock()
	for s := range r.syncs {
		s.poke()
	}
	r.mu.Unlock()
}

// setPeers replaces the room's known member peers and their roles.
func (r *Room) setPeers(ps map[lpeer.ID]string) {
	r.mu.Lock()
	r.peers = ps
	r.mu.Unlock()
}

func (r *Room) hasPeer(p lpeer.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.peers[p]
	return ok
}

// peerMayWrite reports whether member p may change the state document
// (writer or admin; in local mode every member is admin).
func (r *Room) peerMayWrite(p lpeer.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	role := r.peers[p]
	return role == "writer" || role == "admin"
}

func (r *Room) peerList() []lpeer.ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]lpeer.ID, 0, len(r.peers))
	for p := range r.peers {
		out = append(out, p)
	}
	return out
}

func (r *Room) addSync(s *peerSync) {
	r.mu.Lock()
	r.syncs[s] = struct{}{}
	r.mu.Unlock()
}

func (r *Room) removeSync(s *peerSync) {
	r.mu.Lock()
	delete(r.syncs, s)
	r.mu.Unlock()
}

// Peers returns how many members the room syncs with directly (libp2p).
func (r *Room) Peers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.syncs)
}

// saveDelay gathers changes before the replica is written.
const saveDelay = 250 * time.Millisecond

// loop sends sync messages after changes and saves the replica, at most
// every saveDelay, until the room is closed.
func (r *Room) loop() {
	defer close(r.done)
	var timer <-chan time.Time
	for {
		select {
		case <-r.stop:
			return
		case <-r.c.ctx.Done():
			return // Client.Close saves the room
		case <-r.kick:
			r.flush()
			if timer == nil {
				timer = time.After(saveDelay)
			}
		case <-timer:
			timer = nil
			if err := r.save(); err != nil {
				r.c.log.Error("save replica", "room", r.name, "err", err)
				r.emit(Event{Type: EventError, Err: err})
			}
		}
	}
}

// save writes the room's replica.
func (r *Room) save() error {
	r.smu.Lock()
	ts, ss := r.trajSess.Save(), r.stateSess.Save()
	r.smu.Unlock()
	return r.data.save(ts, ss)
}

// close stops the room's loop and saves it.
func (r *Room) close() error {
	r.stopLoop()
	return r.save()
}

func (r *Room) stopLoop() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
}

// Leave leaves the room at the hub, saves its replica and forgets it.
func (r *Room) Leave(ctx context.Context) error {
	r.c.mu.Lock()
	delete(r.c.rooms, r.name)
	r.c.mu.Unlock()
	_, err := r.c.request(ctx, &wire.Msg{T: wire.MsgLeave, Room: r.name})
	if errors.Is(err, ErrOffline) {
		err = nil
	}
	return errors.Join(err, r.close())
}

// Save writes the room's replica now (it is also written shortly after
// every change and on Close).
func (r *Room) Save() error { return r.save() }

// Subscribe returns a channel of the room's events, buffered for buf
// events. A subscriber that falls behind misses events (counted in
// Dropped) rather than blocking the client. cancel ends the subscription.
func (r *Room) Subscribe(buf int) (events <-chan Event, cancel func()) {
	ch := make(chan Event, max(buf, 1))
	r.mu.Lock()
	r.subs[ch] = struct{}{}
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		if _, ok := r.subs[ch]; ok {
			delete(r.subs, ch)
			close(ch)
		}
		r.mu.Unlock()
	}
}

// Dropped returns how many events subscribers missed.
func (r *Room) Dropped() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

func (r *Room) emit(e Event) {
	e.Room = r.name
	r.mu.Lock()
	defer r.mu.Unlock()
	for ch := range r.subs {
		select {
		case ch <- e:
		default:
			r.dropped++
		}
	}
}

// Info returns what the hub said about the room when it was last joined
// (nil before that), with the user's role as last heard. Do not modify it.
func (r *Room) Info() *wire.RoomInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info
}

// Trajectory returns the room's replicated trajectory document (read
// only: the hub writes it; edit through the Room's methods).
func (r *Room) Trajectory() *crdt.Trajectory { return r.data.traj }

// State returns the room's shared state document. Edit it directly
// (SetSelection, SetBookmark, SetStep, Update, ...): changes are sent to
// the hub when connected, kept in the replica when not, and merge on
// reconnect.
func (r *Room) State() *crdt.State { return r.data.state }

// Len returns the number of frames in the local replica.
func (r *Room) Len() int {
	n, _ := r.data.traj.Len()
	return n
}

// Generation returns the room's generation in the local replica.
func (r *Room) Generation() int64 {
	g, _ := r.data.traj.Generation()
	return g
}

// WaitGeneration blocks until the local replica has reached room
// generation g (the replica catches up with a commit shortly after the
// hub accepts it).
func (r *Room) WaitGeneration(ctx context.Context, g int64) error {
	err := r.waitTrajectory(ctx, func() (bool, error) { return r.Generation() >= g, nil })
	if err != nil {
		return fmt.Errorf("waiting for generation %d (have %d): %w", g, r.Generation(), err)
	}
	return nil
}

// waitTrajectory blocks until done holds, checking it again after every
// change of the trajectory document, or until ctx ends.
func (r *Room) waitTrajectory(ctx context.Context, done func() (bool, error)) error {
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if ok, err := done(); ok || err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitSynced blocks until the replica has what the hub had when asked: the
// trajectory's generation and every change of the state document; or until
// ctx ends.
func (r *Room) WaitSynced(ctx context.Context) error {
	for {
		info, err := r.c.RoomInfo(ctx, r.name)
		if err != nil {
			return err
		}
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if r.Generation() >= info.Generation {
			break
		}
		select {
		case <-ch:
		case <-time.After(time.Second): // the generation may also move on
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// The state document: until the replica has every change the hub's
	// copy had when asked.
	heads, err := r.c.stateHeads(ctx, r.name)
	if err != nil {
		return err
	}
	doc := r.data.state.Doc()
	for {
		missing := false
		for _, h := range heads {
			if !doc.HasChange(h) {
				missing = true
				break
			}
		}
		if !missing {
			return nil
		}
		t := time.NewTimer(20 * time.Millisecond) // polling with the caller's deadline
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for the state document: %w", ctx.Err())
		}
	}
}

// Entry returns the frame at index i (negative counts from the end) from
// the local replica.
func (r *Room) Entry(i int) (crdt.Entry, error) { return entryAt(r.data.traj, i) }
