package directory

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/internal/daemon"
)

// memSource serves whatever was last put in it.
type memSource struct {
	mu   sync.Mutex
	data []byte
}

func (s *memSource) put(b []byte) { s.mu.Lock(); s.data = b; s.mu.Unlock() }

func (s *memSource) Fetch(context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.data == nil {
		return nil, errors.New("nothing yet")
	}
	return s.data, nil
}

func newPoller(t *testing.T, f *fixture, src Source, state string) *Poller {
	t.Helper()
	p, err := NewPoller(PollerConfig{Source: src, Verifier: f.verifier(), StatePath: state})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPollerRollback(t *testing.T) {
	f := newFixture(t)
	state := filepath.Join(t.TempDir(), "directory.state")
	s1 := f.sign(t)
	s2 := f.sign(t)
	src := &memSource{}
	p := newPoller(t, f, src, state)
	ctx := t.Context()

	if _, err := p.Current(); !errors.Is(err, ErrNoDirectory) {
		t.Fatalf("Current before any = %v, want ErrNoDirectory", err)
	}
	src.put(s2)
	if err := p.Refresh(ctx); err != nil {
		t.Fatalf("Refresh(serial 2) = %v", err)
	}
	src.put(s1)
	if err := p.Refresh(ctx); !errors.Is(err, ErrRollback) {
		t.Errorf("Refresh(serial 1 after 2) = %v, want ErrRollback", err)
	}
	if d, err := p.Current(); err != nil || d.Serial != 2 {
		t.Errorf("Current = serial %v, %v; want 2", serialOf(d), err)
	}
	src.put(s2)
	if err := p.Refresh(ctx); err != nil {
		t.Errorf("Refresh(same serial, same content) = %v", err)
	}
	// Re-signing the same content gives a different JWS (ECDSA is randomized)
	// but the same payload: still the same document.
	f.draft.Serial = 1
	if _, err := p.Accept(f.sign(t)); err != nil {
		t.Errorf("Accept(serial 2 re-signed) = %v", err)
	}

	// Same serial, different content.
	f.draft.Serial = 1
	if err := f.draft.AddMember(mustID(t, "PAS/GOV/3003"), "Intruder"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Accept(f.sign(t)); !errors.Is(err, ErrSerialConflict) {
		t.Errorf("Accept(serial 2, other content) = %v, want ErrSerialConflict", err)
	}

	// The state file is private and survives a restart: the old serial is
	// still refused, and the document in hand is available at once.
	fi, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state mode = %v, want 0600", fi.Mode().Perm())
	}
	p2 := newPoller(t, f, src, state)
	if d, err := p2.Current(); err != nil || d.Serial != 2 {
		t.Errorf("after restart Current = serial %v, %v; want 2", serialOf(d), err)
	}
	if _, err := p2.Accept(s1); !errors.Is(err, ErrRollback) {
		t.Errorf("after restart Accept(serial 1) = %v, want ErrRollback", err)
	}
	s3 := f.sign(t)
	if changed, err := p2.Accept(s3); err != nil || !changed {
		t.Errorf("Accept(serial 3) = %v, %v; want changed", changed, err)
	}
}

func serialOf(d *Document) any {
	if d == nil {
		return nil
	}
	return d.Serial
}

func TestPollerExpiry(t *testing.T) {
	f := newFixture(t)
	now := f.now
	v := f.verifier()
	v.Now = func() time.Time { return now }
	p, err := NewPoller(PollerConfig{Source: &memSource{}, Verifier: v, StatePath: filepath.Join(t.TempDir(), "state")})
	if err != nil {
		t.Fatal(err)
	}
	signed, _, err := f.draft.Sign(f.signer.Key, f.signer.Chain, f.now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Accept(signed); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Current(); err != nil {
		t.Fatalf("Current = %v", err)
	}
	now = now.Add(time.Hour)
	d, err := p.Current()
	if !errors.Is(err, ErrExpired) || d == nil {
		t.Errorf("Current after expiry = %v, %v; want the document and ErrExpired", d, err)
	}
	// An expired document is never accepted as new.
	if _, err := p.Accept(f.sign(t)); err != nil {
		t.Errorf("Accept(fresh) = %v", err)
	}
	f.now = f.now.Add(-48 * time.Hour)
	if _, err := p.Accept(f.sign(t)); !errors.Is(err, ErrExpired) {
		t.Errorf("Accept(expired, higher serial) = %v, want ErrExpired", err)
	}
}

// TestPollerServe runs the real handler on loopback: the poller picks up a
// new serial once the operator signs again.
func TestPollerServe(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	if err := InitDir(dir, f.draft); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	mux := daemon.NewMux(nil, nil)
	mux.Handle("GET /directory", NewHandler(dir, nil))
	go func() { done <- daemon.ServeHTTP(ctx, discardLogger(), ln, mux) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeHTTP = %v", err)
		}
	})
	url := "http://" + ln.Addr().String() + "/directory"

	p := newPoller(t, f, HTTPSource{URL: url}, filepath.Join(t.TempDir(), "state"))
	if err := p.Refresh(t.Context()); err == nil {
		t.Fatal("Refresh before any sign succeeded")
	}
	for want := uint64(1); want <= 2; want++ {
		if _, err := SignDir(dir, f.signer.Key, f.signer.Chain, f.now, 0); err != nil {
			t.Fatal(err)
		}
		if err := p.Refresh(t.Context()); err != nil {
			t.Fatalf("Refresh = %v", err)
		}
		if got := p.Status().Serial; got != want {
			t.Errorf("serial = %d, want %d", got, want)
		}
	}

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != MediaType {
		t.Errorf("Content-Type = %q, want %q", ct, MediaType)
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET = %d, want 304", resp2.StatusCode)
	}

	reg := prometheus.NewRegistry()
	if err := p.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if g := m.GetGauge(); g != nil {
				got[mf.GetName()] = g.GetValue()
			}
		}
	}
	if got["passerelle_directory_serial"] != 2 || got["passerelle_directory_expires_in_seconds"] <= 0 {
		t.Errorf("metrics = %v, want serial 2 and a positive expiry", got)
	}

	// Run follows a new sign by itself, and stops when its context ends.
	p.cfg.Interval = 20 * time.Millisecond
	rctx, rcancel := context.WithCancel(t.Context())
	rdone := make(chan error, 1)
	go func() { rdone <- p.Run(rctx) }()
	if _, err := SignDir(dir, f.signer.Key, f.signer.Chain, f.now, 0); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); p.Status().Serial != 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Run did not pick up serial 3 (have %d)", p.Status().Serial)
		}
	}
	rcancel()
	if err := <-rdone; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestFileSource(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	if err := InitDir(dir, f.draft); err != nil {
		t.Fatal(err)
	}
	if _, err := SignDir(dir, f.signer.Key, f.signer.Chain, f.now, 0); err != nil {
		t.Fatal(err)
	}
	p := newPoller(t, f, FileSource{Path: filepath.Join(dir, SignedFile)}, filepath.Join(t.TempDir(), "state"))
	if err := p.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh = %v", err)
	}
	if d, err := p.Current(); err != nil || d.Serial != 1 {
		t.Errorf("Current = %v, %v", serialOf(d), err)
	}
	// The draft remembers the serial: the next sign is 2, even from a new load.
	d, err := LoadDraft(dir)
	if err != nil || d.Serial != 1 {
		t.Fatalf("LoadDraft = serial %v, %v", d.Serial, err)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
