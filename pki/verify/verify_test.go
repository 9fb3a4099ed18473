package verify

import (
	"context"
	"crypto/x509"
	"errors"
	"math/big"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ocsp"
	"github.com/passerelle/passerelle/pki/pkitest"
	xocsp "golang.org/x/crypto/ocsp"
)

var member = pki.ClientID{Instance: "TEST", Class: "GOV", Member: "1234"}

type memSource struct {
	mu sync.Mutex
	m  map[string]ocsp.Status
}

func (s *memSource) set(serial *big.Int, st ocsp.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[serial.String()] = st
}

func (s *memSource) OCSPStatus(_ context.Context, serial *big.Int) (ocsp.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.m[serial.String()]; ok {
		return st, nil
	}
	return ocsp.Status{Status: ocsp.Unknown}, nil
}

// env is a CA with a real OCSP responder on loopback.
type env struct {
	ca   *pkitest.CA
	src  *memSource
	url  string
	resp *ocsp.Responder
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{ca: pkitest.NewCA(t, "Test CA"), src: &memSource{m: map[string]ocsp.Status{}}}
	signer := e.ca.Issue(t, member, pki.UsageOCSP)
	r, err := ocsp.NewResponder(ocsp.ResponderConfig{Issuer: e.ca.Cert, Signer: signer.Key, SignerCert: signer.Cert, Source: e.src, CacheFor: -1})
	if err != nil {
		t.Fatal(err)
	}
	e.resp = r
	srv := httptest.NewServer(r.Route(nil))
	t.Cleanup(srv.Close)
	e.url = srv.URL + "/ocsp"
	return e
}

