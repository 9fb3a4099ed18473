package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sync/errgroup"

	"github.com/passerelle/passerelle/hashregistry"
	"github.com/passerelle/passerelle/internal/daemon"
	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ocsp"
	"github.com/passerelle/passerelle/pki/verify"
)

// Files in a registry directory.
const (
	registrySigningKey = "registry.key"  // note signing key, 0600
	registryVerifier   = "registry.vkey" // note verifier key, public
	registryTLSKey     = "tls.key"       // TLS key, 0600
	registryTLSCSR     = "tls.csr"       // CSR for the federation CA (usage registry)
	registryTLSCert    = "tls.pem"       // certificate chain issued by the CA
	registryDB         = "registry.db"   // the bbolt log
)

func newRegistryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "The shared hash registry: a signed Merkle log of message hashes (gRPC + HTTP tiles)",
	}
	cmd.AddCommand(newRegistryInitCmd(), newRegistryServeCmd())
	return cmd
}

func newRegistryInitCmd() *cobra.Command {
	var dir, origin, member, alg string
	cmd := &cobra.Command{
		Use:   "init --dir DIR --origin NAME",
		Short: "Write the checkpoint signing key, registry.vkey, and a TLS key + CSR for enrollment",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return errors.New("--dir is required")
			}
			if !hashregistry.ValidOrigin(origin) {
				return fmt.Errorf("--origin %q: want a name without spaces or '+', e.g. registry.example.gov/passerelle", origin)
			}
			var m pki.ClientID
			if member != "" {
				var err error
				if m, err = pki.ParseMemberID(member); err != nil {
					return fmt.Errorf("--member: %w", err)
				}
			}
			ka, err := pki.ParseKeyAlgorithm(alg)
			if err != nil {
				return fmt.Errorf("--key-alg: %w", err)
			}
			for _, f := range []string{registrySigningKey, registryTLSKey} {
				if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
					return fmt.Errorf("%s already exists; refusing to overwrite a key", filepath.Join(dir, f))
				}
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			skey, vkey, err := note.GenerateKey(rand.Reader, origin)
			if err != nil {
				return err
			}
			if err := pki.WriteFileAtomic(filepath.Join(dir, registrySigningKey), []byte(skey+"\n"), 0o600); err != nil {
				return err
			}
			if err := pki.WriteFileAtomic(filepath.Join(dir, registryVerifier), []byte(vkey+"\n"), 0o644); err != nil {
				return err
			}
			key, err := pki.GenerateKey(ka)
			if err != nil {
				return err
			}
			if err := pki.WritePrivateKey(filepath.Join(dir, registryTLSKey), key); err != nil {
				return err
			}
			csr, err := pki.CreateCSR(key, m, pki.UsageRegistry)
			if err != nil {
				return err
			}
			if err := pki.WriteFileAtomic(filepath.Join(dir, registryTLSCSR), csr, 0o644); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "registry %s initialised in %s\n", origin, dir)
			fmt.Fprintf(out, "  verifier key (publish it; auditors and members need it): %s\n", filepath.Join(dir, registryVerifier))
			fmt.Fprintf(out, "  %s\n", vkey)
			fmt.Fprintf(out, "  TLS CSR: %s — have the federation CA issue it with usage registry and save the chain as %s\n",
				filepath.Join(dir, registryTLSCSR), filepath.Join(dir, registryTLSCert))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "registry directory (created)")
	cmd.Flags().StringVar(&origin, "origin", "", "log origin, also the signing key's name (e.g. registry.example.gov/passerelle)")
	cmd.Flags().StringVar(&member, "member", "", "the registry operator's member id INSTANCE/CLASS/MEMBER, bound into the CSR (optional)")
	cmd.Flags().StringVar(&alg, "key-alg", "", "TLS key algorithm (default ECDSA P-256)")
	return cmd
}

func newRegistryServeCmd() *cobra.Command {
	var dir, grpcAddr, httpAddr, trust, addrFile string
	var ocspMaxAge time.Duration
	cmd := &cobra.Command{
		Use:   "serve --dir DIR --grpc ADDR --http ADDR --trust DIR",
		Short: "Serve the registry: gRPC appends and reads over mTLS, HTTP C2SP tiles, /healthz, /metrics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" || trust == "" {
				return errors.New("--dir and --trust are required")
			}
			if ocspMaxAge <= 0 || ocspMaxAge > ocsp.DefaultMaxAge {
				return fmt.Errorf("--ocsp-max-age %v: want more than 0 and at most the federation's freshness limit %v", ocspMaxAge, ocsp.DefaultMaxAge)
			}
			return serveRegistry(cmd.Context(), registryServeConfig{
				dir: dir, grpcAddr: grpcAddr, httpAddr: httpAddr, trust: trust, addrFile: addrFile, ocspMaxAge: ocspMaxAge,
			})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "registry directory (from registry init, with tls.pem)")
	cmd.Flags().StringVar(&grpcAddr, "grpc", "127.0.0.1:7443", "gRPC (mTLS) listen address; port 0 picks one")
	cmd.Flags().StringVar(&httpAddr, "http", "127.0.0.1:8081", "HTTP read API (tiles, /healthz, /metrics) listen address")
	cmd.Flags().StringVar(&trust, "trust", "", "trust directory holding ca.pem, the roots members' certificates chain to")
	cmd.Flags().StringVar(&addrFile, "addr-file", "", "write the bound addresses (keys grpc, http) as JSON here")
	cmd.Flags().DurationVar(&ocspMaxAge, "ocsp-max-age", defaultRegistryOCSPMaxAge,
		"how long a submitter's OCSP answer is reused before the registry asks again: the longest a revoked member can still append")
	return cmd
}

