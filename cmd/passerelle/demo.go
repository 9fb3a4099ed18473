package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	xocsp "golang.org/x/crypto/ocsp"

	"github.com/passerelle/passerelle/hashregistry"
	"github.com/passerelle/passerelle/internal/daemon"
	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ca"
	"github.com/passerelle/passerelle/sandbox"
	"github.com/passerelle/passerelle/securityserver/evidence"
	"github.com/passerelle/passerelle/soap"
)

func newDemoCmd() *cobra.Command {
	var dir string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the scripted walk-through end to end; exits non-zero on failure",
		Long: `Run the scripted walk-through in-process, in a temporary directory (or --dir, kept).
Needs only Go (no openssl), takes a few seconds:

  1. the PKI: ca init, ca serve on 127.0.0.1:0, keys generate for a member, enroll,
     approve, fetch the certificate, OCSP good, revoke, OCSP revoked;
  2. the sandbox (CA + OCSP, TSA, hash registry, signed directory, two institutions
     with their security servers, sample services), every port chosen by the OS;
  3. a REST GET, a REST POST and a SOAP getRandom through the two security servers;
  4. waiting (at most 30 s) until every message of those exchanges, in both servers'
     message logs, is timestamped and registered;
  5. each exchange's evidence bundle exported through the consumer server's admin API
     and verified offline, as 'passerelle audit evidence' does;
  6. the registry audited ('passerelle audit registry'), then fully (--full).`,
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
			return runDemo(cmd.Context(), dir, cmd.OutOrStdout(), log)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "work here and keep the files (default: a temporary directory, removed)")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "show the servers' JSON logs on stderr")
	return cmd
}

// runDemo runs the whole walk-through in dir (which must be empty or absent).
func runDemo(ctx context.Context, dir string, out io.Writer, log *slog.Logger) error {
	d := &demo{dir: dir, out: out, log: log}
	defer d.close()
	return d.run(ctx, append(pkiSteps(), exchangeSteps()...))
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

	// The exchange part.
	sb        *sandbox.Sandbox
	exchanges []demoExchange
	auditor   *hashregistry.Auditor
}

// demoExchange is one exchange the demo makes through the sandbox.
type demoExchange struct {
	name   string // "rest-get", "rest-post", "soap"
	id     string // X-Road message id
	bundle string // where its evidence bundle was written
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

// demoWaitEvidence bounds the wait for timestamps and registry receipts.
const demoWaitEvidence = 30 * time.Second

func exchangeSteps() []demoStep {
	steps := []demoStep{
		{"sandbox start", demoSandboxStart},
		{"rest GET", demoRESTGet},
		{"rest POST", demoRESTPost},
		{"soap getRandom", demoSOAP},
		{"timestamp + registry", demoWaitEvidenceStep},
	}
	for _, name := range []string{"rest-get", "rest-post", "soap"} {
		steps = append(steps, demoStep{"evidence " + name, func(ctx context.Context, d *demo) (string, error) { return d.evidence(ctx, name) }})
	}
	return append(steps,
		demoStep{"registry audit", func(ctx context.Context, d *demo) (string, error) { return d.auditRegistry(ctx, false) }},
		demoStep{"registry audit --full", func(ctx context.Context, d *demo) (string, error) { return d.auditRegistry(ctx, true) }},
	)
}

func demoSandboxStart(ctx context.Context, d *demo) (string, error) {
	sb, err := sandbox.Start(ctx, sandbox.Config{Dir: filepath.Join(d.dir, "sandbox"), PortBase: 0, Log: d.log})
	if err != nil {
		return "", err
	}
	d.sb = sb
	d.stops = append(d.stops, func() { sb.Close() })
	return fmt.Sprintf("CA+OCSP, TSA, registry, directory, %s and %s with their security servers; consumer side %s",
		sandbox.ConsumerMember, sandbox.ProviderMember, sb.Info.ConsumerURL), nil
}

// call sends one client request to the consumer side and returns the
// response body, failing on any status but 200.
func (d *demo) call(ctx context.Context, name, method, url, contentType string, hdr http.Header, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s %s: %s %s", method, url, resp.Status, bytes.TrimSpace(b))
	}
	return resp, b, nil
}

