package directory

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lestrrat-go/jwx/v3/cert"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/passerelle/passerelle/pki"
)

// MediaType is the Content-Type of a signed directory (RFC 7515 §9.2.1).
const MediaType = "application/jose"

// JWSType is the explicit "typ" of the JWS header (RFC 8725 §3.11): a
// verifier refuses any other JWS, so that no other signed Passerelle object
// can pass for a directory.
const JWSType = "passerelle-directory+json"

// MaxClockSkew is how far in the future a document's issuedAt may be.
const MaxClockSkew = 5 * time.Minute

var (
	// ErrMalformed reports input that is not a compact JWS of a directory.
	ErrMalformed = errors.New("directory: malformed signed document")
	// ErrBadSignature reports a signature that does not verify.
	ErrBadSignature = errors.New("directory: signature does not verify")
	// ErrUntrustedSigner reports a signer certificate that does not chain to
	// the trust roots, lacks the directory usage, or is not a pinned signer.
	ErrUntrustedSigner = errors.New("directory: untrusted signer")
	// ErrExpired reports a directory past its expiresAt. A security server
	// holding only an expired copy refuses traffic with this cause (X-Road:
	// Server.ClientProxy.OutdatedGlobalConf).
	ErrExpired = errors.New("directory: expired")
	// ErrNotYetValid reports a directory issued in the future (beyond MaxClockSkew).
	ErrNotYetValid = errors.New("directory: issued in the future")
	// ErrWrongInstance reports a directory of another X-Road instance.
	ErrWrongInstance = errors.New("directory: wrong instance")
)

// Sign signs d (whose serial, issuedAt and expiresAt the caller has set) as a
// compact JWS with key, carrying chain (signer first) in x5c. The algorithm
// follows the key: ES256/ES384/ES512 for ECDSA P-256/P-384/P-521, PS256 for RSA.
// The signer's certificate must have the directory usage.
func Sign(d *Document, key crypto.Signer, chain []*x509.Certificate) ([]byte, error) {
	if len(chain) == 0 {
		return nil, errors.New("directory: sign: no certificate chain")
	}
	if err := checkDirectoryUsage(chain[0]); err != nil {
		return nil, fmt.Errorf("directory: sign: %w", err)
	}
	return signJWS(d, key, chain, JWSType)
}

// signJWS signs without checking the signer's usage (tests forge with it).
func signJWS(d *Document, key crypto.Signer, chain []*x509.Certificate, typ string) ([]byte, error) {
	if !publicKeysEqual(key.Public(), chain[0].PublicKey) {
		return nil, errors.New("directory: sign: key does not match the certificate")
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	alg, err := algorithmFor(key.Public())
	if err != nil {
		return nil, err
	}
	payload, err := d.Marshal()
	if err != nil {
		return nil, err
	}
	var x5c cert.Chain
	for _, c := range chain {
		if err := x5c.Add([]byte(base64.StdEncoding.EncodeToString(c.Raw))); err != nil {
			return nil, fmt.Errorf("directory: sign: %w", err)
		}
	}
	hdrs := jws.NewHeaders()
	for k, v := range map[string]any{jws.TypeKey: typ, jws.X509CertChainKey: &x5c} {
		if err := hdrs.Set(k, v); err != nil {
			return nil, fmt.Errorf("directory: sign: header %s: %w", k, err)
		}
	}
	out, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdrs)))
	if err != nil {
		return nil, fmt.Errorf("directory: sign: %w", err)
	}
	return out, nil
}

func algorithmFor(pub crypto.PublicKey) (jwa.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jwa.ES256(), nil
		case elliptic.P384():
			return jwa.ES384(), nil
		case elliptic.P521():
			return jwa.ES512(), nil
		}
	case *rsa.PublicKey:
		return jwa.PS256(), nil
	}
	return jwa.EmptySignatureAlgorithm(), fmt.Errorf("directory: no JWS algorithm for key type %T", pub)
}

