package ocsp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	xocsp "golang.org/x/crypto/ocsp"
)

// CertStatus is a certificate's revocation status.
type CertStatus int

const (
	Good CertStatus = iota
	Revoked
	Unknown
)

func (s CertStatus) String() string {
	switch s {
	case Good:
		return "good"
	case Revoked:
		return "revoked"
	case Unknown:
		return "unknown"
	}
	return "CertStatus(" + strconv.Itoa(int(s)) + ")"
}

// Status is what a StatusSource knows about one certificate.
type Status struct {
	Status    CertStatus
	RevokedAt time.Time // when Status is Revoked
	Reason    int       // RFC 5280 CRLReason code, when Status is Revoked
}

// StatusSource answers the revocation status of the issuer's certificates.
// A serial it has never issued is Status{Status: Unknown} with a nil error;
// an error means the status cannot be known now (the responder then answers
// internalError). Implementations must be safe for concurrent use.
type StatusSource interface {
	OCSPStatus(ctx context.Context, serial *big.Int) (Status, error)
}

// StatusFunc adapts a function to StatusSource.
type StatusFunc func(ctx context.Context, serial *big.Int) (Status, error)

// OCSPStatus calls f.
func (f StatusFunc) OCSPStatus(ctx context.Context, serial *big.Int) (Status, error) {
	return f(ctx, serial)
}

// ResponderConfig configures NewResponder.
type ResponderConfig struct {
	Issuer     *x509.Certificate // the CA whose certificates are answered for
	Signer     crypto.Signer     // the CA key, or a delegated OCSP signer's key
	SignerCert *x509.Certificate // nil when the CA signs itself; else a cert with OCSPSigning EKU issued by Issuer
	Source     StatusSource
	Validity   time.Duration // nextUpdate - thisUpdate; 0 = 1 h
	Log        *slog.Logger  // nil = discard

	// CacheFor is how long a signed response is reused for the same serial
	// while its status is unchanged (the status itself is looked up on
	// every request, so a revocation shows at once). 0 = one minute or
	// Validity/4, whichever is shorter; negative disables the cache.
	CacheFor time.Duration

	// Now is the clock (nil = time.Now).
	Now func() time.Time
}

// MaxRequestSize bounds an OCSP request body (POST) or its base64 form (GET).
const MaxRequestSize = 8 << 10

// ErrBadConfig reports a ResponderConfig NewResponder refuses.
var ErrBadConfig = errors.New("ocsp: bad responder configuration")

// Responder is an RFC 6960 OCSP responder for one issuer; it is an
// http.Handler, safe for concurrent use.
type Responder struct {
	cfg          ResponderConfig
	responderCrt *x509.Certificate // names the responder in responses
	embedCert    *x509.Certificate // sent along (nil when the CA signs itself)
	issuerHashes map[crypto.Hash][2][]byte
	log          *slog.Logger
	now          func() time.Time

	mu    sync.Mutex
	cache map[cacheKey]cacheEntry
}

type cacheKey struct {
	serial string
	hash   crypto.Hash
}

type cacheEntry struct {
	status  Status
	der     []byte
	expires time.Time
}

// maxCacheEntries bounds the response cache; past it, expired entries go,
// and if none has expired, everything does.
const maxCacheEntries = 10000

// NewResponder checks cfg and returns a responder.
func NewResponder(cfg ResponderConfig) (*Responder, error) {
	if cfg.Issuer == nil || cfg.Signer == nil || cfg.Source == nil {
		return nil, fmt.Errorf("%w: Issuer, Signer and Source are required", ErrBadConfig)
	}
	if cfg.Validity < 0 {
		return nil, fmt.Errorf("%w: negative Validity", ErrBadConfig)
	}
	if cfg.Validity == 0 {
		cfg.Validity = time.Hour
	}
	if cfg.CacheFor == 0 {
		cfg.CacheFor = min(time.Minute, cfg.Validity/4)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Responder{cfg: cfg, log: cfg.Log, now: cfg.Now, cache: make(map[cacheKey]cacheEntry)}
	if cfg.SignerCert == nil {
		if !samePublicKey(cfg.Signer.Public(), cfg.Issuer.PublicKey) {
			return nil, fmt.Errorf("%w: Signer is not the issuer's key and no SignerCert is given", ErrBadConfig)
		}
		r.responderCrt = cfg.Issuer
	} else {
		if err := checkDelegate(cfg.SignerCert, cfg.Issuer); err != nil {
			return nil, fmt.Errorf("%w: SignerCert: %w", ErrBadConfig, err)
		}
		if !samePublicKey(cfg.Signer.Public(), cfg.SignerCert.PublicKey) {
			return nil, fmt.Errorf("%w: Signer does not match SignerCert", ErrBadConfig)
		}
		r.responderCrt, r.embedCert = cfg.SignerCert, cfg.SignerCert
	}
	keyBits, err := subjectKeyBits(cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer public key: %w", ErrBadConfig, err)
	}
	r.issuerHashes = make(map[crypto.Hash][2][]byte)
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		r.issuerHashes[h] = [2][]byte{digest(h, cfg.Issuer.RawSubject), digest(h, keyBits)}
	}
	return r, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// checkDelegate checks that cert may sign OCSP responses for issuer
// (RFC 6960 §4.2.2.2): issued by it, with the OCSPSigning EKU.
func checkDelegate(cert, issuer *x509.Certificate) error {
	if err := cert.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("not issued by the issuer: %w", err)
	}
	for _, u := range cert.ExtKeyUsage {
		if u == x509.ExtKeyUsageOCSPSigning {
			return nil
		}
	}
	return errors.New("no OCSPSigning extended key usage")
}

