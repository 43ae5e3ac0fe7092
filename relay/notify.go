package relay

import (
	"context"
	"time"

	"framesync"
	"framesync/relay/lease"
	"framesync/relay/wire"
)

type leaseGrant = lease.Grant

// leaseSubscriber is the optional ability of a lease backend to report
// grants, releases and expiries, so the hub can tell the room.
type leaseSubscriber interface {
	Subscribe(buf int) (<-chan lease.Event, func())
}

// maxFrameNotes is the most frame_updated messages one commit sends; a
// bigger commit (a long extend) is announced by its generation message only.
const maxFrameNotes = 64

// broadcast sends m to every member of r except one (nil for none). The
// message is encoded once.
func (s *Server) broadcast(r *room, m *wire.Msg, except *conn) {
	s.broadcastFunc(r, m, func(c *conn) bool { return c != except })
}

// broadcastFunc sends m to the members of r for which to returns true. A
// message for one receiver is sent as plain bytes; one for many is framed
// once and shared.
func (s *Server) broadcastFunc(r *room, m *wire.Msg, to func(*conn) bool) {
	r.membersMu.Lock()
	defer r.membersMu.Unlock()
	n := 0
	var one *conn
	for c := range r.members {
		if to(c) {
			n++
			one = c
		}
	}
	switch {
	case n == 0:
	case n == 1:
		one.enqueue(outMsg{b: encodeOut(m)})
	default:
		o := shared(m)
		for c := range r.members {
			if to(c) {
				c.enqueue(o)
			}
		}
	}
}

// afterCommit tells the room's members about a commit: metadata only. A
// commit of up to maxFrameNotes frames sends one frame_updated per frame,
// each carrying the new generation and length; any other commit (delete,
// move, a long extend) sends one generation message instead.
func (s *Server) afterCommit(r *room, op string, res *wire.CommitResult) {
	for _, f := range res.Frames {
		if h, err := framesync.ParseHash(f.Hash); err == nil {
			r.addRef(s.ctx, h)
		}
	}
	n := int64(res.Length)
	if len(res.Frames) > 0 && len(res.Frames) <= maxFrameNotes {
		for _, f := range res.Frames {
			idx := int64(f.Index)
			s.broadcast(r, &wire.Msg{T: wire.MsgFrameUpdated, Room: r.name, Frame: f.ID, Index: &idx, Version: f.Version, Hash: f.Hash, Gen: res.Generation, Frames: &n, State: op}, nil)
		}
	} else {
		s.broadcast(r, &wire.Msg{T: wire.MsgGeneration, Room: r.name, Gen: res.Generation, Frames: &n, State: op}, nil)
	}
	s.pokeSync(r)
}

// markChanged records a change of the room's state document in the hub
// generation.
func (r *room) markChanged() {
	g := r.srv.bumpHubGen()
	r.mu.Lock()
	r.hubGen = g
	r.mu.Unlock()
}

// pokeSync asks the sync loop to send the room's members what changed.
func (s *Server) pokeSync(r *room) {
	s.syncMu.Lock()
	s.syncDirty[r] = true
	s.syncMu.Unlock()
	select {
	case s.syncPoke <- struct{}{}:
	default:
	}
}

// syncDelay is how long the sync loop gathers changes before a round.
const syncDelay = 25 * time.Millisecond

// syncLoop sends sync messages to the members of rooms whose documents
// changed, off the commit path.
func (s *Server) syncLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.syncPoke:
		}
		// Gather what changes in the next moment into one round, and let
		// the notifications of a commit go out before its sync messages.
		t := time.NewTimer(syncDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.syncMu.Lock()
		dirty := s.syncDirty
		s.syncDirty = map[*room]bool{}
		s.syncMu.Unlock()
		for r := range dirty {
			for _, mb := range r.memberList() {
				mb.flush()
			}
			if s.hs != nil {
				s.hs.publishState(r)
			}
		}
	}
}

func (r *room) memberList() []*member {
	r.membersMu.Lock()
	defer r.membersMu.Unlock()
	out := make([]*member, 0, len(r.members))
	for _, mb := range r.members {
		out = append(out, mb)
	}
	return out
}

func (r *room) memberConns() []*conn {
	r.membersMu.Lock()
	defer r.membersMu.Unlock()
	out := make([]*conn, 0, len(r.members))
	for c := range r.members {
		out = append(out, c)
	}
	return out
}

// leaseEvents tells rooms about lock and presenter changes.
func (s *Server) leaseEvents(events <-chan lease.Event) {
	for {
		var ev lease.Event
		select {
		case <-s.ctx.Done():
			return
		case e, ok := <-events:
			if !ok {
				return
			}
			ev = e
		}
		r, err := s.room(ev.Grant.Room)
		if err != nil {
			continue
		}
		state := ev.Kind.String()
		m := &wire.Msg{Room: r.name, Target: ev.Grant.Target, Holder: ev.Grant.Holder, Expires: unixMilli(ev.Grant.Expires), State: state}
		if ev.Grant.Target == targetPresenter {
			m.T = wire.MsgPresenter
			if ev.Kind == lease.Released || ev.Kind == lease.Expired {
				r.endPresenting(ev.Grant.Holder)
			}
		} else {
			m.T = wire.MsgLockState
		}
		if ev.Kind == lease.Acquired || ev.Kind == lease.Renewed || ev.Kind == lease.Released {
			// The holder asked for it and has its reply; tell the others.
			holder := ev.Grant.Holder
			s.broadcastFunc(r, m, func(c *conn) bool { return c.client != holder })
			continue
		}
		s.broadcast(r, m, nil)
	}
}

// presenterFrame handles a frame message: only the presenter's are
// accepted and fanned out.
func (r *room) presenterFrame(c *conn, m *wire.Msg) {
	s := r.srv
	g, ok, err := s.leases.Get(s.ctx, r.name, targetPresenter)
	if err != nil || !ok || g.Holder != c.client {
		s.metrics.presenterRefused.Inc()
		if m.ID != 0 {
			c.replyErr(m.ID, errNotPresenter)
		}
		return
	}
	out := &wire.Msg{T: wire.MsgFrame, Room: r.name, Client: c.client, Step: m.Step, Frame: m.Frame, Payload: m.Payload, Sent: m.Sent}
	r.mu.Lock()
	r.present = out
	r.mu.Unlock()
	s.broadcast(r, out, c)
	if m.ID != 0 {
		c.reply(&wire.Msg{T: wire.MsgOK, ID: m.ID, Room: r.name})
	}
}

// endPresenting writes the presenter's last frame to the state document.
func (r *room) endPresenting(holder string) {
	r.mu.Lock()
	last := r.present
	r.present = nil
	deleted := r.deleted
	r.mu.Unlock()
	if deleted || last == nil || last.Step == nil || last.Client != holder {
		return
	}
	if err := r.state.SetStep(*last.Step); err != nil {
		r.srv.log.Error("write presenter step", "room", r.name, "err", err)
		return
	}
	if err := r.persistState(); err != nil {
		r.srv.log.Error("persist state", "room", r.name, "err", err)
	}
	r.markChanged()
	r.srv.pokeSync(r)
}