// allowedAlgs are the algorithms a verifier accepts; each is checked against
// the signer's key type.
var allowedAlgs = []string{"ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// checkDirectoryUsage checks the pki.UsageDirectory profile: digital
// signature and content commitment, no extended key usage, not a CA.
func checkDirectoryUsage(c *x509.Certificate) error {
	prof, err := pki.UsageDirectory.Profile()
	if err != nil {
		return err
	}
	switch {
	case c.IsCA:
		return fmt.Errorf("%w: certificate %q is a CA", ErrUntrustedSigner, c.Subject.CommonName)
	case c.KeyUsage&prof.KeyUsage != prof.KeyUsage:
		return fmt.Errorf("%w: certificate %q lacks the directory key usage (digital signature + content commitment)", ErrUntrustedSigner, c.Subject.CommonName)
	case len(c.ExtKeyUsage) > 0 || len(c.UnknownExtKeyUsage) > 0:
		return fmt.Errorf("%w: certificate %q has an extended key usage; the directory usage has none", ErrUntrustedSigner, c.Subject.CommonName)
	}
	return nil
}

// Verifier checks signed directories. Roots is required: the trust
// directory's CA roots (not those inside the document, which are what is
// being verified). Signers, when set, pins the directory signing
// certificates (the trust directory's directory.pem): any other signer is
// refused even if it chains to Roots. Without a pin, any certificate with
// the directory profile under Roots is accepted — and pki gives member
// signing certificates the same key usage, so pin in production.
//
// A Verifier is safe for concurrent use.
type Verifier struct {
	Roots    *x509.CertPool
	Signers  []*x509.Certificate
	Instance string           // when set, the document must be of this instance
	Now      func() time.Time // nil: time.Now
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Verify checks a compact JWS directory: its form, the explicit type, the
// signer's chain to Roots (and the pin), the directory usage, the signature,
// the document's validity, the instance and the issuedAt/expiresAt window.
// It returns ErrExpired (wrapped, with the document) when everything but the
// expiry holds, so that a caller may still read an expired document's
// serial; every other error returns a nil document.
func (v *Verifier) Verify(signed []byte) (*Document, error) {
	d, _, err := v.verify(signed)
	return d, err
}

// verify is Verify that also returns the verified payload.
func (v *Verifier) verify(signed []byte) (*Document, []byte, error) {
	payload, err := v.verifySignature(signed)
	if err != nil {
		return nil, nil, err
	}
	d, err := ParseDocument(payload)
	if err != nil {
		return nil, nil, err
	}
	if v.Instance != "" && d.Instance != v.Instance {
		return nil, nil, fmt.Errorf("%w: got %q, want %q", ErrWrongInstance, d.Instance, v.Instance)
	}
	now := v.now()
	if d.IssuedAt.After(now.Add(MaxClockSkew)) {
		return nil, nil, fmt.Errorf("%w: issuedAt %s", ErrNotYetValid, d.IssuedAt.UTC().Format(time.RFC3339))
	}
	if d.Expired(now) {
		return d, payload, fmt.Errorf("%w: serial %d expired at %s", ErrExpired, d.Serial, d.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return d, payload, nil
}

// verifySignature checks everything about the JWS and returns its payload.
func (v *Verifier) verifySignature(signed []byte) ([]byte, error) {
	if v.Roots == nil {
		return nil, errors.New("directory: verifier has no trust roots")
	}
	if len(signed) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(signed), MaxSize)
	}
	signed = bytes.TrimSpace(signed)
	if bytes.Count(signed, []byte{'.'}) != 2 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	msg, err := jws.Parse(signed, jws.WithCompact())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	sigs := msg.Signatures()
	if len(sigs) != 1 {
		return nil, fmt.Errorf("%w: want one signature, got %d", ErrMalformed, len(sigs))
	}
	h := sigs[0].ProtectedHeaders()
	if typ, _ := h.Type(); typ != JWSType {
		return nil, fmt.Errorf("%w: typ %q, want %q", ErrMalformed, typ, JWSType)
	}
	alg, ok := h.Algorithm()
	if !ok || !slices.Contains(allowedAlgs, alg.String()) {
		return nil, fmt.Errorf("%w: algorithm %q not allowed", ErrMalformed, alg.String())
	}
	if crit, ok := h.Critical(); ok && len(crit) > 0 {
		return nil, fmt.Errorf("%w: unsupported critical headers %v", ErrMalformed, crit)
	}
	x5c, ok := h.X509CertChain()
	if !ok || x5c.Len() == 0 {
		return nil, fmt.Errorf("%w: no x5c certificate chain", ErrMalformed)
	}
	if x5c.Len() > 8 {
		return nil, fmt.Errorf("%w: x5c chain of %d certificates", ErrMalformed, x5c.Len())
	}
	chain := make([]*x509.Certificate, 0, x5c.Len())
	for i := range x5c.Len() {
		b64, _ := x5c.Get(i)
		der, err := base64.StdEncoding.DecodeString(string(b64))
		if err != nil {
			return nil, fmt.Errorf("%w: x5c[%d]: %v", ErrMalformed, i, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: x5c[%d]: %v", ErrMalformed, i, err)
		}
		chain = append(chain, c)
	}
	leaf := chain[0]
	if len(v.Signers) > 0 && !slices.ContainsFunc(v.Signers, leaf.Equal) {
		return nil, fmt.Errorf("%w: certificate %s is not a pinned directory signer", ErrUntrustedSigner, pki.Fingerprint(leaf))
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.Roots,
		Intermediates: inter,
		CurrentTime:   v.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUntrustedSigner, err)
	}
	if err := checkDirectoryUsage(leaf); err != nil {
		return nil, err
	}
	payload, err := jws.Verify(signed, jws.WithKey(alg, leaf.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return payload, nil
}

// Peek decodes a signed directory's document WITHOUT verifying the
// signature, the signer or any time. It is for the operator's own tools
// (sign's serial bump, serve's health check); never trust what it returns.
func Peek(signed []byte) (*Document, error) {
	if len(signed) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(signed), MaxSize)
	}
	msg, err := jws.Parse(bytes.TrimSpace(signed), jws.WithCompact())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return ParseDocument(msg.Payload())
}
