package securityserver

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/rest"
)

// Client authentication on the consumer side. Each client subsystem says
// how a client system proves it may use it (ClientAuth): none, a pinned TLS
// client certificate, or a bearer token (a JWT from an OpenID Connect
// issuer, or a static token). A request naming a subsystem it is not
// authenticated for is refused with 401 before anything is signed or sent.

// Error codes of client authentication (the rest of the type after
// Server.ClientProxy). SslAuthenticationFailed is X-Road's; X-Road has no
// token authentication, TokenAuthenticationFailed is Passerelle's.
const (
	codeTokenAuthFailed rest.Code = "TokenAuthenticationFailed"
)

// ErrClientAuth reports a client system that is not authenticated for the
// subsystem it names.
var ErrClientAuth = errors.New("client authentication failed")

// authenticator checks one subsystem's client systems. Safe for concurrent
// use; errors wrap ErrClientAuth and never hold a token.
type authenticator interface {
	authenticate(ctx context.Context, r *http.Request, client pki.ClientID) error
	mode() AuthMode
}

type noAuth struct{}

func (noAuth) authenticate(context.Context, *http.Request, pki.ClientID) error { return nil }
func (noAuth) mode() AuthMode                                                  { return AuthNone }

// tlsAuth admits a TLS client certificate whose fingerprint is pinned.
type tlsAuth struct{ pins map[string]bool }

func (a tlsAuth) mode() AuthMode { return AuthTLS }

func (a tlsAuth) authenticate(_ context.Context, r *http.Request, client pki.ClientID) error {
	if r.TLS == nil {
		return fmt.Errorf("%w: %s requires HTTPS with a client certificate", ErrClientAuth, client)
	}
	if len(r.TLS.PeerCertificates) == 0 {
		return fmt.Errorf("%w: %s requires a TLS client certificate and none was sent", ErrClientAuth, client)
	}
	if fp := pki.Fingerprint(r.TLS.PeerCertificates[0]); !a.pins[fp] {
		return fmt.Errorf("%w: TLS client certificate %s… is not pinned for %s", ErrClientAuth, fp[:16], client)
	}
	return nil
}

// staticTokenAuth admits one bearer token, compared in constant time.
type staticTokenAuth struct{ token []byte }

func (a staticTokenAuth) mode() AuthMode { return AuthToken }

func (a staticTokenAuth) authenticate(_ context.Context, r *http.Request, client pki.ClientID) error {
	got, ok := bearer(r)
	if !ok {
		return fmt.Errorf("%w: %s requires a bearer token", ErrClientAuth, client)
	}
	if subtle.ConstantTimeCompare([]byte(got), a.token) != 1 {
		return fmt.Errorf("%w: the bearer token is not the one configured for %s", ErrClientAuth, client)
	}
	return nil
}

// jwtAuth admits a bearer JWT signed by a key of the issuer's JWKS, with
// the configured iss and aud, unexpired, whose claim names the subsystem.
type jwtAuth struct {
	cfg  JWTAuth
	keys *jwksCache
}

func (a *jwtAuth) mode() AuthMode { return AuthToken }

// jwtSkew is the clock skew accepted on exp, nbf and iat.
const jwtSkew = 30 * time.Second

func (a *jwtAuth) authenticate(ctx context.Context, r *http.Request, client pki.ClientID) error {
	raw, ok := bearer(r)
	if !ok {
		return fmt.Errorf("%w: %s requires a bearer token", ErrClientAuth, client)
	}
	set, err := a.keys.get(ctx, false)
	if err != nil {
		return fmt.Errorf("%w: the issuer's keys are unavailable: %v", ErrClientAuth, err)
	}
	tok, err := a.parse(raw, set)
	if err != nil && a.keys.mayRefetch() {
		// A key rotated at the issuer: fetch the set again, at most every
		// jwksMinRefetch, and try once more.
		if set, ferr := a.keys.get(ctx, true); ferr == nil {
			tok, err = a.parse(raw, set)
		}
	}
	if err != nil {
		return fmt.Errorf("%w: bearer JWT refused: %v", ErrClientAuth, err)
	}
	var claim any
	if err := tok.Get(a.cfg.Claim, &claim); err != nil {
		return fmt.Errorf("%w: the JWT has no %s claim", ErrClientAuth, a.cfg.Claim)
	}
	if !claimNames(claim, client.String()) {
		return fmt.Errorf("%w: the JWT's %s claim does not name %s", ErrClientAuth, a.cfg.Claim, client)
	}
	return nil
}

func (a *jwtAuth) parse(raw string, set jwk.Set) (jwt.Token, error) {
	return jwt.Parse([]byte(raw),
		jwt.WithKeySet(set, jws.WithInferAlgorithmFromKey(true)),
		jwt.WithIssuer(a.cfg.Issuer), jwt.WithAudience(a.cfg.Audience),
		jwt.WithRequiredClaim("exp"), jwt.WithAcceptableSkew(jwtSkew))
}

// claimNames reports whether a claim value (a string or an array of
// strings) holds want.
func claimNames(v any, want string) bool {
	switch c := v.(type) {
	case string:
		return c == want
	case []any:
		for _, x := range c {
			if s, ok := x.(string); ok && s == want {
				return true
			}
		}
	case []string:
		for _, s := range c {
			if s == want {
				return true
			}
		}
	}
	return false
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "Bearer ") {
		return "", false
	}
	t := strings.TrimSpace(h[7:])
	return t, t != ""
}

// jwksMinRefetch bounds how often an unknown key triggers a JWKS fetch.
const jwksMinRefetch = 10 * time.Second

