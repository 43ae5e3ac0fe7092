package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"framesync/peer"
)

// clientConfig is what every client command needs.
type clientConfig struct {
	Hub   string
	Cache string
	Name  string
	Quiet bool
	P2P   bool
}

// addClientFlags adds the client flags of DESIGN §11 to c.
func addClientFlags(c *cobra.Command, cfg *clientConfig) {
	f := c.Flags()
	f.StringVar(&cfg.Hub, "hub", envOr("FRAMESYNC_HUB", "http://127.0.0.1:5000"), "hub URL (env FRAMESYNC_HUB)")
	f.StringVar(&cfg.Cache, "cache", envOr("FRAMESYNC_CACHE", ""), "directory of the local replica; empty = the user cache directory (env FRAMESYNC_CACHE)")
	f.StringVar(&cfg.Name, "name", envOr("FRAMESYNC_NAME", defaultName()), "name shown to the other members of a room (env FRAMESYNC_NAME)")
	f.BoolVarP(&cfg.Quiet, "quiet", "q", false, "no progress output")
	f.BoolVar(&cfg.P2P, "p2p", envOr("FRAMESYNC_P2P", "") == "1", "also sync with the room's other members over libp2p, directly or through the hub's relay (env FRAMESYNC_P2P=1)")
}

func defaultName() string {
	u := os.Getenv("USER")
	h, _ := os.Hostname()
	if u == "" {
		return h
	}
	return u + "@" + h
}

// connect connects to the hub of cfg.
func (cfg *clientConfig) connect(ctx context.Context) (*peer.Client, error) {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	opts := &peer.Options{Name: cfg.Name, Cache: cfg.Cache}
	if cfg.P2P {
		opts.P2P = &peer.P2POptions{}
	}
	c, err := peer.Connect(cctx, cfg.Hub, opts)
	if err != nil {
		return nil, fmt.Errorf("%w (is a hub running? start one with 'framesync hub', or give --hub)", err)
	}
	return c, nil
}

// withClient connects, runs fn and disconnects.
func (cfg *clientConfig) withClient(ctx context.Context, fn func(c *peer.Client) error) error {
	c, err := cfg.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

// withRoom connects, joins room (waiting until its replica is synced
// when synced), runs fn and disconnects.
func (cfg *clientConfig) withRoom(ctx context.Context, room string, synced bool, fn func(c *peer.Client, r *peer.Room) error) error {
	if err := checkRoomFlag(room); err != nil {
		return err
	}
	return cfg.withClient(ctx, func(c *peer.Client) error {
		var r *peer.Room
		var err error
		if synced {
			r, err = joinSynced(ctx, c, room)
		} else {
			r, err = c.Join(ctx, room)
		}
		if err != nil {
			return err
		}
		return fn(c, r)
	})
}

// joinSynced joins room and waits until its replica has the hub's state.
func joinSynced(ctx context.Context, c *peer.Client, room string) (*peer.Room, error) {
	r, err := c.Join(ctx, room)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := r.WaitSynced(sctx); err != nil {
		return nil, fmt.Errorf("sync room %s: %w", room, err)
	}
	return r, nil
}

// parseRange parses START:STOP (either may be empty; negative counts from
// the end) into bounds for Room.Range.
func parseRange(s string) (start, stop int, err error) {
	if s == "" {
		return 0, maxInt, nil
	}
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		i, err := strconv.Atoi(s)
		if err != nil {
			return 0, 0, usageError{fmt.Errorf("--frames %q: want START:STOP or one index", s)}
		}
		if i == -1 {
			return -1, maxInt, nil
		}
		return i, i + 1, nil
	}
	stop = maxInt
	if a != "" {
		if start, err = strconv.Atoi(a); err != nil {
			return 0, 0, usageError{fmt.Errorf("--frames %q: bad start", s)}
		}
	}
	if b != "" {
		if stop, err = strconv.Atoi(b); err != nil {
			return 0, 0, usageError{fmt.Errorf("--frames %q: bad stop", s)}
		}
	}
	return start, stop, nil
}

const maxInt = int(^uint(0) >> 1)

// openOutput opens path for writing ("-" = stdout). done(true) finishes
// the file; done(false) abandons it. The file is written aside and renamed
// into place, so a failed export leaves no partial file.
func openOutput(path string, stdout io.Writer) (w io.Writer, done func(ok bool) error, err error) {
	if path == "-" {
		return stdout, func(bool) error { return nil }, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, nil, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	return bw, func(ok bool) error {
		err := bw.Flush()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if ok && err == nil {
			err = os.Rename(f.Name(), path)
		}
		if !ok || err != nil {
			os.Remove(f.Name())
		}
		return err
	}, nil
}

// checkRoomFlag makes --room required with a usage error.
func checkRoomFlag(room string) error {
	if room == "" {
		return usageError{errors.New("--room is required")}
	}
	return nil
}

// newBar returns a progress bar on w, or nil when w is not a terminal or
// progress is off. bytes makes it count bytes (with MB/s).
func newBar(w io.Writer, quiet bool, max int64, bytes bool, what string) *progressbar.ProgressBar {
	f, ok := w.(*os.File)
	if quiet || !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
		progressbar.OptionThrottle(100 * time.Millisecond), progressbar.OptionClearOnFinish(),
		progressbar.OptionSetWidth(30), progressbar.OptionSetPredictTime(true),
	}
	if bytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("frames"))
	}
	return progressbar.NewOptions64(max, opts...)
}
