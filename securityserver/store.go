package securityserver

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/pki"
)

// The configuration store: the clients and services in effect, read on
// every request from an immutable snapshot (an atomic pointer, so readers
// never lock), replaced as a whole when the admin API changes something.
//
// Precedence: the YAML configuration is the base; the admin API's changes
// are an overlay kept in DATADIR/admin/state.json, per client or service
// identifier. An identifier the overlay names takes the overlay's version
// (or is removed, when the overlay says so), whatever the YAML says; every
// other identifier comes from the YAML as it is at start-up. Changes are
// appended to DATADIR/admin/audit.jsonl before they take effect.

// stateVersion is the format of state.json.
const stateVersion = 1

// overlay is what the admin API changed. A nil entry removes the
// identifier the YAML declares.
type overlay struct {
	Version  int                       `json:"version"`
	Clients  map[string]*ClientConfig  `json:"clients"`
	Services map[string]*ServiceConfig `json:"services"`
}

// clientEntry is a client subsystem in effect.
type clientEntry struct {
	cfg  ClientConfig
	auth authenticator
}

// serviceEntry is a service in effect with what was prepared from it.
type serviceEntry struct {
	cfg       *ServiceConfig
	endpoints []endpoint // from its OpenAPI file, or {*, /**}
	kind      string     // REST or OPENAPI (listMethods' service_type)
	openAPI   []byte     // the OpenAPI file, as read
	backend   *http.Client
}

// snapshot is one immutable state of the clients and services.
type snapshot struct {
	clients    map[pki.ClientID]*clientEntry
	services   map[string]*serviceEntry
	clientIDs  []string // sorted
	serviceIDs []string // sorted
}

// configStore holds the snapshot in effect. Reads are lock-free; changes
// are serialised by mu. Safe for concurrent use.
type configStore struct {
	owner   pki.ClientID
	resolve func(string) string // config-relative paths
	log     *slog.Logger
	dir     string // DATADIR/admin

	baseClients  []ClientConfig
	baseServices []ServiceConfig
	defaultHTTP  *http.Client

	cur atomic.Pointer[snapshot]

	mu       sync.Mutex // serialises changes; guards ov, audit, jwks, backends
	ov       overlay
	audit    *auditLog
	jwks     map[string]*jwksCache
	backends map[string]*http.Client // by TLS settings
	changes  *prometheus.CounterVec  // by action; nil before metrics exist
}

// ErrNotFound reports an unknown client, service or grant in the admin API.
var ErrNotFound = errors.New("not found")

// ErrExists reports an admin API creation of an identifier already in use.
var ErrExists = errors.New("already exists")

func newConfigStore(cfg *Config, owner pki.ClientID, log *slog.Logger, defaultHTTP *http.Client) (*configStore, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st := &configStore{
		owner: owner, resolve: cfg.path, log: log, dir: filepath.Join(cfg.DataDir, "admin"),
		baseClients: cfg.Clients, baseServices: cfg.Services, defaultHTTP: defaultHTTP,
		jwks: map[string]*jwksCache{}, backends: map[string]*http.Client{},
		ov: overlay{Version: stateVersion, Clients: map[string]*ClientConfig{}, Services: map[string]*ServiceConfig{}},
	}
	if err := os.MkdirAll(st.dir, 0o700); err != nil {
		return nil, fmt.Errorf("dataDir: %w", err)
	}
	data, err := os.ReadFile(st.statePath())
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		var ov overlay
		if err := json.Unmarshal(data, &ov); err != nil || ov.Version != stateVersion {
			return nil, fmt.Errorf("%s: not a version %d admin state (%v)", st.statePath(), stateVersion, err)
		}
		if ov.Clients == nil {
			ov.Clients = map[string]*ClientConfig{}
		}
		if ov.Services == nil {
			ov.Services = map[string]*ServiceConfig{}
		}
		st.ov = ov
	}
	snap, err := st.build(st.ov)
	if err != nil {
		return nil, fmt.Errorf("%s over the YAML configuration: %w", st.statePath(), err)
	}
	if st.audit, err = openAuditLog(filepath.Join(st.dir, "audit.jsonl")); err != nil {
		return nil, err
	}
	st.cur.Store(snap)
	return st, nil
}

func (st *configStore) statePath() string { return filepath.Join(st.dir, "state.json") }

// load returns the snapshot in effect.
func (st *configStore) load() *snapshot { return st.cur.Load() }

// service returns the service in effect with identifier id (nil: none).
// The value must not be modified.
func (st *configStore) service(id string) *ServiceConfig {
	if e := st.load().services[id]; e != nil {
		return e.cfg
	}
	return nil
}

// services lists the services in effect, sorted by identifier.
func (st *configStore) services() []*ServiceConfig {
	snap := st.load()
	out := make([]*ServiceConfig, 0, len(snap.serviceIDs))
	for _, id := range snap.serviceIDs {
		out = append(out, snap.services[id].cfg)
	}
	return out
}

