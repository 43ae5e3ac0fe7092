package peer

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	lpeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/record"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-msgio"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/vmihailenco/msgpack/v5"

	"framesync"
	"framesync/blobstore"
	"framesync/crdt"
	"framesync/relay/wire"
)

// P2POptions turn on the client's libp2p host: room members sync the
// state document and exchange blobs directly (or through the hub's
// relay), also while the hub's HTTP and WebSocket are down.
type P2POptions struct {
	// Listen are the multiaddrs to listen on; nil means TCP and QUIC on
	// every interface, on ports the system picks.
	Listen []string
	// NoListen makes the client reachable only through the hub's relay.
	NoListen bool
	// HostOptions are passed to libp2p.New after the client's own (tests
	// use them to put hosts on a simulated network).
	HostOptions []libp2p.Option
}

// maxP2PMessage bounds one message on a peer stream.
const maxP2PMessage = 64 << 20

// p2pPeer is the client's libp2p side.
type p2pPeer struct {
	// Static after startP2P.
	c    *Client
	host host.Host
	key  crypto.PrivKey

	mu       sync.Mutex
	hub      *lpeer.AddrInfo // from the last welcome
	hubID    string
	hubs     []string      // every hub of the deployment (welcome's hubs); nil with one hub
	bound    chan struct{} // closed once the binding of this connection is done (or failed)
	reserved bool
	streams  map[streamKey]*peerSync
	opening  map[streamKey]bool // an open loop runs for the key
}

type streamKey struct {
	peer lpeer.ID
	room string
}

// loadPeerKey reads or creates the client's libp2p identity in the replica.
func loadPeerKey(path string) (crypto.PrivKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		return crypto.UnmarshalPrivateKey(b)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	b, err := crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, b); err != nil {
		return nil, err
	}
	return k, os.Chmod(path, 0o600)
}

func (c *Client) startP2P(opts P2POptions) error {
	key, err := loadPeerKey(filepath.Join(c.rep.dir, "p2p.key"))
	if err != nil {
		return fmt.Errorf("libp2p identity: %w", err)
	}
	limits := rcmgr.DefaultLimits
	for _, l := range []struct {
		proto protocol.ID
		n     int
	}{{wire.ProtocolSync, wire.MaxSyncStreams}, {wire.ProtocolBlob, wire.MaxBlobStreams}} {
		limits.AddProtocolPeerLimit(l.proto, rcmgr.BaseLimit{StreamsInbound: l.n, StreamsOutbound: l.n, Streams: 2 * l.n}, rcmgr.BaseLimitIncrease{})
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()))
	if err != nil {
		return err
	}
	// Hole punching (DCUtR) turns a relayed connection between two members
	// behind NATs into a direct one where the NATs allow it; it needs
	// public addresses, so it stays idle on a LAN.
	lopts := []libp2p.Option{libp2p.Identity(key), libp2p.EnableRelay(), libp2p.EnableHolePunching(), libp2p.ResourceManager(rm)}
	switch {
	case opts.NoListen:
		lopts = append(lopts, libp2p.NoListenAddrs)
	case opts.Listen == nil:
		lopts = append(lopts, libp2p.ListenAddrStrings("/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"))
	default:
		lopts = append(lopts, libp2p.ListenAddrStrings(opts.Listen...))
	}
	h, err := libp2p.New(append(lopts, opts.HostOptions...)...)
	if err != nil {
		return fmt.Errorf("libp2p host: %w", err)
	}
	p := &p2pPeer{c: c, host: h, key: key, streams: map[streamKey]*peerSync{}, opening: map[streamKey]bool{}, bound: make(chan struct{})}
	h.SetStreamHandler(wire.ProtocolSync, p.handleSync)
	h.SetStreamHandler(wire.ProtocolBlob, p.handleBlob)
	c.p2p = p
	return nil
}

// PeerID returns the client's libp2p peer ID ("" without libp2p).
func (c *Client) PeerID() string {
	if c.p2p == nil {
		return ""
	}
	return c.p2p.host.ID().String()
}

func (p *p2pPeer) close() {
	p.mu.Lock()
	streams := make([]*peerSync, 0, len(p.streams))
	for _, s := range p.streams {
		streams = append(streams, s)
	}
	p.mu.Unlock()
	for _, s := range streams {
		s.close()
	}
	p.host.Close()
}

