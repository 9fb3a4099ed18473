package hashregistry

import (
	"context"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ocsp"
	"github.com/passerelle/passerelle/pki/pkitest"
	"github.com/passerelle/passerelle/pki/verify"
)

// ocspFixture is a real pki/ocsp responder on 127.0.0.1:0 for a test CA,
// answering from a set of revoked serials, on a clock the test moves.
type ocspFixture struct {
	ca   *pkitest.CA
	url  string
	hits atomic.Int64

	mu      sync.Mutex
	revoked map[string]time.Time
	now     time.Time
}

func newOCSPFixture(t *testing.T) *ocspFixture {
	t.Helper()
	f := &ocspFixture{ca: pkitest.NewCA(t, "test federation"), revoked: map[string]time.Time{}, now: time.Now()}
	r, err := ocsp.NewResponder(ocsp.ResponderConfig{
		Issuer: f.ca.Cert, Signer: f.ca.Key, Now: f.clock, CacheFor: -1,
		Source: ocsp.StatusFunc(func(_ context.Context, serial *big.Int) (ocsp.Status, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if at, ok := f.revoked[serial.String()]; ok {
				return ocsp.Status{Status: ocsp.Revoked, RevokedAt: at, Reason: 1}, nil
			}
			return ocsp.Status{Status: ocsp.Good}, nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		f.hits.Add(1)
		r.Route(nil).ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/ocsp"
	return f
}

func (f *ocspFixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *ocspFixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func (f *ocspFixture) revoke(l *pkitest.Leaf) {
	f.mu.Lock()
	f.revoked[l.Cert.SerialNumber.String()] = f.now.Add(-time.Second)
	f.mu.Unlock()
}

func (f *ocspFixture) issue(t *testing.T, m pki.ClientID, url string) *pkitest.Leaf {
	return f.ca.Issue(t, m, pki.UsageAuth, pkitest.WithOCSPServer(url))
}

// TestAppendRefusesRevokedMember runs a registry whose CheckChain is
// CheckRevocation over pki/verify with an OCSP client, against a real
// responder: revoked members are refused, good ones are accepted with one
// OCSP query per certificate (not per append), a revocation bites once the
// cached response is stale, and an unreachable responder fails closed as
// Unavailable.
func TestAppendRefusesRevokedMember(t *testing.T) {
	const maxAge = 5 * time.Minute
	f := newOCSPFixture(t)
	v, err := verify.New(verify.Config{
		Roots: f.ca.Pool(), Now: f.clock, OCSPMaxAge: maxAge,
		FetchOCSP: ocsp.NewClient(ocsp.ClientConfig{MaxAge: maxAge, Now: f.clock}),
	})
	if err != nil {
		t.Fatal(err)
	}
	k := newTestKeys(t, testOrigin)
	r := startRegistryWith(t, filepath.Join(t.TempDir(), "log.db"), k, f.ca, CheckRevocation(v))

	good := pki.ClientID{Instance: "EE", Class: "GOV", Member: "good"}
	bad := pki.ClientID{Instance: "EE", Class: "GOV", Member: "revoked"}
	later := pki.ClientID{Instance: "EE", Class: "GOV", Member: "later"}
	goodCert := f.issue(t, good, f.url)
	badCert := f.issue(t, bad, f.url)
	laterCert := f.issue(t, later, f.url)
	f.revoke(badCert)
	down := f.issue(t, pki.ClientID{Instance: "EE", Class: "GOV", Member: "down"}, "http://127.0.0.1:1/ocsp")

	ctx := t.Context()
	cGood := r.dial(t, goodCert.TLSCertificate())
	for i := range 5 {
		if _, err := cGood.Append(ctx, pbSubs(i, 1)); err != nil {
			t.Fatalf("Append by a good member #%d: %v", i, err)
		}
	}
	if got := f.hits.Load(); got != 1 {
		t.Fatalf("OCSP queries after 5 appends by one member = %d, want 1 (cached per certificate)", got)
	}

	tests := []struct {
		name string
		leaf *pkitest.Leaf
		want codes.Code
	}{
		{"revoked member", badCert, codes.PermissionDenied},
		{"responder unreachable", down, codes.Unavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := r.log.Size()
			_, err := r.dial(t, tc.leaf.TLSCertificate()).Append(ctx, pbSubs(100, 3))
			if got := status.Code(err); got != tc.want {
				t.Fatalf("Append code = %v (%v), want %v", got, err, tc.want)
			}
			if got := r.log.Size(); got != before {
				t.Fatalf("log size after a refused append = %d, want %d", got, before)
			}
		})
	}

	t.Run("revoked after its good response was cached", func(t *testing.T) {
		c := r.dial(t, laterCert.TLSCertificate())
		if _, err := c.Append(ctx, pbSubs(200, 1)); err != nil {
			t.Fatalf("Append before revocation: %v", err)
		}
		f.revoke(laterCert)
		// Within the freshness limit the cached good response stands.
		if _, err := c.Append(ctx, pbSubs(201, 1)); err != nil {
			t.Fatalf("Append with a fresh cached response: %v", err)
		}
		f.advance(maxAge + time.Second)
		_, err := c.Append(ctx, pbSubs(202, 1))
		if got := status.Code(err); got != codes.PermissionDenied {
			t.Fatalf("Append once the cached response is stale: code = %v (%v), want PermissionDenied", got, err)
		}
		// The good member is re-checked too, and still accepted.
		if _, err := cGood.Append(ctx, pbSubs(203, 1)); err != nil {
			t.Fatalf("Append by the good member after refresh: %v", err)
		}
	})
}
