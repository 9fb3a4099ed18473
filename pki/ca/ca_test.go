package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ocsp"
)

var testMember = pki.ClientID{Instance: "EE", Class: "GOV", Member: "70000001"}

func newTestCA(t testing.TB) *CA {
	t.Helper()
	c, err := Init(t.Context(), InitConfig{
		Dir: filepath.Join(t.TempDir(), "ca"), Instance: "EE",
		OCSPURL: "http://127.0.0.1:8888/ocsp", Operator: "test",
	})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return c
}

func newCSR(t testing.TB, member pki.ClientID, usage pki.Usage) []byte {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.CreateCSR(key, member, usage)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func TestInit(t *testing.T) {
	c := newTestCA(t)
	dir := c.Dir()
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key mode = %v, want 0600", got)
	}
	cert := c.Certificate()
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("root: IsCA=%v KeyUsage=%v, want a CA that signs certificates", cert.IsCA, cert.KeyUsage)
	}
	if !cert.MaxPathLenZero {
		t.Errorf("root MaxPathLenZero = false, want path length 0")
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if _, err := Init(t.Context(), InitConfig{Dir: dir, Instance: "EE"}); !errors.Is(err, ErrExists) {
		t.Errorf("second Init = %v, want ErrExists", err)
	}
	if _, err := Init(t.Context(), InitConfig{Dir: t.TempDir(), Instance: "E/E"}); !errors.Is(err, pki.ErrBadIdentifier) {
		t.Errorf("Init with bad instance = %v, want ErrBadIdentifier", err)
	}
	if _, err := Init(t.Context(), InitConfig{Dir: t.TempDir(), Instance: "EE", Key: "dsa"}); err == nil {
		t.Errorf("Init with key dsa succeeded")
	}
	s, err := c.Settings(t.Context())
	if err != nil || s.Instance != "EE" || s.OCSPURL != "http://127.0.0.1:8888/ocsp" {
		t.Errorf("Settings = %+v, %v", s, err)
	}
	// A key readable by others is refused.
	if err := os.Chmod(filepath.Join(dir, KeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil {
		t.Errorf("Open with a 0644 key succeeded")
	}
}

func TestInitRSA(t *testing.T) {
	c, err := Init(t.Context(), InitConfig{Dir: t.TempDir(), Instance: "EE", Key: pki.RSA2048, Name: "Test RSA Root"})
	if err != nil {
		t.Fatal(err)
	}
	k, ok := c.Certificate().PublicKey.(*rsa.PublicKey)
	if !ok || k.N.BitLen() != 2048 {
		t.Fatalf("root key = %T, want RSA 2048", c.Certificate().PublicKey)
	}
	if c.Certificate().Subject.CommonName != "Test RSA Root" {
		t.Errorf("CN = %q", c.Certificate().Subject.CommonName)
	}
	cert, err := c.Sign(t.Context(), SignRequest{CSR: newCSR(t, testMember, pki.UsageSign), Member: testMember, Usage: pki.UsageSign})
	if err != nil {
		t.Fatal(err)
	}
	if cert.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Errorf("signature algorithm = %v", cert.SignatureAlgorithm)
	}
}

// ekuExtensions returns the extendedKeyUsage extensions of cert.
func ekuExtensions(cert *x509.Certificate) []pkix.Extension {
	var out []pkix.Extension
	for _, e := range cert.Extensions {
		if e.Id.Equal(pki.OIDExtKeyUsage) {
			out = append(out, e)
		}
	}
	return out
}

func TestSignProfiles(t *testing.T) {
	c := newTestCA(t)
	tests := []struct {
		usage    pki.Usage
		member   pki.ClientID
		hosts    []string
		ku       x509.KeyUsage
		eku      []x509.ExtKeyUsage
		critical bool
	}{
		{pki.UsageAuth, testMember, []string{"ss1.example.org", "127.0.0.1"}, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, false},
		{pki.UsageSign, testMember, nil, x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment, nil, false},
		{pki.UsageTSA, pki.ClientID{}, nil, x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment, []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}, true},
		{pki.UsageOCSP, pki.ClientID{}, nil, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, false},
		{pki.UsageRegistry, testMember, []string{"localhost"}, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, false},
		{pki.UsageDirectory, testMember, nil, x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment, nil, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.usage), func(t *testing.T) {
			cert, err := c.Sign(t.Context(), SignRequest{
				CSR: newCSR(t, tt.member, tt.usage), Member: tt.member, Usage: tt.usage,
				Operator: "alice", Hosts: tt.hosts,
			})
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if err := cert.CheckSignatureFrom(c.Certificate()); err != nil {
				t.Errorf("not signed by the CA: %v", err)
			}
			if cert.KeyUsage != tt.ku {
				t.Errorf("KeyUsage = %b, want %b", cert.KeyUsage, tt.ku)
			}
			if !slices.Equal(sortedEKU(cert.ExtKeyUsage), sortedEKU(tt.eku)) {
				t.Errorf("ExtKeyUsage = %v, want %v", cert.ExtKeyUsage, tt.eku)
			}
			exts := ekuExtensions(cert)
			switch {
			case len(tt.eku) == 0 && len(exts) != 0:
				t.Errorf("%d EKU extensions, want none", len(exts))
			case len(tt.eku) > 0 && len(exts) != 1:
				t.Errorf("%d EKU extensions, want exactly one", len(exts))
			case len(exts) == 1 && exts[0].Critical != tt.critical:
				t.Errorf("EKU critical = %v, want %v", exts[0].Critical, tt.critical)
			}
			if cert.IsCA {
				t.Errorf("IsCA = true")
			}
			if !slices.Equal(cert.OCSPServer, []string{"http://127.0.0.1:8888/ocsp"}) {
				t.Errorf("OCSPServer = %v", cert.OCSPServer)
			}
			m, err := pki.MemberFromCert(cert)
			if tt.member.IsZero() {
				if !errors.Is(err, pki.ErrNoMemberID) {
					t.Errorf("MemberFromCert = %v, %v; want ErrNoMemberID", m, err)
				}
			} else if err != nil || m != tt.member {
				t.Errorf("MemberFromCert = %v, %v; want %v", m, err, tt.member)
			}
			var hosts []string
			hosts = append(hosts, cert.DNSNames...)
			for _, ip := range cert.IPAddresses {
				hosts = append(hosts, ip.String())
			}
			if !slices.Equal(hosts, tt.hosts) {
				t.Errorf("hosts = %v, want %v", hosts, tt.hosts)
			}
			if d := cert.NotAfter.Sub(cert.NotBefore); d < DefaultValidity || d > DefaultValidity+10*time.Minute {
				t.Errorf("validity = %v, want about %v", d, DefaultValidity)
			}
			rec, err := c.Lookup(t.Context(), cert.SerialNumber)
			if err != nil {
				t.Fatalf("Lookup: %v", err)
			}
			if rec.IssuedBy != "alice" || rec.Usage != tt.usage || !bytes.Equal(rec.DER, cert.Raw) {
				t.Errorf("record = %+v", rec)
			}
		})
	}
}

