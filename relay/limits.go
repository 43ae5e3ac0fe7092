package relay

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"framesync"
)

// rateLimiter is a token bucket (golang.org/x/time/rate) per key: a user,
// or an address.
type rateLimiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	swept   time.Time
}

func newRateLimiter(perSecond float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate.Limit(perSecond), burst: burst, buckets: map[string]*rate.Limiter{}, swept: time.Now()}
}

// allow takes one token from key's bucket; false if it is empty.
func (l *rateLimiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	if now.Sub(l.swept) > time.Minute {
		// Forget full buckets, so the map does not grow without bound.
		for k, b := range l.buckets {
			if b.TokensAt(now) >= float64(l.burst) {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[key]
	if b == nil {
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[key] = b
	}
	l.mu.Unlock()
	return b.AllowN(now, 1)
}

// remoteHost is the address part of r.RemoteAddr.
func remoteHost(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// rateKey is what the request rate is counted against.
func rateKey(p principal, r *http.Request) string {
	if p.user != "" {
		return "user:" + p.user
	}
	return "addr:" + remoteHost(r)
}

// checkRate refuses a request over the caller's rate.
func (s *Server) checkRate(p principal, r *http.Request) error {
	if s.rate.allow(rateKey(p, r), time.Now()) {
		return nil
	}
	return &framesync.Error{Kind: framesync.RateLimited, Op: "request", Msg: fmt.Sprintf("over the limit of %.0f requests per second (burst %d): slow down", s.opts.Limits.RequestsPerSecond, s.opts.Limits.Burst)}
}

// stateTooBig refuses changes to a room whose state document is over the
// limit. The size is that of its files (snapshot and change log).
func (r *room) stateTooBig() error {
	r.mu.Lock()
	size := r.stateFile.snapSize + r.stateFile.logSize
	r.mu.Unlock()
	if limit := r.srv.opts.Limits.StateBytes; size > limit {
		return &framesync.Error{Kind: framesync.TooLarge, Op: "change state", Msg: fmt.Sprintf("room %q: the state document (%d bytes) is over the limit of %d bytes; nothing was applied", r.name, size, limit)}
	}
	return nil
}
