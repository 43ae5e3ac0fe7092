package peer

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"framesync"
	"framesync/crdt"
	"framesync/relay"
	"framesync/relay/relaytest"
)

// BenchmarkP2PStatePropagation: a state change on one member until another
// member's replica has it, over each path alone: the hub's WebSocket (no
// libp2p), a direct libp2p stream (hub stopped), the hub's relay (neither
// member listens; the hub's HTTP and WebSocket stopped). Each run measures
// at most 200 changes on a fresh room (the cost of a sync round grows with
// the document's history), so read p50-ms and p99-ms, not ns/op.
func BenchmarkP2PStatePropagation(b *testing.B) {
	for _, path := range []string{"websocket", "direct", "relay"} {
		b.Run(path, func(b *testing.B) {
			h := relaytest.Start(b, relay.Options{P2P: &relay.P2POptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}}})
			var x, y *Room
			switch path {
			case "websocket":
				x = benchJoin(b, benchClient(b, h, nil), "default")
				y = benchJoin(b, benchClient(b, h, nil), "default")
			default:
				opts := &P2POptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}}
				if path == "relay" {
					opts = &P2POptions{NoListen: true}
				}
				x = benchJoin(b, benchClient(b, h, opts), "default")
				y = benchJoin(b, benchClient(b, h, opts), "default")
				benchWait(b, func() bool { return x.Peers() == 1 && y.Peers() == 1 })
				if path == "direct" {
					h.Stop()
				} else {
					h.StopHTTP()
				}
			}
			events, cancel := y.Subscribe(1024)
			defer cancel()
			var lat []time.Duration
			for step := int64(1); step <= int64(min(b.N, 200)); step++ {
				t0 := time.Now()
				if err := x.State().SetStep(step); err != nil {
					b.Fatal(err)
				}
				for seen := false; !seen; {
					select {
					case e := <-events:
						seen = e.Type == EventState && stepIs(e.State, step)
					case <-time.After(10 * time.Second):
						b.Fatalf("step %d never arrived", step)
					}
				}
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
		})
	}
}

func stepIs(d *crdt.StateDiff, step int64) bool {
	for _, f := range d.Fields {
		if f.Field == "step" && f.New == step {
			return true
		}
	}
	return false
}

// BenchmarkP2PBlob: a 32 MB blob from one member to another, directly and
// through the hub's relay, next to the hub's HTTP in the same run.
func BenchmarkP2PBlob(b *testing.B) {
	data := bytes.Repeat([]byte("framesync blob! "), 2<<20)
	h32 := framesync.Sum(data)
	h := relaytest.Start(b, relay.Options{P2P: &relay.P2POptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}}, MaxUpload: 64 << 20})
	if code, body := h.Do("PUT", "/api/blobs/"+h32.String(), data); code != 201 {
		b.Fatalf("upload: %d %s", code, body)
	}
	b.Run("hub-http", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			resp, err := http.Get(h.URL + "/api/blobs/" + h32.String())
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n != int64(len(data)) {
				b.Fatalf("%d bytes", n)
			}
		}
	})
	for _, path := range []string{"direct", "relay"} {
		b.Run(path, func(b *testing.B) {
			opts := &P2POptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}}
			if path == "relay" {
				opts = &P2POptions{NoListen: true}
			}
			src := benchClient(b, h, opts)
			sr := benchJoin(b, src, "default")
			dst := benchJoin(b, benchClient(b, h, opts), "default")
			benchWait(b, func() bool { return sr.Peers() == 1 && dst.Peers() == 1 })
			if _, err := src.rep.blobs.Put(context.Background(), bytes.NewReader(data), h32); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				got, err := dst.c.p2p.fetchFrom(context.Background(), src.p2p.host.ID(), "default", h32)
				if err != nil || len(got) != len(data) {
					b.Fatalf("%d bytes, %v", len(got), err)
				}
			}
		})
	}
}

func benchClient(b *testing.B, h *relaytest.Hub, opts *P2POptions) *Client {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Connect(ctx, h.URL, &Options{Cache: b.TempDir(), P2P: opts, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func benchJoin(b *testing.B, c *Client, room string) *Room {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := c.Join(ctx, room)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

func benchWait(b *testing.B, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}
