package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"framesync/blobstore"
	"framesync/relay"
	"framesync/relay/lease"
	"framesync/web"

	"github.com/spf13/cobra"
)

// hubConfig is the hub's configuration as read from flags and environment.
type hubConfig struct {
	Addr        string
	Data        string
	RedisURL    string
	RedisPrefix string
	Blobs       string
	MaxUploadMB int64
	LogLevel    string
	LogFormat   string
	Limits      relay.Limits
	// P2PListen are the libp2p listen addresses, comma-separated; "off"
	// (or empty) runs no libp2p host.
	P2PListen string
	// Access control: all three set, or none (local mode).
	AdminUser, AdminPassword, Secret string
	OpenRegistration                 bool
}

// auth returns the hub's access control options (nil: local mode).
func (cfg *hubConfig) auth() (*relay.AuthOptions, error) {
	if cfg.AdminUser == "" && cfg.AdminPassword == "" {
		return nil, nil
	}
	if cfg.AdminUser == "" || cfg.AdminPassword == "" {
		return nil, errors.New("set both FRAMESYNC_ADMIN_USERNAME and FRAMESYNC_ADMIN_PASSWORD, or neither (local mode)")
	}
	if len(cfg.Secret) < relay.MinSecret {
		return nil, fmt.Errorf("with an admin configured, FRAMESYNC_SECRET_KEY must hold at least %d characters (it signs login tokens): generate one with 'openssl rand -hex 32'", relay.MinSecret)
	}
	return &relay.AuthOptions{AdminUser: cfg.AdminUser, AdminPassword: cfg.AdminPassword, Secret: []byte(cfg.Secret), OpenRegistration: cfg.OpenRegistration}, nil
}

