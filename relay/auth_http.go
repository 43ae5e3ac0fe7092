package relay

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"

	"framesync"
	"framesync/relay/wire"
)

var errLocalMode = &framesync.Error{Kind: framesync.NotFound, Op: "auth", Msg: "this hub runs in local mode (no admin configured): there are no users and no login is needed"}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) error {
	if s.auth == nil {
		return errLocalMode
	}
	var req wire.LoginRequest
	if err := decodeBody(w, r, 1<<12, &req); err != nil {
		return err
	}
	tok, exp, err := s.auth.login(req.Username, req.Password)
	if err != nil {
		s.log.Info("login refused", "user", req.Username, "remote", r.RemoteAddr)
		return err
	}
	writeJSON(w, http.StatusOK, wire.LoginResponse{Token: tok, User: req.Username, Expires: exp, Admin: s.auth.isAdmin(req.Username)})
	return nil
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) error {
	if s.auth == nil {
		return errLocalMode
	}
	if !s.auth.opts.OpenRegistration {
		return &framesync.Error{Kind: framesync.Forbidden, Op: "register", Msg: "registration is closed on this hub: ask its administrator for an account"}
	}
	var req wire.LoginRequest
	if err := decodeBody(w, r, 1<<12, &req); err != nil {
		return err
	}
	if err := s.auth.addUser(req.Username, req.Password, false); err != nil {
		return err
	}
	return s.handleLoginAs(w, req.Username, s.auth.genOf(req.Username), http.StatusCreated)
}

func (s *Server) handleLoginAs(w http.ResponseWriter, user, gen string, status int) error {
	tok, exp := s.auth.issue(user, gen)
	writeJSON(w, status, wire.LoginResponse{Token: tok, User: user, Expires: exp, Admin: s.auth.isAdmin(user)})
	return nil
}

// handleRefresh swaps a valid token for a fresh one; the old one is
// revoked.
func (s *Server) handleRefresh(w http.ResponseWriter, r *http.Request) error {
	c, err := s.revokeCaller(r)
	if err != nil {
		return err
	}
	return s.handleLoginAs(w, c.User, c.Gen, http.StatusOK)
}

// revokeCaller revokes the token the request carries.
func (s *Server) revokeCaller(r *http.Request) (claims, error) {
	if s.auth == nil {
		return claims{}, errLocalMode
	}
	c, err := s.auth.verify(bearer(r))
	if err != nil {
		return claims{}, err
	}
	if err := s.auth.revoke(c); err != nil {
		return claims{}, err
	}
	s.disconnect(func(p principal) bool { return p.tokenID == c.ID }, "token revoked")
	return c, nil
}

// disconnect closes the control connections whose principal matches.
func (s *Server) disconnect(match func(principal) bool, why string) {
	s.mu.Lock()
	var gone []*conn
	for c := range s.conns {
		if match(c.who) {
			gone = append(gone, c)
		}
	}
	s.mu.Unlock()
	for _, c := range gone {
		c.shutdown(why)
	}
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.revokeCaller(r); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleMe says who the caller is.
func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) error {
	p := who(r.Context())
	writeJSON(w, http.StatusOK, map[string]any{"user": p.user, "admin": p.admin || p.local, "local_mode": p.local})
	return nil
}

func (s *Server) handleCreateUser(w http.ResponseWriter, r *http.Request) error {
	if s.auth == nil {
		return errLocalMode
	}
	var req wire.LoginRequest
	if err := decodeBody(w, r, 1<<12, &req); err != nil {
		return err
	}
	if err := s.auth.addUser(req.Username, req.Password, req.Admin); err != nil {
		return err
	}
	s.log.Info("user created", "user", req.Username, "admin", req.Admin, "by", who(r.Context()).user)
	writeJSON(w, http.StatusCreated, map[string]any{"user": req.Username, "admin": req.Admin})
	return nil
}

