package interop

import (
	"bufio"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ocsp"
	"github.com/passerelle/passerelle/pki/pkitest"
	xocsp "golang.org/x/crypto/ocsp"
)

// This file checks pki/ocsp against OpenSSL, in both directions: the
// openssl ocsp client reads our responder's answers, and our client accepts
// the answers of openssl's own responder (-index mode).

var ocspMember = pki.ClientID{Instance: "TEST", Class: "GOV", Member: "1234"}

// ocspOpenSSL returns openssl's path; SKIP without it, FAIL under CI=true.
func ocspOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("openssl not found (CI=true requires it; run make deps): %v", err)
		}
		t.Skipf("openssl not found; run make deps: %v", err)
	}
	return p
}

// ocspSource is an in-memory ocsp.StatusSource.
type ocspSource struct {
	mu sync.Mutex
	m  map[string]ocsp.Status
}

func (s *ocspSource) set(serial *big.Int, st ocsp.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[serial.String()] = st
}

func (s *ocspSource) OCSPStatus(_ context.Context, serial *big.Int) (ocsp.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.m[serial.String()]; ok {
		return st, nil
	}
	return ocsp.Status{Status: ocsp.Unknown}, nil
}

func ocspWrite(t *testing.T, path string, data []byte, perm os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	return path
}

func ocspWriteKey(t *testing.T, path string, key crypto.Signer) string {
	t.Helper()
	pemKey, err := pki.MarshalPrivateKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	return ocspWrite(t, path, pemKey, 0o600)
}

// TestOpenSSLClientReadsOurResponder: `openssl ocsp -issuer -cert -url
// -CAfile` against our responder on loopback verifies the response and
// reads good, then revoked with the reason once the source changes, with
// the CA signing and with a delegated OCSP signer, nonce echoed.
func TestOpenSSLClientReadsOurResponder(t *testing.T) {
	openssl := ocspOpenSSL(t)
	for _, delegated := range []bool{false, true} {
		t.Run(map[bool]string{false: "ca-signed", true: "delegated"}[delegated], func(t *testing.T) {
			dir := t.TempDir()
			ca := pkitest.NewCA(t, "Interop CA")
			src := &ocspSource{m: map[string]ocsp.Status{}}
			cfg := ocsp.ResponderConfig{Issuer: ca.Cert, Signer: ca.Key, Source: src}
			if delegated {
				d := ca.Issue(t, ocspMember, pki.UsageOCSP)
				cfg.Signer, cfg.SignerCert = d.Key, d.Cert
			}
			r, err := ocsp.NewResponder(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: r.Route(nil), ReadHeaderTimeout: 10 * time.Second}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			url := "http://" + ln.Addr().String() + "/ocsp"

			leaf := ca.Issue(t, ocspMember, pki.UsageSign, pkitest.WithOCSPServer(url))
			src.set(leaf.Cert.SerialNumber, ocsp.Status{Status: ocsp.Good})
			caPEM := ocspWrite(t, filepath.Join(dir, "ca.pem"), pki.EncodeCertificatesPEM(ca.Cert), 0o644)
			leafPEM := ocspWrite(t, filepath.Join(dir, "leaf.pem"), pki.EncodeCertificatesPEM(leaf.Cert), 0o644)

			query := func() string {
				t.Helper()
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				out, err := exec.CommandContext(ctx, openssl, "ocsp", "-issuer", caPEM, "-cert", leafPEM,
					"-url", url, "-CAfile", caPEM).CombinedOutput()
				if err != nil {
					t.Fatalf("openssl ocsp: %v\n%s", err, out)
				}
				s := string(out)
				if !strings.Contains(s, "Response verify OK") {
					t.Fatalf("openssl did not verify our response:\n%s", s)
				}
				if strings.Contains(s, "WARNING") {
					t.Errorf("openssl warns (nonce or validity):\n%s", s)
				}
				if !strings.Contains(s, "This Update:") || !strings.Contains(s, "Next Update:") {
					t.Errorf("no thisUpdate/nextUpdate in:\n%s", s)
				}
				return s
			}
			if out := query(); !strings.Contains(out, leafPEM+": good") {
				t.Fatalf("openssl ocsp before revocation:\n%s\nwant %s: good", out, leafPEM)
			}
			src.set(leaf.Cert.SerialNumber, ocsp.Status{Status: ocsp.Revoked, RevokedAt: time.Now().Add(-time.Second), Reason: xocsp.KeyCompromise})
			out := query()
			if !strings.Contains(out, leafPEM+": revoked") || !strings.Contains(out, "Reason: keyCompromise") {
				t.Fatalf("openssl ocsp after revocation:\n%s\nwant revoked, keyCompromise", out)
			}
		})
	}
}

