package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"framesync"
	"framesync/crdt"
	"framesync/peer"
)

func newInspectCmd() *cobra.Command {
	var cfg clientConfig
	var room, frames, export string
	var frame int
	var all bool
	c := &cobra.Command{
		Use:   "inspect [--room R] [--frame I] [--export FILE]",
		Short: "Show the local replica, offline: rooms, frames, versions, state",
		Long: `Read the local replica of --hub with no network at all.

Without --room: the rooms the replica holds. With --room: frame count,
generation, when it was last synced, bookmarks, selection, step, named
collections, and the frames (index, ID, version, hash, author, time; the
first 20 unless --all). --frame I: one frame's fields and history.
--export FILE writes the room's frames (or --frames START:STOP) as extended
xyz from the blob cache; frames never fetched while online are missing and
make the export fail, naming them.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rp, err := peer.Open(cfg.Cache, cfg.Hub)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if room == "" {
				if export != "" || cmd.Flags().Changed("frame") {
					return usageError{fmt.Errorf("--export and --frame need --room")}
				}
				return inspectRooms(rp, out)
			}
			v, err := rp.View(room)
			if err != nil {
				return err
			}
			switch {
			case export != "":
				start, stop, err := parseRange(frames)
				if err != nil {
					return err
				}
				return exportFrames(cmd.Context(), v.Range, v.Len(), start, stop, export, &cfg, out, cmd.ErrOrStderr())
			case cmd.Flags().Changed("frame"):
				return inspectFrame(cmd.Context(), v, frame, out)
			default:
				return inspectRoom(v, all, out)
			}
		},
	}
	addClientFlags(c, &cfg)
	c.Flags().StringVar(&room, "room", "", "room to show")
	c.Flags().IntVar(&frame, "frame", 0, "show frame I (negative counts from the end)")
	c.Flags().StringVar(&export, "export", "", "write the room's frames to FILE as extended xyz")
	c.Flags().StringVar(&frames, "frames", "", "START:STOP slice for --export (default all)")
	c.Flags().BoolVar(&all, "all", false, "list every frame, not the first 20")
	return c
}

func inspectRooms(rp *peer.Replica, out io.Writer) error {
	rooms, err := rp.Rooms()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "replica %s (client %s)\n", rp.Dir(), rp.ClientID())
	if len(rooms) == 0 {
		fmt.Fprintln(out, "no rooms yet: join or pull one while connected")
		return nil
	}
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ROOM\tFRAMES\tGENERATION\tLAST SYNCED")
	for _, name := range rooms {
		v, err := rp.View(name)
		if err != nil {
			fmt.Fprintf(w, "%s\t?\t?\t%v\n", name, err)
			continue
		}
		m := v.Meta()
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\n", name, v.Len(), m.Generation, ago(m.Synced))
	}
	return w.Flush()
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04:05") + " (" + time.Since(t).Round(time.Second).String() + " ago)"
}

func inspectRoom(v *peer.View, all bool, out io.Writer) error {
	m := v.Meta()
	gen, _ := v.Trajectory().Generation()
	fmt.Fprintf(out, "room %s: %d frames, generation %d, last synced %s\n", m.Name, v.Len(), gen, ago(m.Synced))
	st := v.State()
	if step, err := st.Step(); err == nil {
		fmt.Fprintf(out, "step: %d\n", step)
	}
	if sel, err := st.Selection(); err == nil && len(sel) > 0 {
		fmt.Fprintf(out, "selection: %v\n", sel)
	}
	if bm, err := st.Bookmarks(); err == nil && len(bm) > 0 {
		ids := make([]string, 0, len(bm))
		for id := range bm {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		fmt.Fprintln(out, "bookmarks:")
		for _, id := range ids {
			idx, err := v.Trajectory().IndexOf(id)
			where := fmt.Sprintf("frame %d", idx)
			if err != nil {
				where = "deleted frame"
			}
			fmt.Fprintf(out, "  %s (%s): %s\n", id, where, bm[id])
		}
	}
	if cols, err := st.Collections(); err == nil && len(cols) > 0 {
		fmt.Fprintln(out, "collections:")
		for _, c := range cols {
			items, _ := st.Items(c)
			fmt.Fprintf(out, "  %s: %d items\n", c, len(items))
		}
	}
	entries, err := v.Trajectory().Entries()
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "INDEX\tID\tVERSION\tHASH\tAUTHOR\tTIME")
	n := len(entries)
	if !all {
		n = min(n, 20)
	}
	for i, e := range entries[:n] {
		fmt.Fprintf(w, "%d\t%s\t%d\t%s\t%s\t%s\n", i, e.ID, e.Version, shortHash(e.Hash), e.Author, e.Time.Local().Format("2006-01-02 15:04:05"))
	}
	w.Flush()
	if n < len(entries) {
		fmt.Fprintf(out, "... %d more (--all lists every frame)\n", len(entries)-n)
	}
	return nil
}

func shortHash(h framesync.Hash) string { return h.String()[:len(framesync.HashPrefix)+12] }

func inspectFrame(ctx context.Context, v *peer.View, i int, out io.Writer) error {
	e, err := v.Entry(i)
	if err != nil {
		return err
	}
	if i < 0 {
		i += v.Len()
	}
	fmt.Fprintf(out, "frame %d: id %s, version %d, hash %s, by %s at %s\n", i, e.ID, e.Version, e.Hash, e.Author, e.Time.Local().Format(time.RFC3339))
	f, err := v.Frame(ctx, i)
	if err != nil {
		fmt.Fprintf(out, "fields: %v\n", err)
	} else {
		w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(w, "FIELD\tTYPE\tSHAPE\tVALUE")
		for _, name := range f.Fields() {
			val, _ := f.Field(name)
			typ, shape, s := describeValue(val)
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", name, typ, shape, s)
		}
		w.Flush()
	}
	hist, err := v.Trajectory().History(e.ID)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "history:")
	for _, h := range hist {
		fmt.Fprintf(out, "  v%d  %s  %s  %s\n", h.Version, shortHash(h.Hash), h.Author, h.Time.Local().Format(time.RFC3339))
	}
	return nil
}

// describeEvent renders a room event as one line for watch.
func describeEvent(e peer.Event) string {
	m := e.Msg
	switch e.Type {
	case "frame_updated":
		return fmt.Sprintf("frame %s at index %d: version %d (%s) %s, generation %d", m.Frame, deref(m.Index), m.Version, m.State, shortHashString(m.Hash), m.Gen)
	case "generation":
		return fmt.Sprintf("%s: generation %d, %d frames", m.State, m.Gen, deref(m.Frames))
	case "member":
		return fmt.Sprintf("member %s (%s) %s", m.Client, m.Name, m.State)
	case "lock_state":
		return fmt.Sprintf("lock %s %s by %s", m.Target, m.State, m.Holder)
	case "presenter":
		return fmt.Sprintf("presenter %s %s", m.Holder, m.State)
	case "frame":
		return fmt.Sprintf("presenter %s shows step %d", m.Client, deref(m.Step))
	case "presence":
		return fmt.Sprintf("presence of %s (%s): %v", m.Client, m.Name, m.Payload)
	case "room_deleted":
		return "the room was deleted"
	case peer.EventState:
		return "state: " + describeStateDiff(e.State, e.Local)
	case peer.EventTrajectory:
		d := e.Trajectory
		return fmt.Sprintf("trajectory: generation %d -> %d: %d added, %d removed, %d changed, %d moved",
			d.FromGeneration, d.ToGeneration, len(d.Added), len(d.Removed), len(d.Changed), len(d.Moved))
	case peer.EventJoined:
		return "joined"
	case peer.EventDisconnected:
		return "disconnected: reconnecting"
	case peer.EventLockLost:
		return fmt.Sprintf("lock %s lost: %v", m.Target, e.Err)
	case peer.EventError:
		return fmt.Sprintf("error: %v", e.Err)
	}
	return e.Type
}

func describeStateDiff(d *crdt.StateDiff, local bool) string {
	var parts []string
	for _, f := range d.Fields {
		parts = append(parts, fmt.Sprintf("%s %v -> %v", f.Field, f.Old, f.New))
	}
	for _, b := range d.Bookmarks {
		parts = append(parts, fmt.Sprintf("bookmark %s %s -> %s", b.FrameID, derefS(b.Old), derefS(b.New)))
	}
	for _, it := range d.Items {
		switch {
		case it.Old == nil:
			parts = append(parts, fmt.Sprintf("%s +%s %v", it.Collection, it.ID, map[string]any(it.New)))
		case it.New == nil:
			parts = append(parts, fmt.Sprintf("%s -%s", it.Collection, it.ID))
		default:
			parts = append(parts, fmt.Sprintf("%s ~%s %v", it.Collection, it.ID, map[string]any(it.New)))
		}
	}
	s := strings.Join(parts, "; ")
	if local {
		s += " (local)"
	}
	return s
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func derefS(p *string) string {
	if p == nil {
		return "(none)"
	}
	return fmt.Sprintf("%q", *p)
}

func shortHashString(s string) string {
	if len(s) > len(framesync.HashPrefix)+12 {
		return s[:len(framesync.HashPrefix)+12]
	}
	return s
}
