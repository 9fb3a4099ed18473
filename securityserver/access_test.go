package securityserver

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/passerelle/passerelle/pki"
)

func TestMatchPath(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"/pets", "/pets", true},
		{"/pets", "/pets/", false},
		{"/pets/*", "/pets/1", true},
		{"/pets/*", "/pets", false},
		{"/pets/*", "/pets/1/photos", false},
		{"/pets/*/photos", "/pets/1/photos", true},
		{"/pets/**", "/pets", true},
		{"/pets/**", "/pets/1/2/3", true},
		{"/**", "", true},
		{"/", "", true},
		{"/", "/a", false},
		{"/a%2Fb", "/a%2Fb", true},
		{"/a/*", "/a%2Fb", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.path, func(t *testing.T) {
			if got := matchPath(tt.pattern, tt.path); got != tt.want {
				t.Errorf("matchPath(%q, %q) = %v, want %v", tt.pattern, tt.path, got, tt.want)
			}
		})
	}
}

func TestPermits(t *testing.T) {
	sub := mustClient(t, "EE/GOV/1/app")
	other := mustClient(t, "EE/GOV/2/app")
	svc := &ServiceConfig{
		Allow: []string{"EE/GOV/2"},
		Rules: []AccessRule{{Client: "EE/GOV/1/app", Methods: []string{"GET"}, Paths: []string{"/pets/*"}}, {Client: "EE/GOV/1", Methods: []string{"*"}, Paths: []string{"/public/**"}}},
	}
	tests := []struct {
		name         string
		client       pki.ClientID
		method, path string
		want         bool
	}{
		{"member grant covers its subsystems", other, "DELETE", "/anything", true},
		{"rule method and path", sub, "GET", "/pets/1", true},
		{"rule wrong method", sub, "POST", "/pets/1", false},
		{"rule wrong path", sub, "GET", "/store", false},
		{"member rule", sub, "PUT", "/public/x/y", true},
		{"nobody else", mustClient(t, "EE/GOV/3"), "GET", "/pets/1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := permits(svc, tt.client, tt.method, tt.path); got != tt.want {
				t.Errorf("permits(%s %s %s) = %v, want %v", tt.client, tt.method, tt.path, got, tt.want)
			}
		})
	}
	if !allowed(svc, sub) || allowed(svc, mustClient(t, "EE/GOV/3")) || permits(nil, sub, "GET", "/") {
		t.Error("allowed/permits on grants as a whole")
	}
}

func TestAllowedEndpoints(t *testing.T) {
	all := []endpoint{{"GET", "/pets"}, {"POST", "/pets"}, {"GET", "/pets/*"}, {"DELETE", "/pets/*"}}
	sub := mustClient(t, "EE/GOV/1/app")
	svc := &ServiceConfig{Rules: []AccessRule{{Client: sub.String(), Methods: []string{"GET"}}}}
	got := allowedEndpoints(svc, all, sub)
	if want := []endpoint{{"GET", "/pets"}, {"GET", "/pets/*"}}; !slices.Equal(got, want) {
		t.Errorf("allowedEndpoints = %v, want %v", got, want)
	}
	wild := []endpoint{{anyMethod, "/**"}}
	svc.Rules[0].Paths = []string{"/a/*"}
	if got, want := allowedEndpoints(svc, wild, sub), []endpoint{{"GET", "/a/*"}}; !slices.Equal(got, want) {
		t.Errorf("allowedEndpoints(no OpenAPI) = %v, want the rule %v", got, want)
	}
}

func TestOpenAPIEndpoints(t *testing.T) {
	data, err := os.ReadFile("testdata/pets.openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	eps, err := openAPIEndpoints(data)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range eps {
		got = append(got, e.Method+" "+e.Path)
	}
	if want := "GET /pets,POST /pets,GET /pets/*,DELETE /pets/*,GET /store/inventory"; strings.Join(got, ",") != want {
		t.Errorf("endpoints = %v, want %s", got, want)
	}
	for name, bad := range map[string]string{
		"swagger 2":     "swagger: '2.0'\npaths: {}\n",
		"relative path": "openapi: 3.0.0\npaths:\n  pets: {get: {}}\n",
		"not yaml":      "openapi: [",
	} {
		if _, err := openAPIEndpoints([]byte(bad)); err == nil {
			t.Errorf("openAPIEndpoints(%s) accepted", name)
		}
	}
}

