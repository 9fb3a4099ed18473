package sandbox

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc"

	"github.com/passerelle/passerelle/hashregistry"
	"github.com/passerelle/passerelle/internal/daemon"
	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ca"
	"github.com/passerelle/passerelle/pki/directory"
	"github.com/passerelle/passerelle/pki/ocsp"
	"github.com/passerelle/passerelle/pki/verify"
	"github.com/passerelle/passerelle/timestamp"
)

// The sandbox's federation.
const (
	Instance       = "SANDBOX"
	ProviderMember = "SANDBOX/GOV/PROVIDER"
	ConsumerMember = "SANDBOX/GOV/CONSUMER"
	ClientID       = "SANDBOX/GOV/CONSUMER/client"
	RESTService    = "SANDBOX/GOV/PROVIDER/services/hello"
	SOAPService    = "SANDBOX/GOV/PROVIDER/services/getRandom"
	RegistryOrigin = "sandbox.passerelle.local/registry"
	ServerCode     = "ss1"
	operator       = "sandbox"
)

// RegistryOCSPMaxAge is how long the registry trusts a member's OCSP answer
// before asking again (as `registry serve --ocsp-max-age`).
const RegistryOCSPMaxAge = 5 * time.Minute

// DefaultPortBase is the port base of `passerelle sandbox`: the consumer side
// is then http://127.0.0.1:8080, as on an X-Road security server.
const DefaultPortBase = 8080

// Port offsets from Config.PortBase (see docs/sandbox.md).
const (
	OffsetConsumer         = 0  // CONSUMER's server, consumer side (HTTP)
	OffsetConsumerAdmin    = 1  // CONSUMER's server, admin API, /healthz, /metrics
	OffsetConsumerProvider = 2  // CONSUMER's server, provider side (mTLS)
	OffsetProviderProvider = 3  // PROVIDER's server, provider side (mTLS)
	OffsetProviderAdmin    = 4  // PROVIDER's server, admin API
	OffsetProviderConsumer = 5  // PROVIDER's server, consumer side (HTTP)
	OffsetCA               = 10 // OCSP responder (/ocsp) and enrollment API
	OffsetTSA              = 11 // RFC 3161 TSA
	OffsetRegistryHTTP     = 12 // registry tiles API
	OffsetRegistryGRPC     = 13 // registry gRPC (mTLS)
	OffsetDirectory        = 14 // signed directory (/directory)
	OffsetHello            = 20 // REST sample service
	OffsetGetRandom        = 21 // SOAP sample service
)

// InfoFile is the file in Config.Dir that describes a running sandbox.
const InfoFile = "sandbox.json"

// Info is the content of DIR/sandbox.json: where everything is. A REST call
// is {ConsumerURL}/r1/{RESTService}/anything?q=1 with header X-Road-Client:
// {ClientID}; a SOAP call POSTs an envelope to {ConsumerURL}/.
type Info struct {
	Version        int    `json:"version"`
	ConsumerURL    string `json:"consumer_url"`
	ClientID       string `json:"client_id"`
	RESTService    string `json:"rest_service"`
	SOAPService    string `json:"soap_service"`
	AdminURL       string `json:"admin_url"`
	AdminTokenFile string `json:"admin_token_file"`
	RegistryURL    string `json:"registry_url"`
	RegistryGRPC   string `json:"registry_grpc"`
	RegistryVKey   string `json:"registry_vkey"`
	TrustDir       string `json:"trust_dir"`
	TSAURL         string `json:"tsa_url"`
	OCSPURL        string `json:"ocsp_url"`
	DirectoryURL   string `json:"directory_url"`
}

// LoadInfo reads a sandbox.json.
func LoadInfo(path string) (*Info, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var i Info
	if err := json.Unmarshal(data, &i); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if i.Version != 1 {
		return nil, fmt.Errorf("%s: unsupported version %d", path, i.Version)
	}
	return &i, nil
}

// Config says where and how to start a sandbox.
type Config struct {
	// Dir receives everything the sandbox generates (created 0700). It must
	// not exist or be empty.
	Dir string
	// PortBase 0 lets the OS choose every port; otherwise ports are
	// PortBase + the Offset* constants.
	PortBase int
	// Log receives the logs of every part (nil: discard).
	Log *slog.Logger
}

