// Package fault_test runs framesync as it is deployed and breaks it: several
// `framesync hub` processes sharing one real redis-server and one blob
// directory, Go clients (package peer) talking to them over HTTP and
// WebSocket on 127.0.0.1, and client processes of their own. Hubs, Redis
// and clients are killed with SIGKILL in the middle of commits, and the
// tests check what survives: every acknowledged commit exactly once, no
// half-written frame, no stale fencing token accepted, replicas converged.
//
// The tests are slow (they build the binary and start processes), so they
// run only with FRAMESYNC_FAULT=1:
//
//	FRAMESYNC_FAULT=1 go test -count=1 -v ./fault/
package fault_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"framesync"
	"framesync/crdt"
	"framesync/peer"
	"framesync/relay/lease/redistest"
	"framesync/relay/relaytest"
	"framesync/relay/wire"

	"framesync/internal/testproc"
)

// enableEnv turns the package on.
const enableEnv = "FRAMESYNC_FAULT"

// childEnv makes the test binary run as a client process (see child_test.go).
const childEnv = "FRAMESYNC_FAULT_CHILD"

const (
	// hubStartTimeout bounds how long a hub may take to answer /readyz.
	hubStartTimeout = 30 * time.Second
	// pollEvery is the interval of polling loops.
	pollEvery = 20 * time.Millisecond
)

// hubBin is the framesync binary built by TestMain ("" when disabled).
var hubBin string

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	if os.Getenv(enableEnv) != "1" {
		fmt.Println("fault: skipped (set FRAMESYNC_FAULT=1 to run the multi-process fault tests)")
		os.Exit(m.Run()) // every test skips
	}
	dir, err := os.MkdirTemp("", "framesync-fault-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hubBin = filepath.Join(dir, "framesync")
	start := time.Now()
	build := exec.Command("go", "build", "-o", hubBin, "../cmd/framesync")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "fault: go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	fmt.Printf("fault: built %s in %v\n", hubBin, time.Since(start).Round(time.Millisecond))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// need skips t unless the package is enabled.
func need(t *testing.T) {
	t.Helper()
	if hubBin == "" {
		t.Skip("set FRAMESYNC_FAULT=1 to run the multi-process fault tests")
	}
}

// deployment is one Redis and one blob directory that hubs share.
type deployment struct {
	t      *testing.T
	redis  *redistest.Server
	blobs  string
	prefix string
}

func newDeployment(t *testing.T) *deployment {
	t.Helper()
	need(t)
	return &deployment{t: t, redis: redistest.Start(t), blobs: t.TempDir(), prefix: "fault:"}
}

// hubProc is one `framesync hub` process, restartable on the same address
// and data directory.
type hubProc struct {
	// Static after startHub.
	t    *testing.T
	name string
	addr string // 127.0.0.1:port, kept across restarts
	URL  string
	data string
	args []string
	logf string

	mu   sync.Mutex // guards the fields below
	cmd  *exec.Cmd
	done chan struct{}
}

// startHub starts a hub of deployment d and waits until it is ready. It is
// stopped (SIGKILL) when the test ends.
func (d *deployment) startHub(name string) *hubProc {
	t := d.t
	t.Helper()
	port, err := testproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	h := &hubProc{t: t, name: name, addr: "127.0.0.1:" + strconv.Itoa(port), data: t.TempDir()}
	h.URL = "http://" + h.addr
	h.logf = filepath.Join(t.TempDir(), name+".log")
	h.args = []string{"hub", "--addr", h.addr, "--data", h.data, "--redis-url", d.redis.URL, "--redis-prefix", d.prefix,
		"--blobs", d.blobs, "--p2p-listen", "off", "--log-level", "warn",
		"--max-conns-per-addr", "100000", "--rate", "1000000", "--burst", "1000000"}
	t.Cleanup(func() {
		h.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(h.logf)
			if len(b) > 8<<10 {
				b = b[len(b)-8<<10:]
			}
			t.Logf("hub %s log (tail):\n%s", h.name, b)
		}
	})
	h.Start()
	return h
}

