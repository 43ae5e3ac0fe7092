package relay_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/vmihailenco/msgpack/v5"

	"framesync"
	"framesync/relay"
	"framesync/relay/lease/redistest"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

// The hub benchmarks of DESIGN.md §10. Each reports its metrics with
// b.ReportMetric; `make bench` runs them. Targets are in the comments.

// sha256Rate measures single-core SHA-256 throughput over b, in MB/s.
func sha256Rate(b []byte) float64 {
	start := time.Now()
	n := 0
	for time.Since(start) < 300*time.Millisecond {
		sha256.Sum256(b)
		n++
	}
	return float64(n*len(b)) / 1e6 / time.Since(start).Seconds()
}

// BenchmarkHubBlobIngest: PUT of fresh blobs over HTTP into the Dir store
// (fsync on), next to SHA-256 alone on the same bytes in the same run.
// Target: ingest at least 80% of the SHA-256 rate.
func BenchmarkHubBlobIngest(b *testing.B) {
	// A data directory of its own: blobs are fsynced, as in production.
	h := relaytest.Start(b, relay.Options{Dir: b.TempDir()})
	client := &http.Client{}
	for _, size := range []int{2_400_000, 24_000_000} {
		data := make([]byte, size)
		rand.Read(data)
		name := fmt.Sprintf("%.1fMB", float64(size)/1e6)
		b.Run("sha256-"+name, func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				sha256.Sum256(data)
			}
		})
		b.Run("put-"+name, func(b *testing.B) {
			base := sha256Rate(data)
			b.SetBytes(int64(size))
			var n uint64
			var busy time.Duration
			for b.Loop() {
				b.StopTimer()
				n++
				binary.LittleEndian.PutUint64(data, n+uint64(time.Now().UnixNano()))
				hs := framesync.Sum(data).String()
				req, _ := http.NewRequest("PUT", h.URL+"/api/blobs/"+hs, bytes.NewReader(data))
				b.StartTimer()
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					b.Fatalf("put: %d", resp.StatusCode)
				}
				busy += time.Since(t0)
			}
			rate := float64(b.N) * float64(size) / 1e6 / busy.Seconds()
			b.ReportMetric(base, "sha256-MB/s")
			b.ReportMetric(rate/base, "ratio")
		})
	}
}

// BenchmarkHubFrameDownload: a warm 1 MB field (positions of 43,690 atoms)
// with field selection. Targets: at least 1 GB/s, p50 under 2 ms.
func BenchmarkHubFrameDownload(b *testing.B) {
	h := relaytest.Start(b, relay.Options{})
	a := h.Dial("a", "")
	join(b, a, "default")
	g := lock(b, a, "default", "trajectory", time.Minute)
	mustCommit(b, h, "default", &wire.CommitRequest{Op: wire.OpAppend, Token: g.Token, Frames: []msgpack.RawMessage{encodeFrame(b, relaytest.Frame(43690, 1))}})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	url := h.URL + "/api/rooms/default/frames/0?data=positions"
	get := func() int {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("get: %d", resp.StatusCode)
		}
		return int(n)
	}
	size := get() // warm
	b.SetBytes(int64(size))
	var lat []time.Duration
	for b.Loop() {
		t0 := time.Now()
		get()
		lat = append(lat, time.Since(t0))
	}
	reportLatency(b, lat)
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
}

// viewer is a bare WebSocket client that joined a room and passes every
// message it receives to fn, from its own goroutine.
func dialViewer(b *testing.B, h *relaytest.Hub, id, room string, fn func(*wire.Msg)) *websocket.Conn {
	d := websocket.Dialer{ReadBufferSize: 1024, WriteBufferSize: 1024}
	ws, _, err := d.Dial(h.WSURL(), nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range []*wire.Msg{{T: wire.MsgHello, Client: id}, {T: wire.MsgJoin, ID: 1, Room: room}} {
		p, _ := msgpack.Marshal(m)
		if err := ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
			b.Fatal(err)
		}
	}
	joined := make(chan struct{})
	go func() {
		var once sync.Once
		for {
			_, p, err := ws.ReadMessage()
			if err != nil {
				once.Do(func() { close(joined) })
				return
			}
			var m wire.Msg
			if msgpack.Unmarshal(p, &m) != nil {
				continue
			}
			if m.T == wire.MsgJoined {
				once.Do(func() { close(joined) })
			}
			fn(&m)
		}
	}()
	<-joined
	return ws
}

