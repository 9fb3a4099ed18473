package ocsp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	xocsp "golang.org/x/crypto/ocsp"
	"golang.org/x/sync/singleflight"
)

// Errors of the client side; callers branch on them with errors.Is.
var (
	// ErrUnauthorizedResponder: the response is signed by neither the
	// issuer nor a certificate with the OCSPSigning EKU issued by it.
	ErrUnauthorizedResponder = errors.New("ocsp: response signed by an unauthorised responder")
	// ErrStale: the response is older than the freshness limit, past its
	// nextUpdate, or not yet valid (thisUpdate in the future).
	ErrStale = errors.New("ocsp: response is not fresh")
	// ErrRevoked: the response says the certificate is revoked (see RevokedError).
	ErrRevoked = errors.New("ocsp: certificate revoked")
	// ErrUnknownCert: the responder does not know the certificate.
	ErrUnknownCert = errors.New("ocsp: certificate unknown to the responder")
	// ErrBadResponse: the response is malformed, its signature does not
	// verify, it is about another certificate, or the responder answered
	// with an error status.
	ErrBadResponse = errors.New("ocsp: bad response")
	// ErrNoResponder: the certificate names no OCSP responder URL.
	ErrNoResponder = errors.New("ocsp: certificate names no OCSP responder")
)

// RevokedError is the error ParseAndVerify returns for a revoked
// certificate; errors.Is(err, ErrRevoked) holds.
type RevokedError struct {
	At     time.Time
	Reason int // RFC 5280 CRLReason code
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("ocsp: certificate revoked at %s (reason %d)", e.At.UTC().Format(time.RFC3339), e.Reason)
}

// Is reports whether target is ErrRevoked.
func (e *RevokedError) Is(target error) bool { return target == ErrRevoked }

// DefaultMaxAge is the freshness limit when none is configured (the
// federation default, 3600 s).
const DefaultMaxAge = time.Hour

// ClockSkew is how far in the future a response's thisUpdate may be.
const ClockSkew = 5 * time.Minute

// MaxResponseSize bounds a response read from a responder.
const MaxResponseSize = 64 << 10

// Response is a verified OCSP response for one certificate.
type Response struct {
	Status     CertStatus
	RevokedAt  time.Time // when Status is Revoked
	Reason     int       // RFC 5280 CRLReason code, when Status is Revoked
	Serial     *big.Int
	ProducedAt time.Time
	ThisUpdate time.Time
	NextUpdate time.Time         // zero when the responder gave none
	Signer     *x509.Certificate // the issuer or its delegated responder
	Raw        []byte            // the DER response, to attach to messages
}

// Age is how old the response is at now (measured from thisUpdate).
func (r *Response) Age(now time.Time) time.Duration { return now.Sub(r.ThisUpdate) }

// Expiry is when the response stops being fresh under maxAge: the earlier
// of thisUpdate+maxAge and nextUpdate.
func (r *Response) Expiry(maxAge time.Duration) time.Time {
	e := r.ThisUpdate.Add(maxAge)
	if !r.NextUpdate.IsZero() && r.NextUpdate.Before(e) {
		e = r.NextUpdate
	}
	return e
}

// CheckFresh returns ErrStale unless r is fresh at now under maxAge.
func (r *Response) CheckFresh(now time.Time, maxAge time.Duration) error {
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	switch {
	case r.ThisUpdate.After(now.Add(ClockSkew)):
		return fmt.Errorf("%w: thisUpdate %s is in the future", ErrStale, r.ThisUpdate.UTC().Format(time.RFC3339))
	case !r.NextUpdate.IsZero() && now.After(r.NextUpdate):
		return fmt.Errorf("%w: past nextUpdate %s", ErrStale, r.NextUpdate.UTC().Format(time.RFC3339))
	case now.Sub(r.ThisUpdate) > maxAge:
		return fmt.Errorf("%w: %s old, limit %s", ErrStale, now.Sub(r.ThisUpdate).Round(time.Second), maxAge)
	}
	return nil
}

// Err is nil for a good status, a *RevokedError or ErrUnknownCert otherwise.
func (r *Response) Err() error {
	switch r.Status {
	case Good:
		return nil
	case Revoked:
		return &RevokedError{At: r.RevokedAt, Reason: r.Reason}
	}
	return ErrUnknownCert
}