func subjectKeyBits(c *x509.Certificate) ([]byte, error) {
	var spki struct {
		Algorithm asn1.RawValue
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(c.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, err
	}
	return spki.PublicKey.RightAlign(), nil
}

func digest(h crypto.Hash, data []byte) []byte {
	switch h {
	case crypto.SHA1:
		s := sha1.Sum(data)
		return s[:]
	case crypto.SHA256:
		s := sha256.Sum256(data)
		return s[:]
	case crypto.SHA384:
		s := sha512.Sum384(data)
		return s[:]
	case crypto.SHA512:
		s := sha512.Sum512(data)
		return s[:]
	}
	return nil
}

// Route returns a handler that sends /ocsp and every path under /ocsp/ to r
// and everything else to next. Unlike http.ServeMux it does not clean the
// path first, which would turn "//" inside a GET request's base64 into "/".
// A nil next answers 404.
func (r *Responder) Route(next http.Handler) http.Handler {
	if next == nil {
		next = http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p := req.URL.EscapedPath()
		if p == "/ocsp" || strings.HasPrefix(p, "/ocsp/") {
			r.ServeHTTP(w, req)
			return
		}
		next.ServeHTTP(w, req)
	})
}

// ServeHTTP answers POST (body: DER request) and GET (last path part after
// "/ocsp/": the base64 DER request, possibly URL-encoded, possibly holding
// '/'). OCSP-level failures are OCSP error responses with HTTP 200.
func (r *Responder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var der []byte
	switch req.Method {
	case http.MethodPost:
		if ct := req.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/ocsp-request") {
			http.Error(w, "want Content-Type application/ocsp-request", http.StatusUnsupportedMediaType)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxRequestSize))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				r.log.Info("ocsp request too large", "limit", MaxRequestSize)
				writeOCSP(w, http.StatusRequestEntityTooLarge, xocsp.MalformedRequestErrorResponse, 0)
				return
			}
			r.log.Info("ocsp request read failed", "err", err)
			return
		}
		der = body
	case http.MethodGet:
		b, err := decodeGETPath(req.URL.EscapedPath())
		if err != nil {
			r.log.Info("malformed ocsp GET request", "err", err)
			writeOCSP(w, http.StatusOK, xocsp.MalformedRequestErrorResponse, 0)
			return
		}
		der = b
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	resp, maxAge := r.Respond(req.Context(), der)
	writeOCSP(w, http.StatusOK, resp, maxAge)
}

func writeOCSP(w http.ResponseWriter, code int, der []byte, maxAge time.Duration) {
	h := w.Header()
	h.Set("Content-Type", "application/ocsp-response")
	h.Set("Content-Length", strconv.Itoa(len(der)))
	if maxAge > 0 {
		h.Set("Cache-Control", fmt.Sprintf("max-age=%d, public, no-transform, must-revalidate", int(maxAge/time.Second)))
	} else {
		h.Set("Cache-Control", "no-store")
	}
	w.WriteHeader(code)
	_, _ = w.Write(der)
}

// decodeGETPath extracts the request from ".../ocsp/{base64}" (RFC 6960
// Appendix A.1): the base64 is URL-encoded, but clients differ in what they
// escape, and standard base64 may hold '/'.
func decodeGETPath(escaped string) ([]byte, error) {
	p := escaped
	if i := strings.Index(p, "/ocsp/"); i >= 0 {
		p = p[i+len("/ocsp/"):]
	} else {
		p = strings.TrimPrefix(p, "/")
	}
	if p == "" {
		return nil, errors.New("empty request")
	}
	if len(p) > 3*MaxRequestSize {
		return nil, errors.New("request too large")
	}
	s, err := url.PathUnescape(p)
	if err != nil {
		return nil, err
	}
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("request is not base64")
}

