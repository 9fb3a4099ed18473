package rest

import (
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestParseRequestRefusesDotSegments(t *testing.T) {
	const svc = "/r1/EE/GOV/1/sub/svc"
	for _, tt := range []struct {
		path string
		ok   bool
	}{
		{"/a/b", true},
		{"/a..b/.c/d.", true},
		{"/..", false},
		{"/a/../b", false},
		{"/.", false},
		{"/%2e%2E/x", false},
		{"/.%2e", false},
		{"/%2e%2e%2fetc", false},
		{"/x%5c..%5cy", false},
	} {
		t.Run(tt.path, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://ss"+svc, nil)
			r.URL.RawPath = svc + tt.path
			p, err := url.PathUnescape(svc + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			r.URL.Path = p
			r.Header.Set(HeaderClient, "EE/GOV/2/client")
			_, err = ParseRequest(r)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseRequest(%q) error = %v, want ok=%v", tt.path, err, tt.ok)
			}
		})
	}
}