func (d *demo) restHeaders(id string) http.Header {
	return http.Header{"X-Road-Client": {d.sb.Info.ClientID}, "X-Road-Id": {id}}
}

func demoRESTGet(ctx context.Context, d *demo) (string, error) {
	id := uuid.NewString()
	url := d.sb.Info.ConsumerURL + "/r1/" + d.sb.Info.RESTService + "/anything?q=1"
	resp, body, err := d.call(ctx, "rest-get", http.MethodGet, url, "", d.restHeaders(id), nil)
	if err != nil {
		return "", err
	}
	var echo sandbox.HelloEcho
	if err := json.Unmarshal(body, &echo); err != nil {
		return "", fmt.Errorf("hello answered %q: %w", body, err)
	}
	if echo.Path != "/anything" || echo.Query != "q=1" {
		return "", fmt.Errorf("hello saw path %q query %q, want /anything q=1", echo.Path, echo.Query)
	}
	d.exchanges = append(d.exchanges, demoExchange{name: "rest-get", id: id})
	return fmt.Sprintf("200; hello saw GET %s?%s; X-Road-Id %s, X-Road-Request-Hash %.16s…", echo.Path, echo.Query, id, resp.Header.Get("X-Road-Request-Hash")), nil
}

func demoRESTPost(ctx context.Context, d *demo) (string, error) {
	id := uuid.NewString()
	url := d.sb.Info.ConsumerURL + "/r1/" + d.sb.Info.RESTService + "/pets"
	sent := []byte(`{"name":"Rex","kind":"dog"}`)
	_, body, err := d.call(ctx, "rest-post", http.MethodPost, url, "application/json", d.restHeaders(id), sent)
	if err != nil {
		return "", err
	}
	if !bytes.Equal(body, sent) {
		return "", fmt.Errorf("hello answered %q, want the body sent back", body)
	}
	d.exchanges = append(d.exchanges, demoExchange{name: "rest-post", id: id})
	return fmt.Sprintf("200; %d-byte JSON body signed, sent, echoed back byte for byte; X-Road-Id %s", len(sent), id), nil
}

func demoSOAP(ctx context.Context, d *demo) (string, error) {
	id := uuid.NewString()
	_, body, err := d.call(ctx, "soap", http.MethodPost, d.sb.Info.ConsumerURL+"/", "text/xml; charset=utf-8", nil, sandbox.GetRandomRequest(id))
	if err != nil {
		return "", err
	}
	env, err := soap.ParseEnvelope("text/xml", body, soap.Limits{})
	if err != nil {
		return "", fmt.Errorf("getRandom answered: %w", err)
	}
	if env.IsFault() || env.Operation().Local != "getRandomResponse" {
		return "", fmt.Errorf("getRandom answered %s", body)
	}
	n := ""
	if i, j := bytes.Index(body, []byte("<data>")), bytes.Index(body, []byte("</data>")); i >= 0 && j > i {
		n = string(body[i+len("<data>") : j])
	}
	d.exchanges = append(d.exchanges, demoExchange{name: "soap", id: id})
	return fmt.Sprintf("200; getRandomResponse data=%s, X-Road headers echoed; messageId %s", n, id), nil
}

