package relay

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Compacting the document streams, so Redis holds about one saved
// document and at most trimAbove entries per room and document instead of
// every change ever made.
//
// Every trimCheckEvery each hub looks at the length of its rooms' streams.
// For one longer than trimAbove it reads the stream to its end (position
// P), saves its replica of the document (which has every change up to P,
// and maybe more), and runs scriptCompact: only if P is still the stream's
// last entry does it append an entry {snap: saved document, upto: P} and
// trim every entry before it. So the stream's first entry always holds
// everything before it and no reader meets a change whose dependencies
// were trimmed. If another hub appended meanwhile, nothing happens and the
// stream is compacted on a later look. Hubs apply a snapshot entry like
// any other (hubSync.apply): one already at or past upto skips it, one
// that is behind (or new) merges it with its replica and goes on from
// there. Hubs compacting at once do not conflict: only the first one's
// script finds its position at the end.

// Variables so tests can lower them (export_test.go); not changed while
// hubs run.
var (
	// trimCheckEvery is how often a hub looks at its streams' lengths.
	trimCheckEvery = 10 * time.Second
	// trimAbove is the stream length above which a stream is compacted.
	trimAbove int64 = 1000
)

// scriptCompact: KEYS stream; ARGV last ID, hub, saved document. Replies
// the snapshot entry's ID, or "" if the stream's last entry is not the
// given one.
var scriptCompact = redis.NewScript(`
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 or last[1][1] ~= ARGV[1] then return '' end
local id = redis.call('XADD', KEYS[1], '*', 'hub', ARGV[2], 'snap', ARGV[3], 'upto', ARGV[1])
redis.call('XTRIM', KEYS[1], 'MINID', id)
return id
`)

// trim compacts the streams of this hub's rooms that are longer than
// trimAbove.
func (h *hubSync) trim(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	type stream struct {
		r   *room
		doc int
		n   *redis.IntCmd
	}
	var ss []stream
	pipe := h.rdb.Pipeline()
	for _, r := range h.syncedRooms() {
		for doc := range 2 {
			ss = append(ss, stream{r, doc, pipe.XLen(ctx, h.docKey(r.name, r.sync.inc, doc))})
		}
	}
	if len(ss) == 0 {
		return
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return // Redis away: the loop says so
	}
	for _, s := range ss {
		if s.n.Val() <= trimAbove || s.r.isDeleted() {
			continue
		}
		ok, err := h.compact(ctx, s.r, s.doc)
		switch {
		case err != nil:
			h.log.Warn("compact a document stream", "room", s.r.name, "doc", docNames[s.doc], "err", err)
		case ok:
			h.log.Debug("compacted a document stream", "room", s.r.name, "doc", docNames[s.doc], "entries", s.n.Val())
		}
	}
}

// compact replaces the entries of a room's document stream by one holding
// the whole document, if no other hub appends meanwhile.
func (h *hubSync) compact(ctx context.Context, r *room, doc int) (bool, error) {
	for {
		n, err := h.pull(ctx, r, doc)
		if err != nil {
			return false, err
		}
		if n < hubsReadCount {
			break
		}
	}
	rs := r.sync
	d := r.traj.Doc()
	if doc == docState {
		d = r.state.Doc()
	}
	rs.mu.Lock()
	last, inc := rs.last[doc], rs.inc
	var snap []byte
	if last != "" {
		snap = d.Save()
	}
	rs.mu.Unlock()
	if last == "" {
		return false, nil
	}
	id, err := scriptCompact.Run(ctx, h.rdb, []string{h.docKey(r.name, inc, doc)}, last, h.s.hubID, snap).Text()
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	return id != "", err
}
