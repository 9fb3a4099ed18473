package interop

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/passerelle/passerelle/internal/daemon"
	"github.com/passerelle/passerelle/pki"
)

// caOpenSSL returns the path of openssl, skipping the test when it is
// missing (failing under CI=true, where every tool must be present).
func caOpenSSL(t *testing.T) string {
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

// caCLI runs a program and returns its combined output.
type caCLI struct {
	t   *testing.T
	bin string
}

func (c caCLI) run(args ...string) (string, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.bin, args...).CombinedOutput()
	return string(out), err
}

func (c caCLI) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", filepath.Base(c.bin), strings.Join(args, " "), err, out)
	}
	return out
}

// TestCAWithOpenSSL drives the passerelle CA as docs/ca.md shows, checking
// what it makes with openssl: CSRs from openssl req are signed (and weak
// ones refused), openssl verify accepts the chains, a TSA certificate has
// exactly one, critical, timeStamping EKU, and openssl ocsp against
// `ca serve` reads good, then revoked after `ca revoke`.
func TestCAWithOpenSSL(t *testing.T) {
	ossl := caCLI{t, caOpenSSL(t)}
	bin := filepath.Join(t.TempDir(), "passerelle")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/passerelle").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	p := caCLI{t, bin}
	work := t.TempDir()
	caDir := filepath.Join(work, "ca")
	caPEM := filepath.Join(caDir, "ca.pem")
	p.must("ca", "init", "--dir", caDir, "--instance", "EE", "--operator", "interop")
	if fi, err := os.Stat(filepath.Join(caDir, "ca-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca-key.pem: %v, mode %v; want 0600", err, fi.Mode())
	}

	t.Run("openssl req CSR is signed", func(t *testing.T) {
		for _, alg := range [][]string{
			{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"},
			{"-newkey", "rsa:2048"},
		} {
			d := t.TempDir()
			args := append([]string{"req", "-new", "-nodes", "-keyout", filepath.Join(d, "k.pem"), "-out", filepath.Join(d, "r.csr"), "-subj", "/CN=anything/O=Someone"}, alg...)
			ossl.must(args...)
			out := p.must("ca", "sign", "--dir", caDir, "--csr", filepath.Join(d, "r.csr"), "--member", "EE/GOV/70000001",
				"--usage", "auth", "--host", "ss1.example.org", "--out", filepath.Join(d, "c.pem"))
			if !strings.Contains(out, "issued auth certificate") {
				t.Errorf("ca sign said %q", out)
			}
			if v := ossl.must("verify", "-CAfile", caPEM, "-purpose", "sslclient", filepath.Join(d, "c.pem")); !strings.Contains(v, ": OK") {
				t.Errorf("openssl verify: %s", v)
			}
			text := ossl.must("x509", "-in", filepath.Join(d, "c.pem"), "-noout", "-text")
			for _, want := range []string{"URI:urn:passerelle:member:EE/GOV/70000001", "DNS:ss1.example.org", "TLS Web Server Authentication, TLS Web Client Authentication", "Subject: O = 70000001, OU = auth, CN = EE/GOV/70000001"} {
				if !strings.Contains(text, want) {
					t.Errorf("certificate lacks %q:\n%s", want, text)
				}
			}
		}
	})

	t.Run("weak and broken CSRs are refused", func(t *testing.T) {
		d := t.TempDir()
		ossl.must("req", "-new", "-nodes", "-newkey", "rsa:1024", "-keyout", filepath.Join(d, "k.pem"), "-out", filepath.Join(d, "weak.csr"), "-subj", "/CN=weak")
		out, err := p.run("ca", "sign", "--dir", caDir, "--csr", filepath.Join(d, "weak.csr"), "--member", "EE/GOV/70000001", "--usage", "sign", "--out", filepath.Join(d, "c.pem"))
		if err == nil || !strings.Contains(out, "RSA 1024 bits, want at least 2048") {
			t.Errorf("ca sign of an RSA-1024 CSR: %v\n%s", err, out)
		}
		os.WriteFile(filepath.Join(d, "junk.csr"), []byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"), 0o644)
		out, err = p.run("ca", "sign", "--dir", caDir, "--csr", filepath.Join(d, "junk.csr"), "--member", "EE/GOV/70000001", "--usage", "sign", "--out", filepath.Join(d, "c.pem"))
		if err == nil || !strings.Contains(out, "bad certificate signing request") {
			t.Errorf("ca sign of a truncated CSR: %v\n%s", err, out)
		}
		ossl.must("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", filepath.Join(d, "k2.pem"), "-out", filepath.Join(d, "ok.csr"), "-subj", "/CN=x")
		for _, tc := range []struct{ member, usage, want string }{
			{"EE/GOV", "sign", "malformed identifier"},
			{"EE/GOV/70000001", "email", "unknown certificate usage"},
		} {
			out, err = p.run("ca", "sign", "--dir", caDir, "--csr", filepath.Join(d, "ok.csr"), "--member", tc.member, "--usage", tc.usage, "--out", filepath.Join(d, "c.pem"))
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("ca sign --member %s --usage %s: %v\n%s; want %q", tc.member, tc.usage, err, out, tc.want)
			}
		}
		if _, err := os.Stat(filepath.Join(d, "c.pem")); err == nil {
			t.Error("a refused request wrote a certificate")
		}
	})

	t.Run("tsa certificate has one critical timeStamping EKU", func(t *testing.T) {
		d := t.TempDir()
		ossl.must("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", filepath.Join(d, "k.pem"), "-out", filepath.Join(d, "tsa.csr"), "-subj", "/CN=Passerelle TSA")
		p.must("ca", "sign", "--dir", caDir, "--csr", filepath.Join(d, "tsa.csr"), "--usage", "tsa", "--out", filepath.Join(d, "tsa.pem"))
		text := ossl.must("x509", "-in", filepath.Join(d, "tsa.pem"), "-noout", "-text")
		if n := strings.Count(text, "X509v3 Extended Key Usage"); n != 1 {
			t.Errorf("%d extended key usage extensions, want 1:\n%s", n, text)
		}
		if !strings.Contains(text, "X509v3 Extended Key Usage: critical\n                Time Stamping\n") {
			t.Errorf("EKU is not exactly a critical Time Stamping:\n%s", text)
		}
		if v := ossl.must("verify", "-CAfile", caPEM, "-purpose", "timestampsign", filepath.Join(d, "tsa.pem")); !strings.Contains(v, ": OK") {
			t.Errorf("openssl verify -purpose timestampsign: %s", v)
		}
	})

	t.Run("demo", func(t *testing.T) {
		out, err := p.run("demo")
		if err != nil || !strings.Contains(out, "demo passed") || !strings.Contains(out, "ocsp: revoked") {
			t.Errorf("passerelle demo: %v\n%s", err, out)
		}
	})

	t.Run("openssl ocsp reads good, then revoked", func(t *testing.T) {
		addrFile := filepath.Join(work, "ca.addr")
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		serve := exec.CommandContext(ctx, bin, "ca", "serve", "--dir", caDir, "--listen", "127.0.0.1:0", "--addr-file", addrFile)
		var logs strings.Builder
		serve.Stderr = &logs
		if err := serve.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- serve.Wait() }()
		var addr string
		for deadline := time.Now().Add(20 * time.Second); addr == ""; time.Sleep(50 * time.Millisecond) {
			if addrs, err := daemon.ReadAddrFile(addrFile); err == nil {
				addr = addrs["ca"]
			} else if time.Now().After(deadline) {
				t.Fatalf("ca serve wrote no address file: %v\n%s", err, logs.String())
			}
		}
		caURL := "http://" + addr
		ocspURL := caURL + "/ocsp"

		// The member: key, CSR, enrollment, while the server runs.
		keys := filepath.Join(work, "keys")
		p.must("keys", "generate", "--dir", keys, "--member", "EE/GOV/70000002", "--usage", "auth")
		if out := p.must("keys", "enroll", "--dir", keys, "--ca-url", caURL, "--wait", "0"); !strings.Contains(out, "pending") {
			t.Fatalf("keys enroll --wait 0: %s", out)
		}
		var pending []struct{ ID, Member string }
		if err := json.Unmarshal([]byte(p.must("ca", "pending", "--dir", caDir, "--json")), &pending); err != nil || len(pending) != 1 || pending[0].Member != "EE/GOV/70000002" {
			t.Fatalf("ca pending --json = %+v, %v", pending, err)
		}
		p.must("ca", "approve", "--dir", caDir, pending[0].ID)
		if out := p.must("keys", "enroll", "--dir", keys, "--ca-url", caURL, "--wait", "10s", "--poll", "100ms"); !strings.Contains(out, "approved") {
			t.Fatalf("keys enroll: %s", out)
		}
		cert := filepath.Join(keys, "auth.pem")
		if v := ossl.must("verify", "-CAfile", caPEM, cert); !strings.Contains(v, ": OK") {
			t.Errorf("openssl verify of the enrolled chain: %s", v)
		}

		ocsp := func() string {
			t.Helper()
			return ossl.must("ocsp", "-issuer", caPEM, "-cert", cert, "-url", ocspURL, "-CAfile", caPEM)
		}
		out := ocsp()
		if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, cert+": good") {
			t.Fatalf("openssl ocsp before revocation:\n%s", out)
		}
		if !strings.Contains(out, "This Update:") || !strings.Contains(out, "Next Update:") {
			t.Errorf("OCSP response lacks thisUpdate/nextUpdate:\n%s", out)
		}

		// GET /ocsp/{base64}, RFC 6960 appendix A.1, as a Go client sends it.
		if st := caOCSPGet(t, ocspURL, cert, caPEM); st != xocsp.Good {
			t.Errorf("GET /ocsp/{base64} status = %d, want good", st)
		}

		serial := strings.TrimPrefix(strings.TrimSpace(ossl.must("x509", "-in", cert, "-noout", "-serial")), "serial=")
		p.must("ca", "revoke", "--dir", caDir, "--serial", serial, "--reason", "keyCompromise")
		out = ocsp()
		if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, cert+": revoked") || !strings.Contains(out, "Reason: keyCompromise") {
			t.Fatalf("openssl ocsp after revocation:\n%s", out)
		}
		if st := caOCSPGet(t, ocspURL, cert, caPEM); st != xocsp.Revoked {
			t.Errorf("GET /ocsp/{base64} status = %d, want revoked", st)
		}
		list := p.must("ca", "list", "--dir", caDir)
		if !strings.Contains(list, "revoked (keyCompromise)") {
			t.Errorf("ca list:\n%s", list)
		}

		// A clean shutdown on SIGTERM.
		serve.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("ca serve exited with %v after SIGTERM\n%s", err, logs.String())
			}
		case <-time.After(15 * time.Second):
			t.Errorf("ca serve did not stop on SIGTERM")
		}
		if !strings.Contains(logs.String(), `"msg":"listening"`) {
			t.Errorf("ca serve logs are not JSON with the bound address:\n%s", logs.String())
		}
	})
}

// caOCSPGet asks for the status of the leaf in certFile with GET
// /ocsp/{base64(request)} and returns it, verified against the issuer.
func caOCSPGet(t *testing.T, ocspURL, certFile, issuerFile string) int {
	t.Helper()
	leaf, err := pki.LoadCertificates(certFile)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := pki.LoadCertificates(issuerFile)
	if err != nil {
		t.Fatal(err)
	}
	req, err := xocsp.CreateRequest(leaf[0], issuer[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(ocspURL + "/" + url.PathEscape(base64.StdEncoding.EncodeToString(req)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET OCSP: %s %s", resp.Status, body)
	}
	r, err := xocsp.ParseResponseForCert(body, leaf[0], issuer[0])
	if err != nil {
		t.Fatalf("GET OCSP response: %v", err)
	}
	return r.Status
}
