package relay

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"framesync"
)

// rateLimiter is a token bucket per key (a user, or an address).
type rateLimiter struct {
	rate  float64 // tokens per second
	burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}, swept: time.Now()}
}

// allow takes one token from key's bucket; false if it is empty.
func (l *rateLimiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		// Forget full buckets, so the map does not grow without bound.
		for k, b := range l.buckets {
			if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
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
