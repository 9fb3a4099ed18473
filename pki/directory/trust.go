package directory

import (
	"crypto/x509"
	"fmt"
	"path/filepath"

	"github.com/passerelle/passerelle/pki"
)

// Files of a trust directory (DESIGN "Trust and parameters") that a
// directory verifier reads.
const (
	TrustCAFile     = "ca.pem"        // the federation's CA roots
	TrustSignerFile = "directory.pem" // the pinned directory signing certificate(s)
)

// LoadVerifier builds the Verifier of a trust directory: roots from
// trustDir/ca.pem, the pinned signer(s) from trustDir/directory.pem (both
// required: a trust directory always pins the directory signer), and the
// expected instance ("" accepts any).
func LoadVerifier(trustDir, instance string) (*Verifier, error) {
	roots, err := pki.LoadCertificates(filepath.Join(trustDir, TrustCAFile))
	if err != nil {
		return nil, fmt.Errorf("directory: trust: %w", err)
	}
	signers, err := pki.LoadCertificates(filepath.Join(trustDir, TrustSignerFile))
	if err != nil {
		return nil, fmt.Errorf("directory: trust: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	return &Verifier{Roots: pool, Signers: signers, Instance: instance}, nil
}