// Respond answers one DER-encoded OCSP request with a DER-encoded OCSP
// response (an OCSP error response for a bad request) and how long it may
// be cached (0: not at all). It never fails; failures are logged.
func (r *Responder) Respond(ctx context.Context, der []byte) (resp []byte, cacheFor time.Duration) {
	if len(der) > MaxRequestSize {
		return xocsp.MalformedRequestErrorResponse, 0
	}
	info, err := parseRequestInfo(der)
	if err == nil && info.count != 1 {
		err = fmt.Errorf("%d certificates asked about, want 1", info.count)
	}
	var req *xocsp.Request
	if err == nil {
		req, err = xocsp.ParseRequest(der)
	}
	if err != nil {
		r.log.Info("malformed ocsp request", "err", err)
		return xocsp.MalformedRequestErrorResponse, 0
	}
	hashes, ok := r.issuerHashes[req.HashAlgorithm]
	if !ok || !bytes.Equal(hashes[0], req.IssuerNameHash) || !bytes.Equal(hashes[1], req.IssuerKeyHash) {
		r.log.Info("ocsp request for another issuer", "serial", req.SerialNumber.Text(16))
		return xocsp.UnauthorizedErrorResponse, 0
	}
	st, err := r.cfg.Source.OCSPStatus(ctx, req.SerialNumber)
	if err != nil {
		r.log.Error("ocsp status lookup failed", "serial", req.SerialNumber.Text(16), "err", err)
		return xocsp.InternalErrorErrorResponse, 0
	}
	out, err := r.signed(req, st)
	if err != nil {
		r.log.Error("ocsp signing failed", "serial", req.SerialNumber.Text(16), "err", err)
		return xocsp.InternalErrorErrorResponse, 0
	}
	cacheFor = max(r.cfg.CacheFor, 0) // HTTP caches keep it no longer than we do
	if info.nonce != nil {
		out, err = addResponseExtension(out, *info.nonce, r.cfg.Signer)
		if err != nil {
			r.log.Error("ocsp nonce signing failed", "serial", req.SerialNumber.Text(16), "err", err)
			return xocsp.InternalErrorErrorResponse, 0
		}
		cacheFor = 0
	}
	r.log.Debug("ocsp answered", "serial", req.SerialNumber.Text(16), "status", st.Status.String(), "nonce", info.nonce != nil)
	return out, cacheFor
}

// signed returns a nonce-less response for req with status st, reusing a
// recent one signed for the same serial and status.
func (r *Responder) signed(req *xocsp.Request, st Status) ([]byte, error) {
	now := r.now()
	key := cacheKey{serial: req.SerialNumber.String(), hash: req.HashAlgorithm}
	if r.cfg.CacheFor > 0 {
		r.mu.Lock()
		e, ok := r.cache[key]
		r.mu.Unlock()
		if ok && now.Before(e.expires) && sameStatus(e.status, st) {
			return e.der, nil
		}
	}
	tmpl := xocsp.Response{
		Status:       int(st.Status),
		SerialNumber: req.SerialNumber,
		ThisUpdate:   now.UTC().Truncate(time.Second),
		NextUpdate:   now.UTC().Truncate(time.Second).Add(r.cfg.Validity),
		IssuerHash:   req.HashAlgorithm,
		Certificate:  r.embedCert,
	}
	switch st.Status {
	case Good, Unknown:
	case Revoked:
		tmpl.RevokedAt = st.RevokedAt.UTC()
		tmpl.RevocationReason = st.Reason
	default:
		return nil, fmt.Errorf("status source returned %v", st.Status)
	}
	der, err := xocsp.CreateResponse(r.cfg.Issuer, r.responderCrt, tmpl, r.cfg.Signer)
	if err != nil {
		return nil, err
	}
	if r.cfg.CacheFor > 0 {
		r.mu.Lock()
		if len(r.cache) >= maxCacheEntries {
			for k, e := range r.cache {
				if !now.Before(e.expires) {
					delete(r.cache, k)
				}
			}
			if len(r.cache) >= maxCacheEntries {
				clear(r.cache)
			}
		}
		r.cache[key] = cacheEntry{status: st, der: der, expires: now.Add(r.cfg.CacheFor)}
		r.mu.Unlock()
	}
	return der, nil
}

func sameStatus(a, b Status) bool {
	return a.Status == b.Status && a.Reason == b.Reason && a.RevokedAt.Equal(b.RevokedAt)
}