// ErrDirNotEmpty reports a Config.Dir that already holds something.
var ErrDirNotEmpty = errors.New("sandbox: directory is not empty")

// Institution is one of the two members, its keys and its security server.
type Institution struct {
	Member     pki.ClientID // SANDBOX/GOV/PROVIDER or SANDBOX/GOV/CONSUMER
	Subsystem  pki.ClientID // …/services or …/client
	Dir        string       // DIR/provider or DIR/consumer
	Keys       ca.KeyDir    // auth.key, auth.pem, sign.key, sign.pem
	ConfigPath string       // the server's YAML, DIR/<institution>/server.yaml
	DataDir    string
	AddrFile   string
	AuthChain  []*x509.Certificate // leaf, then the CA
	SignChain  []*x509.Certificate
	// ProviderAddr is the provider-side address the directory lists.
	ProviderAddr string
	// Addrs are the bound listeners of the running server (consumer,
	// provider, admin), as its address file says.
	Addrs map[string]string

	relay       *Service     // provider-side relay (port base 0)
	relayTarget atomic.Value // string: where the relay forwards
	run         *serverRun
}

// Sandbox is a running federation on loopback. Its fields are read-only.
type Sandbox struct {
	Dir       string
	TrustDir  string
	InfoPath  string
	Info      Info
	CA        *ca.CA
	TSACert   *x509.Certificate
	Registry  *hashregistry.Log
	RegistryV note.Verifier

	// The network services. Stop and Start them to simulate outages.
	CAService    *Service // OCSP at /ocsp, enrollment API at /api/v1/
	TSA          *Service
	RegistryHTTP *Service
	RegistryGRPC *Service
	Directory    *Service // GET /directory
	Hello        *Service
	GetRandom    *Service

	Provider *Institution
	Consumer *Institution

	DirectoryDir string // the operator's folder: draft.json, directory.jws, signer.key, signer.pem

	log      *slog.Logger
	portBase int
	vkey     string        // the registry's verifier key
	dirKey   crypto.Signer // the directory signer's key
	dirChain []*x509.Certificate
	mu       sync.Mutex
	closers  []func() error
}

// listen opens a listener at PortBase+offset, or on a port the OS chooses.
func (s *Sandbox) listen(ctx context.Context, name string, offset int) (net.Listener, error) {
	addr := "127.0.0.1:0"
	if s.portBase != 0 {
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.portBase+offset))
	}
	ln, err := daemon.Listen(ctx, s.log, name, addr)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %s: %w", name, err)
	}
	return ln, nil
}

func (s *Sandbox) onClose(f func() error) { s.closers = append(s.closers, f) }

func (s *Sandbox) addService(name string, ln net.Listener, mk func() server) *Service {
	svc := newService(name, s.log, ln, mk)
	s.onClose(func() error { svc.Stop(); return nil })
	return svc
}

func (s *Sandbox) httpService(name string, ln net.Listener, h http.Handler) *Service {
	return s.addService(name, ln, func() server { return newHTTPServer(h, s.log) })
}

