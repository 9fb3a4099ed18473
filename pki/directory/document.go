package directory

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/passerelle/passerelle/pki"
)

// FormatVersion is the version of the document format this package writes
// and the only one it reads.
const FormatVersion = 1

// MaxSize bounds a signed directory (and a draft) this package reads.
const MaxSize = 8 << 20

// Defaults of the federation-wide parameters.
const (
	DefaultOCSPFreshness          = 3600 * time.Second
	DefaultTimestampInterval      = 1 * time.Second
	DefaultTimestampFailurePeriod = 4 * time.Hour
	DefaultReplayWindow           = 300 * time.Second
	DefaultPollInterval           = 60 * time.Second
)

var (
	// ErrInvalid reports a document whose content is inconsistent or malformed
	// (a bad identifier, an unknown owner, a certificate that does not parse...).
	ErrInvalid = errors.New("directory: invalid document")
	// ErrUnsupportedVersion reports a document of a format version we do not read.
	ErrUnsupportedVersion = errors.New("directory: unsupported format version")
)

// Document is the federation directory. A Document returned by Verifier.Verify
// or ParseDocument has been validated and indexed; treat it as immutable and
// share it freely between goroutines.
type Document struct {
	Version    int        `json:"version"`
	Instance   string     `json:"instance"`
	Serial     uint64     `json:"serial"`
	IssuedAt   time.Time  `json:"issuedAt,omitzero"`
	ExpiresAt  time.Time  `json:"expiresAt,omitzero"`
	Members    []Member   `json:"members"`
	Servers    []Server   `json:"securityServers"`
	CAs        []CA       `json:"certificateAuthorities"`
	TSAs       []TSA      `json:"timestampingAuthorities"`
	Registries []Registry `json:"registries"`
	Params     Params     `json:"parameters"`

	idx *index
}

// Member is a member of the federation and its subsystems.
type Member struct {
	ID         string   `json:"id"` // INSTANCE/CLASS/MEMBER
	Name       string   `json:"name,omitempty"`
	Subsystems []string `json:"subsystems,omitempty"` // subsystem codes
}

// Server is a security server: its owner, its code (unique per owner), the
// host:port of its provider side, the SHA-256 fingerprint of its TLS
// certificate (pki.Fingerprint) and the subsystems it hosts.
type Server struct {
	Owner         string   `json:"owner"` // INSTANCE/CLASS/MEMBER
	Code          string   `json:"code"`
	Address       string   `json:"address"`              // host:port of the provider side (mTLS)
	TLSCertSHA256 string   `json:"tlsCertSha256"`        // lower-case hex, 64 characters
	Subsystems    []string `json:"subsystems,omitempty"` // INSTANCE/CLASS/MEMBER/SUBSYSTEM
}

// ID is the server's identifier, OWNER/CODE (X-Road's SERVER:I/C/M/CODE).
func (s Server) ID() string { return s.Owner + "/" + s.Code }

// CA is a trusted certificate authority root and its OCSP responders.
type CA struct {
	Name        string   `json:"name,omitempty"`
	Certificate string   `json:"certificate"` // PEM
	OCSPURLs    []string `json:"ocspUrls,omitempty"`

	cert *x509.Certificate
}

// Cert returns the parsed root certificate (nil on a Document that has not
// been validated).
func (c CA) Cert() *x509.Certificate { return c.cert }

// TSA is a trusted RFC 3161 time-stamping authority.
type TSA struct {
	Name        string `json:"name,omitempty"`
	URL         string `json:"url"`
	Certificate string `json:"certificate"` // PEM: the TSA's signing certificate

	cert *x509.Certificate
}

// Cert returns the parsed TSA certificate.
func (t TSA) Cert() *x509.Certificate { return t.cert }

// Registry is a hash registry endpoint and the key that verifies its signed
// checkpoints, in golang.org/x/mod/sumdb/note verifier format
// ("<name>+<hash>+<base64 key>").
type Registry struct {
	Name        string `json:"name"`
	GRPCAddress string `json:"grpcAddress"` // host:port
	HTTPURL     string `json:"httpUrl"`     // read API for auditors
	VerifierKey string `json:"verifierKey"`
}

// Verifier returns the note verifier of the registry's checkpoint key.
func (r Registry) Verifier() (note.Verifier, error) { return note.NewVerifier(r.VerifierKey) }

// Params are the federation-wide parameters, in seconds. Zero means the
// default; Durations and the accessors apply the defaults.
type Params struct {
	OCSPFreshnessSeconds          int64 `json:"ocspFreshnessSeconds"`
	TimestampIntervalSeconds      int64 `json:"timestampIntervalSeconds"`
	TimestampFailurePeriodSeconds int64 `json:"timestampFailurePeriodSeconds"`
	ReplayWindowSeconds           int64 `json:"replayWindowSeconds"`
	PollIntervalSeconds           int64 `json:"pollIntervalSeconds"`
}

