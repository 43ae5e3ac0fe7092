package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"framesync/peer"
)

func newRoomsCmd() *cobra.Command {
	var cfg clientConfig
	var asJSON bool
	c := &cobra.Command{
		Use:   "rooms",
		Short: "List the hub's rooms",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cfg.withClient(cmd.Context(), func(c *peer.Client) error {
				l, err := c.Rooms(cmd.Context())
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if asJSON {
					return json.NewEncoder(out).Encode(l)
				}
				w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ROOM\tFRAMES\tGENERATION\tMEMBERS")
				for _, r := range l.Rooms {
					fmt.Fprintf(w, "%s\t%d\t%d\t%d\n", r.Name, r.Frames, r.Generation, r.Members)
				}
				return w.Flush()
			})
		},
	}
	addClientFlags(c, &cfg)
	c.Flags().BoolVar(&asJSON, "json", false, "print the hub's JSON listing")
	return c
}

func newRoomCmd() *cobra.Command {
	c := &cobra.Command{Use: "room", Short: "Create, show or delete a room"}
	var cfg clientConfig
	var from string
	create := &cobra.Command{
		Use:   "create NAME [--from R2]",
		Short: "Create a room, empty or as a copy of room R2 (frames share their blobs)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cfg.withClient(cmd.Context(), func(c *peer.Client) error {
				info, err := c.CreateRoom(cmd.Context(), args[0], from)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created room %s with %d frames\n", info.Name, info.Frames)
				return nil
			})
		},
	}
	addClientFlags(create, &cfg)
	create.Flags().StringVar(&from, "from", "", "copy the trajectory and state of this room")

	var icfg clientConfig
	info := &cobra.Command{
		Use:   "info NAME",
		Short: "Show a room: frames, generation, members, locks, presenter",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return icfg.withClient(cmd.Context(), func(c *peer.Client) error {
				info, err := c.RoomInfo(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			})
		},
	}
	addClientFlags(info, &icfg)

	var dcfg clientConfig
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a room and its documents at the hub",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return dcfg.withClient(cmd.Context(), func(c *peer.Client) error {
				return c.DeleteRoom(cmd.Context(), args[0])
			})
		},
	}
	addClientFlags(del, &dcfg)
	c.AddCommand(create, info, del, newACLCmd())
	return c
}

func newACLCmd() *cobra.Command {
	var cfg clientConfig
	var public bool
	var defaultRole string
	var roles, remove []string
	c := &cobra.Command{
		Use:   "acl NAME [--public=true|false] [--default-role ROLE] [--role USER=ROLE]... [--remove USER]...",
		Short: "Show or change who may use a room (room admins; hubs with access control)",
		Long: `Without changes, print room NAME's access rules. Roles are reader (read
frames and documents), writer (also locks, commits, state edits, presenter)
and admin (also access rules and delete). --public lets anyone read;
--default-role gives every logged-in user a role ("none" for none).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cfg.withClient(cmd.Context(), func(c *peer.Client) error {
				acl, err := c.ACL(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				f := cmd.Flags()
				if f.Changed("public") || f.Changed("default-role") || f.Changed("role") || f.Changed("remove") {
					if f.Changed("public") {
						acl.Public = public
					}
					if f.Changed("default-role") {
						acl.DefaultRole = strings.TrimPrefix(defaultRole, "none")
					}
					if acl.Roles == nil {
						acl.Roles = map[string]string{}
					}
					for _, r := range roles {
						u, role, ok := strings.Cut(r, "=")
						if !ok {
							return usageError{fmt.Errorf("--role %q: want USER=ROLE", r)}
						}
						acl.Roles[u] = role
					}
					for _, u := range remove {
						delete(acl.Roles, u)
					}
					if err := c.SetACL(cmd.Context(), args[0], acl); err != nil {
						return err
					}
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(acl)
			})
		},
	}
	addClientFlags(c, &cfg)
	c.Flags().BoolVar(&public, "public", false, "anyone may read the room")
	c.Flags().StringVar(&defaultRole, "default-role", "", "role of every logged-in user not listed: reader, writer, admin or none")
	c.Flags().StringArrayVar(&roles, "role", nil, "USER=ROLE, repeatable")
	c.Flags().StringArrayVar(&remove, "remove", nil, "USER to remove from the roles, repeatable")
	return c
}

func newWatchCmd() *cobra.Command {
	var cfg clientConfig
	var room string
	c := &cobra.Command{
		Use:   "watch --room R",
		Short: "Print a room's notifications and state changes as they happen",
		Long: `Join room --room and print one line per event until interrupted: frame
updates, generations, members joining and leaving, locks, the presenter,
presence, and changes of the shared state ({id, old, new} for collection
items). Disconnections are reported and the client reconnects by itself.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return cfg.withRoom(ctx, room, false, func(_ *peer.Client, r *peer.Room) error {
				events, cancel := r.Subscribe(1024)
				defer cancel()
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "%s watching room %s: %d frames, generation %d\n", time.Now().Format("15:04:05.000"), room, r.Len(), r.Generation())
				for {
					select {
					case <-ctx.Done():
						return nil
					case e := <-events:
						fmt.Fprintf(out, "%s %s\n", time.Now().Format("15:04:05.000"), describeEvent(e))
					}
				}
			})
		},
	}
	addClientFlags(c, &cfg)
	c.Flags().StringVar(&room, "room", "", "room to watch (required)")
	return c
}

