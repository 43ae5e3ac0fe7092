package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/libp2p/go-libp2p/core/peer"

	"framesync"
	"framesync/crdt"
	"framesync/relay/wire"
)

// Control channel timing.
const (
	helloTimeout = 10 * time.Second
	pingInterval = 20 * time.Second
	pongWait     = 2*pingInterval + 5*time.Second
	writeWait    = 10 * time.Second
	defaultTTL   = 60 * time.Second
	maxTTL       = 10 * time.Minute
	minTTL       = time.Second
)

var upgrader = websocket.Upgrader{
	// Small buffers and a pooled write buffer keep idle connections cheap.
	ReadBufferSize:  512,
	WriteBufferSize: 512,
	WriteBufferPool: &sync.Pool{},
	// Local mode: any origin. Access control comes with authentication.
	CheckOrigin: func(*http.Request) bool { return true },
}

// conn is one control channel connection.
type conn struct {
	// Static after hello.
	srv    *Server
	ws     *websocket.Conn
	client string
	name   string
	who    principal // from the upgrade request's token
	addr   string    // remote host, for the per-address limit
	nonce  []byte    // sent in welcome; a libp2p peer binding signs it

	out    sendQueue     // to the writer
	wdone  chan struct{} // closed when the writer has stopped for good
	quit   chan struct{} // closed when the connection starts shutting down
	done   chan struct{} // closed when the connection is gone and cleaned up
	once   sync.Once
	why    atomic.Pointer[string]     // close reason, set once
	pinger atomic.Pointer[time.Timer] // keepalive
	joined bool                       // hello done and counted in srv.holders; guarded by srv.mu

	mu    sync.Mutex // guards rooms and peer
	rooms map[*room]*member
	peer  peer.ID // the client's libp2p peer, once bound
}

// member is a connection's membership of a room: its sync sessions.
type member struct {
	room *room
	c    *conn

	mu        sync.Mutex // guards the sessions: automerge sync state is not concurrent
	trajSess  *crdt.Session
	stateSess *crdt.Session
}

func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	host := remoteHost(r)
	s.mu.Lock()
	closed := s.closed
	n := s.addrConns[host]
	s.mu.Unlock()
	if closed {
		s.writeError(w, r, &framesync.Error{Kind: framesync.Unavailable, Msg: "hub shutting down"})
		return
	}
	if limit := s.opts.Limits.ConnsPerAddr; n >= limit {
		s.writeError(w, r, &framesync.Error{Kind: framesync.RateLimited, Op: "connect", Msg: fmt.Sprintf("%d WebSocket connections from %s: the limit of connections per address", n, host)})
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade wrote the error response
	}
	c := &conn{
		srv:   s,
		addr:  host,
		who:   who(r.Context()),
		ws:    ws,
		out:   sendQueue{max: s.opts.SendQueue},
		wdone: make(chan struct{}),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
		rooms: map[*room]*member{},
	}
	// Serve on a goroutine of our own and return: the net/http goroutine
	// and what it holds (its stack, the hijacked connection's buffers) are
	// freed, which keeps an idle connection small. The connection is
	// registered before hello so that Close stops it in any phase.
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ws.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.addrConns[host]++
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		c.serve()
	}()
}

// serve runs the connection: hello, then the read loop. Writes happen on
// a short-lived goroutine started when something is queued (see drain), so
// an idle connection costs one goroutine. serve returns when the
// connection is gone.
func (c *conn) serve() {
	s := c.srv
	defer close(c.done)
	c.ws.SetReadLimit(s.opts.MaxMessage)
	c.ws.SetReadDeadline(time.Now().Add(helloTimeout))
	if err := c.hello(); err != nil {
		c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(wire.CloseBadHello, truncate(err.Error(), 120)), time.Now().Add(time.Second))
		c.stop()
		return
	}
	s.mu.Lock()
	s.holders[c.client]++
	c.joined = true
	s.mu.Unlock()
	s.metrics.wsConns.Inc()
	defer s.metrics.wsConns.Dec()
	c.ws.SetReadDeadline(time.Now().Add(pongWait))
	c.ws.SetPongHandler(func(string) error { return c.ws.SetReadDeadline(time.Now().Add(pongWait)) })
	c.pinger.Store(time.AfterFunc(pingInterval, c.ping))
	welcome := &wire.Msg{T: wire.MsgWelcome, Hub: s.hubID, Client: c.client, Version: wire.ProtocolVersion}
	if s.hs != nil {
		welcome.Hubs = s.hs.hubIDs()
	}
	if s.p2p != nil {
		c.nonce = s.p2p.welcome(welcome)
	}
	c.reply(welcome)
	c.readLoop()
	c.stop()
}

