package securityserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/passerelle/passerelle/pki"
)

// Config is a security server's local configuration (YAML). Federation-wide
// parameters (OCSP freshness, timestamp interval and failure period, replay
// window) come from the signed directory, never from here; where a local
// value may only tighten a federation value, the field says so.
type Config struct {
	// Owner is the member that runs this server: INSTANCE/CLASS/MEMBER.
	Owner string `yaml:"owner"`
	// ServerCode names this server among its owner's servers (the directory's
	// security server code).
	ServerCode string `yaml:"serverCode"`
	// DataDir holds the message log, the timestamp batcher's and the registry
	// outbox's durable queues, and the directory copy. Created 0700.
	DataDir string `yaml:"dataDir"`

	// Keys are the server's private keys (PEM, mode 0600) and certificate
	// chains (PEM, leaf first). Relative paths are relative to the config file.
	Keys KeysConfig `yaml:"keys"`

	// Trust is the trust directory: ca.pem (the roots that the federation
	// directory's signer chains to). Relative to the config file.
	Trust string `yaml:"trust"`

	// Directory says where the signed federation directory comes from.
	Directory DirectoryConfig `yaml:"directory"`

	// Listen addresses; "" disables a listener, port 0 picks a free one.
	Listen ListenConfig `yaml:"listen"`

	// Clients are this institution's own client subsystems: the consumer
	// side serves only these.
	Clients []ClientConfig `yaml:"clients"`

	// Services are this institution's services offered to other members.
	Services []ServiceConfig `yaml:"services"`

	// Limits protect the server.
	Limits LimitsConfig `yaml:"limits"`

	// AdminTokenFile holds the bearer token (one line, at least 32
	// characters; mode 0600) that the admin API (/api/v1/ on the admin
	// listener) requires. Without it the admin API is disabled; /healthz and
	// /metrics stay open. Relative to the config file.
	AdminTokenFile string `yaml:"adminTokenFile"`

	// StrictXRoadErrors switches REST error statuses to X-Road's strict
	// 400/500 mapping, for clients that rely on it.
	StrictXRoadErrors bool `yaml:"strictXRoadErrors"`

	// Retention is how long message log records are kept once timestamped
	// and registered (default 30 days). Untimestamped or unregistered records
	// are never deleted.
	Retention Duration `yaml:"retention"`

	dir string // the config file's directory, for relative paths
}

// KeysConfig names the key and certificate files.
type KeysConfig struct {
	AuthKey  string `yaml:"authKey"`  // TLS between security servers (usage auth)
	AuthCert string `yaml:"authCert"` // chain, leaf first
	SignKey  string `yaml:"signKey"`  // message signatures (usage sign)
	SignCert string `yaml:"signCert"`
	// InternalTLSKey and InternalTLSCert are the HTTPS consumer side's server
	// key and certificate chain (X-Road's "internal TLS certificate"), which
	// client systems pin. Required with listen.consumerTLS.
	InternalTLSKey  string `yaml:"internalTLSKey,omitempty"`
	InternalTLSCert string `yaml:"internalTLSCert,omitempty"`
}

// DirectoryConfig says where the federation directory comes from: a URL
// polled at the directory's own poll interval, or a local file.
type DirectoryConfig struct {
	URL  string `yaml:"url"`
	File string `yaml:"file"`
}

// ListenConfig holds the listeners' addresses.
type ListenConfig struct {
	// Consumer is the plain-HTTP consumer side for the institution's client
	// systems (X-Road's default: 8080).
	Consumer string `yaml:"consumer"`
	// Provider is the mTLS side other security servers call (default 5500).
	Provider string `yaml:"provider"`
	// Admin serves /healthz, /metrics and the admin API (keep it on loopback).
	Admin string `yaml:"admin"`
	// ConsumerTLS is the HTTPS consumer side (X-Road's default: 8443), with
	// keys.internalTLSKey/Cert; client systems may present a TLS client
	// certificate there, which clients[].auth mode tls pins.
	ConsumerTLS string `yaml:"consumerTLS,omitempty"`
}