func sortedEKU(e []x509.ExtKeyUsage) []x509.ExtKeyUsage {
	e = slices.Clone(e)
	slices.Sort(e)
	return e
}

func TestSignSubjectAndValidity(t *testing.T) {
	c := newTestCA(t)
	// A CSR with a subject and SANs of its own: the CA writes its own.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "evil.example", Organization: []string{"Other"}},
		DNSNames:    []string{"evil.example"},
		IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.Sign(t.Context(), SignRequest{CSR: der, Member: testMember, Usage: pki.UsageAuth, Validity: 48 * time.Hour})
	if err != nil {
		t.Fatalf("Sign (DER CSR): %v", err)
	}
	if cert.Subject.CommonName != "EE/GOV/70000001" || len(cert.DNSNames) != 0 || len(cert.IPAddresses) != 0 {
		t.Errorf("subject %q, DNS %v, IP %v: CSR names leaked into the certificate", cert.Subject, cert.DNSNames, cert.IPAddresses)
	}
	if d := cert.NotAfter.Sub(cert.NotBefore); d < 48*time.Hour || d > 48*time.Hour+10*time.Minute {
		t.Errorf("validity = %v, want 48h", d)
	}
	if _, err := c.Sign(t.Context(), SignRequest{CSR: der, Member: testMember, Usage: pki.UsageAuth, Validity: 20 * 365 * 24 * time.Hour}); !errors.Is(err, ErrValidityTooLong) {
		t.Errorf("Sign past the CA's expiry = %v, want ErrValidityTooLong", err)
	}
}

