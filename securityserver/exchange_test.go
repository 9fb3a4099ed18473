package securityserver_test

// The REST exchange end to end, with real servers on loopback: the sandbox's
// federation (CA + OCSP, TSA, registry, directory, two security servers) and
// backends started by the tests. The rows of issue 5 live in this file
// (methods, payloads, refusals, X-Road examples, message logs, jose), in
// tamper_test.go (a rogue consumer server) and in outage_test.go (directory,
// TSA and registry outages).

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gopkg.in/yaml.v3"

	"github.com/passerelle/passerelle/hashregistry"
	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/rest"
	"github.com/passerelle/passerelle/sandbox"
	"github.com/passerelle/passerelle/securityserver"
	"github.com/passerelle/passerelle/securityserver/messagelog"
	"github.com/passerelle/passerelle/timestamp"
)

// Services the REST tests add to the provider's configuration.
const (
	mirrorService = "SANDBOX/GOV/PROVIDER/services/mirror" // restMirror: echoes everything it received
	slowService   = "SANDBOX/GOV/PROVIDER/services/slow"   // answers after slowBackendDelay; timeout slowTimeout
	slowTimeout   = 300 * time.Millisecond
)

// restSandbox starts a sandbox on loopback, closed when the test ends.
func restSandbox(tb testing.TB) *sandbox.Sandbox {
	tb.Helper()
	return restSandboxLog(tb, nil)
}

// restSandboxLog is restSandbox with the sandbox's logs going to log.
func restSandboxLog(tb testing.TB, log *slog.Logger) *sandbox.Sandbox {
	tb.Helper()
	sb, err := sandbox.Start(tb.Context(), sandbox.Config{Dir: filepath.Join(tb.TempDir(), "sb"), Log: log})
	if err != nil {
		tb.Fatalf("sandbox.Start: %v", err)
	}
	tb.Cleanup(func() {
		if err := sb.Close(); err != nil {
			tb.Errorf("sandbox Close: %v", err)
		}
	})
	return sb
}

