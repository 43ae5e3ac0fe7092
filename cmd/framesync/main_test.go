package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"framesync"
	"framesync/blobstore/s3test"
	"framesync/relay/lease/redistest"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestFrameShow(t *testing.T) {
	golden := filepath.Join("..", "..", "testdata", "frame-small.msgpack")
	code, out, errs := runCLI(t, "frame", "show", golden)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	b, _ := os.ReadFile(golden)
	f, err := framesync.DecodeFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	m, _, _ := f.Split()
	for _, want := range []string{"positions", "<f8", "[3 3]", "info.name", `"water"`, "atoms: 3", m.Hash().String(), m["positions"].String()} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI(t, "frame", "show", "--data", "info", golden)
	if code != 0 || strings.Contains(out, "positions") || !strings.Contains(out, "info.step") {
		t.Fatalf("--data info: exit %d\n%s", code, out)
	}

	// A truncated file: exit 1 with a message naming the problem.
	bad := filepath.Join(t.TempDir(), "bad.msgpack")
	os.WriteFile(bad, b[:len(b)-10], 0o644)
	code, _, errs = runCLI(t, "frame", "show", bad)
	if code != 1 || !strings.Contains(errs, "truncated") {
		t.Fatalf("truncated frame: exit %d, stderr %q", code, errs)
	}
	// Usage errors exit 2. Hub cases get their own data directory and no
	// fixed ports, so one that wrongly gets past the checks writes
	// nothing here.
	hub := []string{"hub", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--p2p-listen", "off"}
	for _, args := range [][]string{{"frame", "show"}, append(hub, "--no-such-flag"), append(hub, "--log-format", "xml"), append(hub, "--log-level", "loud"), append(hub, "--redis-url", "http://x"), {"frame", "show", "--data", "a,,b", golden}} {
		if code, _, errs := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d (stderr %q), want 2", args, code, errs)
		}
	}
}

func TestHubHealth(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		cfg := hubConfig{Addr: "127.0.0.1:0", Data: dir, MaxUploadMB: 1}
		done <- runHub(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(a string) { addrc <- a })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("hub stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("hub did not start")
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs")); err != nil {
		t.Fatalf("blob store not created under the data directory: %v", err)
	}
	// The hub serves rooms: the default room exists.
	resp, err = http.Get("http://" + addr + "/api/rooms/default")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("default room: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("hub shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("hub did not stop")
	}
	// A graceful stop saved the room documents and the hub identity.
	for _, name := range []string{"hub.json", "rooms/default/trajectory.am", "rooms/default/state.am"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("after shutdown: %v", err)
		}
	}
}

// TestHubWithRedisAndS3 runs the hub as a team would: locks in Redis,
// blobs in an S3-compatible store (both real servers started by the test).
func TestHubWithRedisAndS3(t *testing.T) {
	rs := redistest.Start(t)
	s3 := s3test.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		cfg := hubConfig{Addr: "127.0.0.1:0", Data: t.TempDir(), MaxUploadMB: 1, RedisURL: rs.URL, Blobs: s3.URL(s3.Bucket, "team")}
		done <- runHub(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(a string) { addrc <- a })
	}()
	var hub string
	select {
	case a := <-addrc:
		hub = "http://" + a
	case err := <-done:
		t.Fatalf("hub stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("hub did not start")
	}
	defer http.DefaultClient.CloseIdleConnections()
	resp, err := http.Get(hub + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()
	blob := []byte("a blob for the object store")
	hash := framesync.Sum(blob)
	req, _ := http.NewRequest("PUT", hub+"/api/blobs/"+hash.String(), bytes.NewReader(blob))
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("put blob: %v %v", resp, err)
	}
	resp.Body.Close()
	key := "team/sha256/" + hash.Hex()[:2] + "/" + hash.Hex()
	if _, err := os.Stat(s3.ObjectPath(s3.Bucket, key)); err != nil {
		t.Fatalf("the blob is not in the bucket under %s: %v", key, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("hub shutdown: %v", err)
	}
}