// ParseAndVerify checks a DER OCSP response about cert (issued by issuer)
// without any network access: it must be signed by issuer or by a
// certificate with the OCSPSigning EKU that issuer issued (else
// ErrUnauthorizedResponder), name cert's serial and issuer (else
// ErrBadResponse), and be fresh at now under maxAge (0 = DefaultMaxAge;
// else ErrStale). A verified response whose status is not good is returned
// together with a *RevokedError or ErrUnknownCert; any other error comes
// with a nil response.
func ParseAndVerify(der []byte, cert, issuer *x509.Certificate, now time.Time, maxAge time.Duration) (*Response, error) {
	r, err := parseAndVerify(der, cert, issuer, now)
	if err != nil {
		return nil, err
	}
	if err := r.CheckFresh(now, maxAge); err != nil {
		return nil, err
	}
	return r, r.Err()
}

// parseAndVerify is ParseAndVerify without the freshness check.
func parseAndVerify(der []byte, cert, issuer *x509.Certificate, now time.Time) (*Response, error) {
	if cert == nil || issuer == nil {
		return nil, fmt.Errorf("%w: no certificate or issuer to check against", ErrBadResponse)
	}
	if len(der) > MaxResponseSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadResponse, len(der))
	}
	// Signature by an embedded certificate is checked here; who that
	// certificate is, below.
	resp, err := xocsp.ParseResponseForCert(der, cert, nil)
	if err != nil {
		var re xocsp.ResponseError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("%w: responder answered %s", ErrBadResponse, re.Status)
		}
		return nil, fmt.Errorf("%w: %v", ErrBadResponse, err)
	}
	signer := issuer
	if resp.Certificate != nil && !bytes.Equal(resp.Certificate.Raw, issuer.Raw) {
		signer = resp.Certificate
		if err := checkDelegate(signer, issuer); err != nil {
			return nil, fmt.Errorf("%w: responder certificate %q: %v", ErrUnauthorizedResponder, signer.Subject.String(), err)
		}
		if now.Before(signer.NotBefore) || now.After(signer.NotAfter) {
			return nil, fmt.Errorf("%w: responder certificate %q is outside its validity period", ErrUnauthorizedResponder, signer.Subject.String())
		}
	} else if err := resp.CheckSignatureFrom(issuer); err != nil {
		if responderIs(resp, issuer) {
			return nil, fmt.Errorf("%w: signature does not verify: %v", ErrBadResponse, err)
		}
		return nil, fmt.Errorf("%w: not signed by the issuer and no delegated responder certificate", ErrUnauthorizedResponder)
	}
	if err := checkCertID(der, cert, issuer, resp.IssuerHash); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadResponse, err)
	}
	out := &Response{
		Serial:     resp.SerialNumber,
		ProducedAt: resp.ProducedAt,
		ThisUpdate: resp.ThisUpdate,
		NextUpdate: resp.NextUpdate,
		Signer:     signer,
		Raw:        der,
	}
	switch resp.Status {
	case xocsp.Good:
		out.Status = Good
	case xocsp.Revoked:
		out.Status, out.RevokedAt, out.Reason = Revoked, resp.RevokedAt, resp.RevocationReason
	default:
		out.Status = Unknown
	}
	return out, nil
}

// responderIs reports whether the response's responder ID names c.
func responderIs(resp *xocsp.Response, c *x509.Certificate) bool {
	if resp.RawResponderName != nil {
		return bytes.Equal(resp.RawResponderName, c.RawSubject)
	}
	bits, err := subjectKeyBits(c)
	return err == nil && bytes.Equal(resp.ResponderKeyHash, digest(crypto.SHA1, bits))
}

// checkCertID checks that the single response for cert's serial names
// issuer (x/crypto/ocsp matches on the serial only).
func checkCertID(der []byte, cert, issuer *x509.Certificate, h crypto.Hash) error {
	_, data, err := splitResponse(der)
	if err != nil {
		return err
	}
	bits, err := subjectKeyBits(issuer)
	if err != nil {
		return err
	}
	nameHash, keyHash := digest(h, issuer.RawSubject), digest(h, bits)
	for _, sr := range data.Responses {
		if sr.CertID.SerialNumber != nil && sr.CertID.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			if !bytes.Equal(sr.CertID.IssuerNameHash, nameHash) || !bytes.Equal(sr.CertID.IssuerKeyHash, keyHash) {
				return errors.New("response is about another issuer's certificate")
			}
			return nil
		}
	}
	return errors.New("no response for the certificate")
}

// ClientConfig configures NewClient. The zero value is usable.
type ClientConfig struct {
	HTTP   *http.Client     // nil = a client with a 10 s timeout
	MaxAge time.Duration    // freshness limit; 0 = DefaultMaxAge
	Now    func() time.Time // nil = time.Now
}

// Client fetches and verifies OCSP responses and caches them per
// certificate until they stop being fresh. Safe for concurrent use.
type Client struct {
	http   *http.Client
	maxAge time.Duration
	now    func() time.Time
	group  singleflight.Group

	mu    sync.Mutex
	cache map[[32]byte]*Response
}

