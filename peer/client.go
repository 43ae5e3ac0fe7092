package peer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"framesync"
	"framesync/crdt"
	"framesync/relay/wire"
)

// Options configure a Client. A nil *Options means the defaults.
type Options struct {
	// Name is shown to the other members of a room.
	Name string
	// Token is sent as a bearer token with every request (hubs in local
	// mode ignore it); empty means the one Replica.Login stored.
	Token string
	// Cache is the directory of the local replica; "" = DefaultCacheDir().
	Cache string
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger
	// HTTPClient makes the data channel requests; nil = a default client.
	HTTPClient *http.Client
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts, which doubles after each failure and is jittered.
	// Defaults 200 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// Offline lets Connect succeed when the hub cannot be reached: the
	// client works from its replica and keeps trying to connect.
	Offline bool
	// P2P runs a libp2p host: direct sync and blob exchange with the other
	// members of a room (see P2POptions); nil runs none.
	P2P *P2POptions
}

// Client is a connection to a hub: one WebSocket control channel for all
// rooms (re-established with backoff when it drops), HTTP for data, and the
// local replica. Its methods are safe for concurrent use.
type Client struct {
	// Static after Connect.
	hub    string // base URL, no trailing slash
	opts   Options
	log    *slog.Logger
	http   *http.Client
	rep    *Replica
	p2p    *p2pPeer        // nil without libp2p
	ctx    context.Context // canceled by Close
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup

	fetched  atomic.Int64 // bytes of blobs downloaded
	uploaded atomic.Int64 // bytes of blobs uploaded

	wmu sync.Mutex // serializes writes to the WebSocket; taken before mu

	mu      sync.Mutex // guards the fields below
	ws      *websocket.Conn
	epoch   uint64        // connection number
	up      chan struct{} // closed while connected
	down    chan struct{} // closed when the current connection ends
	hubID   string
	rooms   map[string]*Room
	pending map[uint64]chan *wire.Msg
	nextID  uint64
}

// Connect opens the replica for hubURL and connects to the hub. It returns
// once the first connection is up (or, with Options.Offline, after the
// first attempt either way); the client then stays connected, reconnecting
// when the connection drops, until Close.
func Connect(ctx context.Context, hubURL string, opts *Options) (*Client, error) {
	c := &Client{hub: strings.TrimRight(hubURL, "/"), rooms: map[string]*Room{}, pending: map[uint64]chan *wire.Msg{}}
	if opts != nil {
		c.opts = *opts
	}
	c.log = c.opts.Logger
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.http = c.opts.HTTPClient
	if c.http == nil {
		c.http = defaultHTTP()
	}
	if c.opts.MinBackoff <= 0 {
		c.opts.MinBackoff = 200 * time.Millisecond
	}
	if c.opts.MaxBackoff < c.opts.MinBackoff {
		c.opts.MaxBackoff = max(30*time.Second, c.opts.MinBackoff)
	}
	var err error
	if c.rep, err = Open(c.opts.Cache, c.hub); err != nil {
		return nil, err
	}
	if c.opts.Token == "" {
		c.opts.Token = c.rep.Token() // from Replica.Login
		c.refresh(ctx)               // before anything else reads opts.Token
	}
	if c.opts.P2P != nil {
		if err := c.startP2P(*c.opts.P2P); err != nil {
			return nil, err
		}
	}
	c.up = make(chan struct{})
	c.down = make(chan struct{})
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	first := make(chan error, 1)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.run(first)
	}()
	select {
	case err = <-first:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil && !c.opts.Offline {
		c.Close()
		return nil, fmt.Errorf("connect to %s: %w", c.hub, err)
	}
	return c, nil
}

func defaultHTTP() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, ResponseHeaderTimeout: time.Minute}}
}

// Replica returns the client's local replica.
func (c *Client) Replica() *Replica { return c.rep }

// ID returns the client ID the hub knows this client by (lock holder).
func (c *Client) ID() string { return c.rep.ClientID() }

// HubURL returns the hub's base URL.
func (c *Client) HubURL() string { return c.hub }

// HubID returns the hub's identity from the last welcome ("" before one).
func (c *Client) HubID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hubID
}

// Connected reports whether the control channel is up.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ws != nil
}

// WaitConnected blocks until the control channel is up or ctx ends.
func (c *Client) WaitConnected(ctx context.Context) error {
	c.mu.Lock()
	up := c.up
	c.mu.Unlock()
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClosed
	}
}

// Stats are the client's traffic counters.
type Stats struct {
	BytesFetched  int64 // blob and frame bytes downloaded
	BytesUploaded int64 // blob bytes uploaded
}

// Stats returns the client's traffic counters.
func (c *Client) Stats() Stats {
	return Stats{BytesFetched: c.fetched.Load(), BytesUploaded: c.uploaded.Load()}
}

