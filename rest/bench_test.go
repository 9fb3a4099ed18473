package rest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/passerelle/passerelle/pki/pkitest"
)

// BenchmarkSignVerifyRequest measures one request signature and its
// verification (what the consumer and provider sides do per message).
func BenchmarkSignVerifyRequest(b *testing.B) {
	ec, rsaLeaf, _ := fixtures(b)
	r, body := sampleRequest(b)
	d := describe(b, r, body)
	got := describe(b, r, body)
	ocsp := make([]byte, 1500) // about a real OCSP response
	for _, tc := range []struct {
		name string
		leaf *pkitest.Leaf
	}{{"ES256-P256", ec}, {"PS256-RSA2048", rsaLeaf}} {
		s, err := NewSigner(tc.leaf.Key, tc.leaf.Chain)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name+"/sign", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				dd := d
				if _, err := s.SignRequest(context.Background(), &dd, ocsp); err != nil {
					b.Fatal(err)
				}
			}
		})
		dd := d
		compact, err := s.SignRequest(context.Background(), &dd, ocsp)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name+"/verify", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := VerifyRequest(compact, &got); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/sign+verify", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				dd := d
				c, err := s.SignRequest(context.Background(), &dd, ocsp)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := VerifyRequest(c, &got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseRequest measures r1 parsing and descriptor building.
func BenchmarkParseRequest(b *testing.B) {
	r, body := sampleRequest(b)
	bd := DigestBytes(body)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := DescribeRequest(r, bd); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDescribeResponse measures what both sides compute over a
// response's headers: the end-to-end copy, the signed headers and the
// binding to the request JWS.
func BenchmarkDescribeResponse(b *testing.B) {
	r, body := sampleRequest(b)
	d := describe(b, r, body)
	ec, _, _ := fixtures(b)
	dd := d
	reqJWS, err := SignRequest(context.Background(), &dd, ec.Key, ec.Chain, make([]byte, 1500))
	if err != nil {
		b.Fatal(err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", "1024")
	h.Set("Date", "Thu, 21 Mar 2019 12:49:38 GMT")
	h.Set("Etag", `"abc"`)
	h.Set(HeaderClient, d.Client.String())
	h.Set(HeaderService, d.Service.String())
	h.Set(HeaderID, d.ID)
	h.Set(HeaderRequestID, "0b8b6a4e-6a2a-4b7e-9d0e-1c1f3f0e2a11")
	h.Set(HeaderRequestHash, RequestHash(&d))
	respBody := DigestBytes(body)
	b.ReportAllocs()
	for b.Loop() {
		e := EndToEnd(h)
		_ = DescribeResponse(&d, reqJWS, http.StatusOK, e, respBody)
	}
}

// BenchmarkWriteError measures an error response (a security server under
// overload writes many: TooManyRequests).
func BenchmarkWriteError(b *testing.B) {
	r, _ := sampleRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		WriteError(w, r, ServerProxyError(CodeTooManyRequests, "too many concurrent requests from this client", nil), ErrorMode{})
	}
}
