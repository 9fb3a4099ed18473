package rest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"

	"github.com/passerelle/passerelle/pki"
)

func TestParseRequest(t *testing.T) {
	svc := func(s string) pki.ServiceID {
		id, err := pki.ParseServiceID(s)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	for _, tc := range []struct {
		name    string
		method  string
		target  string
		headers [][2]string
		want    Request // Header and generated IDs are checked apart
	}{
		{
			name:    "X-Road GET example 6.2",
			method:  "GET",
			target:  "/r1/PASS/GOV/5678/PETSTORE/petstore/v2/pets/1124",
			headers: [][2]string{{"accept", "application/json"}, {"X-Road-Client", "PASS/GOV/1234/CLIENT"}},
			want: Request{Kind: KindService, Method: "GET", Client: testClient,
				Service: svc("PASS/GOV/5678/PETSTORE/petstore"), Path: "/v2/pets/1124"},
		},
		{
			name:    "X-Road POST example 6.4 with query",
			method:  "POST",
			target:  "/r1/PASS/GOV/5678/PETSTORE/petstore/v2/pets?a=1&b=%20x",
			headers: [][2]string{{"X-Road-Client", "PASS/GOV/1234/CLIENT"}, {"X-Road-Id", "id-1"}, {"X-Road-UserId", "FR1"}, {"X-Road-Issue", "ISSUE-7"}},
			want: Request{Kind: KindService, Method: "POST", Client: testClient, ID: "id-1", UserID: "FR1", Issue: "ISSUE-7",
				Service: svc("PASS/GOV/5678/PETSTORE/petstore"), Path: "/v2/pets", RawQuery: "a=1&b=%20x"},
		},
		{
			name:    "percent-encoded identifier parts",
			method:  "GET",
			target:  "/r1/PASS/GOV/12%3F34%27/SUB%28A%29/svc%2Cv1/res%2Fpath",
			headers: [][2]string{{"X-Road-Client", "PASS/GOV/1234/CLIENT"}},
			want: Request{Kind: KindService, Method: "GET", Client: testClient,
				Service: pki.ServiceID{Client: pki.ClientID{Instance: "PASS", Class: "GOV", Member: "12?34'", Subsystem: "SUB(A)"}, Code: "svc,v1"},
				Path:    "/res%2Fpath"},
		},
		{
			name:    "no resource path",
			method:  "DELETE",
			target:  "/r1/PASS/GOV/5678/PETSTORE/petstore",
			headers: [][2]string{{"X-Road-Client", "PASS/GOV/1234/CLIENT"}},
			want:    Request{Kind: KindService, Method: "DELETE", Client: testClient, Service: svc("PASS/GOV/5678/PETSTORE/petstore")},
		},
		{
			name:    "trailing slash kept",
			method:  "GET",
			target:  "/r1/PASS/GOV/5678/PETSTORE/petstore/",
			headers: [][2]string{{"X-Road-Client", "PASS/GOV/1234/CLIENT"}},
			want:    Request{Kind: KindService, Method: "GET", Client: testClient, Service: svc("PASS/GOV/5678/PETSTORE/petstore"), Path: "/"},
		},
		{
			name:    "repeated X-Road-Client: the last counts",
			method:  "GET",
			target:  "/r1/PASS/GOV/5678/PETSTORE/petstore/x",
			headers: [][2]string{{"X-Road-Client", "PASS/GOV/9999/OTHER"}, {"X-Road-Client", "PASS/GOV/1234/CLIENT"}},
			want:    Request{Kind: KindService, Method: "GET", Client: testClient, Service: svc("PASS/GOV/5678/PETSTORE/petstore"), Path: "/x"},
		},
		{
			name:    "member as client",
			method:  "GET",
			target:  "/r1/PASS/GOV/5678/PETSTORE/petstore",
			headers: [][2]string{{"X-Road-Client", "PASS/GOV/1234"}},
			want:    Request{Kind: KindService, Method: "GET", Client: testClient.MemberID(), Service: svc("PASS/GOV/5678/PETSTORE/petstore")},
		},
		{
			name:    "represented party and security server",
			method:  "GET",
			target:  "/r1/PASS/GOV/5678/PETSTORE/petstore",
			headers: [][2]string{{"X-Road-Client", "PASS/GOV/1234/CLIENT"}, {"X-Road-Represented-Party", "COM/777"}, {"X-Road-Security-Server", "PASS/GOV/5678/SS1"}},
			want: Request{Kind: KindService, Method: "GET", Client: testClient, Service: svc("PASS/GOV/5678/PETSTORE/petstore"),
				RepresentedParty: "COM/777", SecurityServer: "PASS/GOV/5678/SS1"},
		},
		{
			name:    "listClients",
			method:  "GET",
			target:  "/listClients?xRoadInstance=PASS",
			headers: [][2]string{{"Accept", "application/json"}},
			want:    Request{Kind: KindListClients, Method: "GET", RawQuery: "xRoadInstance=PASS", MetaServiceParam: "PASS"},
		},
		{
			name:    "listMethods",
			method:  "GET",
			target:  "/r1/PASS/GOV/5678/PETSTORE/listMethods",
			headers: [][2]string{{"X-Road-Client", "PASS/GOV/1234/CLIENT"}},
			want:    Request{Kind: KindListMethods, Method: "GET", Client: testClient, Service: svc("PASS/GOV/5678/PETSTORE/listMethods")},
		},
		{
			name:    "allowedMethods",
			method:  "GET",
			target:  "/r1/PASS/GOV/5678/PETSTORE/allowedMethods",
			headers: [][2]string{{"X-Road-Client", "PASS/GOV/1234/CLIENT"}},
			want:    Request{Kind: KindAllowedMethods, Method: "GET", Client: testClient, Service: svc("PASS/GOV/5678/PETSTORE/allowedMethods")},
		},
		{
			name:    "getOpenAPI",
			method:  "GET",
			target:  "/r1/PASS/GOV/5678/PETSTORE/getOpenAPI?serviceCode=petstore",
			headers: [][2]string{{"X-Road-Client", "PASS/GOV/1234/CLIENT"}},
			want: Request{Kind: KindGetOpenAPI, Method: "GET", Client: testClient, Service: svc("PASS/GOV/5678/PETSTORE/getOpenAPI"),
				RawQuery: "serviceCode=petstore", MetaServiceParam: "petstore"},
		},
		{
			name:    "listMethods with a path is a service",
			method:  "GET",
			target:  "/r1/PASS/GOV/5678/PETSTORE/listMethods/x",
			headers: [][2]string{{"X-Road-Client", "PASS/GOV/1234/CLIENT"}},
			want:    Request{Kind: KindService, Method: "GET", Client: testClient, Service: svc("PASS/GOV/5678/PETSTORE/listMethods"), Path: "/x"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.target, nil)
			for _, h := range tc.headers {
				r.Header.Add(h[0], h[1])
			}
			got, err := ParseRequest(r)
			if err != nil {
				t.Fatalf("ParseRequest = %v", err)
			}
			if tc.want.ID == "" {
				if !got.IDGenerated || len(got.ID) != 36 {
					t.Errorf("ID = %q (generated %v), want a generated UUID", got.ID, got.IDGenerated)
				}
				tc.want.ID, tc.want.IDGenerated = got.ID, true
			}
			if v := got.Header.Values(HeaderID); !slices.Equal(v, []string{got.ID}) {
				t.Errorf("Header X-Road-Id = %q, want [%q]", v, got.ID)
			}
			if !got.Client.IsZero() {
				if v := got.Header.Values(HeaderClient); !slices.Equal(v, []string{got.Client.String()}) {
					t.Errorf("Header X-Road-Client = %q, want [%q]", v, got.Client)
				}
			}
			h := got.Header
			got.Header = nil
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("ParseRequest(%s) =\n %+v\nwant\n %+v", tc.target, *got, tc.want)
			}
			if got.Kind == KindService {
				// The r1 path round-trips through ServicePath.
				r2 := httptest.NewRequest(tc.method, got.ServicePath(), nil)
				r2.Header = h
				again, err := ParseRequest(r2)
				if err != nil || again.Service != got.Service || again.Path != got.Path {
					t.Errorf("ServicePath %q does not round-trip: %+v, %v", got.ServicePath(), again, err)
				}
			}
		})
	}
}

func TestParseRequestErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		target  string
		headers [][2]string
		code    Code
	}{
		{"missing X-Road-Client", "/r1/PASS/GOV/5678/PETSTORE/petstore", nil, CodeMissingHeader},
		{"bad X-Road-Client", "/r1/PASS/GOV/5678/PETSTORE/petstore", [][2]string{{"X-Road-Client", "PASS/GOV"}}, CodeInvalidClientIdentifier},
		{"bad char in X-Road-Client", "/r1/PASS/GOV/5678/PETSTORE/petstore", [][2]string{{"X-Road-Client", "PASS/GOV/12 34/A"}}, CodeInvalidClientIdentifier},
		{"not r1", "/r2/PASS/GOV/5678/PETSTORE/petstore", [][2]string{{"X-Road-Client", "PASS/GOV/1234"}}, CodeBadRequest},
		{"root", "/", [][2]string{{"X-Road-Client", "PASS/GOV/1234"}}, CodeBadRequest},
		{"too few parts", "/r1/PASS/GOV/5678/PETSTORE", [][2]string{{"X-Road-Client", "PASS/GOV/1234"}}, CodeBadRequest},
		{"empty part", "/r1/PASS//5678/PETSTORE/petstore", [][2]string{{"X-Road-Client", "PASS/GOV/1234"}}, CodeBadRequest},
		{"bad char in path part", "/r1/PASS/GOV/56%2078/PETSTORE/petstore", [][2]string{{"X-Road-Client", "PASS/GOV/1234"}}, CodeBadRequest},
		{"getOpenAPI without serviceCode", "/r1/PASS/GOV/5678/PETSTORE/getOpenAPI", [][2]string{{"X-Road-Client", "PASS/GOV/1234"}}, CodeBadRequest},
		{"listClients bad instance", "/listClients?xRoadInstance=a%20b", nil, CodeBadRequest},
		{"X-Road-Id with control char", "/r1/PASS/GOV/5678/PETSTORE/petstore", [][2]string{{"X-Road-Client", "PASS/GOV/1234"}, {"X-Road-Id", "a\x01b"}}, CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if err := setTarget(r, tc.target); err != nil {
				t.Fatal(err)
			}
			for _, h := range tc.headers {
				r.Header.Add(h[0], h[1])
			}
			_, err := ParseRequest(r)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("ParseRequest = %v, want an *Error", err)
			}
			if !e.HasCode(tc.code) || !e.IsClientError() || e.StatusFor(ErrorMode{}) != http.StatusBadRequest {
				t.Errorf("ParseRequest = %s (status %d), want Client.%s, 400", e.Type, e.Status, tc.code)
			}
		})
	}
}

