package timestamp

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/digitorus/pkcs7"
	tsp "github.com/digitorus/timestamp"
)

// MaxTokenSize bounds the tokens VerifyToken reads (a token with a chain of
// a few RSA-4096 certificates is under 16 KiB).
const MaxTokenSize = 256 << 10

// VerifyOptions says what VerifyToken demands beyond a valid signature from a
// trusted TSA over the digest. Zero fields are not checked.
type VerifyOptions struct {
	// Certificates adds certificates to those in the token: the TSA
	// certificate when the token was requested without certReq, and
	// intermediates. They are not trusted by being here.
	Certificates []*x509.Certificate
	// Hash, when set, is the algorithm the digest was computed with; the
	// token's imprint must use it.
	Hash crypto.Hash
	// Nonce, when set, must be echoed by the token.
	Nonce *big.Int
	// Policy, when set, must be the token's TSA policy.
	Policy asn1.ObjectIdentifier
	// MaxSkew, when positive, bounds |genTime - Now| (the token's accuracy is
	// added to it). Online clients set it; offline auditors leave it zero.
	MaxSkew time.Duration
	Now     time.Time // time.Now() when zero
}

// Info is what a verified token says.
type Info struct {
	Time     time.Time // genTime, UTC
	Accuracy time.Duration
	Serial   *big.Int
	Policy   asn1.ObjectIdentifier
	Hash     crypto.Hash
	Imprint  []byte
	Nonce    *big.Int
	TSA      *x509.Certificate
}

// VerifyToken checks a DER TimeStampToken (a CMS ContentInfo) over digest,
// offline: the signer's certificate chains to roots at genTime and is a TSA
// certificate (critical, sole EKU timeStamping), the signingCertificate
// attribute names it, the signature verifies, the content is a TSTInfo, the
// imprint is digest, and whatever opts adds. It fills the gaps of
// github.com/digitorus/timestamp, whose Parse checks the signature only when
// the token carries certificates, and never the chain, EKU, content type or
// signingCertificate attribute.
//
// A token whose unsigned parts (certificate set, the outer digest algorithm
// list) were altered may still verify: CMS does not sign them. What it says
// (Info) cannot be altered.
func VerifyToken(token, digest []byte, roots *x509.CertPool, opts VerifyOptions) (*Info, error) {
	if roots == nil {
		return nil, fmt.Errorf("%w: no trusted roots given", ErrUntrustedTSA)
	}
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadToken, len(token))
	}
	p7, err := safePKCS7(token)
	if err != nil {
		return nil, err
	}
	if len(p7.Signers) != 1 {
		return nil, fmt.Errorf("%w: %d signers, want 1", ErrBadToken, len(p7.Signers))
	}
	var ct asn1.ObjectIdentifier
	if err := p7.UnmarshalSignedAttribute(oidAttrContentType, &ct); err != nil || !ct.Equal(oidTSTInfo) {
		return nil, fmt.Errorf("%w: content is not a TSTInfo", ErrBadToken)
	}
	p7.Certificates = append(p7.Certificates, opts.Certificates...)
	tsa := p7.GetOnlySigner()
	if tsa == nil {
		return nil, fmt.Errorf("%w: no certificate for the signer (request with certReq, or pass the TSA certificate)", ErrUntrustedTSA)
	}
	// Signature (and the messageDigest attribute) first, with no chain.
	if err := p7.VerifyWithOpts(x509.VerifyOptions{}); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrBadToken, err)
	}
	if err := checkSigningCertAttr(p7, tsa); err != nil {
		return nil, err
	}
	// The TSTInfo, decoded by the library (its Parse checks the signature
	// again when certificates are embedded: a small, accepted cost).
	ts, err := safeTSParse(token)
	if err != nil {
		return nil, err
	}
	info := &Info{
		Time:     ts.Time.UTC(),
		Accuracy: ts.Accuracy,
		Serial:   ts.SerialNumber,
		Policy:   ts.Policy,
		Hash:     ts.HashAlgorithm,
		Imprint:  ts.HashedMessage,
		Nonce:    ts.Nonce,
		TSA:      tsa,
	}
	if err := CheckTSACertificate(tsa); err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	for _, c := range p7.Certificates {
		inter.AddCert(c)
	}
	if _, err := tsa.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   info.Time,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping},
	}); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUntrustedTSA, err)
	}
	if opts.Hash != 0 && opts.Hash != info.Hash {
		return nil, fmt.Errorf("%w: token imprint uses %v, want %v", ErrImprintMismatch, info.Hash, opts.Hash)
	}
	if err := CheckHash(info.Hash, info.Imprint); err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(info.Imprint, digest) != 1 {
		return nil, ErrImprintMismatch
	}
	if opts.Nonce != nil && (info.Nonce == nil || info.Nonce.Cmp(opts.Nonce) != 0) {
		return nil, ErrNonceMismatch
	}
	if opts.Policy != nil && !opts.Policy.Equal(info.Policy) {
		return nil, fmt.Errorf("%w: %v, want %v", ErrPolicyMismatch, info.Policy, opts.Policy)
	}
	if opts.MaxSkew > 0 {
		now := opts.Now
		if now.IsZero() {
			now = time.Now()
		}
		d := info.Time.Sub(now)
		if d < 0 {
			d = -d
		}
		if d > opts.MaxSkew+info.Accuracy {
			return nil, fmt.Errorf("%w: genTime %s is %s from now", ErrTimeSkew, info.Time.Format(time.RFC3339), d)
		}
	}
	return info, nil
}