// Start generates a federation under cfg.Dir and starts it: a CA with its
// OCSP responder, a TSA, a hash registry, a signed directory, the sample
// services and the two institutions' security servers, all on 127.0.0.1.
// It returns once every part answers and DIR/sandbox.json is written. ctx
// bounds the start only; the sandbox runs until Close.
func Start(ctx context.Context, cfg Config) (sb *Sandbox, err error) {
	if cfg.Dir == "" {
		return nil, errors.New("sandbox: Config.Dir is required")
	}
	if cfg.PortBase < 0 || cfg.PortBase > 65535-OffsetGetRandom {
		return nil, fmt.Errorf("sandbox: port base %d out of range", cfg.PortBase)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrDirNotEmpty, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sandbox{Dir: dir, TrustDir: filepath.Join(dir, "trust"), InfoPath: filepath.Join(dir, InfoFile),
		DirectoryDir: filepath.Join(dir, "directory"), log: log, portBase: cfg.PortBase}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := s.startCentral(ctx); err != nil {
		return nil, err
	}
	if err := s.startSamples(ctx); err != nil {
		return nil, err
	}
	s.Provider = s.newInstitution("provider", ProviderMember, "services")
	s.Consumer = s.newInstitution("consumer", ConsumerMember, "client")
	for _, in := range []*Institution{s.Provider, s.Consumer} {
		if err := s.issueMember(ctx, in); err != nil {
			return nil, err
		}
	}
	if err := s.prepareProviderAddrs(ctx); err != nil {
		return nil, err
	}
	if err := s.initDirectory(ctx); err != nil {
		return nil, err
	}
	if err := s.writeTrust(); err != nil {
		return nil, err
	}
	if err := s.startServers(ctx); err != nil {
		return nil, err
	}
	if err := s.writeInfo(); err != nil {
		return nil, err
	}
	log.Info("sandbox running", "dir", dir, "consumerUrl", s.Info.ConsumerURL)
	return s, nil
}

// Close stops everything, security servers first.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	closers := s.closers
	s.closers = nil
	s.mu.Unlock()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		errs = append(errs, closers[i]())
	}
	return errors.Join(errs...)
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	return reg
}

// startCentral starts the CA (OCSP), the TSA and the registry.
func (s *Sandbox) startCentral(ctx context.Context) error {
	// CA first: its certificates name the OCSP URL, so its listener comes first.
	caLn, err := s.listen(ctx, "ca", OffsetCA)
	if err != nil {
		return err
	}
	ocspURL := "http://" + caLn.Addr().String() + "/ocsp"
	c, err := ca.Init(ctx, ca.InitConfig{Dir: filepath.Join(s.Dir, "ca"), Instance: Instance,
		Name: "Passerelle Sandbox Root CA", OCSPURL: ocspURL, Operator: operator})
	if err != nil {
		caLn.Close()
		return err
	}
	s.CA = c
	s.onClose(c.Close)
	responder, err := ocsp.NewResponder(ocsp.ResponderConfig{Issuer: c.Certificate(), Signer: c.Signer(), Source: c, Log: s.log})
	if err != nil {
		caLn.Close()
		return err
	}
	api, err := ca.NewAPI(ca.APIConfig{CA: c, Log: s.log})
	if err != nil {
		caLn.Close()
		return err
	}
	mux := daemon.NewMux(newRegistry(), nil)
	mux.Handle("/api/v1/", api)
	s.CAService = s.httpService("ca", caLn, responder.Route(mux))

	// TSA, issued by the CA.
	tsaLn, err := s.listen(ctx, "tsa", OffsetTSA)
	if err != nil {
		return err
	}
	tsaDir := filepath.Join(s.Dir, "tsa")
	if s.TSACert, err = timestamp.InitDir(ctx, timestamp.InitConfig{Dir: tsaDir, Issue: func(ctx context.Context, csr []byte) ([]*x509.Certificate, error) {
		cert, err := c.Sign(ctx, ca.SignRequest{CSR: csr, Usage: pki.UsageTSA, Operator: operator, CommonName: "Passerelle Sandbox TSA"})
		if err != nil {
			return nil, err
		}
		return []*x509.Certificate{cert, c.Certificate()}, nil
	}}); err != nil {
		tsaLn.Close()
		return err
	}
	tsa, ledger, err := timestamp.OpenDir(tsaDir, s.log, nil)
	if err != nil {
		tsaLn.Close()
		return err
	}
	s.onClose(ledger.Close)
	tmux := daemon.NewMux(newRegistry(), ledger.Check)
	tmux.Handle("/", tsa)
	s.TSA = s.httpService("tsa", tsaLn, tmux)

	return s.startRegistry(ctx)
}

