package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// ErrNoMemberID reports a certificate that binds no member identifier.
var ErrNoMemberID = errors.New("pki: certificate names no member")

// MemberFromCert reads the member identifier bound into cert as a SAN URI
// (see MemberURI). A certificate binding two different members is refused.
func MemberFromCert(cert *x509.Certificate) (ClientID, error) {
	var found ClientID
	for _, u := range cert.URIs {
		m, err := ParseMemberURI(u)
		if err != nil {
			if errors.Is(err, ErrBadIdentifier) && !hasMemberPrefix(u.String()) {
				continue // some other URI
			}
			return ClientID{}, err
		}
		if !found.IsZero() && found != m {
			return ClientID{}, fmt.Errorf("%w: certificate binds two members (%s, %s)", ErrBadIdentifier, found, m)
		}
		found = m
	}
	if found.IsZero() {
		return ClientID{}, ErrNoMemberID
	}
	return found, nil
}

func hasMemberPrefix(s string) bool {
	return len(s) >= len(MemberURIPrefix) && s[:len(MemberURIPrefix)] == MemberURIPrefix
}

// Fingerprint is the hex SHA-256 of a certificate's DER encoding, the form the
// federation directory uses to pin a security server's TLS certificate.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// ParseCertificatesPEM decodes every CERTIFICATE block in data, in order.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("pki: no certificate in PEM data")
	}
	return certs, nil
}

// LoadCertificates reads a PEM file of one or more certificates.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	certs, err := ParseCertificatesPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// EncodeCertificatesPEM encodes certs as consecutive PEM blocks.
func EncodeCertificatesPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
