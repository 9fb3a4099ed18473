package securityserver_test

// Running a security server (issue 6), end to end through the sandbox:
// client authentication (none, pinned TLS certificate, bearer JWT, static
// token), access rights granted and revoked through the admin API without
// restart and kept across restarts, method+path rules, the REST
// metaservices, the limits (body, concurrency, headers), HTTPS backends,
// metrics after traffic and /healthz turning unhealthy on a stale OCSP
// response.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/directory"
	"github.com/passerelle/passerelle/pki/pkitest"
	"github.com/passerelle/passerelle/rest"
	"github.com/passerelle/passerelle/sandbox"
	"github.com/passerelle/passerelle/securityserver"
	"github.com/passerelle/passerelle/soap"
)

// adminOf is an admin API client for an institution's running server.
func adminOf(t testing.TB, in *sandbox.Institution) *securityserver.AdminClient {
	t.Helper()
	c, err := securityserver.NewAdminClient("http://"+in.Addrs["admin"], in.AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// consumerCall calls service through the consumer's security server at
// base (http://… or https://…) as client.
func consumerCall(t testing.TB, c *http.Client, base, client, method, service, resource string, hdr http.Header, body []byte) (*http.Response, []byte) {
	t.Helper()
	h := http.Header{rest.HeaderClient: {client}}
	for k, v := range hdr {
		h[http.CanonicalHeaderKey(k)] = v
	}
	return doHTTP(t, c, method, base+"/r1/"+service+resource, h, body)
}

func consumerURL(sb *sandbox.Sandbox) string { return "http://" + sb.Consumer.Addrs["consumer"] }

func wantStatus(t testing.TB, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d\n%s", resp.StatusCode, status, body)
	}
}

// writeLeaf writes a test certificate's key (0600) and chain to dir.
func writeLeaf(t testing.TB, dir, name string, l *pkitest.Leaf) (keyPath, certPath string) {
	t.Helper()
	keyPath, certPath = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pem")
	if err := pki.WritePrivateKey(keyPath, l.Key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pki.EncodeCertificatesPEM(l.Chain...), 0o644); err != nil {
		t.Fatal(err)
	}
	return keyPath, certPath
}

// jwtIssuer is an OpenID Connect issuer's JWKS endpoint with one key.
type jwtIssuer struct {
	url string
	key jwk.Key
}

func newJWTIssuer(t *testing.T) *jwtIssuer {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwk.Import(priv)
	if err != nil {
		t.Fatal(err)
	}
	key.Set(jwk.KeyIDKey, "k1")
	key.Set(jwk.AlgorithmKey, jwa.ES256())
	pub, err := jwk.PublicKeyOf(key)
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	set.AddKey(pub)
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return &jwtIssuer{url: srv.URL + "/certs", key: key}
}

const (
	testIssuer   = "https://idp.example/realms/gov"
	testAudience = "passerelle-consumer"
)

// token signs a JWT with key (the issuer's when nil).
func (iss *jwtIssuer) token(t *testing.T, key jwk.Key, issuer, aud, client string, exp time.Time) string {
	t.Helper()
	if key == nil {
		key = iss.key
	}
	tok, err := jwt.NewBuilder().Issuer(issuer).Audience([]string{aud}).Expiration(exp).
		IssuedAt(time.Now().Add(-time.Minute)).Claim(securityserver.DefaultJWTClaim, []string{client}).Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), key))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