// checkSigningCertAttr checks that the signed signingCertificate(V2)
// attribute names the certificate that verified the signature, so that a
// token cannot be passed off under another certificate with the same key.
func checkSigningCertAttr(p7 *pkcs7.PKCS7, cert *x509.Certificate) error {
	var v2 signingCertificateV2
	if err := p7.UnmarshalSignedAttribute(oidSigningCertV2, &v2); err == nil && len(v2.Certs) > 0 {
		h := crypto.SHA256
		if alg := v2.Certs[0].HashAlgorithm.Algorithm; len(alg) > 0 {
			var ok bool
			if h, ok = hashForOID(alg); !ok {
				return fmt.Errorf("%w: signingCertificateV2 hash %v", ErrBadToken, alg)
			}
		}
		hh := h.New()
		hh.Write(cert.Raw)
		if !bytes.Equal(hh.Sum(nil), v2.Certs[0].CertHash) {
			return fmt.Errorf("%w: signingCertificateV2 names another certificate", ErrUntrustedTSA)
		}
		return nil
	}
	var v1 signingCertificate
	if err := p7.UnmarshalSignedAttribute(oidSigningCertificate, &v1); err == nil && len(v1.Certs) > 0 {
		sum := sha1.Sum(cert.Raw)
		if !bytes.Equal(sum[:], v1.Certs[0].CertHash) {
			return fmt.Errorf("%w: signingCertificate names another certificate", ErrUntrustedTSA)
		}
		return nil
	}
	return fmt.Errorf("%w: no signingCertificate attribute", ErrBadToken)
}

// CheckTSACertificate checks RFC 3161 §2.3: the extended key usage
// extension is present, critical, and holds only id-kp-timeStamping.
func CheckTSACertificate(cert *x509.Certificate) error {
	i := slices.IndexFunc(cert.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(oidExtKeyUsage) })
	if i < 0 {
		return fmt.Errorf("%w: certificate has no extended key usage", ErrUntrustedTSA)
	}
	if !cert.Extensions[i].Critical {
		return fmt.Errorf("%w: extended key usage is not critical (RFC 3161 §2.3)", ErrUntrustedTSA)
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageTimeStamping || len(cert.UnknownExtKeyUsage) != 0 {
		return fmt.Errorf("%w: extended key usage must be timeStamping only", ErrUntrustedTSA)
	}
	return nil
}

// TokenFromReply extracts the DER TimeStampToken from a DER TimeStampResp,
// or returns a *RejectedError (errors.Is ErrRejected) for a refusal.
func TokenFromReply(reply []byte) ([]byte, error) {
	var r respStatus
	rest, err := asn1.Unmarshal(reply, &r)
	if err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("%w: reply is not a DER TimeStampResp", ErrBadToken)
	}
	if st := r.Status.Status; st != int(tsp.Granted) && st != int(tsp.GrantedWithMods) {
		re := &RejectedError{Status: tsp.Status(st), FailInfo: failInfo(r.Status.FailInfo)}
		if len(r.Status.StatusString) > 0 {
			re.Text = r.Status.StatusString[0]
		}
		return nil, re
	}
	if len(r.Token.FullBytes) == 0 {
		return nil, fmt.Errorf("%w: granted reply without a token", ErrBadToken)
	}
	return r.Token.FullBytes, nil
}

// Digest hashes data with SHA-256, the hash Passerelle stamps by default.
func Digest(data []byte) []byte {
	s := sha256.Sum256(data)
	return s[:]
}
