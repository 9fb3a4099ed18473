package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/internal/daemon"
	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ca"
	"github.com/passerelle/passerelle/pki/ocsp"
)

func newCACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Certificate authority: issuance, revocation, enrollment, OCSP responder",
	}
	cmd.AddCommand(newCAInitCmd(), newCAServeCmd(), newCASignCmd(), newCARevokeCmd(),
		newCAListCmd(), newCAPendingCmd(), newCAApproveCmd(), newCARejectCmd())
	return cmd
}

// operatorFlag adds --operator, recorded in the CA's audit log.
func operatorFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "operator", defaultOperator(), "who does this, for the audit log")
}

func defaultOperator() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

func requireFlags(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		cmd.MarkFlagRequired(n)
	}
}

func newCAInitCmd() *cobra.Command {
	var cfg ca.InitConfig
	var key string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Make a root CA: DIR/ca.pem, its key DIR/ca-key.pem (0600), the certificate database DIR/ca.db",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Key = pki.KeyAlgorithm(key)
			c, err := ca.Init(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			cert := c.Certificate()
			fmt.Fprintf(cmd.OutOrStdout(), "CA %q initialised in %s\n  certificate %s (serial %s, valid until %s)\n  SHA-256 fingerprint %s\n",
				cert.Subject.CommonName, cfg.Dir, c.Dir()+"/"+ca.CertFile, cert.SerialNumber.Text(16),
				cert.NotAfter.UTC().Format(time.RFC3339), pki.Fingerprint(cert))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "dir", "", "CA directory (created, must not hold a CA)")
	f.StringVar(&cfg.Instance, "instance", "", "federation instance, e.g. EE")
	f.StringVar(&cfg.Name, "name", "", `CA common name (default "Passerelle INSTANCE Root CA")`)
	f.StringVar(&key, "key", "ecdsa-p256", "key algorithm: ecdsa-p256, rsa-2048, rsa-3072, rsa-4096")
	f.StringVar(&cfg.OCSPURL, "ocsp-url", "", "OCSP URL written into issued certificates, e.g. http://ca.example:8888/ocsp")
	operatorFlag(cmd, &cfg.Operator)
	requireFlags(cmd, "dir", "instance")
	return cmd
}

// ocspDelegate is a delegated OCSP signer: a certificate with the OCSPSigning
// EKU issued by the CA (ca sign --usage ocsp) and its key.
type ocspDelegate struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func loadOCSPDelegate(certFile, keyFile string) (*ocspDelegate, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("--ocsp-cert and --ocsp-key go together")
	}
	certs, err := pki.LoadCertificates(certFile)
	if err != nil {
		return nil, fmt.Errorf("--ocsp-cert: %w", err)
	}
	key, err := pki.LoadPrivateKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("--ocsp-key: %w", err)
	}
	return &ocspDelegate{cert: certs[0], key: key}, nil
}