// stop ends the connection once the reader is done: the writer sends the
// close frame after what is queued, then everything is released.
func (c *conn) stop() {
	c.shutdown("")
	<-c.wdone
	if t := c.pinger.Load(); t != nil {
		t.Stop()
	}
	c.ws.Close()
	c.cleanup()
}

// ping sends a keepalive ping and re-arms itself. WriteControl may run
// concurrently with the writer.
func (c *conn) ping() {
	select {
	case <-c.quit:
		return
	default:
	}
	if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
		c.shutdown("ping failed")
		c.ws.Close()
		return
	}
	c.pinger.Load().Reset(pingInterval)
}

// hello reads and checks the first message.
func (c *conn) hello() error {
	typ, b, err := c.ws.ReadMessage()
	if err != nil {
		return err
	}
	if typ != websocket.BinaryMessage {
		return errors.New("want a binary msgpack hello")
	}
	m, err := decodeMsg(b)
	if err != nil {
		return fmt.Errorf("bad hello: %v", err)
	}
	if m.T != wire.MsgHello {
		return fmt.Errorf("first message is %q, want hello", m.T)
	}
	if m.Client == "" {
		m.Client = randomID()
	}
	if len(m.Client) > 128 || len(m.Name) > 128 {
		return errors.New("client and name are limited to 128 bytes")
	}
	if strings.HasPrefix(m.Client, importHolderPrefix) {
		return fmt.Errorf("client IDs starting with %q are the hub's own", importHolderPrefix)
	}
	c.client, c.name = m.Client, m.Name
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// readLoop handles the client's messages until the connection fails.
func (c *conn) readLoop() {
	for {
		typ, b, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		c.srv.metrics.wsIn.Inc()
		if typ != websocket.BinaryMessage {
			c.replyErr(0, badInput("message", "", "control messages are binary msgpack"))
			continue
		}
		m, err := decodeMsg(b)
		if err != nil {
			c.replyErr(0, badInput("message", "", "malformed msgpack: "+err.Error()))
			continue
		}
		c.handle(m)
	}
}

// drain is the connection's writer. It runs while the queue has messages
// and exits when the queue is empty; push starts it again. Only one drain
// runs at a time.
func (c *conn) drain() {
	var batch []outMsg
	for {
		batch = c.out.take(batch[:0])
		if len(batch) == 0 {
			return
		}
		for i, o := range batch {
			err := c.write(o)
			if err != nil || o.close {
				c.out.kill()
				if err != nil {
					c.shutdown("write failed")
					c.ws.Close()
				}
				close(c.wdone)
				return
			}
			batch[i] = outMsg{}
		}
		c.srv.metrics.wsOut.Add(float64(len(batch)))
	}
}

func (c *conn) write(o outMsg) error {
	switch {
	case o.close:
		code, why := websocket.CloseNormalClosure, "bye"
		if p := c.why.Load(); p != nil && *p != "" {
			why = *p
			switch why {
			case "too slow":
				code = wire.CloseTooSlow
			case "hub shutting down":
				code = websocket.CloseGoingAway
			case "token revoked", "user deleted":
				code = websocket.ClosePolicyViolation
			}
		}
		c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, why), time.Now().Add(time.Second))
		return nil
	case o.pm != nil:
		c.ws.SetWriteDeadline(time.Now().Add(writeWait))
		return c.ws.WritePreparedMessage(o.pm)
	default:
		c.ws.SetWriteDeadline(time.Now().Add(writeWait))
		return c.ws.WriteMessage(websocket.BinaryMessage, o.b)
	}
}

