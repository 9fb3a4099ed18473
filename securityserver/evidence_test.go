package securityserver_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/sandbox"
	"github.com/passerelle/passerelle/securityserver/evidence"
)

// adminGet GETs path on an institution's admin API with token ("" for none).
func adminGet(t *testing.T, in *sandbox.Institution, token, path string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+in.Addrs["admin"]+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func adminToken(t *testing.T, in *sandbox.Institution) string {
	t.Helper()
	b, err := os.ReadFile(in.AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestEvidenceExport(t *testing.T) {
	sb := restSandbox(t)
	id := "evidence-" + uuid.NewString()
	resp, body := callREST(t, sb, "POST", sandbox.RESTService, "/pets",
		http.Header{"X-Road-Id": {id}, "Content-Type": {"application/json"}}, []byte(`{"name":"Rex"}`))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST = %d %s", resp.StatusCode, body)
	}
	waitEvidence(t, sb, 20*time.Second, id)
	trust, err := evidence.LoadTrust(sb.TrustDir)
	if err != nil {
		t.Fatal(err)
	}
	tok := adminToken(t, sb.Consumer)
	path := evidence.Path(id, pki.ClientID{})

	errTests := []struct {
		name, token, path string
		status            int
		code              string
	}{
		{"no token", "", path, http.StatusUnauthorized, "unauthorized"},
		{"wrong token", strings.Repeat("x", 40), path, http.StatusUnauthorized, "unauthorized"},
		{"unknown exchange", tok, evidence.Path("no-such-"+uuid.NewString(), pki.ClientID{}), http.StatusNotFound, "not_found"},
		{"other client", tok, evidence.Path(id, pki.ClientID{Instance: "SANDBOX", Class: "GOV", Member: "OTHER", Subsystem: "x"}), http.StatusNotFound, "not_found"},
		{"bad client", tok, path + "?client=" + url.QueryEscape("not an id"), http.StatusBadRequest, "bad_request"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := adminGet(t, sb.Consumer, tt.token, tt.path)
			var e struct{ Type, Message, Detail, Code, Error string }
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("%d %s: %v", resp.StatusCode, body, err)
			}
			if resp.StatusCode != tt.status || e.Code != tt.code || e.Type != "Server.Admin."+tt.code || e.Detail == "" || e.Error == "" {
				t.Errorf("GET %s = %d %s, want %d with code %s", tt.path, resp.StatusCode, body, tt.status, tt.code)
			}
		})
	}

	for _, side := range []struct {
		name  string
		in    *sandbox.Institution
		owner string
	}{{"consumer", sb.Consumer, sandbox.ConsumerMember}, {"provider", sb.Provider, sandbox.ProviderMember}} {
		t.Run("export from the "+side.name, func(t *testing.T) {
			resp, body := adminGet(t, side.in, adminToken(t, side.in), evidence.Path(id, pki.ClientID{Instance: "SANDBOX", Class: "GOV", Member: "CONSUMER", Subsystem: "client"}))
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != evidence.ContentType {
				t.Fatalf("GET = %d %s %.200s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			var manifest []byte
			for _, f := range zr.File {
				names = append(names, f.Name)
				if f.Name == evidence.ManifestName {
					rc, _ := f.Open()
					manifest, _ = io.ReadAll(rc)
					rc.Close()
				}
			}
			var m map[string]any
			if err := json.Unmarshal(manifest, &m); err != nil {
				t.Fatalf("manifest.json: %v\n%s", err, manifest)
			}
			want := map[string]any{"version": 1.0, "messageId": id, "client": sandbox.ClientID, "service": sandbox.RESTService, "protocol": "rest",
				"exporter": map[string]any{"owner": side.owner, "side": side.name}}
			for k, v := range want {
				got, _ := json.Marshal(m[k])
				exp, _ := json.Marshal(v)
				if string(got) != string(exp) {
					t.Errorf("manifest %s = %s, want %s", k, got, exp)
				}
			}
			pm, err := evidence.ParseManifest(manifest)
			if err != nil {
				t.Fatal(err)
			}
			var roles []string
			for _, f := range pm.Files {
				roles = append(roles, f.Message+":"+string(f.Role))
				if !slices.Contains(names, f.Name) {
					t.Errorf("manifest lists %s, not in the ZIP", f.Name)
				}
			}
			slices.Sort(roles)
			wantRoles := []string{
				"request:registry.proof", "request:request.body", "request:request.ocsp", "request:request.signature", "request:request.signer_chain",
				"request:timestamp.path", "request:timestamp.token",
				"response:registry.proof", "response:response.body", "response:response.ocsp", "response:response.signature", "response:response.signer_chain",
				"response:timestamp.path", "response:timestamp.token",
			}
			if !slices.Equal(roles, wantRoles) {
				t.Errorf("roles = %v\nwant %v", roles, wantRoles)
			}
			rep, err := evidence.Verify(bytes.NewReader(body), int64(len(body)), trust)
			if err != nil {
				for _, c := range rep.Checks {
					t.Log(c)
				}
				t.Fatalf("Verify = %v", err)
			}
		})
	}
}
