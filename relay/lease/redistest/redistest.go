// Package redistest runs a real redis-server for tests: Start launches one
// on a free port of 127.0.0.1 without persistence, waits until it answers
// PING and stops it when the test ends. Stop, Start and Restart let fault
// tests take it away and bring it back on the same address, as a crash and
// restart of Redis without persistence would; Pause and Resume make it hang
// and go on.
//
// Tests that need Redis are skipped when redis-server is not installed,
// unless FRAMESYNC_REQUIRE_REDIS=1 (set by make test), where they fail.
package redistest

import (
	"bufio"
	"fmt"
	"github.com/redis/go-redis/v9"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"framesync/internal/testproc"
)

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 10 * time.Second

// Server is one redis-server process owned by a test.
type Server struct {
	// Static after Start.
	Addr string // host:port on 127.0.0.1
	URL  string // redis://Addr/0, for redis.ParseURL
	t    testing.TB
	bin  string
	port int
	dir  string

	mu   sync.Mutex     // guards the fields below
	proc *testproc.Proc // nil while stopped
}

// Binary returns the path of the named Redis program (redis-server,
// redis-benchmark, redis-cli) or skips t if it is missing; with
// FRAMESYNC_REQUIRE_REDIS=1 a missing program fails t instead.
func Binary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("FRAMESYNC_REQUIRE_REDIS") == "1" {
		t.Fatalf("%s is required (FRAMESYNC_REQUIRE_REDIS=1) but not found: apt-get install redis-server", name)
	}
	t.Skipf("%s not found (apt-get install redis-server); skipping", name)
	return ""
}

// Start runs a redis-server on a free port of 127.0.0.1 with no
// persistence (no RDB snapshots, no append-only file) and returns once it answers
// PING. It is stopped when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t, "redis-server"), dir: t.TempDir()}
	t.Cleanup(s.Stop)
	err := testproc.OnFreePort(5, func(port int) error {
		s.port = port
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.URL = "redis://" + s.Addr + "/0"
		return s.start()
	})
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return s
}

// Start starts the server again on the same address after Stop. It fails
// the test if the server does not come up.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
}

// Client returns a go-redis client of s, closed when the test ends: for
// looking at the keys directly.
func (s *Server) Client(tb testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	tb.Cleanup(func() { c.Close() })
	return c
}

// Restart kills the server and starts a new one on the same address: every
// key is gone, as after a crash of Redis without persistence.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.Start()
}

// Stop kills the server (SIGKILL, like a crash) and waits until it has
// exited and its port is closed. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	p.Kill()
}

// Pause stops the server process (SIGSTOP) without closing its
// connections: Redis hangs, as on a long GC-like stall or a partition that
// drops packets. Resume lets it go on.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		s.t.Fatalf("redistest: redis-server on %s is not running", s.Addr)
	}
	if err := s.proc.Cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("redistest: signal %v: %v", sig, err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return fmt.Errorf("redis-server on %s is already running", s.Addr)
	}
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--loglevel", "warning",
	)
	p, err := testproc.Start(cmd, 0)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(startTimeout)
	for {
		err := ping(s.Addr)
		if err == nil {
			s.proc = p
			return nil
		}
		select {
		case <-p.Done:
			return fmt.Errorf("redis-server on %s exited (%v) before answering PING: %s", s.Addr, p.Err, strings.TrimSpace(p.Out.String()))
		case <-time.After(10 * time.Millisecond): // poll interval while waiting for PING
		}
		if time.Now().After(deadline) {
			p.Kill()
			return fmt.Errorf("redis-server on %s did not answer PING within %v (%v): %s", s.Addr, startTimeout, err, strings.TrimSpace(p.Out.String()))
		}
	}
}

// ping sends one PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// SetThroughput runs redis-benchmark SET (100,000 requests over clients
// connections) against s and returns its requests per second: the
// baseline the lock benchmarks report next to their own numbers. It fails
// if redis-benchmark is missing or prints something unexpected.
func (s *Server) SetThroughput(clients int) (float64, error) {
	bin, err := exec.LookPath("redis-benchmark")
	if err != nil {
		return 0, err
	}
	host, port, _ := strings.Cut(s.Addr, ":")
	out, err := exec.Command(bin, "-h", host, "-p", port, "-t", "set", "-n", "100000", "-c", strconv.Itoa(clients), "-q").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("redis-benchmark: %v: %s", err, out)
	}
	// "SET: 123456.79 requests per second, p50=0.199 msec"
	text := string(out)
	if i := strings.LastIndex(text, "SET: "); i >= 0 {
		text = text[i+len("SET: "):]
	}
	f := strings.Fields(text)
	if len(f) == 0 {
		return 0, fmt.Errorf("redis-benchmark printed %q", out)
	}
	rps, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("redis-benchmark printed %q", out)
	}
	return rps, nil
}