// DefaultParams returns the parameters with every default filled in.
func DefaultParams() Params {
	return Params{
		OCSPFreshnessSeconds:          int64(DefaultOCSPFreshness / time.Second),
		TimestampIntervalSeconds:      int64(DefaultTimestampInterval / time.Second),
		TimestampFailurePeriodSeconds: int64(DefaultTimestampFailurePeriod / time.Second),
		ReplayWindowSeconds:           int64(DefaultReplayWindow / time.Second),
		PollIntervalSeconds:           int64(DefaultPollInterval / time.Second),
	}
}

func orDefault(secs int64, def time.Duration) time.Duration {
	if secs <= 0 {
		return def
	}
	return time.Duration(secs) * time.Second
}

// OCSPFreshness is how old an OCSP response may be.
func (p Params) OCSPFreshness() time.Duration {
	return orDefault(p.OCSPFreshnessSeconds, DefaultOCSPFreshness)
}

// TimestampInterval is the longest time a message waits for its batch timestamp.
func (p Params) TimestampInterval() time.Duration {
	return orDefault(p.TimestampIntervalSeconds, DefaultTimestampInterval)
}

// TimestampFailurePeriod is how long servers keep accepting messages while
// the TSA is unreachable.
func (p Params) TimestampFailurePeriod() time.Duration {
	return orDefault(p.TimestampFailurePeriodSeconds, DefaultTimestampFailurePeriod)
}

// ReplayWindow is the allowed clock skew of a signed message, and how long a
// provider remembers message ids to refuse replays.
func (p Params) ReplayWindow() time.Duration {
	return orDefault(p.ReplayWindowSeconds, DefaultReplayWindow)
}

// PollInterval is how often servers fetch the directory.
func (p Params) PollInterval() time.Duration {
	return orDefault(p.PollIntervalSeconds, DefaultPollInterval)
}

func (p Params) validate() error {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"ocspFreshnessSeconds", p.OCSPFreshnessSeconds},
		{"timestampIntervalSeconds", p.TimestampIntervalSeconds},
		{"timestampFailurePeriodSeconds", p.TimestampFailurePeriodSeconds},
		{"replayWindowSeconds", p.ReplayWindowSeconds},
		{"pollIntervalSeconds", p.PollIntervalSeconds},
	} {
		// Zero means the default; a year bounds every value.
		if f.v < 0 || f.v > 366*24*3600 {
			return fmt.Errorf("%w: parameters.%s = %d, want 0 (default) to one year", ErrInvalid, f.name, f.v)
		}
	}
	return nil
}

// ParseDocument decodes the JSON document (the JWS payload) strictly — an
// unknown field is an error — then validates and indexes it. It checks
// neither signature nor expiry: use Verifier.Verify for a signed document.
func ParseDocument(data []byte) (*Document, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalid, len(data), MaxSize)
	}
	var probe struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if probe.Version != FormatVersion {
		return nil, fmt.Errorf("%w %d (want %d)", ErrUnsupportedVersion, probe.Version, FormatVersion)
	}
	var d Document
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the document", ErrInvalid)
	}
	if err := d.prepare(); err != nil {
		return nil, err
	}
	return &d, nil
}

// Marshal encodes the document as the JSON that Sign signs.
func (d *Document) Marshal() ([]byte, error) { return json.Marshal(d) }

// Validate checks the document's content, without side effects. It checks
// no signature and no time.
func (d *Document) Validate() error {
	c := *d
	c.CAs, c.TSAs = slices.Clone(d.CAs), slices.Clone(d.TSAs)
	return c.prepare()
}

// prepare validates the document and, when it is consistent, builds the
// lookup index and parses the certificates.
func (d *Document) prepare() error {
	if err := d.validateBody(); err != nil {
		return err
	}
	if d.Serial == 0 {
		return fmt.Errorf("%w: serial must be at least 1", ErrInvalid)
	}
	if d.IssuedAt.IsZero() || d.ExpiresAt.IsZero() {
		return fmt.Errorf("%w: issuedAt and expiresAt are required", ErrInvalid)
	}
	if !d.ExpiresAt.After(d.IssuedAt) {
		return fmt.Errorf("%w: expiresAt %s is not after issuedAt %s", ErrInvalid, d.ExpiresAt.Format(time.RFC3339), d.IssuedAt.Format(time.RFC3339))
	}
	return nil
}

