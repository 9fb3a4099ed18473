package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
)

// KeyAlgorithm names a key type and size.
type KeyAlgorithm string

const (
	ECDSAP256 KeyAlgorithm = "ecdsa-p256" // the default
	RSA2048   KeyAlgorithm = "rsa-2048"
	RSA3072   KeyAlgorithm = "rsa-3072"
	RSA4096   KeyAlgorithm = "rsa-4096"
)

// MinRSABits is the smallest RSA modulus we issue certificates for.
const MinRSABits = 2048

// ErrWeakKey reports a key smaller than we accept.
var ErrWeakKey = errors.New("pki: key too weak")

// ParseKeyAlgorithm checks an algorithm name; "" means ECDSAP256.
func ParseKeyAlgorithm(s string) (KeyAlgorithm, error) {
	switch KeyAlgorithm(s) {
	case "":
		return ECDSAP256, nil
	case ECDSAP256, RSA2048, RSA3072, RSA4096:
		return KeyAlgorithm(s), nil
	}
	return "", fmt.Errorf("pki: unknown key algorithm %q (want ecdsa-p256, rsa-2048, rsa-3072 or rsa-4096)", s)
}

// GenerateKey makes a new private key of algorithm a.
func GenerateKey(a KeyAlgorithm) (crypto.Signer, error) {
	switch a {
	case ECDSAP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("pki: unknown key algorithm %q", a)
}

// CheckPublicKey refuses keys we do not issue for: RSA under MinRSABits,
// curves other than P-256/P-384/P-521, unknown types.
func CheckPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return fmt.Errorf("%w: RSA %d bits, want at least %d", ErrWeakKey, k.N.BitLen(), MinRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("%w: unsupported elliptic curve", ErrWeakKey)
	}
	return fmt.Errorf("%w: unsupported public key type %T", ErrWeakKey, pub)
}

// MarshalPrivateKeyPEM encodes key as a PKCS #8 "PRIVATE KEY" PEM block.
func MarshalPrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM decodes a PKCS #8, PKCS #1 or SEC 1 private key in PEM.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("pki: no PEM block in private key file")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("pki: unexpected PEM block %q in private key file", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: parse private key: %w", err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: private key of type %T cannot sign", key)
	}
	return s, nil
}

// WritePrivateKey writes key to path as PEM with mode 0600, atomically.
func WritePrivateKey(path string, key crypto.Signer) error {
	data, err := MarshalPrivateKeyPEM(key)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, data, 0o600)
}

// LoadPrivateKey reads a PEM private key and refuses one readable by group or
// others. The mode is checked on the opened file, so it is the file read.
func LoadPrivateKey(path string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("pki: private key %s has mode %v; want 0600 (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return ParsePrivateKeyPEM(data)
}

// WriteFileAtomic writes data to a temporary file beside path, syncs it and
// renames it over path, so that readers see the old or the new file, whole.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	// The rename is durable only once the directory is synced.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// CreateCSR makes a PEM certificate signing request for member, signed by key.
// The subject names the member and the usage;
// the CA binds the identifier it is told, as a SAN URI; the CSR carries the
// same URI so that the administrator sees what the member asks for.
func CreateCSR(key crypto.Signer, member ClientID, usage Usage) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "Passerelle " + string(usage), OrganizationalUnit: []string{string(usage)}},
	}
	if !member.IsZero() {
		tmpl.Subject.CommonName = member.String()
		tmpl.Subject.Organization = []string{member.Member}
		tmpl.URIs = []*url.URL{MemberURI(member)}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ErrBadCSR reports a certificate signing request we cannot accept.
var ErrBadCSR = errors.New("pki: bad certificate signing request")

// maxCSRSize bounds what ParseCSR reads.
const maxCSRSize = 64 << 10

// ParseCSR decodes a PEM (or DER) CSR, checks its self-signature and its key.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) > maxCSRSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadCSR, len(data), maxCSRSize)
	}
	der := data
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("%w: PEM block %q, want CERTIFICATE REQUEST", ErrBadCSR, block.Type)
		}
		der = block.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: self-signature does not verify: %v", ErrBadCSR, err)
	}
	if err := CheckPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	return csr, nil
}