// welcomed remembers the hub's libp2p identity from a welcome.
func (p *p2pPeer) welcomed(m *wire.Msg) {
	var info *lpeer.AddrInfo
	if pid, err := lpeer.Decode(m.Peer); err == nil {
		info = &lpeer.AddrInfo{ID: pid}
		for _, s := range m.Addrs {
			if a, err := ma.NewMultiaddr(s); err == nil {
				info.Addrs = append(info.Addrs, a)
			}
		}
		p.host.Peerstore().AddAddrs(pid, info.Addrs, peerstore.PermanentAddrTTL)
	}
	p.mu.Lock()
	p.hub, p.hubID = info, m.Hub // nil: the hub runs no libp2p host
	p.hubs = slices.Clone(m.Hubs)
	p.bound = make(chan struct{}) // a new connection: bind again
	p.mu.Unlock()
}

// acceptTrajectory accepts trajectory changes written by the hub, or by
// any hub of its deployment.
func (p *p2pPeer) acceptTrajectory(c crdt.ChangeInfo) error {
	p.mu.Lock()
	actors := append([]string{p.hubID}, p.hubs...)
	p.mu.Unlock()
	return crdt.AllowActors(actors...)(c)
}

// bind proves to the hub, over the control connection, that this client
// holds its peer's key, and connects to the hub's host.
func (p *p2pPeer) bind(ctx context.Context, nonce []byte) error {
	p.mu.Lock()
	hub, hubID, bound := p.hub, p.hubID, p.bound
	p.reserved = false
	p.mu.Unlock()
	defer close(bound)
	if hub == nil {
		return nil // the hub runs no libp2p host
	}
	sig, err := p.key.Sign(wire.P2PProof(hubID, nonce))
	if err != nil {
		return err
	}
	if _, err := p.c.request(ctx, &wire.Msg{T: wire.MsgP2P, Peer: p.host.ID().String(), Sig: sig}); err != nil {
		return fmt.Errorf("bind libp2p peer: %w", err)
	}
	if err := p.host.Connect(ctx, *hub); err != nil {
		return fmt.Errorf("connect to the hub's libp2p host: %w", err)
	}
	p.host.ConnManager().Protect(hub.ID, "hub")
	return nil
}

// waitBound waits until the binding of the current connection is done.
func (p *p2pPeer) waitBound(ctx context.Context) error {
	p.mu.Lock()
	bound := p.bound
	p.mu.Unlock()
	select {
	case <-bound:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// joined runs after a room is joined on the control channel: reserve a
// relay slot (members only), ask the directory and connect to members.
func (p *p2pPeer) joined(ctx context.Context, r *Room) {
	if p.waitBound(ctx) != nil {
		return
	}
	p.mu.Lock()
	hub, reserved := p.hub, p.reserved
	p.mu.Unlock()
	if hub == nil {
		return
	}
	if !reserved {
		if _, err := client.Reserve(ctx, p.host, *hub); err != nil {
			p.c.log.Warn("relay reservation failed", "err", err)
		} else {
			p.mu.Lock()
			first := !p.reserved
			p.reserved = true
			p.mu.Unlock()
			if first {
				p.c.mu.Lock()
				down := p.c.down
				p.c.mu.Unlock()
				go p.keepUp(ctx, *hub, down)
			}
		}
	}
	p.refresh(ctx, r)
}

// Maintenance while connected to the hub: the directory is asked again
// (members whose join we missed are found) and the relay reservation,
// which the hub grants for an hour, is renewed.
const (
	directoryEvery = 30 * time.Second
	reserveEvery   = 20 * time.Minute
)

// keepUp runs the maintenance until the connection to the hub ends.
func (p *p2pPeer) keepUp(ctx context.Context, hub lpeer.AddrInfo, down <-chan struct{}) {
	dir := time.NewTicker(directoryEvery)
	defer dir.Stop()
	res := time.NewTicker(reserveEvery)
	defer res.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-down:
			return
		case <-res.C:
			if _, err := client.Reserve(ctx, p.host, hub); err != nil {
				p.c.log.Warn("relay reservation renewal failed", "err", err)
			}
		case <-dir.C:
			p.c.mu.Lock()
			rooms := p.c.roomsLocked()
			p.c.mu.Unlock()
			for _, r := range rooms {
				p.refresh(ctx, r)
			}
		}
	}
}

// refresh asks the hub's directory for the room's members and starts
// syncing with each.
func (p *p2pPeer) refresh(ctx context.Context, r *Room) {
	members := p.updatePeers(ctx, r)
	for pid := range members {
		p.protect(pid, r.name)
		if p.host.ID() < pid { // one side opens: the lower peer ID
			go p.open(ctx, pid, r)
		}
	}
}

