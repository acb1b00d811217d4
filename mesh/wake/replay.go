package wake

import (
	"sync"
	"time"
)

// DefaultReplayEntries bounds a replay cache: commands are accepted at most
// at the passive listener's signature rate (5/s) and live at most
// MaxValidity (plus skew), so a full cache of live nonces needs far more
// than that rate allows.
const DefaultReplayEntries = 4096

// duplicateWindow is how long after a nonce was accepted a copy of it counts
// as a duplicate rather than a replay: a wake is sent over UDP and TCP, by
// the coordinator and by each waker, so a passive peer sees it several times
// within a few seconds.
const duplicateWindow = 15 * time.Second

// Replays remembers accepted nonces until their command expires. It is
// bounded: when full of live nonces it refuses new ones (failing closed)
// rather than forgetting one that could then be replayed. Safe for
// concurrent use.
type Replays struct {
	mu   sync.Mutex
	max  int
	seen map[string]replayEntry
}

type replayEntry struct {
	accepted, expires time.Time
}

// NewReplays returns a cache of at most max nonces (0: DefaultReplayEntries).
func NewReplays(max int) *Replays {
	if max <= 0 {
		max = DefaultReplayEntries
	}
	return &Replays{max: max, seen: make(map[string]replayEntry)}
}

// Seen reports whether nonce was accepted and has not expired at now, and
// if so whether it was accepted within the last few seconds (a duplicate
// of a wake in flight rather than a replay).
func (r *Replays) Seen(nonce []byte, now time.Time) (seen, duplicate bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.seen[string(nonce)]
	if !ok || !now.Before(e.expires) {
		return false, false
	}
	return true, now.Sub(e.accepted) < duplicateWindow
}

// Accept records nonce, valid until expires, and reports whether it is new
// (false: seen before, or the cache is full of live nonces).
func (r *Replays) Accept(nonce []byte, expires, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.seen[string(nonce)]; ok && now.Before(e.expires) {
		return false
	}
	if len(r.seen) >= r.max {
		for k, e := range r.seen {
			if !now.Before(e.expires) {
				delete(r.seen, k)
			}
		}
		if len(r.seen) >= r.max {
			return false
		}
	}
	r.seen[string(nonce)] = replayEntry{accepted: now, expires: expires}
	return true
}

// Len is the number of nonces held.
func (r *Replays) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}
