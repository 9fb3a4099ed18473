package verify

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ocsp"
)

// Errors Verify returns, wrapped; check them with errors.Is. The OCSP ones
// are pki/ocsp's sentinels, so either name matches.
var (
	ErrUntrusted             = errors.New("verify: certificate does not chain to a trusted root")
	ErrExpired               = errors.New("verify: certificate expired")
	ErrNotYetValid           = errors.New("verify: certificate not yet valid")
	ErrWrongUsage            = errors.New("verify: certificate not issued for this usage")
	ErrNoMemberID            = pki.ErrNoMemberID
	ErrRevoked               = ocsp.ErrRevoked
	ErrOCSPUnknown           = ocsp.ErrUnknownCert
	ErrStaleOCSP             = ocsp.ErrStale
	ErrUnauthorizedResponder = ocsp.ErrUnauthorizedResponder
	ErrBadOCSP               = ocsp.ErrBadResponse
)

// Config configures New.
type Config struct {
	// Roots are the trusted CA certificates (the trust directory's ca.pem).
	Roots *x509.CertPool
	// Now is the clock; nil = time.Now.
	Now func() time.Time
	// OCSPMaxAge is the freshness limit of OCSP responses; 0 = 3600 s.
	OCSPMaxAge time.Duration
	// FetchOCSP, when set, fetches (and caches) the leaf's OCSP response
	// from the responder it names whenever Verify is given none. When nil,
	// every Verify call must be given the response.
	FetchOCSP *ocsp.Client
}

// Verifier validates certificates; safe for concurrent use.
type Verifier struct {
	roots  *x509.CertPool
	now    func() time.Time
	maxAge time.Duration
	fetch  *ocsp.Client

	mu        sync.Mutex
	chains    map[[32]byte]chainResult
	responses map[[32]byte]*ocsp.Response
}

// maxCache bounds each cache; a full cache is emptied.
const maxCache = 10000

type chainResult struct {
	member     pki.ClientID
	issuer     *x509.Certificate
	validFrom  time.Time // latest NotBefore in the chain
	validUntil time.Time // earliest NotAfter in the chain
}

// New checks cfg and returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	if cfg.Roots == nil {
		return nil, errors.New("verify: Config.Roots is required")
	}
	if cfg.OCSPMaxAge < 0 {
		return nil, errors.New("verify: Config.OCSPMaxAge is negative")
	}
	if cfg.OCSPMaxAge == 0 {
		cfg.OCSPMaxAge = ocsp.DefaultMaxAge
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Verifier{
		roots: cfg.Roots, now: cfg.Now, maxAge: cfg.OCSPMaxAge, fetch: cfg.FetchOCSP,
		chains: make(map[[32]byte]chainResult), responses: make(map[[32]byte]*ocsp.Response),
	}, nil
}

// Verify validates chain (leaf first, then any intermediates) for usage and
// returns the member its leaf binds. ocspDER is the leaf's OCSP response as
// the sender attached it; when it is nil, the response is fetched through
// Config.FetchOCSP if set, else Verify fails with ErrStaleOCSP.
func (v *Verifier) Verify(ctx context.Context, chain []*x509.Certificate, ocspDER []byte, usage pki.Usage) (pki.ClientID, error) {
	res, err := v.verifyChain(chain, usage)
	if err != nil {
		return pki.ClientID{}, err
	}
	if err := v.checkOCSP(ctx, chain[0], res.issuer, ocspDER); err != nil {
		return pki.ClientID{}, err
	}
	return res.member, nil
}

// VerifyChain is Verify without the revocation check: the caller must check
// the leaf's revocation status itself. It returns the member and the leaf's
// issuer.
func (v *Verifier) VerifyChain(chain []*x509.Certificate, usage pki.Usage) (pki.ClientID, *x509.Certificate, error) {
	res, err := v.verifyChain(chain, usage)
	if err != nil {
		return pki.ClientID{}, nil, err
	}
	return res.member, res.issuer, nil
}

func (v *Verifier) verifyChain(chain []*x509.Certificate, usage pki.Usage) (chainResult, error) {
	if len(chain) == 0 || chain[0] == nil {
		return chainResult{}, fmt.Errorf("%w: no certificate", ErrUntrusted)
	}
	now := v.now()
	key := chainKey(chain, usage)
	v.mu.Lock()
	res, ok := v.chains[key]
	v.mu.Unlock()
	if ok && !now.Before(res.validFrom) && !now.After(res.validUntil) {
		return res, nil
	}
	res, err := v.verifyChainUncached(chain, usage, now)
	if err != nil {
		return chainResult{}, err
	}
	v.mu.Lock()
	if len(v.chains) >= maxCache {
		clear(v.chains)
	}
	v.chains[key] = res
	v.mu.Unlock()
	return res, nil
}