// updatePeers asks the hub's directory for the room's members and keeps
// their addresses and roles; nil when the hub cannot tell.
func (p *p2pPeer) updatePeers(ctx context.Context, r *Room) map[lpeer.ID]string {
	p.mu.Lock()
	hub := p.hub
	p.mu.Unlock()
	if hub == nil {
		return nil
	}
	ans, err := p.directory(ctx, hub.ID, r.name)
	if err != nil {
		p.c.log.Debug("directory", "room", r.name, "err", err)
		return nil
	}
	members := map[lpeer.ID]string{}
	for _, m := range ans.Members {
		pid, err := lpeer.Decode(m.Peer)
		if err != nil || pid == p.host.ID() {
			continue
		}
		members[pid] = m.Role
		p.learn(pid, m, ans.Circuit)
	}
	r.setPeers(members)
	return members
}

func (p *p2pPeer) protect(pid lpeer.ID, room string) {
	p.host.ConnManager().Protect(pid, "room:"+room)
}

// learn stores a member's addresses: the signed record's (verified), the
// ones the hub saw, and the hub circuit, all kept for good (identify
// would expire temporary ones and break re-dials).
func (p *p2pPeer) learn(pid lpeer.ID, m wire.DirMember, circuit []string) {
	ps := p.host.Peerstore()
	if len(m.Record) > 0 {
		if _, rec, err := record.ConsumeEnvelope(m.Record, lpeer.PeerRecordEnvelopeDomain); err == nil {
			if pr, ok := rec.(*lpeer.PeerRecord); ok && pr.PeerID == pid {
				ps.AddAddrs(pid, pr.Addrs, peerstore.PermanentAddrTTL)
			}
		}
	}
	for _, s := range append(append([]string{}, m.Addrs...), circuit...) {
		if a, err := ma.NewMultiaddr(s); err == nil {
			ps.AddAddrs(pid, []ma.Multiaddr{a}, peerstore.PermanentAddrTTL)
		}
	}
}

// directory asks the hub who is in room.
func (p *p2pPeer) directory(ctx context.Context, hub lpeer.ID, room string) (*wire.DirAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := p.host.NewStream(ctx, hub, wire.ProtocolDirectory)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := msgpack.Marshal(wire.DirRequest{Room: room})
	if _, err := st.Write(b); err != nil {
		return nil, err
	}
	st.CloseWrite()
	b, err = io.ReadAll(io.LimitReader(st, 16<<20))
	if err != nil {
		return nil, err
	}
	var ans wire.DirAnswer
	if err := unmarshalChecked(b, &ans); err != nil {
		return nil, err
	}
	if ans.Error != "" {
		return nil, &framesync.Error{Kind: framesync.Forbidden, Op: "directory", Msg: ans.Error}
	}
	return &ans, nil
}

// unmarshalChecked decodes msgpack from another peer, after checking that
// no declared length exceeds the input (see wire.CheckMsgpack).
func unmarshalChecked(b []byte, v any) error {
	if err := wire.CheckMsgpack(b); err != nil {
		return err
	}
	return msgpack.Unmarshal(b, v)
}

// syncHeader opens a sync stream: which room it is about.
type syncHeader struct {
	Room string `msgpack:"room"`
}

// syncMsg is one message on a sync stream.
type syncMsg struct {
	Doc  string `msgpack:"doc"`
	Data []byte `msgpack:"data"`
}

