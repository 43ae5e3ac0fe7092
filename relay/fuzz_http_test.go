package relay_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"framesync/blobstore"
	"framesync/relay"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

// fuzzHub is a hub served in-process, without a listener, with one room of
// two frames.
func fuzzHub(f *testing.F) http.Handler {
	s, err := relay.New(relay.Options{Dir: f.TempDir(), Blobs: blobstore.NewMemory(), NoSync: true,
		Limits: relay.Limits{RequestsPerSecond: 1e12, Burst: 1 << 40}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	h := s.Handler()
	// Two frames through the HTTP API, as a client would commit them.
	var frames []msgpack.RawMessage
	for i := range 2 {
		b, _ := relaytest.Frame(3, float64(i)).Encode()
		frames = append(frames, b)
	}
	b, _ := msgpack.Marshal(&wire.CommitRequest{Op: wire.OpExtend, Token: 0, Frames: frames})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/api/rooms/default/commit", bytes.NewReader(b))
	req.Header.Set("Content-Type", wire.ContentMsgpack)
	h.ServeHTTP(rec, req)
	return h
}

// FuzzHTTPRead: any GET path and query (room names, frame references,
// versions, field lists, ranges, hashes, since) is answered, never with a
// panic or a 5xx.
func FuzzHTTPRead(f *testing.F) {
	for _, s := range []string{
		"/api/rooms?since=3", "/api/rooms/default", "/api/rooms/default/frames/0?data=positions,numbers",
		"/api/rooms/default/frames/-1?version=1&format=json", "/api/rooms/default/frames?start=0&stop=2&data=arrays",
		"/api/rooms/default/frames/0/manifest", "/api/rooms/default/frames/0/history", "/api/rooms/default/changes?since=0",
		"/api/rooms/default/docs/state", "/api/blobs/sha256:" + string(bytes.Repeat([]byte("ab"), 32)), "/api/auth/me",
	} {
		f.Add(s)
	}
	h := fuzzHub(f)
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.Parse(target)
		if err != nil || u.Path == "" || u.Path[0] != '/' {
			return
		}
		req := &http.Request{Method: "GET", URL: u, Header: http.Header{}, Host: "hub", RemoteAddr: "192.0.2.1:1234"}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(t.Context()))
		if rec.Code >= 500 {
			t.Fatalf("GET %q: %d %s", target, rec.Code, rec.Body.Bytes())
		}
	})
}

// FuzzCommitBody: any commit body gets an answer below 500.
func FuzzCommitBody(f *testing.F) {
	b, _ := relaytest.Frame(2, 1).Encode()
	for _, req := range []*wire.CommitRequest{
		{Op: wire.OpAppend, Frames: []msgpack.RawMessage{b}},
		{Op: wire.OpPatch, Frame: "0", Base: new(int64), Fields: map[string]string{"positions": "sha256:00"}},
		{Op: wire.OpMove, Frame: "1", Index: new(int64)},
		{Op: wire.OpRevert, Frame: "-1", Version: 1},
	} {
		p, _ := msgpack.Marshal(req)
		f.Add(p)
	}
	h := fuzzHub(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/api/rooms/default/commit", bytes.NewReader(body))
		req.Header.Set("Content-Type", wire.ContentMsgpack)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("commit: %d %s", rec.Code, rec.Body.Bytes())
		}
	})
}