func (v *Verifier) verifyChainUncached(chain []*x509.Certificate, usage pki.Usage, now time.Time) (chainResult, error) {
	leaf := chain[0]
	if err := checkTimes(leaf, now, "certificate"); err != nil {
		return chainResult{}, err
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		if c != nil {
			inter.AddCert(c)
		}
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, // checked below, per usage
	})
	if err != nil {
		var invalid x509.CertificateInvalidError
		if errors.As(err, &invalid) && invalid.Reason == x509.Expired {
			for _, c := range chain[1:] {
				if err := checkTimes(c, now, "issuing certificate"); err != nil {
					return chainResult{}, err
				}
			}
			return chainResult{}, fmt.Errorf("%w: %v", ErrExpired, err)
		}
		return chainResult{}, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	path := chains[0]
	if len(path) < 2 {
		return chainResult{}, fmt.Errorf("%w: the certificate is itself a trust anchor", ErrUntrusted)
	}
	if err := checkUsage(leaf, usage); err != nil {
		return chainResult{}, err
	}
	member, err := pki.MemberFromCert(leaf)
	if errors.Is(err, pki.ErrBadIdentifier) {
		return chainResult{}, fmt.Errorf("%w: %w", ErrNoMemberID, err)
	} else if err != nil {
		return chainResult{}, fmt.Errorf("verify: %w", err)
	}
	res := chainResult{member: member, issuer: path[1], validFrom: path[0].NotBefore, validUntil: path[0].NotAfter}
	for _, c := range path[1:] {
		if c.NotBefore.After(res.validFrom) {
			res.validFrom = c.NotBefore
		}
		if c.NotAfter.Before(res.validUntil) {
			res.validUntil = c.NotAfter
		}
	}
	return res, nil
}

func checkTimes(c *x509.Certificate, now time.Time, what string) error {
	switch {
	case now.After(c.NotAfter):
		return fmt.Errorf("%w: %s %q expired at %s", ErrExpired, what, c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(c.NotBefore):
		return fmt.Errorf("%w: %s %q is valid from %s", ErrNotYetValid, what, c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkUsage demands the key usage bits and extended key usages of usage's
// issuance profile (and a critical EKU where the profile marks it so).
func checkUsage(leaf *x509.Certificate, usage pki.Usage) error {
	prof, err := usage.Profile()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrWrongUsage, err)
	}
	if leaf.IsCA {
		return fmt.Errorf("%w: %s wanted, got a CA certificate", ErrWrongUsage, usage)
	}
	if leaf.KeyUsage&prof.KeyUsage != prof.KeyUsage {
		return fmt.Errorf("%w: %s needs key usage %b, certificate has %b", ErrWrongUsage, usage, prof.KeyUsage, leaf.KeyUsage)
	}
	for _, eku := range prof.ExtKeyUsage {
		if !slices.Contains(leaf.ExtKeyUsage, eku) {
			return fmt.Errorf("%w: %s needs extended key usage %d", ErrWrongUsage, usage, eku)
		}
	}
	if prof.CriticalEKU {
		i := slices.IndexFunc(leaf.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(pki.OIDExtKeyUsage) })
		if i < 0 || !leaf.Extensions[i].Critical {
			return fmt.Errorf("%w: %s needs the extended key usage extension marked critical", ErrWrongUsage, usage)
		}
	}
	return nil
}

func (v *Verifier) checkOCSP(ctx context.Context, leaf, issuer *x509.Certificate, der []byte) error {
	now := v.now()
	if der == nil {
		if v.fetch == nil {
			return fmt.Errorf("%w: no OCSP response given with the certificate", ErrStaleOCSP)
		}
		r, err := v.fetch.Status(ctx, leaf, issuer)
		if r == nil {
			if isOCSPVerdict(err) {
				return fmt.Errorf("verify: fetched OCSP: %w", err)
			}
			// Unreachable responder and the like: no fresh response.
			return fmt.Errorf("%w: cannot fetch an OCSP response: %v", ErrStaleOCSP, err)
		}
		return v.statusOf(r, now)
	}
	key := responseKey(leaf, der)
	v.mu.Lock()
	r, ok := v.responses[key]
	v.mu.Unlock()
	if ok {
		return v.statusOf(r, now)
	}
	r, err := ocsp.ParseAndVerify(der, leaf, issuer, now, v.maxAge)
	if r == nil {
		return fmt.Errorf("verify: OCSP: %w", err)
	}
	// Authentic (good, revoked or unknown): remember it.
	v.mu.Lock()
	if len(v.responses) >= maxCache {
		clear(v.responses)
	}
	v.responses[key] = r
	v.mu.Unlock()
	if err != nil {
		return fmt.Errorf("verify: OCSP: %w", err)
	}
	return nil
}

func isOCSPVerdict(err error) bool {
	for _, e := range []error{ErrStaleOCSP, ErrUnauthorizedResponder, ErrBadOCSP, ErrRevoked, ErrOCSPUnknown} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (v *Verifier) statusOf(r *ocsp.Response, now time.Time) error {
	if err := r.CheckFresh(now, v.maxAge); err != nil {
		return fmt.Errorf("verify: OCSP: %w", err)
	}
	if err := r.Err(); err != nil {
		return fmt.Errorf("verify: OCSP: %w", err)
	}
	return nil
}

func chainKey(chain []*x509.Certificate, usage pki.Usage) [32]byte {
	h := sha256.New()
	h.Write([]byte(usage))
	for _, c := range chain {
		if c == nil {
			continue
		}
		s := sha256.Sum256(c.Raw)
		h.Write(s[:])
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func responseKey(leaf *x509.Certificate, der []byte) [32]byte {
	h := sha256.New()
	s := sha256.Sum256(leaf.Raw)
	h.Write(s[:])
	h.Write(der)
	var k [32]byte
	h.Sum(k[:0])
	return k
}
