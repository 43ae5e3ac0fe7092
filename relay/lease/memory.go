package lease

import (
	"container/heap"
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"framesync"
)

// tokenBlock is how many fencing tokens Memory reserves at a time.
const tokenBlock = 1024

// Options configure a Memory backend. A nil *Options means the defaults.
type Options struct {
	// Now returns the current time. Nil means time.Now. Expiry is
	// delivered by a timer on the real clock; every method also compares
	// lease deadlines against Now, so a lease past its deadline is never
	// treated as held.
	Now func() time.Time
	// Tokens persists fencing token high-water marks. Nil keeps them in
	// memory only (tokens restart at 1 in a new Memory).
	Tokens TokenStore
}

// Memory is the embedded lease backend: in-process leases, expired by an
// owned goroutine. It is safe for concurrent use. Close stops it.
type Memory struct {
	// Static after construction.
	now    func() time.Time
	tokens TokenStore
	wake   chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex // guards the fields below
	rooms  map[string]*roomLeases
	expiry expiryHeap
	closed bool

	fanout // events, sent under mu (so in order)
}

type roomLeases struct {
	leases   map[string]*entry // target -> live lease
	last     int64             // last token granted
	reserved int64             // tokens up to this are reserved in Tokens
}

type entry struct {
	g     Grant
	index int // in Memory.expiry
}

var _ Backend = (*Memory)(nil)

// NewMemory returns a running embedded backend.
func NewMemory(opts *Options) (*Memory, error) {
	m := &Memory{now: time.Now, rooms: map[string]*roomLeases{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if opts != nil {
		if opts.Now != nil {
			m.now = opts.Now
		}
		m.tokens = opts.Tokens
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.expireLoop()
	}()
	return m, nil
}

// Close stops the expiry goroutine and waits for it. Leases are forgotten;
// tokens stay reserved.
func (m *Memory) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	close(m.done)
	m.wg.Wait()
	return nil
}

// emitLocked sends an event to every subscriber without blocking.
func (m *Memory) emitLocked(k EventKind, g Grant) { m.emit(k, g) }

// roomLocked returns the state of room, loading its token mark on first use.
func (m *Memory) roomLocked(room string) (*roomLeases, error) {
	if r, ok := m.rooms[room]; ok {
		return r, nil
	}
	r := &roomLeases{leases: map[string]*entry{}}
	if m.tokens != nil {
		hwm, err := m.tokens.Load(room)
		if err != nil {
			return nil, err
		}
		r.last, r.reserved = hwm, hwm
	}
	m.rooms[room] = r
	return r, nil
}

// liveLocked returns the live lease of target, removing it if it expired.
func (m *Memory) liveLocked(r *roomLeases, room, target string, now time.Time) *entry {
	e, ok := r.leases[target]
	if !ok {
		return nil
	}
	if !now.Before(e.g.Expires) {
		m.endLocked(r, e, Expired)
		return nil
	}
	return e
}

// endLocked removes a lease and reports it.
func (m *Memory) endLocked(r *roomLeases, e *entry, k EventKind) {
	delete(r.leases, e.g.Target)
	if e.index >= 0 {
		heap.Remove(&m.expiry, e.index)
	}
	m.emitLocked(k, e.g)
}

// nextTokenLocked returns a new fencing token for room, reserving a block
// in the token store first when needed.
func (m *Memory) nextTokenLocked(room string, r *roomLeases) (int64, error) {
	t := r.last + 1
	if m.tokens != nil && t > r.reserved {
		if err := m.tokens.Reserve(room, t+tokenBlock-1); err != nil {
			return 0, fmt.Errorf("reserve fencing tokens: %w", err)
		}
		r.reserved = t + tokenBlock - 1
	}
	r.last = t
	return t, nil
}

func checkTTL(op string, ttl time.Duration) error {
	if ttl <= 0 {
		return &framesync.Error{Kind: framesync.BadInput, Op: op, Field: "ttl", Msg: "ttl must be positive"}
	}
	return nil
}

func (m *Memory) closedErr(op string) error {
	return &framesync.Error{Kind: framesync.Unavailable, Op: op, Msg: "lease backend closed"}
}

// Acquire implements Backend.
func (m *Memory) Acquire(_ context.Context, room, target, holder string, ttl time.Duration) (Grant, error) {
	const op = "acquire lock"
	if err := CheckTarget(target); err != nil {
		return Grant{}, err
	}
	if err := checkTTL(op, ttl); err != nil {
		return Grant{}, err
	}
	if holder == "" {
		return Grant{}, &framesync.Error{Kind: framesync.BadInput, Op: op, Field: "holder", Msg: "empty holder"}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Grant{}, m.closedErr(op)
	}
	r, err := m.roomLocked(room)
	if err != nil {
		return Grant{}, err
	}
	now := m.now()
	if e := m.liveLocked(r, room, target, now); e != nil {
		if e.g.Holder != holder {
			return Grant{}, &HeldError{Grant: e.g}
		}
		e.g.Expires = now.Add(ttl)
		heap.Fix(&m.expiry, e.index)
		m.emitLocked(Renewed, e.g)
		m.poke()
		return e.g, nil
	}
	tok, err := m.nextTokenLocked(room, r)
	if err != nil {
		return Grant{}, err
	}
	e := &entry{g: Grant{Room: room, Target: target, Holder: holder, Token: tok, Expires: now.Add(ttl)}}
	r.leases[target] = e
	heap.Push(&m.expiry, e)
	m.emitLocked(Acquired, e.g)
	m.poke()
	return e.g, nil
}

// Renew implements Backend.
func (m *Memory) Renew(_ context.Context, room, target, holder string, token int64, ttl time.Duration) (Grant, error) {
	const op = "renew lock"
	if err := checkTTL(op, ttl); err != nil {
		return Grant{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Grant{}, m.closedErr(op)
	}
	r, err := m.roomLocked(room)
	if err != nil {
		return Grant{}, err
	}
	now := m.now()
	e := m.liveLocked(r, room, target, now)
	if e == nil {
		return Grant{}, expiredErr(op, target, token)
	}
	if e.g.Holder != holder || e.g.Token != token {
		return Grant{}, &HeldError{Grant: e.g}
	}
	e.g.Expires = now.Add(ttl)
	heap.Fix(&m.expiry, e.index)
	m.emitLocked(Renewed, e.g)
	m.poke()
	return e.g, nil
}

func expiredErr(op, target string, token int64) error {
	return &framesync.Error{Kind: framesync.PreconditionFailed, Op: op, Field: target, Msg: fmt.Sprintf("the lease with token %d expired or was released: lock again", token)}
}

// Release implements Backend.
func (m *Memory) Release(_ context.Context, room, target, holder string, token int64) error {
	const op = "release lock"
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return m.closedErr(op)
	}
	r, ok := m.rooms[room]
	if !ok {
		return nil
	}
	e := m.liveLocked(r, room, target, m.now())
	if e == nil {
		return nil
	}
	if e.g.Holder != holder || e.g.Token != token {
		if token < e.g.Token {
			return nil // an older lease of ours or someone's: already gone
		}
		return &HeldError{Grant: e.g}
	}
	m.endLocked(r, e, Released)
	return nil
}

// ReleaseHolder implements Backend.
func (m *Memory) ReleaseHolder(_ context.Context, holder string) ([]Grant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Grant
	for _, r := range m.rooms {
		for _, e := range r.leases {
			if e.g.Holder == holder {
				out = append(out, e.g)
				m.endLocked(r, e, Released)
			}
		}
	}
	sortGrants(out)
	return out, nil
}

// Check implements Backend.
func (m *Memory) Check(_ context.Context, room, target string, token int64) (Grant, error) {
	const op = "check lock"
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Grant{}, m.closedErr(op)
	}
	r, ok := m.rooms[room]
	if !ok {
		return Grant{}, expiredErr(op, target, token)
	}
	e := m.liveLocked(r, room, target, m.now())
	if e == nil {
		return Grant{}, expiredErr(op, target, token)
	}
	if e.g.Token != token {
		return Grant{}, &HeldError{Grant: e.g}
	}
	return e.g, nil
}