func (s *Sandbox) startRegistry(ctx context.Context) error {
	rdir := filepath.Join(s.Dir, "registry")
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return err
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, RegistryOrigin)
	if err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(filepath.Join(rdir, "registry.key"), []byte(skey+"\n"), 0o600); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(filepath.Join(rdir, "registry.vkey"), []byte(vkey+"\n"), 0o644); err != nil {
		return err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return err
	}
	s.vkey = vkey
	if s.RegistryV, err = note.NewVerifier(vkey); err != nil {
		return err
	}
	chain, key, err := s.issueService(ctx, rdir, "tls", pki.UsageRegistry, "Passerelle Sandbox Registry", "127.0.0.1", "localhost")
	if err != nil {
		return err
	}
	l, err := hashregistry.Open(ctx, hashregistry.Config{Path: filepath.Join(rdir, "registry.db"), Signer: signer, Verifier: s.RegistryV})
	if err != nil {
		return err
	}
	s.Registry = l
	s.onClose(l.Close)
	// Appends need a member certificate that is not revoked, as with
	// `registry serve` (OCSP responses cached up to RegistryOCSPMaxAge).
	members, err := verify.New(verify.Config{Roots: s.Roots(), OCSPMaxAge: RegistryOCSPMaxAge,
		FetchOCSP: ocsp.NewClient(ocsp.ClientConfig{MaxAge: RegistryOCSPMaxAge})})
	if err != nil {
		return err
	}
	srv, err := hashregistry.NewServer(hashregistry.ServerConfig{Log: l, Logger: s.log, CheckChain: hashregistry.CheckRevocation(members)})
	if err != nil {
		return err
	}
	gln, err := s.listen(ctx, "registry-grpc", OffsetRegistryGRPC)
	if err != nil {
		return err
	}
	hln, err := s.listen(ctx, "registry-http", OffsetRegistryHTTP)
	if err != nil {
		gln.Close()
		return err
	}
	tc := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	tlsConf := hashregistry.ServerTLSConfig(tc, s.Roots())
	s.RegistryGRPC = s.addService("registry-grpc", gln, func() server { return &grpcServer{srv: srv.NewGRPCServer(tlsConf)} })
	mux := daemon.NewMux(newRegistry(), nil)
	srv.Handle(mux)
	s.RegistryHTTP = s.httpService("registry-http", hln, mux)
	return nil
}

// grpcServer serves the registry's gRPC service.
type grpcServer struct{ srv *grpc.Server }

func (g *grpcServer) serve(ln net.Listener) error { return g.srv.Serve(ln) }
func (g *grpcServer) stop()                       { g.srv.Stop() }

// issueService makes a key in dir/NAME.key and has the CA issue it for usage
// (no member), the chain going to dir/NAME.pem.
func (s *Sandbox) issueService(ctx context.Context, dir, name string, usage pki.Usage, cn string, hosts ...string) ([]*x509.Certificate, crypto.Signer, error) {
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		return nil, nil, err
	}
	if err := pki.WritePrivateKey(filepath.Join(dir, name+".key"), key); err != nil {
		return nil, nil, err
	}
	csr, err := pki.CreateCSR(key, pki.ClientID{}, usage)
	if err != nil {
		return nil, nil, err
	}
	cert, err := s.CA.Sign(ctx, ca.SignRequest{CSR: csr, Usage: usage, Operator: operator, Hosts: hosts, CommonName: cn})
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: issue %s certificate: %w", usage, err)
	}
	chain := []*x509.Certificate{cert, s.CA.Certificate()}
	if err := pki.WriteFileAtomic(filepath.Join(dir, name+".pem"), pki.EncodeCertificatesPEM(chain...), 0o644); err != nil {
		return nil, nil, err
	}
	return chain, key, nil
}

func (s *Sandbox) startSamples(ctx context.Context) error {
	ln, err := s.listen(ctx, "hello", OffsetHello)
	if err != nil {
		return err
	}
	s.Hello = s.httpService("hello", ln, HelloHandler())
	if ln, err = s.listen(ctx, "getRandom", OffsetGetRandom); err != nil {
		return err
	}
	s.GetRandom = s.httpService("getRandom", ln, GetRandomHandler())
	return nil
}

func (s *Sandbox) newInstitution(name, member, subsystem string) *Institution {
	m, _ := pki.ParseMemberID(member)
	sub := m
	sub.Subsystem = subsystem
	d := filepath.Join(s.Dir, name)
	return &Institution{Member: m, Subsystem: sub, Dir: d, Keys: ca.KeyDir(filepath.Join(d, "keys")),
		ConfigPath: filepath.Join(d, "server.yaml"), DataDir: filepath.Join(d, "data"), AddrFile: filepath.Join(d, "addrs.json")}
}