// ClientConfig is one of this institution's client subsystems.
type ClientConfig struct {
	ID string `yaml:"id" json:"id"` // INSTANCE/CLASS/MEMBER/SUBSYSTEM
	// Auth says how a client system proves it may use this subsystem on the
	// consumer side (default: none).
	Auth ClientAuth `yaml:"auth,omitempty" json:"auth"`
}

// AuthMode is how a client system authenticates for a subsystem.
type AuthMode string

const (
	// AuthNone trusts the network (X-Road's HTTP default): any client system
	// that reaches the consumer side may use the subsystem.
	AuthNone AuthMode = "none"
	// AuthTLS requires a TLS client certificate (on listen.consumerTLS)
	// whose SHA-256 fingerprint is pinned in auth.certSHA256 or auth.certFile
	// (X-Road's HTTPS default).
	AuthTLS AuthMode = "tls"
	// AuthToken requires "Authorization: Bearer TOKEN": a JWT validated
	// against auth.jwt (issuer's JWKS, issuer, audience, expiry, a claim
	// naming the subsystem), or the static token in auth.tokenFile.
	AuthToken AuthMode = "token"
)

// ClientAuth configures a client subsystem's authentication.
type ClientAuth struct {
	// Mode is none (default), tls or token.
	Mode AuthMode `yaml:"mode,omitempty" json:"mode,omitempty"`
	// CertSHA256 pins client certificates by the hex SHA-256 of their DER
	// (openssl x509 -noout -fingerprint -sha256, colons allowed). Mode tls.
	CertSHA256 []string `yaml:"certSHA256,omitempty" json:"certSHA256,omitempty"`
	// CertFile pins every certificate of a PEM file. Mode tls.
	CertFile string `yaml:"certFile,omitempty" json:"certFile,omitempty"`
	// JWT validates bearer JWTs. Mode token; exclusive with TokenFile.
	JWT *JWTAuth `yaml:"jwt,omitempty" json:"jwt,omitempty"`
	// TokenFile holds a static bearer token (one line, at least 32
	// characters, mode 0600). Mode token; exclusive with JWT.
	TokenFile string `yaml:"tokenFile,omitempty" json:"tokenFile,omitempty"`
}

// JWTAuth validates bearer JWTs issued by an OpenID Connect provider
// (Keycloak-style): signature against the issuer's JWKS, iss, aud, exp (and
// nbf, iat), and a claim that names the subsystem.
type JWTAuth struct {
	// JWKSURL is the issuer's key set (e.g. Keycloak's
	// .../realms/R/protocol/openid-connect/certs). Fetched at start-up and
	// again every refresh, or at once (at most every 10 s) for an unknown key.
	JWKSURL string `yaml:"jwksURL" json:"jwksURL"`
	// Issuer is the required iss claim.
	Issuer string `yaml:"issuer" json:"issuer"`
	// Audience is the required aud value.
	Audience string `yaml:"audience" json:"audience"`
	// Claim names the claim that must hold the subsystem identifier
	// (I/C/M/S), as a string or in an array (default "xroadClient").
	Claim string `yaml:"claim,omitempty" json:"claim,omitempty"`
	// Refresh is how often the JWKS is fetched again (default 5m).
	Refresh Duration `yaml:"refresh,omitempty" json:"refresh,omitempty"`
}

// DefaultJWTClaim is the claim that names the subsystem in a bearer JWT.
const DefaultJWTClaim = "xroadClient"

// BodyLogging says how much of a message body the message log keeps.
type BodyLogging string

const (
	BodyLoggingFull     BodyLogging = "full"     // the body itself
	BodyLoggingMetadata BodyLogging = "metadata" // length and digest only
)

