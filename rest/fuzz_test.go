package rest

import (
	"errors"
	"github.com/passerelle/passerelle/pki/pkitest"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzParseRequest: no panic; what parses has valid identifiers, a resource
// path that is a suffix of the escaped path, and round-trips through
// ServicePath.
func FuzzParseRequest(f *testing.F) {
	f.Add("/r1/PASS/GOV/5678/PETSTORE/petstore/v2/pets/1124", "a=1", "PASS/GOV/1234/CLIENT", "PASS/GOV/9/X", "id-1")
	f.Add("/r1/PASS/GOV/12%3F34/SUB%28A%29/svc%2Cv1/res%2Fpath/", "", "PASS/GOV/1234", "", "")
	f.Add("/r1/PASS/GOV/5678/PETSTORE/getOpenAPI", "serviceCode=petstore", "PASS/GOV/1234/CLIENT", "", "")
	f.Add("/listClients", "xRoadInstance=PASS", "", "", "")
	f.Add("/r1/PASS//5678/PETSTORE/petstore", "", "PASS/GOV", "", "\x01")
	f.Add("/r1/%zz/GOV/5678/PETSTORE/listMethods", "%%", "PASS/GOV/1/2/3", "", "")
	f.Fuzz(func(t *testing.T, path, query, client1, client2, id string) {
		u := &url.URL{Path: path, RawQuery: query}
		if p, err := url.PathUnescape(path); err == nil {
			u.Path, u.RawPath = p, path
		}
		r := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}}
		for _, c := range []string{client1, client2} {
			if c != "" {
				r.Header.Add(HeaderClient, c)
			}
		}
		if id != "" {
			r.Header.Set(HeaderID, id)
		}
		req, err := ParseRequest(r)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !e.IsClientError() {
				t.Fatalf("ParseRequest error %v is not a client *Error", err)
			}
			return
		}
		if req.Kind == KindListClients {
			return
		}
		if !strings.HasSuffix(u.EscapedPath(), req.Path) {
			t.Fatalf("resource path %q is not a suffix of %q", req.Path, u.EscapedPath())
		}
		u2, err := url.Parse(req.ServicePath())
		if err != nil {
			t.Fatalf("ServicePath %q does not parse: %v", req.ServicePath(), err)
		}
		u2.RawQuery = req.RawQuery
		again, err := ParseRequest(&http.Request{Method: http.MethodGet, URL: u2, Header: req.Header})
		if err != nil || again.Service != req.Service || again.Path != req.Path || again.Client != req.Client || again.ID != req.ID {
			t.Fatalf("ServicePath %q does not round-trip: %+v %v", req.ServicePath(), again, err)
		}
	})
}

// FuzzVerifyRequest: an altered JWS never verifies and never panics.
func FuzzVerifyRequest(f *testing.F) {
	ec, rsaLeaf, _ := fixtures(f)
	r, body := sampleRequest(f)
	d := describe(f, r, body)
	var seeds []string
	for _, leaf := range []*pkitestLeaf{ec, rsaLeaf} {
		dd := d
		c, err := SignRequest(f.Context(), &dd, leaf.Key, leaf.Chain, []byte{1, 2, 3})
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, c)
	}
	got := describe(f, r, body) // SignedAt zero: not compared
	for _, s := range seeds {
		f.Add(s, 0, byte(0))
		f.Add(s, len(s)/2, byte('A'))
		f.Add(s, 10, byte('.'))
	}
	f.Add("e30.e30.", 0, byte(0))
	f.Fuzz(func(t *testing.T, compact string, pos int, b byte) {
		altered := compact
		if len(compact) > 0 && b != 0 {
			pos = ((pos % len(compact)) + len(compact)) % len(compact)
			altered = compact[:pos] + string(b) + compact[pos+1:]
		}
		_, err := VerifyRequest(altered, &got)
		if err == nil && altered != compact {
			t.Fatalf("an altered JWS verified: %q", altered)
		}
	})
}

type pkitestLeaf = pkitest.Leaf