// restReconfigure restarts an institution's security server with edit
// applied to its server.yaml.
func restReconfigure(t *testing.T, sb *sandbox.Sandbox, in *sandbox.Institution, edit func(*securityserver.Config)) {
	t.Helper()
	data, err := os.ReadFile(in.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	var c securityserver.Config
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	edit(&c)
	if data, err = yaml.Marshal(&c); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in.ConfigPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sb.StopServer(in); err != nil {
		t.Fatal(err)
	}
	if err := sb.RestartServer(t.Context(), in); err != nil {
		t.Fatal(err)
	}
}

// mirrorEcho is what restMirror answers: everything it received.
type mirrorEcho struct {
	Method   string              `json:"method"`
	Path     string              `json:"path"` // escaped, as received
	RawQuery string              `json:"rawQuery"`
	Args     map[string][]string `json:"args"`
	Header   http.Header         `json:"header"`
	Body     []byte              `json:"body"`
}

// restMirror is a backend that answers any request with a mirrorEcho of it
// (status 200, or the status asked for in the header Mirror-Status).
func restMirror(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		e := mirrorEcho{Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery,
			Args: r.URL.Query(), Header: r.Header, Body: body}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Mirror", "yes")
		status := http.StatusOK
		if s := r.Header.Get("Mirror-Status"); s != "" {
			fmt.Sscan(s, &status)
		}
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(e)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// restSlow is a backend that answers only after delay (or when the caller
// gives up).
func restSlow(t *testing.T, delay time.Duration) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(delay):
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "late")
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// withTestServices adds the mirror and slow services to the provider.
func withTestServices(t *testing.T, sb *sandbox.Sandbox) {
	t.Helper()
	mirror := restMirror(t)
	slow := restSlow(t, 5*time.Second)
	restReconfigure(t, sb, sb.Provider, func(c *securityserver.Config) {
		c.Services = append(c.Services,
			securityserver.ServiceConfig{ID: mirrorService, URL: mirror.URL + "/base", Timeout: securityserver.Duration(10 * time.Second),
				BodyLogging: securityserver.BodyLoggingFull, Allow: []string{sandbox.ClientID}},
			securityserver.ServiceConfig{ID: slowService, URL: slow.URL, Timeout: securityserver.Duration(slowTimeout),
				BodyLogging: securityserver.BodyLoggingMetadata, Allow: []string{sandbox.ConsumerMember}},
		)
	})
}

// doHTTP sends a request and reads the whole response. A header value ""
// removes that header.
func doHTTP(t testing.TB, c *http.Client, method, url string, hdr http.Header, body []byte) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header.Del(k)
		for _, v := range vs {
			if v != "" {
				req.Header.Add(k, v)
			}
		}
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// callREST calls service (an r1 service id) with resource (path and query)
// through the consumer's security server, as the sandbox's client.
func callREST(t testing.TB, sb *sandbox.Sandbox, method, service, resource string, hdr http.Header, body []byte) (*http.Response, []byte) {
	t.Helper()
	h := http.Header{rest.HeaderClient: {sandbox.ClientID}}
	for k, v := range hdr {
		h[http.CanonicalHeaderKey(k)] = v
	}
	return doHTTP(t, nil, method, sb.Info.ConsumerURL+"/r1/"+service+resource, h, body)
}

// xroadErrorBody is a security server's REST error body.
type xroadErrorBody struct {
	Type    string `json:"type"`
	Message string `json:"message"`
	Detail  string `json:"detail"`
	Code    string `json:"code"`
	Error   string `json:"error"`
}

// wantXRoadError checks that resp is a security server's error of type typ
// with status (0: any).
func wantXRoadError(t testing.TB, resp *http.Response, body []byte, status int, typ string) {
	t.Helper()
	if got := resp.Header.Get(rest.HeaderError); got != typ || (status != 0 && resp.StatusCode != status) {
		t.Fatalf("got %d X-Road-Error %q, want %d %q\n%s", resp.StatusCode, got, status, typ, body)
	}
	var e xroadErrorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if e.Type != typ || e.Code != typ || e.Message == "" || e.Error != e.Message {
		t.Errorf("error body = %+v, want type and code %s with a message", e, typ)
	}
	if _, err := uuid.Parse(e.Detail); err != nil {
		t.Errorf("error detail %q is not a uuid", e.Detail)
	}
}

// wantXRoadResponseHeaders checks the X-Road headers of a successful
// response and returns its X-Road-Id.
func wantXRoadResponseHeaders(t testing.TB, resp *http.Response, service string) string {
	t.Helper()
	h := resp.Header
	if got := h.Get(rest.HeaderClient); got != sandbox.ClientID {
		t.Errorf("X-Road-Client = %q, want %q", got, sandbox.ClientID)
	}
	if got := h.Get(rest.HeaderService); got != service {
		t.Errorf("X-Road-Service = %q, want %q", got, service)
	}
	if h.Get(rest.HeaderID) == "" {
		t.Error("no X-Road-Id in the response")
	}
	if _, err := uuid.Parse(h.Get(rest.HeaderRequestID)); err != nil {
		t.Errorf("X-Road-Request-Id %q: %v", h.Get(rest.HeaderRequestID), err)
	}
	if b, err := base64.StdEncoding.DecodeString(h.Get(rest.HeaderRequestHash)); err != nil || len(b) != 64 {
		t.Errorf("X-Road-Request-Hash %q is not a base64 SHA-512", h.Get(rest.HeaderRequestHash))
	}
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "passerelle-") {
			t.Errorf("the client got the inter-server header %s", k)
		}
	}
	return h.Get(rest.HeaderID)
}

// TestRESTExchange carries REST requests from the sandbox's client through
// both security servers to real backends and back (issue 5, test rows 1, 4,
// 8, 9 and 10).
func TestRESTExchange(t *testing.T) {
	t.Parallel()
	sb := restSandbox(t)
	withTestServices(t, sb)
	t.Run("methods and payloads", func(t *testing.T) { testMethodsAndPayloads(t, sb) })
	t.Run("xroad examples", func(t *testing.T) { testXRoadExamples(t, sb) })
	t.Run("message logs", func(t *testing.T) { testMessageLogs(t, sb) })
	t.Run("jose verifies the logged JWS", func(t *testing.T) { testJoseOnLoggedJWS(t, sb) })
	t.Run("refusals", func(t *testing.T) { testRefusals(t, sb) })
}

