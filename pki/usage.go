package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
)

// Usage is what a certificate is issued for. Each usage has one issuance
// profile: the key usage and extended key usage the CA writes, and that
// validation demands.
type Usage string

const (
	UsageAuth      Usage = "auth"      // TLS client and server: security servers, members' mTLS
	UsageSign      Usage = "sign"      // message signatures (JWS, XML-DSig)
	UsageTSA       Usage = "tsa"       // RFC 3161 time-stamping authority (EKU critical)
	UsageOCSP      Usage = "ocsp"      // delegated OCSP responder
	UsageRegistry  Usage = "registry"  // the hash registry's TLS endpoint
	UsageDirectory Usage = "directory" // the federation directory's signing key
)

// Usages lists every usage in a stable order.
var Usages = []Usage{UsageAuth, UsageSign, UsageTSA, UsageOCSP, UsageRegistry, UsageDirectory}

// ErrUnknownUsage reports a usage name that is not one of Usages.
var ErrUnknownUsage = errors.New("pki: unknown certificate usage")

// ParseUsage checks a usage name.
func ParseUsage(s string) (Usage, error) {
	for _, u := range Usages {
		if string(u) == s {
			return u, nil
		}
	}
	return "", fmt.Errorf("%w %q (want one of auth, sign, tsa, ocsp, registry, directory)", ErrUnknownUsage, s)
}

// Profile is the key usage and extended key usage of one issuance profile.
type Profile struct {
	KeyUsage    x509.KeyUsage
	ExtKeyUsage []x509.ExtKeyUsage
	// CriticalEKU marks the extended key usage extension critical, as RFC 3161
	// §2.3 requires of a TSA certificate.
	CriticalEKU bool
}

// Profile returns the issuance profile of u.
func (u Usage) Profile() (Profile, error) {
	switch u {
	case UsageAuth, UsageRegistry:
		return Profile{
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}, nil
	case UsageSign, UsageDirectory:
		return Profile{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment}, nil
	case UsageTSA:
		return Profile{
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping},
			CriticalEKU: true,
		}, nil
	case UsageOCSP:
		return Profile{
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		}, nil
	}
	return Profile{}, fmt.Errorf("%w %q", ErrUnknownUsage, string(u))
}

// OIDExtKeyUsage is the extendedKeyUsage extension's identifier.
var OIDExtKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 37}

var extKeyUsageOIDs = map[x509.ExtKeyUsage]asn1.ObjectIdentifier{
	x509.ExtKeyUsageServerAuth:   {1, 3, 6, 1, 5, 5, 7, 3, 1},
	x509.ExtKeyUsageClientAuth:   {1, 3, 6, 1, 5, 5, 7, 3, 2},
	x509.ExtKeyUsageTimeStamping: {1, 3, 6, 1, 5, 5, 7, 3, 8},
	x509.ExtKeyUsageOCSPSigning:  {1, 3, 6, 1, 5, 5, 7, 3, 9},
}

// ExtKeyUsageExtension returns the extendedKeyUsage extension of p, with its
// critical flag set as p says. Go's x509 and cfssl always write this
// extension non-critical, so a TSA certificate must carry it this way.
func (p Profile) ExtKeyUsageExtension() (ext pkix.Extension, ok bool, err error) {
	if len(p.ExtKeyUsage) == 0 {
		return ext, false, nil
	}
	oids := make([]asn1.ObjectIdentifier, 0, len(p.ExtKeyUsage))
	for _, e := range p.ExtKeyUsage {
		oid, found := extKeyUsageOIDs[e]
		if !found {
			return ext, false, fmt.Errorf("pki: no OID for extended key usage %d", e)
		}
		oids = append(oids, oid)
	}
	der, err := asn1.Marshal(oids)
	if err != nil {
		return ext, false, err
	}
	return pkix.Extension{Id: OIDExtKeyUsage, Critical: p.CriticalEKU, Value: der}, true, nil
}
