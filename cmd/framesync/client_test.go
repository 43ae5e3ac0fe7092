package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"framesync"
	"framesync/crdt"
	"framesync/peer"
	"framesync/relay"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

// TestMain lets the test binary act as the framesync command, so a test can
// run it as a child process (and kill it).
func TestMain(m *testing.M) {
	if os.Getenv("FRAMESYNC_TEST_MAIN") == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(verifyNoLeaks(m))
}

// cli runs the command with the client flags of hub h and cache.
func cli(t *testing.T, h *relaytest.Hub, cache string, args ...string) (stdout, stderr string) {
	t.Helper()
	code, out, errs := runCLI(t, append(args, "--hub", h.URL, "--cache", cache)...)
	if code != 0 {
		t.Fatalf("framesync %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out, errs
}

// readXYZ reads every frame of an xyz file.
func readXYZ(t *testing.T, path string) []*framesync.Frame {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := framesync.NewXYZReader(f)
	var out []*framesync.Frame
	for {
		fr, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, fr)
	}
}

// writeXYZ writes frames to a new file and returns its path.
func writeXYZ(t *testing.T, dir string, frames []*framesync.Frame) string {
	t.Helper()
	path := filepath.Join(dir, "in.extxyz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := framesync.NewXYZWriter(f)
	for _, fr := range frames {
		if err := w.Write(fr); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

func sampleFrames(n, atoms int) []*framesync.Frame {
	var out []*framesync.Frame
	for k := range n {
		nums := make([]int64, atoms)
		pos := make([]float64, 3*atoms)
		forces := make([]float64, 3*atoms)
		for i := range atoms {
			nums[i] = int64(1 + (i+k)%10)
			for j := range 3 {
				pos[3*i+j] = math.Sin(float64(k*atoms+i*3+j)) * 7.123456789
				forces[3*i+j] = math.Cos(float64(i+j)) / 3
			}
		}
		f := framesync.NewFrame(nums, pos)
		f.SetCell([9]float64{12.5, 0, 0, 0.5, 11, 0, 0, 0, 10})
		f.SetPBC(true, true, k%2 == 0)
		f.SetField("calc.forces", framesync.Float64Array(forces, atoms, 3))
		f.SetField("info.step", int64(k))
		f.SetField("info.label", fmt.Sprintf("frame %d", k))
		out = append(out, f)
	}
	return out
}

func TestPushPullInspectOffline(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	frames := sampleFrames(30, 12)
	in := writeXYZ(t, dir, frames)

	_, errs := cli(t, h, cache, "push", in, "--room", "demo", "--batch", "7")
	if !strings.Contains(errs, "pushed 30 frames") {
		t.Fatalf("push summary: %q", errs)
	}
	// The frames are in the room, numerically equal.
	online := filepath.Join(dir, "online.extxyz")
	cli(t, h, cache, "pull", "--room", "demo", "-o", online)
	back := readXYZ(t, online)
	if len(back) != len(frames) {
		t.Fatalf("pulled %d frames, pushed %d", len(back), len(frames))
	}
	for i := range frames {
		if !back[i].Equal(frames[i]) {
			t.Fatalf("frame %d changed on the way", i)
		}
	}
	// A slice, and --append.
	part := filepath.Join(dir, "part.extxyz")
	cli(t, h, cache, "pull", "--room", "demo", "-o", part, "--frames", "-5:")
	if got := readXYZ(t, part); len(got) != 5 || !got[0].Equal(frames[25]) {
		t.Fatalf("--frames -5: gave %d frames", len(got))
	}
	cli(t, h, cache, "push", in, "--room", "demo", "--append", "-q")
	out, _ := cli(t, h, cache, "rooms")
	if !strings.Contains(out, "demo") || !strings.Contains(out, "60") {
		t.Fatalf("rooms after append:\n%s", out)
	}
	// Without --append the frames are replaced.
	cli(t, h, cache, "push", in, "--room", "demo", "-q")
	cli(t, h, cache, "pull", "--room", "demo", "-o", online)
	if n := len(readXYZ(t, online)); n != 30 {
		t.Fatalf("after replace: %d frames", n)
	}

	// The hub goes away: inspect works from the replica.
	h.Stop()
	out, _ = cli(t, h, cache, "inspect")
	if !strings.Contains(out, "demo") {
		t.Fatalf("inspect:\n%s", out)
	}
	out, _ = cli(t, h, cache, "inspect", "--room", "demo")
	if !strings.Contains(out, "30 frames") || !strings.Contains(out, "INDEX") {
		t.Fatalf("inspect --room:\n%s", out)
	}
	out, _ = cli(t, h, cache, "inspect", "--room", "demo", "--frame", "-1")
	if !strings.Contains(out, "calc.forces") || !strings.Contains(out, "history:") {
		t.Fatalf("inspect --frame:\n%s", out)
	}
	offline := filepath.Join(dir, "offline.extxyz")
	cli(t, h, cache, "inspect", "--room", "demo", "--export", offline)
	a, _ := os.ReadFile(online)
	b, _ := os.ReadFile(offline)
	if !bytes.Equal(a, b) || len(a) == 0 {
		t.Fatalf("offline export (%d bytes) differs from the online pull (%d bytes)", len(b), len(a))
	}
}

// TestPushPullASEFile pushes a file ASE wrote (cells, pbc, forces, string
// and bool columns, info of every type) and pulls it back: the frames are
// numerically equal, and ASE reads the pulled file as it read the
// original.
func TestPushPullASEFile(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	in := filepath.Join("..", "..", "testdata", "xyz", "ase.extxyz")
	cli(t, h, cache, "push", in, "--room", "ase", "-q")
	out := filepath.Join(dir, "back.extxyz")
	cli(t, h, cache, "pull", "--room", "ase", "-o", out, "-q")
	orig, back := readXYZ(t, in), readXYZ(t, out)
	if len(orig) == 0 || len(orig) != len(back) {
		t.Fatalf("pushed %d frames, pulled %d", len(orig), len(back))
	}
	for i := range orig {
		if !orig[i].Equal(back[i]) {
			t.Fatalf("frame %d differs after push and pull", i)
		}
	}
	if os.Getenv("FRAMESYNC_REQUIRE_PYTHON") != "1" {
		if err := exec.Command("/usr/bin/python3", "-c", "import ase").Run(); err != nil {
			t.Skip("ASE not available (Debian python3-ase); make test installs it")
		}
	}
	script := `
import sys
import numpy as np
from ase.io import read
a = read(sys.argv[1], index=":", format="extxyz")
b = read(sys.argv[2], index=":", format="extxyz")
assert len(a) == len(b), (len(a), len(b))
for i, (x, y) in enumerate(zip(a, b)):
    assert x.get_chemical_symbols() == y.get_chemical_symbols(), i
    assert np.allclose(x.positions, y.positions, atol=1e-8), i
    assert np.allclose(x.cell.array, y.cell.array), i
    assert (x.pbc == y.pbc).all(), i
    assert sorted(x.arrays) == sorted(y.arrays), (i, sorted(x.arrays), sorted(y.arrays))
    for k in x.arrays:
        if x.arrays[k].dtype.kind == "f":
            assert np.allclose(x.arrays[k], y.arrays[k]), (i, k)
        else:
            assert (x.arrays[k] == y.arrays[k]).all(), (i, k)
    assert sorted(x.info) == sorted(y.info), (i, sorted(x.info), sorted(y.info))
    for k in x.info:
        assert np.all(np.asarray(x.info[k]) == np.asarray(y.info[k])), (i, k, x.info[k], y.info[k])
    if x.calc is not None:
        for k, v in x.calc.results.items():
            assert np.allclose(v, y.calc.results[k]), (i, k)
print(len(a))
`
	res, err := exec.Command("/usr/bin/python3", "-c", script, in, out).CombinedOutput()
	if err != nil {
		t.Fatalf("ASE compared the files: %v\n%s", err, res)
	}
}

func TestClientCommandErrors(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	cache := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"push", "x.pdb", "--room", "r"}, 2, "unknown format"},
		{[]string{"push", "x.xyz"}, 2, "--room is required"},
		{[]string{"pull", "--room", "r"}, 2, "-o FILE is required"},
		{[]string{"pull", "--room", "nope", "-o", filepath.Join(cache, "x.xyz")}, 1, "nope"},
		{[]string{"inspect", "--room", "nope"}, 1, "not in the local replica"},
		{[]string{"lock", "--room", "default", "--target", "frame"}, 2, "--target"},
		{[]string{"pull", "--room", "default", "-o", "x", "--frames", "a:b"}, 2, "--frames"},
	} {
		code, _, errs := runCLI(t, append(tc.args, "--hub", h.URL, "--cache", cache)...)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("framesync %v: exit %d, %q; want %d and %q", tc.args, code, errs, tc.code, tc.msg)
		}
	}
	// A hub that is not there.
	code, _, errs := runCLI(t, "rooms", "--hub", "http://127.0.0.1:1", "--cache", cache)
	if code != 1 || !strings.Contains(errs, "is a hub running") {
		t.Errorf("no hub: exit %d, %q", code, errs)
	}
	// A malformed file: the line is named and nothing is committed.
	bad := filepath.Join(cache, "bad.xyz")
	os.WriteFile(bad, []byte("2\n\nH 0 0 0\nH 0 0 x\n"), 0o644)
	code, _, errs = runCLI(t, "push", bad, "--room", "badroom", "--hub", h.URL, "--cache", cache)
	if code != 1 || !strings.Contains(errs, "line 4") {
		t.Errorf("bad file: exit %d, %q", code, errs)
	}
}