// BenchmarkHubFanout1000: 1,000 clients in one room; per iteration one
// commit; latency from before the commit request (so it includes the
// commit, about 1.3 ms) to each client's frame_updated. Between
// iterations the clients get the commit's sync message. The clients run
// in this process and share its cores. FANOUT_VIEWERS=n changes the
// count. Target: p99 under 25 ms.
func BenchmarkHubFanout1000(b *testing.B) {
	viewers := 1000
	if v := os.Getenv("FANOUT_VIEWERS"); v != "" {
		viewers, _ = strconv.Atoi(v)
	}
	h := relaytest.Start(b, relay.Options{})
	a := h.Dial("committer", "")
	join(b, a, "default")
	res := seed(b, h, a, "default", 1, 3)
	id := res.Frames[0].ID
	got := make(chan time.Time, viewers*2)
	syncs := make(chan struct{}, viewers*4)
	var conns []*websocket.Conn
	for i := range viewers {
		conns = append(conns, dialViewer(b, h, fmt.Sprintf("v%d", i), "default", func(m *wire.Msg) {
			switch {
			case m.T == wire.MsgFrameUpdated:
				got <- time.Now()
			case m.T == wire.MsgSync && m.Doc == wire.DocTrajectory:
				syncs <- struct{}{}
			}
		}))
	}
	// settle waits for every viewer's sync message of the last commit, so
	// each iteration measures a fan-out to quiet clients.
	settle := func() {
		b.StopTimer()
		defer b.StartTimer()
		for range viewers {
			select {
			case <-syncs:
			case <-time.After(10 * time.Second):
				b.Fatal("a viewer got no sync message")
			}
		}
	}
	settle() // the join's sync round
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	g := lock(b, a, "default", "frame:"+id, 10*time.Minute)
	frame := encodeFrame(b, relaytest.Frame(3, 2))
	version := int64(1)
	var lat []time.Duration
	for b.Loop() {
		body, _ := msgpack.Marshal(&wire.CommitRequest{Op: wire.OpReplace, Token: g.Token, Frame: id, Base: &version, Frames: []msgpack.RawMessage{frame}})
		t0 := time.Now()
		resp, err := http.Post(h.URL+"/api/rooms/default/commit", wire.ContentMsgpack, bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("commit: %d", resp.StatusCode)
		}
		version++
		for range viewers {
			select {
			case t := <-got:
				lat = append(lat, t.Sub(t0))
			case <-time.After(10 * time.Second):
				b.Fatal("a viewer got no notification")
			}
		}
		settle()
	}
	reportLatency(b, lat)
}