// ServiceConfig is a service this institution offers.
type ServiceConfig struct {
	// ID is INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE; the member must be
	// Owner. A SOAP service may also sit on the member itself:
	// INSTANCE/CLASS/MEMBER/SERVICE (REST services always have a subsystem).
	ID string `yaml:"id" json:"id"`
	// URL is the backend's base URL (http or https); the r1 resource path is
	// appended to it.
	URL string `yaml:"url" json:"url"`
	// Timeout bounds a backend call (default 30s).
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// BodyLogging is full (default) or metadata.
	BodyLogging BodyLogging `yaml:"bodyLogging" json:"bodyLogging"`
	// Allow lists the clients (members or subsystems) that may call the
	// service, any method and path. Empty (and no rules) means nobody:
	// access is denied by default.
	Allow []string `yaml:"allow" json:"allow"`
	// Rules grant a client some methods on some paths only (REST). A
	// request is allowed when Allow or any rule admits it.
	Rules []AccessRule `yaml:"rules,omitempty" json:"rules,omitempty"`
	// TLS configures an HTTPS backend: the CA bundle that verifies it and
	// optionally a client certificate. Without it, HTTPS backends are
	// verified against the system roots.
	TLS *BackendTLS `yaml:"tls,omitempty" json:"tls,omitempty"`
	// OpenAPI is the service's OpenAPI 3 description (YAML or JSON file),
	// served by the getOpenAPI metaservice; its paths and methods become the
	// service's endpoints in listMethods and allowedMethods.
	OpenAPI string `yaml:"openapi,omitempty" json:"openapi,omitempty"`
}

// AccessRule grants a client (member or subsystem) some methods on some
// resource paths of a REST service. Methods are HTTP methods or "*"
// (empty = any). Paths are resource paths after the service code, where
// "*" matches one path segment and a final "**" any rest, as X-Road's
// endpoints (empty = any).
type AccessRule struct {
	Client  string   `yaml:"client" json:"client"`
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty"`
	Paths   []string `yaml:"paths,omitempty" json:"paths,omitempty"`
}

// BackendTLS is a service backend's TLS settings. Relative paths are
// relative to the config file.
type BackendTLS struct {
	// CABundle (PEM) holds the roots that verify the backend's certificate;
	// empty = the system roots.
	CABundle string `yaml:"caBundle,omitempty" json:"caBundle,omitempty"`
	// ClientCert (PEM chain) and ClientKey (PEM, mode 0600): the client
	// certificate presented to the backend, both or neither.
	ClientCert string `yaml:"clientCert,omitempty" json:"clientCert,omitempty"`
	ClientKey  string `yaml:"clientKey,omitempty" json:"clientKey,omitempty"`
	// ServerName overrides the name checked in the backend's certificate.
	ServerName string `yaml:"serverName,omitempty" json:"serverName,omitempty"`
}

// LimitsConfig bounds what the server accepts.
type LimitsConfig struct {
	// MaxBodyBytes bounds a request or response body (default 10 MiB).
	MaxBodyBytes int64 `yaml:"maxBodyBytes"`
	// MaxHeaderBytes bounds a request's header block: the request line and
	// every header (default 64 KiB); 431 beyond.
	MaxHeaderBytes int `yaml:"maxHeaderBytes,omitempty"`
	// MaxConcurrentPerClient bounds the requests one client (a subsystem on
	// the consumer side, a calling member's client on the provider side)
	// may have in flight at once (default 100; -1 = unlimited); 429 beyond.
	MaxConcurrentPerClient int `yaml:"maxConcurrentPerClient,omitempty"`
}

// Duration is a time.Duration written as "30s", "5m" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MarshalJSON writes a Go duration string ("30s").
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string ("30s").
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"30s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Defaults.
const (
	DefaultBackendTimeout = 30 * time.Second
	DefaultMaxBodyBytes   = 10 << 20
	DefaultRetention      = 30 * 24 * time.Hour
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultMaxConcurrentPerClient bounds one client's requests in flight.
	DefaultMaxConcurrentPerClient = 100
	// DefaultJWKSRefresh is how often a JWKS is fetched again.
	DefaultJWKSRefresh = 5 * time.Minute
)

// LoadConfig reads and validates a YAML configuration file. Unknown fields
// are errors, so a typo does not silently fall back to a default.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	c.dir = filepath.Dir(abs)
	c.DataDir = c.path(c.DataDir) // relative to the config file, like every path
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

