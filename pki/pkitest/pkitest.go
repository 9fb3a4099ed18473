// Package pkitest makes throwaway certificate authorities and certificates
// for tests, with the same profiles (key usage, extended key usage, member
// SAN URI) as the real CA in pki/ca. Production code must not import it.
package pkitest

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passerelle/passerelle/pki"
)

// CA is a test certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Leaf is a certificate issued by a test CA, with its key and chain (leaf first).
type Leaf struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate
}

var serial atomic.Int64

func nextSerial() *big.Int { return big.NewInt(time.Now().UnixNano() + serial.Add(1)) }

// NewCA makes a self-signed root valid from an hour ago for ten years.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Passerelle test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: key}
}

// Pool returns a certificate pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// IssueOption changes how Issue makes a certificate.
type IssueOption func(*issueConfig)

type issueConfig struct {
	alg       pki.KeyAlgorithm
	notBefore time.Time
	notAfter  time.Time
	ocspURL   string
}

// WithKey sets the key algorithm (default ECDSA P-256).
func WithKey(a pki.KeyAlgorithm) IssueOption { return func(c *issueConfig) { c.alg = a } }

// WithValidity sets the validity period.
func WithValidity(notBefore, notAfter time.Time) IssueOption {
	return func(c *issueConfig) { c.notBefore, c.notAfter = notBefore, notAfter }
}

// WithOCSPServer sets the authority information access OCSP URL.
func WithOCSPServer(url string) IssueOption { return func(c *issueConfig) { c.ocspURL = url } }

// Issue makes a certificate for member (zero for none) with usage's profile.
// Auth and registry certificates also name 127.0.0.1 and localhost.
func (ca *CA) Issue(t testing.TB, member pki.ClientID, usage pki.Usage, opts ...IssueOption) *Leaf {
	t.Helper()
	cfg := issueConfig{alg: pki.ECDSAP256, notBefore: time.Now().Add(-time.Hour), notAfter: time.Now().Add(365 * 24 * time.Hour)}
	for _, o := range opts {
		o(&cfg)
	}
	key, err := pki.GenerateKey(cfg.alg)
	if err != nil {
		t.Fatal(err)
	}
	prof, err := usage.Profile()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: member.String() + " " + string(usage)},
		NotBefore:    cfg.notBefore,
		NotAfter:     cfg.notAfter,
		KeyUsage:     prof.KeyUsage,
	}
	if cfg.ocspURL != "" {
		tmpl.OCSPServer = []string{cfg.ocspURL}
	}
	if ext, ok, err := prof.ExtKeyUsageExtension(); err != nil {
		t.Fatal(err)
	} else if ok {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ext)
	}
	if !member.IsZero() {
		tmpl.URIs = append(tmpl.URIs, pki.MemberURI(member))
	}
	if usage == pki.UsageAuth || usage == pki.UsageRegistry {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Leaf{Cert: cert, Key: key, Chain: []*x509.Certificate{cert, ca.Cert}}
}

// TLSCertificate returns the leaf as a tls.Certificate with its chain.
func (l *Leaf) TLSCertificate() tls.Certificate {
	c := tls.Certificate{PrivateKey: l.Key, Leaf: l.Cert}
	for _, x := range l.Chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}
