package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"framesync"
	"framesync/crdt"
	"framesync/relay/wire"
)

// feedKeep is how many commits a room remembers for ?since= change feeds;
// a client further behind gets the full listing.
const feedKeep = 1024

// room is one room: its two documents, their files, the change feed and
// its members.
//
// Lock order: Server.mu, then room.mu, then room.membersMu. Never call out
// to a conn (which takes conn locks) while holding room.mu for long; the
// broadcast helpers take only membersMu and enqueue.
type room struct {
	// Static after construction.
	name    string
	dir     string
	created time.Time
	traj    *crdt.Trajectory // safe for concurrent use; written only under mu
	state   *crdt.State      // safe for concurrent use; persisted under mu
	srv     *Server
	sync    *roomSync // with several hubs: its streams (hubs.go); set before the room is shared

	mu        sync.Mutex // guards the fields below and every write of traj
	fence     *fenceArgs // the commit being written (for the trajectory gate, hubs.go)
	trajFile  *docFile
	stateFile *docFile
	hubGen    int64      // hub generation of the room's last change
	feed      []feedMark // the last feedKeep commits, oldest first
	feedFloor int64      // generations at or below this are not in feed
	deleted   bool
	present   *wire.Msg // the presenter's last frame message

	membersMu sync.Mutex
	members   map[*conn]*member

	// acl is read without locks (access checks run inside document
	// callbacks); replaced whole, under mu, by PUT .../acl.
	acl atomic.Pointer[wire.RoomACL]

	refsMu sync.Mutex                  // guards refs; taken without other locks
	refs   map[framesync.Hash]struct{} // blobs of the room's frames; nil until needed
}

// feedMark is one commit of the room: its generation and the document
// heads after it.
type feedMark struct {
	gen   int64
	heads crdt.Heads
}

type roomFile struct {
	Name    string        `json:"name"`
	Created time.Time     `json:"created"`
	ACL     *wire.RoomACL `json:"acl,omitempty"` // nil: defaultACL
}

// defaultACL is the access of a room that has none recorded: the default
// room is open to every user (as in local mode, once users log in); other
// rooms to their members only.
func defaultACL(name string) wire.RoomACL {
	if name == DefaultRoom {
		return wire.RoomACL{DefaultRole: RoleWriter}
	}
	return wire.RoomACL{}
}

// saveMeta writes room.json. Called with r.mu held.
func (r *room) saveMetaLocked() error {
	b, _ := json.Marshal(roomFile{Name: r.name, Created: r.created, ACL: r.acl.Load()})
	return writeFileAtomic(filepath.Join(r.dir, "room.json"), b, r.srv.opts.NoSync)
}

func (s *Server) roomDir(name string) string { return filepath.Join(s.dir, "rooms", name) }

// newRoom creates the files of a new room, optionally starting from the
// given document snapshots.
func (s *Server) newRoom(name string, trajSnap, stateSnap []byte, acl wire.RoomACL) (*room, error) {
	dir := s.roomDir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var (
		traj  *crdt.Trajectory
		state *crdt.State
		err   error
	)
	if trajSnap != nil {
		traj, err = crdt.LoadTrajectory(trajSnap, s.docOptions())
	} else {
		traj, err = crdt.NewTrajectory(s.docOptions())
	}
	if err != nil {
		return nil, err
	}
	if stateSnap != nil {
		state, err = crdt.LoadState(stateSnap, s.docOptions())
	} else {
		state, err = crdt.NewState(s.docOptions())
	}
	if err != nil {
		return nil, err
	}
	r := &room{name: name, dir: dir, created: time.Now().UTC(), traj: traj, state: state, srv: s, members: map[*conn]*member{}}
	r.acl.Store(&acl)
	r.trajFile = openDocFile(dir, wire.DocTrajectory)
	r.stateFile = openDocFile(dir, wire.DocState)
	r.trajFile.noSync, r.stateFile.noSync = s.opts.NoSync, s.opts.NoSync
	if err := r.trajFile.writeSnapshot(traj.Save()); err != nil {
		return nil, err
	}
	if err := r.stateFile.writeSnapshot(state.Save()); err != nil {
		return nil, err
	}
	if err := r.saveMetaLocked(); err != nil {
		return nil, err
	}
	r.startFeed()
	return r, nil
}

// openRoom loads a room from its directory.
func (s *Server) openRoom(name string) (*room, error) {
	dir := s.roomDir(name)
	var rf roomFile
	b, err := os.ReadFile(filepath.Join(dir, "room.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &rf); err != nil {
		return nil, &framesync.Error{Kind: framesync.Corrupt, Op: "open room", Msg: filepath.Join(dir, "room.json"), Err: err}
	}
	r := &room{name: name, dir: dir, created: rf.Created, srv: s, members: map[*conn]*member{}}
	acl := defaultACL(name)
	if rf.ACL != nil {
		acl = *rf.ACL
	}
	r.acl.Store(&acl)
	r.trajFile = openDocFile(dir, wire.DocTrajectory)
	r.stateFile = openDocFile(dir, wire.DocState)
	r.trajFile.noSync, r.stateFile.noSync = s.opts.NoSync, s.opts.NoSync
	tdoc, err := loadDoc(r.trajFile, s.docOptions())
	if err != nil {
		return nil, err
	}
	if r.traj, err = crdt.OpenTrajectory(tdoc, s.docOptions()); err != nil {
		return nil, err
	}
	sdoc, err := loadDoc(r.stateFile, s.docOptions())
	if err != nil {
		return nil, err
	}
	if r.state, err = crdt.OpenState(sdoc); err != nil {
		return nil, err
	}
	r.startFeed()
	return r, nil
}

// loadDoc loads a document from its snapshot and log.
func loadDoc(f *docFile, opts *crdt.Options) (*crdt.Doc, error) {
	snap, records, ok, err := f.load()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &framesync.Error{Kind: framesync.Corrupt, Op: "open room", Msg: "missing " + f.snap}
	}
	d, err := crdt.LoadDoc(snap, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.snap, err)
	}
	for i, rec := range records {
		if err := d.LoadIncremental(rec); err != nil {
			return nil, fmt.Errorf("%s record %d: %w", f.log, i, err)
		}
	}
	return d, nil
}

