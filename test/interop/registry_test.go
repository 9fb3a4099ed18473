package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/passerelle/passerelle/hashregistry"
	"github.com/passerelle/passerelle/hashregistry/client"
	"github.com/passerelle/passerelle/internal/daemon"
	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ocsp"
	"github.com/passerelle/passerelle/pki/pkitest"
)

// TestRegistryCLI drives the passerelle binary as the operator and the
// auditor do (docs/registry.md): registry init, serve on port 0, appends by
// a member over mTLS, audit receipt, audit registry (twice, --full), and a
// clean SIGTERM.
func TestRegistryCLI(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "passerelle")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/passerelle").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func(args ...string) (string, error) {
		out, err := exec.Command(bin, args...).CombinedOutput()
		return string(out), err
	}
	dir, trust, state := t.TempDir(), t.TempDir(), t.TempDir()
	if out, err := run("registry", "init", "--dir", dir, "--origin", "registry.test/passerelle", "--member", "EE/GOV/REGISTRY"); err != nil {
		t.Fatalf("registry init: %v\n%s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(dir, "registry.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("registry.key: %v, mode %v; want 0600", err, fi.Mode())
	}
	// The federation CA issues the CSR (what `passerelle ca sign --usage registry` does).
	ca := pkitest.NewCA(t, "federation")
	csrPEM, err := os.ReadFile(filepath.Join(dir, "tls.csr"))
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	prof, _ := pki.UsageRegistry.Profile()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: csr.Subject, URIs: csr.URIs,
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: prof.KeyUsage, ExtKeyUsage: prof.ExtKeyUsage,
	}, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	os.WriteFile(filepath.Join(dir, "tls.pem"), pki.EncodeCertificatesPEM(cert, ca.Cert), 0o644)
	os.WriteFile(filepath.Join(trust, "ca.pem"), pki.EncodeCertificatesPEM(ca.Cert), 0o644)

	addrFile := filepath.Join(t.TempDir(), "addrs.json")
	srv := exec.Command(bin, "registry", "serve", "--dir", dir, "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--trust", trust, "--addr-file", addrFile)
	var logs syncBuffer // written by exec's copier while the test reads it
	srv.Stderr = &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	var addrs map[string]string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if addrs, err = daemon.ReadAddrFile(addrFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no addr file: %v\n%s", err, logs.String())
		}
	}
	// The registry checks each submitter's revocation status with the CA's
	// OCSP responder, which the member certificate names.
	responder, err := ocsp.NewResponder(ocsp.ResponderConfig{Issuer: ca.Cert, Signer: ca.Key,
		Source: ocsp.StatusFunc(func(context.Context, *big.Int) (ocsp.Status, error) { return ocsp.Status{Status: ocsp.Good}, nil })})
	if err != nil {
		t.Fatal(err)
	}
	ocspSrv := httptest.NewServer(responder.Route(nil))
	defer ocspSrv.Close()
	member := pki.ClientID{Instance: "EE", Class: "COM", Member: "12345"}
	leaf := ca.Issue(t, member, pki.UsageAuth, pkitest.WithOCSPServer(ocspSrv.URL+"/ocsp"))
	c, err := client.Dial(addrs["grpc"], &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{leaf.TLSCertificate()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := sha256.Sum256([]byte("a signed request"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rs, err := c.Append(ctx, []hashregistry.Submission{{Hash: msg, Kind: hashregistry.KindRequest}})
	if err != nil {
		t.Fatalf("Append: %v\n%s", err, logs.String())
	}
	receipt := filepath.Join(t.TempDir(), "r.tlog-proof")
	os.WriteFile(receipt, rs[0].Proof, 0o644)
	vkey := filepath.Join(dir, "registry.vkey")
	want := func(out string, err error, wantOK bool, contains ...string) {
		t.Helper()
		if (err == nil) != wantOK {
			t.Fatalf("exit error = %v, want ok=%v\n%s", err, wantOK, out)
		}
		for _, s := range contains {
			if !strings.Contains(out, s) {
				t.Fatalf("output lacks %q:\n%s", s, out)
			}
		}
	}
	out, err := run("audit", "receipt", receipt, "--vkey", vkey, "--hash", strings.ToLower(hexString(msg[:])))
	want(out, err, true, "entry 0 is included", "EE/COM/12345")
	url := "http://" + addrs["http"]
	out, err = run("audit", "registry", "--url", url, "--vkey", vkey, "--state", state)
	want(out, err, true, "first audit")
	c.Append(ctx, []hashregistry.Submission{{Hash: sha256.Sum256([]byte("x")), Kind: hashregistry.KindResponse}})
	out, err = run("audit", "registry", "--url", url, "--vkey", vkey, "--state", state, "--full")
	want(out, err, true, "consistent with the last checkpoint seen (1 → 2 entries", "all 2 entries")
	// A receipt altered by one byte fails.
	bad := bytes.Replace(rs[0].Proof, []byte("index 0"), []byte("index 1"), 1)
	os.WriteFile(receipt, bad, 0o644)
	out, err = run("audit", "receipt", receipt, "--vkey", vkey)
	want(out, err, false, "FAIL")

	srv.Process.Signal(syscall.SIGTERM)
	if err := srv.Wait(); err != nil {
		t.Fatalf("registry exit after SIGTERM: %v\n%s", err, logs.String())
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	s := make([]byte, 0, 2*len(b))
	for _, x := range b {
		s = append(s, digits[x>>4], digits[x&15])
	}
	return string(s)
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