// setTarget sets r's URL from a raw request target, as the server would.
func setTarget(r *http.Request, target string) error {
	u, err := r.URL.Parse(target)
	if err != nil {
		return err
	}
	r.URL = u
	return nil
}

func TestEndToEnd(t *testing.T) {
	h := http.Header{}
	for k, v := range map[string]string{
		"Connection": "keep-alive, X-Custom-Hop", "Keep-Alive": "timeout=5", "Proxy-Authorization": "x",
		"Proxy-Foo": "x", "Te": "trailers", "Trailer": "X", "Transfer-Encoding": "chunked", "Upgrade": "h2c",
		"Host": "h", "User-Agent": "curl", "Server": "s", "X-Custom-Hop": "x", HeaderSignature: "jws",
		"Content-Type": "application/json", "X-Road-Client": "PASS/GOV/1", "Authorization": "Bearer t", "X-Other": "y",
	} {
		h.Set(k, v)
	}
	got := EndToEnd(h)
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"Authorization", "Content-Type", "X-Other", "X-Road-Client"}
	if !slices.Equal(keys, want) {
		t.Errorf("EndToEnd kept %q, want %q", keys, want)
	}
}

func mustService(t testing.TB, s string) pki.ServiceID {
	t.Helper()
	id, err := pki.ParseServiceID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
