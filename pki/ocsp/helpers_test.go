package ocsp

import (
	"context"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
)

// memSource is an in-memory StatusSource.
type memSource struct {
	mu     sync.Mutex
	status map[string]Status
}

func newMemSource() *memSource { return &memSource{status: make(map[string]Status)} }

func (m *memSource) set(serial *big.Int, st Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.status[serial.String()] = st
}

func (m *memSource) OCSPStatus(_ context.Context, serial *big.Int) (Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.status[serial.String()]
	if !ok {
		return Status{Status: Unknown}, nil
	}
	return st, nil
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var member = pki.ClientID{Instance: "TEST", Class: "GOV", Member: "1234"}

// fixture is a CA, a responder for it on loopback, and its source.
type fixture struct {
	ca     *pkitest.CA
	src    *memSource
	resp   *Responder
	srv    *httptest.Server
	url    string
	hits   atomic.Int64
	signer *pkitest.Leaf // delegated signer, when used
}

func newFixture(t testing.TB, delegated bool) *fixture {
	t.Helper()
	f := &fixture{ca: pkitest.NewCA(t, "Test CA"), src: newMemSource()}
	cfg := ResponderConfig{Issuer: f.ca.Cert, Signer: f.ca.Key, Source: f.src}
	if delegated {
		f.signer = f.ca.Issue(t, member, pki.UsageOCSP)
		cfg.Signer, cfg.SignerCert = f.signer.Key, f.signer.Cert
	}
	r, err := NewResponder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.resp = r
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		f.hits.Add(1)
		r.Route(http.NotFoundHandler()).ServeHTTP(w, req)
	}))
	t.Cleanup(f.srv.Close)
	f.url = f.srv.URL + "/ocsp"
	return f
}

// issue makes a leaf naming the fixture's responder, with the given status.
func (f *fixture) issue(t testing.TB, st *Status, opts ...pkitest.IssueOption) *pkitest.Leaf {
	t.Helper()
	opts = append([]pkitest.IssueOption{pkitest.WithOCSPServer(f.url)}, opts...)
	l := f.ca.Issue(t, member, pki.UsageSign, opts...)
	if st != nil {
		f.src.set(l.Cert.SerialNumber, *st)
	}
	return l
}