func TestSignRefusals(t *testing.T) {
	c := newTestCA(t)
	good := newCSR(t, testMember, pki.UsageAuth)
	block, _ := pem.Decode(good)

	broken := bytes.Clone(block.Bytes)
	broken[len(broken)-3] ^= 0xff // inside the signature value

	tampered := bytes.Clone(block.Bytes)
	if i := bytes.Index(tampered, []byte("70000001")); i < 0 {
		t.Fatal("member code not in CSR")
	} else {
		tampered[i] = '8' // signed content changed
	}

	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weak, err := pki.CreateCSR(rsa1024, testMember, pki.UsageAuth)
	if err != nil {
		t.Fatal(err)
	}
	other := pki.ClientID{Instance: "EE", Class: "GOV", Member: "70000002"}

	tests := []struct {
		name string
		req  SignRequest
		want error
	}{
		{"garbage", SignRequest{CSR: []byte("not a CSR at all"), Member: testMember, Usage: pki.UsageAuth}, pki.ErrBadCSR},
		{"empty", SignRequest{Member: testMember, Usage: pki.UsageAuth}, pki.ErrBadCSR},
		{"truncated DER", SignRequest{CSR: block.Bytes[:len(block.Bytes)/2], Member: testMember, Usage: pki.UsageAuth}, pki.ErrBadCSR},
		{"truncated PEM", SignRequest{CSR: good[:len(good)/2], Member: testMember, Usage: pki.UsageAuth}, pki.ErrBadCSR},
		{"broken signature", SignRequest{CSR: broken, Member: testMember, Usage: pki.UsageAuth}, pki.ErrBadCSR},
		{"tampered content", SignRequest{CSR: tampered, Member: testMember, Usage: pki.UsageAuth}, pki.ErrBadCSR},
		{"certificate not CSR", SignRequest{CSR: pki.EncodeCertificatesPEM(c.Certificate()), Member: testMember, Usage: pki.UsageAuth}, pki.ErrBadCSR},
		{"RSA-1024", SignRequest{CSR: weak, Member: testMember, Usage: pki.UsageAuth}, pki.ErrWeakKey},
		{"unknown usage", SignRequest{CSR: good, Member: testMember, Usage: "email"}, pki.ErrUnknownUsage},
		{"no usage", SignRequest{CSR: good, Member: testMember}, pki.ErrUnknownUsage},
		{"bad member", SignRequest{CSR: good, Member: pki.ClientID{Instance: "EE", Class: "G/OV", Member: "1"}, Usage: pki.UsageAuth}, pki.ErrBadIdentifier},
		{"no member for auth", SignRequest{CSR: good, Usage: pki.UsageAuth}, pki.ErrBadIdentifier},
		{"subsystem", SignRequest{CSR: good, Member: pki.ClientID{Instance: "EE", Class: "GOV", Member: "70000001", Subsystem: "X"}, Usage: pki.UsageAuth}, pki.ErrBadIdentifier},
		{"other member than CSR", SignRequest{CSR: good, Member: other, Usage: pki.UsageAuth}, ErrMemberMismatch},
		{"hosts on sign", SignRequest{CSR: good, Member: testMember, Usage: pki.UsageSign, Hosts: []string{"a.example"}}, ErrBadRequest},
		{"bad host", SignRequest{CSR: good, Member: testMember, Usage: pki.UsageAuth, Hosts: []string{"a b"}}, ErrBadRequest},
		{"negative validity", SignRequest{CSR: good, Member: testMember, Usage: pki.UsageAuth, Validity: -time.Hour}, ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := c.Sign(t.Context(), tt.req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Sign = %v, %v; want error %v", cert, err, tt.want)
			}
		})
	}
	list, err := c.List(t.Context())
	if err != nil || len(list) != 0 {
		t.Errorf("List after refusals = %d records, %v; want none", len(list), err)
	}
}

