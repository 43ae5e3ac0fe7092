// Package relaytest starts framesync hubs for tests, in-process on
// 127.0.0.1, and offers a small control channel client to talk to them.
package relaytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"framesync/internal/testproc"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/vmihailenco/msgpack/v5"

	"framesync"
	"framesync/blobstore"
	"framesync/relay"
	"framesync/relay/wire"
)

// Hub is a hub running in the test process.
type Hub struct {
	URL    string // base URL, http://127.0.0.1:<port>
	Server *relay.Server
	Blobs  *blobstore.Dir
	Opts   relay.Options

	tb   testing.TB
	http *http.Server
	ln   net.Listener
	done chan struct{}
}

// Start starts a hub on 127.0.0.1:0 and stops it when the test ends. Zero
// fields of opts get test defaults: a temporary data directory, a Dir blob
// store under it, no fsync (of documents or blobs), a logger writing to t.Log,
// no limits on connections or request rates.
func Start(tb testing.TB, opts relay.Options) *Hub {
	tb.Helper()
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
		opts.NoSync = true
	}
	if opts.Logger == nil {
		opts.Logger = testproc.Logger(tb, slog.LevelWarn)
	}
	if opts.Limits == (relay.Limits{}) {
		// Tests and benchmarks make many connections and requests from
		// one address; limits are tested where a test sets them.
		opts.Limits = relay.Limits{ConnsPerAddr: 1 << 20, RequestsPerSecond: 1e9, Burst: 1 << 30}
	}
	h := &Hub{tb: tb, Opts: opts}
	h.start()
	tb.Cleanup(h.Stop)
	return h
}

func (h *Hub) start() {
	tb := h.tb
	tb.Helper()
	opts := h.Opts
	if opts.Blobs == nil || h.Blobs != nil {
		d, err := blobstore.OpenDir(filepath.Join(opts.Dir, "blobs"))
		if err != nil {
			tb.Fatal(err)
		}
		d.SetSync(!opts.NoSync)
		h.Blobs = d
		opts.Blobs = d
	}
	srv, err := relay.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	// Come back on the same address after a restart, so clients can
	// reconnect; a new port only if that one was taken meanwhile.
	addr := "127.0.0.1:0"
	if h.ln != nil {
		addr = h.ln.Addr().String()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil && addr != "127.0.0.1:0" {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		tb.Fatal(err)
	}
	h.Server, h.ln = srv, ln
	h.URL = "http://" + ln.Addr().String()
	h.http = &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	h.done = make(chan struct{})
	go func() {
		defer close(h.done)
		h.http.Serve(ln)
	}()
}

// Stop shuts the hub down: open connections are closed and room documents
// saved. Stopping a stopped hub does nothing.
func (h *Hub) Stop() {
	if h.Server == nil {
		return
	}
	if err := h.Server.Close(); err != nil {
		h.tb.Errorf("close hub: %v", err)
	}
	if h.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.http.Shutdown(ctx)
		<-h.done
		h.http = nil
	}
	h.Server = nil
}

// Restart stops the hub and starts a new one on the same data directory
// and, if it is still free, the same address (else URL changes).
func (h *Hub) Restart() {
	h.tb.Helper()
	h.Stop()
	h.start()
}

// StopHTTP takes the hub's HTTP and WebSocket off the network (the
// listener closes, control connections are dropped) while the hub and its
// libp2p host keep running; ResumeHTTP serves again on the same address.
func (h *Hub) StopHTTP() {
	h.tb.Helper()
	if h.http == nil {
		return
	}
	h.http.Close()
	<-h.done
	h.http = nil
	h.Server.DropClients()
}

// ResumeHTTP serves the running hub again after StopHTTP.
func (h *Hub) ResumeHTTP() {
	h.tb.Helper()
	ln, err := net.Listen("tcp", h.ln.Addr().String())
	if err != nil {
		h.tb.Fatal(err)
	}
	h.ln = ln
	h.http = &http.Server{Handler: h.Server.Handler(), ReadHeaderTimeout: 10 * time.Second}
	h.done = make(chan struct{})
	go func() {
		defer close(h.done)
		h.http.Serve(ln)
	}()
}

// Resume starts a stopped hub again, as Restart does.
func (h *Hub) Resume() {
	h.tb.Helper()
	if h.Server != nil {
		h.tb.Fatal("relaytest: Resume of a running hub")
	}
	h.start()
}

// WSURL returns the control channel URL.
func (h *Hub) WSURL() string { return "ws" + strings.TrimPrefix(h.URL, "http") + "/api/ws" }

// Do sends an HTTP request with a JSON (or, for []byte, raw) body and
// returns the status and the response body.
func (h *Hub) Do(method, path string, body any, header ...string) (int, []byte) {
	h.tb.Helper()
	var r io.Reader
	ct := "application/json"
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
		ct = "application/octet-stream"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			h.tb.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, h.URL+path, r)
	if err != nil {
		h.tb.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.tb.Fatal(err)
	}
	return resp.StatusCode, b
}

// JSON is Do for a JSON answer: it decodes the body into out (unless nil)
// and returns the status.
func (h *Hub) JSON(method, path string, body, out any, header ...string) int {
	h.tb.Helper()
	code, b := h.Do(method, path, body, header...)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			h.tb.Fatalf("%s %s: %d %s: %v", method, path, code, b, err)
		}
	}
	return code
}

