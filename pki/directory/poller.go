package directory

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/pki"
)

var (
	// ErrRollback reports a directory older than the one already accepted.
	ErrRollback = errors.New("directory: older serial than the one accepted (rollback refused)")
	// ErrSerialConflict reports a directory with the serial already accepted
	// but a different content: the operator (or an attacker) signed two
	// documents with one serial.
	ErrSerialConflict = errors.New("directory: same serial, different content")
	// ErrNoDirectory reports that no directory has been accepted yet.
	ErrNoDirectory = errors.New("directory: no directory accepted yet")
)

// Source gives the current signed directory. Implementations must be safe
// for concurrent use.
type Source interface {
	Fetch(ctx context.Context) ([]byte, error)
}

// HTTPSource fetches the directory from a `passerelle directory serve` URL
// (…/directory). Client nil means a client with a 30 s timeout.
type HTTPSource struct {
	URL    string
	Client *http.Client
}

// Fetch implements Source.
func (s HTTPSource) Fetch(ctx context.Context) ([]byte, error) { return Fetch(ctx, s.Client, s.URL) }

// FileSource reads the directory from a local file, for a server configured
// with a file instead of a URL.
type FileSource struct{ Path string }

// Fetch implements Source.
func (s FileSource) Fetch(context.Context) ([]byte, error) {
	data, err := readLimited(s.Path)
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	return data, nil
}

var defaultClient = &http.Client{Timeout: 30 * time.Second}

// Fetch GETs a signed directory from url. It verifies nothing: hand the
// result to Poller.Accept or Verifier.Verify.
func Fetch(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	if client == nil {
		client = defaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("directory: fetch: %w", err)
	}
	req.Header.Set("Accept", MediaType)
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("directory: fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("directory: fetch %s: HTTP %d", url, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("directory: fetch: %w", err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrMalformed, MaxSize)
	}
	return data, nil
}

// PollerConfig configures a Poller. Source, Verifier and StatePath are required.
type PollerConfig struct {
	Source   Source
	Verifier *Verifier
	// StatePath is the local file holding the highest serial accepted and
	// that document (written 0600, atomically, before a document is used),
	// so that a restart cannot roll the server back.
	StatePath string
	// Interval between fetches; zero means the document's pollIntervalSeconds
	// (default 60 s).
	Interval time.Duration
	Logger   *slog.Logger // nil: discard
}

// Poller keeps a security server's copy of the directory current. Current
// is lock-free (an atomic pointer); Accept and Refresh serialize. A Poller is
// safe for concurrent use.
type Poller struct {
	cfg PollerConfig
	log *slog.Logger

	mu     sync.Mutex // serializes Accept and guards floor
	floor  stateFile  // the highest serial accepted, persisted
	cur    atomic.Pointer[Document]
	lastOK atomic.Int64 // unix nanos of the last successful refresh

	fetches *prometheus.CounterVec
}

// stateFile is what StatePath holds.
type stateFile struct {
	Serial        uint64 `json:"serial"`
	PayloadSHA256 string `json:"payloadSha256"`
	Signed        string `json:"signed"`
}