// jwksCache holds an issuer's key set, fetched on first use and again
// every refresh. Safe for concurrent use.
type jwksCache struct {
	url     string
	refresh time.Duration
	client  *http.Client

	mu      sync.Mutex
	set     jwk.Set
	fetched time.Time // last successful fetch
	tried   time.Time // last fetch attempt, successful or not
}

func newJWKSCache(url string, refresh time.Duration) *jwksCache {
	return &jwksCache{url: url, refresh: refresh, client: &http.Client{Timeout: 10 * time.Second}}
}

func (c *jwksCache) mayRefetch() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Since(c.tried) >= jwksMinRefetch
}

// get returns the key set, fetching it when missing, older than refresh, or
// when force is set; while it has a set, it tries the issuer at most every
// jwksMinRefetch (an issuer that is down is not asked on every request).
func (c *jwksCache) get(ctx context.Context, force bool) (jwk.Set, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.set != nil && ((!force && time.Since(c.fetched) < c.refresh) || time.Since(c.tried) < jwksMinRefetch) {
		return c.set, nil
	}
	c.tried = time.Now()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	set, err := jwk.Fetch(ctx, c.url, jwk.WithHTTPClient(c.client))
	if err != nil {
		if c.set != nil {
			return c.set, nil // keep the last good set while the issuer is away
		}
		return nil, err
	}
	c.set, c.fetched = set, time.Now()
	return set, nil
}

// normalizeFingerprint reads a SHA-256 fingerprint in hex, with or without
// colons, into pki.Fingerprint's form (lower-case hex).
func normalizeFingerprint(s string) (string, error) {
	h := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 {
		return "", errors.New("want the hex SHA-256 of the certificate (64 hex digits, colons allowed)")
	}
	return h, nil
}

// newAuthenticator prepares a client's authentication; resolve maps
// configured paths to files. jwks shares key sets between snapshots.
func newAuthenticator(c *ClientConfig, resolve func(string) string, jwks func(JWTAuth) *jwksCache) (authenticator, error) {
	a := c.Auth
	switch a.Mode {
	case AuthNone, "":
		return noAuth{}, nil
	case AuthTLS:
		pins := map[string]bool{}
		for _, fp := range a.CertSHA256 {
			h, err := normalizeFingerprint(fp)
			if err != nil {
				return nil, fmt.Errorf("auth.certSHA256: %w", err)
			}
			pins[h] = true
		}
		if a.CertFile != "" {
			certs, err := pki.LoadCertificates(resolve(a.CertFile))
			if err != nil {
				return nil, fmt.Errorf("auth.certFile: %w", err)
			}
			for _, c := range certs {
				pins[pki.Fingerprint(c)] = true
			}
		}
		return tlsAuth{pins}, nil
	case AuthToken:
		if a.TokenFile != "" {
			tok, err := loadAdminToken(resolve(a.TokenFile))
			if err != nil {
				return nil, fmt.Errorf("auth.tokenFile: %w", err)
			}
			return staticTokenAuth{tok}, nil
		}
		return &jwtAuth{cfg: *a.JWT, keys: jwks(*a.JWT)}, nil
	}
	return nil, fmt.Errorf("auth.mode: %q: want none, tls or token", a.Mode)
}

// authorizeClient checks that client is one of this server's subsystems and
// that the request is authenticated for it. The error is a *rest.Error for
// the consumer side: InvalidClientIdentifier (400) for an unknown client,
// SslAuthenticationFailed or TokenAuthenticationFailed (401) otherwise.
func (s *Server) authorizeClient(r *http.Request, client pki.ClientID) error {
	c := s.store.load().clients[client]
	if c == nil {
		return rest.ClientProxyError(rest.CodeInvalidClientIdentifier,
			fmt.Sprintf("client %s is not registered at this security server", client), nil)
	}
	if err := c.auth.authenticate(r.Context(), r, client); err != nil {
		code := rest.CodeSslAuthenticationFailed
		msg := fmt.Sprintf("client %s requires a TLS client certificate pinned to it", client)
		if c.auth.mode() == AuthToken {
			code = codeTokenAuthFailed
			msg = fmt.Sprintf("client %s requires a valid bearer token issued for it", client)
		}
		e := rest.ClientProxyError(code, msg, err)
		e.Status = http.StatusUnauthorized
		return e
	}
	return nil
}

// clientUsesToken reports whether client authenticates with a bearer token,
// which then stays at this server (it is not forwarded).
func (s *Server) clientUsesToken(client pki.ClientID) bool {
	c := s.store.load().clients[client]
	return c != nil && c.auth.mode() == AuthToken
}

// consumerServerTLS is the HTTPS consumer side: the internal TLS
// certificate, and a client certificate requested (not required: clients in
// mode none or token may connect without one); pins are checked per request.
func (s *Server) consumerServerTLS() (*tls.Config, error) {
	// pki.LoadPrivateKey, not tls.LoadX509KeyPair: it refuses a key file
	// readable by group or others.
	key, err := pki.LoadPrivateKey(s.cfg.path(s.cfg.Keys.InternalTLSKey))
	if err != nil {
		return nil, fmt.Errorf("keys.internalTLSKey: %w", err)
	}
	chain, err := pki.LoadCertificates(s.cfg.path(s.cfg.Keys.InternalTLSCert))
	if err != nil {
		return nil, fmt.Errorf("keys.internalTLSCert: %w", err)
	}
	if len(chain) == 0 || !publicKeysEqual(key.Public(), chain[0].PublicKey) {
		return nil, errors.New("keys.internalTLSCert does not certify keys.internalTLSKey")
	}
	cert := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequestClientCert,
	}, nil
}