// shutdown stops the connection: the writer sends a close frame with why
// after what is already queued (or at once, for a client too slow to read
// its queue), and the reader fails soon after.
func (c *conn) shutdown(why string) {
	c.once.Do(func() {
		c.why.Store(&why)
		close(c.quit)
		if why == "too slow" {
			c.out.discard()
		}
		c.push(outMsg{close: true}, true)
		if why != "" {
			// Unblock the reader (and a writer stuck on a dead peer).
			time.AfterFunc(2*time.Second, func() { c.ws.Close() })
		}
	})
}

// sendQueue is a connection's bounded queue of outgoing messages. A slice
// under a mutex rather than a buffered channel: an idle connection holds no
// queue buffer at all, and the writer takes everything queued at once.
type sendQueue struct {
	max int

	mu      sync.Mutex
	q       []outMsg
	writing bool // a drain goroutine is running
	dead    bool // the writer stopped for good: nothing more is written
}

// push queues o (force: even over the limit) and starts the writer if it
// is not running. False if the queue is full.
func (c *conn) push(o outMsg, force bool) bool {
	q := &c.out
	q.mu.Lock()
	if q.dead {
		q.mu.Unlock()
		return true // the connection is gone: drop silently
	}
	if len(q.q) >= q.max && !force {
		q.mu.Unlock()
		return false
	}
	q.q = append(q.q, o)
	start := !q.writing
	q.writing = true
	q.mu.Unlock()
	if start {
		go c.drain()
	}
	return true
}

// take moves everything queued to buf and returns it. When nothing is
// queued the writer is marked stopped: the caller must exit.
func (q *sendQueue) take(buf []outMsg) []outMsg {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) == 0 {
		q.writing = false
		return buf
	}
	buf = append(buf, q.q...)
	clear(q.q)
	if cap(q.q) > 64 {
		q.q = nil // do not keep a burst's buffer for an idle connection
	} else {
		q.q = q.q[:0]
	}
	return buf
}

// discard drops everything queued.
func (q *sendQueue) discard() {
	q.mu.Lock()
	clear(q.q)
	q.q = nil
	q.mu.Unlock()
}

// kill marks the writer stopped for good.
func (q *sendQueue) kill() {
	q.mu.Lock()
	q.dead, q.writing = true, false
	q.q = nil
	q.mu.Unlock()
}

// enqueue hands a message to the writer. A full queue means the client is
// too slow: it is dropped, never waited for.
func (c *conn) enqueue(o outMsg) {
	if !c.push(o, false) {
		select {
		case <-c.quit:
			return // already going
		default:
		}
		c.srv.metrics.wsDropped.Inc()
		c.srv.log.Warn("dropping slow client", "client", c.client, "queue", c.out.max)
		c.shutdown("too slow")
		c.ws.UnderlyingConn().SetDeadline(time.Now().Add(time.Second))
	}
}

// outMsg is one queued message: encoded bytes for one receiver, or a
// prepared message (framed once) shared by many.
type outMsg struct {
	pm    *websocket.PreparedMessage
	b     []byte
	close bool // send the close frame and stop writing
}

func encodeOut(m *wire.Msg) []byte {
	b, err := encodeMsg(m)
	if err != nil {
		panic(fmt.Sprintf("relay: encode %s: %v", m.T, err)) // our own message types always encode
	}
	return b
}

// shared returns m as a message for many receivers.
func shared(m *wire.Msg) outMsg {
	pm, err := websocket.NewPreparedMessage(websocket.BinaryMessage, encodeOut(m))
	if err != nil {
		panic(err)
	}
	return outMsg{pm: pm}
}

func (c *conn) reply(m *wire.Msg) { c.enqueue(outMsg{b: encodeOut(m)}) }

func (c *conn) replyErr(id uint64, err error) { c.replyErrIn(id, "", "", err) }