// effective merges the YAML with an overlay: copies, safe to modify.
func (st *configStore) effective(ov overlay) ([]ClientConfig, []ServiceConfig) {
	var cs []ClientConfig
	seen := map[string]bool{}
	for _, c := range st.baseClients {
		seen[c.ID] = true
		if o, ok := ov.Clients[c.ID]; ok {
			if o != nil {
				cs = append(cs, cloneClient(*o))
			}
			continue
		}
		cs = append(cs, cloneClient(c))
	}
	for id, o := range ov.Clients {
		if !seen[id] && o != nil {
			cs = append(cs, cloneClient(*o))
		}
	}
	var ss []ServiceConfig
	seen = map[string]bool{}
	for _, s := range st.baseServices {
		seen[s.ID] = true
		if o, ok := ov.Services[s.ID]; ok {
			if o != nil {
				ss = append(ss, cloneService(*o))
			}
			continue
		}
		ss = append(ss, cloneService(s))
	}
	for id, o := range ov.Services {
		if !seen[id] && o != nil {
			ss = append(ss, cloneService(*o))
		}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].ID < cs[j].ID })
	sort.Slice(ss, func(i, j int) bool { return ss[i].ID < ss[j].ID })
	return cs, ss
}

func cloneClient(c ClientConfig) ClientConfig {
	c.Auth.CertSHA256 = slices.Clone(c.Auth.CertSHA256)
	if c.Auth.JWT != nil {
		j := *c.Auth.JWT
		c.Auth.JWT = &j
	}
	return c
}

func cloneService(s ServiceConfig) ServiceConfig {
	s.Allow = slices.Clone(s.Allow)
	s.Rules = slices.Clone(s.Rules)
	for i := range s.Rules {
		s.Rules[i].Methods = slices.Clone(s.Rules[i].Methods)
		s.Rules[i].Paths = slices.Clone(s.Rules[i].Paths)
	}
	if s.TLS != nil {
		t := *s.TLS
		s.TLS = &t
	}
	return s
}

// build validates the configuration an overlay gives and prepares its
// snapshot: authenticators, backend clients, OpenAPI endpoints. Call with
// mu held (or before the store is shared).
func (st *configStore) build(ov overlay) (*snapshot, error) {
	cs, ss := st.effective(ov)
	snap := &snapshot{clients: map[pki.ClientID]*clientEntry{}, services: map[string]*serviceEntry{}}
	for i := range cs {
		c := &cs[i]
		c.setDefaults()
		if err := c.validate(st.owner); err != nil {
			return nil, fmt.Errorf("client %s%w", c.ID, err)
		}
		id, _ := pki.ParseSubsystemID(c.ID)
		a, err := newAuthenticator(c, st.resolve, st.jwksFor)
		if err != nil {
			return nil, fmt.Errorf("client %s: %w", c.ID, err)
		}
		snap.clients[id] = &clientEntry{cfg: *c, auth: a}
		snap.clientIDs = append(snap.clientIDs, c.ID)
	}
	for i := range ss {
		s := &ss[i]
		s.setDefaults()
		if err := s.validate(st.owner); err != nil {
			return nil, fmt.Errorf("service %s%w", s.ID, err)
		}
		e := &serviceEntry{cfg: s, endpoints: []endpoint{{anyMethod, "/" + anyRemainder}}, kind: "REST"}
		if s.OpenAPI != "" {
			data, err := os.ReadFile(st.resolve(s.OpenAPI))
			if err != nil {
				return nil, fmt.Errorf("service %s: openapi: %w", s.ID, err)
			}
			eps, err := openAPIEndpoints(data)
			if err != nil {
				return nil, fmt.Errorf("service %s: openapi: %w", s.ID, err)
			}
			e.openAPI, e.endpoints, e.kind = data, eps, "OPENAPI"
		}
		b, err := st.backendClient(s.TLS)
		if err != nil {
			return nil, fmt.Errorf("service %s: tls: %w", s.ID, err)
		}
		e.backend = b
		snap.services[s.ID] = e
		snap.serviceIDs = append(snap.serviceIDs, s.ID)
	}
	return snap, nil
}

// jwksFor shares one key-set cache per JWKS URL across snapshots.
func (st *configStore) jwksFor(j JWTAuth) *jwksCache {
	c := st.jwks[j.JWKSURL]
	if c == nil {
		c = newJWKSCache(j.JWKSURL, time.Duration(j.Refresh))
		st.jwks[j.JWKSURL] = c
	}
	return c
}