func (c *Config) setDefaults() {
	for i := range c.Services {
		c.Services[i].setDefaults()
	}
	for i := range c.Clients {
		c.Clients[i].setDefaults()
	}
	if c.Limits.MaxBodyBytes == 0 {
		c.Limits.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Limits.MaxHeaderBytes == 0 {
		c.Limits.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.Limits.MaxConcurrentPerClient == 0 {
		c.Limits.MaxConcurrentPerClient = DefaultMaxConcurrentPerClient
	}
	if c.Retention == 0 {
		c.Retention = Duration(DefaultRetention)
	}
}

func (s *ServiceConfig) setDefaults() {
	if s.Timeout == 0 {
		s.Timeout = Duration(DefaultBackendTimeout)
	}
	if s.BodyLogging == "" {
		s.BodyLogging = BodyLoggingFull
	}
}

func (c *ClientConfig) setDefaults() {
	if c.Auth.Mode == "" {
		c.Auth.Mode = AuthNone
	}
	if j := c.Auth.JWT; j != nil {
		if j.Claim == "" {
			j.Claim = DefaultJWTClaim
		}
		if j.Refresh == 0 {
			j.Refresh = Duration(DefaultJWKSRefresh)
		}
	}
}

// ErrConfig reports an invalid configuration; the message names the field.
var ErrConfig = errors.New("invalid configuration")

// Validate checks the configuration without side effects.
func (c *Config) Validate() error {
	bad := func(field, format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, a...))
	}
	owner, err := pki.ParseMemberID(c.Owner)
	if err != nil {
		return bad("owner", "%v", err)
	}
	if !pki.ValidPart(c.ServerCode) {
		return bad("serverCode", "must be 1-255 characters from A-Z a-z 0-9 '()+,-.=?")
	}
	if c.DataDir == "" {
		return bad("dataDir", "required")
	}
	for field, v := range map[string]string{"keys.authKey": c.Keys.AuthKey, "keys.authCert": c.Keys.AuthCert, "keys.signKey": c.Keys.SignKey, "keys.signCert": c.Keys.SignCert, "trust": c.Trust} {
		if v == "" {
			return bad(field, "required")
		}
	}
	if (c.Directory.URL == "") == (c.Directory.File == "") {
		return bad("directory", "set exactly one of url and file")
	}
	if c.Listen.Consumer == "" && c.Listen.Provider == "" {
		return bad("listen", "set consumer, provider or both")
	}
	seen := map[string]bool{}
	for i := range c.Clients {
		f := fmt.Sprintf("clients[%d]", i)
		if err := c.Clients[i].validate(owner); err != nil {
			return fmt.Errorf("%w: %s%s", ErrConfig, f, err.Error())
		}
		if seen[c.Clients[i].ID] {
			return bad(f+".id", "duplicate %s", c.Clients[i].ID)
		}
		seen[c.Clients[i].ID] = true
	}
	seen = map[string]bool{}
	for i := range c.Services {
		f := fmt.Sprintf("services[%d]", i)
		if err := c.Services[i].validate(owner); err != nil {
			return fmt.Errorf("%w: %s%s", ErrConfig, f, err.Error())
		}
		if seen[c.Services[i].ID] {
			return bad(f+".id", "duplicate %s", c.Services[i].ID)
		}
		seen[c.Services[i].ID] = true
	}
	if (c.Listen.ConsumerTLS != "") != (c.Keys.InternalTLSKey != "" && c.Keys.InternalTLSCert != "") {
		return bad("listen.consumerTLS", "needs keys.internalTLSKey and keys.internalTLSCert, and they need it")
	}
	if c.Limits.MaxBodyBytes < 0 {
		return bad("limits.maxBodyBytes", "must not be negative")
	}
	if c.Limits.MaxHeaderBytes < 0 || c.Limits.MaxHeaderBytes > maxHeaderBytesCap {
		return bad("limits.maxHeaderBytes", "must be between 1 and %d", maxHeaderBytesCap)
	}
	if c.Limits.MaxConcurrentPerClient < -1 {
		return bad("limits.maxConcurrentPerClient", "must be positive, or -1 for unlimited")
	}
	return nil
}

// maxHeaderBytesCap is the largest limits.maxHeaderBytes.
const maxHeaderBytesCap = 1 << 20

// fieldError is a validation error of one part of a client or service; its
// message starts with the field's path below that part (".id: …").
func fieldError(field, format string, a ...any) error {
	return fmt.Errorf(".%s: %s", field, fmt.Sprintf(format, a...))
}

