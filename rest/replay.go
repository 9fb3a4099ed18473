package rest

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

var (
	// ErrReplay reports a message id already accepted within the window.
	ErrReplay = errors.New("rest: replayed message")
	// ErrStale reports a signing time outside the allowed window.
	ErrStale = errors.New("rest: signing time outside the allowed window")
	// ErrReplayGuardFull reports that the guard holds its maximum number of
	// entries: it refuses new messages rather than forget seen ones.
	ErrReplayGuardFull = errors.New("rest: replay guard is full")
)

// ReplayGuardConfig configures a ReplayGuard.
type ReplayGuardConfig struct {
	// Window is the allowed clock skew, each way: a message signed more than
	// Window before or after now is refused (the federation's replay window).
	Window time.Duration
	// MaxEntries bounds memory; 0 means 1,000,000 (about 100 MB at most).
	MaxEntries int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ReplayGuard refuses a signed message whose (client, id) it has already
// accepted, or whose signing time is outside the window. It remembers an
// entry for twice the window after accepting it – long enough that a replay
// of it would be refused as stale by then – and forgets it afterwards, so
// memory is bounded by the message rate over 2×Window and by MaxEntries.
// It is safe for concurrent use.
type ReplayGuard struct {
	cfg   ReplayGuardConfig
	mu    sync.Mutex
	seen  map[string]struct{}
	queue []replayEntry // in acceptance order, so expiry order
	head  int
}

type replayEntry struct {
	key     string
	expires time.Time
}

// NewReplayGuard returns a guard; cfg.Window must be positive.
func NewReplayGuard(cfg ReplayGuardConfig) (*ReplayGuard, error) {
	if cfg.Window <= 0 {
		return nil, fmt.Errorf("rest: replay window must be positive, got %v", cfg.Window)
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 1_000_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &ReplayGuard{cfg: cfg, seen: make(map[string]struct{})}, nil
}

// Check accepts a message of client (any stable string, e.g. the
// X-Road-Client identifier) with id signed at signedAt, or refuses it with
// ErrStale, ErrReplay or ErrReplayGuardFull. Call it only after the
// signature has verified: an accepted id stays taken.
func (g *ReplayGuard) Check(client, id string, signedAt time.Time) error {
	now := g.cfg.Now()
	if d := now.Sub(signedAt); d > g.cfg.Window || d < -g.cfg.Window {
		return fmt.Errorf("%w: signed at %s, now %s, window %v", ErrStale,
			signedAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), g.cfg.Window)
	}
	key := client + "\x00" + id
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expire(now)
	if _, ok := g.seen[key]; ok {
		return ErrReplay
	}
	if len(g.seen) >= g.cfg.MaxEntries {
		return ErrReplayGuardFull
	}
	g.seen[key] = struct{}{}
	g.queue = append(g.queue, replayEntry{key: key, expires: now.Add(2*g.cfg.Window + time.Second)})
	return nil
}

// Len returns the number of remembered entries.
func (g *ReplayGuard) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.seen)
}

func (g *ReplayGuard) expire(now time.Time) {
	for g.head < len(g.queue) && !g.queue[g.head].expires.After(now) {
		delete(g.seen, g.queue[g.head].key)
		g.queue[g.head] = replayEntry{}
		g.head++
	}
	// Compact once the dead prefix dominates, so the slice does not grow
	// without bound.
	if g.head > 1024 && g.head*2 > len(g.queue) {
		n := copy(g.queue, g.queue[g.head:])
		clear(g.queue[n:])
		g.queue = g.queue[:n]
		g.head = 0
	}
}
