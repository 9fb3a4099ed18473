package timestamp

import (
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"sync"

	"github.com/digitorus/pkcs7"
	tsp "github.com/digitorus/timestamp"
)

// The few RFC 3161 shapes github.com/digitorus/timestamp does not expose.
// Everything that is encoded or signed goes through the library; these are
// only decoded, to classify what the library reports as one opaque error.

// reqHead is the start of a TimeStampReq (RFC 3161 §2.4.1). The library's
// ParseRequest ignores the version and folds an unknown hash algorithm into
// a generic ParseError; the server decodes this head to answer badRequest or
// badAlg as the RFC asks.
type reqHead struct {
	Version        int
	MessageImprint struct {
		HashAlgorithm pkix.AlgorithmIdentifier
		HashedMessage []byte
	}
	Rest []asn1.RawValue `asn1:"optional"`
}

// respStatus is a TimeStampResp's status (RFC 3161 §2.4.2). The library's
// ParseResponse turns a rejection into a formatted string; the client reads
// the status and failInfo from this instead.
type respStatus struct {
	Status struct {
		Status       int
		StatusString []string       `asn1:"optional,utf8"`
		FailInfo     asn1.BitString `asn1:"optional"`
	}
	Token asn1.RawValue `asn1:"optional"`
}

var (
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}

	oidTSTInfo            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
	oidAttrContentType    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidSigningCertificate = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 12}
	oidSigningCertV2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 47}
	oidExtKeyUsage        = asn1.ObjectIdentifier{2, 5, 29, 37}
)

// hashForOID maps the imprint algorithms we accept; SHA-1 and anything else
// is refused (badAlg).
func hashForOID(oid asn1.ObjectIdentifier) (crypto.Hash, bool) {
	switch {
	case oid.Equal(oidSHA256):
		return crypto.SHA256, true
	case oid.Equal(oidSHA384):
		return crypto.SHA384, true
	case oid.Equal(oidSHA512):
		return crypto.SHA512, true
	}
	return 0, false
}

// CheckHash reports whether h is an imprint algorithm Passerelle accepts
// (SHA-256, SHA-384, SHA-512) and digest has its length.
func CheckHash(h crypto.Hash, digest []byte) error {
	switch h {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
	default:
		return fmt.Errorf("%w: %v", ErrUnsupportedHash, h)
	}
	if len(digest) != h.Size() {
		return fmt.Errorf("%w: %d-byte digest for %v", ErrUnsupportedHash, len(digest), h)
	}
	return nil
}

// essCertID and essCertIDv2 are the signingCertificate attributes (RFC 2634
// §5.4, RFC 5035) that bind the TSA certificate into the signature. The
// library writes v2 and never checks either on parse; VerifyToken does.
type essCertID struct {
	CertHash     []byte
	IssuerSerial asn1.RawValue `asn1:"optional"`
}

type signingCertificate struct {
	Certs    []essCertID
	Policies asn1.RawValue `asn1:"optional"`
}

type essCertIDv2 struct {
	HashAlgorithm pkix.AlgorithmIdentifier `asn1:"optional"`
	CertHash      []byte
	IssuerSerial  asn1.RawValue `asn1:"optional"`
}

type signingCertificateV2 struct {
	Certs    []essCertIDv2
	Policies asn1.RawValue `asn1:"optional"`
}

// failInfo reads the first failure bit the library knows of.
func failInfo(bs asn1.BitString) tsp.FailureInfo {
	for _, f := range []tsp.FailureInfo{tsp.BadAlgorithm, tsp.BadRequest, tsp.BadDataFormat, tsp.TimeNotAvailable,
		tsp.UnacceptedPolicy, tsp.UnacceptedExtension, tsp.AddInfoNotAvailable, tsp.SystemFailure} {
		if bs.At(int(f)) != 0 {
			return f
		}
	}
	return tsp.UnknownFailureInfo
}

// tstHead is the start of a TSTInfo, to read back the serial the library
// chose without verifying the signature it has just made.
type tstHead struct {
	Version        int
	Policy         asn1.ObjectIdentifier
	MessageImprint struct {
		HashAlgorithm pkix.AlgorithmIdentifier
		HashedMessage []byte
	}
	SerialNumber *big.Int
	Rest         []asn1.RawValue `asn1:"optional"`
}

// berMu serializes the CMS parses: github.com/digitorus/pkcs7's BER
// converter (ber.go) updates a package-level counter, encodeIndent, on every
// Parse, a data race when tokens are parsed concurrently (the TSA server
// recording a token while a batcher or an auditor verifies another).
var berMu sync.Mutex

func parseTSTInfo(token []byte) (*tstHead, error) {
	p7, err := safePKCS7(token)
	if err != nil {
		return nil, err
	}
	var h tstHead
	if _, err := asn1.Unmarshal(p7.Content, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// github.com/digitorus/pkcs7 (under github.com/digitorus/timestamp) panics on
// some malformed BER (ber.go readObject indexes past the end; found by
// FuzzVerifyToken). Every parse of untrusted bytes goes through these two,
// which turn a panic into ErrBadToken.

func safePKCS7(token []byte) (p7 *pkcs7.PKCS7, err error) {
	defer func() {
		if r := recover(); r != nil {
			p7, err = nil, fmt.Errorf("%w: malformed CMS (parser panic)", ErrBadToken)
		}
	}()
	berMu.Lock()
	defer berMu.Unlock() // after the recover above: runs first, unlocks even on a panic
	p7, err = pkcs7.Parse(token)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	return p7, nil
}

func safeTSParse(token []byte) (ts *tsp.Timestamp, err error) {
	defer func() {
		if r := recover(); r != nil {
			ts, err = nil, fmt.Errorf("%w: malformed CMS (parser panic)", ErrBadToken)
		}
	}()
	berMu.Lock()
	defer berMu.Unlock()
	ts, err = tsp.Parse(token)
	if err != nil {
		return nil, fmt.Errorf("%w: TSTInfo: %v", ErrBadToken, err)
	}
	return ts, nil
}