// issue makes a certificate, records its status, and returns it with a
// fresh OCSP response fetched from the responder.
func (e *env) issue(t testing.TB, m pki.ClientID, usage pki.Usage, st ocsp.CertStatus, opts ...pkitest.IssueOption) (*pkitest.Leaf, []byte) {
	t.Helper()
	opts = append([]pkitest.IssueOption{pkitest.WithOCSPServer(e.url)}, opts...)
	l := e.ca.Issue(t, m, usage, opts...)
	e.src.set(l.Cert.SerialNumber, ocsp.Status{Status: st, RevokedAt: time.Now().Add(-time.Minute), Reason: xocsp.KeyCompromise})
	reqDER, err := xocsp.CreateRequest(l.Cert, e.ca.Cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := e.resp.Respond(t.Context(), reqDER)
	return l, der
}

func TestVerify(t *testing.T) {
	e := newEnv(t)
	other := pkitest.NewCA(t, "Other CA")
	v, err := New(Config{Roots: e.ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	past, future := time.Now().Add(-48*time.Hour), time.Now().Add(48*time.Hour)

	sign, signOCSP := e.issue(t, member, pki.UsageSign, ocsp.Good)
	auth, authOCSP := e.issue(t, member, pki.UsageAuth, ocsp.Good)
	tsa, tsaOCSP := e.issue(t, member, pki.UsageTSA, ocsp.Good)
	expired, expiredOCSP := e.issue(t, member, pki.UsageSign, ocsp.Good, pkitest.WithValidity(past, past.Add(time.Hour)))
	notYet, notYetOCSP := e.issue(t, member, pki.UsageSign, ocsp.Good, pkitest.WithValidity(future, future.Add(time.Hour)))
	revoked, revokedOCSP := e.issue(t, member, pki.UsageSign, ocsp.Revoked)
	unknown, unknownOCSP := e.issue(t, member, pki.UsageSign, ocsp.Unknown)
	noMember, noMemberOCSP := e.issue(t, pki.ClientID{}, pki.UsageSign, ocsp.Good)
	foreign := other.Issue(t, member, pki.UsageSign)
	foreignOCSP := signedBy(t, other.Cert, other, foreign.Cert, time.Now())
	staleOCSP := signedBy(t, e.ca.Cert, e.ca, sign.Cert, time.Now().Add(-2*time.Hour))
	otherSignerOCSP := signedBy(t, e.ca.Cert, other, sign.Cert, time.Now())

	tests := []struct {
		name  string
		chain []*x509.Certificate
		ocsp  []byte
		usage pki.Usage
		want  error
	}{
		{"sign", sign.Chain, signOCSP, pki.UsageSign, nil},
		{"leaf only", sign.Chain[:1], signOCSP, pki.UsageSign, nil},
		{"auth", auth.Chain, authOCSP, pki.UsageAuth, nil},
		{"tsa", tsa.Chain, tsaOCSP, pki.UsageTSA, nil},
		{"sign cert for auth", sign.Chain, signOCSP, pki.UsageAuth, ErrWrongUsage},
		{"auth cert for signing", auth.Chain, authOCSP, pki.UsageSign, ErrWrongUsage},
		{"sign cert for tsa", sign.Chain, signOCSP, pki.UsageTSA, ErrWrongUsage},
		{"unknown usage", sign.Chain, signOCSP, pki.Usage("bogus"), ErrWrongUsage},
		{"expired", expired.Chain, expiredOCSP, pki.UsageSign, ErrExpired},
		{"not yet valid", notYet.Chain, notYetOCSP, pki.UsageSign, ErrNotYetValid},
		{"revoked", revoked.Chain, revokedOCSP, pki.UsageSign, ErrRevoked},
		{"unknown to OCSP", unknown.Chain, unknownOCSP, pki.UsageSign, ErrOCSPUnknown},
		{"other CA", foreign.Chain, foreignOCSP, pki.UsageSign, ErrUntrusted},
		{"no chain", nil, signOCSP, pki.UsageSign, ErrUntrusted},
		{"no member", noMember.Chain, noMemberOCSP, pki.UsageSign, ErrNoMemberID},
		{"no OCSP response", sign.Chain, nil, pki.UsageSign, ErrStaleOCSP},
		{"stale OCSP", sign.Chain, staleOCSP, pki.UsageSign, ErrStaleOCSP},
		{"OCSP for another cert", sign.Chain, authOCSP, pki.UsageSign, ErrBadOCSP},
		{"OCSP by unauthorised key", sign.Chain, otherSignerOCSP, pki.UsageSign, ErrUnauthorizedResponder},
		{"garbage OCSP", sign.Chain, []byte("junk"), pki.UsageSign, ErrBadOCSP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // the second time through the caches
				got, err := v.Verify(t.Context(), tt.chain, tt.ocsp, tt.usage)
				if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
					t.Fatalf("Verify() error = %v, want %v", err, tt.want)
				}
				if testing.Verbose() && err != nil {
					t.Log(err)
				}
				if err == nil && got != member {
					t.Fatalf("Verify() = %v, want %v", got, member)
				}
			}
		})
	}

	t.Run("revoked reason", func(t *testing.T) {
		_, err := v.Verify(t.Context(), revoked.Chain, revokedOCSP, pki.UsageSign)
		var re *ocsp.RevokedError
		if !errors.As(err, &re) || re.Reason != xocsp.KeyCompromise {
			t.Fatalf("Verify() = %v, want *ocsp.RevokedError with keyCompromise", err)
		}
	})
}

