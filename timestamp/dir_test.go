package timestamp

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
)

func TestInitOpenDir(t *testing.T) {
	ca := pkitest.NewCA(t, "root")
	issue := func(_ context.Context, csrPEM []byte) ([]*x509.Certificate, error) {
		csr, err := pki.ParseCSR(csrPEM)
		if err != nil {
			return nil, err
		}
		leaf := ca.Issue(t, pki.ClientID{}, pki.UsageTSA)
		// pkitest makes its own key; re-issue for the CSR's key is not
		// offered, so this test checks the key/certificate mismatch refusal.
		_ = csr
		return leaf.Chain, nil
	}
	dir := filepath.Join(t.TempDir(), "tsa")
	if _, err := InitDir(t.Context(), InitConfig{Dir: dir, Issue: issue}); err == nil {
		t.Fatal("InitDir with a certificate for another key succeeded")
	}

	leaf := ca.Issue(t, pki.ClientID{}, pki.UsageTSA)
	keyPEM, err := pki.MarshalPrivateKeyPEM(leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pki.EncodeCertificatesPEM(leaf.Chain...)
	if _, err := InitDir(t.Context(), InitConfig{Dir: dir, KeyPEM: keyPEM, CertPEM: certPEM, Accuracy: 500 * time.Millisecond}); err != nil {
		t.Fatalf("InitDir = %v", err)
	}
	if _, err := InitDir(t.Context(), InitConfig{Dir: dir, KeyPEM: keyPEM, CertPEM: certPEM}); !errors.Is(err, ErrDirExists) {
		t.Errorf("second InitDir = %v, want ErrDirExists", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	signLeaf := ca.Issue(t, pki.ClientID{}, pki.UsageSign)
	signKey, _ := pki.MarshalPrivateKeyPEM(signLeaf.Key)
	if _, err := InitDir(t.Context(), InitConfig{Dir: t.TempDir(), KeyPEM: signKey, CertPEM: pki.EncodeCertificatesPEM(signLeaf.Cert)}); !errors.Is(err, ErrUntrustedTSA) {
		t.Errorf("InitDir(non-TSA certificate) = %v, want ErrUntrustedTSA", err)
	}

	srv, ledger, err := OpenDir(dir, quietLog, nil)
	if err != nil {
		t.Fatalf("OpenDir = %v", err)
	}
	defer ledger.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()
	policy, _, err := LoadDirConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ClientConfig{URL: hs.URL, Roots: ca.Pool(), Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Stamp(t.Context(), Digest([]byte("dir")), crypto.SHA256)
	if err != nil {
		t.Fatalf("Stamp = %v", err)
	}
	if tok.Accuracy != 500*time.Millisecond {
		t.Errorf("accuracy = %v, want 500ms from the config", tok.Accuracy)
	}
	if policy[0] != 2 || policy[1] != 25 {
		t.Errorf("default policy = %v, want under 2.25", policy)
	}
}

func TestParseOID(t *testing.T) {
	for s, ok := range map[string]bool{"1.2.3": true, "2.25.12345": true, "1": false, "1.2.x": false, "3.1": false, "1.40": false, "1.02": false, "": false, "1.2.4294967296": false} {
		if _, err := ParseOID(s); (err == nil) != ok {
			t.Errorf("ParseOID(%q) = %v, want ok %v", s, err, ok)
		}
	}
}