// maxClientCache bounds the client's cache.
const maxClientCache = 10000

// NewClient returns a Client.
func NewClient(cfg ClientConfig) *Client {
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Client{http: cfg.HTTP, maxAge: cfg.MaxAge, now: cfg.Now, cache: make(map[[32]byte]*Response)}
}

// MaxAge is the client's freshness limit.
func (c *Client) MaxAge() time.Duration { return c.maxAge }

var defaultClient = NewClient(ClientConfig{})

// Fetch asks the responder at url about cert with a default Client (no
// cache involved); see Client.Fetch.
func Fetch(ctx context.Context, cert, issuer *x509.Certificate, url string) (*Response, error) {
	return defaultClient.Fetch(ctx, cert, issuer, url)
}

// Fetch POSTs an OCSP request about cert to url and verifies the answer as
// ParseAndVerify does, with the client's clock and freshness limit. It does
// not use or fill the cache.
func (c *Client) Fetch(ctx context.Context, cert, issuer *x509.Certificate, url string) (*Response, error) {
	der, err := c.fetchDER(ctx, cert, issuer, url)
	if err != nil {
		return nil, err
	}
	return ParseAndVerify(der, cert, issuer, c.now(), c.maxAge)
}

func (c *Client) fetchDER(ctx context.Context, cert, issuer *x509.Certificate, url string) ([]byte, error) {
	if cert == nil || issuer == nil {
		return nil, fmt.Errorf("%w: no certificate or issuer", ErrBadResponse)
	}
	reqDER, err := xocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		return nil, fmt.Errorf("ocsp: create request: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(reqDER))
	if err != nil {
		return nil, fmt.Errorf("ocsp: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/ocsp-request")
	hreq.Header.Set("Accept", "application/ocsp-response")
	hresp, err := c.http.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("ocsp: ask %s: %w", url, err)
	}
	defer hresp.Body.Close()
	if hresp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ocsp: responder %s answered HTTP %s", url, hresp.Status)
	}
	der, err := io.ReadAll(io.LimitReader(hresp.Body, MaxResponseSize+1))
	if err != nil {
		return nil, fmt.Errorf("ocsp: read response from %s: %w", url, err)
	}
	if len(der) > MaxResponseSize {
		return nil, fmt.Errorf("%w: response from %s exceeds %d bytes", ErrBadResponse, url, MaxResponseSize)
	}
	return der, nil
}

// ResponderURL is the first HTTP OCSP responder URL cert names.
func ResponderURL(cert *x509.Certificate) (string, error) {
	for _, u := range cert.OCSPServer {
		if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
			return u, nil
		}
	}
	return "", ErrNoResponder
}

// Status returns a fresh verified response about cert: from the cache while
// the cached one is fresh, else fetched from the responder cert names (see
// ResponderURL) and cached until it stops being fresh. Good and revoked
// answers are cached; unknown and failures are not. Concurrent calls for
// the same certificate share one fetch.
func (c *Client) Status(ctx context.Context, cert, issuer *x509.Certificate) (*Response, error) {
	if cert == nil || issuer == nil {
		return nil, fmt.Errorf("%w: no certificate or issuer", ErrBadResponse)
	}
	key := cacheKeyFor(cert, issuer)
	c.mu.Lock()
	r, ok := c.cache[key]
	c.mu.Unlock()
	if ok {
		if r.CheckFresh(c.now(), c.maxAge) == nil {
			return r, r.Err()
		}
		c.mu.Lock()
		delete(c.cache, key)
		c.mu.Unlock()
	}
	url, err := ResponderURL(cert)
	if err != nil {
		return nil, err
	}
	type result struct {
		r   *Response
		err error
	}
	v, _, _ := c.group.Do(string(key[:]), func() (any, error) {
		r, err := c.Fetch(ctx, cert, issuer, url)
		if r != nil && (err == nil || errors.Is(err, ErrRevoked)) {
			c.put(key, r)
		}
		return result{r, err}, nil
	})
	res := v.(result)
	return res.r, res.err
}

func (c *Client) put(key [32]byte, r *Response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cache) >= maxClientCache {
		now := c.now()
		for k, e := range c.cache {
			if e.CheckFresh(now, c.maxAge) != nil {
				delete(c.cache, k)
			}
		}
		if len(c.cache) >= maxClientCache {
			clear(c.cache)
		}
	}
	c.cache[key] = r
}

func cacheKeyFor(cert, issuer *x509.Certificate) [32]byte {
	h := sha256.New()
	h.Write(cert.Raw)
	h.Write(issuer.Raw)
	var k [32]byte
	h.Sum(k[:0])
	return k
}