func (r *room) startFeed() {
	gen, _ := r.traj.Generation()
	r.feedFloor = gen
	r.feed = []feedMark{{gen: gen, heads: r.traj.Heads()}}
}

// snapshots returns full saves of both documents.
func (r *room) snapshots() (traj, state []byte, gen int64) {
	r.mu.Lock() // commits hold it: the generation is the snapshot's
	defer r.mu.Unlock()
	gen, _ = r.traj.Generation()
	return r.traj.Save(), r.state.Save(), gen
}

// persistTraj appends the trajectory document's new changes to its log,
// compacting when the log has grown. The caller holds r.mu.
func (r *room) persistTrajLocked() error {
	return persist(r.trajFile, r.traj.Doc())
}

// persistState appends the state document's new changes to its log.
func (r *room) persistState() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.deleted {
		return nil
	}
	return persist(r.stateFile, r.state.Doc())
}

func persist(f *docFile, d *crdt.Doc) error {
	if f.needsCompaction() {
		return f.writeSnapshot(d.Save())
	}
	return f.append(d.SaveIncremental())
}

// recordCommitLocked remembers a commit for the change feed and the hub
// generation. The caller holds r.mu.
func (r *room) recordCommitLocked(c *crdt.Commit) {
	r.feedMarkLocked(c.Generation, c.Heads)
}

// feedMarkLocked records a commit (this hub's or another's) for the change
// feed and the hub generation. The caller holds r.mu.
func (r *room) feedMarkLocked(gen int64, heads crdt.Heads) {
	r.feed = append(r.feed, feedMark{gen: gen, heads: heads})
	if len(r.feed) > feedKeep {
		drop := len(r.feed) - feedKeep
		r.feedFloor = r.feed[drop-1].gen
		r.feed = append(r.feed[:0], r.feed[drop:]...)
	}
	r.hubGen = r.srv.bumpHubGen()
}

// close saves both documents as snapshots.
func (r *room) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.deleted {
		return nil
	}
	return errors.Join(r.trajFile.writeSnapshot(r.traj.Save()), r.stateFile.writeSnapshot(r.state.Save()))
}

func (r *room) markDeleted() {
	r.mu.Lock()
	r.deleted = true
	r.mu.Unlock()
}

// remove deletes the room's files.
func (r *room) remove() error {
	trash := r.dir + ".deleted-" + fmt.Sprint(time.Now().UnixNano())
	if err := os.Rename(r.dir, trash); err != nil {
		return err
	}
	return os.RemoveAll(trash)
}

func (r *room) summary() wire.RoomSummary {
	n, _ := r.traj.Len()
	gen, _ := r.traj.Generation()
	r.mu.Lock()
	changed := r.hubGen
	r.mu.Unlock()
	r.membersMu.Lock()
	members := len(r.members)
	r.membersMu.Unlock()
	return wire.RoomSummary{Name: r.name, Frames: n, Generation: gen, Members: members, Changed: changed}
}

func (r *room) info() (*wire.RoomInfo, error) {
	sum := r.summary()
	info := &wire.RoomInfo{Name: r.name, Created: r.created, Frames: sum.Frames, Generation: sum.Generation, Members: []wire.MemberInfo{}, Locks: []wire.LockInfo{}}
	seen := map[string]bool{}
	r.membersMu.Lock()
	for c, m := range r.members {
		if !seen[c.client] {
			seen[c.client] = true
			_ = m
			info.Members = append(info.Members, wire.MemberInfo{Client: c.client, Name: c.name})
		}
	}
	r.membersMu.Unlock()
	sort.Slice(info.Members, func(i, j int) bool { return info.Members[i].Client < info.Members[j].Client })
	grants, err := r.srv.leases.List(r.srv.ctx, r.name)
	if errors.Is(err, framesync.Unavailable) {
		// The lock service is away (Redis): the room is still readable,
		// its locks unknown for now.
		r.srv.log.Warn("room info without locks", "room", r.name, "err", err)
		grants, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, g := range grants {
		li := wire.LockInfo{Target: g.Target, Holder: g.Holder, Expires: g.Expires}
		if g.Target == targetPresenter {
			info.Presenter = &li
			continue
		}
		info.Locks = append(info.Locks, li)
	}
	if step, err := r.state.Step(); err == nil {
		info.Step = &step
	}
	return info, nil
}

// isDeleted reports whether the room was deleted.
func (r *room) isDeleted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.deleted
}
