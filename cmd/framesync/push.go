package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"framesync"
	"framesync/crdt"
	"framesync/peer"
)

func newPushCmd() *cobra.Command {
	var cfg clientConfig
	var room string
	var appendMode bool
	var batch int
	c := &cobra.Command{
		Use:   "push FILE...",
		Short: "Import xyz/extxyz frames into a room",
		Long: `Read frames from xyz or extended xyz files (as ASE writes them) and commit
them to room --room, which is created if it does not exist. Without --append
the room's frames are replaced; with it the frames are added at the end.

Files are streamed: a file of any size is read a batch at a time. Only blobs
the hub does not have are uploaded (frames sharing numbers or a cell upload
them once). The trajectory lock is held for the whole push; a push that is
interrupted leaves the batches committed before it, never a partial frame.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRoomFlag(room); err != nil {
				return err
			}
			if batch < 1 {
				return usageError{fmt.Errorf("--batch must be positive, got %d", batch)}
			}
			return runPush(cmd.Context(), &cfg, room, args, appendMode, batch, cmd.ErrOrStderr())
		},
	}
	addClientFlags(c, &cfg)
	c.Flags().StringVar(&room, "room", "", "room to push to (required)")
	c.Flags().BoolVar(&appendMode, "append", false, "add the frames at the end instead of replacing the room's frames")
	c.Flags().IntVar(&batch, "batch", 200, "frames per commit")
	return c
}

// checkFormat refuses files that are not xyz or extxyz.
func checkFormat(path string) error {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".xyz", ".extxyz":
		return nil
	}
	return usageError{fmt.Errorf("%s: unknown format: framesync reads .xyz and .extxyz files", path)}
}

// batchOf is a batch of frames read from a file, or the error that ended
// reading.
type batchOf struct {
	frames []*framesync.Frame
	err    error
}

func runPush(ctx context.Context, cfg *clientConfig, room string, files []string, appendMode bool, batch int, stderr io.Writer) error {
	var total int64
	for _, p := range files {
		if err := checkFormat(p); err != nil {
			return err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		total += fi.Size()
	}
	c, err := cfg.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.RoomInfo(ctx, room); errors.Is(err, framesync.NotFound) {
		if _, err := c.CreateRoom(ctx, room, ""); err != nil && !errors.Is(err, framesync.Conflict) {
			return err
		}
	} else if err != nil {
		return err
	}
	r, err := joinSynced(ctx, c, room)
	if err != nil {
		return err
	}
	lock, err := r.Lock(ctx, peer.TrajectoryTarget, 0)
	if err != nil {
		return err
	}
	defer lock.Release(context.WithoutCancel(ctx))
	if !appendMode && r.Len() > 0 {
		if err := r.Clear(ctx); err != nil {
			return fmt.Errorf("replace the room's frames: %w", err)
		}
	}

	start := time.Now()
	bar := newBar(stderr, cfg.Quiet, total, true, "reading")
	// Read and parse on one goroutine, upload and commit on this one.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan batchOf, 2)
	go readBatches(ctx, files, batch, bar, batches)
	frames := 0
	for b := range batches {
		if b.err != nil {
			return b.err
		}
		if err := lock.Err(); err != nil {
			return fmt.Errorf("the trajectory lock was lost after %d frames: %w", frames, err)
		}
		if _, err := r.Append(ctx, b.frames...); err != nil {
			return fmt.Errorf("commit after %d frames: %w", frames, err)
		}
		frames += len(b.frames)
		if bar != nil {
			bar.Describe(fmt.Sprintf("%d frames, %.0f frames/s", frames, float64(frames)/time.Since(start).Seconds()))
		}
	}
	if bar != nil {
		bar.Finish()
	}
	el := time.Since(start)
	if !cfg.Quiet {
		fmt.Fprintf(stderr, "pushed %d frames (%.1f MB read, %.1f MB uploaded) to room %s in %v: %.0f frames/s, %.1f MB/s\n",
			frames, float64(total)/1e6, float64(c.Stats().BytesUploaded)/1e6, room, el.Round(time.Millisecond),
			float64(frames)/el.Seconds(), float64(total)/1e6/el.Seconds())
	}
	return nil
}

// readBatches parses files into batches of n frames.
func readBatches(ctx context.Context, files []string, n int, bar *progressbar.ProgressBar, out chan<- batchOf) {
	defer close(out)
	send := func(b batchOf) bool {
		select {
		case out <- b:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var cur []*framesync.Frame
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			send(batchOf{err: err})
			return
		}
		var src io.Reader = f
		if bar != nil {
			pr := progressbar.NewReader(f, bar)
			src = &pr
		}
		xr := framesync.NewXYZReader(src)
		for {
			fr, err := xr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Close()
				send(batchOf{err: fmt.Errorf("%s: %w", p, err)})
				return
			}
			cur = append(cur, fr)
			if len(cur) == n {
				if !send(batchOf{frames: cur}) {
					f.Close()
					return
				}
				cur = nil
			}
		}
		f.Close()
	}
	if len(cur) > 0 {
		send(batchOf{frames: cur})
	}
}

func newPullCmd() *cobra.Command {
	var cfg clientConfig
	var room, out, frames string
	c := &cobra.Command{
		Use:   "pull --room R -o FILE",
		Short: "Export a room's frames as extended xyz",
		Long: `Write the frames of room --room to FILE as extended xyz (readable by ASE).
--frames START:STOP exports a slice (Python-style, negative counts from the
end). Frames come through the local blob cache, so they can later be
inspected and exported offline with 'framesync inspect'. "-o -" writes to
standard output.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkRoomFlag(room); err != nil {
				return err
			}
			if out == "" {
				return usageError{errors.New("-o FILE is required")}
			}
			start, stop, err := parseRange(frames)
			if err != nil {
				return err
			}
			return cfg.withRoom(cmd.Context(), room, true, func(_ *peer.Client, r *peer.Room) error {
				return exportFrames(cmd.Context(), r.Range, r.Len(), start, stop, out, &cfg, cmd.OutOrStdout(), cmd.ErrOrStderr())
			})
		},
	}
	addClientFlags(c, &cfg)
	c.Flags().StringVar(&room, "room", "", "room to export (required)")
	c.Flags().StringVarP(&out, "output", "o", "", "output file (extxyz), - for standard output")
	c.Flags().StringVar(&frames, "frames", "", "START:STOP slice of frames to export (default all)")
	return c
}

