package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/internal/daemon"
	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/directory"
)

// newDirectoryCmd is `passerelle directory`: the federation operator edits a
// draft in DIR, signs it into DIR/directory.jws and serves it. See
// docs/directory.md.
func newDirectoryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "directory",
		Short: "The signed federation directory: edit, sign, serve, verify",
	}
	cmd.AddCommand(
		newDirectoryInitCmd(),
		newDirectoryAddMemberCmd(),
		newDirectoryAddServerCmd(),
		newDirectoryAddCACmd(),
		newDirectoryAddTSACmd(),
		newDirectoryAddRegistryCmd(),
		newDirectorySetCmd(),
		newDirectorySignCmd(),
		newDirectoryServeCmd(),
		newDirectoryVerifyCmd(),
	)
	return cmd
}

func dirFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "dir", "", "the directory's folder (draft.json, directory.jws)")
	_ = cmd.MarkFlagRequired("dir")
}

// editDraft loads DIR's draft, applies edit and saves it.
func editDraft(dir string, edit func(*directory.Draft) error) error {
	d, err := directory.LoadDraft(dir)
	if err != nil {
		return err
	}
	if err := edit(d); err != nil {
		return err
	}
	return d.Save(dir)
}

func loadOneCert(path string) (*x509.Certificate, error) {
	certs, err := pki.LoadCertificates(path)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

func newDirectoryInitCmd() *cobra.Command {
	var dir, instance string
	var expiry time.Duration
	cmd := &cobra.Command{
		Use:   "init --dir DIR --instance INSTANCE [--expiry 24h]",
		Short: "Start a draft directory for an instance",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := directory.NewDraft(instance, expiry)
			if err != nil {
				return err
			}
			if err := directory.InitDir(dir, d); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "draft for instance %s in %s (documents valid %s)\n", instance, filepath.Join(dir, directory.DraftFile), time.Duration(d.Validity))
			return nil
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().StringVar(&instance, "instance", "", "the X-Road instance identifier, e.g. PAS")
	cmd.Flags().DurationVar(&expiry, "expiry", directory.DefaultValidity, "how long each signed document stays valid")
	_ = cmd.MarkFlagRequired("instance")
	return cmd
}

func newDirectoryAddMemberCmd() *cobra.Command {
	var dir, member, name string
	var subsystems []string
	cmd := &cobra.Command{
		Use:   "add-member --dir DIR --member I/C/M [--name N] [--subsystem S ...]",
		Short: "Add a member (or its name and new subsystems)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := pki.ParseMemberID(member)
			if err != nil {
				return fmt.Errorf("--member: %w", err)
			}
			return editDraft(dir, func(d *directory.Draft) error { return d.AddMember(id, name, subsystems...) })
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().StringVar(&member, "member", "", "member identifier INSTANCE/CLASS/MEMBER")
	cmd.Flags().StringVar(&name, "name", "", "the member's name")
	cmd.Flags().StringArrayVar(&subsystems, "subsystem", nil, "subsystem code (repeatable)")
	_ = cmd.MarkFlagRequired("member")
	return cmd
}

func newDirectoryAddServerCmd() *cobra.Command {
	var dir, owner, code, address, tlsCert string
	var subsystems []string
	cmd := &cobra.Command{
		Use:   "add-server --dir DIR --owner I/C/M --code CODE --address HOST:PORT --tls-cert FILE [--subsystem S ...]",
		Short: "Add or replace a security server (its TLS certificate is pinned by SHA-256)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := pki.ParseMemberID(owner)
			if err != nil {
				return fmt.Errorf("--owner: %w", err)
			}
			cert, err := loadOneCert(tlsCert)
			if err != nil {
				return fmt.Errorf("--tls-cert: %w", err)
			}
			if err := editDraft(dir, func(d *directory.Draft) error {
				return d.AddServer(id, code, address, cert, subsystems...)
			}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "server %s/%s at %s, TLS certificate SHA-256 %s\n", id, code, address, pki.Fingerprint(cert))
			return nil
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().StringVar(&owner, "owner", "", "owner member INSTANCE/CLASS/MEMBER")
	cmd.Flags().StringVar(&code, "code", "", "server code, unique per owner")
	cmd.Flags().StringVar(&address, "address", "", "host:port of the server's provider side (mTLS, usually :5500)")
	cmd.Flags().StringVar(&tlsCert, "tls-cert", "", "PEM file of the server's TLS (auth) certificate")
	cmd.Flags().StringArrayVar(&subsystems, "subsystem", nil, "hosted subsystem: a code of the owner or a full I/C/M/S (repeatable)")
	for _, f := range []string{"owner", "code", "address", "tls-cert"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newDirectoryAddCACmd() *cobra.Command {
	var dir, certFile, name string
	var ocsp []string
	cmd := &cobra.Command{
		Use:   "add-ca --dir DIR --cert FILE [--ocsp URL ...] [--name N]",
		Short: "Trust a CA root and name its OCSP responders",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cert, err := loadOneCert(certFile)
			if err != nil {
				return fmt.Errorf("--cert: %w", err)
			}
			return editDraft(dir, func(d *directory.Draft) error { return d.AddCA(name, cert, ocsp...) })
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().StringVar(&certFile, "cert", "", "PEM file of the CA root certificate")
	cmd.Flags().StringArrayVar(&ocsp, "ocsp", nil, "OCSP responder URL (repeatable)")
	cmd.Flags().StringVar(&name, "name", "", "display name (default: the certificate's CN)")
	_ = cmd.MarkFlagRequired("cert")
	return cmd
}

func newDirectoryAddTSACmd() *cobra.Command {
	var dir, url, certFile, name string
	cmd := &cobra.Command{
		Use:   "add-tsa --dir DIR --url URL --cert FILE [--name N]",
		Short: "Trust an RFC 3161 time-stamping authority",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cert, err := loadOneCert(certFile)
			if err != nil {
				return fmt.Errorf("--cert: %w", err)
			}
			return editDraft(dir, func(d *directory.Draft) error { return d.AddTSA(name, url, cert) })
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().StringVar(&url, "url", "", "the TSA's URL (application/timestamp-query)")
	cmd.Flags().StringVar(&certFile, "cert", "", "PEM file of the TSA's signing certificate")
	cmd.Flags().StringVar(&name, "name", "", "display name (default: the certificate's CN)")
	_ = cmd.MarkFlagRequired("url")
	_ = cmd.MarkFlagRequired("cert")
	return cmd
}

func newDirectoryAddRegistryCmd() *cobra.Command {
	var dir, name, grpcAddr, httpURL, vkeyFile string
	cmd := &cobra.Command{
		Use:   "add-registry --dir DIR --name N --grpc HOST:PORT --http URL --verifier-key FILE",
		Short: "Name a hash registry and the key that verifies its checkpoints",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			vkey, err := os.ReadFile(vkeyFile)
			if err != nil {
				return fmt.Errorf("--verifier-key: %w", err)
			}
			return editDraft(dir, func(d *directory.Draft) error {
				return d.AddRegistry(directory.Registry{Name: name, GRPCAddress: grpcAddr, HTTPURL: httpURL, VerifierKey: strings.TrimSpace(string(vkey))})
			})
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().StringVar(&name, "name", "", "registry name")
	cmd.Flags().StringVar(&grpcAddr, "grpc", "", "gRPC address host:port (appends)")
	cmd.Flags().StringVar(&httpURL, "http", "", "HTTP read API URL (auditors)")
	cmd.Flags().StringVar(&vkeyFile, "verifier-key", "", "file holding the registry's note verifier key (registry.vkey)")
	for _, f := range []string{"name", "grpc", "http", "verifier-key"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newDirectorySetCmd() *cobra.Command {
	var dir string
	var expiry, ocspFresh, tsInterval, tsFailure, replay, poll time.Duration
	cmd := &cobra.Command{
		Use:   "set --dir DIR [--expiry D] [--ocsp-freshness D] [--timestamp-interval D] [--timestamp-failure-period D] [--replay-window D] [--poll-interval D]",
		Short: "Set federation-wide parameters (only the flags given change)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fl := cmd.Flags()
			secs := func(name string, v time.Duration, dst *int64) error {
				if !fl.Changed(name) {
					return nil
				}
				if v < time.Second || v%time.Second != 0 {
					return fmt.Errorf("--%s %s: want a whole number of seconds, at least 1s", name, v)
				}
				*dst = int64(v / time.Second)
				return nil
			}
			return editDraft(dir, func(d *directory.Draft) error {
				if fl.Changed("expiry") {
					if expiry <= 0 {
						return fmt.Errorf("--expiry %s: want a positive duration", expiry)
					}
					d.Validity = directory.Duration(expiry)
				}
				p := &d.Params
				return errors.Join(
					secs("ocsp-freshness", ocspFresh, &p.OCSPFreshnessSeconds),
					secs("timestamp-interval", tsInterval, &p.TimestampIntervalSeconds),
					secs("timestamp-failure-period", tsFailure, &p.TimestampFailurePeriodSeconds),
					secs("replay-window", replay, &p.ReplayWindowSeconds),
					secs("poll-interval", poll, &p.PollIntervalSeconds),
				)
			})
		},
	}
	dirFlag(cmd, &dir)
	f := cmd.Flags()
	f.DurationVar(&expiry, "expiry", directory.DefaultValidity, "validity of each signed document")
	f.DurationVar(&ocspFresh, "ocsp-freshness", directory.DefaultOCSPFreshness, "maximum age of an OCSP response")
	f.DurationVar(&tsInterval, "timestamp-interval", directory.DefaultTimestampInterval, "timestamp batch interval")
	f.DurationVar(&tsFailure, "timestamp-failure-period", directory.DefaultTimestampFailurePeriod, "how long servers accept traffic with the TSA unreachable")
	f.DurationVar(&replay, "replay-window", directory.DefaultReplayWindow, "allowed clock skew and replay memory of signed messages")
	f.DurationVar(&poll, "poll-interval", directory.DefaultPollInterval, "how often servers fetch the directory")
	return cmd
}

func newDirectorySignCmd() *cobra.Command {
	var dir, keyFile, certFile string
	var valid time.Duration
	cmd := &cobra.Command{
		Use:   "sign --dir DIR --key FILE --cert FILE [--valid 24h]",
		Short: "Sign the draft with a new serial into DIR/directory.jws",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := pki.LoadPrivateKey(keyFile)
			if err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			chain, err := pki.LoadCertificates(certFile)
			if err != nil {
				return fmt.Errorf("--cert: %w", err)
			}
			doc, err := directory.SignDir(dir, key, chain, time.Now(), valid)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s serial %d, expires %s\n",
				filepath.Join(dir, directory.SignedFile), doc.Serial, doc.ExpiresAt.Format(time.RFC3339))
			return nil
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().StringVar(&keyFile, "key", "", "the directory signing key (PEM, mode 0600)")
	cmd.Flags().StringVar(&certFile, "cert", "", "its certificate with the directory usage, then its chain (PEM)")
	cmd.Flags().DurationVar(&valid, "valid", 0, "validity of this document (default: the draft's expiry)")
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagRequired("cert")
	return cmd
}

func newDirectoryServeCmd() *cobra.Command {
	var dir, listen, addrFile string
	cmd := &cobra.Command{
		Use:   "serve --dir DIR [--listen ADDR] [--addr-file F]",
		Short: "Serve the latest signed directory over HTTP (GET /directory)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serveDirectory(cmd.Context(), dir, listen, addrFile)
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().StringVar(&listen, "listen", ":8090", "listen address (port 0 picks one)")
	cmd.Flags().StringVar(&addrFile, "addr-file", "", "write the bound address here, as JSON {\"directory\": \"host:port\"}")
	return cmd
}

func serveDirectory(ctx context.Context, dir, listen, addrFile string) error {
	log := daemon.Logger()
	if _, err := directory.LoadDraft(dir); err != nil {
		return err
	}
	signedPath := filepath.Join(dir, directory.SignedFile)
	published := func() (*directory.Document, error) {
		data, err := os.ReadFile(signedPath)
		if err != nil {
			return nil, err
		}
		return directory.Peek(data)
	}
	reg := daemon.NewRegistry()
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "passerelle_directory_published_serial", Help: "Serial of the signed directory served (0: none).",
		}, func() float64 {
			if d, err := published(); err == nil {
				return float64(d.Serial)
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "passerelle_directory_published_expires_in_seconds", Help: "Seconds until the served directory expires (negative: expired; re-sign).",
		}, func() float64 {
			if d, err := published(); err == nil {
				return time.Until(d.ExpiresAt).Seconds()
			}
			return 0
		}),
	)
	health := func() error {
		d, err := published()
		if err != nil {
			return fmt.Errorf("no signed directory: %w", err)
		}
		if d.Expired(time.Now()) {
			return fmt.Errorf("serial %d expired at %s: run 'passerelle directory sign'", d.Serial, d.ExpiresAt.Format(time.RFC3339))
		}
		return nil
	}
	mux := daemon.NewMux(reg, health)
	mux.Handle("GET /directory", directory.NewHandler(dir, log))
	ln, err := daemon.Listen(ctx, log, "directory", listen)
	if err != nil {
		return err
	}
	if err := daemon.WriteAddrFile(addrFile, map[string]string{"directory": ln.Addr().String()}); err != nil {
		ln.Close()
		return err
	}
	if d, err := published(); err == nil {
		log.Info("serving directory", "serial", d.Serial, "expiresAt", d.ExpiresAt)
	} else {
		log.Warn("no signed directory yet; run 'passerelle directory sign'", "path", signedPath)
	}
	return daemon.ServeHTTP(ctx, log, ln, mux)
}

func newDirectoryVerifyCmd() *cobra.Command {
	var file, url, trustDir, caFile, signerFile, instance string
	cmd := &cobra.Command{
		Use:   "verify (--file F | --url URL) (--trust DIR | --ca FILE [--signer FILE]) [--instance I]",
		Short: "Verify a signed directory as a security server would, and summarize it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var src directory.Source
			switch {
			case (file == "") == (url == ""):
				return errors.New("give exactly one of --file and --url")
			case file != "":
				src = directory.FileSource{Path: file}
			default:
				src = directory.HTTPSource{URL: url}
			}
			v, err := directoryVerifier(trustDir, caFile, signerFile, instance)
			if err != nil {
				return err
			}
			signed, err := src.Fetch(cmd.Context())
			if err != nil {
				return err
			}
			d, err := v.Verify(signed)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK instance %s serial %d issued %s expires %s: %d members, %d servers, %d CAs, %d TSAs, %d registries\n",
				d.Instance, d.Serial, d.IssuedAt.Format(time.RFC3339), d.ExpiresAt.Format(time.RFC3339),
				len(d.Members), len(d.Servers), len(d.CAs), len(d.TSAs), len(d.Registries))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "file", "", "signed directory file (directory.jws)")
	f.StringVar(&url, "url", "", "URL of a directory server (…/directory)")
	f.StringVar(&trustDir, "trust", "", "trust directory holding ca.pem and directory.pem (the pinned signer)")
	f.StringVar(&caFile, "ca", "", "instead of --trust: trusted CA roots (PEM)")
	f.StringVar(&signerFile, "signer", "", "with --ca: pinned directory signing certificate(s) (PEM)")
	f.StringVar(&instance, "instance", "", "expected instance")
	return cmd
}

func directoryVerifier(trustDir, caFile, signerFile, instance string) (*directory.Verifier, error) {
	switch {
	case trustDir != "" && (caFile != "" || signerFile != ""):
		return nil, errors.New("give --trust or --ca/--signer, not both")
	case trustDir != "":
		return directory.LoadVerifier(trustDir, instance)
	case caFile == "":
		return nil, errors.New("give --trust DIR or --ca FILE")
	}
	roots, err := pki.LoadCertificates(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	v := &directory.Verifier{Roots: pool, Instance: instance}
	if signerFile != "" {
		if v.Signers, err = pki.LoadCertificates(signerFile); err != nil {
			return nil, fmt.Errorf("--signer: %w", err)
		}
	}
	return v, nil
}
