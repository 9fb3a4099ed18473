package securityserver

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sync/errgroup"

	"github.com/passerelle/passerelle/hashregistry"
	"github.com/passerelle/passerelle/hashregistry/client"
	"github.com/passerelle/passerelle/internal/daemon"
	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/directory"
	"github.com/passerelle/passerelle/pki/ocsp"
	"github.com/passerelle/passerelle/pki/verify"
	"github.com/passerelle/passerelle/rest"
	"github.com/passerelle/passerelle/securityserver/messagelog"
	"github.com/passerelle/passerelle/timestamp"
)

// Server is a security server. Build it with New, start it with Run.
type Server struct {
	cfg   *Config
	log   *slog.Logger
	owner pki.ClientID
	reg   *prometheus.Registry
	m     *metrics

	auth        keyPair
	sign        keyPair
	signer      *rest.Signer
	authStapler *ocsp.Stapler
	signStapler *ocsp.Stapler

	dir *directory.Poller

	mlog    *messagelog.Log
	batcher *timestamp.Batcher
	outbox  *client.Outbox
	regConn *client.GRPCClient
	replay  *rest.ReplayGuard

	store   *configStore   // clients and services in effect (store.go)
	limiter *clientLimiter // requests in flight per client (limits.go)

	verifierMu     sync.Mutex
	verifier       *verify.Verifier
	verifierSerial uint64

	feedCh     chan feedItem // logged hashes for the batcher and the outbox
	toProvider *http.Client
	toBackend  *http.Client
	adminToken []byte   // nil: admin API disabled
	peerCache  sync.Map // peer certificate fingerprint -> peerOK
	closers    []func() error
}

type keyPair struct {
	key   crypto.Signer
	chain []*x509.Certificate // leaf first, then its issuer
}