func TestPushKilledMidway(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process")
	}
	h := relaytest.Start(t, relay.Options{})
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	const batch = 10
	in := writeXYZ(t, dir, sampleFrames(3000, 20))

	cmd := exec.Command(os.Args[0], "push", in, "--room", "killed", "--batch", strconv.Itoa(batch), "-q", "--hub", h.URL, "--cache", cache)
	cmd.Env = append(os.Environ(), "FRAMESYNC_TEST_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once some batches are in and its replica has been saved
	// (it is saved again and again while the push runs).
	repDir, err := peer.ReplicaDir(cache, h.URL)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var info wire.RoomInfo
		_, saved := os.Stat(filepath.Join(repDir, "rooms", "killed", "room.json"))
		if h.JSON("GET", "/api/rooms/killed", nil, &info) == 200 && info.Frames >= 3*batch && saved == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("push made no progress: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond) // polling the hub with a deadline
	}
	cmd.Process.Kill()
	cmd.Wait()
	if cmd.ProcessState.Success() {
		t.Skip("the push finished before it could be killed")
	}

	// The hub holds whole batches of complete frames.
	var info wire.RoomInfo
	h.JSON("GET", "/api/rooms/killed", nil, &info)
	if info.Frames%batch != 0 {
		t.Fatalf("%d frames: not whole batches", info.Frames)
	}
	// The replica opens, and a new client reads every frame back.
	rp, err := peer.Open(cache, h.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rp.View("killed"); err != nil {
		t.Fatalf("replica after kill -9: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := peer.Connect(ctx, h.URL, &peer.Options{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Join(ctx, "killed")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WaitGeneration(ctx, info.Generation); err != nil {
		t.Fatal(err)
	}
	want := sampleFrames(info.Frames, 20)
	n := 0
	err = r.Range(ctx, 0, r.Len(), nil, func(i int, _ crdt.Entry, f *framesync.Frame) error {
		n++
		if !f.Equal(want[i]) {
			return fmt.Errorf("frame %d differs", i)
		}
		return nil
	})
	if err != nil || n != info.Frames {
		t.Fatalf("read back %d of %d frames: %v", n, info.Frames, err)
	}
	// The lock the killed client held went with its connection.
	cli(t, h, cache, "push", in, "--room", "killed", "-q", "--batch", "500")
}

func TestRoomLockPresentCommands(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	in := writeXYZ(t, dir, sampleFrames(5, 4))
	cli(t, h, cache, "push", in, "--room", "src", "-q")
	out, _ := cli(t, h, cache, "room", "create", "copy", "--from", "src")
	if !strings.Contains(out, "created room copy with 5 frames") {
		t.Fatalf("room create: %q", out)
	}
	out, _ = cli(t, h, cache, "room", "info", "copy")
	if !strings.Contains(out, `"frames": 5`) {
		t.Fatalf("room info: %s", out)
	}

	// lock holds until interrupted; the hub shows the holder meanwhile.
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"lock", "--room", "copy", "--target", "2", "--hub", h.URL, "--cache", cache}, &stdout, &stderr)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var info wire.RoomInfo
		h.JSON("GET", "/api/rooms/copy", nil, &info)
		if len(info.Locks) == 1 && strings.HasPrefix(info.Locks[0].Target, "frame:") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lock at the hub: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond) // polling the hub with a deadline
	}
	// A second client is told who holds it.
	code, _, errs := runCLI(t, "lock", "--room", "copy", "--target", "2", "--hub", h.URL, "--cache", filepath.Join(dir, "other"))
	if code != 1 || !strings.Contains(errs, "held by") {
		t.Fatalf("second lock: exit %d, %q", code, errs)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("lock exit %d: %s", code, stderr.String())
	}
	var info wire.RoomInfo
	h.JSON("GET", "/api/rooms/copy", nil, &info)
	if len(info.Locks) != 0 {
		t.Fatalf("locks after release: %+v", info.Locks)
	}

	// present plays the frames; the last step lands in the state.
	out, _ = cli(t, h, cache, "present", "--room", "copy", "--fps", "200")
	if !strings.Contains(out, "presented frames 0 to 4") {
		t.Fatalf("present: %q", out)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		h.JSON("GET", "/api/rooms/copy", nil, &info)
		if info.Step != nil && *info.Step == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("step after presenting: %v", info.Step)
		}
		time.Sleep(5 * time.Millisecond) // polling the hub with a deadline
	}
}

