package ocsp

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
	xocsp "golang.org/x/crypto/ocsp"
)

// makeResponse signs a response about serial as if from issuer, with the
// given responder certificate (embedded unless it is nil) and key.
func makeResponse(t testing.TB, issuer, responder *x509.Certificate, key crypto.Signer, serial *big.Int, status int, thisUpdate, nextUpdate time.Time) []byte {
	t.Helper()
	tmpl := xocsp.Response{Status: status, SerialNumber: serial, ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	nameCert := responder
	if responder == nil {
		nameCert = issuer
	} else {
		tmpl.Certificate = responder
	}
	der, err := xocsp.CreateResponse(issuer, nameCert, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestParseAndVerify(t *testing.T) {
	ca := pkitest.NewCA(t, "Test CA")
	other := pkitest.NewCA(t, "Other CA")
	leaf := ca.Issue(t, member, pki.UsageSign)
	delegate := ca.Issue(t, member, pki.UsageOCSP)
	expiredDelegate := ca.Issue(t, member, pki.UsageOCSP, pkitest.WithValidity(time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)))
	sameCANonOCSP := ca.Issue(t, member, pki.UsageAuth)
	otherOCSP := other.Issue(t, member, pki.UsageOCSP)
	now := time.Now()
	this, next := now.Add(-time.Minute), now.Add(time.Hour)
	s := leaf.Cert.SerialNumber
	tests := []struct {
		name    string
		der     []byte
		want    error
		maxAge  time.Duration
		wantSig *x509.Certificate
	}{
		{"signed by the CA", makeResponse(t, ca.Cert, nil, ca.Key, s, xocsp.Good, this, next), nil, 0, ca.Cert},
		{"CA cert embedded", makeResponse(t, ca.Cert, ca.Cert, ca.Key, s, xocsp.Good, this, next), nil, 0, ca.Cert},
		{"delegated signer", makeResponse(t, ca.Cert, delegate.Cert, delegate.Key, s, xocsp.Good, this, next), nil, 0, delegate.Cert},
		{"no nextUpdate", makeResponse(t, ca.Cert, nil, ca.Key, s, xocsp.Good, this, time.Time{}), nil, 0, ca.Cert},
		{"revoked", makeResponse(t, ca.Cert, nil, ca.Key, s, xocsp.Revoked, this, next), ErrRevoked, 0, ca.Cert},
		{"unknown", makeResponse(t, ca.Cert, nil, ca.Key, s, xocsp.Unknown, this, next), ErrUnknownCert, 0, ca.Cert},
		{"other CA's OCSP cert", makeResponse(t, ca.Cert, otherOCSP.Cert, otherOCSP.Key, s, xocsp.Good, this, next), ErrUnauthorizedResponder, 0, nil},
		{"same CA, no OCSP EKU", makeResponse(t, ca.Cert, sameCANonOCSP.Cert, sameCANonOCSP.Key, s, xocsp.Good, this, next), ErrUnauthorizedResponder, 0, nil},
		{"other CA's key, no cert", makeResponse(t, ca.Cert, other.Cert, other.Key, s, xocsp.Good, this, next), ErrUnauthorizedResponder, 0, nil},
		{"other CA itself", makeResponse(t, other.Cert, nil, other.Key, s, xocsp.Good, this, next), ErrUnauthorizedResponder, 0, nil},
		{"leaf signs for itself", makeResponse(t, ca.Cert, leaf.Cert, leaf.Key, s, xocsp.Good, this, next), ErrUnauthorizedResponder, 0, nil},
		{"expired delegate", makeResponse(t, ca.Cert, expiredDelegate.Cert, expiredDelegate.Key, s, xocsp.Good, this, next), ErrUnauthorizedResponder, 0, nil},
		{"names the CA, wrong key", forgeNamedResponse(t, ca, other, s, this, next), ErrBadResponse, 0, nil},
		{"about another issuer's cert", makeResponse(t, other.Cert, ca.Cert, ca.Key, s, xocsp.Good, this, next), ErrBadResponse, 0, nil},
		{"other serial", makeResponse(t, ca.Cert, nil, ca.Key, big.NewInt(7), xocsp.Good, this, next), ErrBadResponse, 0, nil},
		{"older than max age", makeResponse(t, ca.Cert, nil, ca.Key, s, xocsp.Good, now.Add(-2*time.Hour), now.Add(time.Hour)), ErrStale, 0, nil},
		{"older than custom max age", makeResponse(t, ca.Cert, nil, ca.Key, s, xocsp.Good, now.Add(-11*time.Minute), next), ErrStale, 10 * time.Minute, nil},
		{"past nextUpdate", makeResponse(t, ca.Cert, nil, ca.Key, s, xocsp.Good, now.Add(-30*time.Minute), now.Add(-time.Minute)), ErrStale, 0, nil},
		{"thisUpdate in the future", makeResponse(t, ca.Cert, nil, ca.Key, s, xocsp.Good, now.Add(time.Hour), now.Add(2*time.Hour)), ErrStale, 0, nil},
		{"garbage", []byte("garbage"), ErrBadResponse, 0, nil},
		{"error status", xocsp.TryLaterErrorResponse, ErrBadResponse, 0, nil},
		{"empty", nil, ErrBadResponse, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseAndVerify(tt.der, leaf.Cert, ca.Cert, now, tt.maxAge)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("ParseAndVerify() error = %v, want %v", err, tt.want)
			}
			if tt.wantSig != nil && (r == nil || !r.Signer.Equal(tt.wantSig)) {
				t.Fatalf("ParseAndVerify() = %+v, want a response signed by %s", r, tt.wantSig.Subject)
			}
			if tt.wantSig == nil && r != nil {
				t.Fatalf("ParseAndVerify() returned a response with error %v", err)
			}
		})
	}
}