// Close leaves every room, saves the replica and disconnects.
func (c *Client) Close() error {
	c.cancel(ErrClosed)
	c.mu.Lock()
	ws := c.ws
	rooms := c.roomsLocked()
	c.mu.Unlock()
	if ws != nil {
		c.wmu.Lock()
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second))
		c.wmu.Unlock()
		ws.Close()
	}
	c.wg.Wait()
	var errs []error
	for _, r := range rooms {
		errs = append(errs, r.close())
	}
	if c.p2p != nil {
		c.p2p.close()
	}
	return errors.Join(errs...)
}

// run keeps the control channel up until Close. The outcome of the first
// attempt goes to first.
func (c *Client) run(first chan<- error) {
	backoff := c.opts.MinBackoff
	for {
		ws, nonce, err := c.dial()
		if err != nil && first != nil {
			first <- err
			first = nil
		}
		if err == nil {
			backoff = c.opts.MinBackoff
			c.serve(ws, nonce, first) // tells first once the connection is in place
			first = nil
		} else if c.ctx.Err() == nil {
			c.log.Debug("connect failed", "hub", c.hub, "err", err, "retry_in", backoff)
		}
		if c.ctx.Err() != nil {
			return
		}
		// Full jitter: a random wait up to the backoff, so that clients
		// cut off together do not come back together.
		wait := c.opts.MinBackoff/2 + rand.N(backoff)
		backoff = min(2*backoff, c.opts.MaxBackoff)
		t := time.NewTimer(wait)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// dial opens the control channel and exchanges hello and welcome.
func (c *Client) dial() (*websocket.Conn, []byte, error) {
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	hdr := http.Header{}
	if c.opts.Token != "" {
		hdr.Set("Authorization", "Bearer "+c.opts.Token)
	}
	wsURL := "ws" + strings.TrimPrefix(c.hub, "http") + "/api/ws"
	ws, resp, err := d.DialContext(ctx, wsURL, hdr)
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 {
			return nil, nil, httpError("connect", resp)
		}
		return nil, nil, err
	}
	ws.SetReadLimit(256 << 20)
	b, _ := wire.Encode(&wire.Msg{T: wire.MsgHello, Client: c.rep.ClientID(), Name: c.opts.Name})
	ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		ws.Close()
		return nil, nil, err
	}
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err = ws.ReadMessage()
	if err != nil {
		ws.Close()
		return nil, nil, fmt.Errorf("no welcome: %w", err)
	}
	m, err := wire.Decode(b)
	if err != nil || m.T != wire.MsgWelcome {
		ws.Close()
		return nil, nil, fmt.Errorf("no welcome from the hub (got %q, %v)", m.T, err)
	}
	c.mu.Lock()
	c.hubID = m.Hub
	c.mu.Unlock()
	if c.p2p != nil {
		c.p2p.welcomed(m)
	}
	return ws, m.Data, nil
}

// readTimeout is how long the client waits for anything from the hub,
// which pings every 20 s.
const readTimeout = 50 * time.Second

// serve runs one connection: it rejoins the rooms and reads until the
// connection fails. up (if not nil) hears once the connection is in place.
func (c *Client) serve(ws *websocket.Conn, nonce []byte, up chan<- error) {
	c.mu.Lock()
	if c.ctx.Err() != nil {
		// Close ran between the dial and now, and saw no connection.
		c.mu.Unlock()
		ws.Close()
		if up != nil {
			up <- ErrClosed
		}
		return
	}
	c.ws = ws
	c.epoch++
	epoch := c.epoch
	close(c.up)
	down := c.down
	rooms := c.roomsLocked()
	c.mu.Unlock()
	if up != nil {
		up <- nil
	}
	c.log.Info("connected", "hub", c.hub)

	ws.SetReadDeadline(time.Now().Add(readTimeout))
	ws.SetPingHandler(func(data string) error {
		ws.SetReadDeadline(time.Now().Add(readTimeout))
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(10*time.Second))
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if c.p2p != nil {
			if err := c.p2p.bind(c.ctx, nonce); err != nil {
				c.log.Warn("libp2p", "err", err)
			}
		}
		for _, r := range rooms {
			if err := r.join(c.ctx, epoch); err != nil {
				c.log.Warn("rejoin failed", "room", r.name, "err", err)
				r.emit(Event{Type: EventError, Err: fmt.Errorf("rejoin: %w", err)})
			}
		}
	}()
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			if c.ctx.Err() == nil {
				c.log.Info("disconnected", "hub", c.hub, "err", err)
			}
			break
		}
		ws.SetReadDeadline(time.Now().Add(readTimeout))
		m, err := wire.Decode(b)
		if err != nil {
			c.log.Warn("undecodable message from the hub", "err", err)
			continue
		}
		c.dispatch(m)
	}
	ws.Close()
	c.mu.Lock()
	c.ws = nil
	c.up = make(chan struct{})
	c.down = make(chan struct{})
	close(down)
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	joined := c.roomsLocked()
	c.mu.Unlock()
	wg.Wait()
	for _, r := range joined {
		r.disconnected()
	}
}

