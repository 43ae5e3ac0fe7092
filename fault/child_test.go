package fault_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"framesync/peer"
	"framesync/relay/relaytest"
	"framesync/relay/wire"

	"framesync/internal/testproc"
)

// The child: the test binary run again with childEnv set is a client
// process that takes the trajectory lock, uploads a frame, saves the
// commit request it is about to send (with its fencing token) and goes on
// uploading big frames, so that it is in the middle of an upload when it
// is killed or frozen. Told "commit" on stdin it sends the saved request
// and prints the hub's answer.
const (
	envHub   = "FAULT_HUB"
	envRoom  = "FAULT_ROOM"
	envReq   = "FAULT_REQ"
	envCache = "FAULT_CACHE"
	envTTL   = "FAULT_TTL_MS"
)

// lateTag tags the frame of the killed client's commit.
const lateTag = "late"

// childAtoms is the size of the frames the child keeps uploading.
const childAtoms = 50_000

func childMain() int {
	fail := func(err error) int { fmt.Println("ERROR", err); return 1 }
	ctx := context.Background()
	ttl, _ := strconv.Atoi(os.Getenv(envTTL))
	c, err := peer.Connect(ctx, os.Getenv(envHub), &peer.Options{Name: "doomed", Cache: os.Getenv(envCache)})
	if err != nil {
		return fail(err)
	}
	r, err := c.Join(ctx, os.Getenv(envRoom))
	if err != nil {
		return fail(err)
	}
	if err := r.WaitSynced(ctx); err != nil {
		return fail(err)
	}
	l, err := r.Lock(ctx, peer.TrajectoryTarget, time.Duration(ttl)*time.Millisecond)
	if err != nil {
		return fail(err)
	}
	hashes, err := r.Upload(ctx, taggedFrame(lateTag, 3))
	if err != nil {
		return fail(err)
	}
	req := wire.CommitRequest{Op: wire.OpAppend, Token: l.Token()}
	for _, h := range hashes {
		req.Manifests = append(req.Manifests, h.String())
	}
	b, _ := json.Marshal(req)
	path := os.Getenv(envReq)
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		return fail(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fail(err)
	}
	fmt.Println("LOCKED", l.Token())
	go func() {
		for i := 0; ; i++ {
			if i == 0 {
				fmt.Println("UPLOADING")
			}
			if _, err := r.Upload(ctx, relaytest.Frame(childAtoms, float64(i)+0.25)); err != nil {
				fmt.Println("UPLOAD", err)
				return
			}
		}
	}()
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if strings.TrimSpace(line) != "commit" {
		return 0
	}
	resp, err := http.Post(os.Getenv(envHub)+"/api/rooms/"+os.Getenv(envRoom)+"/commit", "application/json", bytes.NewReader(b))
	if err != nil {
		return fail(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println("STATUS", resp.StatusCode, strings.TrimSpace(string(body)))
	return 0
}

// child is a running client process.
type child struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
	req   string // path of the saved commit request

	mu  sync.Mutex
	out []string
}

// startChild starts a client process on hub url and room, holding the
// trajectory lock with ttl; it is killed when the test ends.
func startChild(t *testing.T, url, room string, ttl time.Duration) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ch := &child{t: t, lines: make(chan string, 64), done: make(chan struct{}), req: filepath.Join(dir, "commit.json")}
	ch.cmd = exec.Command(exe, "-test.run=^$")
	ch.cmd.Env = append(os.Environ(), childEnv+"=locker", envHub+"="+url, envRoom+"="+room, envReq+"="+ch.req,
		envCache+"="+filepath.Join(dir, "cache"), envTTL+"="+strconv.FormatInt(ttl.Milliseconds(), 10))
	ch.cmd.Stderr = os.Stderr
	testproc.DieWithParent(ch.cmd)
	out, err := ch.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if ch.stdin, err = ch.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := ch.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			ch.mu.Lock()
			ch.out = append(ch.out, sc.Text())
			ch.mu.Unlock()
			select {
			case ch.lines <- sc.Text():
			default:
			}
		}
		ch.cmd.Wait()
		close(ch.done)
	}()
	t.Cleanup(ch.kill)
	return ch
}

// expect waits for a line of the child's output starting with prefix.
func (ch *child) expect(prefix string, timeout time.Duration) string {
	ch.t.Helper()
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		select {
		case l := <-ch.lines:
			if strings.HasPrefix(l, "ERROR") {
				ch.t.Fatalf("child: %s", l)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-ch.done:
			ch.mu.Lock()
			defer ch.mu.Unlock()
			ch.t.Fatalf("child exited before printing %q: %q", prefix, ch.out)
		case <-tm.C:
			ch.t.Fatalf("child did not print %q within %v", prefix, timeout)
		}
	}
}

func (ch *child) signal(sig syscall.Signal) {
	ch.t.Helper()
	if err := ch.cmd.Process.Signal(sig); err != nil {
		ch.t.Fatalf("signal %v: %v", sig, err)
	}
}

// kill sends SIGKILL (also to a stopped child) and waits for the exit.
func (ch *child) kill() {
	ch.cmd.Process.Signal(syscall.SIGKILL)
	<-ch.done
}

// savedRequest returns the commit request the child saved.
func (ch *child) savedRequest() wire.CommitRequest {
	ch.t.Helper()
	b, err := os.ReadFile(ch.req)
	if err != nil {
		ch.t.Fatal(err)
	}
	var req wire.CommitRequest
	if err := json.Unmarshal(b, &req); err != nil {
		ch.t.Fatal(err)
	}
	return req
}
