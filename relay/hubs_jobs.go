package relay

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"framesync"
	"framesync/relay/wire"
)

// Import jobs across hubs. A job runs on the hub that received the file;
// every update it sends to its own members (importer.update) is also
// written to the hash P room:R:jobs:I (job ID -> wire.Job JSON; it expires
// jobsKeep after its last write) and published on the channel P jobs, so
// members of every hub see the progress and GET .../jobs on any hub lists
// the jobs of every hub. Progress is best effort: with Redis away the
// job runs on and only its own hub's members hear of it. A job whose hub
// died is listed in the state it was last published in until the list
// expires.

const (
	// jobsKeep is how long a room's job list stays in Redis after its
	// last update.
	jobsKeep = 24 * time.Hour
	// jobsBackoff is how long progress updates are not published after a
	// publish failed.
	jobsBackoff = 5 * time.Second
)

// jobNote is a message on P jobs.
type jobNote struct {
	Hub string   `json:"hub"`
	Inc string   `json:"inc"`
	Job wire.Job `json:"job"`
}

func (h *hubSync) jobsKey(room, inc string) string { return h.key("room", room, "jobs", inc) }

// publishJob records and announces an update of a job of room r. Progress
// updates (not force) are skipped for a while after a publish failed, so
// an unreachable Redis does not slow the import down; new states are
// always tried, also while the hub shuts down (a stopped job's last
// state).
func (h *hubSync) publishJob(r *room, w wire.Job, force bool) {
	if failed := h.jobsFailed.Load(); !force && failed != 0 && time.Since(time.Unix(0, failed)) < jobsBackoff {
		return
	}
	inc := r.sync.inc
	jb, _ := json.Marshal(w)
	nb, _ := json.Marshal(jobNote{Hub: h.s.hubID, Inc: inc, Job: w})
	ctx, cancel := context.WithTimeout(context.WithoutCancel(h.s.ctx), time.Second)
	defer cancel()
	pipe := h.rdb.TxPipeline()
	key := h.jobsKey(r.name, inc)
	pipe.HSet(ctx, key, w.ID, jb)
	pipe.Expire(ctx, key, jobsKeep)
	pipe.Publish(ctx, h.key("jobs"), nb)
	if _, err := pipe.Exec(ctx); err != nil {
		h.jobsFailed.Store(time.Now().UnixNano())
		h.log.Debug("publish import job progress", "room", r.name, "job", w.ID, "err", err)
		return
	}
	h.jobsFailed.Store(0)
}

// subscribeJobs subscribes to P jobs, waiting for Redis to confirm, so
// that no update published after it returns is missed.
func (h *hubSync) subscribeJobs(ctx context.Context) (*redis.PubSub, error) {
	ps := h.rdb.Subscribe(ctx, h.key("jobs"))
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		return nil, fmt.Errorf("relay: subscribe to import jobs in redis: %w", err)
	}
	return ps, nil
}

// jobsLoop passes other hubs' job updates to this hub's members until ctx
// ends. It resubscribes by itself after Redis was away (go-redis does).
func (h *hubSync) jobsLoop(ctx context.Context) {
	ps := h.jobsSub
	defer ps.Close()
	ch := ps.Channel(redis.WithChannelHealthCheckInterval(time.Second))
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			var n jobNote
			if json.Unmarshal([]byte(m.Payload), &n) != nil || n.Hub == h.s.hubID {
				continue
			}
			r := h.roomAt(n.Job.Room, n.Inc)
			if r == nil {
				continue
			}
			h.s.broadcast(r, &wire.Msg{T: wire.MsgJob, Room: r.name, Payload: jobPayload(n.Job)}, nil)
		}
	}
}

// jobs returns the jobs of room r that Redis knows of (every hub's),
// newest first, with this hub's own (local, the freshest) in place of
// theirs.
func (h *hubSync) jobs(ctx context.Context, r *room, local []wire.Job) ([]wire.Job, error) {
	ctx, cancel := h.opCtx(ctx)
	defer cancel()
	all, err := h.rdb.HGetAll(ctx, h.jobsKey(r.name, r.sync.inc)).Result()
	if err != nil {
		return nil, &framesync.Error{Kind: framesync.Unavailable, Op: "jobs", Msg: "redis is unreachable: the other hubs' jobs cannot be listed", Err: err}
	}
	byID := map[string]wire.Job{}
	for _, v := range all {
		var j wire.Job
		if json.Unmarshal([]byte(v), &j) == nil && j.ID != "" {
			byID[j.ID] = j
		}
	}
	for _, j := range local {
		byID[j.ID] = j
	}
	out := make([]wire.Job, 0, len(byID))
	for _, j := range byID {
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b wire.Job) int { return cmp.Or(b.Created.Compare(a.Created), cmp.Compare(b.ID, a.ID)) })
	if len(out) > importKeep {
		out = out[:importKeep]
	}
	return out, nil
}

// job returns job id of room r from Redis.
func (h *hubSync) job(ctx context.Context, r *room, id string) (wire.Job, error) {
	ctx, cancel := h.opCtx(ctx)
	defer cancel()
	v, err := h.rdb.HGet(ctx, h.jobsKey(r.name, r.sync.inc), id).Result()
	if errors.Is(err, redis.Nil) {
		return wire.Job{}, &framesync.Error{Kind: framesync.NotFound, Op: "job", Msg: fmt.Sprintf("room %q has no job %q", r.name, id)}
	}
	if err != nil {
		return wire.Job{}, &framesync.Error{Kind: framesync.Unavailable, Op: "job", Msg: "redis is unreachable: jobs of other hubs cannot be read", Err: err}
	}
	var j wire.Job
	if err := json.Unmarshal([]byte(v), &j); err != nil {
		return wire.Job{}, &framesync.Error{Kind: framesync.Internal, Op: "job", Msg: "malformed job in redis", Err: err}
	}
	return j, nil
}