func TestClientAuthentication(t *testing.T) {
	logs := &logBuffer{}
	sb := restSandboxLog(t, logs.Logger())
	var secrets []string // tokens that must never reach a log line
	dir := t.TempDir()
	ca := pkitest.NewCA(t, "Internal TLS CA")
	srvKey, srvCert := writeLeaf(t, dir, "internal", ca.Issue(t, pki.ClientID{}, pki.UsageAuth))
	pinned := ca.Issue(t, pki.ClientID{}, pki.UsageAuth)
	other := ca.Issue(t, pki.ClientID{}, pki.UsageAuth)
	restReconfigure(t, sb, sb.Consumer, func(c *securityserver.Config) {
		c.Listen.ConsumerTLS = "127.0.0.1:0"
		c.Keys.InternalTLSKey, c.Keys.InternalTLSCert = srvKey, srvCert
	})
	admin := adminOf(t, sb.Consumer)
	httpURL := consumerURL(sb)
	httpsURL := "https://" + sb.Consumer.Addrs["consumerTLS"]
	tlsClient := func(l *pkitest.Leaf) *http.Client {
		conf := &tls.Config{RootCAs: ca.Pool()}
		if l != nil {
			conf.Certificates = []tls.Certificate{l.TLSCertificate()}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
	}
	setAuth := func(a securityserver.ClientAuth) {
		t.Helper()
		if err := admin.UpdateClient(t.Context(), securityserver.ClientConfig{ID: sandbox.ClientID, Auth: a}); err != nil {
			t.Fatalf("UpdateClient(%+v) = %v", a, err)
		}
	}
	call := func(c *http.Client, base string, hdr http.Header) (*http.Response, []byte) {
		t.Helper()
		return consumerCall(t, c, base, sandbox.ClientID, "GET", sandbox.RESTService, "/auth", hdr, nil)
	}

	t.Run("none", func(t *testing.T) {
		resp, body := call(nil, httpURL, nil)
		wantStatus(t, resp, body, http.StatusOK)
		resp, body = call(tlsClient(nil), httpsURL, nil)
		wantStatus(t, resp, body, http.StatusOK)
	})

	t.Run("tls", func(t *testing.T) {
		setAuth(securityserver.ClientAuth{Mode: securityserver.AuthTLS, CertSHA256: []string{pki.Fingerprint(pinned.Cert)}})
		const typ = "Server.ClientProxy.SslAuthenticationFailed"
		for _, tc := range []struct {
			name string
			c    *http.Client
			base string
		}{
			{"plain HTTP", nil, httpURL},
			{"HTTPS without certificate", tlsClient(nil), httpsURL},
			{"HTTPS with another certificate", tlsClient(other), httpsURL},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, body := call(tc.c, tc.base, nil)
				wantXRoadError(t, resp, body, http.StatusUnauthorized, typ)
			})
		}
		t.Run("pinned certificate", func(t *testing.T) {
			resp, body := call(tlsClient(pinned), httpsURL, nil)
			wantStatus(t, resp, body, http.StatusOK)
		})
		t.Run("SOAP fault", func(t *testing.T) {
			resp, body := post(t, httpURL+"/", "text/xml; charset=utf-8", bytes.NewReader(sandbox.GetRandomRequest("auth-soap-1")))
			wantFault(t, resp, body, soap.SOAP11, typ)
		})
	})

	t.Run("jwt", func(t *testing.T) {
		iss := newJWTIssuer(t)
		setAuth(securityserver.ClientAuth{Mode: securityserver.AuthToken, JWT: &securityserver.JWTAuth{
			JWKSURL: iss.url, Issuer: testIssuer, Audience: testAudience}})
		rogueKey, err := jwk.Import(mustECKey(t))
		if err != nil {
			t.Fatal(err)
		}
		rogueKey.Set(jwk.KeyIDKey, "k1")
		soon := time.Now().Add(5 * time.Minute)
		const typ = "Server.ClientProxy.TokenAuthenticationFailed"
		for _, tc := range []struct {
			name, token string
		}{
			{"no token", ""},
			{"wrong issuer", iss.token(t, nil, "https://other.example", testAudience, sandbox.ClientID, soon)},
			{"wrong audience", iss.token(t, nil, testIssuer, "someone-else", sandbox.ClientID, soon)},
			{"expired", iss.token(t, nil, testIssuer, testAudience, sandbox.ClientID, time.Now().Add(-5*time.Minute))},
			{"another subsystem", iss.token(t, nil, testIssuer, testAudience, "SANDBOX/GOV/CONSUMER/other", soon)},
			{"signed by another key", iss.token(t, rogueKey, testIssuer, testAudience, sandbox.ClientID, soon)},
			{"not a JWT", "abc.def.ghi"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				h := http.Header{}
				if tc.token != "" {
					h.Set("Authorization", "Bearer "+tc.token)
				}
				if len(tc.token) > 20 {
					secrets = append(secrets, tc.token)
				}
				resp, body := call(nil, httpURL, h)
				wantXRoadError(t, resp, body, http.StatusUnauthorized, typ)
				if len(tc.token) > 20 && strings.Contains(string(body), tc.token[len(tc.token)-20:]) {
					t.Errorf("the error body repeats the token")
				}
			})
		}
		t.Run("valid", func(t *testing.T) {
			h := http.Header{"Authorization": {"Bearer " + iss.token(t, nil, testIssuer, testAudience, sandbox.ClientID, soon)}}
			resp, body := call(nil, httpURL, h)
			wantStatus(t, resp, body, http.StatusOK)
		})
	})

	t.Run("static token", func(t *testing.T) {
		tokFile := filepath.Join(dir, "client.token")
		const tok = "0123456789abcdef0123456789abcdef-static"
		if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		setAuth(securityserver.ClientAuth{Mode: securityserver.AuthToken, TokenFile: tokFile})
		secrets = append(secrets, tok)
		for _, tc := range []struct {
			name, header string
			status       int
		}{
			{"no token", "", http.StatusUnauthorized},
			{"wrong token", "Bearer " + strings.ToUpper(tok), http.StatusUnauthorized},
			{"basic auth", "Basic " + tok, http.StatusUnauthorized},
			{"right token", "Bearer " + tok, http.StatusOK},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, body := call(nil, httpURL, http.Header{"Authorization": {tc.header}})
				if tc.status == http.StatusOK {
					wantStatus(t, resp, body, http.StatusOK)
					return
				}
				wantXRoadError(t, resp, body, tc.status, "Server.ClientProxy.TokenAuthenticationFailed")
			})
		}
	})

	t.Run("unknown client", func(t *testing.T) {
		resp, body := consumerCall(t, nil, httpURL, "SANDBOX/GOV/CONSUMER/nobody", "GET", sandbox.RESTService, "/", nil, nil)
		wantXRoadError(t, resp, body, http.StatusBadRequest, "Server.ClientProxy.InvalidClientIdentifier")
	})

	t.Run("logs carry the message id and no token", func(t *testing.T) {
		if !logs.Contains("TokenAuthenticationFailed") {
			t.Fatal("the refusals were not logged")
		}
		for _, sec := range secrets {
			if logs.Contains(sec) || logs.Contains(sec[len(sec)-16:]) {
				t.Errorf("a log line holds a bearer token")
			}
		}
		logs.mu.Lock()
		lines := strings.Split(logs.buf.String(), "\n")
		logs.mu.Unlock()
		for _, l := range lines {
			if strings.Contains(l, `"request refused"`) && strings.Contains(l, `"side":"consumer"`) && !strings.Contains(l, `"messageId":"`) {
				t.Errorf("refusal logged without message id: %s", l)
			}
		}
	})

	t.Run("refused configuration", func(t *testing.T) {
		for _, a := range []securityserver.ClientAuth{
			{Mode: "kerberos"},
			{Mode: securityserver.AuthTLS},
			{Mode: securityserver.AuthTLS, CertSHA256: []string{"zz"}},
			{Mode: securityserver.AuthToken},
			{Mode: securityserver.AuthToken, TokenFile: filepath.Join(dir, "missing")},
			{Mode: securityserver.AuthToken, JWT: &securityserver.JWTAuth{JWKSURL: "ftp://x", Issuer: "i", Audience: "a"}},
		} {
			err := admin.UpdateClient(t.Context(), securityserver.ClientConfig{ID: sandbox.ClientID, Auth: a})
			if !errors.Is(err, securityserver.ErrConfig) {
				t.Errorf("UpdateClient(%+v) = %v, want a 400", a, err)
			}
		}
	})
}

func mustECKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestAccessRightsThroughAdminAPI(t *testing.T) {
	sb := restSandbox(t)
	admin := adminOf(t, sb.Provider)
	ctx := t.Context()
	call := func(method, resource string) (*http.Response, []byte) {
		t.Helper()
		return consumerCall(t, nil, consumerURL(sb), sandbox.ClientID, method, sandbox.RESTService, resource, nil, nil)
	}
	const denied = "Server.ServerProxy.AccessDenied"

	t.Run("revoke then denied without restart", func(t *testing.T) {
		resp, body := call("GET", "/a")
		wantStatus(t, resp, body, http.StatusOK)
		if err := admin.Revoke(ctx, sandbox.RESTService, sandbox.ClientID); err != nil {
			t.Fatal(err)
		}
		resp, body = call("GET", "/a")
		wantXRoadError(t, resp, body, http.StatusForbidden, denied)
		if err := admin.Revoke(ctx, sandbox.RESTService, sandbox.ClientID); !errors.Is(err, securityserver.ErrNotFound) {
			t.Errorf("second Revoke = %v, want not found", err)
		}
	})
	t.Run("grant member then allowed", func(t *testing.T) {
		if err := admin.Grant(ctx, sandbox.RESTService, securityserver.AccessRule{Client: sandbox.ConsumerMember}); err != nil {
			t.Fatal(err)
		}
		resp, body := call("GET", "/a")
		wantStatus(t, resp, body, http.StatusOK)
		if err := admin.Revoke(ctx, sandbox.RESTService, sandbox.ConsumerMember); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("method and path rules", func(t *testing.T) {
		rule := securityserver.AccessRule{Client: sandbox.ClientID, Methods: []string{"GET", "DELETE"}, Paths: []string{"/pets/*", "/store/**"}}
		if err := admin.Grant(ctx, sandbox.RESTService, rule); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			method, resource string
			ok               bool
		}{
			{"GET", "/pets/1", true},
			{"DELETE", "/pets/1", true},
			{"GET", "/pets/1?x=2", true},
			{"POST", "/pets/1", false},
			{"GET", "/pets", false},
			{"GET", "/pets/1/photos", false},
			{"GET", "/store", true},
			{"GET", "/store/a/b/c", true},
			{"GET", "/other", false},
			{"GET", "", false},
		} {
			t.Run(tc.method+tc.resource, func(t *testing.T) {
				resp, body := call(tc.method, tc.resource)
				if tc.ok {
					wantStatus(t, resp, body, http.StatusOK)
				} else {
					wantXRoadError(t, resp, body, http.StatusForbidden, denied)
				}
			})
		}
		grants, err := admin.Grants(ctx, sandbox.RESTService)
		if err != nil || len(grants) != 1 || grants[0].Client != sandbox.ClientID || len(grants[0].Paths) != 2 {
			t.Errorf("Grants = %+v, %v; want the one rule", grants, err)
		}
	})
	t.Run("kept across restart", func(t *testing.T) {
		if err := sb.StopServer(sb.Provider); err != nil {
			t.Fatal(err)
		}
		if err := sb.RestartServer(ctx, sb.Provider); err != nil {
			t.Fatal(err)
		}
		admin = adminOf(t, sb.Provider)
		resp, body := call("GET", "/pets/7")
		wantStatus(t, resp, body, http.StatusOK)
		resp, body = call("POST", "/pets/7")
		wantXRoadError(t, resp, body, http.StatusForbidden, denied)
	})
	t.Run("services added updated removed", func(t *testing.T) {
		mirror := restMirror(t)
		const id = "SANDBOX/GOV/PROVIDER/services/added"
		svc := securityserver.ServiceConfig{ID: id, URL: mirror.URL + "/v1", Allow: []string{sandbox.ClientID}}
		if err := admin.AddService(ctx, svc); err != nil {
			t.Fatal(err)
		}
		if err := admin.AddService(ctx, svc); !errors.Is(err, securityserver.ErrExists) {
			t.Errorf("second AddService = %v, want conflict", err)
		}
		resp, body := consumerCall(t, nil, consumerURL(sb), sandbox.ClientID, "GET", id, "/x", nil, nil)
		wantStatus(t, resp, body, http.StatusOK)
		var e mirrorEcho
		if json.Unmarshal(body, &e); e.Path != "/v1/x" {
			t.Errorf("backend saw %q, want /v1/x", e.Path)
		}
		got, err := admin.Service(ctx, id)
		if err != nil || got.Timeout.String() != "30s" || got.BodyLogging != securityserver.BodyLoggingFull {
			t.Errorf("Service = %+v, %v; want the defaults filled in", got, err)
		}
		svc.URL = mirror.URL + "/v2"
		svc.BodyLogging = securityserver.BodyLoggingMetadata
		if err := admin.UpdateService(ctx, svc); err != nil {
			t.Fatal(err)
		}
		resp, body = consumerCall(t, nil, consumerURL(sb), sandbox.ClientID, "GET", id, "/x", nil, nil)
		if json.Unmarshal(body, &e); resp.StatusCode != http.StatusOK || e.Path != "/v2/x" {
			t.Errorf("after update: %d, backend saw %q, want /v2/x", resp.StatusCode, e.Path)
		}
		if err := admin.UpdateService(ctx, securityserver.ServiceConfig{ID: id, URL: "not a url"}); !errors.Is(err, securityserver.ErrConfig) {
			t.Errorf("UpdateService(bad URL) = %v, want 400", err)
		}
		if err := admin.RemoveService(ctx, id); err != nil {
			t.Fatal(err)
		}
		resp, body = consumerCall(t, nil, consumerURL(sb), sandbox.ClientID, "GET", id, "/x", nil, nil)
		wantXRoadError(t, resp, body, http.StatusNotFound, "Server.ServerProxy.UnknownService")
	})
	t.Run("audit record", func(t *testing.T) {
		recs, err := admin.Changes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, r := range recs {
			if r.Actor != "admin" || r.Time.IsZero() || r.Target == "" || r.Remote == "" {
				t.Errorf("audit record %+v lacks who, when or what", r)
			}
			actions = append(actions, r.Action)
		}
		want := []string{"revokeAccess", "grantAccess", "revokeAccess", "grantAccess", "addService", "updateService", "removeService"}
		if strings.Join(actions, ",") != strings.Join(want, ",") {
			t.Errorf("audit actions = %v, want %v", actions, want)
		}
	})
	t.Run("pagination", func(t *testing.T) {
		for _, id := range []string{"p1", "p2", "p3"} {
			if err := admin.AddService(ctx, securityserver.ServiceConfig{ID: "SANDBOX/GOV/PROVIDER/services/" + id, URL: "http://127.0.0.1:9/"}); err != nil {
				t.Fatal(err)
			}
		}
		h := http.Header{"Authorization": {"Bearer " + admin.Token}}
		resp, body := doHTTP(t, nil, "GET", admin.BaseURL+"/api/v1/services?page=2&elementsParPage=2", h, nil)
		var page []securityserver.ServiceConfig
		if err := json.Unmarshal(body, &page); err != nil || resp.StatusCode != 200 || len(page) != 2 {
			t.Fatalf("page 2 = %d %s", resp.StatusCode, body)
		}
		links := strings.Join(resp.Header.Values("Link"), ", ")
		for _, rel := range []string{`page=1>`, `rel="first"`, `rel="prev"`, `rel="next"`, `rel="last"`} {
			if !strings.Contains(links, rel) {
				t.Errorf("Link %q lacks %s", links, rel)
			}
		}
		if resp.Header.Get("X-Total-Count") != "5" {
			t.Errorf("X-Total-Count = %q, want 5", resp.Header.Get("X-Total-Count"))
		}
	})
	t.Run("token required", func(t *testing.T) {
		resp, body := doHTTP(t, nil, "GET", admin.BaseURL+"/api/v1/services", http.Header{"Authorization": {"Bearer wrong"}}, nil)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"code"`) {
			t.Errorf("wrong token: %d %s", resp.StatusCode, body)
		}
		resp, body = doHTTP(t, nil, "GET", admin.BaseURL+"/api/v1/openapi.json", http.Header{"Authorization": {"Bearer " + admin.Token}}, nil)
		var doc map[string]any
		if resp.StatusCode != 200 || json.Unmarshal(body, &doc) != nil || doc["openapi"] == nil {
			t.Errorf("openapi.json: %d %.100s", resp.StatusCode, body)
		}
	})
	t.Run("key status", func(t *testing.T) {
		keys, err := admin.Keys(ctx)
		if err != nil || len(keys) != 2 {
			t.Fatalf("Keys = %+v, %v", keys, err)
		}
		for _, k := range keys {
			if k.ExpiresInSeconds <= 0 || k.OCSP == nil || k.OCSP.Status != "good" || !k.OCSP.Fresh || k.OCSP.AgeSeconds < 0 {
				t.Errorf("key %s: %+v %+v", k.Usage, k, k.OCSP)
			}
		}
	})
}

// metaList is listMethods' and allowedMethods' JSON.
type metaList struct {
	Service []struct {
		ObjectType  string `json:"object_type"`
		Instance    string `json:"xroad_instance"`
		Class       string `json:"member_class"`
		Member      string `json:"member_code"`
		Subsystem   string `json:"subsystem_code"`
		ServiceCode string `json:"service_code"`
		ServiceType string `json:"service_type"`
		Endpoints   []struct {
			Method string `json:"method"`
			Path   string `json:"path"`
		} `json:"endpoint_list"`
	} `json:"service"`
}

func (m metaList) endpoints(code string) []string {
	for _, s := range m.Service {
		if s.ServiceCode == code {
			var out []string
			for _, e := range s.Endpoints {
				out = append(out, e.Method+" "+e.Path)
			}
			return out
		}
	}
	return nil
}

func TestRESTMetaservices(t *testing.T) {
	sb := restSandbox(t)
	admin := adminOf(t, sb.Provider)
	ctx := t.Context()
	spec, err := filepath.Abs("testdata/pets.openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const pets = "SANDBOX/GOV/PROVIDER/services/pets"
	if err := admin.AddService(ctx, securityserver.ServiceConfig{ID: pets, URL: "http://127.0.0.1:9/", OpenAPI: spec,
		Rules: []securityserver.AccessRule{{Client: sandbox.ClientID, Methods: []string{"GET"}, Paths: []string{"/pets/*"}}}}); err != nil {
		t.Fatal(err)
	}
	const sub = "SANDBOX/GOV/PROVIDER/services"
	meta := func(t *testing.T, name, query string) (*http.Response, []byte) {
		t.Helper()
		return doHTTP(t, nil, "GET", consumerURL(sb)+"/r1/"+sub+"/"+name+query,
			http.Header{rest.HeaderClient: {sandbox.ClientID}, "Accept": {"application/json"}}, nil)
	}

	t.Run("listMethods", func(t *testing.T) {
		resp, body := meta(t, "listMethods", "")
		wantStatus(t, resp, body, http.StatusOK)
		var m metaList
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(m.endpoints("pets"), ","); got != "GET /pets,POST /pets,GET /pets/*,DELETE /pets/*,GET /store/inventory" {
			t.Errorf("pets endpoints = %s", got)
		}
		if got := strings.Join(m.endpoints("hello"), ","); got != "* /**" {
			t.Errorf("hello endpoints = %s", got)
		}
		for _, s := range m.Service {
			if s.ObjectType != "SERVICE" || s.Instance != "SANDBOX" || s.Class != "GOV" || s.Member != "PROVIDER" || s.Subsystem != "services" {
				t.Errorf("service %+v: identifier fields", s)
			}
			if want := map[string]string{"pets": "OPENAPI"}[s.ServiceCode]; want != "" && s.ServiceType != want {
				t.Errorf("%s service_type %s, want %s", s.ServiceCode, s.ServiceType, want)
			}
		}
		if resp.Header.Get(rest.HeaderRequestHash) == "" {
			t.Errorf("metaservice response is not an X-Road response (no %s)", rest.HeaderRequestHash)
		}
	})
	t.Run("allowedMethods", func(t *testing.T) {
		resp, body := meta(t, "allowedMethods", "")
		wantStatus(t, resp, body, http.StatusOK)
		var m metaList
		json.Unmarshal(body, &m)
		if got := strings.Join(m.endpoints("pets"), ","); got != "GET /pets/*" {
			t.Errorf("allowed pets endpoints = %q, want GET /pets/*", got)
		}
		if got := m.endpoints("hello"); len(got) != 1 {
			t.Errorf("allowed hello endpoints = %v, want * /**", got)
		}
		if err := admin.Revoke(ctx, sandbox.RESTService, sandbox.ClientID); err != nil {
			t.Fatal(err)
		}
		_, body = meta(t, "allowedMethods", "")
		m = metaList{}
		json.Unmarshal(body, &m)
		if got := m.endpoints("hello"); got != nil {
			t.Errorf("after revoke, allowed hello endpoints = %v, want none", got)
		}
	})
	t.Run("getOpenAPI", func(t *testing.T) {
		resp, body := meta(t, "getOpenAPI", "?serviceCode=pets")
		wantStatus(t, resp, body, http.StatusOK)
		want, _ := os.ReadFile(spec)
		if !bytes.Equal(body, want) {
			t.Errorf("getOpenAPI body differs from the file:\n%s", body)
		}
		resp, body = meta(t, "getOpenAPI", "?serviceCode=hello")
		wantXRoadError(t, resp, body, http.StatusForbidden, "Server.ServerProxy.AccessDenied") // revoked above
		resp, body = meta(t, "getOpenAPI", "?serviceCode=getRandom")
		wantXRoadError(t, resp, body, http.StatusNotFound, "Server.ServerProxy.UnknownService")
		resp, body = meta(t, "getOpenAPI", "?serviceCode=nothing")
		wantXRoadError(t, resp, body, http.StatusNotFound, "Server.ServerProxy.UnknownService")
	})
	t.Run("listClients", func(t *testing.T) {
		resp, body := doHTTP(t, nil, "GET", consumerURL(sb)+"/listClients", http.Header{"Accept": {"application/json"}}, nil)
		wantStatus(t, resp, body, http.StatusOK)
		for _, want := range []string{`"member_code":"PROVIDER"`, `"subsystem_code":"client"`, `"object_type":"SUBSYSTEM"`} {
			if !strings.Contains(string(body), want) {
				t.Errorf("listClients lacks %s: %s", want, body)
			}
		}
	})
	t.Run("unknown subsystem", func(t *testing.T) {
		resp, body := doHTTP(t, nil, "GET", consumerURL(sb)+"/r1/SANDBOX/GOV/PROVIDER/nothing/listMethods",
			http.Header{rest.HeaderClient: {sandbox.ClientID}}, nil)
		if resp.StatusCode < 400 {
			t.Errorf("listMethods of an unknown subsystem: %d %s", resp.StatusCode, body)
		}
	})
}

func TestLimits(t *testing.T) {
	sb := restSandbox(t)
	// A backend that holds requests until released.
	var mu sync.Mutex
	arrived := make(chan struct{}, 8)
	release := make(chan struct{})
	held := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("done"))
	}))
	t.Cleanup(held.Close)
	const heldService = "SANDBOX/GOV/PROVIDER/services/held"
	if err := adminOf(t, sb.Provider).AddService(t.Context(), securityserver.ServiceConfig{ID: heldService, URL: held.URL, Allow: []string{sandbox.ClientID}}); err != nil {
		t.Fatal(err)
	}
	restReconfigure(t, sb, sb.Consumer, func(c *securityserver.Config) {
		c.Limits.MaxConcurrentPerClient = 1
		c.Limits.MaxHeaderBytes = 4096
		c.Limits.MaxBodyBytes = 1000
	})

	t.Run("concurrent requests per client", func(t *testing.T) {
		done := make(chan int)
		go func() {
			resp, _ := consumerCall(t, nil, consumerURL(sb), sandbox.ClientID, "GET", heldService, "/1", nil, nil)
			done <- resp.StatusCode
		}()
		select {
		case <-arrived:
		case <-time.After(20 * time.Second):
			t.Fatal("the first request never reached the backend")
		}
		resp, body := consumerCall(t, nil, consumerURL(sb), sandbox.ClientID, "GET", heldService, "/2", nil, nil)
		wantXRoadError(t, resp, body, http.StatusTooManyRequests, "Server.ClientProxy.TooManyRequests")
		for h, want := range map[string]string{"RateLimit-Limit": "1", "RateLimit-Remaining": "0", "RateLimit-Reset": "1", "Retry-After": "1"} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("%s = %q, want %q", h, got, want)
			}
		}
		mu.Lock()
		close(release)
		mu.Unlock()
		if st := <-done; st != http.StatusOK {
			t.Errorf("the held request ended with %d", st)
		}
		resp, body = consumerCall(t, nil, consumerURL(sb), sandbox.ClientID, "GET", heldService, "/3", nil, nil)
		wantStatus(t, resp, body, http.StatusOK)
	})
	t.Run("header size", func(t *testing.T) {
		h := http.Header{"X-Big": {strings.Repeat("a", 5000)}}
		resp, body := consumerCall(t, nil, consumerURL(sb), sandbox.ClientID, "GET", sandbox.RESTService, "/", h, nil)
		wantXRoadError(t, resp, body, http.StatusRequestHeaderFieldsTooLarge, "Server.ClientProxy.RequestHeaderTooLarge")
		resp, body = consumerCall(t, nil, consumerURL(sb), sandbox.ClientID, "GET", sandbox.RESTService, "/", http.Header{"X-Small": {"a"}}, nil)
		wantStatus(t, resp, body, http.StatusOK)
	})
	t.Run("body size", func(t *testing.T) {
		resp, body := consumerCall(t, nil, consumerURL(sb), sandbox.ClientID, "POST", sandbox.RESTService, "/",
			http.Header{"Content-Type": {"application/octet-stream"}}, make([]byte, 1001))
		wantXRoadError(t, resp, body, http.StatusRequestEntityTooLarge, "Client.RequestTooLarge")
	})
}

func TestHTTPSBackend(t *testing.T) {
	sb := restSandbox(t)
	dir := t.TempDir()
	clientCA := pkitest.NewCA(t, "Backend client CA")
	keyPath, certPath := writeLeaf(t, dir, "backend-client", clientCA.Issue(t, pki.ClientID{}, pki.UsageAuth))
	var sawClientCert bool
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawClientCert = r.TLS != nil && len(r.TLS.PeerCertificates) > 0
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("over https"))
	}))
	backend.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCA.Pool()}
	backend.StartTLS()
	t.Cleanup(backend.Close)
	bundle := filepath.Join(dir, "backend-ca.pem")
	if err := os.WriteFile(bundle, pki.EncodeCertificatesPEM(backend.Certificate()), 0o644); err != nil {
		t.Fatal(err)
	}
	admin := adminOf(t, sb.Provider)
	const id = "SANDBOX/GOV/PROVIDER/services/secure"
	call := func() (*http.Response, []byte) {
		return consumerCall(t, nil, consumerURL(sb), sandbox.ClientID, "GET", id, "/", nil, nil)
	}
	for _, tc := range []struct {
		name   string
		tls    *securityserver.BackendTLS
		status int
	}{
		{"system roots refuse the test certificate", nil, http.StatusBadGateway},
		{"CA bundle without client certificate", &securityserver.BackendTLS{CABundle: bundle}, http.StatusBadGateway},
		{"CA bundle and client certificate", &securityserver.BackendTLS{CABundle: bundle, ClientCert: certPath, ClientKey: keyPath}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin.RemoveService(t.Context(), id)
			svc := securityserver.ServiceConfig{ID: id, URL: backend.URL, TLS: tc.tls, Allow: []string{sandbox.ClientID}}
			if err := admin.AddService(t.Context(), svc); err != nil {
				t.Fatal(err)
			}
			resp, body := call()
			if tc.status == http.StatusOK {
				wantStatus(t, resp, body, http.StatusOK)
				if string(body) != "over https" || !sawClientCert {
					t.Errorf("body %q, client certificate seen %v", body, sawClientCert)
				}
				return
			}
			wantXRoadError(t, resp, body, tc.status, "Server.ServerProxy.ServiceFailed")
		})
	}
	t.Run("refused settings", func(t *testing.T) {
		for _, bt := range []securityserver.BackendTLS{
			{CABundle: filepath.Join(dir, "missing.pem")},
			{CABundle: bundle, ClientCert: certPath},
		} {
			svc := securityserver.ServiceConfig{ID: id, URL: backend.URL, TLS: &bt}
			if err := admin.UpdateService(t.Context(), svc); !errors.Is(err, securityserver.ErrConfig) {
				t.Errorf("UpdateService(tls %+v) = %v, want 400", bt, err)
			}
		}
	})
}

func TestObservability(t *testing.T) {
	sb := restSandbox(t)
	resp, body := consumerCall(t, nil, consumerURL(sb), sandbox.ClientID, "GET", sandbox.RESTService, "/m", nil, nil)
	wantStatus(t, resp, body, http.StatusOK)

	t.Run("metrics after traffic", func(t *testing.T) {
		_, metrics := doHTTP(t, nil, "GET", "http://"+sb.Consumer.Addrs["admin"]+"/metrics", nil, nil)
		for _, name := range []string{
			`passerelle_exchanges_total{service="` + sandbox.RESTService + `",side="consumer",status="2xx"} 1`,
			`passerelle_exchange_seconds_bucket{side="consumer"`,
			"passerelle_timestamp_pending ", "passerelle_timestamp_pending_age_seconds ",
			"passerelle_registry_backlog ", "passerelle_registry_backlog_age_seconds ",
			"passerelle_ocsp_sign_age_seconds ", "passerelle_ocsp_auth_age_seconds ",
			"passerelle_directory_serial ", "passerelle_directory_age_seconds ",
			"passerelle_certificate_sign_expiry_seconds ", "passerelle_certificate_auth_expiry_seconds ",
			"passerelle_requests_in_flight ", "passerelle_config_changes_total ",
		} {
			if !strings.Contains(string(metrics), name) {
				t.Errorf("/metrics lacks %s", name)
			}
		}
	})

	t.Run("healthz unhealthy when the OCSP response goes stale", func(t *testing.T) {
		doc := signDirectory(t, sb, func(d *directory.Draft) error {
			d.Params.OCSPFreshnessSeconds = 3
			return nil
		})
		_ = doc
		// The staplers take the freshness from the directory at start-up.
		if err := sb.StopServer(sb.Consumer); err != nil {
			t.Fatal(err)
		}
		if err := sb.RestartServer(t.Context(), sb.Consumer); err != nil {
			t.Fatal(err)
		}
		healthz := "http://" + sb.Consumer.Addrs["admin"] + "/healthz"
		resp, body := doHTTP(t, nil, "GET", healthz, nil, nil)
		wantStatus(t, resp, body, http.StatusOK)
		sb.CAService.Stop()
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, body = doHTTP(t, nil, "GET", healthz, nil, nil)
			if resp.StatusCode == http.StatusServiceUnavailable {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/healthz still %d %s 20 s after the OCSP responder went down", resp.StatusCode, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !strings.Contains(string(body), "OCSP") {
			t.Errorf("/healthz says %q, want it to name the OCSP response", body)
		}
		// The responder's answers are cached longer than this test's 3 s
		// freshness, so the server stays unhealthy until the next one.
		if err := sb.CAService.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}