func loadKeyPair(keyPath, certPath string, usage pki.Usage) (keyPair, error) {
	key, err := pki.LoadPrivateKey(keyPath)
	if err != nil {
		return keyPair{}, err
	}
	chain, err := pki.LoadCertificates(certPath)
	if err != nil {
		return keyPair{}, err
	}
	if len(chain) < 2 {
		return keyPair{}, fmt.Errorf("%s: want the %s certificate followed by its issuer", certPath, usage)
	}
	if !publicKeysEqual(key.Public(), chain[0].PublicKey) {
		return keyPair{}, fmt.Errorf("%s does not match the key in %s", certPath, keyPath)
	}
	return keyPair{key: key, chain: chain}, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// New builds a server from cfg: it loads the keys, opens the message log,
// the timestamp batcher and the registry outbox in cfg.DataDir, and gets a
// valid federation directory (from its saved copy or its source). It starts
// nothing; Run does.
func New(ctx context.Context, cfg *Config, log *slog.Logger) (s *Server, err error) {
	if log == nil {
		log = slog.Default()
	}
	owner, err := pki.ParseMemberID(cfg.Owner)
	if err != nil {
		return nil, err
	}
	s = &Server{cfg: cfg, log: log, owner: owner, reg: daemon.NewRegistry(), feedCh: make(chan feedItem, feedQueue),
		limiter: newClientLimiter(cfg.Limits.MaxConcurrentPerClient)}
	srv := s // the named result is nil by the time a failing return runs the defer
	defer func() {
		if err != nil {
			srv.Close()
		}
	}()
	if cfg.AdminTokenFile != "" {
		if s.adminToken, err = loadAdminToken(cfg.path(cfg.AdminTokenFile)); err != nil {
			return nil, fmt.Errorf("adminTokenFile: %w", err)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("dataDir: %w", err)
	}

	if s.auth, err = loadKeyPair(cfg.path(cfg.Keys.AuthKey), cfg.path(cfg.Keys.AuthCert), pki.UsageAuth); err != nil {
		return nil, fmt.Errorf("keys.auth: %w", err)
	}
	if s.sign, err = loadKeyPair(cfg.path(cfg.Keys.SignKey), cfg.path(cfg.Keys.SignCert), pki.UsageSign); err != nil {
		return nil, fmt.Errorf("keys.sign: %w", err)
	}
	for _, kp := range []keyPair{s.auth, s.sign} {
		m, err := pki.MemberFromCert(kp.chain[0])
		if err != nil || m != owner {
			return nil, fmt.Errorf("keys: certificate %s is not bound to owner %s", kp.chain[0].Subject, owner)
		}
	}
	if s.signer, err = rest.NewSigner(s.sign.key, s.sign.chain); err != nil {
		return nil, err
	}

	// The federation directory: the saved copy, else one fetch now.
	dv, err := directory.LoadVerifier(cfg.path(cfg.Trust), owner.Instance)
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	var src directory.Source = directory.FileSource{Path: cfg.path(cfg.Directory.File)}
	if cfg.Directory.URL != "" {
		src = directory.HTTPSource{URL: cfg.Directory.URL}
	}
	s.dir, err = directory.NewPoller(directory.PollerConfig{Source: src, Verifier: dv,
		StatePath: filepath.Join(cfg.DataDir, "directory.state"), Logger: log})
	if err != nil {
		return nil, err
	}
	if _, cerr := s.dir.Current(); cerr != nil && !errors.Is(cerr, directory.ErrExpired) {
		if err := s.dir.Refresh(ctx); err != nil {
			return nil, fmt.Errorf("directory: no valid copy and cannot fetch one: %w", err)
		}
	}
	doc, err := s.dir.Current()
	if err != nil && !errors.Is(err, directory.ErrExpired) {
		return nil, fmt.Errorf("directory: %w", err)
	}
	if err := s.dir.RegisterMetrics(s.reg); err != nil {
		return nil, err
	}
	params := doc.Params

	// Our own OCSP responses, stapled to every message and TLS handshake.
	if s.authStapler, err = s.newStapler(doc, s.auth, params.OCSPFreshness()); err != nil {
		return nil, fmt.Errorf("keys.authCert: %w", err)
	}
	if s.signStapler, err = s.newStapler(doc, s.sign, params.OCSPFreshness()); err != nil {
		return nil, fmt.Errorf("keys.signCert: %w", err)
	}

	if s.replay, err = rest.NewReplayGuard(rest.ReplayGuardConfig{Window: params.ReplayWindow()}); err != nil {
		return nil, err
	}

	s.mlog, err = messagelog.Open(ctx, messagelog.Config{Dir: filepath.Join(cfg.DataDir, "messagelog"), Logger: log})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, s.mlog.Close)

	// Timestamping: the directory's TSAs, in order.
	var tsas []timestamp.Stamper
	for _, t := range doc.TSAs {
		c, err := timestamp.NewClient(timestamp.ClientConfig{URL: t.URL, Roots: doc.RootPool(), Certificates: []*x509.Certificate{t.Cert()}})
		if err != nil {
			return nil, fmt.Errorf("directory TSA %s: %w", t.URL, err)
		}
		tsas = append(tsas, c)
	}
	if len(tsas) == 0 {
		return nil, errors.New("directory lists no TSA")
	}
	s.batcher, err = timestamp.NewBatcher(timestamp.BatcherConfig{
		Path: filepath.Join(cfg.DataDir, "timestamps.db"), TSAs: tsas, Deliver: s.deliverStamps,
		Interval: params.TimestampInterval(), Log: log, Registerer: s.reg,
	})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, s.batcher.Close)

	// The hash registry: the directory's first registry, over mTLS.
	if len(doc.Registries) == 0 {
		return nil, errors.New("directory lists no hash registry")
	}
	r := doc.Registries[0]
	vkey, err := note.NewVerifier(r.VerifierKey)
	if err != nil {
		return nil, fmt.Errorf("directory registry %s: %w", r.Name, err)
	}
	s.regConn, err = client.Dial(r.GRPCAddress, &tls.Config{
		Certificates: []tls.Certificate{s.tlsCertificate()}, RootCAs: doc.RootPool(), MinVersion: tls.VersionTLS13,
	})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, s.regConn.Close)
	s.outbox, err = client.OpenOutbox(client.OutboxConfig{
		Path: filepath.Join(cfg.DataDir, "outbox.db"), Appender: s.regConn, Handler: s.deliverReceipts,
		Verifier: vkey, Logger: log, Registerer: s.reg,
	})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, s.outbox.Close)

	s.toProvider = &http.Client{
		Transport: &http.Transport{
			DialTLSContext:      s.dialProvider(&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}),
			ForceAttemptHTTP2:   false,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true, // signatures cover Content-Encoding
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	s.toBackend = &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true, // bodies pass through as the service sent them
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, // X-Road does not follow redirects
	}
	if s.store, err = newConfigStore(cfg, owner, log, s.toBackend); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, s.store.close)
	if s.m, err = newMetrics(s); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) newStapler(doc *directory.Document, kp keyPair, maxAge time.Duration) (*ocsp.Stapler, error) {
	url := ""
	if len(kp.chain[0].OCSPServer) == 0 {
		urls := doc.OCSPURLs(kp.chain[1])
		if len(urls) == 0 {
			return nil, errors.New("certificate names no OCSP responder and the directory lists none for its CA")
		}
		url = urls[0]
	}
	return ocsp.NewStapler(ocsp.StaplerConfig{Cert: kp.chain[0], Issuer: kp.chain[1], URL: url, MaxAge: maxAge, Log: s.log})
}