func TestRevoke(t *testing.T) {
	c := newTestCA(t)
	ctx := t.Context()
	cert, err := c.Sign(ctx, SignRequest{CSR: newCSR(t, testMember, pki.UsageSign), Member: testMember, Usage: pki.UsageSign})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := c.OCSPStatus(ctx, cert.SerialNumber); err != nil || st.Status != ocsp.Good {
		t.Fatalf("OCSPStatus before revocation = %+v, %v; want good", st, err)
	}
	if err := c.Revoke(ctx, cert.SerialNumber, ReasonKeyCompromise, "bob"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	st, err := c.OCSPStatus(ctx, cert.SerialNumber)
	if err != nil || st.Status != ocsp.Revoked || st.Reason != 1 || time.Since(st.RevokedAt) > time.Minute {
		t.Fatalf("OCSPStatus after revocation = %+v, %v; want revoked, keyCompromise, now", st, err)
	}
	if err := c.Revoke(ctx, cert.SerialNumber, ReasonSuperseded, "bob"); !errors.Is(err, ErrAlreadyRevoked) {
		t.Errorf("second Revoke = %v, want ErrAlreadyRevoked", err)
	}
	if err := c.Revoke(ctx, big.NewInt(12345), ReasonUnspecified, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke of unknown serial = %v, want ErrNotFound", err)
	}
	if err := c.Revoke(ctx, cert.SerialNumber, Reason(7), "bob"); !errors.Is(err, ErrBadReason) {
		t.Errorf("Revoke with reason 7 = %v, want ErrBadReason", err)
	}
	if st, err := c.OCSPStatus(ctx, big.NewInt(12345)); err != nil || st.Status != ocsp.Unknown {
		t.Errorf("OCSPStatus of unknown serial = %+v, %v; want unknown", st, err)
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 1 || list[0].State(time.Now()) != "revoked" || list[0].RevokedBy != "bob" {
		t.Errorf("List = %+v, %v", list, err)
	}
}

func TestParseReason(t *testing.T) {
	tests := []struct {
		in   string
		want Reason
		ok   bool
	}{
		{"", ReasonUnspecified, true},
		{"keyCompromise", ReasonKeyCompromise, true},
		{"key-compromise", ReasonKeyCompromise, true},
		{"KEY_COMPROMISE", ReasonKeyCompromise, true},
		{"superseded", ReasonSuperseded, true},
		{"9", ReasonPrivilegeWithdrawn, true},
		{"7", 0, false},
		{"removeFromCRL", 0, false},
		{"lost", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseReason(tt.in)
			if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
				t.Errorf("ParseReason(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestParseSerial(t *testing.T) {
	want, _ := new(big.Int).SetString("1a2b3c", 16)
	for _, in := range []string{"1a2b3c", "1A2B3C", "001A2B3C", "1a:2b:3c", "0x1a2b3c"} {
		got, err := ParseSerial(in)
		if err != nil || got.Cmp(want) != 0 {
			t.Errorf("ParseSerial(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "xyz", "-1", "0"} {
		if _, err := ParseSerial(in); err == nil {
			t.Errorf("ParseSerial(%q) succeeded", in)
		}
	}
}

func TestEnrollment(t *testing.T) {
	c := newTestCA(t)
	ctx := t.Context()

	id, err := c.SubmitEnrollment(ctx, newCSR(t, testMember, pki.UsageAuth), testMember, pki.UsageAuth, "127.0.0.1:5555")
	if err != nil {
		t.Fatalf("SubmitEnrollment: %v", err)
	}
	id2, err := c.SubmitEnrollment(ctx, newCSR(t, testMember, pki.UsageSign), testMember, pki.UsageSign, "127.0.0.1:5556")
	if err != nil {
		t.Fatalf("SubmitEnrollment: %v", err)
	}
	pending, err := c.Pending(ctx)
	if err != nil || len(pending) != 2 || pending[0].ID != id || pending[1].ID != id2 {
		t.Fatalf("Pending = %+v, %v", pending, err)
	}
	e, err := c.Enrollment(ctx, id)
	if err != nil || e.State != StatePending || e.Chain != nil {
		t.Fatalf("Enrollment(pending) = %+v, %v", e, err)
	}

	cert, err := c.Approve(ctx, id, "carol", 0)
	if err != nil {
		t.Fatalf("Approve: %v", err)
	}
	e, err = c.Enrollment(ctx, id)
	if err != nil || e.State != StateIssued || len(e.Chain) != 2 || !e.Chain[0].Equal(cert) || !e.Chain[1].Equal(c.Certificate()) {
		t.Fatalf("Enrollment(issued) = %+v, %v", e, err)
	}
	if e.DecidedBy != "carol" || e.Serial != serialHex(cert.SerialNumber) {
		t.Errorf("decided by %q serial %q", e.DecidedBy, e.Serial)
	}
	if _, err := c.Approve(ctx, id, "carol", 0); !errors.Is(err, ErrNotPending) {
		t.Errorf("second Approve = %v, want ErrNotPending", err)
	}
	if err := c.Reject(ctx, id, "carol", "no"); !errors.Is(err, ErrNotPending) {
		t.Errorf("Reject of issued = %v, want ErrNotPending", err)
	}

	if err := c.Reject(ctx, id2, "dave", "unknown institution"); err != nil {
		t.Fatalf("Reject: %v", err)
	}
	e, err = c.Enrollment(ctx, id2)
	if err != nil || e.State != StateRejected || e.Reason != "unknown institution" || e.Chain != nil {
		t.Fatalf("Enrollment(rejected) = %+v, %v", e, err)
	}
	if _, err := c.Approve(ctx, id2, "carol", 0); !errors.Is(err, ErrNotPending) {
		t.Errorf("Approve of rejected = %v, want ErrNotPending", err)
	}
	if pending, err := c.Pending(ctx); err != nil || len(pending) != 0 {
		t.Errorf("Pending after decisions = %+v, %v", pending, err)
	}
	if _, err := c.Enrollment(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Enrollment(nope) = %v, want ErrNotFound", err)
	}
	if _, err := c.Approve(ctx, "nope", "carol", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Approve(nope) = %v, want ErrNotFound", err)
	}

	// Refusals at submission.
	refusals := []struct {
		name   string
		csr    []byte
		member pki.ClientID
		usage  pki.Usage
		want   error
	}{
		{"tsa not enrollable", newCSR(t, pki.ClientID{}, pki.UsageTSA), testMember, pki.UsageTSA, ErrNotEnrollable},
		{"unknown usage", newCSR(t, testMember, pki.UsageAuth), testMember, "x", pki.ErrUnknownUsage},
		{"garbage", []byte("garbage"), testMember, pki.UsageAuth, pki.ErrBadCSR},
		{"no member", newCSR(t, testMember, pki.UsageAuth), pki.ClientID{}, pki.UsageAuth, pki.ErrBadIdentifier},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.SubmitEnrollment(ctx, tt.csr, tt.member, tt.usage, "x"); !errors.Is(err, tt.want) {
				t.Errorf("SubmitEnrollment = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestTooManyPending(t *testing.T) {
	c := newTestCA(t)
	c.maxPending = 2
	csr := newCSR(t, testMember, pki.UsageAuth)
	for range 2 {
		if _, err := c.SubmitEnrollment(t.Context(), csr, testMember, pki.UsageAuth, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.SubmitEnrollment(t.Context(), csr, testMember, pki.UsageAuth, "x"); !errors.Is(err, ErrTooManyPending) {
		t.Errorf("third SubmitEnrollment = %v, want ErrTooManyPending", err)
	}
}

func TestAudit(t *testing.T) {
	c := newTestCA(t)
	ctx := t.Context()
	id, err := c.SubmitEnrollment(ctx, newCSR(t, testMember, pki.UsageAuth), testMember, pki.UsageAuth, "10.0.0.1:1234")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.Approve(ctx, id, "carol", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, cert.SerialNumber, ReasonSuperseded, "bob"); err != nil {
		t.Fatal(err)
	}
	id2, err := c.SubmitEnrollment(ctx, newCSR(t, testMember, pki.UsageSign), testMember, pki.UsageSign, "10.0.0.2:1234")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reject(ctx, id2, "dave", "duplicate"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetOCSPURL(ctx, "http://ocsp.example/ocsp", "erin"); err != nil {
		t.Fatal(err)
	}
	log, err := c.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	serial := serialHex(cert.SerialNumber)
	want := []AuditRecord{
		{Seq: 1, Actor: "test", Action: ActionInit},
		{Seq: 2, Actor: "10.0.0.1:1234", Action: ActionSubmit, Enrollment: id, Member: testMember.String(), Usage: pki.UsageAuth},
		{Seq: 3, Actor: "carol", Action: ActionIssue, Enrollment: id, Serial: serial, Member: testMember.String(), Usage: pki.UsageAuth},
		{Seq: 4, Actor: "carol", Action: ActionApprove, Enrollment: id, Serial: serial, Member: testMember.String(), Usage: pki.UsageAuth},
		{Seq: 5, Actor: "bob", Action: ActionRevoke, Serial: serial, Member: testMember.String(), Usage: pki.UsageAuth},
		{Seq: 6, Actor: "10.0.0.2:1234", Action: ActionSubmit, Enrollment: id2, Member: testMember.String(), Usage: pki.UsageSign},
		{Seq: 7, Actor: "dave", Action: ActionReject, Enrollment: id2, Member: testMember.String(), Usage: pki.UsageSign},
		{Seq: 8, Actor: "erin", Action: ActionSettings},
	}
	if len(log) != len(want) {
		t.Fatalf("audit log has %d records, want %d: %+v", len(log), len(want), log)
	}
	for i, w := range want {
		g := log[i]
		if g.Seq != w.Seq || g.Actor != w.Actor || g.Action != w.Action || g.Enrollment != w.Enrollment ||
			(i > 0 && g.Serial != w.Serial) || g.Member != w.Member || g.Usage != w.Usage || time.Since(g.Time) > time.Minute {
			t.Errorf("audit[%d] = %+v, want %+v", i, g, w)
		}
	}
}

// TestSharedDatabase opens the same CA twice, as `ca serve` and an admin
// command do in two processes, and works through both at once.
func TestSharedDatabase(t *testing.T) {
	server := newTestCA(t)
	admin, err := Open(server.Dir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := server.SubmitEnrollment(ctx, newCSR(t, testMember, pki.UsageAuth), testMember, pki.UsageAuth, "x")
			if err != nil {
				errs <- err
				return
			}
			cert, err := admin.Approve(ctx, id, "admin", 0)
			if err != nil {
				errs <- err
				return
			}
			if i%2 == 0 {
				if err := admin.Revoke(ctx, cert.SerialNumber, ReasonUnspecified, "admin"); err != nil {
					errs <- err
					return
				}
			}
			if _, err := server.OCSPStatus(ctx, cert.SerialNumber); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := server.List(ctx)
	if err != nil || len(list) != 8 {
		t.Errorf("List = %d, %v; want 8", len(list), err)
	}
}

func TestBusy(t *testing.T) {
	c := newTestCA(t)
	other, err := Open(c.Dir())
	if err != nil {
		t.Fatal(err)
	}
	other.SetLockTimeout(100 * time.Millisecond)
	release := make(chan struct{})
	held := make(chan struct{})
	go c.store.update(context.Background(), func(*tx) error {
		close(held)
		<-release
		return nil
	})
	<-held
	_, err = other.List(t.Context())
	close(release)
	if !errors.Is(err, ErrBusy) {
		t.Errorf("List while another holds the lock = %v, want ErrBusy", err)
	}
}

// FuzzCSRIntake feeds arbitrary bytes to the CSR intake shared by Sign and
// SubmitEnrollment: no panic, and anything accepted is a CSR whose
// signature verifies and whose key we accept.
func FuzzCSRIntake(f *testing.F) {
	key, _ := pki.GenerateKey(pki.ECDSAP256)
	good, _ := pki.CreateCSR(key, testMember, pki.UsageAuth)
	block, _ := pem.Decode(good)
	f.Add(good)
	f.Add(block.Bytes)
	f.Add(good[:len(good)/2])
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Add([]byte{})
	c := newTestCA(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := c.SubmitEnrollment(context.Background(), data, testMember, pki.UsageAuth, "fuzz")
		if err != nil {
			return
		}
		e, err := c.Enrollment(context.Background(), id)
		if err != nil {
			t.Fatalf("accepted enrollment not stored: %v", err)
		}
		csr, err := pki.ParseCSR([]byte(e.CSR))
		if err != nil {
			t.Fatalf("accepted CSR does not parse again: %v", err)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted CSR with a bad signature: %v", err)
		}
		if _, err := asn1.Marshal(csr.Subject.ToRDNSequence()); err != nil {
			t.Fatal(err)
		}
	})
}
