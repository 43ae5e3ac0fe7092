package relay

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/vmihailenco/msgpack/v5"

	"framesync"
	"framesync/relay/wire"
)

// P2POptions configure the hub's libp2p host: the room directory and the
// circuit relay members use to reach each other.
type P2POptions struct {
	// Listen are the multiaddrs to listen on, e.g.
	// "/ip4/0.0.0.0/tcp/4001" and "/ip4/0.0.0.0/udp/4001/quic-v1".
	Listen []string
	// HostOptions are passed to libp2p.New after the hub's own (tests use
	// them to put the hub on a simulated network).
	HostOptions []libp2p.Option
}

// p2pHub is the hub's libp2p side.
type p2pHub struct {
	// Static after startP2P.
	s     *Server
	host  host.Host
	relay *relay.Relay
	sub   event.Subscription
	done  chan struct{}

	mu      sync.Mutex
	bound   map[peer.ID]*binding // peer -> who proved to hold its key, and their rooms
	records map[peer.ID][]byte   // signed peer records from identify
	addrs   map[peer.ID][]ma.Multiaddr
}

// loadP2PKey reads (or creates) the hub's libp2p identity in dir.
func loadP2PKey(path string) (crypto.PrivKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return crypto.UnmarshalPrivateKey(b)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	b, err = crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, b, false); err != nil {
		return nil, err
	}
	return k, os.Chmod(path, 0o600)
}

// relayBuffer is the relay's per-circuit buffer: big enough for blobs.
const relayBuffer = 256 << 10

// startP2P starts the hub's libp2p host, relay and directory.
func (s *Server) startP2P(opts P2POptions) error {
	key, err := loadP2PKey(filepath.Join(s.dir, "p2p.key"))
	if err != nil {
		return fmt.Errorf("relay: libp2p identity: %w", err)
	}
	cm, err := connmgr.NewConnManager(1000, 2000)
	if err != nil {
		return err
	}
	limits := rcmgr.DefaultLimits
	limits.AddProtocolPeerLimit(wire.ProtocolDirectory, rcmgr.BaseLimit{StreamsInbound: wire.MaxDirectoryStreams, Streams: wire.MaxDirectoryStreams}, rcmgr.BaseLimitIncrease{})
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()))
	if err != nil {
		return err
	}
	h, err := libp2p.New(append([]libp2p.Option{libp2p.Identity(key), libp2p.ListenAddrStrings(opts.Listen...), libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm), libp2p.ForceReachabilityPublic(), libp2p.DisableRelay()}, opts.HostOptions...)...)
	if err != nil {
		return fmt.Errorf("relay: libp2p host: %w", err)
	}
	p := &p2pHub{s: s, host: h, done: make(chan struct{}), bound: map[peer.ID]*binding{}, records: map[peer.ID][]byte{}, addrs: map[peer.ID][]ma.Multiaddr{}}
	res := relay.DefaultResources()
	res.Limit = nil // our own relay: no per-circuit time or data limit
	res.BufferSize = relayBuffer
	res.MaxReservations = 4096
	res.MaxReservationsPerIP = 1024
	res.MaxReservationsPerASN = 4096
	res.MaxCircuits = 64
	p.relay, err = relay.New(h, relay.WithResources(res), relay.WithACL(p))
	if err != nil {
		h.Close()
		return fmt.Errorf("relay: circuit relay: %w", err)
	}
	p.sub, err = h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		p.relay.Close()
		h.Close()
		return err
	}
	go p.watchIdentify()
	h.SetStreamHandler(wire.ProtocolDirectory, p.handleDirectory)
	s.p2p = p
	s.log.Info("libp2p host listening", "peer", h.ID().String(), "addrs", fmt.Sprint(h.Addrs()))
	return nil
}

// close stops the libp2p side.
func (p *p2pHub) close() {
	p.sub.Close()
	<-p.done
	p.relay.Close()
	p.host.Close()
}

// maxIdentified bounds the peers whose identify results the hub keeps
// before it forgets those that are not members.
const maxIdentified = 4096

// watchIdentify keeps each peer's signed record and listen addresses
// (identify no longer stores signed records in the peerstore).
func (p *p2pHub) watchIdentify() {
	defer close(p.done)
	for e := range p.sub.Out() {
		ev := e.(event.EvtPeerIdentificationCompleted)
		var rec []byte
		if ev.SignedPeerRecord != nil {
			rec, _ = ev.SignedPeerRecord.Marshal()
		}
		p.mu.Lock()
		if len(p.records) >= maxIdentified {
			// Forget peers that never bound to a member.
			for pid := range p.records {
				if p.bound[pid] == nil {
					delete(p.records, pid)
					delete(p.addrs, pid)
				}
			}
		}
		p.records[ev.Peer] = rec
		p.addrs[ev.Peer] = ev.ListenAddrs
		p.mu.Unlock()
	}
}

// welcome adds the hub's libp2p identity and a nonce to a welcome.
func (p *p2pHub) welcome(m *wire.Msg) []byte {
	m.Peer = p.host.ID().String()
	for _, a := range p.host.Addrs() {
		m.Addrs = append(m.Addrs, a.String())
	}
	nonce := make([]byte, 32)
	rand.Read(nonce)
	m.Data = nonce
	return nonce
}

// binding ties a libp2p peer to a member: the control connection that
// proved it holds the peer's key, and after that connection ends, what it
// was (its principal and rooms) for bindingGrace, so members keep using
// the directory and the relay while the hub's WebSocket is unreachable.
type binding struct {
	client  string
	who     principal
	conn    *conn          // nil once the connection ended
	rooms   map[*room]bool // the rooms when the connection ended
	expires time.Time      // when conn is nil: the end of the grace
}

