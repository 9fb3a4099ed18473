package ca

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/cloudflare/cfssl/config"
	cfcsr "github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/signer"
	"github.com/cloudflare/cfssl/signer/local"

	"github.com/passerelle/passerelle/pki"
)

// SignRequest asks the CA for a certificate.
type SignRequest struct {
	CSR      []byte       // PEM or DER; its self-signature and key are checked
	Member   pki.ClientID // bound as SAN URI; required for auth and sign, optional otherwise; never a subsystem
	Usage    pki.Usage    // selects the issuance profile
	Operator string       // who asks, for the audit log
	// Validity is how long the certificate is valid; 0 means DefaultValidity.
	// It may not outlast the CA certificate.
	Validity time.Duration
	// Hosts are DNS names and IP addresses for the TLS usages (auth,
	// registry); refused for the others.
	Hosts []string
	// CommonName overrides the subject CN (default: the member identifier,
	// or the CSR's CN when there is no member).
	CommonName string

	enrollment string // set by Approve
}

// Sign issues a certificate with cfssl's local signer and the profile of
// req.Usage, records it and an audit entry, and returns it. It refuses, with
// an error wrapping the pki sentinel that says why, a CSR that does not parse
// or whose self-signature does not verify (pki.ErrBadCSR), a weak key
// (pki.ErrWeakKey), an unknown usage (pki.ErrUnknownUsage) and a malformed
// member (pki.ErrBadIdentifier).
func (c *CA) Sign(ctx context.Context, req SignRequest) (*x509.Certificate, error) {
	var cert *x509.Certificate
	err := c.store.update(ctx, func(t *tx) error {
		var err error
		cert, err = c.signTx(t, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return cert, nil
}

// checked is a signing request after its checks.
type checked struct {
	csr     *x509.CertificateRequest
	usage   pki.Usage
	profile pki.Profile
	member  pki.ClientID
}

// check validates everything in req that does not need the database.
func check(req SignRequest) (*checked, error) {
	usage, err := pki.ParseUsage(string(req.Usage))
	if err != nil {
		return nil, err
	}
	prof, err := usage.Profile()
	if err != nil {
		return nil, err
	}
	member := req.Member
	if member.IsZero() {
		if usage == pki.UsageAuth || usage == pki.UsageSign {
			return nil, fmt.Errorf("%w: a %s certificate must name a member (INSTANCE/CLASS/MEMBER)", pki.ErrBadIdentifier, usage)
		}
	} else {
		if member.IsSubsystem() {
			return nil, fmt.Errorf("%w: %s is a subsystem; certificates bind members (INSTANCE/CLASS/MEMBER)", pki.ErrBadIdentifier, member)
		}
		if _, err := pki.NewClientID(member.Parts()...); err != nil {
			return nil, err
		}
	}
	if len(req.Hosts) > 0 && usage != pki.UsageAuth && usage != pki.UsageRegistry {
		return nil, fmt.Errorf("%w: host names are for auth and registry certificates, not %s", ErrBadRequest, usage)
	}
	for _, h := range req.Hosts {
		if net.ParseIP(h) == nil && !validDNSName(h) {
			return nil, fmt.Errorf("%w: host %q is neither an IP address nor a DNS name", ErrBadRequest, truncate(h))
		}
	}
	if req.Validity < 0 {
		return nil, fmt.Errorf("%w: negative validity", ErrBadRequest)
	}
	csr, err := pki.ParseCSR(req.CSR)
	if err != nil {
		return nil, err
	}
	// The CSR may say which member it is for (pki.CreateCSR does); it must
	// then be the member the CA binds.
	for _, u := range csr.URIs {
		if !strings.HasPrefix(u.String(), pki.MemberURIPrefix) {
			continue
		}
		m, err := pki.ParseMemberURI(u)
		if err != nil {
			return nil, fmt.Errorf("%w: CSR member URI: %w", pki.ErrBadCSR, err)
		}
		if m != member.MemberID() {
			want := member.String()
			if member.IsZero() {
				want = "no member"
			}
			return nil, fmt.Errorf("%w: CSR asks for %s, request is for %s", ErrMemberMismatch, m, want)
		}
	}
	return &checked{csr: csr, usage: usage, profile: prof, member: member}, nil
}

func (c *CA) signTx(t *tx, req SignRequest) (*x509.Certificate, error) {
	ck, err := check(req)
	if err != nil {
		return nil, err
	}
	var settings Settings
	if _, err := t.get(bucketMeta, metaKey, &settings); err != nil {
		return nil, err
	}
	now := c.now()
	validity := req.Validity
	if validity == 0 {
		validity = DefaultValidity
	}
	notBefore := now.Add(-5 * time.Minute).Truncate(time.Second)
	notAfter := now.Add(validity).Truncate(time.Second)
	if notAfter.After(c.cert.NotAfter) {
		return nil, fmt.Errorf("%w (%s)", ErrValidityTooLong, c.cert.NotAfter.UTC().Format(time.RFC3339))
	}

	profile, err := cfsslProfile(ck.profile, settings.OCSPURL)
	if err != nil {
		return nil, err
	}
	policy := &config.Signing{
		Profiles: map[string]*config.SigningProfile{string(ck.usage): profile},
		Default:  &config.SigningProfile{Expiry: DefaultValidity},
	}
	s, err := local.NewSigner(c.key, c.cert, signer.DefaultSigAlgo(c.key), policy)
	if err != nil {
		return nil, fmt.Errorf("ca: signer: %w", err)
	}

	cn := req.CommonName
	if cn == "" {
		cn = ck.csr.Subject.CommonName
		if !ck.member.IsZero() {
			cn = ck.member.String()
		}
	}
	if cn == "" {
		cn = "Passerelle " + string(ck.usage)
	}
	names := []string{}
	if !ck.member.IsZero() {
		names = append(names, pki.MemberURI(ck.member).String())
	}
	names = append(names, req.Hosts...)
	sreq := signer.SignRequest{
		Hosts:     names,
		Request:   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: ck.csr.Raw})),
		Subject:   &signer.Subject{CN: cn, Names: subjectNames(settings.Instance, ck)},
		Profile:   string(ck.usage),
		NotBefore: notBefore,
		NotAfter:  notAfter,
	}
	// cfssl writes the extended key usage non-critical; a usage that needs
	// it critical (tsa, RFC 3161 §2.3) gets it through the request's
	// extensions, which Go's x509 then writes instead of its own.
	if ck.profile.CriticalEKU {
		ext, ok, err := ck.profile.ExtKeyUsageExtension()
		if err != nil {
			return nil, err
		}
		if ok {
			sreq.Extensions = append(sreq.Extensions, signer.Extension{
				ID: config.OID(ext.Id), Critical: ext.Critical, Value: hex.EncodeToString(ext.Value),
			})
		}
	}
	c.signMu.Lock()
	certPEM, err := s.Sign(sreq)
	c.signMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("ca: sign: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, errors.New("ca: signer returned no certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: parse issued certificate: %w", err)
	}

	key := serialHex(cert.SerialNumber)
	var existing Record
	if found, err := t.get(bucketCerts, key, &existing); err != nil {
		return nil, err
	} else if found {
		return nil, fmt.Errorf("ca: serial %s already issued", key) // 2^-159: a broken RNG
	}
	member := ""
	if !ck.member.IsZero() {
		member = ck.member.String()
	}
	rec := Record{
		Serial:     key,
		Member:     member,
		Usage:      ck.usage,
		Subject:    cert.Subject.String(),
		NotBefore:  cert.NotBefore,
		NotAfter:   cert.NotAfter,
		IssuedAt:   now.UTC(),
		IssuedBy:   actor(req.Operator),
		Enrollment: req.enrollment,
		DER:        cert.Raw,
	}
	if err := t.put(bucketCerts, key, rec); err != nil {
		return nil, err
	}
	detail := "valid until " + cert.NotAfter.UTC().Format(time.RFC3339)
	if len(req.Hosts) > 0 {
		detail += ", hosts " + strings.Join(req.Hosts, ",")
	}
	if err := t.audit(AuditRecord{
		Time: rec.IssuedAt, Actor: rec.IssuedBy, Action: ActionIssue, Serial: key,
		Enrollment: req.enrollment, Member: member, Usage: ck.usage, Detail: detail,
	}); err != nil {
		return nil, err
	}
	return cert, nil
}