// replyErrIn is replyErr for a message about document doc of room (either
// may be empty).
func (c *conn) replyErrIn(id uint64, room, doc string, err error) {
	k, body := errorBody(err)
	if k == framesync.Internal {
		c.srv.log.Error("control request failed", "client", c.client, "err", err)
	}
	m := &wire.Msg{T: wire.MsgError, ID: id, Room: room, Doc: doc, Code: k.Code(), Message: body["message"].(string)}
	delete(body, "code")
	delete(body, "message")
	if len(body) > 0 {
		m.Payload = body
	}
	c.reply(m)
}

// member returns the connection's membership of room name.
func (c *conn) member(name string) (*member, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for r, m := range c.rooms {
		if r.name == name {
			return m, nil
		}
	}
	return nil, &framesync.Error{Kind: framesync.PreconditionFailed, Op: "room", Msg: fmt.Sprintf("join room %q first", name)}
}

// roomMessages are the message types that need the sender to be a member
// of their room, with the role each needs. Sync needs reader to receive;
// a state change sent by a reader is refused by the session (acceptState).
var roomMessages = map[string]string{
	wire.MsgLeave: RoleNone, wire.MsgSync: RoleReader, wire.MsgPresence: RoleReader,
	wire.MsgLock: RoleWriter, wire.MsgRenew: RoleWriter, wire.MsgUnlock: RoleWriter,
	wire.MsgPresent: RoleWriter, wire.MsgUnpresent: RoleWriter, wire.MsgFrame: RoleWriter,
}

func (c *conn) handle(m *wire.Msg) {
	s := c.srv
	ctx := s.ctx
	var mb *member
	if role, ok := roomMessages[m.T]; ok {
		var err error
		if mb, err = c.member(m.Room); err == nil {
			err = s.allow(c.who, mb.room, role, m.T)
		}
		if err != nil {
			c.replyErr(m.ID, err)
			return
		}
	}
	switch m.T {
	case wire.MsgJoin:
		c.join(m)
	case wire.MsgLeave:
		c.leaveRoom(mb.room)
		c.reply(&wire.Msg{T: wire.MsgOK, ID: m.ID, Room: m.Room})
	case wire.MsgSync:
		if err := mb.receive(m.Doc, m.Data); err != nil {
			// Named by room and document, so the client can tell which
			// of its changes went nowhere.
			c.replyErrIn(m.ID, m.Room, m.Doc, err)
		}
	case wire.MsgLock, wire.MsgRenew:
		if err := checkTarget(m.Target); err != nil {
			c.replyErr(m.ID, err)
			return
		}
		ttl, err := ttlOf(m.TTLms)
		if err != nil {
			c.replyErr(m.ID, err)
			return
		}
		var g leaseGrant
		if m.T == wire.MsgLock {
			g, err = s.leases.Acquire(ctx, mb.room.name, m.Target, c.client, ttl)
		} else {
			g, err = s.leases.Renew(ctx, mb.room.name, m.Target, c.client, m.Token, ttl)
		}
		if err != nil {
			c.replyErr(m.ID, err)
			return
		}
		c.reply(&wire.Msg{T: wire.MsgGranted, ID: m.ID, Room: m.Room, Target: g.Target, Token: g.Token, Expires: unixMilli(g.Expires), Holder: g.Holder})
	case wire.MsgUnlock:
		if err := s.leases.Release(ctx, mb.room.name, m.Target, c.client, m.Token); err != nil {
			c.replyErr(m.ID, err)
			return
		}
		c.reply(&wire.Msg{T: wire.MsgOK, ID: m.ID, Room: m.Room, Target: m.Target})
	case wire.MsgPresent:
		g, err := s.leases.Acquire(ctx, mb.room.name, targetPresenter, c.client, s.opts.PresenterTTL)
		if err != nil {
			c.replyErr(m.ID, err)
			return
		}
		c.reply(&wire.Msg{T: wire.MsgGranted, ID: m.ID, Room: m.Room, Target: g.Target, Token: g.Token, Expires: unixMilli(g.Expires), Holder: g.Holder})
	case wire.MsgUnpresent:
		g, ok, err := s.leases.Get(ctx, mb.room.name, targetPresenter)
		if err == nil && ok && g.Holder == c.client {
			err = s.leases.Release(ctx, mb.room.name, targetPresenter, c.client, g.Token)
		}
		if err != nil {
			c.replyErr(m.ID, err)
			return
		}
		c.reply(&wire.Msg{T: wire.MsgOK, ID: m.ID, Room: m.Room})
	case wire.MsgFrame:
		mb.room.presenterFrame(c, m)
	case wire.MsgPresence:
		out := &wire.Msg{T: wire.MsgPresence, Room: m.Room, Client: c.client, Name: c.name, Payload: m.Payload, Sent: m.Sent}
		s.broadcast(mb.room, out, c)
	case wire.MsgP2P:
		if s.p2p == nil {
			c.replyErr(m.ID, &framesync.Error{Kind: framesync.NotFound, Op: "p2p", Msg: "this hub runs no libp2p host"})
			return
		}
		if err := s.p2p.bind(c, m.Peer, m.Sig); err != nil {
			c.replyErr(m.ID, err)
			return
		}
		c.reply(&wire.Msg{T: wire.MsgOK, ID: m.ID})
	case wire.MsgHello:
		c.replyErr(m.ID, badInput("hello", "", "hello was already received"))
	default:
		c.replyErr(m.ID, badInput("message", "t", fmt.Sprintf("unknown message type %q", m.T)))
	}
}

