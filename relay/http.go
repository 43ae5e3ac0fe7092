package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/vmihailenco/msgpack/v5"

	"framesync"
	"framesync/blobstore"
	"framesync/relay/wire"
)

// maxJSONFrameBytes is the largest frame (msgpack size) served as JSON;
// larger frames are refused with 413 and a hint to ask for msgpack.
const maxJSONFrameBytes = 8 << 20

// Handler returns the hub's HTTP handler: the data channel under /api, the
// control channel at /api/ws, and /healthz, /readyz, /metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/ws", s.handleWS)
	mux.HandleFunc("GET /api/rooms", s.api(s.handleListRooms))
	mux.HandleFunc("POST /api/rooms", s.api(s.loggedIn(s.handleCreateRoom)))
	mux.HandleFunc("GET /api/rooms/{room}", s.api(s.need(RoleReader, s.handleRoomInfo)))
	mux.HandleFunc("DELETE /api/rooms/{room}", s.api(s.need(RoleAdmin, s.handleDeleteRoom)))
	mux.HandleFunc("GET /api/rooms/{room}/acl", s.api(s.need(RoleAdmin, s.handleGetACL)))
	mux.HandleFunc("PUT /api/rooms/{room}/acl", s.api(s.need(RoleAdmin, s.handlePutACL)))
	mux.HandleFunc("GET /api/rooms/{room}/frames", s.api(s.need(RoleReader, s.handleFrameRange)))
	mux.HandleFunc("GET /api/rooms/{room}/frames/{ref}", s.api(s.need(RoleReader, s.handleFrame)))
	mux.HandleFunc("PUT /api/rooms/{room}/frames/{ref}", s.api(s.need(RoleWriter, s.handlePutFrame)))
	mux.HandleFunc("GET /api/rooms/{room}/frames/{ref}/manifest", s.api(s.need(RoleReader, s.handleManifest)))
	mux.HandleFunc("GET /api/rooms/{room}/frames/{ref}/history", s.api(s.need(RoleReader, s.handleHistory)))
	mux.HandleFunc("POST /api/rooms/{room}/commit", s.api(s.need(RoleWriter, s.handleCommit)))
	mux.HandleFunc("GET /api/rooms/{room}/changes", s.api(s.need(RoleReader, s.handleChanges)))
	mux.HandleFunc("GET /api/rooms/{room}/docs/{doc}", s.api(s.need(RoleReader, s.handleSnapshot)))
	mux.HandleFunc("POST /api/rooms/{room}/import", s.api(s.need(RoleWriter, s.handleImport)))
	mux.HandleFunc("GET /api/rooms/{room}/jobs", s.api(s.need(RoleReader, s.handleJobs)))
	mux.HandleFunc("GET /api/rooms/{room}/jobs/{id}", s.api(s.need(RoleReader, s.handleJob)))
	mux.HandleFunc("GET /api/blobs/{hash}", s.api(s.readableBlob(s.handleGetBlob)))
	mux.HandleFunc("HEAD /api/blobs/{hash}", s.api(s.readableBlob(s.handleGetBlob)))
	mux.HandleFunc("PUT /api/blobs/{hash}", s.api(s.loggedIn(s.handlePutBlob)))
	mux.HandleFunc("POST /api/blobs/missing", s.api(s.loggedIn(s.handleMissing)))
	mux.HandleFunc("POST /api/blobs", s.api(s.loggedIn(s.handlePostBlobs)))
	mux.HandleFunc("POST /api/auth/login", s.api(s.handleLogin))
	mux.HandleFunc("POST /api/auth/register", s.api(s.handleRegister))
	mux.HandleFunc("POST /api/auth/refresh", s.api(s.loggedIn(s.handleRefresh)))
	mux.HandleFunc("POST /api/auth/logout", s.api(s.loggedIn(s.handleLogout)))
	mux.HandleFunc("GET /api/auth/me", s.api(s.handleMe))
	mux.HandleFunc("POST /api/users", s.api(s.hubAdmin(s.handleCreateUser)))
	mux.HandleFunc("DELETE /api/users/{user}", s.api(s.hubAdmin(s.handleDeleteUser)))
	noRoute := func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &framesync.Error{Kind: framesync.NotFound, Msg: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)})
	}
	if s.opts.UI != nil {
		// The UI owns every other GET (package web decides its pages), so
		// a new page needs no route here; the API keeps its JSON errors.
		mux.Handle("GET /", s.opts.UI)
		mux.HandleFunc("GET /api/", noRoute)
	}
	mux.HandleFunc("/", noRoute)
	return s.metrics.instrument(mux, s.withPrincipal(mux))
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		s.writeError(w, r, &framesync.Error{Kind: framesync.Unavailable, Msg: "hub shutting down"})
		return
	}
	if p, ok := s.leases.(interface{ Ping(context.Context) error }); ok {
		if err := p.Ping(r.Context()); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	io.WriteString(w, "ready\n")
}

