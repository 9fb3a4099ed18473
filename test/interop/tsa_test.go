package interop

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
	"github.com/passerelle/passerelle/timestamp"
)

// tsaOpenSSL returns the path of openssl; SKIP when missing, FAIL under CI=true.
func tsaOpenSSL(t *testing.T) string {
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

func tsaRun(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// tsaFixture is our TSA on 127.0.0.1:0 with its PKI written to files.
type tsaFixture struct {
	dir  string
	ca   *pkitest.CA
	leaf *pkitest.Leaf
	url  string
}

func newTSAFixture(t *testing.T) *tsaFixture {
	t.Helper()
	dir := t.TempDir()
	ca := pkitest.NewCA(t, "Interop root")
	leaf := ca.Issue(t, pki.ClientID{}, pki.UsageTSA)
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pki.EncodeCertificatesPEM(ca.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tsa.pem"), pki.EncodeCertificatesPEM(leaf.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := pki.WritePrivateKey(filepath.Join(dir, "tsa-key.pem"), leaf.Key); err != nil {
		t.Fatal(err)
	}
	ledger, err := timestamp.OpenLedger(filepath.Join(dir, "tokens.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ledger.Close() })
	srv, err := timestamp.NewServer(timestamp.ServerConfig{
		Signer: leaf.Key, Chain: leaf.Chain, Policy: []int{1, 3, 6, 1, 4, 1, 99999, 3161, 1}, Ledger: ledger,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &tsaFixture{dir: dir, ca: ca, leaf: leaf, url: hs.URL}
}

func (f *tsaFixture) post(t *testing.T, query []byte) []byte {
	t.Helper()
	resp, err := http.Post(f.url, timestamp.ContentTypeQuery, bytes.NewReader(query))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST query: HTTP %d, %v", resp.StatusCode, err)
	}
	return body
}

// openssl ts -query → our TSA → openssl ts -verify.
func TestTSAOpenSSLVerifiesOurReplies(t *testing.T) {
	openssl := tsaOpenSSL(t)
	f := newTSAFixture(t)
	data := filepath.Join(f.dir, "data.txt")
	if err := os.WriteFile(data, []byte("interop message\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		digest string
		cert   bool
	}{
		{"sha256 certReq", "-sha256", true},
		{"sha384 certReq", "-sha384", true},
		{"sha512 certReq", "-sha512", true},
		{"sha256 no certReq", "-sha256", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := filepath.Join(f.dir, "q.tsq")
			args := []string{"ts", "-query", "-data", data, tc.digest, "-out", q}
			if tc.cert {
				args = append(args, "-cert")
			}
			tsaRun(t, f.dir, openssl, args...)
			query, err := os.ReadFile(q)
			if err != nil {
				t.Fatal(err)
			}
			reply := filepath.Join(f.dir, "r.tsr")
			if err := os.WriteFile(reply, f.post(t, query), 0o644); err != nil {
				t.Fatal(err)
			}
			verify := []string{"ts", "-verify", "-data", data, "-in", reply, "-CAfile", "ca.pem"}
			if !tc.cert {
				verify = append(verify, "-untrusted", "tsa.pem")
			}
			out := tsaRun(t, f.dir, openssl, verify...)
			if !strings.Contains(out, "Verification: OK") {
				t.Errorf("openssl ts -verify: %s", out)
			}
			// The query file route as well (nonce, imprint checked against the query).
			out = tsaRun(t, f.dir, openssl, append([]string{"ts", "-verify", "-queryfile", q, "-in", reply, "-CAfile", "ca.pem"}, verify[8:]...)...)
			if !strings.Contains(out, "Verification: OK") {
				t.Errorf("openssl ts -verify -queryfile: %s", out)
			}
			// openssl refuses it for other data.
			other := filepath.Join(f.dir, "other.txt")
			os.WriteFile(other, []byte("something else\n"), 0o644)
			cmd := exec.Command(openssl, append([]string{"ts", "-verify", "-data", other, "-in", reply, "-CAfile", "ca.pem"}, verify[8:]...)...)
			cmd.Dir = f.dir
			if out, err := cmd.CombinedOutput(); err == nil {
				t.Errorf("openssl ts -verify accepted the reply for other data: %s", out)
			}
		})
	}
}

// openssl ts -reply (openssl as the TSA, with our pkitest certificate) → our verifier.
func TestTSAWeVerifyOpenSSLTokens(t *testing.T) {
	openssl := tsaOpenSSL(t)
	f := newTSAFixture(t)
	msg := []byte("stamped by openssl\n")
	data := filepath.Join(f.dir, "data.txt")
	if err := os.WriteFile(data, msg, 0o644); err != nil {
		t.Fatal(err)
	}
	s256 := sha256.Sum256(msg)
	s512 := sha512.Sum512(msg)
	cases := []struct {
		name    string
		digest  string
		h       crypto.Hash
		sum     []byte
		essAlg  string // sha1: signingCertificate (v1); sha256: signingCertificateV2
		certReq bool
	}{
		{"sha256 essv2", "-sha256", crypto.SHA256, s256[:], "sha256", true},
		{"sha256 essv1", "-sha256", crypto.SHA256, s256[:], "sha1", true},
		{"sha512 essv2", "-sha512", crypto.SHA512, s512[:], "sha256", true},
		{"sha256 no certReq", "-sha256", crypto.SHA256, s256[:], "sha256", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cnf := filepath.Join(f.dir, "openssl-tsa.cnf")
			conf := fmt.Sprintf(`[ tsa ]
default_tsa = tsa1
[ tsa1 ]
dir = %s
serial = $dir/tsaserial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/ca.pem
signer_key = $dir/tsa-key.pem
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1, millisecs:500
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = %s
`, f.dir, tc.essAlg)
			if err := os.WriteFile(cnf, []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(f.dir, "tsaserial"), []byte("01\n"), 0o644)
			args := []string{"ts", "-query", "-data", data, tc.digest, "-out", "q.tsq"}
			if tc.certReq {
				args = append(args, "-cert")
			}
			tsaRun(t, f.dir, openssl, args...)
			tsaRun(t, f.dir, openssl, "ts", "-reply", "-config", cnf, "-queryfile", "q.tsq", "-out", "r.tsr")
			reply, err := os.ReadFile(filepath.Join(f.dir, "r.tsr"))
			if err != nil {
				t.Fatal(err)
			}
			token, err := timestamp.TokenFromReply(reply)
			if err != nil {
				t.Fatalf("TokenFromReply = %v", err)
			}
			opts := timestamp.VerifyOptions{Hash: tc.h}
			if !tc.certReq {
				opts.Certificates = []*x509.Certificate{f.leaf.Cert}
			}
			info, err := timestamp.VerifyToken(token, tc.sum, f.ca.Pool(), opts)
			if err != nil {
				t.Fatalf("VerifyToken(openssl token) = %v", err)
			}
			if info.Policy.String() != "1.2.3.4.1" || info.Accuracy.Milliseconds() != 1500 {
				t.Errorf("policy %v accuracy %v, want 1.2.3.4.1 and 1.5s", info.Policy, info.Accuracy)
			}
			if _, err := timestamp.VerifyToken(token, make([]byte, tc.h.Size()), f.ca.Pool(), opts); err == nil {
				t.Error("VerifyToken accepted the openssl token for another digest")
			}
		})
	}
}
