package peer_test

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"framesync"
	"framesync/blobstore"
	"framesync/relay"
	"framesync/relay/lease/redistest"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

// balancer is a reverse proxy in front of several hubs, as a load balancer
// would be: Switch sends new requests and WebSockets to another hub and
// cuts the open connections, so clients reconnect through it.
type balancer struct {
	URL    string
	target atomic.Pointer[url.URL]
	mu     sync.Mutex
	conns  map[net.Conn]bool
	srv    *http.Server
}

func newBalancer(t *testing.T, first string) *balancer {
	t.Helper()
	b := &balancer{conns: map[net.Conn]bool{}}
	b.point(first)
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(b.target.Load()) }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.URL = "http://" + ln.Addr().String()
	b.srv = &http.Server{Handler: proxy, ConnState: func(c net.Conn, s http.ConnState) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch s { // hijacked ones (WebSockets) stay, for Switch to cut
		case http.StateNew:
			b.conns[c] = true
		case http.StateClosed:
			delete(b.conns, c)
		}
	}}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

func (b *balancer) point(hub string) {
	u, err := url.Parse(hub)
	if err != nil {
		panic(err)
	}
	b.target.Store(u)
}

// Switch points the balancer at hub and cuts every open connection.
func (b *balancer) Switch(hub string) {
	b.point(hub)
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		c.Close()
		delete(b.conns, c)
	}
}

// TestClientSwitchesHubs: two hubs share Redis and a blob store behind one
// address; a client working through one hub carries on through the other
// when the balancer moves it, with its replica: it sees the other hub's
// commits, commits itself, and its offline-safe state edits arrive.
func TestClientSwitchesHubs(t *testing.T) {
	rs := redistest.Start(t)
	opts := relay.Options{RedisURL: rs.URL, RedisPrefix: "switch:", Blobs: blobstore.NewMemory()}
	a, b := relaytest.Start(t, opts), relaytest.Start(t, opts)
	lb := newBalancer(t, a.URL)

	alice := join(t, connect(t, &relaytest.Hub{URL: lb.URL}, "alice", "", false), "default")
	bob := join(t, connect(t, b, "bob", "", false), "default") // directly on b
	res := must[*wire.CommitResult](t)(alice.Append(ctxT(t), relaytest.Frame(3, 1), relaytest.Frame(3, 2)))
	if err := bob.WaitGeneration(ctxT(t), res.Generation); err != nil {
		t.Fatal(err)
	}

	lb.Switch(b.URL)
	onHub := func(h *relaytest.Hub, name string) bool {
		var info wire.RoomInfo
		h.JSON("GET", "/api/rooms/default", nil, &info)
		for _, m := range info.Members {
			if m.Name == name {
				return true
			}
		}
		return false
	}
	eventually(t, "alice to reconnect through b", func() bool { return onHub(b, "alice") && !onHub(a, "alice") })
	if err := alice.State().SetBookmark(res.Frames[0].ID, "from alice, through b"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alice's bookmark at bob", func() bool {
		bm, _ := bob.State().Bookmarks()
		return bm[res.Frames[0].ID] == "from alice, through b"
	})
	// Bob commits on b; alice, now on b too, sees it and commits on top.
	res2 := must[*wire.CommitResult](t)(bob.Append(ctxT(t), relaytest.Frame(3, 3)))
	if err := alice.WaitGeneration(ctxT(t), res2.Generation); err != nil {
		t.Fatal(err)
	}
	res3 := must[*wire.CommitResult](t)(alice.Append(ctxT(t), relaytest.Frame(3, 4)))
	if res3.Length != 4 {
		t.Fatalf("after both commits: %d frames", res3.Length)
	}
	// And back to a, which must have everything.
	lb.Switch(a.URL)
	eventually(t, "alice back on a", func() bool { return onHub(a, "alice") })
	if err := alice.WaitGeneration(ctxT(t), res3.Generation); err != nil {
		t.Fatal(err)
	}
	f := must[*framesync.Frame](t)(alice.Frame(ctxT(t), 3))
	if !f.Equal(relaytest.Frame(3, 4)) {
		t.Fatal("frame 3 differs after switching back")
	}
	var info wire.RoomInfo
	if a.JSON("GET", "/api/rooms/default", nil, &info); info.Frames != 4 {
		t.Fatalf("hub a has %d frames", info.Frames)
	}
}