// kindOf returns the Kind of err, also for error types that only report
// their kind through Is.
func kindOf(err error) framesync.Kind {
	if k := framesync.KindOf(err); k != framesync.Internal {
		return k
	}
	for _, k := range []framesync.Kind{framesync.Locked, framesync.Conflict, framesync.NotFound, framesync.BadInput, framesync.PreconditionFailed, framesync.PreconditionRequired, framesync.TooLarge, framesync.Corrupt} {
		if errors.Is(err, k) {
			return k
		}
	}
	return framesync.Internal
}

// errorBody is the JSON body of every error response, and the fields of a
// control channel "error" message.
func errorBody(err error) (framesync.Kind, map[string]any) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = &framesync.Error{Kind: framesync.TooLarge, Msg: fmt.Sprintf("request body over the limit of %d bytes", mbe.Limit)}
	}
	k := kindOf(err)
	body := map[string]any{"code": k.Code(), "message": err.Error()}
	if k == framesync.Internal {
		body["message"] = "internal error (see the hub log)"
	}
	var fe *framesync.Error
	if errors.As(err, &fe) && fe.Field != "" {
		body["field"] = fe.Field
	}
	var ce *conflictError
	if errors.As(err, &ce) {
		for k, v := range ce.details() {
			body[k] = v
		}
	}
	for k, v := range heldDetails(err) {
		body[k] = v
	}
	return k, body
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	k, body := errorBody(err)
	if k == framesync.Internal {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Content-Type", wire.ContentJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(k.HTTPStatus())
	json.NewEncoder(w).Encode(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", wire.ContentJSON)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// wantsJSON reports whether the client asked for JSON (?format=json or an
// Accept header preferring it) rather than msgpack.
func wantsJSON(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "json":
		return true
	case "msgpack":
		return false
	}
	acc := r.Header.Get("Accept")
	return strings.Contains(acc, wire.ContentJSON) && !strings.Contains(acc, "msgpack")
}

// isMsgpackBody reports whether the request body is msgpack (by its
// Content-Type; JSON otherwise).
func isMsgpackBody(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return strings.Contains(mt, "msgpack")
}

// decodeBody decodes a JSON or msgpack request body into v, bounded by limit.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body := http.MaxBytesReader(w, r.Body, limit)
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	if isMsgpackBody(r) {
		if err = wire.CheckMsgpack(b); err == nil {
			err = msgpack.Unmarshal(b, v)
		}
	} else {
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		err = dec.Decode(v)
	}
	if err != nil {
		return &framesync.Error{Kind: framesync.BadInput, Op: "decode request", Msg: err.Error()}
	}
	return nil
}

func queryInt(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, badInput("query", name, fmt.Sprintf("%q is not an integer", v))
	}
	return n, nil
}

func (s *Server) handleListRooms(w http.ResponseWriter, r *http.Request) error {
	since, err := queryInt(r, "since", -1)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.listRooms(since, who(r.Context())))
	return nil
}

