// Package s3test starts a real S3-compatible server for tests: versitygw
// serving a temporary directory with its POSIX backend, on a random port of
// 127.0.0.1. It installs nothing; install the server once with
//
//	CGO_ENABLED=0 go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
//
// (about a minute; the binary lands in $(go env GOBIN), or else
// $(go env GOPATH)/bin, where Start looks for it after $PATH). Start skips
// the test when the binary is missing, unless FRAMESYNC_REQUIRE_S3=1.
package s3test

import (
	"context"
	"fmt"
	"net"
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

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"framesync/internal/testproc"
)

// Binary is the name of the server executable.
const Binary = "versitygw"

// InstallCommand installs the server; Makefiles and skip messages print it.
const InstallCommand = "CGO_ENABLED=0 go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// RequireEnv is the environment variable that turns a missing server from
// a skip into a failure.
const RequireEnv = "FRAMESYNC_REQUIRE_S3"

const (
	// startTimeout bounds how long Start waits for the server to answer.
	startTimeout = 30 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before it kills.
	stopTimeout = 10 * time.Second
	// pollInterval is the pause between two readiness probes.
	pollInterval = 20 * time.Millisecond
	// maxOutput is how much of the server's output is kept for messages.
	maxOutput = 64 << 10
)

// Server is a running versitygw. Its fields are static after Start.
type Server struct {
	Endpoint  string // host:port, on 127.0.0.1
	AccessKey string
	SecretKey string
	Bucket    string // created by Start, empty
	Dir       string // the POSIX backend: Dir/<bucket>/<key> is the file of an object

	t   testing.TB
	bin string

	mu      sync.Mutex
	proc    *testproc.Proc // guarded by mu; nil when stopped
	buckets atomic.Int64
}

// Start starts a server on a new temporary directory and a random port,
// waits until it answers, creates an empty bucket, and registers a cleanup
// that stops the server. It skips t if the binary is not installed, unless
// FRAMESYNC_REQUIRE_S3=1.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := FindBinary()
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("s3test: %v (install it with: %s)", err, InstallCommand)
		}
		t.Skipf("s3test: %v; install it with: %s (or set %s=1 to fail instead of skipping)", err, InstallCommand, RequireEnv)
	}
	s := &Server{
		AccessKey: "framesync-test",
		SecretKey: "framesync-test-secret",
		Bucket:    "framesync",
		Dir:       t.TempDir(),
		t:         t,
		bin:       bin,
	}
	t.Cleanup(s.Stop)
	// Another process may take the port between choosing it and the
	// server binding it: try a few.
	err = testproc.OnFreePort(5, func(port int) error {
		s.Endpoint = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		return s.start()
	})
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	if err := s.makeBucket(s.Bucket); err != nil {
		t.Fatalf("s3test: create bucket %q: %v", s.Bucket, err)
	}
	return s
}

// FindBinary returns the path of the server binary: from $PATH, or else
// from $(go env GOBIN) or $(go env GOPATH)/bin. It looks once per process.
func FindBinary() (string, error) { return findBinary() }

var findBinary = sync.OnceValues(func() (string, error) {
	if p, err := exec.LookPath(Binary); err == nil {
		return p, nil
	}
	out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		return "", fmt.Errorf("%s is not in $PATH, and go env failed: %v", Binary, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var dirs []string
	if len(lines) > 0 && strings.TrimSpace(lines[0]) != "" {
		dirs = append(dirs, strings.TrimSpace(lines[0]))
	}
	if len(lines) > 1 {
		for _, p := range filepath.SplitList(strings.TrimSpace(lines[1])) {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, Binary)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in $PATH or %s", Binary, strings.Join(dirs, ", "))
})

// start runs the binary on s.Endpoint and waits until it answers HTTP.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return fmt.Errorf("server already running")
	}
	cmd := exec.Command(s.bin,
		"--access", s.AccessKey, "--secret", s.SecretKey,
		"--port", s.Endpoint, "--quiet", "--keep-alive",
		"posix", s.Dir)
	p, err := testproc.Start(cmd, maxOutput)
	if err != nil {
		return err
	}
	if err := waitReady(s.Endpoint, p); err != nil {
		stop(p)
		return fmt.Errorf("%v; server output:\n%s", err, p.Out.String())
	}
	s.proc = p
	return nil
}

// waitReady polls the server until it answers an HTTP request, exits, or
// the start timeout passes.
func waitReady(endpoint string, p *testproc.Proc) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		resp, err := client.Get("http://" + endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil // any answer, even 403, means it serves
		}
		select {
		case <-p.Done:
			return fmt.Errorf("%s exited before answering: %v", Binary, p.Err)
		case <-deadline.C:
			return fmt.Errorf("%s did not answer on %s within %v: %v", Binary, endpoint, startTimeout, err)
		case <-tick.C:
		}
	}
}

// stop ends the process: SIGTERM, then SIGKILL if it has not exited
// within stopTimeout. It waits until the process is reaped.
func stop(p *testproc.Proc) {
	select {
	case <-p.Done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.Done:
	case <-timer.C:
		p.Kill()
	}
}

// Stop stops the server. The directory stays until the test ends. Stop
// of a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	stop(p)
	if s.t.Failed() {
		s.t.Logf("s3test: %s output:\n%s", Binary, p.Out.String())
	}
}

// Restart stops the server and starts it again on the same port and
// directory, so clients can keep their endpoint. It waits until the new
// server answers, and fails t if it does not.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		t.Fatalf("s3test: restart: %v", err)
	}
}

// NewBucket creates a new, empty bucket and returns its name. It fails t
// if it cannot.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := "bucket-" + strconv.FormatInt(s.buckets.Add(1), 10)
	if err := s.makeBucket(name); err != nil {
		t.Fatalf("s3test: create bucket %q: %v", name, err)
	}
	return name
}

// Client returns a new minio-go client for the server, to reach it
// outside the store under test.
func (s *Server) Client() (*minio.Client, error) {
	return minio.New(s.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region:     "us-east-1",
		MaxRetries: 1,
	})
}

// URL returns the s3:// URL of bucket (with its credentials) that
// blobstore.Open accepts, for key prefix prefix ("" for none).
func (s *Server) URL(bucket, prefix string) string {
	u := "s3://" + s.AccessKey + ":" + s.SecretKey + "@" + s.Endpoint + "/" + bucket
	if prefix != "" {
		u += "/" + prefix
	}
	return u + "?secure=false&region=us-east-1"
}

// ObjectPath returns the file that holds object key of bucket in the POSIX
// backend, whether or not it exists.
func (s *Server) ObjectPath(bucket, key string) string {
	return filepath.Join(s.Dir, bucket, filepath.FromSlash(key))
}

// makeBucket creates bucket name.
func (s *Server) makeBucket(name string) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	return c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: "us-east-1"})
}