// signedBy makes a good response about cert in issuer's name, signed by
// signer's key (no certificate embedded), produced at thisUpdate.
func signedBy(t testing.TB, issuer *x509.Certificate, signer *pkitest.CA, cert *x509.Certificate, thisUpdate time.Time) []byte {
	t.Helper()
	der, err := xocsp.CreateResponse(issuer, signer.Cert, xocsp.Response{
		Status: xocsp.Good, SerialNumber: cert.SerialNumber, ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(3 * time.Hour),
	}, signer.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestVerifyCacheHonoursClock(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	clock := func() time.Time { return now }
	v, err := New(Config{Roots: e.ca.Pool(), Now: func() time.Time { return clock() }})
	if err != nil {
		t.Fatal(err)
	}
	leaf, der := e.issue(t, member, pki.UsageSign, ocsp.Good, pkitest.WithValidity(now.Add(-time.Hour), now.Add(2*time.Hour)))
	if _, err := v.Verify(t.Context(), leaf.Chain, der, pki.UsageSign); err != nil {
		t.Fatal(err)
	}
	// An hour and a half later the cached response is stale...
	clock = func() time.Time { return now.Add(90 * time.Minute) }
	if _, err := v.Verify(t.Context(), leaf.Chain, der, pki.UsageSign); !errors.Is(err, ErrStaleOCSP) {
		t.Fatalf("Verify() 90 min later = %v, want ErrStaleOCSP", err)
	}
	// ...and three hours later the cached chain has expired.
	clock = func() time.Time { return now.Add(3 * time.Hour) }
	if _, err := v.Verify(t.Context(), leaf.Chain, der, pki.UsageSign); !errors.Is(err, ErrExpired) {
		t.Fatalf("Verify() 3 h later = %v, want ErrExpired", err)
	}
}

func TestVerifyFetchesWhenConfigured(t *testing.T) {
	e := newEnv(t)
	v, err := New(Config{Roots: e.ca.Pool(), FetchOCSP: ocsp.NewClient(ocsp.ClientConfig{})})
	if err != nil {
		t.Fatal(err)
	}
	good, _ := e.issue(t, member, pki.UsageAuth, ocsp.Good)
	revoked, _ := e.issue(t, member, pki.UsageAuth, ocsp.Revoked)
	unreachable := e.ca.Issue(t, member, pki.UsageAuth, pkitest.WithOCSPServer("http://127.0.0.1:1/ocsp"))
	tests := []struct {
		name string
		leaf *pkitest.Leaf
		want error
	}{
		{"good", good, nil},
		{"revoked", revoked, ErrRevoked},
		{"responder unreachable", unreachable, ErrStaleOCSP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(t.Context(), tt.leaf.Chain, nil, pki.UsageAuth)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyIntermediate(t *testing.T) {
	root := pkitest.NewCA(t, "Root")
	// An intermediate CA, made by hand since pkitest issues leaves only.
	inter := pkitest.NewCA(t, "Intermediate")
	tmpl := *inter.Cert
	der, err := x509.CreateCertificate(nil, &tmpl, root.Cert, inter.Cert.PublicKey, root.Key)
	if err != nil {
		t.Fatal(err)
	}
	interCert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	inter.Cert = interCert
	leaf := inter.Issue(t, member, pki.UsageSign)
	resp, err := xocsp.CreateResponse(interCert, interCert, xocsp.Response{Status: xocsp.Good, SerialNumber: leaf.Cert.SerialNumber, ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, inter.Key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(Config{Roots: root.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), []*x509.Certificate{leaf.Cert, interCert}, resp, pki.UsageSign); err != nil {
		t.Fatalf("Verify(leaf, intermediate) = %v", err)
	}
	if _, err := v.Verify(t.Context(), []*x509.Certificate{leaf.Cert}, resp, pki.UsageSign); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("Verify(leaf without intermediate) = %v, want ErrUntrusted", err)
	}
}

func TestNewRefuses(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without roots succeeded")
	}
}

func BenchmarkVerify(b *testing.B) {
	e := newEnv(b)
	leaf, der := e.issue(b, member, pki.UsageSign, ocsp.Good)
	v, err := New(Config{Roots: e.ca.Pool()})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := v.Verify(b.Context(), leaf.Chain, der, pki.UsageSign); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		for b.Loop() {
			v, _ := New(Config{Roots: e.ca.Pool()})
			if _, err := v.Verify(b.Context(), leaf.Chain, der, pki.UsageSign); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestVerifyConcurrent(t *testing.T) {
	e := newEnv(t)
	v, err := New(Config{Roots: e.ca.Pool(), FetchOCSP: ocsp.NewClient(ocsp.ClientConfig{})})
	if err != nil {
		t.Fatal(err)
	}
	good, der := e.issue(t, member, pki.UsageSign, ocsp.Good)
	revoked, revokedDER := e.issue(t, member, pki.UsageSign, ocsp.Revoked)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := v.Verify(t.Context(), good.Chain, der, pki.UsageSign); err != nil {
					t.Errorf("goroutine %d: Verify(good) = %v", i, err)
					return
				}
				if _, err := v.Verify(t.Context(), good.Chain, nil, pki.UsageSign); err != nil {
					t.Errorf("goroutine %d: Verify(good, fetched) = %v", i, err)
					return
				}
				if _, err := v.Verify(t.Context(), revoked.Chain, revokedDER, pki.UsageSign); !errors.Is(err, ErrRevoked) {
					t.Errorf("goroutine %d: Verify(revoked) = %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