// checkTarget validates a lock target sent by a client.
func checkTarget(t string) error {
	if t == targetTrajectory {
		return nil
	}
	if len(t) > len(targetFramePref) && t[:len(targetFramePref)] == targetFramePref && isFrameID(t[len(targetFramePref):]) {
		return nil
	}
	if t == targetPresenter {
		return badInput("lock", "target", "use present/unpresent for the presenter token")
	}
	return badInput("lock", "target", fmt.Sprintf("%q is not a lock target: trajectory or frame:<16 hex digit frame ID>", t))
}

func ttlOf(ms int64) (time.Duration, error) {
	if ms == 0 {
		return defaultTTL, nil
	}
	ttl := time.Duration(ms) * time.Millisecond
	if ttl < minTTL || ttl > maxTTL {
		return 0, badInput("lock", "ttl_ms", fmt.Sprintf("%d ms is outside %v..%v", ms, minTTL, maxTTL))
	}
	return ttl, nil
}

// join adds the connection to a room and starts syncing its documents.
func (c *conn) join(m *wire.Msg) {
	r, err := c.srv.room(m.Room)
	if err == nil {
		err = c.srv.allow(c.who, r, RoleReader, "join")
	}
	if err != nil {
		c.replyErr(m.ID, err)
		return
	}
	c.mu.Lock()
	if _, ok := c.rooms[r]; ok {
		c.mu.Unlock()
		info, _ := r.info()
		if info != nil {
			info.Role = c.srv.roleIn(c.who, r)
		}
		c.reply(&wire.Msg{T: wire.MsgJoined, ID: m.ID, Room: r.name, Info: info})
		return
	}
	mb := &member{room: r, c: c}
	mb.trajSess = crdt.NewSession(r.traj.Doc(), &crdt.SessionOptions{Accept: crdt.RefuseNew})
	mb.stateSess = crdt.NewSession(r.state.Doc(), &crdt.SessionOptions{Accept: mb.acceptState})
	c.rooms[r] = mb
	c.mu.Unlock()
	r.membersMu.Lock()
	deleted := r.members == nil
	if !deleted {
		r.members[c] = mb
	}
	r.membersMu.Unlock()
	if deleted {
		c.mu.Lock()
		delete(c.rooms, r)
		c.mu.Unlock()
		c.replyErr(m.ID, &framesync.Error{Kind: framesync.NotFound, Op: "join", Msg: fmt.Sprintf("room %q was deleted", r.name)})
		return
	}
	info, err := r.info()
	if err != nil {
		c.replyErr(m.ID, err)
		return
	}
	info.Role = c.srv.roleIn(c.who, r)
	c.reply(&wire.Msg{T: wire.MsgJoined, ID: m.ID, Room: r.name, Info: info})
	c.srv.broadcast(r, &wire.Msg{T: wire.MsgMember, Room: r.name, Client: c.client, Name: c.name, State: "joined"}, c)
	mb.flush()
}