// issueMember makes the institution's auth and sign keys and has the CA
// issue them, bound to the member; the auth certificate names 127.0.0.1 and
// localhost.
func (s *Sandbox) issueMember(ctx context.Context, in *Institution) error {
	for _, u := range []pki.Usage{pki.UsageAuth, pki.UsageSign} {
		csr, err := in.Keys.Generate(in.Member, u, pki.ECDSAP256)
		if err != nil {
			return err
		}
		req := ca.SignRequest{CSR: csr, Member: in.Member, Usage: u, Operator: operator}
		if u == pki.UsageAuth {
			req.Hosts = []string{"127.0.0.1", "localhost"}
		}
		cert, err := s.CA.Sign(ctx, req)
		if err != nil {
			return fmt.Errorf("sandbox: issue %s %s certificate: %w", in.Member, u, err)
		}
		chain := []*x509.Certificate{cert, s.CA.Certificate()}
		if err := pki.WriteFileAtomic(in.Keys.CertPath(u), pki.EncodeCertificatesPEM(chain...), 0o644); err != nil {
			return err
		}
		if u == pki.UsageAuth {
			in.AuthChain = chain
		} else {
			in.SignChain = chain
		}
	}
	return nil
}

// prepareProviderAddrs fixes the provider-side address each server gets in
// the directory: PortBase+offset, or (port base 0) a relay listening now
// that forwards to wherever the server binds once it runs.
func (s *Sandbox) prepareProviderAddrs(ctx context.Context) error {
	for _, x := range []struct {
		in     *Institution
		offset int
	}{{s.Provider, OffsetProviderProvider}, {s.Consumer, OffsetConsumerProvider}} {
		if s.portBase != 0 {
			x.in.ProviderAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.portBase+x.offset))
			continue
		}
		ln, err := s.listen(ctx, x.in.Member.Member+"-provider-relay", 0)
		if err != nil {
			return err
		}
		in := x.in
		x.in.relay = s.addService(in.Member.Member+"-provider", ln, func() server {
			return newRelay(func() string { t, _ := in.relayTarget.Load().(string); return t })
		})
		x.in.ProviderAddr = ln.Addr().String()
	}
	return nil
}

// initDirectory writes the directory operator's folder (signing key issued
// by the CA, draft listing everything), signs it and serves it.
func (s *Sandbox) initDirectory(ctx context.Context) error {
	ln, err := s.listen(ctx, "directory", OffsetDirectory)
	if err != nil {
		return err
	}
	draft, err := directory.NewDraft(Instance, 30*24*time.Hour)
	if err != nil {
		ln.Close()
		return err
	}
	draft.Params.PollIntervalSeconds = 2 // re-signs reach the servers quickly
	for _, in := range []*Institution{s.Provider, s.Consumer} {
		if err := draft.AddMember(in.Member, in.Member.Member, in.Subsystem.Subsystem); err != nil {
			ln.Close()
			return err
		}
		if err := draft.AddServer(in.Member, ServerCode, in.ProviderAddr, in.AuthChain[0], in.Subsystem.Subsystem); err != nil {
			ln.Close()
			return err
		}
	}
	ocspURL := s.CAService.URL() + "/ocsp"
	if err := draft.AddCA("Passerelle Sandbox Root CA", s.CA.Certificate(), ocspURL); err != nil {
		ln.Close()
		return err
	}
	if err := draft.AddTSA("sandbox", s.TSA.URL()+"/", s.TSACert); err != nil {
		ln.Close()
		return err
	}
	if err := draft.AddRegistry(directory.Registry{Name: "sandbox", GRPCAddress: s.RegistryGRPC.Addr(),
		HTTPURL: s.RegistryHTTP.URL() + "/", VerifierKey: s.vkey}); err != nil {
		ln.Close()
		return err
	}
	if err := directory.InitDir(s.DirectoryDir, draft); err != nil {
		ln.Close()
		return err
	}
	chain, key, err := s.issueService(ctx, s.DirectoryDir, "signer", pki.UsageDirectory, "Passerelle Sandbox Directory")
	if err != nil {
		ln.Close()
		return err
	}
	s.dirKey, s.dirChain = key, chain
	if _, err := directory.SignDir(s.DirectoryDir, key, chain, time.Now(), 0); err != nil {
		ln.Close()
		return err
	}
	mux := daemon.NewMux(newRegistry(), nil)
	mux.Handle("GET /directory", directory.NewHandler(s.DirectoryDir, s.log))
	s.Directory = s.httpService("directory", ln, mux)
	return nil
}