// Client is a control channel connection for tests. Every message the hub
// sends is kept until a test takes it with Request or Wait.
type Client struct {
	ID string
	tb testing.TB
	ws *websocket.Conn

	wmu    sync.Mutex // serialises writes
	mu     sync.Mutex
	cond   *sync.Cond
	queue  []*wire.Msg
	err    error // set when the connection ended
	nextID uint64
	closed chan struct{}
}

// Dial connects to the hub as client id (display name name) and waits for
// the welcome. The connection is closed when the test ends.
func (h *Hub) Dial(id, name string) *Client {
	h.tb.Helper()
	c, err := DialURL(h.tb, h.WSURL(), id, name)
	if err != nil {
		h.tb.Fatal(err)
	}
	return c
}

// DialURL connects to a hub's control channel URL.
func DialURL(tb testing.TB, url, id, name string) (*Client, error) {
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		return nil, err
	}
	c := &Client{ID: id, tb: tb, ws: ws, closed: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	go c.readLoop()
	tb.Cleanup(c.Close)
	if err := c.Send(&wire.Msg{T: wire.MsgHello, Client: id, Name: name}); err != nil {
		return nil, err
	}
	if _, err := c.WaitErr(func(m *wire.Msg) bool { return m.T == wire.MsgWelcome }, 10*time.Second); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) readLoop() {
	defer close(c.closed)
	for {
		_, b, err := c.ws.ReadMessage()
		c.mu.Lock()
		if err != nil {
			c.err = err
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		var m wire.Msg
		if err := msgpack.Unmarshal(b, &m); err != nil {
			c.err = fmt.Errorf("bad message from hub: %w", err)
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		c.queue = append(c.queue, &m)
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

// Send sends one message.
func (c *Client) Send(m *wire.Msg) error {
	b, err := msgpack.Marshal(m)
	if err != nil {
		return err
	}
	return c.SendRaw(b)
}

// SendRaw sends bytes as one binary message, well-formed or not.
func (c *Client) SendRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.BinaryMessage, b)
}

// Request sends m with a fresh ID and returns the hub's reply (which may be
// an "error" message).
func (c *Client) Request(m *wire.Msg) *wire.Msg {
	c.tb.Helper()
	c.mu.Lock()
	c.nextID++
	m.ID = c.nextID
	c.mu.Unlock()
	if err := c.Send(m); err != nil {
		c.tb.Fatalf("send %s: %v", m.T, err)
	}
	id := m.ID
	return c.Wait(func(r *wire.Msg) bool { return r.ID == id }, 10*time.Second)
}

// Wait returns (and removes) the first message that satisfies pred,
// waiting up to timeout; the test fails if none comes.
func (c *Client) Wait(pred func(*wire.Msg) bool, timeout time.Duration) *wire.Msg {
	c.tb.Helper()
	m, err := c.WaitErr(pred, timeout)
	if err != nil {
		c.tb.Fatal(err)
	}
	return m
}

// WaitErr is Wait returning an error instead of failing the test.
func (c *Client) WaitErr(pred func(*wire.Msg) bool, timeout time.Duration) (*wire.Msg, error) {
	deadline := time.Now().Add(timeout)
	t := time.AfterFunc(timeout, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer t.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for i, m := range c.queue {
			if pred(m) {
				c.queue = append(c.queue[:i:i], c.queue[i+1:]...)
				return m, nil
			}
		}
		if c.err != nil {
			return nil, fmt.Errorf("client %s: connection ended: %w", c.ID, c.err)
		}
		if !time.Now().Before(deadline) {
			return nil, fmt.Errorf("client %s: no matching message within %v (have %d others)", c.ID, timeout, len(c.queue))
		}
		c.cond.Wait()
	}
}

// Drain removes and returns every message received so far.
func (c *Client) Drain() []*wire.Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.queue
	c.queue = nil
	return q
}

// Closed returns a channel closed when the connection has ended, and the
// error it ended with once it has.
func (c *Client) Closed() <-chan struct{} { return c.closed }

// Err returns why the connection ended, or nil while it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Conn returns the underlying WebSocket, for tests that misbehave on
// purpose (stop reading, drop the TCP connection).
func (c *Client) Conn() *websocket.Conn { return c.ws }

// Close closes the connection and waits for its reader.
func (c *Client) Close() {
	c.ws.Close()
	<-c.closed
}

// CloseCode returns the close code the hub sent, or 0.
func (c *Client) CloseCode() int {
	var ce *websocket.CloseError
	if errors.As(c.Err(), &ce) {
		return ce.Code
	}
	return 0
}

// Frame returns a valid frame of n atoms whose positions depend on seed
// (numbers, cell and pbc do not), for tests.
func Frame(n int, seed float64) *framesync.Frame {
	nums := make([]int64, n)
	pos := make([]float64, 3*n)
	for i := range nums {
		nums[i] = int64(1 + i%8)
		pos[3*i], pos[3*i+1], pos[3*i+2] = seed+float64(i), seed*2, float64(i)/2
	}
	f := framesync.NewFrame(nums, pos)
	f.SetCell([9]float64{10, 0, 0, 0, 10, 0, 0, 0, 10})
	f.SetPBC(true, true, false)
	return f
}