// backendClient returns the HTTP client for a backend's TLS settings: the
// server's default one without settings, else one per distinct settings
// (CA bundle, client certificate), kept across snapshots so that its
// connections are reused. Files are read again when settings change.
func (st *configStore) backendClient(t *BackendTLS) (*http.Client, error) {
	if t == nil || *t == (BackendTLS{}) {
		return st.defaultHTTP, nil
	}
	k, _ := json.Marshal(t)
	if c := st.backends[string(k)]; c != nil {
		return c, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CABundle != "" {
		certs, err := pki.LoadCertificates(st.resolve(t.CABundle))
		if err != nil {
			return nil, fmt.Errorf("caBundle: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		for _, c := range certs {
			conf.RootCAs.AddCert(c)
		}
	}
	if t.ClientCert != "" {
		key, err := pki.LoadPrivateKey(st.resolve(t.ClientKey))
		if err != nil {
			return nil, fmt.Errorf("clientKey: %w", err)
		}
		chain, err := pki.LoadCertificates(st.resolve(t.ClientCert))
		if err != nil {
			return nil, fmt.Errorf("clientCert: %w", err)
		}
		if !publicKeysEqual(key.Public(), chain[0].PublicKey) {
			return nil, errors.New("clientCert does not match clientKey")
		}
		c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
		for _, x := range chain {
			c.Certificate = append(c.Certificate, x.Raw)
		}
		conf.Certificates = []tls.Certificate{c}
	}
	c := &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     conf,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	st.backends[string(k)] = c
	return c, nil
}

// change applies edit to a copy of the overlay, builds the result (which
// validates it), appends the audit record, persists the overlay and then
// makes it the snapshot in effect. Nothing changes when any step fails.
func (st *configStore) change(rec AuditRecord, edit func(ov *overlay, clients []ClientConfig, services []ServiceConfig) error) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	ov := overlay{Version: stateVersion, Clients: map[string]*ClientConfig{}, Services: map[string]*ServiceConfig{}}
	for k, v := range st.ov.Clients {
		ov.Clients[k] = v
	}
	for k, v := range st.ov.Services {
		ov.Services[k] = v
	}
	cs, ss := st.effective(st.ov)
	if err := edit(&ov, cs, ss); err != nil {
		return err
	}
	snap, err := st.build(ov)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	data, err := json.MarshalIndent(ov, "", "  ")
	if err != nil {
		return err
	}
	if err := st.audit.append(rec); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if err := pki.WriteFileAtomic(st.statePath(), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("admin state: %w", err)
	}
	st.ov = ov
	st.cur.Store(snap)
	if st.changes != nil {
		st.changes.WithLabelValues(rec.Action).Inc()
	}
	st.log.Info("configuration changed", "actor", rec.Actor, "action", rec.Action, "target", rec.Target)
	return nil
}

// AuditRecord is one change made through the admin API: who, when, what.
type AuditRecord struct {
	Seq    int64     `json:"seq"`
	Time   time.Time `json:"time"`   // UTC
	Actor  string    `json:"actor"`  // the admin token's name ("admin")
	Remote string    `json:"remote"` // the admin client's address
	Action string    `json:"action"` // e.g. addClient, updateService, grantAccess
	Target string    `json:"target"` // the client or service identifier
	// Value is the client, service or grant as the change left it (null
	// for a removal). It never holds a secret: token files are named, not read.
	Value any `json:"value"`
}

// auditLog is an append-only file of JSON lines, synced on every append.
type auditLog struct {
	path string
	f    *os.File
	seq  int64
}

func openAuditLog(path string) (*auditLog, error) {
	recs, err := readAuditFile(path)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	a := &auditLog{path: path, f: f}
	if n := len(recs); n > 0 {
		a.seq = recs[n-1].Seq
	}
	return a, nil
}

func (a *auditLog) append(rec AuditRecord) error {
	rec.Seq = a.seq + 1
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := a.f.Write(append(line, '\n')); err != nil {
		return err
	}
	if err := a.f.Sync(); err != nil {
		return err
	}
	a.seq = rec.Seq
	return nil
}

func (a *auditLog) close() error { return a.f.Close() }

// readAuditFile reads every record; a torn last line (a crash mid-append)
// is ignored.
func readAuditFile(path string) ([]AuditRecord, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []AuditRecord
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var r AuditRecord
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			out = append(out, r)
		}
	}
	return out, sc.Err()
}

// auditRecords returns the audit log's records, oldest first.
func (st *configStore) auditRecords() ([]AuditRecord, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return readAuditFile(st.audit.path)
}

func (st *configStore) close() error {
	if st.audit == nil {
		return nil
	}
	return st.audit.close()
}

// backendFor is the HTTP client that calls svc's backend: with its TLS
// settings when it has some, else the server's default.
func (s *Server) backendFor(svc *ServiceConfig) *http.Client {
	if svc != nil && svc.TLS != nil {
		if e := s.store.load().services[svc.ID]; e != nil && e.backend != nil {
			return e.backend
		}
		s.store.mu.Lock()
		c, err := s.store.backendClient(svc.TLS)
		s.store.mu.Unlock()
		if err == nil {
			return c
		}
	}
	return s.toBackend
}
