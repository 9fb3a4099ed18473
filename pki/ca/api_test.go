package ca

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
)

func newTestAPI(t *testing.T) (*CA, *Client, string) {
	t.Helper()
	c := newTestCA(t)
	h, err := NewAPI(APIConfig{CA: c, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cl, err := NewClient(srv.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, cl, srv.URL
}

func TestEnrollThroughAPI(t *testing.T) {
	c, cl, _ := newTestAPI(t)
	ctx := t.Context()
	kd := KeyDir(filepath.Join(t.TempDir(), "keys"))
	if _, err := kd.Generate(testMember, pki.UsageAuth, pki.ECDSAP256); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if fi, err := os.Stat(kd.KeyPath(pki.UsageAuth)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi, err)
	}

	// Submitted, not decided yet.
	_, id, err := kd.Enroll(ctx, cl, pki.ClientID{}, pki.UsageAuth, 0, 0)
	if !errors.Is(err, ErrPending) || id == "" {
		t.Fatalf("Enroll before approval = %q, %v; want ErrPending", id, err)
	}
	pending, err := c.Pending(ctx)
	if err != nil || len(pending) != 1 || pending[0].ID != id || pending[0].Member != testMember.String() || pending[0].Usage != pki.UsageAuth {
		t.Fatalf("Pending = %+v, %v", pending, err)
	}
	if !strings.HasPrefix(pending[0].SubmittedBy, "127.0.0.1:") {
		t.Errorf("SubmittedBy = %q, want the client's address", pending[0].SubmittedBy)
	}
	st, err := cl.Get(ctx, id)
	if err != nil || st.State != StatePending || st.CertificateChain != "" {
		t.Fatalf("Get(pending) = %+v, %v", st, err)
	}

	// Approved while the member waits; the second run resumes the same enrollment.
	go func() {
		time.Sleep(100 * time.Millisecond)
		if _, err := c.Approve(ctx, id, "admin", 0); err != nil {
			t.Errorf("Approve: %v", err)
		}
	}()
	chain, id2, err := kd.Enroll(ctx, cl, pki.ClientID{}, pki.UsageAuth, 10*time.Second, 20*time.Millisecond)
	if err != nil {
		t.Fatalf("Enroll after approval: %v", err)
	}
	if id2 != id {
		t.Errorf("second Enroll used enrollment %s, want %s (resume)", id2, id)
	}
	if len(chain) != 2 || !chain[1].Equal(c.Certificate()) {
		t.Fatalf("chain = %d certificates", len(chain))
	}
	if m, err := pki.MemberFromCert(chain[0]); err != nil || m != testMember {
		t.Errorf("MemberFromCert = %v, %v", m, err)
	}
	stored, err := pki.LoadCertificates(kd.CertPath(pki.UsageAuth))
	if err != nil || len(stored) != 2 || !stored[0].Equal(chain[0]) {
		t.Fatalf("stored chain: %v, %v", stored, err)
	}
	if pending, _ := c.Pending(ctx); len(pending) != 0 {
		t.Errorf("still pending: %+v", pending)
	}

	// The stored chain imports back into the same directory.
	data, _ := os.ReadFile(kd.CertPath(pki.UsageAuth))
	if u, err := kd.Import(data); err != nil || u != pki.UsageAuth {
		t.Errorf("Import = %v, %v; want auth", u, err)
	}
}

func TestEnrollRejected(t *testing.T) {
	c, cl, _ := newTestAPI(t)
	ctx := t.Context()
	kd := KeyDir(t.TempDir())
	csr, err := kd.Generate(testMember, pki.UsageSign, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	id, err := cl.Submit(ctx, csr, testMember, pki.UsageSign)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reject(ctx, id, "admin", "not a member of this federation"); err != nil {
		t.Fatal(err)
	}
	_, err = cl.Wait(ctx, id, 10*time.Millisecond)
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "not a member of this federation") {
		t.Errorf("Wait = %v, want ErrRejected with the reason", err)
	}
	st, err := cl.Get(ctx, id)
	if err != nil || st.State != StateRejected || st.DecidedAt == nil {
		t.Errorf("Get(rejected) = %+v, %v", st, err)
	}
}

func TestAPIErrors(t *testing.T) {
	_, _, base := newTestAPI(t)
	good := string(newCSR(t, testMember, pki.UsageAuth))
	body := func(csr, member, usage string) string {
		b, _ := json.Marshal(map[string]string{"csr": csr, "member": member, "usage": usage})
		return string(b)
	}
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		status      int
		code        string
	}{
		{"wrong method", http.MethodPut, EnrollmentsPath, "application/json", body(good, "EE/GOV/70000001", "auth"), 405, "method_not_allowed"},
		{"no content type", http.MethodPost, EnrollmentsPath, "", body(good, "EE/GOV/70000001", "auth"), 415, "unsupported_media_type"},
		{"too large", http.MethodPost, EnrollmentsPath, "application/json", `{"csr":"` + strings.Repeat("A", MaxRequestBody) + `"}`, 413, "request_too_large"},
		{"not JSON", http.MethodPost, EnrollmentsPath, "application/json", "csr=x", 400, "invalid_request"},
		{"unknown field", http.MethodPost, EnrollmentsPath, "application/json", `{"csr":"x","member":"EE/GOV/1","usage":"auth","admin":true}`, 400, "invalid_request"},
		{"trailing data", http.MethodPost, EnrollmentsPath, "application/json", body(good, "EE/GOV/70000001", "auth") + "{}", 400, "invalid_request"},
		{"missing csr", http.MethodPost, EnrollmentsPath, "application/json", body("", "EE/GOV/70000001", "auth"), 400, "invalid_request"},
		{"garbage csr", http.MethodPost, EnrollmentsPath, "application/json", body("garbage", "EE/GOV/70000001", "auth"), 400, "invalid_csr"},
		{"bad member", http.MethodPost, EnrollmentsPath, "application/json", body(good, "EE/GOV", "auth"), 400, "invalid_member"},
		{"subsystem", http.MethodPost, EnrollmentsPath, "application/json", body(good, "EE/GOV/70000001/SUB", "auth"), 400, "invalid_member"},
		{"other member", http.MethodPost, EnrollmentsPath, "application/json", body(good, "EE/GOV/70000002", "auth"), 400, "member_mismatch"},
		{"tsa usage", http.MethodPost, EnrollmentsPath, "application/json", body(good, "EE/GOV/70000001", "tsa"), 400, "invalid_usage"},
		{"unknown usage", http.MethodPost, EnrollmentsPath, "application/json", body(good, "EE/GOV/70000001", "root"), 400, "invalid_usage"},
		{"unknown id", http.MethodGet, EnrollmentsPath + "/6f1c1b0e-6a0e-4a8e-9d59-2a0f4f7f1c11", "", "", 404, "not_found"},
		{"not a uuid", http.MethodGet, EnrollmentsPath + "/..%2f..%2fetc", "", "", 404, "not_found"},
		{"post to id", http.MethodPost, EnrollmentsPath + "/6f1c1b0e-6a0e-4a8e-9d59-2a0f4f7f1c11", "application/json", "{}", 405, "method_not_allowed"},
		{"unknown path", http.MethodGet, "/api/v1/certificates", "", "", 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, base+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.status, data)
			}
			var e ErrorResponse
			if err := json.Unmarshal(data, &e); err != nil {
				t.Fatalf("error body %q: %v", data, err)
			}
			if e.Code != tt.code || e.Type == "" || e.Message == "" || e.Detail == "" || e.Error == "" {
				t.Errorf("error body = %+v, want code %q and every field set", e, tt.code)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

func TestOpenAPI(t *testing.T) {
	_, _, base := newTestAPI(t)
	resp, err := http.Get(base + OpenAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || doc["openapi"] == nil {
		t.Errorf("openapi.json: %v, %v", doc, err)
	}
}

func TestKeyDirGenerateNeverOverwrites(t *testing.T) {
	kd := KeyDir(t.TempDir())
	if _, err := kd.Generate(testMember, pki.UsageAuth, pki.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(kd.KeyPath(pki.UsageAuth))
	if _, err := kd.Generate(testMember, pki.UsageAuth, pki.RSA2048); !errors.Is(err, ErrExists) {
		t.Errorf("second Generate = %v, want ErrExists", err)
	}
	after, _ := os.ReadFile(kd.KeyPath(pki.UsageAuth))
	if string(before) != string(after) {
		t.Error("key was overwritten")
	}
	if _, err := kd.Generate(testMember, pki.UsageSign, pki.ECDSAP256); err != nil {
		t.Errorf("Generate sign next to auth: %v", err)
	}
	for _, bad := range []pki.ClientID{{Instance: "EE", Class: "GOV", Member: "1", Subsystem: "S"}, {Instance: "E E", Class: "GOV", Member: "1"}} {
		if _, err := KeyDir(t.TempDir()).Generate(bad, pki.UsageAuth, ""); !errors.Is(err, pki.ErrBadIdentifier) {
			t.Errorf("Generate(%v) = %v, want ErrBadIdentifier", bad, err)
		}
	}
	if _, err := KeyDir(t.TempDir()).Generate(testMember, "email", ""); !errors.Is(err, pki.ErrUnknownUsage) {
		t.Errorf("Generate(email) = %v, want ErrUnknownUsage", err)
	}
}

func TestKeyDirImport(t *testing.T) {
	kd := KeyDir(t.TempDir())
	if _, err := kd.Generate(testMember, pki.UsageSign, pki.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	key, err := pki.LoadPrivateKey(kd.KeyPath(pki.UsageSign))
	if err != nil {
		t.Fatal(err)
	}
	other := pkitest.NewCA(t, "Other CA")
	// A certificate for our key, issued elsewhere (pkitest makes its own keys,
	// so sign our CSR through a real CA).
	c := newTestCA(t)
	csr, _ := os.ReadFile(kd.CSRPath(pki.UsageSign))
	cert, err := c.Sign(t.Context(), SignRequest{CSR: csr, Member: testMember, Usage: pki.UsageSign})
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		t.Fatal("issued for another key")
	}
	if u, err := kd.Import(pki.EncodeCertificatesPEM(cert, c.Certificate())); err != nil || u != pki.UsageSign {
		t.Fatalf("Import = %v, %v", u, err)
	}
	stranger := other.Issue(t, testMember, pki.UsageSign)
	if _, err := kd.Import(pki.EncodeCertificatesPEM(stranger.Cert)); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("Import of a certificate for another key = %v, want ErrKeyMismatch", err)
	}
	if _, err := kd.Import(pki.EncodeCertificatesPEM(cert, other.Cert)); err == nil {
		t.Errorf("Import of a broken chain succeeded")
	}
	if _, err := kd.Import([]byte("junk")); err == nil {
		t.Errorf("Import of junk succeeded")
	}
}

// TestEnrollResubmitsUnknown: an enrollment id the CA does not know (a new
// CA) is replaced by a new submission.
func TestEnrollResubmitsUnknown(t *testing.T) {
	c, cl, _ := newTestAPI(t)
	kd := KeyDir(t.TempDir())
	if _, err := kd.Generate(testMember, pki.UsageAuth, ""); err != nil {
		t.Fatal(err)
	}
	stale := "6f1c1b0e-6a0e-4a8e-9d59-2a0f4f7f1c11"
	if err := os.WriteFile(kd.EnrollmentPath(pki.UsageAuth), []byte(stale+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, id, err := kd.Enroll(t.Context(), cl, pki.ClientID{}, pki.UsageAuth, 0, 0)
	if !errors.Is(err, ErrPending) || id == stale || id == "" {
		t.Fatalf("Enroll with a stale id = %q, %v; want a new pending enrollment", id, err)
	}
	if p, err := c.Pending(t.Context()); err != nil || len(p) != 1 || p[0].ID != id {
		t.Errorf("Pending = %+v, %v", p, err)
	}
}