// BenchmarkHubPresenter: one presenter streaming frame messages at 60 Hz
// to 100 viewers; latency from send to receipt. Target: p99 under 10 ms.
func BenchmarkHubPresenter(b *testing.B) {
	const viewers, frames = 100, 60
	h := relaytest.Start(b, relay.Options{})
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	var conns []*websocket.Conn
	for i := range viewers {
		conns = append(conns, dialViewer(b, h, fmt.Sprintf("v%d", i), "default", func(m *wire.Msg) {
			if m.T == wire.MsgFrame {
				d := time.Since(time.Unix(0, m.Sent))
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
				wg.Done()
			}
		}))
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	p := h.Dial("presenter", "")
	join(b, p, "default")
	if g := p.Request(&wire.Msg{T: wire.MsgPresent, Room: "default"}); g.T != wire.MsgGranted {
		b.Fatal(g.Message)
	}
	tick := time.NewTicker(time.Second / 60)
	defer tick.Stop()
	step := int64(0)
	for b.Loop() {
		wg.Add(viewers * frames)
		for range frames {
			<-tick.C
			step++
			if step%60 == 0 {
				p.Send(&wire.Msg{T: wire.MsgPresent, Room: "default"}) // renew
			}
			s := step
			p.Send(&wire.Msg{T: wire.MsgFrame, Room: "default", Step: &s, Sent: time.Now().UnixNano()})
		}
		wg.Wait()
	}
	mu.Lock()
	reportLatency(b, lat)
	mu.Unlock()
}

// BenchmarkHubLockWS: lock+unlock pairs over the WebSocket, 2,000 pairs
// per client and iteration. "sequential": one client waits for each reply
// (two round trips per pair). "pipelined-8": 8 clients in 8 rooms, each
// keeping 32 targets busy: a grant is answered by the unlock and an unlock's
// ok by the next lock, from the client's read loop. Target: at least 20,000
// pairs/s.
func BenchmarkHubLockWS(b *testing.B) {
	b.Run("embedded", func(b *testing.B) { benchLocks(b, relaytest.Start(b, relay.Options{})) })
	// With Redis (issue 8), next to redis-benchmark's SET throughput
	// against the same server in the same run.
	b.Run("redis", func(b *testing.B) {
		rs := redistest.Start(b)
		benchLocks(b, relaytest.Start(b, relay.Options{RedisURL: rs.URL}))
		for _, c := range []int{1, 50} {
			rps, err := rs.SetThroughput(c)
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("redis-benchmark SET, %d connection(s), same server: %.0f requests/s", c, rps)
		}
	})
}

// benchLocks measures lock+unlock pairs over the hub's WebSocket: one
// client one pair at a time, and 8 clients with 32 pairs in flight each.
func benchLocks(b *testing.B, h *relaytest.Hub) {
	const pairs = 2000
	run := func(b *testing.B, clients, window int) {
		var total time.Duration
		for i := range clients {
			h.JSON("POST", "/api/rooms", map[string]string{"name": fmt.Sprintf("lockbench-%d", i)}, nil)
		}
		for b.Loop() {
			var wg sync.WaitGroup
			var conns []*websocket.Conn
			starts := make([]func(), clients)
			for i := range clients {
				room := fmt.Sprintf("lockbench-%d", i)
				var wmu sync.Mutex
				var ws *websocket.Conn
				send := func(m *wire.Msg) {
					p, _ := msgpack.Marshal(m)
					wmu.Lock()
					ws.WriteMessage(websocket.BinaryMessage, p)
					wmu.Unlock()
				}
				var mu sync.Mutex
				sent, done := 0, 0
				next := func(target string) {
					mu.Lock()
					ok := sent < pairs
					sent++
					mu.Unlock()
					if ok {
						send(&wire.Msg{T: wire.MsgLock, ID: 2, Room: room, Target: target})
					}
				}
				wg.Add(1)
				ws = dialViewer(b, h, fmt.Sprintf("locker-%d", i), room, func(m *wire.Msg) {
					switch {
					case m.T == wire.MsgGranted:
						send(&wire.Msg{T: wire.MsgUnlock, ID: 3, Room: room, Target: m.Target, Token: m.Token})
					case m.T == wire.MsgOK && m.Target != "":
						mu.Lock()
						done++
						finished := done == pairs
						mu.Unlock()
						if finished {
							wg.Done()
						}
						next(m.Target)
					case m.T == wire.MsgError:
						panic(m.Message)
					}
				})
				conns = append(conns, ws)
				starts[i] = func() {
					for w := range window {
						next(fmt.Sprintf("frame:%016x", w))
					}
				}
			}
			t0 := time.Now()
			for _, st := range starts {
				st()
			}
			wg.Wait()
			total += time.Since(t0)
			for _, c := range conns {
				c.Close()
			}
		}
		b.ReportMetric(float64(b.N*pairs*clients)/total.Seconds(), "pairs/s")
	}
	b.Run("sequential", func(b *testing.B) { run(b, 1, 1) })
	b.Run("pipelined-8", func(b *testing.B) { run(b, 8, 32) })
}

// BenchmarkHubIdleConn: hub memory per idle control connection (hello and
// join done). The clients are raw TCP connections that did the WebSocket
// handshake by hand, so nearly all of the memory measured is the hub's.
// Target: under 16 KB.
func BenchmarkHubIdleConn(b *testing.B) {
	const n = 2000
	h := relaytest.Start(b, relay.Options{})
	addr := strings.TrimPrefix(h.URL, "http://")
	for b.Loop() {
		before := heapAndStacks()
		conns := make([]net.Conn, 0, n)
		for range n {
			conns = append(conns, rawJoin(b, addr, "default"))
		}
		waitMembers(b, h, n)
		after := heapAndStacks()
		b.ReportMetric(float64(after.heap+after.stack-before.heap-before.stack)/n/1024, "KB/conn")
		b.ReportMetric(float64(after.heap-before.heap)/n/1024, "heap-KB/conn")
		b.ReportMetric(float64(after.stack-before.stack)/n/1024, "stack-KB/conn")
		b.ReportMetric(float64(after.goroutines-before.goroutines)/n, "goroutines/conn")
		// Resident memory also counts what the Go heap does not: automerge's
		// sync states live in C memory. It includes the benchmark's own
		// client ends and is noisier.
		b.ReportMetric(float64(after.rss-before.rss)/n/1024, "rss-KB/conn")
		if p := os.Getenv("FRAMESYNC_IDLE_HEAP_PROFILE"); p != "" {
			f, err := os.Create(p)
			if err != nil {
				b.Fatal(err)
			}
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
		for _, c := range conns {
			c.Close()
		}
		waitMembers(b, h, 0)
	}
}

type memUse struct{ heap, stack, goroutines, rss int64 }

func heapAndStacks() memUse {
	var m runtime.MemStats
	// Several cycles: each may halve an idle goroutine's stack.
	for range 5 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	debug.FreeOSMemory()
	return memUse{int64(m.HeapAlloc), int64(m.StackInuse), int64(runtime.NumGoroutine()), residentBytes()}
}

// residentBytes is the process's resident set size, from /proc/self/statm
// (0 where that does not exist).
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func waitMembers(b *testing.B, h *relaytest.Hub, n int) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var info wire.RoomInfo
		h.JSON("GET", "/api/rooms/default", nil, &info)
		if len(info.Members) == n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d members, want %d", len(info.Members), n)
		}
		time.Sleep(20 * time.Millisecond) // polling the hub with a deadline
	}
}

