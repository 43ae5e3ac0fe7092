package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"framesync/blobstore"

	"github.com/spf13/cobra"
)

// hubConfig is the hub's configuration as read from flags and environment.
type hubConfig struct {
	Addr        string
	Data        string
	RedisURL    string
	Blobs       string
	MaxUploadMB int64
}

func newHubCmd() *cobra.Command {
	var cfg hubConfig
	maxUpload, _ := strconv.ParseInt(envOr("FRAMESYNC_MAX_UPLOAD_MB", "500"), 10, 64)
	c := &cobra.Command{
		Use:   "hub",
		Short: "Run a hub (foundation build: health endpoints only)",
		Long: `Run a framesync hub.

This build contains the foundation only (frame model, blob store, room
documents): the hub opens its data directory and serves GET /healthz and
GET /readyz. Rooms, the data and control channels and locks are not
implemented yet.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.RedisURL != "" {
				return usageError{errors.New("--redis-url: the Redis backend is not implemented yet; run without it for embedded defaults")}
			}
			if cfg.MaxUploadMB <= 0 {
				return usageError{fmt.Errorf("--max-upload-mb must be positive, got %d", cfg.MaxUploadMB)}
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			return runHub(cmd.Context(), cfg, log, nil)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Addr, "addr", envOr("FRAMESYNC_ADDR", "127.0.0.1:5000"), "listen address (env FRAMESYNC_ADDR)")
	f.StringVar(&cfg.Data, "data", envOr("FRAMESYNC_DATA", "./framesync-data"), "data directory (env FRAMESYNC_DATA)")
	f.StringVar(&cfg.RedisURL, "redis-url", envOr("FRAMESYNC_REDIS_URL", ""), "Redis URL; empty = embedded (env FRAMESYNC_REDIS_URL)")
	f.StringVar(&cfg.Blobs, "blobs", envOr("FRAMESYNC_BLOBS", ""), "blob store directory; empty = <data>/blobs (env FRAMESYNC_BLOBS)")
	f.Int64Var(&cfg.MaxUploadMB, "max-upload-mb", maxUpload, "upload size limit in MB (env FRAMESYNC_MAX_UPLOAD_MB)")
	return c
}

// runHub serves until ctx is done. ready, if not nil, is called with the
// listening address once the hub serves.
func runHub(ctx context.Context, cfg hubConfig, log *slog.Logger, ready func(addr string)) error {
	if cfg.Blobs == "" {
		cfg.Blobs = filepath.Join(cfg.Data, "blobs")
	}
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if _, err := blobstore.OpenDir(cfg.Blobs); err != nil {
		return fmt.Errorf("blob store: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ready") })
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info("framesync hub listening (foundation build: health endpoints only)", "addr", "http://"+ln.Addr().String(), "data", cfg.Data, "blobs", cfg.Blobs)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}