// ocspIndexLine is one line of an openssl CA index.txt.
func ocspIndexLine(c *x509.Certificate, revokedAt time.Time, reason string) string {
	serial := fmt.Sprintf("%X", c.SerialNumber)
	if len(serial)%2 == 1 {
		serial = "0" + serial
	}
	status, rev := "V", ""
	if !revokedAt.IsZero() {
		status, rev = "R", revokedAt.UTC().Format("060102150405Z")+","+reason
	}
	return strings.Join([]string{status, c.NotAfter.UTC().Format("060102150405Z"), rev, serial, "unknown", "/CN=" + c.Subject.CommonName}, "\t") + "\n"
}

// TestOurClientAcceptsOpenSSLResponder: responses made by `openssl ocsp
// -index` (as a server on loopback, and in one-shot file mode) pass
// ocsp.Fetch / ocsp.ParseAndVerify with the right status, for a delegated
// signer, for the CA signing itself, and with a key-hash responder ID; a
// responder certificate of another CA is refused.
func TestOurClientAcceptsOpenSSLResponder(t *testing.T) {
	openssl := ocspOpenSSL(t)
	dir := t.TempDir()
	ca := pkitest.NewCA(t, "Interop CA")
	other := pkitest.NewCA(t, "Other CA")
	delegate := ca.Issue(t, ocspMember, pki.UsageOCSP)
	otherDelegate := other.Issue(t, ocspMember, pki.UsageOCSP)
	good := ca.Issue(t, ocspMember, pki.UsageSign)
	revoked := ca.Issue(t, ocspMember, pki.UsageSign)
	unknown := ca.Issue(t, ocspMember, pki.UsageSign)
	revokedAt := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)

	caPEM := ocspWrite(t, filepath.Join(dir, "ca.pem"), pki.EncodeCertificatesPEM(ca.Cert), 0o644)
	caKey := ocspWriteKey(t, filepath.Join(dir, "ca.key"), ca.Key)
	dPEM := ocspWrite(t, filepath.Join(dir, "ocsp.pem"), pki.EncodeCertificatesPEM(delegate.Cert), 0o644)
	dKey := ocspWriteKey(t, filepath.Join(dir, "ocsp.key"), delegate.Key)
	oPEM := ocspWrite(t, filepath.Join(dir, "other-ocsp.pem"), pki.EncodeCertificatesPEM(otherDelegate.Cert), 0o644)
	oKey := ocspWriteKey(t, filepath.Join(dir, "other-ocsp.key"), otherDelegate.Key)
	index := ocspWrite(t, filepath.Join(dir, "index.txt"),
		[]byte(ocspIndexLine(good.Cert, time.Time{}, "")+ocspIndexLine(revoked.Cert, revokedAt, "keyCompromise")), 0o644)

	t.Run("server", func(t *testing.T) {
		url := ocspStartOpenSSLResponder(t, openssl, index, caPEM, dPEM, dKey)
		tests := []struct {
			name string
			leaf *pkitest.Leaf
			want ocsp.CertStatus
			err  error
		}{
			{"good", good, ocsp.Good, nil},
			{"revoked", revoked, ocsp.Revoked, ocsp.ErrRevoked},
			{"unknown", unknown, ocsp.Unknown, ocsp.ErrUnknownCert},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r, err := ocsp.Fetch(t.Context(), tt.leaf.Cert, ca.Cert, url)
				if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
					t.Fatalf("Fetch() error = %v, want %v", err, tt.err)
				}
				if r == nil || r.Status != tt.want || !r.Signer.Equal(delegate.Cert) {
					t.Fatalf("Fetch() = %+v, want %v signed by the delegate", r, tt.want)
				}
				if tt.want == ocsp.Revoked && (!r.RevokedAt.Equal(revokedAt) || r.Reason != xocsp.KeyCompromise) {
					t.Errorf("revoked at %v reason %d, want %v reason %d", r.RevokedAt, r.Reason, revokedAt, xocsp.KeyCompromise)
				}
			})
		}
	})

	// One-shot file mode: openssl answers a request file, no network.
	oneShot := func(t *testing.T, leaf *pkitest.Leaf, signerPEM, signerKey string, extra ...string) []byte {
		t.Helper()
		req, err := xocsp.CreateRequest(leaf.Cert, ca.Cert, nil)
		if err != nil {
			t.Fatal(err)
		}
		reqFile := ocspWrite(t, filepath.Join(t.TempDir(), "req.der"), req, 0o644)
		respFile := filepath.Join(t.TempDir(), "resp.der")
		args := append([]string{"ocsp", "-index", index, "-CA", caPEM, "-rsigner", signerPEM, "-rkey", signerKey,
			"-reqin", reqFile, "-respout", respFile, "-nmin", "30"}, extra...)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		der, err := os.ReadFile(respFile)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	fileTests := []struct {
		name      string
		leaf      *pkitest.Leaf
		signer    [2]string
		extra     []string
		want      error
		wantGood  bool
		wantBySig *x509.Certificate
	}{
		{"delegated good", good, [2]string{dPEM, dKey}, nil, nil, true, delegate.Cert},
		{"delegated revoked", revoked, [2]string{dPEM, dKey}, nil, ocsp.ErrRevoked, false, delegate.Cert},
		{"CA signs itself", good, [2]string{caPEM, caKey}, nil, nil, true, ca.Cert},
		{"CA, no certificate, key-hash ID", good, [2]string{caPEM, caKey}, []string{"-resp_no_certs", "-resp_key_id"}, nil, true, ca.Cert},
		{"delegated, key-hash ID", good, [2]string{dPEM, dKey}, []string{"-resp_key_id"}, nil, true, delegate.Cert},
		{"other CA's responder", good, [2]string{oPEM, oKey}, nil, ocsp.ErrUnauthorizedResponder, false, nil},
	}
	for _, tt := range fileTests {
		t.Run("file/"+tt.name, func(t *testing.T) {
			der := oneShot(t, tt.leaf, tt.signer[0], tt.signer[1], tt.extra...)
			r, err := ocsp.ParseAndVerify(der, tt.leaf.Cert, ca.Cert, time.Now(), 0)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("ParseAndVerify() error = %v, want %v", err, tt.want)
			}
			if tt.wantBySig != nil && (r == nil || !r.Signer.Equal(tt.wantBySig)) {
				t.Fatalf("ParseAndVerify() = %+v, want signed by %s", r, tt.wantBySig.Subject)
			}
			if tt.wantGood && r.NextUpdate.Sub(r.ThisUpdate) != 30*time.Minute {
				t.Errorf("nextUpdate - thisUpdate = %v, want 30m (-nmin 30)", r.NextUpdate.Sub(r.ThisUpdate))
			}
		})
	}
}

var ocspAcceptLine = regexp.MustCompile(`^ACCEPT\s+(\S+):(\d+)\b`)

// ocspStartOpenSSLResponder runs `openssl ocsp -index … -port 0` and
// returns its URL; OpenSSL 3 reports the port it bound as "ACCEPT host:port".
func ocspStartOpenSSLResponder(t *testing.T, openssl, index, caPEM, signerPEM, signerKey string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, openssl, "ocsp", "-index", index, "-CA", caPEM, "-rsigner", signerPEM,
		"-rkey", signerKey, "-port", "0", "-nmin", "30")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	portc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := ocspAcceptLine.FindStringSubmatch(sc.Text()); m != nil {
				portc <- m[2]
				break
			}
		}
		close(portc)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case port, ok := <-portc:
		if !ok {
			t.Fatalf("openssl ocsp exited without reporting its port; stderr:\n%s", stderr.String())
		}
		return "http://127.0.0.1:" + port
	case <-time.After(30 * time.Second):
		t.Fatalf("openssl ocsp did not report its port within 30 s; stderr:\n%s", stderr.String())
	}
	return ""
}