// rawJoin opens a WebSocket by hand and sends hello and join; it never
// reads (the hub's replies sit in the socket buffer).
func rawJoin(b *testing.B, addr, room string) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(c, "GET /api/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	br := bufio.NewReaderSize(c, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		b.Fatalf("handshake: %v %v", resp, err)
	}
	for i, m := range []*wire.Msg{{T: wire.MsgHello, Client: fmt.Sprintf("idle-%p", c)}, {T: wire.MsgJoin, ID: 1, Room: room}} {
		_ = i
		p, _ := msgpack.Marshal(m)
		c.Write(wsFrame(p))
	}
	return c
}

// wsFrame returns p as one masked binary WebSocket frame (RFC 6455 §5.2).
func wsFrame(p []byte) []byte {
	f := []byte{0x82}
	switch {
	case len(p) < 126:
		f = append(f, 0x80|byte(len(p)))
	case len(p) < 1<<16:
		f = append(f, 0x80|126, byte(len(p)>>8), byte(len(p)))
	default:
		f = append(f, 0x80|127)
		f = binary.BigEndian.AppendUint64(f, uint64(len(p)))
	}
	mask := [4]byte{1, 2, 3, 4}
	f = append(f, mask[:]...)
	for i, c := range p {
		f = append(f, c^mask[i%4])
	}
	return f
}
