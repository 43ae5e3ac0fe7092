package crdt

import (
	"fmt"
	"slices"

	"github.com/automerge/automerge-go"

	"framesync"
)

// SessionOptions configure a Session. A nil *SessionOptions means the defaults.
type SessionOptions struct {
	// Accept decides about each change in a received message that the
	// document does not contain yet. A non-nil error refuses the whole
	// message: nothing of it is applied and Receive returns a
	// framesync.Forbidden error wrapping the returned error. Nil accepts
	// every change. See RefuseNew and AllowActors.
	Accept func(ChangeInfo) error

	// TrustPeer skips the check of the operations of received changes (see
	// Session.Receive). Set it only for a peer as trusted as local storage.
	TrustPeer bool
}

// RefuseNew is an Accept function that refuses every change the document
// does not already contain. The hub syncs the trajectory document with it:
// the hub is the only writer, so a change it does not know is a forgery, even
// one that claims the hub's own actor ID.
func RefuseNew(c ChangeInfo) error {
	return fmt.Errorf("change %s by actor %s is not in the document and this replica accepts no new changes", c.Hash, c.Actor)
}

// AllowActors returns an Accept function that accepts only changes written
// by one of the given actor IDs (lower-case hex), and the skeleton changes
// that start the documents NewTrajectory and NewState make (so an empty
// replica can sync a typed document from scratch).
func AllowActors(actors ...string) func(ChangeInfo) error {
	allowed := slices.Clone(actors)
	skeletons := skeletonHashes()
	return func(c ChangeInfo) error {
		if slices.Contains(allowed, c.Actor) || slices.Contains(skeletons, c.Hash) {
			return nil
		}
		return fmt.Errorf("change %s is written by actor %s, which may not write this document", c.Hash, c.Actor)
	}
}

// Session is the sync state of one document with one remote peer: what the
// peer is known to have, and which messages are in flight. Both sides of a
// connection create a Session and exchange the messages of Next and Receive
// until neither has anything to send. A Session is safe for concurrent use
// (it shares its document's lock).
type Session struct {
	// Static after construction.
	doc    *Doc
	accept func(ChangeInfo) error
	trust  bool

	// Guarded by doc.mu.
	ss    *automerge.SyncState
	asked bool // a need for the parked changes' dependencies went out since the last Receive
}

