package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/internal/daemon"
	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ca"
	"github.com/passerelle/passerelle/timestamp"
)

func newTSACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tsa",
		Short: "RFC 3161 time-stamping authority: init, serve; request and verify tokens",
	}
	cmd.AddCommand(newTSAInitCmd(), newTSAServeCmd(), newTSARequestCmd(), newTSAVerifyCmd())
	return cmd
}

func newTSAInitCmd() *cobra.Command {
	var dir, caDir, certFile, keyFile, policy, keyAlg, operator string
	var accuracy time.Duration
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Make a TSA directory: key (0600), certificate with critical EKU timeStamping, tsa.yaml, token ledger",
		Long: `Make a TSA directory. Either --ca-dir issues the TSA certificate through our CA
(pki/ca; the CA database is opened per transaction, so this works while
'ca serve' runs on the same directory), or --cert/--key import a certificate
issued elsewhere (it must carry the critical timeStamping extended key usage).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := timestamp.InitConfig{Dir: dir, Accuracy: accuracy}
			if policy != "" {
				oid, err := timestamp.ParseOID(policy)
				if err != nil {
					return fmt.Errorf("--policy: %w", err)
				}
				cfg.Policy = oid
			}
			switch {
			case caDir != "" && (certFile != "" || keyFile != ""):
				return errors.New("give either --ca-dir or --cert and --key")
			case caDir != "":
				alg, err := pki.ParseKeyAlgorithm(keyAlg)
				if err != nil {
					return fmt.Errorf("--key-type: %w", err)
				}
				cfg.KeyAlgorithm = alg
				cfg.Issue = func(ctx context.Context, csr []byte) ([]*x509.Certificate, error) {
					c, err := ca.Open(caDir)
					if err != nil {
						return nil, err
					}
					defer c.Close()
					cert, err := c.Sign(ctx, ca.SignRequest{CSR: csr, Usage: pki.UsageTSA, Operator: operator,
						CommonName: "Passerelle TSA"})
					if err != nil {
						return nil, err
					}
					return []*x509.Certificate{cert, c.Certificate()}, nil
				}
			case certFile != "" && keyFile != "":
				var err error
				if cfg.CertPEM, err = os.ReadFile(certFile); err != nil {
					return fmt.Errorf("--cert: %w", err)
				}
				if _, err := pki.LoadPrivateKey(keyFile); err != nil { // refuses a group/other-readable key
					return fmt.Errorf("--key: %w", err)
				}
				if cfg.KeyPEM, err = os.ReadFile(keyFile); err != nil {
					return fmt.Errorf("--key: %w", err)
				}
			default:
				return errors.New("give --ca-dir, or --cert and --key")
			}
			cert, err := timestamp.InitDir(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			p, acc, err := timestamp.LoadDirConfig(dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "TSA initialised in %s\n  certificate %s (serial %s, valid until %s)\n  SHA-256 fingerprint %s\n  policy %s, accuracy %s\n",
				dir, filepath.Join(dir, timestamp.CertFile), cert.SerialNumber.Text(16),
				cert.NotAfter.UTC().Format(time.RFC3339), pki.Fingerprint(cert), p, acc)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "TSA directory (created; must not hold a TSA)")
	f.StringVar(&caDir, "ca-dir", "", "CA directory to issue the TSA certificate from")
	f.StringVar(&certFile, "cert", "", "PEM TSA certificate (then its issuers) issued elsewhere")
	f.StringVar(&keyFile, "key", "", "PEM private key of --cert (mode 0600)")
	f.StringVar(&policy, "policy", "", "TSA policy OID (default: a random OID under 2.25)")
	f.DurationVar(&accuracy, "accuracy", timestamp.DefaultAccuracy, "genTime accuracy written in tokens")
	f.StringVar(&keyAlg, "key-type", "ecdsa-p256", "key algorithm with --ca-dir: ecdsa-p256, rsa-2048, rsa-3072, rsa-4096")
	operatorFlag(cmd, &operator)
	requireFlags(cmd, "dir")
	return cmd
}

func newTSAServeCmd() *cobra.Command {
	var dir, listen, addrFile string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve RFC 3161 over HTTP POST at / and /tsa (application/timestamp-query), with /healthz and /metrics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log := daemon.Logger()
			reg := daemon.NewRegistry()
			srv, ledger, err := timestamp.OpenDir(dir, log, reg)
			if err != nil {
				return err
			}
			defer ledger.Close()
			mux := daemon.NewMux(reg, ledger.Check)
			mux.Handle("/", srv)
			ln, err := daemon.Listen(ctx, log, "tsa", listen)
			if err != nil {
				return err
			}
			if err := daemon.WriteAddrFile(addrFile, map[string]string{"tsa": ln.Addr().String()}); err != nil {
				ln.Close()
				return err
			}
			cert := srv.Certificate()
			log.Info("TSA ready", "subject", cert.Subject.String(), "fingerprint", pki.Fingerprint(cert))
			err = daemon.ServeHTTP(ctx, log, ln, mux)
			log.Info("TSA stopped")
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "TSA directory made by 'tsa init'")
	f.StringVar(&listen, "listen", "127.0.0.1:3161", "listen address (port 0 picks one)")
	f.StringVar(&addrFile, "addr-file", "", `write {"tsa": "host:port"} here once listening`)
	requireFlags(cmd, "dir")
	return cmd
}

// digestFlags reads --data FILE or --digest HEX with --hash.
func digestOf(dataFile, digestHex, hashName string) ([]byte, crypto.Hash, error) {
	h, err := timestamp.ParseHashName(hashName)
	if err != nil {
		return nil, 0, fmt.Errorf("--hash: %w", err)
	}
	switch {
	case dataFile != "" && digestHex != "":
		return nil, 0, errors.New("give --data or --digest, not both")
	case dataFile != "":
		f, err := os.Open(dataFile)
		if err != nil {
			return nil, 0, err
		}
		defer f.Close()
		hh := h.New()
		if _, err := io.Copy(hh, f); err != nil {
			return nil, 0, err
		}
		return hh.Sum(nil), h, nil
	case digestHex != "":
		d, err := hex.DecodeString(digestHex)
		if err != nil {
			return nil, 0, fmt.Errorf("--digest: %w", err)
		}
		return d, h, timestamp.CheckHash(h, d)
	}
	return nil, 0, errors.New("give --data FILE or --digest HEX")
}

func loadRoots(caFile string) (*x509.CertPool, error) {
	certs, err := pki.LoadCertificates(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

func newTSARequestCmd() *cobra.Command {
	var url, dataFile, digestHex, hashName, caFile, out string
	cmd := &cobra.Command{
		Use:   "request",
		Short: "Ask a TSA for a token over a file (or digest), verify it, write the DER token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			digest, h, err := digestOf(dataFile, digestHex, hashName)
			if err != nil {
				return err
			}
			roots, err := loadRoots(caFile)
			if err != nil {
				return err
			}
			c, err := timestamp.NewClient(timestamp.ClientConfig{URL: url, Roots: roots})
			if err != nil {
				return err
			}
			tok, err := c.Stamp(cmd.Context(), digest, h)
			if err != nil {
				return err
			}
			if err := pki.WriteFileAtomic(out, tok.DER, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s: genTime %s, serial %s, policy %s\n", out,
				tok.Time.Format(time.RFC3339), tok.Serial.Text(16), tok.Policy)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&url, "url", "", "TSA URL, e.g. http://127.0.0.1:3161/")
	f.StringVar(&dataFile, "data", "", "file to stamp (hashed here; only the hash is sent)")
	f.StringVar(&digestHex, "digest", "", "hex digest to stamp instead of --data")
	f.StringVar(&hashName, "hash", "sha256", "sha256, sha384 or sha512")
	f.StringVar(&caFile, "ca", "", "PEM roots the TSA must chain to (e.g. the CA's ca.pem)")
	f.StringVar(&out, "out", "", "where to write the DER TimeStampToken")
	requireFlags(cmd, "url", "ca", "out")
	return cmd
}

func newTSAVerifyCmd() *cobra.Command {
	var in, dataFile, digestHex, hashName, caFile, untrusted string
	var reply bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verify a token (or, with --reply, a TimeStampResp such as openssl's .tsr) over a file, offline",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			digest, h, err := digestOf(dataFile, digestHex, hashName)
			if err != nil {
				return err
			}
			roots, err := loadRoots(caFile)
			if err != nil {
				return err
			}
			der, err := os.ReadFile(in)
			if err != nil {
				return err
			}
			if reply {
				if der, err = timestamp.TokenFromReply(der); err != nil {
					return err
				}
			}
			opts := timestamp.VerifyOptions{Hash: h}
			if untrusted != "" {
				if opts.Certificates, err = pki.LoadCertificates(untrusted); err != nil {
					return fmt.Errorf("--untrusted: %w", err)
				}
			}
			info, err := timestamp.VerifyToken(der, digest, roots, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Verification: OK\ngenTime %s (accuracy %s)\nserial %s\npolicy %s\nTSA %s\n",
				info.Time.Format(time.RFC3339), info.Accuracy, info.Serial.Text(16), info.Policy, info.TSA.Subject)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&in, "in", "", "DER token (or reply with --reply)")
	f.BoolVar(&reply, "reply", false, "--in is a TimeStampResp, not a bare token")
	f.StringVar(&dataFile, "data", "", "the stamped file")
	f.StringVar(&digestHex, "digest", "", "hex digest instead of --data")
	f.StringVar(&hashName, "hash", "sha256", "sha256, sha384 or sha512")
	f.StringVar(&caFile, "ca", "", "PEM roots the TSA must chain to")
	f.StringVar(&untrusted, "untrusted", "", "PEM TSA certificate, for tokens requested without certReq")
	requireFlags(cmd, "in", "ca")
	return cmd
}
