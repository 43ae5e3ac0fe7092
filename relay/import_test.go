package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"framesync"
	"framesync/relay"
	"framesync/relay/lease"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

// xyzFile returns n frames of atoms atoms as extxyz text: frame i has
// relaytest.Frame's positions for seed i and its index as Info["step"].
func xyzFile(t testing.TB, n, atoms int) []byte {
	t.Helper()
	var b bytes.Buffer
	w := framesync.NewXYZWriter(&b)
	for i := range n {
		f := relaytest.Frame(atoms, float64(i))
		f.Info = map[string]any{"step": int64(i)}
		if err := w.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// readXYZ parses text with the project's reader.
func readXYZ(t testing.TB, text []byte) []*framesync.Frame {
	t.Helper()
	r := framesync.NewXYZReader(bytes.NewReader(text))
	var out []*framesync.Frame
	for {
		f, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
}

// startImport posts file to room's import route and returns the job of
// the 202 answer.
func startImport(t testing.TB, h *relaytest.Hub, room, query string, file []byte, hdr ...string) wire.Job {
	t.Helper()
	var j wire.Job
	code, body := h.Do("POST", "/api/rooms/"+room+"/import"+query, file, hdr...)
	if code != http.StatusAccepted {
		t.Fatalf("import: %d %s", code, body)
	}
	if err := json.Unmarshal(body, &j); err != nil {
		t.Fatal(err)
	}
	if j.ID == "" || j.Room != room || j.TotalBytes != int64(len(file)) || j.Created.IsZero() {
		t.Fatalf("import answered %+v", j)
	}
	return j
}

// waitJob polls the job until it has finished and returns it.
func waitJob(t testing.TB, h *relaytest.Hub, room, id string, hdr ...string) wire.Job {
	t.Helper()
	var j wire.Job
	waitFor(t, 30*time.Second, "job "+id+" to finish", func() bool {
		if code := h.JSON("GET", "/api/rooms/"+room+"/jobs/"+id, nil, &j, hdr...); code != http.StatusOK {
			t.Fatalf("GET job: %d", code)
		}
		return j.State == "done" || j.State == "failed"
	})
	return j
}

// jobOf decodes the payload of a job message.
func jobOf(t testing.TB, m *wire.Msg) wire.Job {
	t.Helper()
	b, err := msgpack.Marshal(m.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var j wire.Job
	if err := msgpack.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// jobMessages returns the job messages about job id that c receives, up
// to the one where it finished.
func jobMessages(t testing.TB, c *relaytest.Client, room, id string) []wire.Job {
	t.Helper()
	var out []wire.Job
	for {
		m := c.Wait(func(m *wire.Msg) bool { return m.T == wire.MsgJob && m.Room == room && m.Payload["id"] == id }, 30*time.Second)
		j := jobOf(t, m)
		out = append(out, j)
		if j.State == "done" || j.State == "failed" {
			return out
		}
	}
}

func roomInfo(t testing.TB, h *relaytest.Hub, room string, hdr ...string) wire.RoomInfo {
	t.Helper()
	var info wire.RoomInfo
	if code := h.JSON("GET", "/api/rooms/"+room, nil, &info, hdr...); code != http.StatusOK {
		t.Fatalf("GET room %s: %d", room, code)
	}
	return info
}

// spooled lists the hub's spooled uploads.
func spooled(t testing.TB, h *relaytest.Hub) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(h.Opts.Dir, "imports"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestImportXYZ(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	c := h.Dial("viewer", "")
	join(t, c, "default")
	file := xyzFile(t, 3, 4)
	j := startImport(t, h, "default", "?name=water.extxyz&append=1", file)
	if j.State != "queued" || j.Name != "water.extxyz" {
		t.Fatalf("new job %+v", j)
	}

	// Members hear of every change of state, ending in done.
	msgs := jobMessages(t, c, "default", j.ID)
	var states []string
	for _, m := range msgs {
		if len(states) == 0 || states[len(states)-1] != m.State {
			states = append(states, m.State)
		}
	}
	if !slices.Equal(states, []string{"queued", "running", "done"}) {
		t.Fatalf("states %v", states)
	}
	end := msgs[len(msgs)-1]
	if end.Frames != 3 || end.Committed != 3 || end.Bytes != int64(len(file)) || end.Error != "" || end.Started.IsZero() || end.Finished.Before(end.Started) {
		t.Fatalf("finished job %+v", end)
	}

	// The room has the file's frames, in order.
	want := readXYZ(t, file)
	for i, w := range want {
		code, body := h.Do("GET", fmt.Sprintf("/api/rooms/default/frames/%d", i), nil)
		if code != http.StatusOK {
			t.Fatalf("frame %d: %d %s", i, code, body)
		}
		got, err := framesync.DecodeFrame(body)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Positions.Equal(relaytest.Frame(4, float64(i)).Positions) || !got.Equal(w) {
			t.Fatalf("frame %d differs from the file's", i)
		}
	}
	if info := roomInfo(t, h, "default"); info.Frames != 3 || len(info.Locks) != 0 {
		t.Fatalf("room after import: %d frames, locks %v", info.Frames, info.Locks)
	}
	var hist struct{ History []wire.HistoryEntry }
	h.JSON("GET", "/api/rooms/default/frames/0/history", nil, &hist)
	if len(hist.History) != 1 || hist.History[0].Author != "import:"+j.ID {
		t.Fatalf("history %+v", hist.History)
	}

	// The job is listed, and the listing agrees with the messages.
	var list struct {
		Room string
		Jobs []wire.Job
	}
	if code := h.JSON("GET", "/api/rooms/default/jobs", nil, &list); code != 200 || len(list.Jobs) != 1 || list.Jobs[0].ID != j.ID || list.Jobs[0].State != "done" || list.Jobs[0].Committed != 3 {
		t.Fatalf("jobs: %d %+v", code, list)
	}
	if code, _ := h.Do("GET", "/api/rooms/default/jobs/0123456789abcdef", nil); code != http.StatusNotFound {
		t.Fatalf("unknown job: %d", code)
	}
	waitFor(t, 5*time.Second, "the spooled file to go", func() bool { return len(spooled(t, h)) == 0 })

	// A second import appends; the newest job is listed first.
	j2 := startImport(t, h, "default", "", xyzFile(t, 2, 4))
	if j2 := waitJob(t, h, "default", j2.ID); j2.State != "done" {
		t.Fatalf("second import: %+v", j2)
	}
	if info := roomInfo(t, h, "default"); info.Frames != 5 {
		t.Fatalf("%d frames after the second import", info.Frames)
	}
	h.JSON("GET", "/api/rooms/default/jobs", nil, &list)
	if len(list.Jobs) != 2 || list.Jobs[0].ID != j2.ID {
		t.Fatalf("jobs: %+v", list.Jobs)
	}
}

func TestImportMalformedLeavesRoomAlone(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	a := h.Dial("alice", "")
	join(t, a, "default")
	seed(t, h, a, "default", 2, 3)
	before := roomInfo(t, h, "default")

	// 250 good frames (more than two batches), then a bad atom count.
	good := xyzFile(t, 250, 3)
	line := bytes.Count(good, []byte("\n")) + 1
	file := append(good, "three\nProperties=species:S:1:pos:R:3\nH 0 0 0\n"...)
	j := startImport(t, h, "default", "?name=bad.xyz", file)
	j = waitJob(t, h, "default", j.ID)
	if j.State != "failed" || !strings.Contains(j.Error, fmt.Sprintf("line %d:", line)) || !strings.Contains(j.Error, "bad.xyz") {
		t.Fatalf("malformed file: %+v", j)
	}
	if j.Committed != 0 || j.Frames != 250 {
		t.Fatalf("malformed file: %d frames parsed, %d committed", j.Frames, j.Committed)
	}
	t.Logf("error: %s", j.Error)
	after := roomInfo(t, h, "default")
	if after.Frames != before.Frames || after.Generation != before.Generation || len(after.Locks) != 0 {
		t.Fatalf("room changed: %d frames gen %d before, %d frames gen %d locks %v after", before.Frames, before.Generation, after.Frames, after.Generation, after.Locks)
	}

	// A frame the reader takes but the frame model refuses fails the same way.
	bad := []byte("1\nProperties=species:S:1:pos:R:3\nQq 0 0 0\n")
	j = waitJob(t, h, "default", startImport(t, h, "default", "", bad).ID)
	if j.State != "failed" || !strings.Contains(j.Error, "line 3") {
		t.Fatalf("unknown element: %+v", j)
	}
	// A file without frames fails too.
	j = waitJob(t, h, "default", startImport(t, h, "default", "", []byte("\n\n")).ID)
	if j.State != "failed" || !strings.Contains(j.Error, "no frames") {
		t.Fatalf("no frames: %+v", j)
	}
	if after := roomInfo(t, h, "default"); after.Generation != before.Generation {
		t.Fatalf("generation %d, want %d", after.Generation, before.Generation)
	}
}

func TestImportCommitsInBatches(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	c := h.Dial("viewer", "")
	join(t, c, "default")
	start := time.Now()
	j := startImport(t, h, "default", "", xyzFile(t, 350, 5))
	msgs := jobMessages(t, c, "default", j.ID)
	elapsed := time.Since(start)

	var phases []string
	for _, m := range msgs {
		if m.Phase != "" && !slices.Contains(phases, m.Phase) {
			phases = append(phases, m.Phase)
		}
		if m.Committed%100 != 0 && m.Committed != 350 {
			t.Errorf("progress reports %d frames committed: not whole batches", m.Committed)
		}
	}
	if !slices.Equal(phases, []string{"parsing", "committing"}) {
		t.Fatalf("phases %v", phases)
	}
	if end := msgs[len(msgs)-1]; end.State != "done" || end.Committed != 350 {
		t.Fatalf("end %+v", end)
	}
	// State changes plus at most 4 progress messages a second.
	if max := 6 + 4*int(elapsed/time.Second+1); len(msgs) > max {
		t.Errorf("%d job messages in %v, want at most %d", len(msgs), elapsed, max)
	}
	// One commit per batch of 100, each announced by a generation message;
	// the last batch of 50 by one frame_updated per frame.
	var lengths []int64
	for range 3 {
		m := c.Wait(func(m *wire.Msg) bool { return m.T == wire.MsgGeneration && m.State == wire.OpExtend }, 5*time.Second)
		lengths = append(lengths, *m.Frames)
	}
	if !slices.Equal(lengths, []int64{100, 200, 300}) {
		t.Fatalf("commits ended at lengths %v", lengths)
	}
	gen := int64(0)
	for i := range 50 {
		m := c.Wait(func(m *wire.Msg) bool { return m.T == wire.MsgFrameUpdated }, 5*time.Second)
		if *m.Index != int64(300+i) || *m.Frames != 350 || gen != 0 && m.Gen != gen {
			t.Fatalf("frame_updated %d: %+v", i, m)
		}
		gen = m.Gen
	}
	if info := roomInfo(t, h, "default"); info.Frames != 350 {
		t.Fatalf("%d frames", info.Frames)
	}
}

func TestImportRefusals(t *testing.T) {
	h, tok := authHub(t)
	file := xyzFile(t, 2, 3)
	for _, tc := range []struct {
		user string
		want int
	}{{"anon", 401}, {"dave", 403}, {"carol", 403}} {
		if code, body := h.Do("POST", "/api/rooms/lab/import", file, bearerHdr(tok[tc.user])...); code != tc.want {
			t.Errorf("import as %s: %d %s, want %d", tc.user, code, body, tc.want)
		}
	}
	// A writer imports; the job and the history name the user.
	j := startImport(t, h, "lab", "?name=x.xyz", file, bearerHdr(tok["bob"])...)
	if j.User != "bob" {
		t.Fatalf("job user %q", j.User)
	}
	if j = waitJob(t, h, "lab", j.ID, bearerHdr(tok["carol"])...); j.State != "done" {
		t.Fatalf("bob's import: %+v", j)
	}
	var hist struct{ History []wire.HistoryEntry }
	h.JSON("GET", "/api/rooms/lab/frames/-1/history", nil, &hist, bearerHdr(tok["carol"])...)
	if hist.History[0].Author != "bob" {
		t.Fatalf("author %q", hist.History[0].Author)
	}
	if code, _ := h.Do("GET", "/api/rooms/lab/jobs", nil, bearerHdr(tok["dave"])...); code != 403 {
		t.Fatalf("jobs as dave: %d", code)
	}

	// Bad requests.
	for _, tc := range []struct {
		query string
		body  []byte
		field string
	}{
		{"?append=0", file, "append"},
		{"?name=a%0Ab", file, "name"},
		{"", []byte{}, ""},
	} {
		var e map[string]any
		code := h.JSON("POST", "/api/rooms/lab/import"+tc.query, tc.body, &e, bearerHdr(tok["bob"])...)
		if code != 400 || e["code"] != "bad_input" || tc.field != "" && e["field"] != tc.field {
			t.Errorf("import%s: %d %v", tc.query, code, e)
		}
	}
}

func TestImportUploadLimit(t *testing.T) {
	h := relaytest.Start(t, relay.Options{MaxUpload: 4096})
	file := xyzFile(t, 40, 3)
	var e map[string]any
	if code := h.JSON("POST", "/api/rooms/default/import", file, &e); code != http.StatusRequestEntityTooLarge || e["code"] != "too_large" || !strings.Contains(e["message"].(string), "4096 bytes") {
		t.Fatalf("oversized import: %d %v", code, e)
	}
	// Without a length the hub counts while spooling.
	req, err := http.NewRequest("POST", h.URL+"/api/rooms/default/import", struct{ io.Reader }{bytes.NewReader(file)})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "upload limit of 4096 bytes") {
		t.Fatalf("chunked oversized import: %d %s", resp.StatusCode, body)
	}
	if s := spooled(t, h); len(s) != 0 {
		t.Fatalf("spooled files left: %v", s)
	}
	var list struct{ Jobs []wire.Job }
	if code := h.JSON("GET", "/api/rooms/default/jobs", nil, &list); code != 200 || len(list.Jobs) != 0 {
		t.Fatalf("jobs: %d %+v", code, list.Jobs)
	}
}

func TestImportWaitsForLock(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	a := h.Dial("alice", "Alice")
	join(t, a, "default")
	g := lock(t, a, "default", "trajectory", time.Minute)

	j := startImport(t, h, "default", "", xyzFile(t, 3, 3))
	waiting := a.Wait(func(m *wire.Msg) bool {
		return m.T == wire.MsgJob && m.Payload["state"] == "queued" && strings.Contains(fmt.Sprint(m.Payload["message"]), "held by alice")
	}, 10*time.Second)
	if w := jobOf(t, waiting); w.Frames != 3 || w.Committed != 0 || w.Phase != "committing" {
		t.Fatalf("waiting job %+v", w)
	}
	if info := roomInfo(t, h, "default"); info.Frames != 0 {
		t.Fatalf("%d frames while alice holds the lock", info.Frames)
	}
	if r := a.Request(&wire.Msg{T: wire.MsgUnlock, Room: "default", Target: "trajectory", Token: g.Token}); r.T != wire.MsgOK {
		t.Fatalf("unlock: %+v", r)
	}
	// The job takes the lock (members see it), commits, and lets it go.
	a.Wait(func(m *wire.Msg) bool {
		return m.T == wire.MsgLockState && m.State == "acquired" && m.Holder == "import:"+j.ID
	}, 10*time.Second)
	if j = waitJob(t, h, "default", j.ID); j.State != "done" || j.Committed != 3 {
		t.Fatalf("job %+v", j)
	}
	a.Wait(func(m *wire.Msg) bool {
		return m.T == wire.MsgLockState && m.State == "released" && m.Holder == "import:"+j.ID
	}, 10*time.Second)
	// The lock is free again.
	lock(t, a, "default", "trajectory", time.Minute)
}

// TestImportSlots checks that at most two jobs run at once: two jobs wait
// for locks held by alice, the third waits for a slot.
func TestImportSlots(t *testing.T) {
	h := relaytest.Start(t, relay.Options{})
	a := h.Dial("alice", "")
	rooms := []string{"r1", "r2", "r3"}
	tokens := map[string]int64{}
	for _, r := range rooms {
		if code, body := h.Do("POST", "/api/rooms", wire.CreateRoomRequest{Name: r}); code != 201 {
			t.Fatalf("create %s: %d %s", r, code, body)
		}
		join(t, a, r)
		tokens[r] = lock(t, a, r, "trajectory", time.Minute).Token
	}
	jobs := map[string]wire.Job{}
	for _, r := range rooms[:2] {
		jobs[r] = startImport(t, h, r, "", xyzFile(t, 2, 3))
		a.Wait(func(m *wire.Msg) bool {
			return m.T == wire.MsgJob && m.Room == r && strings.Contains(fmt.Sprint(m.Payload["message"]), "trajectory lock")
		}, 10*time.Second)
	}
	jobs["r3"] = startImport(t, h, "r3", "", xyzFile(t, 2, 3))
	a.Wait(func(m *wire.Msg) bool {
		return m.T == wire.MsgJob && m.Room == "r3" && strings.Contains(fmt.Sprint(m.Payload["message"]), "import slot")
	}, 10*time.Second)
	var j wire.Job
	h.JSON("GET", "/api/rooms/r3/jobs/"+jobs["r3"].ID, nil, &j)
	if j.State != "queued" || j.Phase != "" {
		t.Fatalf("third job %+v", j)
	}
	// Free r3 first: its job still waits for a slot until r1 finishes.
	for _, r := range []string{"r3", "r1", "r2"} {
		if m := a.Request(&wire.Msg{T: wire.MsgUnlock, Room: r, Target: "trajectory", Token: tokens[r]}); m.T != wire.MsgOK {
			t.Fatalf("unlock %s: %+v", r, m)
		}
	}
	for _, r := range rooms {
		if j := waitJob(t, h, r, jobs[r].ID); j.State != "done" {
			t.Fatalf("%s: %+v", r, j)
		}
	}
}

// syncBuffer is a log destination tests read while the hub writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestImportRoomDeleted(t *testing.T) {
	var logs syncBuffer
	h := relaytest.Start(t, relay.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if code, _ := h.Do("POST", "/api/rooms", wire.CreateRoomRequest{Name: "doomed"}); code != 201 {
		t.Fatal("create room")
	}
	a := h.Dial("alice", "")
	join(t, a, "doomed")
	lock(t, a, "doomed", "trajectory", time.Minute)
	j := startImport(t, h, "doomed", "", xyzFile(t, 3, 3))
	a.Wait(func(m *wire.Msg) bool {
		return m.T == wire.MsgJob && m.Payload["state"] == "queued" && m.Payload["phase"] == "committing"
	}, 10*time.Second)
	if code, _ := h.Do("DELETE", "/api/rooms/doomed", nil); code != 204 {
		t.Fatal("delete room")
	}
	waitFor(t, 10*time.Second, "the job to fail", func() bool {
		return strings.Contains(logs.String(), "job="+j.ID) && strings.Contains(logs.String(), `room \"doomed\" was deleted`)
	})
	waitFor(t, 5*time.Second, "the spooled file to go", func() bool { return len(spooled(t, h)) == 0 })
	// A new room of that name starts without the old room's jobs.
	if code, _ := h.Do("POST", "/api/rooms", wire.CreateRoomRequest{Name: "doomed"}); code != 201 {
		t.Fatal("create room again")
	}
	var list struct{ Jobs []wire.Job }
	if code := h.JSON("GET", "/api/rooms/doomed/jobs", nil, &list); code != 200 || len(list.Jobs) != 0 {
		t.Fatalf("jobs of the new room: %d %+v", code, list.Jobs)
	}
}

// TestImportHubClose closes the hub while one job waits for a lock and
// another commits: both stop, release their locks and remove their files,
// the committed frames are whole batches, and no goroutine is left
// (TestMain checks).
func TestImportHubClose(t *testing.T) {
	leases, err := lease.NewMemory(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { leases.Close() })
	// Batches of 10 frames (the limit of frames per request): many commits.
	limits := relay.Limits{FramesPerRequest: 10, ConnsPerAddr: 1 << 20, RequestsPerSecond: 1e9, Burst: 1 << 30}
	h := relaytest.Start(t, relay.Options{Leases: leases, Limits: limits})
	if code, _ := h.Do("POST", "/api/rooms", wire.CreateRoomRequest{Name: "big"}); code != 201 {
		t.Fatal("create room")
	}
	a := h.Dial("alice", "")
	join(t, a, "default")
	join(t, a, "big")
	lock(t, a, "default", "trajectory", time.Minute)
	waiting := startImport(t, h, "default", "", xyzFile(t, 3, 3))
	a.Wait(func(m *wire.Msg) bool {
		return m.T == wire.MsgJob && m.Payload["id"] == waiting.ID && m.Payload["state"] == "queued" && m.Payload["phase"] == "committing"
	}, 10*time.Second)

	const n = 500
	big := startImport(t, h, "big", "", xyzFile(t, n, 3))
	a.Wait(func(m *wire.Msg) bool {
		return m.T == wire.MsgLockState && m.Room == "big" && m.State == "acquired" && m.Holder == "import:"+big.ID
	}, 30*time.Second)
	h.Stop()

	if s := spooled(t, h); len(s) != 0 {
		t.Fatalf("spooled files left: %v", s)
	}
	for _, r := range []string{"default", "big"} {
		gs, err := leases.List(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gs {
			if strings.HasPrefix(g.Holder, "import:") {
				t.Errorf("room %s: lease %+v left after close", r, g)
			}
		}
	}
	h.Resume()
	got := roomInfo(t, h, "big").Frames
	t.Logf("%d of %d frames committed before the hub closed", got, n)
	if got%10 != 0 {
		t.Fatalf("%d frames committed: not whole batches", got)
	}
	if got := roomInfo(t, h, "default").Frames; got != 0 {
		t.Fatalf("the waiting job committed %d frames", got)
	}
}

// BenchmarkImport imports an extxyz file of 200 frames of 2,000 atoms
// (about 30 MB) and reports the rate from the upload to the job's end.
func BenchmarkImport(b *testing.B) {
	h := relaytest.Start(b, relay.Options{})
	file := xyzFile(b, 200, 2000)
	b.SetBytes(int64(len(file)))
	b.ResetTimer()
	for i := range b.N {
		room := fmt.Sprintf("bench%d", i)
		if code, _ := h.Do("POST", "/api/rooms", wire.CreateRoomRequest{Name: room}); code != 201 {
			b.Fatal("create room")
		}
		j := startImport(b, h, room, "", file)
		if j = waitJob(b, h, room, j.ID); j.State != "done" {
			b.Fatalf("import: %+v", j)
		}
	}
	b.ReportMetric(float64(200*b.N)/b.Elapsed().Seconds(), "frames/s")
}

// TestImportProgressAcrossHubs: with two hubs, the members of the hub
// that did not receive the file see the job's progress, and both hubs
// list the job and answer for it.
func TestImportProgressAcrossHubs(t *testing.T) {
	hs, _ := hubs(t, 2)
	a, b := hs[0], hs[1]
	cb := b.Dial("cb", "on b")
	join(t, cb, "default")
	file := xyzFile(t, 30, 4)
	j := startImport(t, a, "default", "?name=walk.xyz", file)
	msgs := jobMessages(t, cb, "default", j.ID)
	last := msgs[len(msgs)-1]
	if last.State != "done" || last.Committed != 30 || last.Name != "walk.xyz" {
		t.Fatalf("last job message on b: %+v", last)
	}
	if done := waitJob(t, b, "default", j.ID); done.State != "done" || done.Committed != 30 {
		t.Fatalf("job read through b: %+v", done)
	}
	for _, h := range []*relaytest.Hub{a, b} {
		var list struct {
			Jobs []wire.Job `json:"jobs"`
		}
		if code := h.JSON("GET", "/api/rooms/default/jobs", nil, &list); code != 200 || len(list.Jobs) != 1 || list.Jobs[0].ID != j.ID || list.Jobs[0].State != "done" {
			t.Fatalf("jobs listed: %d %+v", code, list.Jobs)
		}
	}
	if code, _ := b.Do("GET", "/api/rooms/default/jobs/nope", nil); code != 404 {
		t.Fatalf("unknown job through b: %d", code)
	}
	waitFor(t, 10*time.Second, "the frames on b", func() bool { return roomInfo(t, b, "default").Frames == 30 })
}
