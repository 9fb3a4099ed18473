package rest

import (
	"context"
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