// caHandler is what `ca serve` serves: the OCSP responder at /ocsp (GET
// /ocsp/{base64} and POST /ocsp), the enrollment API under /api/v1/,
// /healthz and /metrics.
func caHandler(c *ca.CA, log *slog.Logger, reg *prometheus.Registry, delegate *ocspDelegate, ocspValidity time.Duration) (http.Handler, error) {
	rc := ocsp.ResponderConfig{Issuer: c.Certificate(), Signer: c.Signer(), Source: c, Validity: ocspValidity, Log: log}
	if delegate != nil {
		rc.Signer, rc.SignerCert = delegate.key, delegate.cert
	}
	responder, err := ocsp.NewResponder(rc)
	if err != nil {
		return nil, err
	}
	api, err := ca.NewAPI(ca.APIConfig{CA: c, Log: log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	mux := daemon.NewMux(reg, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := c.Settings(ctx)
		return err
	})
	mux.Handle("/api/v1/", api)
	// Route, not the mux, dispatches /ocsp: ServeMux cleans paths, which
	// would corrupt a GET request's base64 containing "//".
	return responder.Route(mux), nil
}

func newCAServeCmd() *cobra.Command {
	var (
		dir, listen, addrFile, ocspURL, ocspCert, ocspKey, operator string
		ocspValidity                                                time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the OCSP responder (/ocsp) and the enrollment API (/api/v1/enrollments)",
		Long: `Serve the OCSP responder (RFC 6960, GET /ocsp/{base64} and POST /ocsp) and the
enrollment API (POST /api/v1/enrollments, GET /api/v1/enrollments/{id}), plus /healthz
and /metrics. The certificate database is opened per transaction, so ca approve,
reject, revoke, sign, list and pending work on the same --dir while this runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log := daemon.Logger()
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			defer c.Close()
			if cmd.Flags().Changed("ocsp-url") {
				if err := c.SetOCSPURL(ctx, ocspURL, operator); err != nil {
					return fmt.Errorf("--ocsp-url: %w", err)
				}
			}
			delegate, err := loadOCSPDelegate(ocspCert, ocspKey)
			if err != nil {
				return err
			}
			reg := daemon.NewRegistry()
			h, err := caHandler(c, log, reg, delegate, ocspValidity)
			if err != nil {
				return err
			}
			ln, err := daemon.Listen(ctx, log, "ca", listen)
			if err != nil {
				return err
			}
			if err := daemon.WriteAddrFile(addrFile, map[string]string{"ca": ln.Addr().String()}); err != nil {
				ln.Close()
				return fmt.Errorf("--addr-file: %w", err)
			}
			s, _ := c.Settings(ctx)
			log.Info("ca serving", "ca", c, "ocspUrl", s.OCSPURL, "delegatedOcspSigner", delegate != nil)
			err = daemon.ServeHTTP(ctx, log, ln, h)
			log.Info("ca stopped")
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "CA directory (made by ca init)")
	f.StringVar(&listen, "listen", "127.0.0.1:8888", "address to listen on (port 0: any free port)")
	f.StringVar(&addrFile, "addr-file", "", "write the bound address here as JSON {\"ca\": \"host:port\"}")
	f.StringVar(&ocspURL, "ocsp-url", "", "set the OCSP URL written into certificates issued from now on (stored in the CA)")
	f.StringVar(&ocspCert, "ocsp-cert", "", "delegated OCSP signer certificate (ca sign --usage ocsp); default: the CA signs")
	f.StringVar(&ocspKey, "ocsp-key", "", "the delegated OCSP signer's key (0600)")
	f.DurationVar(&ocspValidity, "ocsp-validity", time.Hour, "nextUpdate - thisUpdate of OCSP responses")
	operatorFlag(cmd, &operator)
	requireFlags(cmd, "dir")
	return cmd
}

func newCASignCmd() *cobra.Command {
	var (
		dir, csrFile, member, usage, out, operator, cn string
		hosts                                          []string
		validity                                       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "sign",
		Short: "Issue a certificate for a CSR, a member and a usage; writes the chain (leaf, then CA) to --out",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			csr, err := os.ReadFile(csrFile)
			if err != nil {
				return err
			}
			var m pki.ClientID
			if member != "" {
				if m, err = pki.ParseMemberID(member); err != nil {
					return fmt.Errorf("--member: %w", err)
				}
			}
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			defer c.Close()
			cert, err := c.Sign(cmd.Context(), ca.SignRequest{
				CSR: csr, Member: m, Usage: pki.Usage(usage), Operator: operator,
				Validity: validity, Hosts: hosts, CommonName: cn,
			})
			if err != nil {
				return err
			}
			if err := pki.WriteFileAtomic(out, pki.EncodeCertificatesPEM(cert, c.Certificate()), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "issued %s certificate serial %s for %q, valid until %s, written to %s\n",
				usage, cert.SerialNumber.Text(16), cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "CA directory")
	f.StringVar(&csrFile, "csr", "", "certificate signing request (PEM or DER)")
	f.StringVar(&member, "member", "", "member INSTANCE/CLASS/MEMBER bound into the certificate (required for auth and sign)")
	f.StringVar(&usage, "usage", "", "auth, sign, tsa, ocsp, registry or directory")
	f.StringVar(&out, "out", "", "where to write the certificate chain (PEM)")
	f.DurationVar(&validity, "validity", 0, "validity (default 8760h)")
	f.StringSliceVar(&hosts, "host", nil, "DNS name or IP address for auth and registry certificates (repeatable)")
	f.StringVar(&cn, "cn", "", "subject common name (default: the member, or the CSR's)")
	operatorFlag(cmd, &operator)
	requireFlags(cmd, "dir", "csr", "usage", "out")
	return cmd
}

func newCARevokeCmd() *cobra.Command {
	var dir, serial, reason, operator string
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a certificate; the OCSP responder answers revoked at once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := ca.ParseSerial(serial)
			if err != nil {
				return err
			}
			r, err := ca.ParseReason(reason)
			if err != nil {
				return err
			}
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.Revoke(cmd.Context(), n, r, operator); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked serial %s (%s)\n", n.Text(16), r)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "CA directory")
	f.StringVar(&serial, "serial", "", "serial number in hex, as ca list or openssl prints it")
	f.StringVar(&reason, "reason", "unspecified", "RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise")
	operatorFlag(cmd, &operator)
	requireFlags(cmd, "dir", "serial")
	return cmd
}

func newCAListCmd() *cobra.Command {
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List issued certificates: serial, state, usage, member, expiry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			defer c.Close()
			recs, err := c.List(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				type item struct {
					ca.Record
					State string `json:"state"`
					DER   []byte `json:"der,omitempty"`
				}
				items := make([]item, 0, len(recs))
				for _, r := range recs {
					items = append(items, item{Record: r, State: r.State(time.Now())})
				}
				return writeJSON(cmd.OutOrStdout(), items)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERIAL\tSTATE\tUSAGE\tMEMBER\tNOT AFTER\tISSUED BY")
			for _, r := range recs {
				state := r.State(time.Now())
				if r.Revoked {
					state += " (" + r.Reason.String() + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Serial, state, r.Usage, dash(r.Member), r.NotAfter.UTC().Format(time.RFC3339), r.IssuedBy)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "CA directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	requireFlags(cmd, "dir")
	return cmd
}

func newCAPendingCmd() *cobra.Command {
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "pending",
		Short: "List enrollments waiting for approval",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			defer c.Close()
			list, err := c.Pending(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				if list == nil {
					list = []ca.Enrollment{}
				}
				return writeJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tMEMBER\tUSAGE\tSUBMITTED\tFROM\tKEY")
			for _, e := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Member, e.Usage, e.SubmittedAt.Format(time.RFC3339), e.SubmittedBy, csrKey(e.CSR))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "CA directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (with each CSR)")
	requireFlags(cmd, "dir")
	return cmd
}

// csrKey describes a CSR's key, for the administrator deciding on it.
func csrKey(csrPEM string) string {
	csr, err := pki.ParseCSR([]byte(csrPEM))
	if err != nil {
		return "?"
	}
	return csr.PublicKeyAlgorithm.String()
}

func newCAApproveCmd() *cobra.Command {
	var dir, operator string
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "approve ID",
		Short: "Approve a pending enrollment: issue its certificate, which the member then fetches",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			defer c.Close()
			cert, err := c.Approve(cmd.Context(), args[0], operator, validity)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "approved %s: issued serial %s for %q, valid until %s\n",
				args[0], cert.SerialNumber.Text(16), cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "CA directory")
	cmd.Flags().DurationVar(&validity, "validity", 0, "validity (default 8760h)")
	operatorFlag(cmd, &operator)
	requireFlags(cmd, "dir")
	return cmd
}

func newCARejectCmd() *cobra.Command {
	var dir, operator, reason string
	cmd := &cobra.Command{
		Use:   "reject ID",
		Short: "Reject a pending enrollment; the member sees the reason",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.Reject(cmd.Context(), args[0], operator, reason); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rejected %s\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "CA directory")
	cmd.Flags().StringVar(&reason, "reason", "", "why, shown to the member")
	operatorFlag(cmd, &operator)
	requireFlags(cmd, "dir", "reason")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