func (s *Server) handleDeleteUser(w http.ResponseWriter, r *http.Request) error {
	if s.auth == nil {
		return errLocalMode
	}
	user := r.PathValue("user")
	if err := s.auth.deleteUser(user); err != nil {
		return err
	}
	s.disconnect(func(p principal) bool { return p.user == user }, "user deleted")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleGetACL(w http.ResponseWriter, r *http.Request) error {
	rm, err := s.room(r.PathValue("room"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rm.acl.Load())
	return nil
}

// handlePutACL replaces a room's access rules.
func (s *Server) handlePutACL(w http.ResponseWriter, r *http.Request) error {
	const op = "room access"
	rm, err := s.room(r.PathValue("room"))
	if err != nil {
		return err
	}
	var acl wire.RoomACL
	if err := decodeBody(w, r, 1<<20, &acl); err != nil {
		return err
	}
	if _, ok := roleRank[acl.DefaultRole]; !ok {
		return badInput(op, "default_role", fmt.Sprintf("%q is not a role: reader, writer, admin or empty", acl.DefaultRole))
	}
	users := make([]string, 0, len(acl.Roles))
	for u := range acl.Roles {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		if role := acl.Roles[u]; role == RoleNone || roleRank[role] == 0 {
			return badInput(op, "roles", fmt.Sprintf("user %q: %q is not a role: reader, writer or admin", u, role))
		}
		if s.auth != nil && !s.auth.exists(u) {
			return badInput(op, "roles", fmt.Sprintf("no user %q", u))
		}
	}
	if p := who(r.Context()); !p.local && !p.admin && acl.Roles[p.user] != RoleAdmin {
		return badInput(op, "roles", "you would lose the admin role of this room: keep yourself as admin")
	}
	if s.hs != nil {
		// Every hub applies it from the deployment log, this one included.
		err = s.hs.setACL(rm, acl)
	} else {
		err = rm.setACL(acl)
	}
	if err != nil {
		return err
	}
	s.evictOutsiders(rm)
	s.log.Info("room access changed", "room", rm.name, "by", who(r.Context()).user)
	writeJSON(w, http.StatusOK, acl)
	return nil
}

// setACL replaces the room's access list and saves it.
func (r *room) setACL(acl wire.RoomACL) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.acl.Swap(&acl)
	if err := r.saveMetaLocked(); err != nil {
		r.acl.Store(old)
		return err
	}
	return nil
}

// readableBlob wraps the blob read routes: the caller must be able to read
// a room that references the blob (its frames' manifests and fields, at
// any version still in their history).
func (s *Server) readableBlob(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p := who(r.Context())
		if p.local || p.admin {
			return h(w, r)
		}
		hash, err := parseHashParam(r)
		if err != nil {
			return err
		}
		s.mu.Lock()
		rooms := slices.Collect(maps.Values(s.rooms))
		s.mu.Unlock()
		for _, rm := range rooms {
			if roleRank[s.roleIn(p, rm)] >= roleRank[RoleReader] && rm.references(r.Context(), hash) {
				return h(w, r)
			}
		}
		// The same answer as for a blob that does not exist: no probing.
		return &framesync.Error{Kind: framesync.NotFound, Op: "blob", Msg: fmt.Sprintf("no blob %s in a room you can read", hash)}
	}
}

// references reports whether blob h belongs to a frame of the room (a
// manifest or a field of any version in the history of a current frame).
// The index is built on first use and kept up to date by commits.
func (r *room) references(ctx context.Context, h framesync.Hash) bool {
	r.refsMu.Lock()
	defer r.refsMu.Unlock()
	if r.refs == nil {
		r.refs = map[framesync.Hash]struct{}{}
		entries, err := r.traj.Entries()
		if err != nil {
			r.refs = nil
			return false
		}
		for _, e := range entries {
			hist, err := r.traj.History(e.ID)
			if err != nil {
				continue
			}
			for _, v := range hist {
				r.addRefLocked(ctx, v.Hash)
			}
		}
	}
	_, ok := r.refs[h]
	return ok
}

// addRef records manifest m and its fields in the index, if it is built.
func (r *room) addRef(ctx context.Context, m framesync.Hash) {
	r.refsMu.Lock()
	defer r.refsMu.Unlock()
	if r.refs != nil {
		r.addRefLocked(ctx, m)
	}
}

func (r *room) addRefLocked(ctx context.Context, m framesync.Hash) {
	r.refs[m] = struct{}{}
	man, err := r.srv.manifest(ctx, m)
	if err != nil {
		return
	}
	for _, f := range man {
		r.refs[f] = struct{}{}
	}
}

// evictOutsiders removes from room r the connections whose user may no
// longer read it, and tells the others their role.
func (s *Server) evictOutsiders(r *room) {
	for _, c := range r.memberConns() {
		role := s.roleIn(c.who, r)
		if roleRank[role] < roleRank[RoleReader] {
			c.leaveRoom(r)
			c.reply(&wire.Msg{T: wire.MsgError, Room: r.name, Code: framesync.Forbidden.Code(), Message: fmt.Sprintf("room %q: your access was withdrawn", r.name)})
			continue
		}
		c.reply(&wire.Msg{T: wire.MsgRole, Room: r.name, State: role})
	}
}