// testMethodsAndPayloads is row 1: every method with bodies, query strings
// (percent-encoded, repeated keys), binary and UTF-8 payloads, escaped
// resource paths; the backend must see exactly what the client sent.
func testMethodsAndPayloads(t *testing.T, sb *sandbox.Sandbox) {
	binary := make([]byte, 4096)
	for i := range binary {
		binary[i] = byte(i * 7)
	}
	utf8 := []byte(`{"nimi":"Jüri Õun","märkus":"aäõü €","日本":"東京","emoji":"🐕"}`)
	tests := []struct {
		name        string
		method      string
		resource    string // after the service code: path and query, as sent
		contentType string
		body        []byte
		wantPath    string // as the backend sees it, escaped
		wantQuery   string
		wantArgs    map[string][]string
	}{
		{name: "GET service root", method: "GET", wantPath: "/base"},
		{name: "GET trailing slash", method: "GET", resource: "/", wantPath: "/base/"},
		{name: "GET query percent-encoded and repeated", method: "GET", resource: "/pets?tag=a&tag=b&name=J%C3%BCri%20%C3%95un&q=a%2Bb%26c&empty=",
			wantPath: "/base/pets", wantQuery: "tag=a&tag=b&name=J%C3%BCri%20%C3%95un&q=a%2Bb%26c&empty=",
			wantArgs: map[string][]string{"tag": {"a", "b"}, "name": {"Jüri Õun"}, "q": {"a+b&c"}, "empty": {""}}},
		{name: "GET escaped resource path", method: "GET", resource: "/files/a%2Fb/caf%C3%A9%20menu/%25x?x=1",
			wantPath: "/base/files/a%2Fb/caf%C3%A9%20menu/%25x", wantQuery: "x=1", wantArgs: map[string][]string{"x": {"1"}}},
		{name: "GET with a body", method: "GET", resource: "/search", contentType: "application/json", body: []byte(`{"q":"x"}`), wantPath: "/base/search"},
		{name: "POST utf-8 json", method: "POST", resource: "/pets?lang=et", contentType: "application/json; charset=utf-8", body: utf8,
			wantPath: "/base/pets", wantQuery: "lang=et", wantArgs: map[string][]string{"lang": {"et"}}},
		{name: "POST binary", method: "POST", resource: "/blobs", contentType: "application/octet-stream", body: binary, wantPath: "/base/blobs"},
		{name: "POST empty body", method: "POST", resource: "/ping", contentType: "text/plain", body: []byte{}, wantPath: "/base/ping"},
		{name: "PUT utf-8 text", method: "PUT", resource: "/notes/%C3%B5%C3%BC", contentType: "text/plain; charset=utf-8", body: []byte("tere õhtust, €\n"),
			wantPath: "/base/notes/%C3%B5%C3%BC"},
		{name: "PUT binary", method: "PUT", resource: "/blobs/1", contentType: "application/octet-stream", body: binary[:1000], wantPath: "/base/blobs/1"},
		{name: "DELETE with a body", method: "DELETE", resource: "/pets/42?force=true", contentType: "application/json", body: []byte(`{"reason":"sold"}`),
			wantPath: "/base/pets/42", wantQuery: "force=true", wantArgs: map[string][]string{"force": {"true"}}},
		{name: "DELETE without a body", method: "DELETE", resource: "/pets/43", wantPath: "/base/pets/43"},
		{name: "PATCH", method: "PATCH", resource: "/pets/42", contentType: "application/merge-patch+json", body: []byte(`{"status":"sold"}`), wantPath: "/base/pets/42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "row1-" + uuid.NewString()
			hdr := http.Header{rest.HeaderID: {id}, rest.HeaderUserID: {"EE12345678901"}, rest.HeaderIssue: {"issue-ä 42"},
				"Accept": {"application/json"}, "X-Custom": {"one", "two"}}
			if tt.contentType != "" {
				hdr.Set("Content-Type", tt.contentType)
			}
			resp, body := callREST(t, sb, tt.method, mirrorService, tt.resource, hdr, tt.body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s = %d %s\n%s", tt.method, tt.resource, resp.StatusCode, resp.Header, body)
			}
			if got := wantXRoadResponseHeaders(t, resp, mirrorService); got != id {
				t.Errorf("X-Road-Id = %q, want the client's %q", got, id)
			}
			if resp.Header.Get("X-Mirror") != "yes" || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("the service's own headers are lost: %v", resp.Header)
			}
			var e mirrorEcho
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if e.Method != tt.method || e.Path != tt.wantPath || e.RawQuery != tt.wantQuery {
				t.Errorf("backend saw %s %s ?%s, want %s %s ?%s", e.Method, e.Path, e.RawQuery, tt.method, tt.wantPath, tt.wantQuery)
			}
			if tt.wantArgs != nil && fmt.Sprint(e.Args) != fmt.Sprint(tt.wantArgs) {
				t.Errorf("backend args = %v, want %v", e.Args, tt.wantArgs)
			}
			if !bytes.Equal(e.Body, tt.body) {
				t.Errorf("backend body = %q, want %q", e.Body, tt.body)
			}
			for k, want := range map[string]string{"X-Road-Client": sandbox.ClientID, "X-Road-Id": id, "X-Road-Userid": "EE12345678901",
				"X-Road-Issue": "issue-ä 42", "Accept": "application/json", "Content-Type": tt.contentType} {
				if got := e.Header.Get(k); got != want {
					t.Errorf("backend header %s = %q, want %q", k, got, want)
				}
			}
			if got := e.Header.Values("X-Custom"); fmt.Sprint(got) != "[one two]" {
				t.Errorf("backend X-Custom = %q, want [one two]", got)
			}
			for k := range e.Header {
				if strings.HasPrefix(strings.ToLower(k), "passerelle-") {
					t.Errorf("the service got the inter-server header %s", k)
				}
			}
		})
	}

	t.Run("service status passes", func(t *testing.T) {
		resp, body := callREST(t, sb, "POST", mirrorService, "/x", http.Header{"Mirror-Status": {"422"}, "Content-Type": {"text/plain"}}, []byte("bad"))
		if resp.StatusCode != http.StatusUnprocessableEntity || resp.Header.Get(rest.HeaderError) != "" {
			t.Errorf("= %d %s %s, want the service's own 422", resp.StatusCode, resp.Header, body)
		}
		wantXRoadResponseHeaders(t, resp, mirrorService)
	})

	t.Run("hello sample echo", func(t *testing.T) {
		resp, body := callREST(t, sb, "GET", sandbox.RESTService, "/pets/42?q=%C3%A4&q=2", nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("= %d %s", resp.StatusCode, body)
		}
		var e sandbox.HelloEcho
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatal(err)
		}
		if e.Path != "/pets/42" || e.Query != "q=%C3%A4&q=2" || fmt.Sprint(e.Args["q"]) != "[ä 2]" {
			t.Errorf("hello saw %+v", e)
		}
		bin := []byte{0, 0xff, 0xfe, 'a', 0}
		resp, body = callREST(t, sb, "PUT", sandbox.RESTService, "/blob", http.Header{"Content-Type": {"application/octet-stream"}}, bin)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, bin) {
			t.Errorf("PUT = %d %q, want 200 %q", resp.StatusCode, body, bin)
		}
	})
}