// NewPoller loads the state file when there is one: its serial becomes the
// floor below which nothing is accepted, and its document becomes current
// when it still verifies (even when expired: Current then says ErrExpired).
func NewPoller(cfg PollerConfig) (*Poller, error) {
	switch {
	case cfg.Source == nil:
		return nil, errors.New("directory: poller: Source is required")
	case cfg.Verifier == nil:
		return nil, errors.New("directory: poller: Verifier is required")
	case cfg.StatePath == "":
		return nil, errors.New("directory: poller: StatePath is required")
	}
	p := &Poller{cfg: cfg, log: cfg.Logger}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.fetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "passerelle_directory_refreshes_total",
		Help: "Directory refreshes by result (updated, unchanged, error).",
	}, []string{"result"})
	data, err := readLimited(cfg.StatePath)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("directory: state: %w", err)
	}
	if err := json.Unmarshal(data, &p.floor); err != nil {
		return nil, fmt.Errorf("directory: state %s: %w", cfg.StatePath, err)
	}
	d, payload, err := cfg.Verifier.verify([]byte(p.floor.Signed))
	switch {
	case err == nil || errors.Is(err, ErrExpired):
		if d.Serial != p.floor.Serial || digest(payload) != p.floor.PayloadSHA256 {
			return nil, fmt.Errorf("directory: state %s: the stored document does not match the stored serial", cfg.StatePath)
		}
		p.cur.Store(d)
	default:
		// Keep the floor: a restart must never lower it.
		p.log.Warn("stored directory no longer verifies", "serial", p.floor.Serial, "err", err)
	}
	return p, nil
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Current returns the directory in hand. ErrNoDirectory when none has been
// accepted; when it has expired, the document with an ErrExpired error — a
// server must then refuse traffic.
func (p *Poller) Current() (*Document, error) {
	d := p.cur.Load()
	if d == nil {
		return nil, ErrNoDirectory
	}
	if d.Expired(p.cfg.Verifier.now()) {
		return d, fmt.Errorf("%w: serial %d expired at %s", ErrExpired, d.Serial, d.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return d, nil
}

// Accept verifies a signed directory and makes it current when its serial is
// above the one in hand (persisting it first). The same serial with the same
// content is a no-op; an older serial is ErrRollback, the same serial with a
// different content ErrSerialConflict. It reports whether the document
// changed.
func (p *Poller) Accept(signed []byte) (changed bool, err error) {
	d, payload, err := p.cfg.Verifier.verify(signed)
	if err != nil {
		return false, err
	}
	sum := digest(payload)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case d.Serial < p.floor.Serial:
		return false, fmt.Errorf("%w: got %d, have %d", ErrRollback, d.Serial, p.floor.Serial)
	case d.Serial == p.floor.Serial && sum != p.floor.PayloadSHA256:
		return false, fmt.Errorf("%w: serial %d", ErrSerialConflict, d.Serial)
	case d.Serial == p.floor.Serial:
		if p.cur.Load() == nil {
			p.cur.Store(d)
		}
		return false, nil
	}
	next := stateFile{Serial: d.Serial, PayloadSHA256: sum, Signed: string(bytes.TrimSpace(signed))}
	data, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return false, err
	}
	if err := pki.WriteFileAtomic(p.cfg.StatePath, append(data, '\n'), 0o600); err != nil {
		return false, fmt.Errorf("directory: persist state: %w", err)
	}
	p.floor = next
	p.cur.Store(d)
	p.log.Info("directory updated", "serial", d.Serial, "issuedAt", d.IssuedAt, "expiresAt", d.ExpiresAt)
	return true, nil
}

// Refresh fetches the directory once and accepts it.
func (p *Poller) Refresh(ctx context.Context) error {
	signed, err := p.cfg.Source.Fetch(ctx)
	if err == nil {
		var changed bool
		changed, err = p.Accept(signed)
		if err == nil {
			p.lastOK.Store(p.cfg.Verifier.now().UnixNano())
			if changed {
				p.fetches.WithLabelValues("updated").Inc()
			} else {
				p.fetches.WithLabelValues("unchanged").Inc()
			}
			return nil
		}
	}
	p.fetches.WithLabelValues("error").Inc()
	return err
}

// Interval is the wait before the next fetch.
func (p *Poller) Interval() time.Duration {
	if p.cfg.Interval > 0 {
		return p.cfg.Interval
	}
	if d := p.cur.Load(); d != nil {
		return d.Params.PollInterval()
	}
	return DefaultPollInterval
}

// Run refreshes at once, then every Interval, until ctx ends; it logs
// failures and keeps going (the copy in hand serves until it expires).
func (p *Poller) Run(ctx context.Context) error {
	for {
		if err := p.Refresh(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("directory refresh failed", "err", err)
		}
		t := time.NewTimer(p.Interval())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Status is what a server reports about its directory (for metrics and /healthz).
type Status struct {
	Serial      uint64
	IssuedAt    time.Time
	ExpiresAt   time.Time
	LastSuccess time.Time // zero before the first successful refresh
}

// Status reports the directory in hand.
func (p *Poller) Status() Status {
	var s Status
	if d := p.cur.Load(); d != nil {
		s.Serial, s.IssuedAt, s.ExpiresAt = d.Serial, d.IssuedAt, d.ExpiresAt
	}
	if n := p.lastOK.Load(); n != 0 {
		s.LastSuccess = time.Unix(0, n)
	}
	return s
}

// RegisterMetrics registers the poller's metrics: passerelle_directory_serial,
// _age_seconds, _expires_in_seconds and _refreshes_total{result}.
func (p *Poller) RegisterMetrics(reg prometheus.Registerer) error {
	gauge := func(name, help string, f func(Status, time.Time) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			s := p.Status()
			if s.Serial == 0 {
				return 0
			}
			return f(s, p.cfg.Verifier.now())
		})
	}
	for _, c := range []prometheus.Collector{
		gauge("passerelle_directory_serial", "Serial of the directory in hand (0: none).",
			func(s Status, _ time.Time) float64 { return float64(s.Serial) }),
		gauge("passerelle_directory_age_seconds", "Seconds since the directory in hand was issued.",
			func(s Status, now time.Time) float64 { return now.Sub(s.IssuedAt).Seconds() }),
		gauge("passerelle_directory_expires_in_seconds", "Seconds until the directory in hand expires (negative: expired).",
			func(s Status, now time.Time) float64 { return s.ExpiresAt.Sub(now).Seconds() }),
		p.fetches,
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("directory: metrics: %w", err)
		}
	}
	return nil
}
