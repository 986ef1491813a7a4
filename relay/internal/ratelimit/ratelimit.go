// Package ratelimit gives relay protocol servers per-key token buckets
// (per peer, per device) in bounded memory. Keys are cheap for an attacker
// to make (a new peer ID costs a key pair), so a Limiter never refuses a
// key for lack of room: when it tracks its maximum, it forgets buckets
// that have refilled, then arbitrary ones, which only gives their owners a
// fresh burst, the same as a new key would.
//
// Time is passed in by the caller, so servers use an injected clock and
// tests need no sleeping.
package ratelimit

import (
	"sync"
	"time"
)

// Limiter is a set of token buckets, one per key, each refilled with one
// token every interval up to burst. It is safe for concurrent use.
type Limiter[K comparable] struct {
	every   time.Duration
	burst   float64
	maxKeys int

	mu      sync.Mutex // guards buckets
	buckets map[K]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time // when tokens was computed
}

// New returns a Limiter whose buckets hold up to burst tokens and gain one
// every interval; it tracks at most maxKeys keys. A burst below 1 or an
// interval of 0 or less gives a Limiter that allows everything.
func New[K comparable](burst int, every time.Duration, maxKeys int) *Limiter[K] {
	return &Limiter[K]{every: every, burst: float64(burst), maxKeys: max(1, maxKeys), buckets: make(map[K]*bucket)}
}

// unlimited reports whether l allows everything.
func (l *Limiter[K]) unlimited() bool { return l.burst < 1 || l.every <= 0 }

// Allow takes a token from k's bucket at time now and reports whether
// there was one.
func (l *Limiter[K]) Allow(k K, now time.Time) bool {
	if l.unlimited() {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[k]
	if b == nil {
		l.makeRoomLocked(now)
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[k] = b
	}
	l.refill(b, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Wait returns how long after now k's bucket will hold a token (0 if it
// holds one now).
func (l *Limiter[K]) Wait(k K, now time.Time) time.Duration {
	if l.unlimited() {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[k]
	if b == nil {
		return 0
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(l.every))
}

// Len returns the number of keys tracked.
func (l *Limiter[K]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

func (l *Limiter[K]) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.burst, b.tokens+float64(d)/float64(l.every))
		b.at = now
	}
}

// makeRoomLocked forgets buckets when l tracks maxKeys: first every
// bucket that is full again (forgetting it changes nothing), then, if
// none is, arbitrary ones down to three quarters of maxKeys, so that the
// scan runs once per many new keys.
func (l *Limiter[K]) makeRoomLocked(now time.Time) {
	if len(l.buckets) < l.maxKeys {
		return
	}
	for k, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) <= l.maxKeys*3/4 {
			break
		}
		delete(l.buckets, k)
	}
}