// rangeFunc is Room.Range or View.Range.
type rangeFunc func(ctx context.Context, start, stop int, sel []string, fn func(int, crdt.Entry, *framesync.Frame) error) error

// exportFrames writes frames [start, stop) of a room (n frames) to out.
func exportFrames(ctx context.Context, each rangeFunc, n, start, stop int, out string, cfg *clientConfig, stdout, stderr io.Writer) error {
	w, done, err := openOutput(out, stdout)
	if err != nil {
		return err
	}
	t0 := time.Now()
	xw := framesync.NewXYZWriter(w)
	s, e := clampSlice(start, stop, n)
	bar := newBar(stderr, cfg.Quiet || out == "-", int64(e-s), false, "exporting")
	count := 0
	err = each(ctx, start, stop, nil, func(i int, _ crdt.Entry, f *framesync.Frame) error {
		count++
		if bar != nil {
			bar.Add(1)
		}
		if err := xw.Write(f); err != nil {
			return fmt.Errorf("frame %d: %w", i, err)
		}
		return nil
	})
	if err == nil {
		err = xw.Flush()
	}
	if err := done(err == nil); err != nil {
		return err
	}
	if bar != nil {
		bar.Finish()
	}
	if !cfg.Quiet && out != "-" {
		el := time.Since(t0)
		fmt.Fprintf(stderr, "wrote %d frames to %s in %v (%.0f frames/s)\n", count, out, el.Round(time.Millisecond), float64(count)/el.Seconds())
	}
	return nil
}

// clampSlice resolves a Python-style slice against n items.
func clampSlice(start, stop, n int) (int, int) {
	if start < 0 {
		start = max(0, start+n)
	}
	if stop < 0 {
		stop += n
	}
	stop = min(stop, n)
	return min(start, n), max(min(start, n), stop)
}