func newHubCmd() *cobra.Command {
	var cfg hubConfig
	maxUpload, _ := strconv.ParseInt(envOr("FRAMESYNC_MAX_UPLOAD_MB", "500"), 10, 64)
	c := &cobra.Command{
		Use:   "hub",
		Short: "Run a hub: rooms, frames over HTTP, the WebSocket control channel, locks",
		Long: `Run a framesync hub.

The hub keeps each room's trajectory and shared state as Automerge documents
in its data directory, stores frame data as content-addressed blobs, serves
the HTTP data channel under /api and the WebSocket control channel at
/api/ws, and checks every frame commit against its lock's fencing token and
base version. GET /healthz, /readyz and /metrics (Prometheus) are served too.

With no --redis-url the hub runs with embedded defaults: everything lives in
this process and the data directory. SIGINT or SIGTERM shut it down
gracefully (connections closed, documents saved).

Without FRAMESYNC_ADMIN_USERNAME and FRAMESYNC_ADMIN_PASSWORD the hub runs in
local mode: everyone who can reach it may do everything. With them (and a
FRAMESYNC_SECRET_KEY of at least 32 characters, which signs login tokens)
users log in ('framesync login') and rooms have reader, writer and admin
roles; see docs/security.md.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.RedisURL != "" && !strings.HasPrefix(cfg.RedisURL, "redis://") && !strings.HasPrefix(cfg.RedisURL, "rediss://") {
				return usageError{fmt.Errorf("--redis-url: %q is not a Redis URL (redis://host:port/db or rediss:// for TLS)", cfg.RedisURL)}
			}
			if cfg.MaxUploadMB <= 0 {
				return usageError{fmt.Errorf("--max-upload-mb must be positive, got %d", cfg.MaxUploadMB)}
			}
			if _, err := cfg.auth(); err != nil {
				return usageError{err}
			}
			log, err := newLogger(cmd.ErrOrStderr(), cfg.LogLevel, cfg.LogFormat)
			if err != nil {
				return usageError{err}
			}
			return runHub(cmd.Context(), cfg, log, nil)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Addr, "addr", envOr("FRAMESYNC_ADDR", "127.0.0.1:5000"), "listen address (env FRAMESYNC_ADDR)")
	f.StringVar(&cfg.Data, "data", envOr("FRAMESYNC_DATA", "./framesync-data"), "data directory: room documents, hub identity, fencing tokens (env FRAMESYNC_DATA)")
	f.StringVar(&cfg.RedisURL, "redis-url", envOr("FRAMESYNC_REDIS_URL", ""), "Redis shared by several hubs serving the same rooms (locks, fencing tokens, room registry, document streams), redis://host:port/db; empty = one hub, embedded (env FRAMESYNC_REDIS_URL; docs/deploy.md)")
	f.StringVar(&cfg.RedisPrefix, "redis-prefix", envOr("FRAMESYNC_REDIS_PREFIX", ""), "prefix of the hub's Redis keys; hubs serving the same rooms share it; empty = \""+lease.DefaultRedisPrefix+"\" (env FRAMESYNC_REDIS_PREFIX)")
	f.StringVar(&cfg.Blobs, "blobs", envOr("FRAMESYNC_BLOBS", ""), "blob store: a directory, or s3://ACCESS:SECRET@HOST:PORT/BUCKET[/PREFIX][?secure=false&region=R] for an S3-compatible store (credentials also from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); empty = <data>/blobs (env FRAMESYNC_BLOBS)")
	f.Int64Var(&cfg.MaxUploadMB, "max-upload-mb", maxUpload, "largest accepted request body in MB (env FRAMESYNC_MAX_UPLOAD_MB)")
	f.StringVar(&cfg.LogLevel, "log-level", envOr("FRAMESYNC_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env FRAMESYNC_LOG_LEVEL)")
	f.StringVar(&cfg.LogFormat, "log-format", envOr("FRAMESYNC_LOG_FORMAT", "text"), "log format: text or json (env FRAMESYNC_LOG_FORMAT)")
	d := relay.DefaultLimits
	f.IntVar(&cfg.Limits.FramesPerRequest, "max-frames-per-request", envInt("FRAMESYNC_MAX_FRAMES_PER_REQUEST", d.FramesPerRequest), "most frames in one commit or range request (env FRAMESYNC_MAX_FRAMES_PER_REQUEST)")
	f.Int64Var(&cfg.Limits.StateBytes, "max-state-mb", envInt64("FRAMESYNC_MAX_STATE_MB", d.StateBytes>>20), "largest state document of a room in MB; bigger ones take no changes (env FRAMESYNC_MAX_STATE_MB)")
	f.IntVar(&cfg.Limits.RoomsPerUser, "max-rooms-per-user", envInt("FRAMESYNC_MAX_ROOMS_PER_USER", d.RoomsPerUser), "rooms a user may create, with access control (env FRAMESYNC_MAX_ROOMS_PER_USER)")
	f.IntVar(&cfg.Limits.ConnsPerAddr, "max-conns-per-addr", envInt("FRAMESYNC_MAX_CONNS_PER_ADDR", d.ConnsPerAddr), "WebSocket connections from one address (env FRAMESYNC_MAX_CONNS_PER_ADDR)")
	f.Float64Var(&cfg.Limits.RequestsPerSecond, "rate", float64(envInt("FRAMESYNC_RATE", int(d.RequestsPerSecond))), "HTTP requests per second per user (or address, without a token) (env FRAMESYNC_RATE)")
	f.IntVar(&cfg.Limits.Burst, "burst", envInt("FRAMESYNC_BURST", d.Burst), "requests allowed at once above --rate (env FRAMESYNC_BURST)")
	f.StringVar(&cfg.P2PListen, "p2p-listen", envOr("FRAMESYNC_P2P_LISTEN", "/ip4/127.0.0.1/tcp/4001,/ip4/127.0.0.1/udp/4001/quic-v1"), "libp2p listen addresses for the room directory and relay, comma-separated; off for none (env FRAMESYNC_P2P_LISTEN)")
	f.BoolVar(&cfg.OpenRegistration, "open-registration", envOr("FRAMESYNC_OPEN_REGISTRATION", "") == "1", "with access control, let anyone create an account (env FRAMESYNC_OPEN_REGISTRATION=1)")
	// Secrets come from the environment only, never from flags (which
	// other users of the machine can see in the process list).
	cfg.AdminUser = os.Getenv("FRAMESYNC_ADMIN_USERNAME")
	cfg.AdminPassword = os.Getenv("FRAMESYNC_ADMIN_PASSWORD")
	cfg.Secret = os.Getenv("FRAMESYNC_SECRET_KEY")
	return c
}

// newLogger returns a structured logger writing to w.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
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
	blobs, err := blobstore.Open(ctx, cfg.Blobs, os.Getenv) // a directory, or s3://...
	if err != nil {
		return fmt.Errorf("blob store: %w", err)
	}
	auth, err := cfg.auth()
	if err != nil {
		return err
	}
	hub, err := relay.New(relay.Options{
		Dir:         cfg.Data,
		Blobs:       blobs,
		MaxUpload:   cfg.MaxUploadMB << 20,
		Logger:      log,
		Auth:        auth,
		Limits:      limits(cfg.Limits),
		UI:          web.Handler(),
		P2P:         p2pOptions(cfg.P2PListen),
		RedisURL:    cfg.RedisURL,
		RedisPrefix: cfg.RedisPrefix,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		hub.Close()
		return err
	}
	srv := &http.Server{Handler: hub.Handler(), ReadHeaderTimeout: 10 * time.Second}
	where := cfg.Blobs // a directory; an s3:// URL may hold a secret key
	if s, ok := blobs.(fmt.Stringer); ok {
		where = s.String() // without credentials
	}
	log.Info("framesync hub listening", "url", "http://"+ln.Addr().String(), "data", cfg.Data, "blobs", where, "hub", hub.ID())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if ready != nil {
		ready(ln.Addr().String())
	}
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
		log.Info("shutting down")
	}
	// Close the hub first: it closes the WebSocket connections, which
	// http.Server.Shutdown does not track.
	closeErr := hub.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && serveErr == nil {
		serveErr = err
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return errors.Join(serveErr, closeErr)
}

// limits converts the flag values (state size in MB) to relay.Limits.
func limits(l relay.Limits) relay.Limits {
	l.StateBytes <<= 20
	return l
}

// envInt returns the integer environment variable key, or def when it is
// unset or not a number.
func envInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return n
	}
	return def
}

func envInt64(key string, def int64) int64 {
	if n, err := strconv.ParseInt(os.Getenv(key), 10, 64); err == nil {
		return n
	}
	return def
}

// p2pOptions turns --p2p-listen into the hub's libp2p options.
func p2pOptions(listen string) *relay.P2POptions {
	if listen == "" || listen == "off" {
		return nil
	}
	var addrs []string
	for _, a := range strings.Split(listen, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return &relay.P2POptions{Listen: addrs}
}
