package ca

import (
	"crypto"
	"fmt"
	"math/big"
	"strings"

	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/initca"

	"github.com/passerelle/passerelle/pki"
)

// newRoot makes a self-signed root certificate and key with cfssl initca.
// The root may issue end-entity certificates only (path length 0).
func newRoot(name, instance string, alg pki.KeyAlgorithm) (certPEM, keyPEM []byte, err error) {
	kr := &csr.KeyRequest{A: "ecdsa", S: 256}
	switch alg {
	case pki.RSA2048:
		kr = &csr.KeyRequest{A: "rsa", S: 2048}
	case pki.RSA3072:
		kr = &csr.KeyRequest{A: "rsa", S: 3072}
	case pki.RSA4096:
		kr = &csr.KeyRequest{A: "rsa", S: 4096}
	}
	req := &csr.CertificateRequest{
		CN:         name,
		Names:      []csr.Name{{O: "Passerelle", OU: instance}},
		KeyRequest: kr,
		CA:         &csr.CAConfig{Expiry: RootValidity.String(), PathLenZero: true},
	}
	certPEM, _, keyPEM, err = initca.New(req)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: initca: %w", err)
	}
	return certPEM, keyPEM, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// serialHex is the canonical form of a serial number: lower-case hex, no
// leading zeros, no separators.
func serialHex(n *big.Int) string { return n.Text(16) }

// ParseSerial reads a serial number in hex, as openssl and `ca list` print it:
// upper or lower case, with or without colons or a 0x prefix.
func ParseSerial(s string) (*big.Int, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0x"), "0X")
	t = strings.ReplaceAll(t, ":", "")
	n, ok := new(big.Int).SetString(t, 16)
	if !ok || n.Sign() <= 0 || len(t) > 64 {
		return nil, fmt.Errorf("%w: serial %q is not a positive hex number", ErrBadRequest, s)
	}
	return n, nil
}