// forgeNamedResponse makes a response whose responder ID names ca but
// which wrong's key signed.
func forgeNamedResponse(t testing.TB, ca, wrong *pkitest.CA, serial *big.Int, this, next time.Time) []byte {
	t.Helper()
	der, err := xocsp.CreateResponse(ca.Cert, ca.Cert, xocsp.Response{Status: xocsp.Good, SerialNumber: serial, ThisUpdate: this, NextUpdate: next}, wrong.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestClientFetchAndCache(t *testing.T) {
	f := newFixture(t, true)
	clock := newFakeClock()
	c := NewClient(ClientConfig{Now: clock.Now, MaxAge: 10 * time.Minute})
	leaf := f.issue(t, &Status{Status: Good})

	r, err := c.Status(t.Context(), leaf.Cert, f.ca.Cert)
	if err != nil || r.Status != Good {
		t.Fatalf("Status() = %v, %v; want good", r, err)
	}
	hits := f.hits.Load()
	if _, err := c.Status(t.Context(), leaf.Cert, f.ca.Cert); err != nil || f.hits.Load() != hits {
		t.Fatalf("second Status(): err %v, responder hits %d -> %d; want served from cache", err, hits, f.hits.Load())
	}
	// Past the freshness limit, the client asks again and sees the revocation.
	f.src.set(leaf.Cert.SerialNumber, Status{Status: Revoked, RevokedAt: time.Now(), Reason: xocsp.KeyCompromise})
	clock.Add(11 * time.Minute)
	f.resp.cfg.Now = clock.Now // the responder's clock moves too
	f.resp.now = clock.Now
	if _, err := c.Status(t.Context(), leaf.Cert, f.ca.Cert); !errors.Is(err, ErrRevoked) || f.hits.Load() != hits+1 {
		t.Fatalf("Status() after max age: %v (hits %d), want ErrRevoked from a new fetch", err, f.hits.Load()-hits)
	}

	t.Run("no responder URL", func(t *testing.T) {
		bare := f.ca.Issue(t, member, pki.UsageSign)
		if _, err := c.Status(t.Context(), bare.Cert, f.ca.Cert); !errors.Is(err, ErrNoResponder) {
			t.Fatalf("Status() = %v, want ErrNoResponder", err)
		}
	})
	t.Run("responder down", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		if _, err := Fetch(t.Context(), leaf.Cert, f.ca.Cert, dead.URL); err == nil {
			t.Fatal("Fetch from a closed server succeeded")
		}
	})
	t.Run("HTTP error", func(t *testing.T) {
		if _, err := Fetch(t.Context(), leaf.Cert, f.ca.Cert, f.srv.URL+"/elsewhere"); err == nil {
			t.Fatal("Fetch from a 404 succeeded")
		}
	})
}

func TestStapler(t *testing.T) {
	f := newFixture(t, false)
	clock := newFakeClock()
	leaf := f.issue(t, &Status{Status: Good})
	s, err := NewStapler(StaplerConfig{Cert: leaf.Cert, Issuer: f.ca.Cert, Client: NewClient(ClientConfig{Now: clock.Now})})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Staple(); !errors.Is(err, ErrStale) {
		t.Fatalf("Staple() before any fetch = %v, want ErrStale", err)
	}
	if s.Age() != -1 {
		t.Errorf("Age() before any fetch = %v, want -1", s.Age())
	}
	if err := s.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	der, err := s.Staple()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseAndVerify(der, leaf.Cert, f.ca.Cert, clock.Now(), 0); err != nil {
		t.Fatalf("stapled response does not verify: %v", err)
	}

	// The responder goes down: the last good response stays in use while fresh.
	f.srv.Close()
	clock.Add(40 * time.Minute)
	if err := s.Refresh(t.Context()); err == nil {
		t.Fatal("Refresh() with the responder down succeeded")
	}
	if got, err := s.Staple(); err != nil || string(got) != string(der) {
		t.Fatalf("Staple() while responder down = %v; want the last good response", err)
	}
	if age := s.Age(); age < 40*time.Minute {
		t.Errorf("Age() = %v, want at least 40m", age)
	}
	// Past the freshness limit it fails closed.
	clock.Add(30 * time.Minute)
	if _, err := s.Staple(); !errors.Is(err, ErrStale) {
		t.Fatalf("Staple() past freshness = %v, want ErrStale", err)
	}
}

func TestStaplerRunRefreshes(t *testing.T) {
	f := newFixture(t, false)
	f.resp.cfg.CacheFor = -1 // a cached response could be older than the 2 s limit
	leaf := f.issue(t, &Status{Status: Good})
	// A 2 s freshness limit makes Run refresh about every second.
	s, err := NewStapler(StaplerConfig{Cert: leaf.Cert, Issuer: f.ca.Cert, MaxAge: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for f.hits.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := f.hits.Load(); n < 3 {
		t.Fatalf("responder asked %d times, want Run to keep refreshing", n)
	}
	if _, err := s.Staple(); err != nil {
		t.Errorf("Staple() while running = %v", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run() = %v, want context.Canceled", err)
	}
}

func TestStaplerDropsRevoked(t *testing.T) {
	f := newFixture(t, false)
	leaf := f.issue(t, &Status{Status: Good})
	s, err := NewStapler(StaplerConfig{Cert: leaf.Cert, Issuer: f.ca.Cert})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.src.set(leaf.Cert.SerialNumber, Status{Status: Revoked, RevokedAt: time.Now()})
	if err := s.Refresh(t.Context()); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Refresh() = %v, want ErrRevoked", err)
	}
	if _, err := s.Staple(); !errors.Is(err, ErrStale) || !errors.Is(err, ErrRevoked) {
		t.Fatalf("Staple() after revocation = %v, want ErrStale wrapping ErrRevoked", err)
	}
}