// Get implements Backend.
func (m *Memory) Get(_ context.Context, room, target string) (Grant, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rooms[room]
	if !ok {
		return Grant{}, false, nil
	}
	e := m.liveLocked(r, room, target, m.now())
	if e == nil {
		return Grant{}, false, nil
	}
	return e.g, true, nil
}

// List implements Backend.
func (m *Memory) List(_ context.Context, room string) ([]Grant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rooms[room]
	if !ok {
		return nil, nil
	}
	now := m.now()
	var out []Grant
	for t := range r.leases {
		if e := m.liveLocked(r, room, t, now); e != nil {
			out = append(out, e.g)
		}
	}
	sortGrants(out)
	return out, nil
}

// DropRoom implements Backend.
func (m *Memory) DropRoom(_ context.Context, room string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rooms[room]
	if !ok {
		return nil
	}
	for _, e := range r.leases {
		m.endLocked(r, e, Released)
	}
	// Keep r: its token marks must not go back while this process runs.
	return nil
}

func sortGrants(gs []Grant) {
	sort.Slice(gs, func(i, j int) bool {
		if gs[i].Room != gs[j].Room {
			return gs[i].Room < gs[j].Room
		}
		return gs[i].Target < gs[j].Target
	})
}

// poke wakes the expiry goroutine to look at the earliest deadline again.
func (m *Memory) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// expireLoop ends leases at their deadlines.
func (m *Memory) expireLoop() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		m.mu.Lock()
		now := m.now()
		for len(m.expiry) > 0 && !now.Before(m.expiry[0].g.Expires) {
			e := m.expiry[0]
			m.endLocked(m.rooms[e.g.Room], e, Expired)
		}
		wait := time.Hour
		if len(m.expiry) > 0 {
			wait = m.expiry[0].g.Expires.Sub(now)
		}
		m.mu.Unlock()
		t.Reset(wait)
		select {
		case <-m.done:
			return
		case <-m.wake:
		case <-t.C:
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
	}
}

// expiryHeap orders live leases by deadline.
type expiryHeap []*entry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].g.Expires.Before(h[j].g.Expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