// demoWaitEvidenceStep waits until every record of the demo's exchanges, in
// both security servers' logs, has its timestamp and registry receipt.
func demoWaitEvidenceStep(ctx context.Context, d *demo) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, demoWaitEvidence)
	defer cancel()
	for {
		total, missing, err := d.pendingEvidence(ctx)
		if err != nil {
			return "", err
		}
		if missing == "" {
			return fmt.Sprintf("all %d records (both servers' logs) timestamped (RFC 3161, batched) and registered", total), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("after %s still waiting: %s", demoWaitEvidence, missing)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (d *demo) pendingEvidence(ctx context.Context) (total int, missing string, err error) {
	for _, in := range []*sandbox.Institution{d.sb.Consumer, d.sb.Provider} {
		srv := in.Server()
		if srv == nil {
			return 0, "", fmt.Errorf("%s's security server is not running", in.Member)
		}
		for _, ex := range d.exchanges {
			recs, err := srv.Log().ByMessageID(ctx, ex.id, pki.ClientID{})
			if err != nil {
				return 0, "", err
			}
			if len(recs) != 2 {
				return 0, "", fmt.Errorf("%s logged %d records of %s %s, want a request and a response", in.Member, len(recs), ex.name, ex.id)
			}
			for _, r := range recs {
				total++
				if !r.Timestamped() || !r.Registered() {
					missing = fmt.Sprintf("%s's %s of %s (timestamped %v, registered %v)", in.Member, r.Kind, ex.name, r.Timestamped(), r.Registered())
				}
			}
		}
	}
	return total, missing, nil
}

// evidence exports an exchange's bundle through the admin API, as
// `passerelle evidence export` does, and verifies it offline, as
// `passerelle audit evidence` does.
func (d *demo) evidence(ctx context.Context, name string) (string, error) {
	var ex *demoExchange
	for i := range d.exchanges {
		if d.exchanges[i].name == name {
			ex = &d.exchanges[i]
		}
	}
	if ex == nil {
		return "", fmt.Errorf("no %s exchange was made", name)
	}
	tok, err := os.ReadFile(d.sb.Info.AdminTokenFile)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(d.dir, "evidence"), 0o700); err != nil {
		return "", err
	}
	ex.bundle = filepath.Join(d.dir, "evidence", name+".zip")
	n, err := exportEvidence(ctx, d.sb.Info.AdminURL, strings.TrimSpace(string(tok)), ex.id, pki.ClientID{}, ex.bundle)
	if err != nil {
		return "", fmt.Errorf("export: %w", err)
	}
	trust, err := evidence.LoadTrust(d.sb.Info.TrustDir)
	if err != nil {
		return "", err
	}
	rep, err := evidence.VerifyFile(ex.bundle, trust)
	if err != nil {
		var b strings.Builder
		printEvidenceReport(&b, ex.bundle, rep, err)
		return "", fmt.Errorf("%w\n%s", err, b.String())
	}
	return fmt.Sprintf("%d-byte bundle of %d files exported; %d offline checks passed (signatures, chains, members, OCSP, bodies, binding, timestamps, registry)",
		n, len(rep.Manifest.Files), len(rep.Checks)), nil
}

func (d *demo) auditRegistry(ctx context.Context, full bool) (string, error) {
	if d.auditor == nil {
		vkey, err := os.ReadFile(d.sb.Info.RegistryVKey)
		if err != nil {
			return "", err
		}
		v, err := hashregistry.NewVerifier(vkey)
		if err != nil {
			return "", err
		}
		d.auditor = &hashregistry.Auditor{URL: d.sb.Info.RegistryURL, Verifier: v, StateDir: filepath.Join(d.dir, "auditor")}
	}
	rep, err := d.auditor.Audit(ctx, full)
	if err != nil {
		return "", err
	}
	s := fmt.Sprintf("checkpoint signed by %s: %d entries, root %.12s…", d.auditor.Verifier.Name(), rep.Checkpoint.Size, rep.Checkpoint.Hash)
	switch p := rep.Previous; {
	case p == nil:
		s += "; first audit (trust on first use)"
	case p.Size == rep.Checkpoint.Size:
		s += "; same tree as the last audit"
	default:
		s += fmt.Sprintf("; consistent with the last audit's %d entries", p.Size)
	}
	if full {
		s += fmt.Sprintf("; all %d entries fetched, decoded, hashed, root recomputed", rep.EntriesChecked)
	}
	return s, nil
}