// dispatch handles one message from the hub.
func (c *Client) dispatch(m *wire.Msg) {
	if m.ID != 0 {
		c.mu.Lock()
		ch, ok := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ok {
			ch <- m
			return
		}
	}
	if m.Room == "" {
		if m.T == wire.MsgError {
			c.log.Warn("hub error", "code", m.Code, "message", m.Message)
		}
		return
	}
	c.mu.Lock()
	r := c.rooms[m.Room]
	c.mu.Unlock()
	if r != nil {
		r.handle(m)
	}
}

// roomsLocked returns the joined rooms; c.mu is held.
func (c *Client) roomsLocked() []*Room { return slices.Collect(maps.Values(c.rooms)) }

// room returns the joined room name, or nil.
func (c *Client) room(name string) *Room {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rooms[name]
}

// send writes one message on the current connection.
func (c *Client) send(m *wire.Msg) error {
	b, err := wire.Encode(m)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws == nil {
		return ErrOffline
	}
	ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		ws.Close() // the reader notices and reconnects
		return fmt.Errorf("%w: %v", ErrOffline, err)
	}
	return nil
}

// request sends m with a fresh ID and waits for the hub's reply.
func (c *Client) request(ctx context.Context, m *wire.Msg) (*wire.Msg, error) {
	ch := make(chan *wire.Msg, 1)
	c.mu.Lock()
	if c.ws == nil {
		c.mu.Unlock()
		return nil, ErrOffline
	}
	c.nextID++
	m.ID = c.nextID
	c.pending[m.ID] = ch
	down := c.down
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, m.ID)
		c.mu.Unlock()
	}
	if err := c.send(m); err != nil {
		forget()
		return nil, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, ErrOffline
		}
		if r.T == wire.MsgError {
			return nil, msgError(m.T, r)
		}
		return r, nil
	case <-down:
		forget()
		return nil, ErrOffline
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	case <-c.ctx.Done():
		forget()
		return nil, ErrClosed
	}
}

// do makes an HTTP request to the hub; an error status becomes an *Error.
func (c *Client) do(ctx context.Context, op, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.hub+path, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.opts.Token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &Error{Op: op, Kind: framesync.Unavailable, Message: err.Error()}
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, httpError(op, resp)
	}
	return resp, nil
}

// doJSON makes a request with a JSON body (nil: none) and decodes a JSON
// answer into out (nil: discarded).
func (c *Client) doJSON(ctx context.Context, op, method, path string, in, out any) error {
	var body io.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ct = bytes.NewReader(b), wire.ContentJSON
	}
	resp, err := c.do(ctx, op, method, path, body, ct)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s: bad answer from the hub: %w", op, err)
	}
	return nil
}

// stateHeads asks the hub for the heads of room name's state document.
func (c *Client) stateHeads(ctx context.Context, name string) (crdt.Heads, error) {
	resp, err := c.do(ctx, "state heads", "HEAD", "/api/rooms/"+name+"/docs/state", nil, "")
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return crdt.ParseHeads(resp.Header.Get("X-Automerge-Heads"))
}

// Rooms lists the hub's rooms.
func (c *Client) Rooms(ctx context.Context) (*wire.RoomsListing, error) {
	var out wire.RoomsListing
	return &out, c.doJSON(ctx, "list rooms", "GET", "/api/rooms", nil, &out)
}

// CreateRoom creates room name at the hub, empty or as a copy of room from.
func (c *Client) CreateRoom(ctx context.Context, name, from string) (*wire.RoomInfo, error) {
	if err := wire.CheckRoomName(name); err != nil {
		return nil, err
	}
	var out wire.RoomInfo
	return &out, c.doJSON(ctx, "create room", "POST", "/api/rooms", wire.CreateRoomRequest{Name: name, From: from}, &out)
}

// RoomInfo asks the hub about room name.
func (c *Client) RoomInfo(ctx context.Context, name string) (*wire.RoomInfo, error) {
	if err := wire.CheckRoomName(name); err != nil {
		return nil, err
	}
	var out wire.RoomInfo
	return &out, c.doJSON(ctx, "room info", "GET", "/api/rooms/"+name, nil, &out)
}

// DeleteRoom deletes room name at the hub.
func (c *Client) DeleteRoom(ctx context.Context, name string) error {
	if err := wire.CheckRoomName(name); err != nil {
		return err
	}
	return c.doJSON(ctx, "delete room", "DELETE", "/api/rooms/"+name, nil, nil)
}

// ACL returns room name's access rules (room admins only).
func (c *Client) ACL(ctx context.Context, name string) (*wire.RoomACL, error) {
	var out wire.RoomACL
	return &out, c.doJSON(ctx, "room access", "GET", "/api/rooms/"+name+"/acl", nil, &out)
}

// SetACL replaces room name's access rules (room admins only).
func (c *Client) SetACL(ctx context.Context, name string, acl *wire.RoomACL) error {
	return c.doJSON(ctx, "room access", "PUT", "/api/rooms/"+name+"/acl", acl, nil)
}
