package directory

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/passerelle/passerelle/pki"
)

// TestOpenSSLVerifies checks the signed form with a tool nobody here wrote:
// openssl verifies the x5c chain against the root and the ES256 signature
// over "header.payload" (the JWS signing input) — the steps
// docs/directory.md gives the operator.
func TestOpenSSLVerifies(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is missing (CI=true)")
		}
		t.Skip("openssl not installed")
	}
	f := newFixture(t)
	signed := f.sign(t)
	hdrB64, payloadB64, sigB64 := segments(t, signed)
	tmp := t.TempDir()

	hdrJSON, err := base64.RawURLEncoding.DecodeString(hdrB64)
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct {
		Alg string   `json:"alg"`
		Typ string   `json:"typ"`
		X5C []string `json:"x5c"`
	}
	if err := json.Unmarshal(hdrJSON, &hdr); err != nil {
		t.Fatal(err)
	}
	if hdr.Alg != "ES256" || hdr.Typ != JWSType || len(hdr.X5C) != 2 {
		t.Fatalf("header = %s", hdrJSON)
	}
	var chainPEM []byte
	for _, c := range hdr.X5C {
		der, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chainPEM = append(chainPEM, pki.EncodeCertificatesPEM(cert)...)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leaf := write("leaf.pem", chainPEM[:strings.Index(string(chainPEM), "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----\n")])
	root := write("ca.pem", pki.EncodeCertificatesPEM(f.ca.Cert))
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("openssl", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("verify", "-CAfile", root, leaf)
	pub := write("pub.pem", []byte(run("x509", "-in", leaf, "-noout", "-pubkey")))

	// JWS ES256 signatures are r‖s; openssl wants a DER ECDSA-Sig-Value.
	raw, err := base64.RawURLEncoding.DecodeString(sigB64)
	if err != nil || len(raw) != 64 {
		t.Fatalf("signature: %d bytes, %v", len(raw), err)
	}
	der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])})
	if err != nil {
		t.Fatal(err)
	}
	sig := write("sig.der", der)
	input := write("input", []byte(hdrB64+"."+payloadB64))
	if out := run("dgst", "-sha256", "-verify", pub, "-signature", sig, input); !strings.Contains(out, "Verified OK") {
		t.Errorf("openssl dgst -verify: %s", out)
	}
	bad := write("bad", []byte(hdrB64+"."+payloadB64+"x"))
	if out, err := exec.Command("openssl", "dgst", "-sha256", "-verify", pub, "-signature", sig, bad).CombinedOutput(); err == nil {
		t.Errorf("openssl verified an altered signing input: %s", out)
	}
}