// bindingGrace is how long a peer keeps its rooms after its control
// connection ends.
const bindingGrace = time.Hour

// bind checks a client's proof that it holds the key of peer id and ties
// the peer to connection c.
func (p *p2pHub) bind(c *conn, id string, sig []byte) error {
	const op = "p2p"
	pid, err := peer.Decode(id)
	if err != nil {
		return badInput(op, "peer", fmt.Sprintf("%q is not a peer ID", id))
	}
	pub, err := pid.ExtractPublicKey()
	if err != nil {
		return badInput(op, "peer", "the peer ID does not embed its public key (use an Ed25519 identity)")
	}
	ok, err := pub.Verify(wire.P2PProof(c.srv.hubID, c.nonce), sig)
	if err != nil || !ok {
		return &framesync.Error{Kind: framesync.Forbidden, Op: op, Msg: "the signature does not prove the peer's key"}
	}
	p.mu.Lock()
	p.bound[pid] = &binding{client: c.client, who: c.who, conn: c}
	p.mu.Unlock()
	c.mu.Lock()
	c.peer = pid
	c.mu.Unlock()
	return nil
}

// unbind starts the grace of c's peer: it keeps the rooms c was in.
func (p *p2pHub) unbind(c *conn) {
	c.mu.Lock()
	pid := c.peer
	c.mu.Unlock()
	if pid == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.bound[pid]
	if b == nil || b.conn != c {
		return
	}
	b.rooms = c.roomSet()
	b.conn = nil
	b.expires = time.Now().Add(bindingGrace)
}

// roomSet returns the rooms the connection is in.
func (c *conn) roomSet() map[*room]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[*room]bool, len(c.rooms))
	for r := range c.rooms {
		out[r] = true
	}
	return out
}

// rooms returns the rooms the member bound to pid may read now.
func (p *p2pHub) rooms(pid peer.ID) map[*room]bool {
	p.mu.Lock()
	b := p.bound[pid]
	var out map[*room]bool
	var who principal
	if b != nil {
		who = b.who
		switch {
		case b.conn != nil:
		case time.Now().Before(b.expires):
			out = maps.Clone(b.rooms)
		default:
			delete(p.bound, pid)
			delete(p.records, pid)
			delete(p.addrs, pid)
			b = nil
		}
	}
	p.mu.Unlock()
	if b == nil {
		return nil
	}
	if out == nil {
		out = b.conn.roomSet()
	}
	for r := range out {
		if r.isDeleted() || roleRank[p.s.roleIn(who, r)] < roleRank[RoleReader] {
			delete(out, r)
		}
	}
	return out
}

// AllowReserve implements relay.ACLFilter: only peers bound to a member
// of some room may reserve a slot.
func (p *p2pHub) AllowReserve(pid peer.ID, _ ma.Multiaddr) bool {
	return len(p.rooms(pid)) > 0
}

// AllowConnect implements relay.ACLFilter: a circuit joins two peers that
// share a room.
func (p *p2pHub) AllowConnect(src peer.ID, _ ma.Multiaddr, dst peer.ID) bool {
	a, b := p.rooms(src), p.rooms(dst)
	for r := range a {
		if b[r] {
			return true
		}
	}
	return false
}

// handleDirectory answers a member's question: who else is in the room,
// with their signed records and the hub's circuit address.
func (p *p2pHub) handleDirectory(st network.Stream) {
	defer st.Close()
	st.SetDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(io.LimitReader(st, 4096))
	var req wire.DirRequest
	if err != nil || wire.CheckMsgpack(b) != nil || msgpack.Unmarshal(b, &req) != nil {
		st.Reset()
		return
	}
	ans := p.directory(st.Conn().RemotePeer(), req.Room)
	b, _ = msgpack.Marshal(ans)
	st.Write(b)
}

func (p *p2pHub) directory(from peer.ID, name string) *wire.DirAnswer {
	var r *room
	for rm := range p.rooms(from) {
		if rm.name == name {
			r = rm
		}
	}
	if r == nil {
		return &wire.DirAnswer{Error: fmt.Sprintf("room %q: join it on the control channel first", name)}
	}
	ans := &wire.DirAnswer{Members: []wire.DirMember{}}
	for _, a := range p.host.Addrs() {
		ans.Circuit = append(ans.Circuit, a.Encapsulate(ma.StringCast("/p2p/"+p.host.ID().String()+"/p2p-circuit")).String())
	}
	p.mu.Lock()
	peers := make([]peer.ID, 0, len(p.bound))
	for pid := range p.bound {
		if pid != from {
			peers = append(peers, pid)
		}
	}
	p.mu.Unlock()
	for _, pid := range peers {
		if !p.rooms(pid)[r] {
			continue
		}
		p.mu.Lock()
		b := p.bound[pid]
		if b == nil {
			p.mu.Unlock()
			continue
		}
		m := wire.DirMember{Client: b.client, Peer: pid.String(), Record: p.records[pid], Role: p.s.roleIn(b.who, r)}
		for _, a := range p.addrs[pid] {
			m.Addrs = append(m.Addrs, a.String())
		}
		p.mu.Unlock()
		ans.Members = append(ans.Members, m)
	}
	return ans
}

// P2PInfo returns the hub's libp2p peer ID and addresses ("" and nil
// without a libp2p host).
func (s *Server) P2PInfo() (string, []string) {
	if s.p2p == nil {
		return "", nil
	}
	var addrs []string
	for _, a := range s.p2p.host.Addrs() {
		addrs = append(addrs, a.String())
	}
	return s.p2p.host.ID().String(), addrs
}

var _ relay.ACLFilter = (*p2pHub)(nil)
