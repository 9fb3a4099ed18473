package securityserver

import (
	"bytes"
	"errors"
	"fmt"
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
}

// ClientConfig is one of this institution's client subsystems.
type ClientConfig struct {
	ID string `yaml:"id"` // INSTANCE/CLASS/MEMBER/SUBSYSTEM
}

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
	ID string `yaml:"id"`
	// URL is the backend's base URL; the r1 resource path is appended to it.
	URL string `yaml:"url"`
	// Timeout bounds a backend call (default 30s).
	Timeout Duration `yaml:"timeout"`
	// BodyLogging is full (default) or metadata.
	BodyLogging BodyLogging `yaml:"bodyLogging"`
	// Allow lists the clients (members or subsystems) that may call the
	// service. Empty means nobody: access is denied by default.
	Allow []string `yaml:"allow"`
}

// LimitsConfig bounds what the server accepts.
type LimitsConfig struct {
	// MaxBodyBytes bounds a request or response body (default 10 MiB).
	MaxBodyBytes int64 `yaml:"maxBodyBytes"`
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

// Defaults.
const (
	DefaultBackendTimeout = 30 * time.Second
	DefaultMaxBodyBytes   = 10 << 20
	DefaultRetention      = 30 * 24 * time.Hour
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
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

func (c *Config) setDefaults() {
	for i := range c.Services {
		s := &c.Services[i]
		if s.Timeout == 0 {
			s.Timeout = Duration(DefaultBackendTimeout)
		}
		if s.BodyLogging == "" {
			s.BodyLogging = BodyLoggingFull
		}
	}
	if c.Limits.MaxBodyBytes == 0 {
		c.Limits.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Retention == 0 {
		c.Retention = Duration(DefaultRetention)
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
	for i, cl := range c.Clients {
		id, err := pki.ParseSubsystemID(cl.ID)
		if err != nil {
			return bad(fmt.Sprintf("clients[%d].id", i), "%v", err)
		}
		if id.MemberID() != owner {
			return bad(fmt.Sprintf("clients[%d].id", i), "%s does not belong to owner %s", id, owner)
		}
		if seen[cl.ID] {
			return bad(fmt.Sprintf("clients[%d].id", i), "duplicate %s", cl.ID)
		}
		seen[cl.ID] = true
	}
	seen = map[string]bool{}
	for i, s := range c.Services {
		f := fmt.Sprintf("services[%d]", i)
		id, err := parseConfiguredService(s.ID)
		if err != nil {
			return bad(f+".id", "%v", err)
		}
		if id.Client.MemberID() != owner {
			return bad(f+".id", "%s does not belong to owner %s", id, owner)
		}
		if seen[s.ID] {
			return bad(f+".id", "duplicate %s", s.ID)
		}
		seen[s.ID] = true
		if s.URL == "" {
			return bad(f+".url", "required")
		}
		if s.Timeout <= 0 {
			return bad(f+".timeout", "must be positive")
		}
		if s.BodyLogging != BodyLoggingFull && s.BodyLogging != BodyLoggingMetadata {
			return bad(f+".bodyLogging", "%q: want full or metadata", s.BodyLogging)
		}
		for j, a := range s.Allow {
			if _, err := pki.ParseClientID(a); err != nil {
				return bad(fmt.Sprintf("%s.allow[%d]", f, j), "%v", err)
			}
		}
	}
	if c.Limits.MaxBodyBytes < 0 {
		return bad("limits.maxBodyBytes", "must not be negative")
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