// Start runs the hub process and waits until /readyz answers 200.
func (h *hubProc) Start() time.Duration {
	h.t.Helper()
	begin := time.Now()
	lf, err := os.OpenFile(h.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	fmt.Fprintf(lf, "=== start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(hubBin, h.args...)
	cmd.Env = hubEnv()
	cmd.Stdout, cmd.Stderr = lf, lf
	testproc.DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		lf.Close()
		h.t.Fatalf("start hub %s: %v", h.name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		lf.Close()
		close(done)
	}()
	h.mu.Lock()
	h.cmd, h.done = cmd, done
	h.mu.Unlock()
	deadline := time.Now().Add(hubStartTimeout)
	for !h.Ready() {
		select {
		case <-done:
			b, _ := os.ReadFile(h.logf)
			h.t.Fatalf("hub %s exited before it was ready: %s", h.name, b)
		case <-time.After(pollEvery):
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("hub %s not ready within %v", h.name, hubStartTimeout)
		}
	}
	return time.Since(begin)
}

// hubEnv is the environment of hub processes: the test's, without what
// would change the hub's configuration behind the flags' back.
func hubEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "FRAMESYNC_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Ready reports whether /readyz answers 200.
func (h *hubProc) Ready() bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(h.URL + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Kill sends SIGKILL and waits until the process has exited. Killing a
// stopped hub does nothing.
func (h *hubProc) Kill() {
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.cmd = nil
	h.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// do sends a request to the hub and returns the status and body.
func (h *hubProc) do(method, path string, body any) (int, []byte, http.Header) {
	h.t.Helper()
	return doHTTP(h.t, method, h.URL+path, body)
}

func doHTTP(t testing.TB, method, url string, body any) (int, []byte, http.Header) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, []byte(err.Error()), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// info returns the room's info at hub h.
func (h *hubProc) info(room string) wire.RoomInfo {
	h.t.Helper()
	code, b, _ := h.do("GET", "/api/rooms/"+room, nil)
	if code != 200 {
		h.t.Fatalf("room %s at hub %s: %d %s", room, h.name, code, b)
	}
	var info wire.RoomInfo
	if err := json.Unmarshal(b, &info); err != nil {
		h.t.Fatal(err)
	}
	return info
}

// heads returns the heads of one of the room's documents at hub h ("" if
// the request failed).
func (h *hubProc) heads(room, doc string) string {
	h.t.Helper()
	code, _, hdr := h.do("GET", "/api/rooms/"+room+"/docs/"+doc, nil)
	if code != 200 {
		return ""
	}
	return hdr.Get("X-Automerge-Heads")
}

// createRoom creates room on hubs[0] and waits until every hub has it.
func createRoom(t *testing.T, room string, hubs ...*hubProc) {
	t.Helper()
	if code, b, _ := hubs[0].do("POST", "/api/rooms", map[string]string{"name": room}); code != 201 {
		t.Fatalf("create room %s: %d %s", room, code, b)
	}
	for _, h := range hubs[1:] {
		eventually(t, 15*time.Second, "room "+room+" on hub "+h.name, func() bool {
			code, _, _ := h.do("GET", "/api/rooms/"+room, nil)
			return code == 200
		})
	}
}

// eventually polls cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(pollEvery)
	}
	return time.Since(start)
}

// converged waits until every hub has the same heads of both documents of
// room, and returns the trajectory heads.
func converged(t *testing.T, room string, hubs ...*hubProc) string {
	t.Helper()
	var th string
	eventually(t, 30*time.Second, "hubs to converge on room "+room, func() bool {
		for _, doc := range []string{"trajectory", "state"} {
			first := hubs[0].heads(room, doc)
			if first == "" {
				return false
			}
			for _, h := range hubs[1:] {
				if !sameHeads(first, h.heads(room, doc)) {
					return false
				}
			}
			if doc == "trajectory" {
				th = first
			}
		}
		return true
	})
	return th
}

func sameHeads(a, b string) bool {
	ha, err1 := crdt.ParseHeads(a)
	hb, err2 := crdt.ParseHeads(b)
	return err1 == nil && err2 == nil && ha.Equal(hb)
}

// connect connects a Go client to hub url with its own replica; it is
// closed when the test ends.
func connect(t testing.TB, url, name string) *peer.Client {
	t.Helper()
	return connectWith(t, url, name, nil)
}

// connectWith is connect with the client's HTTP client (nil: default).
func connectWith(t testing.TB, url, name string, hc *http.Client) *peer.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := peer.Connect(ctx, url, &peer.Options{Name: name, Cache: t.TempDir(), HTTPClient: hc, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("connect %s to %s: %v", name, url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func joinRoom(t testing.TB, c *peer.Client, room string) *peer.Room {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.Join(ctx, room)
	if err != nil {
		t.Fatalf("join %s: %v", room, err)
	}
	if err := r.WaitSynced(ctx); err != nil {
		t.Fatalf("sync %s: %v", room, err)
	}
	return r
}

// taggedFrame is a small frame whose info.tag names the commit that made
// it; its positions depend on the tag too.
func taggedFrame(tag string, atoms int) *framesync.Frame {
	var seed float64
	for _, c := range tag {
		seed = seed*31 + float64(c)
	}
	f := relaytest.Frame(atoms, float64(int64(seed)%100000)/7)
	if err := f.SetField("info.tag", tag); err != nil {
		panic(err)
	}
	return f
}

// lockTrajectory takes the trajectory lock of r, waiting while another
// client holds it or the hub is away. It returns the lock and how many
// attempts were refused.
func lockTrajectory(ctx context.Context, r *peer.Room, ttl time.Duration) (*peer.Lock, int, error) {
	refused := 0
	for {
		l, err := r.Lock(ctx, peer.TrajectoryTarget, ttl)
		if err == nil {
			return l, refused, nil
		}
		if !retryable(err) {
			return nil, refused, err
		}
		refused++
		// Back off a little (jittered) before trying again: contention,
		// not synchronisation.
		select {
		case <-ctx.Done():
			return nil, refused, fmt.Errorf("lock trajectory: %w (last: %v)", ctx.Err(), err)
		case <-time.After(time.Duration(5+rand.IntN(45)) * time.Millisecond):
		}
	}
}

// retryable reports whether err is worth trying again: a held lock, a hub
// or Redis that is away.
func retryable(err error) bool {
	return errors.Is(err, framesync.Locked) || errors.Is(err, framesync.Unavailable) || errors.Is(err, peer.ErrOffline) ||
		errors.Is(err, framesync.PreconditionFailed) || !isRefusal(err)
}

// isRefusal reports whether err is an answer of the hub (so the request
// was handled and refused), not a failure to get one.
func isRefusal(err error) bool {
	var pe *peer.Error
	return errors.As(err, &pe) && pe.Status != 0 && pe.Status != http.StatusServiceUnavailable && pe.Status < 500 ||
		errors.As(err, &pe) && pe.Status == 0 && pe.Kind != framesync.Unavailable
}

// tagsAt reads every frame of room through a new client of hub url (so
// every blob is fetched and its hash checked) and returns how often each
// tag occurs and the frame count. Each frame is compared with the frame
// its tag names.
func tagsAt(t *testing.T, url, room string, atoms int) (map[string]int, int) {
	t.Helper()
	c := connect(t, url, "reader")
	r := joinRoom(t, c, room)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tags := map[string]int{}
	n := r.Len()
	err := r.Range(ctx, 0, n, nil, func(i int, e crdt.Entry, f *framesync.Frame) error {
		v, ok := f.Field("info.tag")
		tag, _ := v.(string)
		if !ok || tag == "" {
			return fmt.Errorf("frame %d (%s) has no tag", i, e.ID)
		}
		if !f.Equal(taggedFrame(tag, atoms)) {
			return fmt.Errorf("frame %d (%s, tag %s) differs from what was committed", i, e.ID, tag)
		}
		tags[tag]++
		return nil
	})
	if err != nil {
		t.Fatalf("read frames of %s at %s: %v", room, url, err)
	}
	c.Close()
	return tags, n
}

// commitCounter is an http.RoundTripper that counts commit requests in
// flight (sent, no answer yet), so a test can kill a hub while one is.
type commitCounter struct {
	base     http.RoundTripper
	inflight *atomic.Int64
}

func (c commitCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == "POST" && strings.HasSuffix(req.URL.Path, "/commit") {
		c.inflight.Add(1)
		defer c.inflight.Add(-1)
	}
	return c.base.RoundTrip(req)
}
