package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	xocsp "golang.org/x/crypto/ocsp"

	"github.com/passerelle/passerelle/internal/daemon"
	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ca"
)

func newDemoCmd() *cobra.Command {
	var dir string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the scripted walk-through end to end; exits non-zero on failure",
		Long: `Run the scripted walk-through in-process, in a temporary directory (or --dir, kept):
for now the PKI: ca init, ca serve on 127.0.0.1:0, keys generate for a member, enroll,
approve, fetch the certificate, OCSP good, revoke, OCSP revoked. Needs only Go.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				tmp, err := os.MkdirTemp("", "passerelle-demo-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				dir = tmp
			}
			log := slog.New(slog.DiscardHandler)
			if verbose {
				log = daemon.Logger()
			}
			d := &demo{dir: dir, out: cmd.OutOrStdout(), log: log}
			defer d.close()
			return d.run(cmd.Context(), pkiSteps())
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "work here and keep the files (default: a temporary directory, removed)")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "show the servers' JSON logs on stderr")
	return cmd
}

// demoStep is one step of the walk-through; it returns a one-line summary.
type demoStep struct {
	name string
	run  func(ctx context.Context, d *demo) (string, error)
}

// demo is the walk-through's shared state.
type demo struct {
	dir string
	out io.Writer
	log *slog.Logger

	stops []func()

	caDir   string
	ca      *ca.CA // the server's handle on the CA
	caURL   string
	keys    ca.KeyDir
	member  pki.ClientID
	enrollm string
	chain   []*x509.Certificate
}

func (d *demo) run(ctx context.Context, steps []demoStep) error {
	start := time.Now()
	for i, s := range steps {
		t := time.Now()
		summary, err := s.run(ctx, d)
		if err != nil {
			fmt.Fprintf(d.out, "FAIL %2d. %s: %v\n", i+1, s.name, err)
			return fmt.Errorf("demo step %q: %w", s.name, err)
		}
		fmt.Fprintf(d.out, "ok   %2d. %-22s %s (%v)\n", i+1, s.name, summary, time.Since(t).Round(time.Millisecond))
	}
	fmt.Fprintf(d.out, "demo passed: %d steps in %v\n", len(steps), time.Since(start).Round(time.Millisecond))
	return nil
}

func (d *demo) close() {
	for i := len(d.stops) - 1; i >= 0; i-- {
		d.stops[i]()
	}
}

// admin opens the CA directory the way the administrator's commands do,
// beside the running server.
func (d *demo) admin() (*ca.CA, error) { return ca.Open(d.caDir) }

func pkiSteps() []demoStep {
	return []demoStep{
		{"ca init", demoCAInit},
		{"ca serve", demoCAServe},
		{"keys generate", demoKeysGenerate},
		{"keys enroll (submit)", demoEnrollSubmit},
		{"ca pending + approve", demoApprove},
		{"keys enroll (fetch)", demoEnrollFetch},
		{"verify chain", demoVerify},
		{"ocsp: good", func(ctx context.Context, d *demo) (string, error) { return d.checkOCSP(ctx, xocsp.Good) }},
		{"ca revoke", demoRevoke},
		{"ocsp: revoked", func(ctx context.Context, d *demo) (string, error) { return d.checkOCSP(ctx, xocsp.Revoked) }},
	}
}

func demoCAInit(ctx context.Context, d *demo) (string, error) {
	d.caDir = filepath.Join(d.dir, "ca")
	c, err := ca.Init(ctx, ca.InitConfig{Dir: d.caDir, Instance: "DEMO", Operator: "demo"})
	if err != nil {
		return "", err
	}
	d.ca = c
	return fmt.Sprintf("root %q in %s", c.Certificate().Subject.CommonName, d.caDir), nil
}

func demoCAServe(ctx context.Context, d *demo) (string, error) {
	ln, err := daemon.Listen(ctx, d.log, "ca", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	d.caURL = "http://" + ln.Addr().String()
	if err := d.ca.SetOCSPURL(ctx, d.caURL+"/ocsp", "demo"); err != nil {
		ln.Close()
		return "", err
	}
	h, err := caHandler(d.ca, d.log, prometheus.NewRegistry(), nil, 0)
	if err != nil {
		ln.Close()
		return "", err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- daemon.ServeHTTP(sctx, d.log, ln, h) }()
	d.stops = append(d.stops, func() { cancel(); <-done })
	if err := waitHealthy(ctx, d.caURL+"/healthz"); err != nil {
		return "", err
	}
	return "OCSP responder and enrollment API on " + d.caURL, nil
}

func waitHealthy(ctx context.Context, url string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func demoKeysGenerate(_ context.Context, d *demo) (string, error) {
	d.member = pki.ClientID{Instance: "DEMO", Class: "GOV", Member: "70000001"}
	d.keys = ca.KeyDir(filepath.Join(d.dir, "member-keys"))
	if _, err := d.keys.Generate(d.member, pki.UsageAuth, pki.ECDSAP256); err != nil {
		return "", err
	}
	return fmt.Sprintf("ECDSA P-256 key and CSR for %s in %s", d.member, d.keys), nil
}

func demoEnrollSubmit(ctx context.Context, d *demo) (string, error) {
	client, err := ca.NewClient(d.caURL, nil)
	if err != nil {
		return "", err
	}
	_, id, err := d.keys.Enroll(ctx, client, pki.ClientID{}, pki.UsageAuth, 0, 0)
	if !errors.Is(err, ca.ErrPending) {
		return "", fmt.Errorf("want a pending enrollment, got %v", err)
	}
	d.enrollm = id
	return "enrollment " + id + " pending", nil
}

func demoApprove(ctx context.Context, d *demo) (string, error) {
	admin, err := d.admin()
	if err != nil {
		return "", err
	}
	defer admin.Close()
	pending, err := admin.Pending(ctx)
	if err != nil {
		return "", err
	}
	if len(pending) != 1 || pending[0].ID != d.enrollm {
		return "", fmt.Errorf("pending = %d enrollments, want %s alone", len(pending), d.enrollm)
	}
	cert, err := admin.Approve(ctx, d.enrollm, "demo-admin", 0)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s for %s approved: serial %s", pending[0].Usage, pending[0].Member, cert.SerialNumber.Text(16)), nil
}

func demoEnrollFetch(ctx context.Context, d *demo) (string, error) {
	client, err := ca.NewClient(d.caURL, nil)
	if err != nil {
		return "", err
	}
	chain, _, err := d.keys.Enroll(ctx, client, pki.ClientID{}, pki.UsageAuth, 10*time.Second, 100*time.Millisecond)
	if err != nil {
		return "", err
	}
	d.chain = chain
	return fmt.Sprintf("chain of %d certificates stored in %s", len(chain), d.keys.CertPath(pki.UsageAuth)), nil
}

func demoVerify(_ context.Context, d *demo) (string, error) {
	roots := x509.NewCertPool()
	roots.AddCert(d.ca.Certificate())
	leaf := d.chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", err
	}
	m, err := pki.MemberFromCert(leaf)
	if err != nil {
		return "", err
	}
	if m != d.member {
		return "", fmt.Errorf("certificate binds %s, want %s", m, d.member)
	}
	return fmt.Sprintf("chains to the root, TLS client usage, binds %s (%s)", m, pki.MemberURI(m)), nil
}

func (d *demo) checkOCSP(ctx context.Context, want int) (string, error) {
	leaf, issuer := d.chain[0], d.ca.Certificate()
	if len(leaf.OCSPServer) == 0 {
		return "", errors.New("certificate names no OCSP responder")
	}
	reqDER, err := xocsp.CreateRequest(leaf, issuer, nil)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, leaf.OCSPServer[0], bytes.NewReader(reqDER))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("OCSP responder answered %s", resp.Status)
	}
	r, err := xocsp.ParseResponseForCert(body, leaf, issuer)
	if err != nil {
		return "", fmt.Errorf("OCSP response: %w", err)
	}
	names := map[int]string{xocsp.Good: "good", xocsp.Revoked: "revoked", xocsp.Unknown: "unknown"}
	if r.Status != want {
		return "", fmt.Errorf("OCSP status %s, want %s", names[r.Status], names[want])
	}
	summary := fmt.Sprintf("%s, signed by the CA, thisUpdate %s, nextUpdate %s", names[r.Status],
		r.ThisUpdate.UTC().Format(time.TimeOnly), r.NextUpdate.UTC().Format(time.TimeOnly))
	if r.Status == xocsp.Revoked {
		summary += fmt.Sprintf(", reason %s", ca.Reason(r.RevocationReason))
	}
	return summary, nil
}

func demoRevoke(ctx context.Context, d *demo) (string, error) {
	admin, err := d.admin()
	if err != nil {
		return "", err
	}
	defer admin.Close()
	if err := admin.Revoke(ctx, d.chain[0].SerialNumber, ca.ReasonKeyCompromise, "demo-admin"); err != nil {
		return "", err
	}
	return "serial " + d.chain[0].SerialNumber.Text(16) + " revoked (keyCompromise)", nil
}
