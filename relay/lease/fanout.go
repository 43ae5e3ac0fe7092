package lease

import (
	"sync"
	"sync/atomic"
)

// fanout passes lease events to subscribers without ever blocking: a
// subscriber that falls behind loses events, counted by Dropped. Memory
// and Redis embed it.
type fanout struct {
	mu      sync.Mutex // guards subs
	subs    map[*subscriber]struct{}
	dropped atomic.Int64
}

type subscriber struct{ ch chan Event }

// Subscribe returns a channel of lease events with room for buf events. A
// subscriber that falls behind loses events (counted by Dropped); it never
// slows lease operations down. cancel ends the subscription.
func (f *fanout) Subscribe(buf int) (<-chan Event, func()) {
	s := &subscriber{ch: make(chan Event, buf)}
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[*subscriber]struct{}{}
	}
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	return s.ch, func() {
		f.mu.Lock()
		delete(f.subs, s)
		f.mu.Unlock()
	}
}

// Dropped returns how many events slow subscribers have lost.
func (f *fanout) Dropped() int64 { return f.dropped.Load() }

// emit sends an event to every subscriber without blocking.
func (f *fanout) emit(k EventKind, g Grant) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		select {
		case s.ch <- Event{Kind: k, Grant: g}:
		default:
			f.dropped.Add(1)
		}
	}
}