// validateBody checks everything but serial and times (a draft has none),
// and builds the index.
func (d *Document) validateBody() error {
	if d.Version != FormatVersion {
		return fmt.Errorf("%w %d (want %d)", ErrUnsupportedVersion, d.Version, FormatVersion)
	}
	if !pki.ValidPart(d.Instance) {
		return fmt.Errorf("%w: instance %q", ErrInvalid, d.Instance)
	}
	idx := &index{
		members:   map[pki.ClientID]int{},
		servers:   map[string]int{},
		byFP:      map[string][]int{},
		hosting:   map[pki.ClientID][]int{},
		subsystem: map[pki.ClientID]bool{},
	}
	for i, m := range d.Members {
		id, err := d.memberID(m.ID)
		if err != nil {
			return fmt.Errorf("%w: members[%d].id: %v", ErrInvalid, i, err)
		}
		if _, dup := idx.members[id]; dup {
			return fmt.Errorf("%w: member %s listed twice", ErrInvalid, id)
		}
		idx.members[id] = i
		for j, s := range m.Subsystems {
			if !pki.ValidPart(s) {
				return fmt.Errorf("%w: members[%d].subsystems[%d] %q", ErrInvalid, i, j, s)
			}
			sub := id
			sub.Subsystem = s
			if idx.subsystem[sub] {
				return fmt.Errorf("%w: subsystem %s listed twice", ErrInvalid, sub)
			}
			idx.subsystem[sub] = true
		}
	}
	for i, s := range d.Servers {
		owner, err := d.memberID(s.Owner)
		if err != nil {
			return fmt.Errorf("%w: securityServers[%d].owner: %v", ErrInvalid, i, err)
		}
		if _, ok := idx.members[owner]; !ok {
			return fmt.Errorf("%w: securityServers[%d].owner %s is not a member", ErrInvalid, i, owner)
		}
		if !pki.ValidPart(s.Code) {
			return fmt.Errorf("%w: securityServers[%d].code %q", ErrInvalid, i, s.Code)
		}
		if _, dup := idx.servers[s.ID()]; dup {
			return fmt.Errorf("%w: security server %s listed twice", ErrInvalid, s.ID())
		}
		if err := checkHostPort(s.Address); err != nil {
			return fmt.Errorf("%w: securityServers[%d].address: %v", ErrInvalid, i, err)
		}
		if !isFingerprint(s.TLSCertSHA256) {
			return fmt.Errorf("%w: securityServers[%d].tlsCertSha256 must be 64 lower-case hex characters", ErrInvalid, i)
		}
		idx.servers[s.ID()] = i
		idx.byFP[s.TLSCertSHA256] = append(idx.byFP[s.TLSCertSHA256], i)
		for j, sub := range s.Subsystems {
			id, err := pki.ParseSubsystemID(sub)
			if err != nil {
				return fmt.Errorf("%w: securityServers[%d].subsystems[%d]: %v", ErrInvalid, i, j, err)
			}
			if !idx.subsystem[id] {
				return fmt.Errorf("%w: securityServers[%d] hosts %s, which no member lists", ErrInvalid, i, id)
			}
			idx.hosting[id] = append(idx.hosting[id], i)
		}
	}
	for i := range d.CAs {
		c := &d.CAs[i]
		cert, err := parseOneCert(c.Certificate)
		if err != nil {
			return fmt.Errorf("%w: certificateAuthorities[%d].certificate: %v", ErrInvalid, i, err)
		}
		if !cert.IsCA {
			return fmt.Errorf("%w: certificateAuthorities[%d] is not a CA certificate", ErrInvalid, i)
		}
		for j, u := range c.OCSPURLs {
			if err := checkURL(u); err != nil {
				return fmt.Errorf("%w: certificateAuthorities[%d].ocspUrls[%d]: %v", ErrInvalid, i, j, err)
			}
		}
		c.cert = cert
	}
	for i := range d.TSAs {
		t := &d.TSAs[i]
		if err := checkURL(t.URL); err != nil {
			return fmt.Errorf("%w: timestampingAuthorities[%d].url: %v", ErrInvalid, i, err)
		}
		cert, err := parseOneCert(t.Certificate)
		if err != nil {
			return fmt.Errorf("%w: timestampingAuthorities[%d].certificate: %v", ErrInvalid, i, err)
		}
		t.cert = cert
	}
	for i, r := range d.Registries {
		if r.Name == "" {
			return fmt.Errorf("%w: registries[%d].name is empty", ErrInvalid, i)
		}
		if err := checkHostPort(r.GRPCAddress); err != nil {
			return fmt.Errorf("%w: registries[%d].grpcAddress: %v", ErrInvalid, i, err)
		}
		if err := checkURL(r.HTTPURL); err != nil {
			return fmt.Errorf("%w: registries[%d].httpUrl: %v", ErrInvalid, i, err)
		}
		if _, err := r.Verifier(); err != nil {
			return fmt.Errorf("%w: registries[%d].verifierKey: %v", ErrInvalid, i, err)
		}
	}
	if err := d.Params.validate(); err != nil {
		return err
	}
	d.idx = idx
	return nil
}