func FuzzOpenAPIEndpoints(f *testing.F) {
	if data, err := os.ReadFile("testdata/pets.openapi.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"openapi":"3.1.0","paths":{"/a/{b}":{"get":{},"put":{}}}}`))
	f.Add([]byte("openapi: 3.0.0\npaths: {}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		eps, err := openAPIEndpoints(data)
		if err != nil {
			return
		}
		for _, e := range eps {
			if !strings.HasPrefix(e.Path, "/") || strings.Contains(e.Path, "{") || !validMethod(e.Method) {
				t.Fatalf("endpoint %+v", e)
			}
		}
	})
}

func FuzzMatchPath(f *testing.F) {
	f.Add("/pets/*", "/pets/1")
	f.Add("/a/**", "/a/b/c")
	f.Add("/", "")
	f.Fuzz(func(t *testing.T, pattern, path string) {
		if validPathPattern(pattern) != nil {
			return
		}
		got := matchPath(pattern, path)
		if pattern == path && strings.HasPrefix(path, "/") && !got {
			t.Fatalf("matchPath(%q, itself) = false", pattern)
		}
		if matchPath("/**", path) != true {
			t.Fatalf("/** does not match %q", path)
		}
	})
}

func TestNormalizeFingerprint(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for _, in := range []string{h, strings.ToUpper(h), strings.TrimSuffix(strings.Repeat("AB:", 32), ":")} {
		if got, err := normalizeFingerprint(in); err != nil || got != h {
			t.Errorf("normalizeFingerprint(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "ab", h + "ab", strings.Repeat("zz", 32)} {
		if _, err := normalizeFingerprint(in); err == nil {
			t.Errorf("normalizeFingerprint(%q) accepted", in)
		}
	}
}

// TestStorePrecedence checks the overlay rules: the admin API's version of
// an identifier wins over the YAML's and survives a restart; identifiers
// the admin API never touched follow the YAML.
func TestStorePrecedence(t *testing.T) {
	owner := mustClient(t, "EE/GOV/1")
	dir := t.TempDir()
	cfg := &Config{DataDir: dir,
		Clients: []ClientConfig{{ID: "EE/GOV/1/a"}, {ID: "EE/GOV/1/b"}},
		Services: []ServiceConfig{
			{ID: "EE/GOV/1/s/one", URL: "http://one.example/", Allow: []string{"EE/GOV/2"}},
			{ID: "EE/GOV/1/s/two", URL: "http://two.example/"},
		}}
	cfg.setDefaults()
	open := func() *configStore {
		st, err := newConfigStore(cfg, owner, nil, http.DefaultClient)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.close() })
		return st
	}
	st := open()
	rec := AuditRecord{Actor: "test", Action: "updateService", Target: "EE/GOV/1/s/one"}
	if err := st.change(rec, func(ov *overlay, _ []ClientConfig, ss []ServiceConfig) error {
		return editService(ov, ss, "EE/GOV/1/s/one", func(s *ServiceConfig) error { s.URL = "http://admin.example/"; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.change(AuditRecord{Actor: "test", Action: "removeClient"}, func(ov *overlay, _ []ClientConfig, _ []ServiceConfig) error {
		ov.Clients["EE/GOV/1/b"] = nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	bad := st.change(AuditRecord{Action: "addService"}, func(ov *overlay, _ []ClientConfig, _ []ServiceConfig) error {
		ov.Services["EE/GOV/9/s/x"] = &ServiceConfig{ID: "EE/GOV/9/s/x", URL: "http://x/"}
		return nil
	})
	if bad == nil {
		t.Error("a foreign service was accepted")
	}
	st.close()

	// Restart with the YAML edited: the overridden service keeps the
	// admin's URL, the other one follows the YAML.
	cfg.Services[0].URL = "http://yaml-edit.example/"
	cfg.Services[1].URL = "http://two-edited.example/"
	st = open()
	if got := st.service("EE/GOV/1/s/one").URL; got != "http://admin.example/" {
		t.Errorf("overridden service URL = %s, want the admin's", got)
	}
	if got := st.service("EE/GOV/1/s/two").URL; got != "http://two-edited.example/" {
		t.Errorf("untouched service URL = %s, want the YAML's", got)
	}
	if c := st.load().clients[mustClient(t, "EE/GOV/1/b")]; c != nil {
		t.Error("removed client came back from the YAML")
	}
	recs, err := st.auditRecords()
	if err != nil || len(recs) != 2 || recs[0].Seq != 1 || recs[1].Seq != 2 || recs[0].Actor != "test" {
		t.Errorf("audit = %+v, %v; want the two changes that took effect", recs, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "admin", "state.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state.json: %v %v, want mode 0600", fi, err)
	}
}

func mustClient(t testing.TB, s string) pki.ClientID {
	t.Helper()
	id, err := pki.ParseClientID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
