package relay

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"framesync"
)

// AuthOptions turn access control on. A nil Options.Auth is local mode:
// everyone may do everything.
type AuthOptions struct {
	// AdminUser and AdminPassword are the hub administrator, created (or
	// given this password) when the hub starts.
	AdminUser, AdminPassword string
	// Secret signs tokens: at least MinSecret bytes. Tokens stay valid
	// across restarts as long as the secret does.
	Secret []byte
	// TokenTTL is how long a token is valid; zero means 12 h.
	TokenTTL time.Duration
	// OpenRegistration lets anyone create an account (POST
	// /api/auth/register); otherwise only the admin creates users.
	OpenRegistration bool
	// PasswordCost is the bcrypt cost of stored passwords; zero means
	// bcrypt.DefaultCost. Tests lower it.
	PasswordCost int
}

// MinSecret is the shortest secret accepted for signing tokens.
const MinSecret = 32

// Roles of a member of a room, weakest first. Each includes the ones
// before it.
const (
	RoleNone   = ""
	RoleReader = "reader" // read frames and documents, presence
	RoleWriter = "writer" // locks, commits, state edits, presenter
	RoleAdmin  = "admin"  // room settings, roles, delete
)

var roleRank = map[string]int{RoleNone: 0, RoleReader: 1, RoleWriter: 2, RoleAdmin: 3}

// principal is who makes a request.
type principal struct {
	user    string // "" = anonymous
	admin   bool   // the hub administrator (every role in every room)
	local   bool   // local mode: no access control
	tokenID string // the token's ID, to close connections when it is revoked
}

// auth is the hub's users and tokens.
type auth struct {
	// Static after openAuth.
	opts AuthOptions
	dir  string

	// shared is the deployment's accounts when several hubs share Redis
	// (hubs_auth.go): changes go through it and come back through apply
	// and applyRevoke. Nil for one hub. Set before the hub serves.
	shared sharedAuth

	mu      sync.Mutex
	users   map[string]*userRecord
	revoked map[string]int64 // token ID -> expiry (unix seconds)
}

type userRecord struct {
	Hash    string    `json:"hash"` // bcrypt
	Admin   bool      `json:"admin,omitempty"`
	Created time.Time `json:"created"`
	// Gen is random per user created (empty for the configured admin, who
	// cannot be deleted, and for users made before it existed); tokens
	// carry it, so a user deleted and created again does not get the old
	// one's tokens back.
	Gen string `json:"gen,omitempty"`
}

// sharedAuth is where accounts and revocations change when several hubs
// share them (*hubSync).
type sharedAuth interface {
	putUser(name string, rec *userRecord, create bool) error
	revoke(id string, exp int64) error
}

type authFile struct {
	Users   map[string]*userRecord `json:"users"`
	Revoked map[string]int64       `json:"revoked,omitempty"`
}

var userNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// openAuth loads dir/auth.json and makes sure the admin exists.
func openAuth(opts AuthOptions, dir string) (*auth, error) {
	if len(opts.Secret) < MinSecret {
		return nil, fmt.Errorf("relay: the token secret must be at least %d bytes (got %d): set FRAMESYNC_SECRET_KEY to a long random string, e.g. the output of 'openssl rand -hex 32'", MinSecret, len(opts.Secret))
	}
	if opts.AdminUser == "" || opts.AdminPassword == "" {
		return nil, errors.New("relay: access control needs both an admin username and an admin password")
	}
	if !userNameRE.MatchString(opts.AdminUser) {
		return nil, fmt.Errorf("relay: admin username %q: use 1-64 letters, digits, '.', '_', '@' or '-'", opts.AdminUser)
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 12 * time.Hour
	}
	if opts.PasswordCost == 0 {
		opts.PasswordCost = bcrypt.DefaultCost
	}
	a := &auth{opts: opts, dir: dir, users: map[string]*userRecord{}, revoked: map[string]int64{}}
	b, err := os.ReadFile(filepath.Join(dir, "auth.json"))
	if err == nil {
		var f authFile
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("relay: %s: %w", filepath.Join(dir, "auth.json"), err)
		}
		if f.Users != nil {
			a.users = f.Users
		}
		if f.Revoked != nil {
			a.revoked = f.Revoked
		}
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	u := a.users[opts.AdminUser]
	if u == nil || bcrypt.CompareHashAndPassword([]byte(u.Hash), []byte(opts.AdminPassword)) != nil || !u.Admin {
		h, err := bcrypt.GenerateFromPassword([]byte(opts.AdminPassword), opts.PasswordCost)
		if err != nil {
			return nil, fmt.Errorf("relay: admin password: %w", err)
		}
		created := time.Now().UTC()
		if u != nil {
			created = u.Created
		}
		a.users[opts.AdminUser] = &userRecord{Hash: string(h), Admin: true, Created: created}
		if err := a.saveLocked(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *auth) saveLocked() error {
	now := time.Now().Unix()
	for id, exp := range a.revoked {
		if exp < now {
			delete(a.revoked, id)
		}
	}
	b, _ := json.MarshalIndent(authFile{Users: a.users, Revoked: a.revoked}, "", "  ")
	path := filepath.Join(a.dir, "auth.json")
	if err := writeFileAtomic(path, b, false); err != nil {
		return err
	}
	return os.Chmod(path, 0o600)
}

var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)
	return h
})