// open syncs room r with member pid over a stream this side opens, and
// opens it again when it breaks (the relay went away, the peer restarted),
// while the room is joined and pid is a member.
func (p *p2pPeer) open(ctx context.Context, pid lpeer.ID, r *Room) {
	k := streamKey{pid, r.name}
	p.mu.Lock()
	if p.opening[k] {
		p.mu.Unlock()
		return
	}
	p.opening[k] = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.opening, k)
		p.mu.Unlock()
	}()
	wait := 50 * time.Millisecond
	for ctx.Err() == nil && r.hasPeer(pid) && p.c.room(r.name) == r {
		if st := p.dial(ctx, pid); st != nil {
			b, _ := msgpack.Marshal(syncHeader{Room: r.name})
			if err := msgio.NewVarintWriter(st).WriteMsg(b); err != nil {
				st.Reset()
			} else {
				start := time.Now()
				p.run(k, st, r)
				if time.Since(start) > 10*time.Second {
					wait = 50 * time.Millisecond // it worked for a while
				}
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// dial opens a sync stream to pid: over a direct connection if one can be
// made, else through the hub's relay.
func (p *p2pPeer) dial(ctx context.Context, pid lpeer.ID) network.Stream {
	dctx, cancel := context.WithTimeout(network.WithForceDirectDial(ctx, "prefer direct"), 3*time.Second)
	st, err := p.host.NewStream(dctx, pid, wire.ProtocolSync)
	cancel()
	if err == nil {
		return st
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err = p.host.NewStream(network.WithAllowLimitedConn(rctx, "room sync"), pid, wire.ProtocolSync)
	if err != nil {
		p.c.log.Debug("open sync stream", "peer", pid, "err", err)
		return nil
	}
	return st
}

// handleSync accepts a member's sync stream.
func (p *p2pPeer) handleSync(st network.Stream) {
	rd := msgio.NewVarintReaderSize(st, 1<<16)
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := rd.ReadMsg()
	if err != nil {
		st.Reset()
		return
	}
	var h syncHeader
	if unmarshalChecked(b, &h) != nil {
		st.Reset()
		return
	}
	st.SetReadDeadline(time.Time{})
	r := p.c.room(h.Room)
	pid := st.Conn().RemotePeer()
	if r != nil && !r.hasPeer(pid) {
		// A member newer than our last directory answer: ask again.
		ctx, cancel := context.WithTimeout(p.c.ctx, 10*time.Second)
		p.updatePeers(ctx, r)
		cancel()
	}
	if r == nil || !r.hasPeer(pid) {
		// Not a member of a room we are in (as far as the last directory
		// answer tells): refuse.
		st.Reset()
		return
	}
	p.run(streamKey{pid, h.Room}, st, r)
}

// peerSync is one sync stream with a member about one room.
type peerSync struct {
	p     *p2pPeer
	key   streamKey
	st    network.Stream
	r     *Room
	traj  *crdt.Session
	state *crdt.Session
	kick  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// run syncs the room's documents over st until it fails.
func (p *p2pPeer) run(k streamKey, st network.Stream, r *Room) {
	s := &peerSync{p: p, key: k, st: st, r: r, kick: make(chan struct{}, 1), done: make(chan struct{})}
	p.mu.Lock()
	if old, ok := p.streams[k]; ok {
		p.mu.Unlock()
		_ = old
		st.Reset() // one stream per member and room
		return
	}
	p.streams[k] = s
	p.mu.Unlock()
	// The trajectory is written by the hubs only: a member may relay the
	// hubs' changes, never its own. With several hubs, changes by any hub
	// of the deployment (as the last welcome named them).
	s.traj = crdt.NewSession(r.data.traj.Doc(), &crdt.SessionOptions{Accept: p.acceptTrajectory})
	// State changes only from members who may write (the hub's rule).
	s.state = crdt.NewSession(r.data.state.Doc(), &crdt.SessionOptions{Accept: func(crdt.ChangeInfo) error {
		if !r.peerMayWrite(k.peer) {
			return fmt.Errorf("peer %s is not a writer of room %s", k.peer, r.name)
		}
		return nil
	}})
	r.addSync(s)
	p.c.log.Debug("peer sync started", "peer", k.peer, "room", k.room)
	go s.writer()
	s.reader()
	s.close()
	p.c.log.Debug("peer sync ended", "peer", k.peer, "room", k.room)
	r.removeSync(s)
	p.mu.Lock()
	if p.streams[k] == s {
		delete(p.streams, k)
	}
	p.mu.Unlock()
}

func (s *peerSync) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *peerSync) close() {
	s.once.Do(func() {
		close(s.done)
		s.st.Reset()
	})
}

func (s *peerSync) reader() {
	rd := msgio.NewVarintReaderSize(s.st, maxP2PMessage)
	s.poke()
	refused := false // reported once per stream
	for {
		b, err := rd.ReadMsg()
		if err != nil {
			return
		}
		var m syncMsg
		err = unmarshalChecked(b, &m)
		rd.ReleaseMsg(b)
		if err != nil {
			return
		}
		var rerr error
		switch m.Doc {
		case wire.DocTrajectory:
			rerr = s.traj.Receive(m.Data)
		case wire.DocState:
			rerr = s.state.Receive(m.Data)
		}
		if rerr != nil {
			if !refused {
				s.p.c.log.Warn("peer sync message refused", "peer", s.key.peer, "room", s.r.name, "doc", m.Doc, "err", rerr)
				s.r.emit(Event{Type: EventError, Err: fmt.Errorf("sync from peer %s: %w", s.key.peer, rerr)})
				refused = true
			}
			if m.Doc == wire.DocTrajectory && errors.Is(rerr, framesync.Forbidden) {
				return // a forger: drop the stream
			}
			// A reader's state changes: nothing applied; the stream still
			// carries this side's changes to it.
		}
		s.poke()
	}
}

func (s *peerSync) writer() {
	w := msgio.NewVarintWriter(s.st)
	for {
		select {
		case <-s.done:
			return
		case <-s.kick:
		}
		for _, d := range []struct {
			name string
			sess *crdt.Session
		}{{wire.DocTrajectory, s.traj}, {wire.DocState, s.state}} {
			for {
				msg, ok := d.sess.Next()
				if !ok {
					break
				}
				b, _ := msgpack.Marshal(syncMsg{Doc: d.name, Data: msg})
				if err := w.WriteMsg(b); err != nil {
					s.close()
					return
				}
			}
		}
	}
}

// blobRequest asks a member for a blob of a room both are in.
type blobRequest struct {
	Room string `msgpack:"room"`
	Hash string `msgpack:"hash"`
}

// Blob answer status bytes.
const (
	blobOK        = 0
	blobNotFound  = 1
	blobForbidden = 2
)

// handleBlob serves a blob from the cache to a member of a shared room.
func (p *p2pPeer) handleBlob(st network.Stream) {
	defer st.Close()
	st.SetDeadline(time.Now().Add(time.Minute))
	rd := msgio.NewVarintReaderSize(st, 1<<12)
	b, err := rd.ReadMsg()
	if err != nil {
		st.Reset()
		return
	}
	var req blobRequest
	h, herr := framesync.Hash{}, error(nil)
	if err := unmarshalChecked(b, &req); err == nil {
		h, herr = framesync.ParseHash(req.Hash)
	}
	r := p.c.room(req.Room)
	if herr != nil || r == nil || !r.hasPeer(st.Conn().RemotePeer()) {
		st.Write([]byte{blobForbidden})
		return
	}
	data, err := blobstore.ReadAll(context.Background(), p.c.rep.blobs, h)
	if err != nil {
		st.Write([]byte{blobNotFound})
		return
	}
	st.SetDeadline(time.Now().Add(10 * time.Minute))
	w := msgio.NewVarintWriter(st)
	if _, err := st.Write([]byte{blobOK}); err == nil {
		w.WriteMsg(data)
	}
}

// fetchBlob gets blob h from any member of room r that has it, checks it
// and stores it in the cache.
func (p *p2pPeer) fetchBlob(ctx context.Context, r *Room, h framesync.Hash) ([]byte, error) {
	var last error = &framesync.Error{Kind: framesync.NotFound, Op: "fetch blob from peers", Msg: "no connected member of the room has it"}
	for _, pid := range r.peerList() {
		b, err := p.fetchFrom(ctx, pid, r.name, h)
		if err != nil {
			last = err
			continue
		}
		if _, err := p.c.rep.blobs.Put(ctx, bytes.NewReader(b), h); err != nil {
			return nil, err
		}
		p.c.fetched.Add(int64(len(b)))
		return b, nil
	}
	return nil, last
}

func (p *p2pPeer) fetchFrom(ctx context.Context, pid lpeer.ID, room string, h framesync.Hash) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	st, err := p.host.NewStream(network.WithAllowLimitedConn(ctx, "blob"), pid, wire.ProtocolBlob)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	req, _ := msgpack.Marshal(blobRequest{Room: room, Hash: h.String()})
	if err := msgio.NewVarintWriter(st).WriteMsg(req); err != nil {
		return nil, err
	}
	st.CloseWrite()
	var status [1]byte
	if _, err := io.ReadFull(st, status[:]); err != nil {
		return nil, err
	}
	switch status[0] {
	case blobOK:
	case blobForbidden:
		return nil, &framesync.Error{Kind: framesync.Forbidden, Op: "fetch blob", Msg: "the peer does not share the room"}
	default:
		return nil, &framesync.Error{Kind: framesync.NotFound, Op: "fetch blob", Msg: "the peer does not have it"}
	}
	b, err := msgio.NewVarintReaderSize(st, 1<<30).ReadMsg()
	if err != nil {
		return nil, err
	}
	if framesync.Sum(b) != h {
		return nil, &framesync.Error{Kind: framesync.Corrupt, Op: "fetch blob", Msg: fmt.Sprintf("peer %s sent bytes that do not hash to %s", pid, h)}
	}
	return b, nil
}