// tlsCertificate is the auth certificate with its current OCSP staple.
func (s *Server) tlsCertificate() tls.Certificate {
	c := tls.Certificate{PrivateKey: s.auth.key, Leaf: s.auth.chain[0]}
	for _, x := range s.auth.chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	if s.authStapler != nil {
		if der, err := s.authStapler.Staple(); err == nil {
			c.OCSPStaple = der
		}
	}
	return c
}

// currentVerifier returns the certificate verifier for the directory in
// hand, rebuilt when the directory changes (its roots and OCSP freshness).
func (s *Server) currentVerifier(doc *directory.Document) (*verify.Verifier, error) {
	s.verifierMu.Lock()
	defer s.verifierMu.Unlock()
	if s.verifier != nil && s.verifierSerial == doc.Serial {
		return s.verifier, nil
	}
	v, err := verify.New(verify.Config{Roots: doc.RootPool(), OCSPMaxAge: doc.Params.OCSPFreshness()})
	if err != nil {
		return nil, err
	}
	s.verifier, s.verifierSerial = v, doc.Serial
	return v, nil
}

// deliverStamps stores a batch's timestamps in the message log, in one
// transaction with one wait (a goroutine per message woken at once would
// crowd out the requests being served).
func (s *Server) deliverStamps(ctx context.Context, stamps []timestamp.Stamp) error {
	as := make([]messagelog.Attachment, 0, len(stamps))
	for _, st := range stamps {
		path := make([][]byte, len(st.Path.Proof))
		for i, h := range st.Path.Proof {
			path[i] = append([]byte(nil), h[:]...)
		}
		as = append(as, messagelog.Attachment{Hash: messagelog.Hash(st.Hash), Timestamp: &messagelog.Timestamp{
			Token: st.Token, Path: path, BatchSize: uint64(st.Path.Size), Index: uint64(st.Path.Index), Time: st.Time,
		}})
	}
	_, err := s.mlog.AttachMany(ctx, as)
	return err
}

// deliverReceipts stores registry receipts in the message log (one
// transaction, one wait); an item's Ref is its message hash in hex.
func (s *Server) deliverReceipts(ctx context.Context, receipts []client.Receipt) error {
	as := make([]messagelog.Attachment, 0, len(receipts))
	for _, rc := range receipts {
		h, err := messagelog.ParseHash(rc.Ref)
		if err != nil {
			s.log.Warn("registry receipt with an unknown reference", "ref", rc.Ref)
			continue
		}
		as = append(as, messagelog.Attachment{Hash: h, Receipt: &messagelog.Receipt{Proof: rc.Proof, Index: uint64(rc.Index)}})
	}
	_, err := s.mlog.AttachMany(ctx, as)
	return err
}