// testXRoadExamples is row 8: the GET and POST examples of X-Road's REST
// protocol (section 6.2 and 6.4), identifiers adapted to the sandbox.
func testXRoadExamples(t *testing.T, sb *sandbox.Sandbox) {
	// Section 6.4's body, verbatim.
	const petJSON = `{ "id": 0, "category": { "id": 0, "name": "string" }, "name": "doggie", "photoUrls": [ "string" ], "tags": [ { "id": 0, "name": "string" } ], "status": "available"}`
	for _, f := range []string{"rest-get-request-response_prrest-6.2.md", "rest-post-request-response_prrest-6.4.md"} {
		data, err := os.ReadFile(filepath.Join("../../shared/interop/xroad", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte("/r1/{serviceId}/v2/pets")) {
			t.Fatalf("%s: not the example this test adapts", f)
		}
		if f == "rest-post-request-response_prrest-6.4.md" && !bytes.Contains(data, []byte(petJSON)) {
			t.Fatalf("%s: body differs from the one this test sends", f)
		}
	}
	tests := []struct {
		name, method, resource, contentType string
		body                                []byte
	}{
		{"6.2 GET /v2/pets/1124", "GET", "/v2/pets/1124", "", nil},
		{"6.4 POST /v2/pets", "POST", "/v2/pets", "application/json", []byte(petJSON)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The curl of the example: accept and X-Road-Client (and
			// Content-Type for the POST); no X-Road-Id: the server makes one.
			hdr := http.Header{"Accept": {"application/json"}, "User-Agent": {"curl/8.5.0"}}
			if tt.contentType != "" {
				hdr.Set("Content-Type", tt.contentType)
			}
			resp, body := callREST(t, sb, tt.method, sandbox.RESTService, tt.resource, hdr, tt.body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("= %d %s", resp.StatusCode, body)
			}
			id := wantXRoadResponseHeaders(t, resp, sandbox.RESTService)
			if _, err := uuid.Parse(id); err != nil {
				t.Errorf("generated X-Road-Id %q is not a uuid: %v", id, err)
			}
			if tt.body != nil && !bytes.Equal(body, tt.body) {
				t.Errorf("body = %s, want the echo of %s", body, tt.body)
			}
			if tt.body == nil {
				var e sandbox.HelloEcho
				if err := json.Unmarshal(body, &e); err != nil || e.Path != "/v2/pets/1124" || e.Headers["X-Road-Id"] != id {
					t.Errorf("hello saw %+v (%v)", e, err)
				}
			}

			// X-Road-Request-Hash recomputed here, from what the client sent
			// and the X-Road-Id the server chose (X-Road's SHA-512
			// definition over Passerelle's canonical request).
			r := httptest.NewRequest(tt.method, "/r1/"+sandbox.RESTService+tt.resource, bytes.NewReader(tt.body))
			r.Header = hdr.Clone()
			r.Header.Set(rest.HeaderClient, sandbox.ClientID)
			r.Header.Set(rest.HeaderID, id)
			d, _, err := rest.DescribeRequest(r, rest.DigestBytes(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := resp.Header.Get(rest.HeaderRequestHash), rest.RequestHash(&d); got != want {
				t.Errorf("X-Road-Request-Hash = %s, want %s", got, want)
			}
		})
	}
}

// exchangeRecords returns the records of message id in in's message log.
func exchangeRecords(t testing.TB, in *sandbox.Institution, id string) []*messagelog.Record {
	t.Helper()
	client, _ := pki.ParseSubsystemID(sandbox.ClientID)
	recs, err := in.Server().Log().ByMessageID(t.Context(), id, client)
	if err != nil {
		t.Fatalf("%s ByMessageID(%s): %v", in.Member, id, err)
	}
	return recs
}

// waitEvidence waits until every record of the message ids in both
// servers' logs has its timestamp and registry receipt (or the deadline
// passes), then checks both: the timestamp token verifies over the batch
// path with the sandbox's roots, the receipt verifies with the registry's
// key and names the record's hash and the institution's member, and the
// sandbox's registry holds that entry at that index.
func waitEvidence(t testing.TB, sb *sandbox.Sandbox, within time.Duration, ids ...string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		missing := ""
		for _, in := range []*sandbox.Institution{sb.Consumer, sb.Provider} {
			for _, id := range ids {
				recs := exchangeRecords(t, in, id)
				if len(recs) == 0 {
					t.Fatalf("%s has no record of %s", in.Member, id)
				}
				for _, r := range recs {
					if !r.Timestamped() || !r.Registered() {
						missing = fmt.Sprintf("%s record %d (%s): timestamped %v registered %v", in.Member, r.ID, id, r.Timestamped(), r.Registered())
					}
				}
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v still waiting: %s", within, missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, in := range []*sandbox.Institution{sb.Consumer, sb.Provider} {
		for _, id := range ids {
			for _, r := range exchangeRecords(t, in, id) {
				checkEvidence(t, sb, in, r)
			}
		}
	}
}

func checkEvidence(t testing.TB, sb *sandbox.Sandbox, in *sandbox.Institution, r *messagelog.Record) {
	t.Helper()
	path := timestamp.BatchPath{Index: int64(r.Timestamp.Index), Size: int64(r.Timestamp.BatchSize)}
	for _, h := range r.Timestamp.Path {
		var x timestamp.Hash
		copy(x[:], h)
		path.Proof = append(path.Proof, x)
	}
	if _, err := timestamp.Verify(timestamp.Hash(r.Hash), path, r.Timestamp.Token, sb.Roots(),
		timestamp.VerifyOptions{Certificates: []*x509.Certificate{sb.TSACert}}); err != nil {
		t.Errorf("%s record %d: timestamp does not verify: %v", in.Member, r.ID, err)
	}
	rc, err := hashregistry.VerifyReceipt(r.Receipt.Proof, sb.RegistryV)
	if err != nil {
		t.Errorf("%s record %d: registry receipt does not verify: %v", in.Member, r.ID, err)
		return
	}
	if rc.Entry.Hash != r.Hash || rc.Entry.Member != in.Member || uint64(rc.Index) != r.Receipt.Index {
		t.Errorf("%s record %d: receipt for %x by %s at %d, want %x by %s at %d", in.Member, r.ID, rc.Entry.Hash, rc.Entry.Member, rc.Index, r.Hash, in.Member, r.Receipt.Index)
	}
	entries, err := sb.Registry.Entries(t.Context(), rc.Index, 1)
	if err != nil || len(entries) != 1 {
		t.Errorf("registry entry %d: %v", rc.Index, err)
		return
	}
	e, err := hashregistry.ParseEntry(entries[0])
	if err != nil || e.Hash != r.Hash || e.Member != in.Member {
		t.Errorf("registry entry %d = %+v (%v), want hash %x of %s", rc.Index, e, err, r.Hash, in.Member)
	}
}

// testMessageLogs is row 10: after an exchange both servers' logs hold the
// request and the response with signature, chain and OCSP, and within a few
// seconds each record gets its timestamp and registry receipt.
func testMessageLogs(t *testing.T, sb *sandbox.Sandbox) {
	id := "row10-" + uuid.NewString()
	reqBody := []byte(`{"log":"me","ü":1}`)
	resp, body := callREST(t, sb, "POST", mirrorService, "/logged?a=1", http.Header{rest.HeaderID: {id}, "Content-Type": {"application/json"}}, reqBody)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("= %d %s", resp.StatusCode, body)
	}
	type want struct {
		kind messagelog.Kind
		dir  messagelog.Direction
		side messagelog.Side
		body []byte
	}
	sides := []struct {
		in   *sandbox.Institution
		side messagelog.Side
		want []want
	}{
		{sb.Consumer, messagelog.Consumer, []want{{messagelog.KindRequest, messagelog.Sent, messagelog.Consumer, reqBody}, {messagelog.KindResponse, messagelog.Received, messagelog.Consumer, body}}},
		{sb.Provider, messagelog.Provider, []want{{messagelog.KindRequest, messagelog.Received, messagelog.Provider, reqBody}, {messagelog.KindResponse, messagelog.Sent, messagelog.Provider, body}}},
	}
	signed := map[messagelog.Kind][][]byte{}
	for _, s := range sides {
		recs := exchangeRecords(t, s.in, id)
		if len(recs) != 2 {
			t.Fatalf("%s logged %d records of %s, want request and response", s.in.Member, len(recs), id)
		}
		for i, r := range recs {
			w := s.want[i]
			if r.Kind != w.kind || r.Direction != w.dir || r.Side != w.side || r.Protocol != messagelog.REST ||
				r.Client.String() != sandbox.ClientID || r.Service.String() != mirrorService {
				t.Errorf("%s record %d = %v %v %v %v %s %s, want %v %v %v", s.in.Member, i, r.Kind, r.Direction, r.Side, r.Protocol, r.Client, r.Service, w.kind, w.dir, w.side)
			}
			if len(r.Signed) == 0 || strings.Count(string(r.Signed), ".") != 2 || len(r.SignerChain) < 2 || len(r.OCSP) == 0 {
				t.Errorf("%s record %d lacks its JWS, chain or OCSP response", s.in.Member, i)
			}
			chain := parseChain(t, r.SignerChain)
			wantSigner := sb.Consumer.Member
			if w.kind == messagelog.KindResponse {
				wantSigner = sb.Provider.Member
			}
			if m, err := pki.MemberFromCert(chain[0]); err != nil || m != wantSigner {
				t.Errorf("%s record %d signed by %v (%v), want %s", s.in.Member, i, m, err, wantSigner)
			}
			if w.kind == messagelog.KindResponse && (r.RequestHash == nil || *r.RequestHash != recs[0].Hash || r.Status != http.StatusOK) {
				t.Errorf("%s response record: request hash %v status %d, want %x 200", s.in.Member, r.RequestHash, r.Status, recs[0].Hash)
			}
			rc, err := s.in.Server().Log().OpenBody(t.Context(), r)
			if err != nil {
				t.Fatalf("%s OpenBody: %v", s.in.Member, err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(got, w.body) {
				t.Errorf("%s logged %v body %q, want %q", s.in.Member, w.kind, got, w.body)
			}
			signed[r.Kind] = append(signed[r.Kind], r.Signed)
		}
	}
	// Each side holds the other side's signature: the same JWS on both.
	for k, ss := range signed {
		if len(ss) != 2 || !bytes.Equal(ss[0], ss[1]) {
			t.Errorf("%v: the two servers logged different signed messages", k)
		}
	}
	waitEvidence(t, sb, 30*time.Second, id)
}

func parseChain(t testing.TB, der [][]byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, d := range der {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatal("empty chain")
	}
	return out
}

// joseDir holds the jose npm package and verify.mjs (test/interop/jose).
const joseDir = "../test/interop/jose"

// joseNodeBin returns node once jose is installed in joseDir (npm ci when
// needed); it skips without node or npm, and fails instead under CI=true.
func joseNodeBin(t *testing.T) string {
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
	if _, err := os.Stat(filepath.Join(joseDir, "node_modules", "jose", "package.json")); err != nil {
		npm, lerr := exec.LookPath("npm")
		if lerr != nil {
			missing("the jose npm package is not installed and npm is not found: %v", lerr)
		}
		cmd := exec.CommandContext(t.Context(), npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = joseDir
		if out, err := cmd.CombinedOutput(); err != nil {
			missing("npm ci in %s failed: %v\n%s", joseDir, err, out)
		}
	}
	return node
}

// joseVerifies runs verify.mjs on a compact JWS: the payload when jose
// accepts it, ok false otherwise.
func joseVerifies(t *testing.T, node string, compact []byte) (alg, typ string, payload map[string]any, ok bool) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "msg.jws")
	if err := os.WriteFile(f, compact, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), node, "verify.mjs", f)
	cmd.Dir = joseDir
	out, err := cmd.Output()
	if err != nil {
		if _, isExit := err.(*exec.ExitError); !isExit {
			t.Fatalf("running node: %v", err)
		}
		return "", "", nil, false
	}
	var res struct {
		Alg     string         `json:"alg"`
		Typ     string         `json:"typ"`
		Payload map[string]any `json:"payload"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("verify.mjs output %q: %v", out, err)
	}
	return res.Alg, res.Typ, res.Payload, true
}

// testJoseOnLoggedJWS is row 9: the request and response JWS the servers
// exchanged, read from the provider's message log, verify with npm's jose;
// an altered copy does not.
func testJoseOnLoggedJWS(t *testing.T, sb *sandbox.Sandbox) {
	node := joseNodeBin(t)
	id := "row9-" + uuid.NewString()
	resp, body := callREST(t, sb, "POST", sandbox.RESTService, "/jose?x=%C3%A4", http.Header{rest.HeaderID: {id}, "Content-Type": {"application/json"}}, []byte(`{"jose":"✓"}`))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("= %d %s", resp.StatusCode, body)
	}
	recs := exchangeRecords(t, sb.Provider, id)
	if len(recs) != 2 {
		t.Fatalf("provider logged %d records, want 2", len(recs))
	}
	for _, r := range recs {
		kind := map[messagelog.Kind]string{messagelog.KindRequest: "request", messagelog.KindResponse: "response"}[r.Kind]
		alg, typ, payload, ok := joseVerifies(t, node, r.Signed)
		if !ok {
			t.Fatalf("jose refused the %s JWS the servers exchanged", kind)
		}
		if alg != "ES256" || typ != "passerelle-"+kind+"+jws" || payload["kind"] != kind || payload["id"] != id ||
			payload["client"] != sandbox.ClientID || payload["service"] != sandbox.RESTService {
			t.Errorf("jose read %s %s %v", alg, typ, payload)
		}
		if kind == "request" && (payload["method"] != "POST" || payload["path"] != "/jose" || payload["query"] != "x=%C3%A4") {
			t.Errorf("request payload = %v", payload)
		}
		// Alter one byte of the payload (a character of the base64url text).
		parts := bytes.Split(r.Signed, []byte("."))
		p := []byte(string(parts[1]))
		i := len(p) / 2
		if p[i] == 'A' {
			p[i] = 'B'
		} else {
			p[i] = 'A'
		}
		altered := bytes.Join([][]byte{parts[0], p, parts[2]}, []byte("."))
		if _, _, _, ok := joseVerifies(t, node, altered); ok {
			t.Errorf("jose accepted an altered %s JWS", kind)
		}
	}
}

// testRefusals is row 4: unknown service, client not allowed, backend
// down, backend too slow – each with its X-Road error type and status.
func testRefusals(t *testing.T, sb *sandbox.Sandbox) {
	t.Run("unknown service on a known subsystem", func(t *testing.T) {
		resp, body := callREST(t, sb, "GET", "SANDBOX/GOV/PROVIDER/services/nosuch", "/x", nil, nil)
		wantXRoadError(t, resp, body, http.StatusNotFound, "Server.ServerProxy.UnknownService")
	})
	t.Run("unknown subsystem", func(t *testing.T) {
		resp, body := callREST(t, sb, "GET", "SANDBOX/GOV/PROVIDER/nosuch/hello", "", nil, nil)
		wantXRoadError(t, resp, body, http.StatusNotFound, "Server.ClientProxy.UnknownService")
	})
	t.Run("client not allowed", func(t *testing.T) {
		// The provider's own subsystem calls hello through the provider's
		// consumer side: it is a registered client there, and the directory
		// lists it, but hello allows only the sandbox's client.
		h := http.Header{rest.HeaderClient: {"SANDBOX/GOV/PROVIDER/services"}}
		resp, body := doHTTP(t, nil, "GET", "http://"+sb.Provider.Addrs["consumer"]+"/r1/"+sandbox.RESTService+"/x", h, nil)
		wantXRoadError(t, resp, body, http.StatusForbidden, "Server.ServerProxy.AccessDenied")
	})
	t.Run("client not registered at the consumer server", func(t *testing.T) {
		resp, body := callREST(t, sb, "GET", sandbox.RESTService, "", http.Header{rest.HeaderClient: {"SANDBOX/GOV/PROVIDER/services"}}, nil)
		wantXRoadError(t, resp, body, 0, "Server.ClientProxy.InvalidClientIdentifier")
	})
	t.Run("no X-Road-Client", func(t *testing.T) {
		resp, body := callREST(t, sb, "GET", sandbox.RESTService, "", http.Header{rest.HeaderClient: {""}}, nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get(rest.HeaderError), "Client.") {
			t.Errorf("= %d %s %s, want 400 Client.*", resp.StatusCode, resp.Header.Get(rest.HeaderError), body)
		}
	})
	t.Run("backend too slow", func(t *testing.T) {
		start := time.Now()
		resp, body := callREST(t, sb, "GET", slowService, "/wait", nil, nil)
		wantXRoadError(t, resp, body, http.StatusGatewayTimeout, "Server.ServerProxy.ServiceFailed.Timeout")
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("took %v, want about the service's timeout %v", d, slowTimeout)
		}
	})
	t.Run("backend down", func(t *testing.T) {
		sb.Hello.Stop()
		defer func() {
			if err := sb.Hello.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
		}()
		resp, body := callREST(t, sb, "GET", sandbox.RESTService, "/x", nil, nil)
		wantXRoadError(t, resp, body, http.StatusBadGateway, "Server.ServerProxy.ServiceFailed")
		resp, body = callREST(t, sb, "POST", sandbox.RESTService, "/x", http.Header{"Content-Type": {"text/plain"}}, []byte("hi"))
		wantXRoadError(t, resp, body, http.StatusBadGateway, "Server.ServerProxy.ServiceFailed")
	})
	t.Run("backend back", func(t *testing.T) {
		resp, body := callREST(t, sb, "GET", sandbox.RESTService, "/x", nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("after the backend came back: %d %s", resp.StatusCode, body)
		}
	})
}

// logBuffer collects log lines for tests that look for one; safe for
// concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) Contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Contains(b.buf.Bytes(), []byte(s))
}

func (b *logBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
