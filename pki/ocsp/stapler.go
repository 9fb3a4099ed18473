package ocsp

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// StaplerConfig configures NewStapler.
type StaplerConfig struct {
	Cert   *x509.Certificate // the server's own certificate
	Issuer *x509.Certificate // its issuer
	URL    string            // responder URL; "" = the one Cert names
	Client *Client           // nil = NewClient with MaxAge
	// MaxAge is the freshness limit receivers apply; 0 = the client's.
	MaxAge time.Duration
	// RefreshAt is the age at which a new response is fetched; 0 = MaxAge/2.
	// A response whose nextUpdate comes sooner is refreshed half-way to it.
	RefreshAt time.Duration
	// RetryMin and RetryMax bound the back-off between failed fetches;
	// 0 = 1 s and RefreshAt/8.
	RetryMin, RetryMax time.Duration
	Log                *slog.Logger // nil = discard
}

// Stapler keeps a fresh OCSP response for a server's own certificate, to
// attach to every message it sends. Run refreshes it in the background;
// Staple hands out the current one. Safe for concurrent use.
type Stapler struct {
	cfg    StaplerConfig
	client *Client
	log    *slog.Logger

	mu      sync.RWMutex
	current *Response // last good response
	lastErr error     // last fetch failure, nil after a success
}

// NewStapler checks cfg and returns a Stapler holding no response yet.
func NewStapler(cfg StaplerConfig) (*Stapler, error) {
	if cfg.Cert == nil || cfg.Issuer == nil {
		return nil, errors.New("ocsp: stapler needs Cert and Issuer")
	}
	if cfg.URL == "" {
		u, err := ResponderURL(cfg.Cert)
		if err != nil {
			return nil, fmt.Errorf("ocsp: stapler: %w; set the responder URL", err)
		}
		cfg.URL = u
	}
	if cfg.Client == nil {
		cfg.Client = NewClient(ClientConfig{MaxAge: cfg.MaxAge})
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = cfg.Client.MaxAge()
	}
	if cfg.RefreshAt <= 0 || cfg.RefreshAt > cfg.MaxAge {
		cfg.RefreshAt = cfg.MaxAge / 2
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = max(cfg.RetryMin, cfg.RefreshAt/8)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Stapler{cfg: cfg, client: cfg.Client, log: cfg.Log}, nil
}

// Refresh fetches a new response now. A good one replaces the current; on
// failure the current one is kept, for as long as it stays fresh, and the
// error is returned and remembered; a revoked answer drops the current one.
func (s *Stapler) Refresh(ctx context.Context) error {
	r, err := s.client.Fetch(ctx, s.cfg.Cert, s.cfg.Issuer, s.cfg.URL)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastErr = err
		if errors.Is(err, ErrRevoked) {
			s.current = nil // never staple a good answer we know is outdated
		}
		return err
	}
	s.current, s.lastErr = r, nil
	return nil
}

// Staple returns the current response's DER if it is fresh (under MaxAge
// and before nextUpdate), or an error wrapping ErrStale (and the last fetch
// failure, if any): past freshness the server fails closed.
func (s *Stapler) Staple() ([]byte, error) {
	s.mu.RLock()
	cur, lastErr := s.current, s.lastErr
	s.mu.RUnlock()
	if cur == nil {
		if lastErr != nil {
			return nil, fmt.Errorf("%w: no OCSP response yet: %w", ErrStale, lastErr)
		}
		return nil, fmt.Errorf("%w: no OCSP response yet", ErrStale)
	}
	if err := cur.CheckFresh(s.client.now(), s.cfg.MaxAge); err != nil {
		if lastErr != nil {
			return nil, fmt.Errorf("%w (last refresh: %w)", err, lastErr)
		}
		return nil, err
	}
	return cur.Raw, nil
}

// Current returns the last good response (nil if none) and the last fetch
// error (nil after a success).
func (s *Stapler) Current() (*Response, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.current, s.lastErr
}

// Age is the current response's age, or -1 when there is none; servers
// export it as a metric.
func (s *Stapler) Age() time.Duration {
	s.mu.RLock()
	cur := s.current
	s.mu.RUnlock()
	if cur == nil {
		return -1
	}
	return cur.Age(s.client.now())
}

// nextRefresh is when the current response should be replaced.
func (s *Stapler) nextRefresh() time.Time {
	s.mu.RLock()
	cur := s.current
	s.mu.RUnlock()
	if cur == nil {
		return time.Time{}
	}
	at := cur.ThisUpdate.Add(s.cfg.RefreshAt)
	if !cur.NextUpdate.IsZero() {
		if half := cur.ThisUpdate.Add(cur.NextUpdate.Sub(cur.ThisUpdate) / 2); half.Before(at) {
			at = half
		}
	}
	return at
}

// Run refreshes the response until ctx ends: at once, then whenever the
// current response reaches RefreshAt, retrying failures with exponential
// back-off. It returns ctx's error.
func (s *Stapler) Run(ctx context.Context) error {
	backoff := s.cfg.RetryMin
	for {
		var wait time.Duration
		if err := s.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.log.Warn("ocsp staple refresh failed", "url", s.cfg.URL, "age", s.Age().String(), "err", err, "retry_in", backoff.String())
			wait = backoff
			backoff = min(2*backoff, s.cfg.RetryMax)
		} else {
			backoff = s.cfg.RetryMin
			wait = max(s.nextRefresh().Sub(s.client.now()), s.cfg.RetryMin)
			s.log.Debug("ocsp staple refreshed", "url", s.cfg.URL, "next_in", wait.String())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