// Run serves until ctx ends, then drains in-flight requests and flushes the
// queues. addrFile, when set, receives the bound addresses (keys consumer,
// provider, admin).
func (s *Server) Run(ctx context.Context, addrFile string) error {
	// Re-feed anything the log holds that the queues may have lost.
	if err := s.refeedPending(ctx); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	addrs := map[string]string{}
	type listener struct {
		name string
		ln   net.Listener
		srv  *http.Server
	}
	var lns []listener
	started := false
	defer func() { // a listener that failed to open leaves none of the others open
		if !started {
			for _, l := range lns {
				l.ln.Close()
			}
		}
	}()
	add := func(name, addr string, h http.Handler, tlsConf *tls.Config) error {
		if addr == "" {
			return nil
		}
		ln, err := daemon.Listen(ctx, s.log, name, addr)
		if err != nil {
			return err
		}
		addrs[name] = ln.Addr().String()
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
			MaxHeaderBytes: s.hardHeaderLimit(), TLSConfig: tlsConf, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
		if tlsConf != nil {
			ln = tls.NewListener(ln, tlsConf)
		}
		lns = append(lns, listener{name, ln, srv})
		return nil
	}
	if err := add("consumer", s.cfg.Listen.Consumer, s.limitHeaders(s.ConsumerHandler(), rest.OriginClientProxy), nil); err != nil {
		return err
	}
	if s.cfg.Listen.ConsumerTLS != "" {
		tlsConf, err := s.consumerServerTLS()
		if err != nil {
			return err
		}
		if err := add("consumerTLS", s.cfg.Listen.ConsumerTLS, s.limitHeaders(s.ConsumerHandler(), rest.OriginClientProxy), tlsConf); err != nil {
			return err
		}
	}
	if err := add("provider", s.cfg.Listen.Provider, s.limitHeaders(s.ProviderHandler(), rest.OriginServerProxy), s.providerServerTLS()); err != nil {
		return err
	}
	if err := add("admin", s.cfg.Listen.Admin, s.AdminHandler(), nil); err != nil {
		return err
	}
	if err := daemon.WriteAddrFile(addrFile, addrs); err != nil {
		return err
	}
	started = true
	bg, bgCancel := context.WithCancel(context.WithoutCancel(ctx))
	var bgWG sync.WaitGroup
	for _, f := range []func(context.Context) error{s.authStapler.Run, s.signStapler.Run, s.dir.Run, s.batcher.Run, s.outbox.Run, s.runFeeder, s.retentionLoop} {
		bgWG.Add(1)
		go func() {
			defer bgWG.Done()
			if err := f(bg); err != nil && !errors.Is(err, context.Canceled) {
				s.log.Error("background task stopped", "err", err)
			}
		}()
	}
	for _, l := range lns {
		g.Go(func() error { return daemon.Serve(gctx, l.srv, l.ln) })
	}
	s.log.Info("security server running", "owner", s.owner.String(), "serverCode", s.cfg.ServerCode)
	err := g.Wait()
	// Listeners are drained; now let the queues flush what they hold.
	bgCancel()
	bgWG.Wait()
	return err
}

func (s *Server) refeedPending(ctx context.Context) error {
	var hs []timestamp.Hash
	var items []client.Item
	err := s.mlog.Pending(ctx, func(p messagelog.PendingEntry) error {
		if p.NeedsTimestamp {
			hs = append(hs, timestamp.Hash(p.Hash))
		}
		if p.NeedsReceipt {
			rec, err := s.mlog.Get(ctx, p.ID)
			if err != nil {
				return err
			}
			items = append(items, registryItem(p.Hash, rec.Kind))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(hs) > 0 {
		if err := s.batcher.AddMany(ctx, hs); err != nil {
			return err
		}
	}
	if len(items) > 0 {
		if err := s.outbox.Submit(ctx, items); err != nil {
			return err
		}
	}
	if len(hs)+len(items) > 0 {
		s.log.Info("re-queued pending message hashes", "timestamp", len(hs), "registry", len(items))
	}
	return nil
}

func registryItem(h messagelog.Hash, k messagelog.Kind) client.Item {
	kind := hashregistry.KindRequest
	if k == messagelog.KindResponse {
		kind = hashregistry.KindResponse
	}
	return client.Item{Ref: h.String(), Hash: h, Kind: kind}
}

func (s *Server) retentionLoop(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			st, err := s.mlog.Cleanup(ctx, time.Now().Add(-time.Duration(s.cfg.Retention)))
			if err != nil {
				s.log.Error("message log cleanup failed", "err", err)
				continue
			}
			s.log.Info("message log cleanup", "deleted", st.Deleted, "kept", st.Kept)
		}
	}
}

// Close releases the server's files. Call it after Run has returned.
func (s *Server) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}

// Log returns the message log, for evidence export and tests.
func (s *Server) Log() *messagelog.Log { return s.mlog }