// defaultRegistryOCSPMaxAge tightens the federation's OCSP freshness (1 h)
// for the registry, which fetches members' OCSP responses itself: one query
// per member certificate every 5 minutes, and a revocation bites within 5.
const defaultRegistryOCSPMaxAge = 5 * time.Minute

type registryServeConfig struct {
	dir, grpcAddr, httpAddr, trust, addrFile string
	ocspMaxAge                               time.Duration
}

// loadNoteSigner reads a note signing key file and refuses one readable by
// group or others.
func loadNoteSigner(path string) (note.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %v is readable by others; want 0600", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := note.NewSigner(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("%s: not a note signing key", path)
	}
	return s, nil
}

func loadRegistryVerifier(path string) (note.Verifier, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	v, err := hashregistry.NewVerifier(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

func loadTLSCert(certPath, keyPath string) (tls.Certificate, error) {
	certs, err := pki.LoadCertificates(certPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w (issue tls.csr with the federation CA, usage registry)", certPath, err)
	}
	key, err := pki.LoadPrivateKey(keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	c := tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, x := range certs {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	certs, err := pki.LoadCertificates(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

func serveRegistry(ctx context.Context, c registryServeConfig) error {
	dir, trust := c.dir, c.trust
	log := daemon.Logger()
	signer, err := loadNoteSigner(filepath.Join(dir, registrySigningKey))
	if err != nil {
		return err
	}
	verifier, err := loadRegistryVerifier(filepath.Join(dir, registryVerifier))
	if err != nil {
		return err
	}
	cert, err := loadTLSCert(filepath.Join(dir, registryTLSCert), filepath.Join(dir, registryTLSKey))
	if err != nil {
		return err
	}
	roots, err := loadPool(filepath.Join(trust, "ca.pem"))
	if err != nil {
		return fmt.Errorf("--trust: %w", err)
	}
	reg := daemon.NewRegistry()
	start := time.Now()
	l, err := hashregistry.Open(ctx, hashregistry.Config{Path: filepath.Join(dir, registryDB), Signer: signer, Verifier: verifier, Registerer: reg})
	if err != nil {
		return err
	}
	defer l.Close()
	cp, _ := l.Checkpoint()
	log.Info("log verified against its signed checkpoint", "origin", cp.Origin, "size", cp.Size, "root", cp.Hash.String(), "took", time.Since(start).String())
	// Appends need a member certificate that chains to the trust roots (the
	// TLS layer) and is not revoked: pki/verify fetches the leaf's OCSP
	// response and caches it per certificate until it is older than
	// --ocsp-max-age, so appends do not cost an OCSP query each.
	members, err := verify.New(verify.Config{
		Roots: roots, OCSPMaxAge: c.ocspMaxAge,
		FetchOCSP: ocsp.NewClient(ocsp.ClientConfig{MaxAge: c.ocspMaxAge}),
	})
	if err != nil {
		return err
	}
	srv, err := hashregistry.NewServer(hashregistry.ServerConfig{Log: l, Logger: log, CheckChain: hashregistry.CheckRevocation(members)})
	if err != nil {
		return err
	}
	gln, err := daemon.Listen(ctx, log, "grpc", c.grpcAddr)
	if err != nil {
		return err
	}
	hln, err := daemon.Listen(ctx, log, "http", c.httpAddr)
	if err != nil {
		gln.Close()
		return err
	}
	if err := daemon.WriteAddrFile(c.addrFile, map[string]string{"grpc": gln.Addr().String(), "http": hln.Addr().String()}); err != nil {
		return err
	}
	mux := daemon.NewMux(reg, nil)
	srv.Handle(mux)
	g := srv.NewGRPCServer(hashregistry.ServerTLSConfig(cert, roots))
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return daemon.ServeHTTP(ctx, log, hln, mux) })
	eg.Go(func() error { return g.Serve(gln) })
	eg.Go(func() error {
		<-ctx.Done()
		done := make(chan struct{})
		go func() { g.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(daemon.ShutdownGrace):
			g.Stop()
		}
		return nil
	})
	err = eg.Wait()
	log.Info("registry stopped", "size", l.Size())
	return err
}