// writeTrust writes the trust directory: ca.pem, directory.pem (the pinned
// directory signer), registry.vkey and tsa.pem.
func (s *Sandbox) writeTrust() error {
	if err := os.MkdirAll(s.TrustDir, 0o755); err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		directory.TrustCAFile:     pki.EncodeCertificatesPEM(s.CA.Certificate()),
		directory.TrustSignerFile: pki.EncodeCertificatesPEM(s.dirChain[0]),
		"registry.vkey":           []byte(s.vkey + "\n"),
		"tsa.pem":                 pki.EncodeCertificatesPEM(s.TSACert),
	} {
		if err := pki.WriteFileAtomic(filepath.Join(s.TrustDir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeInfo fills s.Info and writes DIR/sandbox.json.
func (s *Sandbox) writeInfo() error {
	s.Info = Info{
		Version:        1,
		ConsumerURL:    "http://" + s.Consumer.Addrs["consumer"],
		ClientID:       ClientID,
		RESTService:    RESTService,
		SOAPService:    SOAPService,
		AdminURL:       "http://" + s.Consumer.Addrs["admin"],
		AdminTokenFile: s.Consumer.AdminTokenFile(),
		RegistryURL:    s.RegistryHTTP.URL(),
		RegistryGRPC:   s.RegistryGRPC.Addr(),
		RegistryVKey:   filepath.Join(s.TrustDir, "registry.vkey"),
		TrustDir:       s.TrustDir,
		TSAURL:         s.TSA.URL(),
		OCSPURL:        s.CAService.URL() + "/ocsp",
		DirectoryURL:   s.Directory.URL() + "/directory",
	}
	if err := pki.WriteFileAtomic(filepath.Join(s.Dir, SampleSOAPFile), GetRandomRequest("sandbox-sample-1"), 0o644); err != nil {
		return err
	}
	data, err := json.MarshalIndent(s.Info, "", "  ")
	if err != nil {
		return err
	}
	return pki.WriteFileAtomic(s.InfoPath, append(data, '\n'), 0o644)
}

// AdminTokenFile is the file (0600) holding the bearer token of the
// institution server's admin API.
func (in *Institution) AdminTokenFile() string { return filepath.Join(in.Dir, "admin.token") }

func writeAdminToken(path string) error {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	return pki.WriteFileAtomic(path, []byte(hex.EncodeToString(b)+"\n"), 0o600)
}

// SignDirectory applies edit to the directory draft (nil: no change) and
// signs a new directory with a higher serial, served at once; the servers
// pick it up at the sandbox's poll interval (2 s).
func (s *Sandbox) SignDirectory(edit func(*directory.Draft) error) (*directory.Document, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if edit != nil {
		d, err := directory.LoadDraft(s.DirectoryDir)
		if err != nil {
			return nil, err
		}
		if err := edit(d); err != nil {
			return nil, err
		}
		if err := d.Save(s.DirectoryDir); err != nil {
			return nil, err
		}
	}
	return directory.SignDir(s.DirectoryDir, s.dirKey, s.dirChain, time.Now(), 0)
}

// Revoke revokes cert at the CA; the OCSP responder answers revoked at once.
func (s *Sandbox) Revoke(ctx context.Context, cert *x509.Certificate, reason ca.Reason) error {
	return s.CA.Revoke(ctx, cert.SerialNumber, reason, operator)
}

// Roots is a pool holding the sandbox CA's root.
func (s *Sandbox) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.CA.Certificate())
	return p
}