var errBadLogin = &framesync.Error{Kind: framesync.Unauthorized, Op: "login", Msg: "wrong username or password"}

// addUser creates a user.
func (a *auth) addUser(name, password string, admin bool) error {
	const op = "create user"
	if !userNameRE.MatchString(name) {
		return &framesync.Error{Kind: framesync.BadInput, Op: op, Field: "username", Msg: fmt.Sprintf("%q: use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", name)}
	}
	if len(password) < 8 || len(password) > 72 {
		return &framesync.Error{Kind: framesync.BadInput, Op: op, Field: "password", Msg: "a password has 8 to 72 bytes"}
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), a.opts.PasswordCost)
	if err != nil {
		return err
	}
	rec := &userRecord{Hash: string(h), Admin: admin, Created: time.Now().UTC(), Gen: randomID()}
	if a.shared != nil {
		if name == a.opts.AdminUser {
			return &framesync.Error{Kind: framesync.Conflict, Op: op, Msg: fmt.Sprintf("user %q exists", name)}
		}
		return a.shared.putUser(name, rec, true)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.users[name]; ok {
		return &framesync.Error{Kind: framesync.Conflict, Op: op, Msg: fmt.Sprintf("user %q exists", name)}
	}
	a.users[name] = rec
	return a.saveLocked()
}

// apply sets (rec nil: deletes) a user as the deployment log says.
func (a *auth) apply(name string, rec *userRecord) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rec == nil {
		if _, ok := a.users[name]; !ok {
			return nil
		}
		delete(a.users, name)
	} else {
		a.users[name] = rec
	}
	return a.saveLocked()
}

// applyRevoke records a revocation from the deployment log.
func (a *auth) applyRevoke(id string, exp int64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.revoked[id]; ok || exp < time.Now().Unix() {
		return nil
	}
	a.revoked[id] = exp
	return a.saveLocked()
}

// revocations returns a copy of the revoked token IDs and their expiries.
func (a *auth) revocations() map[string]int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.revoked)
}

// snapshot returns a copy of the users.
func (a *auth) snapshot() map[string]*userRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]*userRecord, len(a.users))
	for n, u := range a.users {
		c := *u
		out[n] = &c
	}
	return out
}