func subjectNames(instance string, ck *checked) []cfcsr.Name {
	n := cfcsr.Name{OU: string(ck.usage)}
	if !ck.member.IsZero() {
		n.O = ck.member.Member
	} else if instance != "" {
		n.O = instance
	}
	return []cfcsr.Name{n}
}

// cfsslProfile turns a pki.Profile into a cfssl signing profile. Only the
// public key is taken from the CSR: subject and names come from the request.
func cfsslProfile(p pki.Profile, ocspURL string) (*config.SigningProfile, error) {
	var usages []string
	for name, ku := range config.KeyUsage {
		if p.KeyUsage&ku != 0 && name != "signing" { // "signing" and "digital signature" are one bit
			usages = append(usages, name)
		}
	}
	for _, eku := range p.ExtKeyUsage {
		name, ok := ekuNames[eku]
		if !ok {
			return nil, fmt.Errorf("ca: no cfssl name for extended key usage %d", eku)
		}
		usages = append(usages, name)
	}
	return &config.SigningProfile{
		Usage:              usages,
		Expiry:             DefaultValidity,
		OCSP:               ocspURL,
		CSRWhitelist:       &config.CSRWhitelist{PublicKey: true, PublicKeyAlgorithm: true, SignatureAlgorithm: true},
		ExtensionWhitelist: map[string]bool{pki.OIDExtKeyUsage.String(): true},
	}, nil
}

var ekuNames = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageServerAuth:   "server auth",
	x509.ExtKeyUsageClientAuth:   "client auth",
	x509.ExtKeyUsageTimeStamping: "timestamping",
	x509.ExtKeyUsageOCSPSigning:  "ocsp signing",
}

// validDNSName accepts LDH labels (and a leading "*." wildcard label is not
// accepted: we issue for exact names).
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '-') {
				return false
			}
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
