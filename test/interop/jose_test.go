package interop

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
	"github.com/passerelle/passerelle/rest"
)

// joseNode returns the path of node once the jose package is installed in
// jose/ (running npm ci there if needed), skipping the test when node, npm
// or the package is missing – failing under CI=true.
func joseNode(t *testing.T) string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf(format+" (CI=true requires it; run make deps)", args...)
		}
		t.Skipf(format+"; run make deps", args...)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node not found: %v", err)
	}
	if _, err := os.Stat(filepath.Join("jose", "node_modules", "jose", "package.json")); err != nil {
		npm, lerr := exec.LookPath("npm")
		if lerr != nil {
			missing("the jose npm package is not installed and npm is not found: %v", lerr)
		}
		cmd := exec.CommandContext(t.Context(), npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = "jose"
		if out, err := cmd.CombinedOutput(); err != nil {
			missing("npm ci in test/interop/jose failed: %v\n%s", err, out)
		}
	}
	return node
}

type joseResult struct {
	Alg     string         `json:"alg"`
	Typ     string         `json:"typ"`
	Payload map[string]any `json:"payload"`
}

// joseVerify runs verify.mjs on compact and reports whether jose accepted it.
func joseVerify(t *testing.T, node, compact string) (joseResult, bool, string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "msg.jws")
	if err := os.WriteFile(f, []byte(compact), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), node, "verify.mjs", f)
	cmd.Dir = "jose"
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("running node: %v", err)
		}
		return joseResult{}, false, stderr.String()
	}
	var res joseResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("verify.mjs output %q: %v", out, err)
	}
	return res, true, stderr.String()
}

// TestJoseVerifiesOurJWS: requests and responses signed by package rest
// verify with npm's jose (key from the x5c leaf), and altered ones do not.
func TestJoseVerifiesOurJWS(t *testing.T) {
	node := joseNode(t)
	client := pki.ClientID{Instance: "PASS", Class: "GOV", Member: "1234", Subsystem: "CLIENT"}
	ca := pkitest.NewCA(t, "jose interop CA")
	body := []byte(`{"name":"doggie","note":"é ü ✓"}`)
	r := httptest.NewRequest(http.MethodPost, "/r1/PASS/GOV/5678/PETSTORE/petstore/v2/pets?lang=fr", strings.NewReader(string(body)))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Road-Client", client.String())
	r.Header.Set("X-Road-Id", "6f1c1a52-0c8c-4a3c-9d55-6a0e3e0d8e11")
	for _, tc := range []struct {
		name string
		alg  pki.KeyAlgorithm
		want string
	}{
		{"ES256", pki.ECDSAP256, "ES256"},
		{"PS256", pki.RSA2048, "PS256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf := ca.Issue(t, client.MemberID(), pki.UsageSign, pkitest.WithKey(tc.alg))
			signer, err := rest.NewSigner(leaf.Key, leaf.Chain)
			if err != nil {
				t.Fatal(err)
			}
			d, _, err := rest.DescribeRequest(r, rest.DigestBytes(body))
			if err != nil {
				t.Fatal(err)
			}
			reqJWS, err := signer.SignRequest(t.Context(), &d, []byte{0x30, 0x03, 0x0a, 0x01, 0x00})
			if err != nil {
				t.Fatal(err)
			}
			resp := rest.DescribeResponse(&d, reqJWS, http.StatusOK, http.Header{"Content-Type": {"application/json"}}, rest.DigestBytes(body))
			respJWS, err := signer.SignResponse(t.Context(), &resp, nil)
			if err != nil {
				t.Fatal(err)
			}

			for _, m := range []struct {
				name, jws, typ, kind string
			}{
				{"request", reqJWS, rest.TypRequest, "request"},
				{"response", respJWS, rest.TypResponse, "response"},
			} {
				res, ok, stderr := joseVerify(t, node, m.jws)
				if !ok {
					t.Fatalf("jose refused our %s %s JWS: %s", tc.name, m.name, stderr)
				}
				if res.Alg != tc.want || res.Typ != m.typ || res.Payload["kind"] != m.kind || res.Payload["id"] != d.ID {
					t.Errorf("jose read %+v, want alg %s typ %s kind %s id %s", res, tc.want, m.typ, m.kind, d.ID)
				}
			}

			parts := strings.Split(reqJWS, ".")
			flip := func(s string, i int) string {
				b := []byte(s)
				b[i] ^= 'A' ^ 'B'
				if b[i] == s[i] || !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", rune(b[i])) {
					b[i] = 'A'
					if s[i] == 'A' {
						b[i] = 'B'
					}
				}
				return string(b)
			}
			for _, bad := range []struct{ name, jws string }{
				{"payload altered", parts[0] + "." + flip(parts[1], 30) + "." + parts[2]},
				{"signature altered", parts[0] + "." + parts[1] + "." + flip(parts[2], 10)},
				{"response payload under request signature", parts[0] + "." + strings.Split(respJWS, ".")[1] + "." + parts[2]},
			} {
				if _, ok, _ := joseVerify(t, node, bad.jws); ok {
					t.Errorf("jose accepted a %s JWS (%s)", tc.name, bad.name)
				}
			}
		})
	}
}