// deleteUser removes a user; tokens issued to it stop working.
func (a *auth) deleteUser(name string) error {
	if name == a.opts.AdminUser {
		return &framesync.Error{Kind: framesync.Forbidden, Op: "delete user", Msg: "the configured admin cannot be deleted"}
	}
	if a.shared != nil {
		return a.shared.putUser(name, nil, false)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.users[name]; !ok {
		return &framesync.Error{Kind: framesync.NotFound, Op: "delete user", Msg: fmt.Sprintf("no user %q", name)}
	}
	delete(a.users, name)
	return a.saveLocked()
}

// login checks a password and issues a token.
func (a *auth) login(name, password string) (string, time.Time, error) {
	a.mu.Lock()
	u := a.users[name]
	a.mu.Unlock()
	if u == nil {
		// Spend the time a check would, so timing does not tell which
		// users exist.
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return "", time.Time{}, errBadLogin
	}
	if bcrypt.CompareHashAndPassword([]byte(u.Hash), []byte(password)) != nil {
		return "", time.Time{}, errBadLogin
	}
	tok, exp := a.issue(name, u.Gen)
	return tok, exp, nil
}

// claims are what a token says.
type claims struct {
	User string `json:"u"`
	ID   string `json:"id"`
	Exp  int64  `json:"exp"`
	Gen  string `json:"g,omitempty"` // the user's Gen when the token was issued
}

const tokenPrefix = "fs1."

// genOf returns the Gen of user ("" if there is none).
func (a *auth) genOf(user string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if u := a.users[user]; u != nil {
		return u.Gen
	}
	return ""
}

// issue signs a new token for user, of generation gen (the Gen of the
// record the caller checked, so a user deleted and made again meanwhile
// does not get it).
func (a *auth) issue(user, gen string) (string, time.Time) {
	var id [12]byte
	rand.Read(id[:])
	exp := time.Now().Add(a.opts.TokenTTL).Truncate(time.Second)
	payload, _ := json.Marshal(claims{User: user, ID: hex.EncodeToString(id[:]), Exp: exp.Unix(), Gen: gen})
	p := base64.RawURLEncoding.EncodeToString(payload)
	return tokenPrefix + p + "." + base64.RawURLEncoding.EncodeToString(a.sign(p)), exp
}

func (a *auth) sign(p string) []byte {
	m := hmac.New(sha256.New, a.opts.Secret)
	m.Write([]byte(tokenPrefix + p))
	return m.Sum(nil)
}

var errBadToken = &framesync.Error{Kind: framesync.Unauthorized, Op: "token", Msg: "invalid, expired or revoked token: log in again"}

// verify checks a token and returns its claims.
func (a *auth) verify(tok string) (claims, error) {
	rest, ok := strings.CutPrefix(tok, tokenPrefix)
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return claims{}, errBadToken
	}
	s, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(s, a.sign(p)) {
		return claims{}, errBadToken
	}
	b, err := base64.RawURLEncoding.DecodeString(p)
	var c claims
	if err != nil || json.Unmarshal(b, &c) != nil || c.Exp < time.Now().Unix() {
		return claims{}, errBadToken
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	u := a.users[c.User]
	if _, gone := a.revoked[c.ID]; gone || u == nil {
		return claims{}, errBadToken
	}
	if c.Gen != u.Gen {
		// Issued to an earlier user of that name, deleted since.
		return claims{}, errBadToken
	}
	return c, nil
}

// revoke makes a token unusable before it expires.
func (a *auth) revoke(c claims) error {
	if a.shared != nil {
		return a.shared.revoke(c.ID, c.Exp)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.revoked[c.ID] = c.Exp
	return a.saveLocked()
}

// isAdmin reports whether user is a hub administrator.
func (a *auth) isAdmin(user string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	u := a.users[user]
	return u != nil && u.Admin
}

// exists reports whether user exists.
func (a *auth) exists(user string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.users[user] != nil
}

// bearer returns the token of a request: the Authorization header, or the
// token query parameter (browsers cannot set headers on a WebSocket).
func bearer(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
	}
	return r.URL.Query().Get("token")
}

type principalKey struct{}

// identify resolves who makes r; a token that does not verify is an
// error (rather than anonymous access), so a client learns it must log in
// again.
func (s *Server) identify(r *http.Request) (principal, error) {
	if s.auth == nil {
		return principal{local: true}, nil
	}
	tok := bearer(r)
	if tok == "" {
		return principal{}, nil
	}
	c, err := s.auth.verify(tok)
	if err != nil {
		return principal{}, err
	}
	return principal{user: c.User, admin: s.auth.isAdmin(c.User), tokenID: c.ID}, nil
}

// who returns the principal the middleware stored in ctx.
func who(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// exemptFromRate are the paths monitoring polls.
var exemptFromRate = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// withPrincipal is the middleware that identifies every request and
// counts it against the caller's request rate.
func (s *Server) withPrincipal(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.identify(r)
		if err == nil && !exemptFromRate[r.URL.Path] {
			err = s.checkRate(p, r)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// roleIn returns p's role in room r.
func (s *Server) roleIn(p principal, r *room) string {
	if p.local || p.admin {
		return RoleAdmin
	}
	acl := r.acl.Load()
	role := RoleNone
	if p.user != "" {
		role = acl.DefaultRole
		if rr, ok := acl.Roles[p.user]; ok {
			role = rr
		}
	}
	if acl.Public && roleRank[role] < roleRank[RoleReader] {
		role = RoleReader
	}
	return role
}

// allow checks that p has at least role want in room r.
func (s *Server) allow(p principal, r *room, want, op string) error {
	have := s.roleIn(p, r)
	if roleRank[have] >= roleRank[want] {
		return nil
	}
	if p.user == "" {
		return &framesync.Error{Kind: framesync.Unauthorized, Op: op, Msg: fmt.Sprintf("room %q: log in first", r.name)}
	}
	if have == RoleNone {
		// Do not tell outsiders more than they could learn anyway.
		return &framesync.Error{Kind: framesync.Forbidden, Op: op, Msg: fmt.Sprintf("room %q: %s is not a member", r.name, p.user)}
	}
	return &framesync.Error{Kind: framesync.Forbidden, Op: op, Msg: fmt.Sprintf("room %q: %s needs the %s role, has %s", r.name, p.user, want, have)}
}

// need wraps a room route: the room named in the path must exist and the
// caller must have role want in it.
func (s *Server) need(want string, h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		rm, err := s.room(r.PathValue("room"))
		if err != nil {
			return err
		}
		if err := s.allow(who(r.Context()), rm, want, r.Method+" "+r.URL.Path); err != nil {
			return err
		}
		return h(w, r)
	}
}

// loggedIn wraps a route that needs a user (any user) in auth mode.
func (s *Server) loggedIn(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p := who(r.Context())
		if !p.local && p.user == "" {
			return &framesync.Error{Kind: framesync.Unauthorized, Op: r.Method + " " + r.URL.Path, Msg: "log in first"}
		}
		return h(w, r)
	}
}

// hubAdmin wraps a route only the hub administrator may use.
func (s *Server) hubAdmin(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p := who(r.Context())
		if !p.local && !p.admin {
			if p.user == "" {
				return &framesync.Error{Kind: framesync.Unauthorized, Op: r.Method + " " + r.URL.Path, Msg: "log in first"}
			}
			return &framesync.Error{Kind: framesync.Forbidden, Op: r.Method + " " + r.URL.Path, Msg: "only the hub administrator may do this"}
		}
		return h(w, r)
	}
}