// NewSession starts syncing d with a peer about which nothing is known.
func NewSession(d *Doc, opts *SessionOptions) *Session {
	s := &Session{doc: d}
	if opts != nil {
		s.accept, s.trust = opts.Accept, opts.TrustPeer
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s.ss = automerge.NewSyncState(d.am)
	return s
}

// syncStateType is the first byte of an encoded sync state, followed by the
// shared heads (uLEB128 count and 32-byte hashes).
const syncStateType = 0x43

// LoadSession resumes syncing d with a peer from state saved by Session.Save.
// Heads in the saved state that d does not contain (it lost data, or the
// state belongs to another document) are dropped, which only makes the next
// sync exchange more. Garbage is a framesync.BadInput error.
func LoadSession(d *Doc, state []byte, opts *SessionOptions) (*Session, error) {
	const op = "load sync state"
	r := &reader{b: state}
	if t := r.byte(); r.err != nil || t != syncStateType {
		return nil, errorf(framesync.BadInput, op, "not a sync state (want first byte 0x%02x)", syncStateType)
	}
	shared := r.hashes()
	if r.err != nil {
		return nil, &framesync.Error{Kind: framesync.BadInput, Op: op, Err: r.err}
	}
	s := &Session{doc: d}
	if opts != nil {
		s.accept, s.trust = opts.Accept, opts.TrustPeer
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	known := shared[:0]
	for _, h := range shared {
		if hasChange(d.am, h) {
			known = append(known, h)
		}
	}
	clean := []byte{syncStateType}
	clean = appendUleb(clean, uint64(len(known)))
	for _, h := range Heads(known).sorted() {
		clean = append(clean, h[:]...)
	}
	ss, err := automerge.LoadSyncState(d.am, clean)
	if err != nil {
		return nil, &framesync.Error{Kind: framesync.BadInput, Op: op, Err: err}
	}
	s.ss = ss
	return s, nil
}

// Save returns the part of the sync state worth keeping across connections
// (the heads both sides shared), for LoadSession.
func (s *Session) Save() []byte {
	s.doc.mu.Lock()
	defer s.doc.mu.Unlock()
	return s.ss.Save()
}

// Next returns the next message to send to the peer, or ok false when there
// is nothing to send (the peer is up to date, or a reply is awaited). Call it
// after creating the session, after every Receive and after every local
// change.
func (s *Session) Next() (msg []byte, ok bool) {
	cHeapTick()
	d := s.doc
	d.mu.Lock()
	defer d.mu.Unlock()
	s.ss.Doc = d.am // the document may have been replaced by a rollback
	m, ok := s.ss.GenerateMessage()
	wants := d.wantsLocked()
	switch {
	case len(wants) == 0 && !ok:
		return nil, false
	case len(wants) == 0:
		return m.Bytes(), true
	case ok:
		// Ask for the dependencies of parked changes too: the core does not
		// know about them (see Receive).
		s.asked = true
		p, err := parseMessage(m.Bytes())
		if err != nil {
			return m.Bytes(), true
		}
		return p.withNeed(wants), true
	case !s.asked:
		s.asked = true
		return needMessage(headsOf(d.am), wants), true
	}
	return nil, false
}

// Receive applies a message from the peer. The message is decoded and
// checked first; a malformed one is a framesync.BadInput error and a change
// refused by SessionOptions.Accept a framesync.Forbidden error; in both cases
// nothing of the message is applied. Listeners registered with Doc.OnChange
// are called if the document changed.
//
// Unless TrustPeer is set, every change the document does not have yet is
// checked before the Automerge core sees it, because the bundled core aborts
// the whole process on changes that break its assumptions: actor indexes in
// range, keys that match the kind of object they address (map keys on maps,
// list positions on lists and text), objects that exist, and each actor's
// sequence numbers applied in order without gaps. To check a change against
// the objects it uses, its dependencies must be known; so a change whose
// dependencies are missing (the peer's Bloom filter gave a false positive) is
// held back in the document instead of being queued by the core, its
// dependencies are added to the "need" list of the next message (see Next),
// and it is checked and applied once they arrive. A held-back change that
// then fails the check is dropped and reported by the Receive that would
// have applied it (the rest of that message is applied).
func (s *Session) Receive(msg []byte) error {
	const op = "receive sync message"
	cHeapTick()
	p, err := parseMessage(msg)
	if err != nil {
		return err
	}
	d := s.doc
	d.mu.Lock()
	keep, park, err := s.sortLocked(p)
	if err == nil && len(park) > 0 {
		err = d.parkLocked(park)
	}
	if err != nil {
		d.mu.Unlock()
		return err
	}
	in := msg
	if len(keep) != len(p.info.Changes) {
		in = p.withChanges(keep)
	}
	before := headsOf(d.am)
	s.ss.Doc = d.am
	if _, err = s.ss.ReceiveMessage(in); err != nil {
		err = &framesync.Error{Kind: framesync.BadInput, Op: op, Err: err}
	} else if len(d.pending) > 0 {
		err = d.drainLocked()
	}
	s.asked = false
	after := headsOf(d.am)
	if !before.Equal(after) {
		d.version++
	}
	fns := d.listenersLocked()
	d.mu.Unlock()
	notify(fns, before, after)
	return err
}

// sortLocked applies the Accept policy to the changes of a message that the
// document does not have, and sorts them: the indexes of the changes to pass
// to the core now (causally ready, in order, and checked), and the changes
// to park until their dependencies arrive. s.doc.mu is held.
func (s *Session) sortLocked(p *parsedMessage) (keep []int, park []*parked, err error) {
	const op = "receive sync message"
	d := s.doc
	var ov *overlay
	budget := maxOpsPerMessage
	ready := make(map[ChangeHash]bool)
	for i, c := range p.info.Changes {
		if ready[c.Hash] || hasChange(d.am, c.Hash) || d.pending[c.Hash] != nil {
			continue // known: the core would skip it
		}
		if s.accept != nil {
			if err := s.accept(c); err != nil {
				return nil, nil, &framesync.Error{Kind: framesync.Forbidden, Op: op, Err: err}
			}
		}
		if s.trust {
			keep = append(keep, i)
			continue
		}
		if slices.IndexFunc(c.Deps, func(dep ChangeHash) bool { return !ready[dep] && !hasChange(d.am, dep) }) >= 0 {
			park = append(park, &parked{info: c, raw: slices.Clone(p.raws[i]), rest: slices.Clone(p.rests[i])})
			continue
		}
		if ov == nil {
			idx, err := d.indexLocked()
			if err != nil {
				return nil, nil, err
			}
			ov = newOverlay(idx)
		}
		if err := ov.check(c, p.rests[i], &budget); err != nil {
			return nil, nil, &framesync.Error{Kind: framesync.BadInput, Op: op, Msg: fmt.Sprintf("change %s by %s", c.Hash, c.Actor), Err: err}
		}
		ready[c.Hash] = true
		keep = append(keep, i)
	}
	return keep, park, nil
}

// skeletonHashes returns the hashes of the skeleton changes of the typed
// documents (the same on every replica, see initActor).
func skeletonHashes() []ChangeHash {
	var out []ChangeHash
	if t, err := NewTrajectory(nil); err == nil {
		out = append(out, headsOf(t.doc.am)...)
	}
	if s, err := NewState(nil); err == nil {
		out = append(out, headsOf(s.doc.am)...)
	}
	return out
}