// lockTarget turns --target into a lock target: "trajectory",
// "frame:<id>" or a frame index.
func lockTarget(r *peer.Room, t string) (string, error) {
	switch {
	case t == "" || t == peer.TrajectoryTarget:
		return peer.TrajectoryTarget, nil
	case len(t) > 6 && t[:6] == "frame:":
		return t, nil
	}
	i, err := strconv.Atoi(t)
	if err != nil {
		return "", usageError{fmt.Errorf("--target %q: want trajectory, frame:<id> or a frame index", t)}
	}
	e, err := r.Entry(i)
	if err != nil {
		return "", err
	}
	return peer.FrameTarget(e.ID), nil
}

func newLockCmd() *cobra.Command {
	var cfg clientConfig
	var room, target string
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "lock --room R [--target trajectory|frame:<id>|INDEX]",
		Short: "Hold a lock until interrupted",
		Long: `Acquire a lock of room --room and hold it, renewing it, until interrupted
(Ctrl-C releases it). Prints the fencing token. Exits 1 if the lock is held
by someone else (naming the holder) or is lost while held.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return cfg.withRoom(ctx, room, true, func(_ *peer.Client, r *peer.Room) error {
				tgt, err := lockTarget(r, target)
				if err != nil {
					return err
				}
				l, err := r.Lock(ctx, tgt, ttl)
				if err != nil {
					var pe *peer.Error
					if errors.As(err, &pe) && pe.Holder() != "" {
						return fmt.Errorf("%w (held by %s until %s)", err, pe.Holder(), pe.Expires().Local().Format("15:04:05"))
					}
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "locked %s in room %s with token %d; Ctrl-C releases it\n", tgt, room, l.Token())
				select {
				case <-ctx.Done():
					rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					return l.Release(rctx)
				case <-l.Lost():
					return fmt.Errorf("lock %s lost: %w", tgt, l.Err())
				}
			})
		},
	}
	addClientFlags(c, &cfg)
	c.Flags().StringVar(&room, "room", "", "room (required)")
	c.Flags().StringVar(&target, "target", peer.TrajectoryTarget, "trajectory, frame:<id> or a frame index")
	c.Flags().DurationVar(&ttl, "ttl", peer.DefaultLockTTL, "lease TTL; renewed every third of it")
	return c
}

func newPresentCmd() *cobra.Command {
	var cfg clientConfig
	var room string
	var fps float64
	var from, to int
	var loop bool
	c := &cobra.Command{
		Use:   "present --room R [--fps N] [--from I] [--to J]",
		Short: "Take the presenter token and play frames for the room",
		Long: `Take room --room's presenter token and step through frames --from to --to
(default the whole trajectory) at --fps, so every member follows. With --loop
it plays until interrupted. On release the hub writes the last step to the
shared state. Exits 1 if another member presents.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkRoomFlag(room); err != nil {
				return err
			}
			if fps <= 0 || fps > 240 {
				return usageError{fmt.Errorf("--fps must be in (0, 240], got %v", fps)}
			}
			ctx := cmd.Context()
			return cfg.withRoom(ctx, room, true, func(_ *peer.Client, r *peer.Room) error {
				n := r.Len()
				if to < 0 || to > n {
					to = n
				}
				if n == 0 || from >= to {
					return fmt.Errorf("room %s has no frames in [%d, %d)", room, from, to)
				}
				p, err := r.Present(ctx)
				if err != nil {
					return err
				}
				defer func() {
					rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					p.Release(rctx)
				}()
				t := time.NewTicker(time.Duration(float64(time.Second) / fps))
				defer t.Stop()
				for step := from; ; {
					if err := p.Show(int64(step), nil); err != nil {
						return err
					}
					step++
					if step == to {
						if !loop {
							fmt.Fprintf(cmd.OutOrStdout(), "presented frames %d to %d\n", from, to-1)
							return nil
						}
						step = from
					}
					select {
					case <-ctx.Done():
						return nil
					case <-p.Lost():
						return p.Err()
					case <-t.C:
					}
				}
			})
		},
	}
	addClientFlags(c, &cfg)
	c.Flags().StringVar(&room, "room", "", "room (required)")
	c.Flags().Float64Var(&fps, "fps", 10, "frames per second")
	c.Flags().IntVar(&from, "from", 0, "first frame")
	c.Flags().IntVar(&to, "to", -1, "stop before this frame (default: the end)")
	c.Flags().BoolVar(&loop, "loop", false, "play until interrupted")
	return c
}