// acceptState lets writers change the state document; a reader's changes
// are refused (nothing of the message is applied).
func (mb *member) acceptState(crdt.ChangeInfo) error {
	return mb.c.srv.allow(mb.c.who, mb.room, RoleWriter, "change the state document")
}

// leaveRoom removes the connection from room r.
func (c *conn) leaveRoom(r *room) {
	c.mu.Lock()
	_, ok := c.rooms[r]
	delete(c.rooms, r)
	c.mu.Unlock()
	if !ok {
		return
	}
	r.membersMu.Lock()
	if r.members != nil {
		delete(r.members, c)
	}
	r.membersMu.Unlock()
	c.srv.broadcast(r, &wire.Msg{T: wire.MsgMember, Room: r.name, Client: c.client, Name: c.name, State: "left"}, c)
}

// cleanup runs once the connection is gone: it leaves every room and, if
// this was the client's last connection, releases its leases.
func (c *conn) cleanup() {
	s := c.srv
	if s.p2p != nil {
		s.p2p.unbind(c)
	}
	c.mu.Lock()
	rooms := make([]*room, 0, len(c.rooms))
	for r := range c.rooms {
		rooms = append(rooms, r)
	}
	c.mu.Unlock()
	for _, r := range rooms {
		c.leaveRoom(r)
	}
	s.mu.Lock()
	delete(s.conns, c)
	if s.addrConns[c.addr]--; s.addrConns[c.addr] <= 0 {
		delete(s.addrConns, c.addr)
	}
	last := false
	if c.joined {
		s.holders[c.client]--
		last = s.holders[c.client] == 0
		if last {
			delete(s.holders, c.client)
		}
	}
	s.mu.Unlock()
	if last {
		if _, err := s.leases.ReleaseHolder(context.Background(), c.client); err != nil {
			s.log.Error("release leases of disconnected client", "client", c.client, "err", err)
		}
	}
}

// receive applies a sync message of the client for one of the room's
// documents, persists what changed and lets the other members know.
func (mb *member) receive(doc string, data []byte) error {
	r := mb.room
	mb.mu.Lock()
	var err error
	switch doc {
	case wire.DocTrajectory:
		err = mb.trajSess.Receive(data)
		if errors.Is(err, framesync.Forbidden) {
			err = &framesync.Error{Kind: framesync.Forbidden, Op: "sync trajectory", Msg: "the trajectory document is written only by the hub: commit over HTTP instead; nothing was applied", Err: err}
		}
	case wire.DocState:
		before := r.state.Heads()
		if err = r.stateTooBig(); err != nil {
			break
		}
		err = mb.stateSess.Receive(data)
		if err == nil && !before.Equal(r.state.Heads()) {
			if perr := r.persistState(); perr != nil {
				r.srv.log.Error("persist state", "room", r.name, "err", perr)
			}
			r.markChanged()
			r.srv.pokeSync(r)
		}
	default:
		err = badInput("sync", "doc", fmt.Sprintf("unknown document %q: trajectory or state", doc))
	}
	mb.mu.Unlock()
	mb.flush()
	return err
}

// flush sends every sync message the sessions have for the client.
func (mb *member) flush() {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	for _, d := range []struct {
		name string
		s    *crdt.Session
	}{{wire.DocTrajectory, mb.trajSess}, {wire.DocState, mb.stateSess}} {
		for {
			msg, ok := d.s.Next()
			if !ok {
				break
			}
			mb.c.reply(&wire.Msg{T: wire.MsgSync, Room: mb.room.name, Doc: d.name, Data: msg})
		}
	}
}