// validate checks one client subsystem of owner, without side effects.
// Errors name the field below the client (".auth.mode: …").
func (cl *ClientConfig) validate(owner pki.ClientID) error {
	id, err := pki.ParseSubsystemID(cl.ID)
	if err != nil {
		return fieldError("id", "%v", err)
	}
	if id.MemberID() != owner {
		return fieldError("id", "%s does not belong to owner %s", id, owner)
	}
	a := &cl.Auth
	switch a.Mode {
	case AuthNone, "":
		if len(a.CertSHA256) > 0 || a.CertFile != "" || a.JWT != nil || a.TokenFile != "" {
			return fieldError("auth", "mode none takes no certificates or tokens")
		}
	case AuthTLS:
		if len(a.CertSHA256) == 0 && a.CertFile == "" {
			return fieldError("auth", "mode tls needs certSHA256 or certFile")
		}
		for j, fp := range a.CertSHA256 {
			if _, err := normalizeFingerprint(fp); err != nil {
				return fieldError(fmt.Sprintf("auth.certSHA256[%d]", j), "%v", err)
			}
		}
		if a.JWT != nil || a.TokenFile != "" {
			return fieldError("auth", "mode tls takes no tokens")
		}
	case AuthToken:
		if (a.JWT == nil) == (a.TokenFile == "") {
			return fieldError("auth", "mode token needs exactly one of jwt and tokenFile")
		}
		if j := a.JWT; j != nil {
			u, err := url.Parse(j.JWKSURL)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return fieldError("auth.jwt.jwksURL", "want an http(s) URL")
			}
			if j.Issuer == "" {
				return fieldError("auth.jwt.issuer", "required")
			}
			if j.Audience == "" {
				return fieldError("auth.jwt.audience", "required")
			}
			if j.Refresh < 0 {
				return fieldError("auth.jwt.refresh", "must be positive")
			}
		}
		if len(a.CertSHA256) > 0 || a.CertFile != "" {
			return fieldError("auth", "mode token takes no certificates")
		}
	default:
		return fieldError("auth.mode", "%q: want none, tls or token", a.Mode)
	}
	return nil
}

// validate checks one service of owner, without side effects. Errors name
// the field below the service (".url: …").
func (s *ServiceConfig) validate(owner pki.ClientID) error {
	id, err := parseConfiguredService(s.ID)
	if err != nil {
		return fieldError("id", "%v", err)
	}
	if id.Client.MemberID() != owner {
		return fieldError("id", "%s does not belong to owner %s", id, owner)
	}
	u, err := url.Parse(s.URL)
	if s.URL == "" {
		return fieldError("url", "required")
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fieldError("url", "want an http or https URL")
	}
	if s.Timeout <= 0 {
		return fieldError("timeout", "must be positive")
	}
	if s.BodyLogging != BodyLoggingFull && s.BodyLogging != BodyLoggingMetadata {
		return fieldError("bodyLogging", "%q: want full or metadata", s.BodyLogging)
	}
	for j, a := range s.Allow {
		if _, err := pki.ParseClientID(a); err != nil {
			return fieldError(fmt.Sprintf("allow[%d]", j), "%v", err)
		}
	}
	for j, r := range s.Rules {
		if err := r.validate(); err != nil {
			return fieldError(fmt.Sprintf("rules[%d]", j), "%v", err)
		}
	}
	if t := s.TLS; t != nil {
		if (t.ClientCert == "") != (t.ClientKey == "") {
			return fieldError("tls", "set both clientCert and clientKey, or neither")
		}
		if u.Scheme != "https" {
			return fieldError("tls", "the backend URL is not https")
		}
	}
	return nil
}

// path resolves p relative to the config file's directory.
func (c *Config) path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// parseConfiguredService reads a configured service identifier: the REST
// form I/C/M/S/SERVICE, or a SOAP service on a member, I/C/M/SERVICE.
func parseConfiguredService(s string) (pki.ServiceID, error) {
	parts := strings.Split(s, "/")
	if len(parts) == 4 {
		return pki.NewServiceID(parts[:3], parts[3], "")
	}
	return pki.ParseServiceID(s)
}
