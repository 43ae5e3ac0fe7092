package peer

import (
	"bytes"
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	"github.com/marcopolo/simnet"
	"github.com/quic-go/quic-go"
	"go.uber.org/fx"

	"framesync"
	"framesync/relay"
	"framesync/relay/relaytest"
)

// simIP is a quicreuse.SourceIPSelector for a host on the simulated
// network: its one address.
type simIP struct{ ip atomic.Pointer[net.IP] }

func (s *simIP) PreferredSourceIPForDestination(*net.UDPAddr) (net.IP, error) {
	return *s.ip.Load(), nil
}

// onSimnet puts a libp2p host's QUIC transport on router's simulated UDP
// network (go-libp2p's own hole punching tests do the same). A host that is
// not public sits behind a NAT-like firewall: packets from an address reach
// it only after it has sent one there.
func onSimnet(router *simnet.SimpleFirewallRouter, public bool) libp2p.Option {
	src := &simIP{}
	// A connection manager passed in this way is not closed with the host
	// (simlibp2p has the same workaround): close it when the host stops.
	newCM := func(l fx.Lifecycle, reset quic.StatelessResetKey, token quic.TokenGeneratorKey, opts ...quicreuse.Option) (*quicreuse.ConnManager, error) {
		cm, err := quicreuse.NewConnManager(reset, token, opts...)
		if err == nil {
			l.Append(fx.StopHook(cm.Close))
		}
		return cm, err
	}
	return libp2p.QUICReuse(newCM,
		quicreuse.OverrideSourceIPSelector(func() (quicreuse.SourceIPSelector, error) { return src, nil }),
		quicreuse.OverrideListenUDP(func(_ string, addr *net.UDPAddr) (net.PacketConn, error) {
			src.ip.Store(&addr.IP)
			if public {
				router.SetAddrPubliclyReachable(addr)
			}
			c := simnet.NewSimConn(addr)
			c.SetUpPacketReceiver(router)
			router.AddNode(addr, c)
			return c, nil
		}))
}

// TestMembersBehindNATs: two members behind NATs (on a simulated network;
// the hub's HTTP and WebSocket on 127.0.0.1) cannot dial each other, meet
// through the hub's relay, and hole punching then gives them a direct
// connection; state and a blob pass.
func TestMembersBehindNATs(t *testing.T) {
	router := &simnet.SimpleFirewallRouter{}
	h := relaytest.Start(t, relay.Options{P2P: &relay.P2POptions{
		Listen:      []string{"/ip4/1.2.0.1/udp/8000/quic-v1"},
		HostOptions: []libp2p.Option{onSimnet(router, true)},
	}})
	natted := func(addr string) *Client {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := Connect(ctx, h.URL, &Options{Cache: t.TempDir(), MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
			P2P: &P2POptions{Listen: []string{addr}, HostOptions: []libp2p.Option{onSimnet(router, false), libp2p.ForceReachabilityPrivate()}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ca, cb := natted("/ip4/2.2.0.1/udp/8000/quic-v1"), natted("/ip4/2.2.0.2/udp/8001/quic-v1")
	for _, c := range []*Client{ca, cb} {
		waitFor(t, "the hole punching service", func() bool {
			for _, p := range c.p2p.host.Mux().Protocols() {
				if p == holepunch.Protocol {
					return true
				}
			}
			return false
		})
	}
	a, b := joinRoom(t, ca, "default"), joinRoom(t, cb, "default")
	waitFor(t, "a sync stream between the members", func() bool { return a.Peers() == 1 && b.Peers() == 1 })
	if err := a.State().SetStep(4); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the step at b", func() bool { s, _ := b.State().Step(); return s == 4 })

	bid := cb.p2p.host.ID()
	waitFor(t, "a direct connection after hole punching", func() bool {
		for _, conn := range ca.p2p.host.Network().ConnsToPeer(bid) {
			if !isCircuit(conn.RemoteMultiaddr().String()) {
				return true
			}
		}
		return false
	})
	// A new stream takes the direct connection: a blob only b has.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	blob := bytes.Repeat([]byte("natted "), 1<<16)
	hash := framesync.Sum(blob)
	if _, err := cb.rep.blobs.Put(ctx, bytes.NewReader(blob), hash); err != nil {
		t.Fatal(err)
	}
	got, err := ca.p2p.fetchFrom(ctx, bid, "default", hash)
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("blob from the other member: %d bytes, %v", len(got), err)
	}
}