func (s *Server) handleCreateRoom(w http.ResponseWriter, r *http.Request) error {
	var req wire.CreateRoomRequest
	if err := decodeBody(w, r, 1<<16, &req); err != nil {
		return err
	}
	p := who(r.Context())
	if req.From != "" {
		src, err := s.room(req.From)
		if err != nil {
			return err
		}
		if err := s.allow(p, src, RoleReader, "copy room"); err != nil {
			return err
		}
	}
	rm, err := s.createRoom(req.Name, req.From, p.user)
	if err != nil {
		return err
	}
	s.log.Info("room created", "room", req.Name, "from", req.From)
	info, err := rm.info()
	if err != nil {
		return err
	}
	info.Role = s.roleIn(p, rm)
	writeJSON(w, http.StatusCreated, info)
	return nil
}

func (s *Server) handleRoomInfo(w http.ResponseWriter, r *http.Request) error {
	rm, err := s.room(r.PathValue("room"))
	if err != nil {
		return err
	}
	info, err := rm.info()
	if err != nil {
		return err
	}
	info.Role = s.roleIn(who(r.Context()), rm)
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) handleDeleteRoom(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("room")
	if err := s.deleteRoom(name); err != nil {
		return err
	}
	s.log.Info("room deleted", "room", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// frameSelection parses ?data=.
func frameSelection(r *http.Request) ([]string, error) {
	v := r.URL.Query().Get("data")
	if v == "" {
		return nil, nil
	}
	return framesync.ParseFieldList(v)
}

// entryAt resolves {ref} and ?version= to the hash to serve.
func (s *Server) frameHash(r *http.Request) (*room, wire.FrameRef, error) {
	rm, err := s.room(r.PathValue("room"))
	if err != nil {
		return nil, wire.FrameRef{}, err
	}
	e, i, err := rm.resolveFrame(r.PathValue("ref"))
	if err != nil {
		return nil, wire.FrameRef{}, err
	}
	ref := wire.FrameRef{ID: e.ID, Index: i, Version: e.Version, Hash: e.Hash.String()}
	v, err := queryInt(r, "version", 0)
	if err != nil || v == 0 || v == e.Version {
		return rm, ref, err
	}
	hist, err := rm.traj.History(e.ID)
	if err != nil {
		return nil, wire.FrameRef{}, err
	}
	for _, h := range hist {
		if h.Version == v {
			ref.Version, ref.Hash = v, h.Hash.String()
			return rm, ref, nil
		}
	}
	return nil, wire.FrameRef{}, &framesync.Error{Kind: framesync.NotFound, Op: "frame", Field: "version", Msg: fmt.Sprintf("frame %s has no version %d", e.ID, v)}
}

func setFrameHeaders(w http.ResponseWriter, ref wire.FrameRef) {
	w.Header().Set("X-Frame-Id", ref.ID)
	w.Header().Set("X-Frame-Index", strconv.Itoa(ref.Index))
	w.Header().Set("X-Frame-Version", strconv.FormatInt(ref.Version, 10))
	w.Header().Set("X-Frame-Hash", ref.Hash)
}

func (s *Server) handleFrame(w http.ResponseWriter, r *http.Request) error {
	_, ref, err := s.frameHash(r)
	if err != nil {
		return err
	}
	sel, err := frameSelection(r)
	if err != nil {
		return err
	}
	h := framesync.MustParseHash(ref.Hash)
	setFrameHeaders(w, ref)
	// A frame version never changes: its hash plus the selection is a
	// strong validator.
	etag := `"` + h.Hex() + "-" + strings.Join(sel, ",") + `"`
	if wantsJSON(r) {
		etag = `"` + h.Hex() + "-" + strings.Join(sel, ",") + `-json"`
	}
	w.Header().Set("ETag", etag)
	if match := r.Header.Get("If-None-Match"); match != "" && match == etag {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if wantsJSON(r) {
		s.writeFrameJSON(w, r, h, sel)
		return nil
	}
	f, err := s.encodeFrame(r.Context(), h, sel)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", wire.ContentMsgpack)
	w.Header().Set("Content-Length", strconv.Itoa(f.size))
	if f.writeTo(w) == nil {
		s.metrics.blobBytesOut.Add(float64(f.size))
	}
	return nil
}

func (s *Server) writeFrameJSON(w http.ResponseWriter, r *http.Request, h framesync.Hash, sel []string) {
	m, err := s.manifest(r.Context(), h)
	if err == nil && len(sel) > 0 {
		m, err = m.Select(sel...)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	size := int64(0)
	for _, fh := range m {
		if info, err := s.blobs.Stat(r.Context(), fh); err == nil {
			size += info.Size
		}
	}
	if size > maxJSONFrameBytes {
		s.writeError(w, r, &framesync.Error{Kind: framesync.TooLarge, Op: "frame as JSON", Msg: fmt.Sprintf("frame is %d bytes; JSON is served for frames up to %d bytes: ask for msgpack or select fewer fields with ?data=", size, maxJSONFrameBytes)})
		return
	}
	f, err := framesync.JoinFrame(m, func(fh framesync.Hash) ([]byte, error) { return s.blob(r.Context(), fh) })
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	j, err := frameJSON(f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

// handleFrameRange serves frames [start, stop) as one msgpack array (or a
// JSON array when asked).
func (s *Server) handleFrameRange(w http.ResponseWriter, r *http.Request) error {
	rm, err := s.room(r.PathValue("room"))
	if err != nil {
		return err
	}
	sel, err := frameSelection(r)
	if err != nil {
		return err
	}
	n, _ := rm.traj.Len()
	start, err := queryInt(r, "start", 0)
	if err != nil {
		return err
	}
	stop, err := queryInt(r, "stop", int64(n))
	if err != nil {
		return err
	}
	if start < 0 {
		start += int64(n)
	}
	if stop < 0 {
		stop += int64(n)
	}
	start, stop = max(0, min(start, int64(n))), max(0, min(stop, int64(n)))
	if stop < start {
		stop = start
	}
	if limit := int64(s.opts.Limits.FramesPerRequest); stop-start > limit {
		return &framesync.Error{Kind: framesync.TooLarge, Op: "frame range", Msg: fmt.Sprintf("%d frames asked for; the limit of frames per request is %d", stop-start, limit)}
	}
	entries, err := rm.traj.Entries()
	if err != nil {
		return err
	}
	if stop > int64(len(entries)) { // frames deleted since Len
		stop = int64(len(entries))
		start = min(start, stop)
	}
	entries = entries[start:stop]
	w.Header().Set("X-Frame-Start", strconv.FormatInt(start, 10))
	w.Header().Set("X-Frame-Count", strconv.Itoa(len(entries)))
	if wantsJSON(r) {
		out := make([]map[string]any, 0, len(entries))
		total := int64(0)
		for _, e := range entries {
			f, err := s.loadFrame(r.Context(), e.Hash, false)
			if err == nil && len(sel) > 0 {
				f, err = f.Select(sel...)
			}
			if err != nil {
				return err
			}
			for _, name := range f.Fields() {
				if v, ok := f.Field(name); ok {
					if a, ok := v.(*framesync.Array); ok {
						total += int64(len(a.Data))
					}
				}
			}
			if total > maxJSONFrameBytes {
				return &framesync.Error{Kind: framesync.TooLarge, Op: "frames as JSON", Msg: fmt.Sprintf("range is over %d bytes: ask for msgpack, fewer frames or fewer fields", maxJSONFrameBytes)}
			}
			j, err := frameJSON(f)
			if err != nil {
				return err
			}
			out = append(out, j)
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	// Assemble the first frame before answering, so that a bad request gets
	// an error status; later failures cut the response short.
	var hdr bytes.Buffer
	msgpack.NewEncoder(&hdr).EncodeArrayLen(len(entries))
	w.Header().Set("Content-Type", wire.ContentMsgpack)
	for i, e := range entries {
		f, err := s.encodeFrame(r.Context(), e.Hash, sel)
		if err != nil {
			if i == 0 {
				return err
			}
			s.log.Error("frame range cut short", "room", rm.name, "frame", e.ID, "err", err)
			panic(http.ErrAbortHandler)
		}
		if i == 0 {
			if _, err := w.Write(hdr.Bytes()); err != nil {
				return nil
			}
		}
		if f.writeTo(w) != nil {
			return nil // the client went away
		}
		s.metrics.blobBytesOut.Add(float64(f.size))
	}
	if len(entries) == 0 {
		w.Write(hdr.Bytes())
	}
	return nil
}

func (s *Server) handleManifest(w http.ResponseWriter, r *http.Request) error {
	_, ref, err := s.frameHash(r)
	if err != nil {
		return err
	}
	m, err := s.manifest(r.Context(), framesync.MustParseHash(ref.Hash))
	if err != nil {
		return err
	}
	setFrameHeaders(w, ref)
	fields := make(map[string]string, len(m))
	for k, v := range m {
		fields[k] = v.String()
	}
	out := map[string]any{"id": ref.ID, "index": ref.Index, "version": ref.Version, "hash": ref.Hash, "fields": fields}
	if wantsJSON(r) || r.URL.Query().Get("format") == "" && !strings.Contains(r.Header.Get("Accept"), "msgpack") {
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	b, _ := msgpack.Marshal(out)
	w.Header().Set("Content-Type", wire.ContentMsgpack)
	w.Write(b)
	return nil
}

func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) error {
	rm, err := s.room(r.PathValue("room"))
	if err != nil {
		return err
	}
	e, i, err := rm.resolveFrame(r.PathValue("ref"))
	if err != nil {
		return err
	}
	hist, err := rm.traj.History(e.ID)
	if err != nil {
		return err
	}
	out := make([]wire.HistoryEntry, len(hist))
	for j, h := range hist {
		out[j] = wire.HistoryEntry{Version: h.Version, Hash: h.Hash.String(), Time: h.Time, Author: h.Author}
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": e.ID, "index": i, "version": e.Version, "history": out})
	return nil
}

func (s *Server) handleCommit(w http.ResponseWriter, r *http.Request) error {
	rm, err := s.room(r.PathValue("room"))
	if err != nil {
		return err
	}
	var req wire.CommitRequest
	if err := decodeBody(w, r, s.opts.MaxUpload, &req); err != nil {
		return err
	}
	res, err := s.commit(r.Context(), rm, &req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// handlePutFrame replaces a frame with the msgpack frame in the body:
// ?base=<version>&token=<fencing token>.
func (s *Server) handlePutFrame(w http.ResponseWriter, r *http.Request) error {
	rm, err := s.room(r.PathValue("room"))
	if err != nil {
		return err
	}
	req := wire.CommitRequest{Op: wire.OpReplace, Frame: r.PathValue("ref"), Target: r.URL.Query().Get("target")}
	if req.Token, err = queryInt(r, "token", 0); err != nil {
		return err
	}
	if r.URL.Query().Has("base") {
		b, err := queryInt(r, "base", 0)
		if err != nil {
			return err
		}
		req.Base = &b
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxUpload))
	if err != nil {
		return err
	}
	req.Frames = []msgpack.RawMessage{body}
	res, err := s.commit(r.Context(), rm, &req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) handleChanges(w http.ResponseWriter, r *http.Request) error {
	rm, err := s.room(r.PathValue("room"))
	if err != nil {
		return err
	}
	since, err := queryInt(r, "since", -1)
	if err != nil {
		return err
	}
	feed, err := rm.changes(since)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, feed)
	return nil
}

func (s *Server) handleSnapshot(w http.ResponseWriter, r *http.Request) error {
	rm, err := s.room(r.PathValue("room"))
	if err != nil {
		return err
	}
	var b []byte
	var heads string
	switch r.PathValue("doc") {
	case wire.DocTrajectory:
		b, heads = rm.traj.Save(), rm.traj.Heads().String()
	case wire.DocState:
		b, heads = rm.state.Save(), rm.state.Heads().String()
	default:
		return badInput("snapshot", "doc", fmt.Sprintf("unknown document %q: trajectory or state", r.PathValue("doc")))
	}
	w.Header().Set("Content-Type", wire.ContentAM)
	w.Header().Set("X-Automerge-Heads", heads)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
	return nil
}

func parseHashParam(r *http.Request) (framesync.Hash, error) {
	h, err := framesync.ParseHash(r.PathValue("hash"))
	if err != nil {
		return h, wrapField(err, "hash")
	}
	return h, nil
}

// streamVerifiedLimit is the largest blob read whole and verified before
// it is sent. Larger blobs stream; if their bytes turn out corrupt at the
// end, the response is cut short so the client never takes them for whole.
const streamVerifiedLimit = 64 << 20

func (s *Server) handleGetBlob(w http.ResponseWriter, r *http.Request) error {
	h, err := parseHashParam(r)
	if err != nil {
		return err
	}
	etag := `"` + h.Hex() + `"`
	info, err := s.blobs.Stat(r.Context(), h)
	if err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("ETag", etag)
	hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	hd.Set("Content-Type", "application/octet-stream")
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	hd.Set("Content-Length", strconv.FormatInt(info.Size, 10))
	if r.Method == http.MethodHead {
		return nil
	}
	if info.Size <= streamVerifiedLimit {
		b, err := s.blob(r.Context(), h)
		if err != nil {
			hd.Del("Content-Length")
			hd.Del("ETag")
			hd.Del("Cache-Control")
			return err
		}
		w.Write(b)
		s.metrics.blobBytesOut.Add(float64(len(b)))
		return nil
	}
	rc, _, err := s.blobs.Get(r.Context(), h)
	if err != nil {
		hd.Del("Content-Length")
		return err
	}
	defer rc.Close()
	n, err := io.Copy(w, rc)
	s.metrics.blobBytesOut.Add(float64(n))
	if err != nil {
		s.log.Error("blob read failed mid-stream", "blob", h, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

func (s *Server) handlePutBlob(w http.ResponseWriter, r *http.Request) error {
	h, err := parseHashParam(r)
	if err != nil {
		return err
	}
	if r.ContentLength > s.opts.MaxUpload {
		return &framesync.Error{Kind: framesync.TooLarge, Op: "put blob", Msg: fmt.Sprintf("%d bytes is over the upload limit of %d bytes", r.ContentLength, s.opts.MaxUpload)}
	}
	if info, err := s.blobs.Stat(r.Context(), h); err == nil {
		// Idempotent: drain nothing, the client may stop sending.
		writeJSON(w, http.StatusOK, wire.BlobPut{Hash: h.String(), Size: info.Size})
		return nil
	}
	body := http.MaxBytesReader(w, r.Body, s.opts.MaxUpload)
	info, err := s.blobs.Put(r.Context(), body, h)
	if err != nil {
		return err
	}
	s.metrics.blobBytesIn.Add(float64(info.Size))
	writeJSON(w, http.StatusCreated, wire.BlobPut{Hash: h.String(), Size: info.Size, Created: true})
	return nil
}

// maxBatchBlobs is the most blobs one POST /api/blobs may carry.
const maxBatchBlobs = 100000

// handlePostBlobs stores many blobs from one request (wire.ContentBlobs)
// and makes them durable together: one filesystem barrier instead of one
// per blob, which is what makes uploads of many small blobs fast. Each blob
// is named by the hash of its bytes; the answer lists them in order.
func (s *Server) handlePostBlobs(w http.ResponseWriter, r *http.Request) error {
	const op = "put blobs"
	if ct := r.Header.Get("Content-Type"); ct != wire.ContentBlobs {
		return &framesync.Error{Kind: framesync.BadInput, Op: op, Msg: fmt.Sprintf("content type %q: want %s (blobs each prefixed by a 4-byte big-endian length)", ct, wire.ContentBlobs)}
	}
	body := http.MaxBytesReader(w, r.Body, s.opts.MaxUpload)
	put := s.blobs.Put
	batch, _ := s.blobs.(blobstore.Batcher)
	if batch != nil {
		put = batch.PutUnsynced
	}
	out := wire.BlobsPut{Blobs: []wire.BlobRef{}}
	var hs []framesync.Hash
	var size [4]byte
	for i := 0; ; i++ {
		if _, err := io.ReadFull(body, size[:]); err == io.EOF {
			break
		} else if err != nil {
			return wrapBody(op, i, err)
		}
		if i == maxBatchBlobs {
			return &framesync.Error{Kind: framesync.TooLarge, Op: op, Msg: fmt.Sprintf("more than %d blobs in one request", maxBatchBlobs)}
		}
		n := int64(binary.BigEndian.Uint32(size[:]))
		er := &exactReader{r: body, n: n}
		info, err := put(r.Context(), er, framesync.Hash{})
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return &framesync.Error{Kind: framesync.BadInput, Op: op, Msg: fmt.Sprintf("blob %d: the body ends after %d of its %d bytes", i, n-er.n, n)}
		}
		if err != nil {
			return wrapBody(op, i, err)
		}
		hs = append(hs, info.Hash)
		s.metrics.blobBytesIn.Add(float64(n))
		out.Blobs = append(out.Blobs, wire.BlobRef{Hash: info.Hash.String(), Size: n})
	}
	if batch != nil {
		if err := batch.Sync(r.Context(), hs); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// exactReader reads exactly n bytes of r: an end of r before them is
// io.ErrUnexpectedEOF, so a blob cut short is never stored.
type exactReader struct {
	r io.Reader
	n int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.n {
		p = p[:e.n]
	}
	k, err := e.r.Read(p)
	e.n -= int64(k)
	if err == io.EOF && e.n > 0 {
		err = io.ErrUnexpectedEOF
	} else if err == io.EOF {
		err = nil
	}
	return k, err
}

// wrapBody names the blob a body error happened at.
func wrapBody(op string, i int, err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || errors.Is(err, framesync.TooLarge) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &framesync.Error{Kind: framesync.BadInput, Op: op, Msg: fmt.Sprintf("blob %d: the body ends inside its length prefix", i)}
	}
	return fmt.Errorf("%s: blob %d: %w", op, i, err)
}

// maxMissing is the most hashes one missing-blobs request may ask about.
const maxMissing = 100000

func (s *Server) handleMissing(w http.ResponseWriter, r *http.Request) error {
	var req wire.MissingRequest
	if err := decodeBody(w, r, 16<<20, &req); err != nil {
		return err
	}
	if len(req.Hashes) > maxMissing {
		return &framesync.Error{Kind: framesync.TooLarge, Op: "missing blobs", Msg: fmt.Sprintf("%d hashes; at most %d per request", len(req.Hashes), maxMissing)}
	}
	missing := []string{}
	for i, hs := range req.Hashes {
		h, err := framesync.ParseHash(hs)
		if err != nil {
			return wrapField(err, fmt.Sprintf("hashes[%d]", i))
		}
		ok, err := blobstore.Has(r.Context(), s.blobs, h)
		if err != nil {
			return err
		}
		if !ok {
			missing = append(missing, h.String())
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"missing": missing})
	return nil
}

// api adapts a handler that returns its error to http.HandlerFunc; the
// error is written as the JSON error response.
func (s *Server) api(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}
}