func TestLoginAndRoles(t *testing.T) {
	h := relaytest.Start(t, relay.Options{Auth: &relay.AuthOptions{
		AdminUser: "root", AdminPassword: "root-password", Secret: []byte("0123456789abcdef0123456789abcdef"), PasswordCost: bcrypt.MinCost,
	}})
	dir := t.TempDir()
	in := writeXYZ(t, dir, sampleFrames(3, 4))
	root, ann, ben := filepath.Join(dir, "root"), filepath.Join(dir, "ann"), filepath.Join(dir, "ben")

	// Nothing without logging in.
	code, _, errs := runCLI(t, "push", in, "--room", "lab", "--hub", h.URL, "--cache", ann)
	if code != 1 || !strings.Contains(errs, "log in") {
		t.Fatalf("push before login: exit %d, %q", code, errs)
	}
	t.Setenv("FRAMESYNC_PASSWORD", "root-password")
	cli(t, h, root, "login", "--user", "root")
	for _, u := range []string{"ann", "ben"} {
		if code, body := h.Do("POST", "/api/users", wire.LoginRequest{Username: u, Password: u + "-password"}, "Authorization", "Bearer "+peerToken(t, root, h.URL)); code != 201 {
			t.Fatalf("create %s: %d %s", u, code, body)
		}
	}
	t.Setenv("FRAMESYNC_PASSWORD", "ann-password")
	out, _ := cli(t, h, ann, "login", "--user", "ann")
	if !strings.Contains(out, "logged in") {
		t.Fatalf("login: %q", out)
	}
	if fi, err := os.Stat(filepath.Join(ann, "hubs")); err != nil || !fi.IsDir() {
		t.Fatal("no replica after login")
	}
	cli(t, h, ann, "push", in, "--room", "lab", "-q") // ann creates lab and is its admin
	t.Setenv("FRAMESYNC_PASSWORD", "ben-password")
	cli(t, h, ben, "login", "--user", "ben")
	code, _, errs = runCLI(t, "pull", "--room", "lab", "-o", filepath.Join(dir, "x.extxyz"), "--hub", h.URL, "--cache", ben)
	if code != 1 || !strings.Contains(errs, "not a member") {
		t.Fatalf("ben pulls lab: exit %d, %q", code, errs)
	}
	out, _ = cli(t, h, ann, "room", "acl", "lab", "--role", "ben=reader")
	if !strings.Contains(out, `"ben": "reader"`) {
		t.Fatalf("acl: %s", out)
	}
	cli(t, h, ben, "pull", "--room", "lab", "-o", filepath.Join(dir, "x.extxyz"), "-q")
	code, _, errs = runCLI(t, "push", in, "--room", "lab", "--append", "--hub", h.URL, "--cache", ben)
	if code != 1 || !strings.Contains(errs, "needs the writer role") {
		t.Fatalf("reader pushes: exit %d, %q", code, errs)
	}
	// After logout the token is gone here and revoked at the hub.
	tok := peerToken(t, ben, h.URL)
	cli(t, h, ben, "logout")
	if peerToken(t, ben, h.URL) != "" {
		t.Fatal("token kept after logout")
	}
	if code, _ := h.Do("GET", "/api/rooms/lab", nil, "Authorization", "Bearer "+tok); code != 401 {
		t.Fatalf("revoked token: %d", code)
	}
}

func peerToken(t *testing.T, cache, hub string) string {
	t.Helper()
	rp, err := peer.Open(cache, hub)
	if err != nil {
		t.Fatal(err)
	}
	return rp.Token()
}