func (d *Document) memberID(s string) (pki.ClientID, error) {
	id, err := pki.ParseMemberID(s)
	if err != nil {
		return id, err
	}
	if id.Instance != d.Instance {
		return id, fmt.Errorf("%s is not in instance %s", id, d.Instance)
	}
	return id, nil
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port must be 1-65535", s)
	}
	return nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want an absolute http(s) URL", s)
	}
	return nil
}

func isFingerprint(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func parseOneCert(pemText string) (*x509.Certificate, error) {
	certs, err := pki.ParseCertificatesPEM([]byte(pemText))
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("want one certificate, got %d", len(certs))
	}
	return certs[0], nil
}

// index is built by Validate; lookups use it.
type index struct {
	members   map[pki.ClientID]int
	servers   map[string]int
	byFP      map[string][]int
	hosting   map[pki.ClientID][]int
	subsystem map[pki.ClientID]bool
}

func (d *Document) index() *index {
	if d.idx == nil {
		// A Document built by hand: index it now, or give empty lookups.
		if err := d.validateBody(); err != nil {
			return &index{}
		}
	}
	return d.idx
}

// Age is how long ago the document was issued.
func (d *Document) Age(now time.Time) time.Duration { return now.Sub(d.IssuedAt) }

// Expired reports whether the document has expired at now.
func (d *Document) Expired(now time.Time) bool { return !now.Before(d.ExpiresAt) }

// Member returns the member with identifier id (a subsystem's member is found
// by its member part).
func (d *Document) Member(id pki.ClientID) (Member, bool) {
	i, ok := d.index().members[id.MemberID()]
	if !ok {
		return Member{}, false
	}
	return d.Members[i], true
}

// HasClient reports whether id is a listed member or subsystem.
func (d *Document) HasClient(id pki.ClientID) bool {
	if id.IsSubsystem() {
		return d.index().subsystem[id]
	}
	_, ok := d.index().members[id]
	return ok
}

// ServersFor returns the security servers hosting the subsystem, in document
// order. A member identifier (no subsystem) gives the servers its member owns.
func (d *Document) ServersFor(client pki.ClientID) []Server {
	var out []Server
	if client.IsSubsystem() {
		for _, i := range d.index().hosting[client] {
			out = append(out, d.Servers[i])
		}
		return out
	}
	owner := client.String()
	for _, s := range d.Servers {
		if s.Owner == owner {
			out = append(out, s)
		}
	}
	return out
}

// Server returns the security server OWNER/CODE.
func (d *Document) Server(id string) (Server, bool) {
	i, ok := d.index().servers[id]
	if !ok {
		return Server{}, false
	}
	return d.Servers[i], true
}

// ServersByFingerprint returns the servers registered with this TLS
// certificate fingerprint (normally one).
func (d *Document) ServersByFingerprint(fp string) []Server {
	var out []Server
	for _, i := range d.index().byFP[strings.ToLower(fp)] {
		out = append(out, d.Servers[i])
	}
	return out
}

// IsServerOf reports whether fp is the TLS certificate fingerprint of a
// security server owned by member (a subsystem counts as its member).
func (d *Document) IsServerOf(member pki.ClientID, fp string) bool {
	owner := member.MemberID().String()
	for _, s := range d.ServersByFingerprint(fp) {
		if s.Owner == owner {
			return true
		}
	}
	return false
}

// ServesClient reports whether the security server presenting the TLS
// certificate with fingerprint fp may speak for client: for a subsystem, the
// server must list it among the subsystems it hosts; for a member, the server
// must be owned by that member. This is the check a provider makes on its
// TLS peer.
func (d *Document) ServesClient(client pki.ClientID, fp string) bool {
	if !client.IsSubsystem() {
		return d.IsServerOf(client, fp)
	}
	want := client.String()
	for _, s := range d.ServersByFingerprint(fp) {
		for _, sub := range s.Subsystems {
			if sub == want {
				return true
			}
		}
	}
	return false
}

// RootPool returns a pool of the trusted CA roots.
func (d *Document) RootPool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range d.CAs {
		if c.cert != nil {
			p.AddCert(c.cert)
		}
	}
	return p
}

// OCSPURLs returns the OCSP responder URLs the directory lists for the CA
// that issued cert (matched by issuer name and signature), or nil.
func (d *Document) OCSPURLs(issuer *x509.Certificate) []string {
	for _, c := range d.CAs {
		if c.cert != nil && c.cert.Equal(issuer) {
			return c.OCSPURLs
		}
	}
	return nil
}

// ListMembers returns the member identifiers, in document order.
func (d *Document) ListMembers() []pki.ClientID {
	out := make([]pki.ClientID, 0, len(d.Members))
	for _, m := range d.Members {
		if id, err := pki.ParseMemberID(m.ID); err == nil {
			out = append(out, id)
		}
	}
	return out
}
