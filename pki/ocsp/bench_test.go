package ocsp

import (
	"testing"
	"time"
)

// BenchmarkRespond measures responder throughput for one serial: every
// request signed ("nocache", the baseline) and with the per-serial cache.
func BenchmarkRespond(b *testing.B) {
	for _, bc := range []struct {
		name     string
		cacheFor time.Duration
	}{{"nocache", -1}, {"cache", time.Minute}} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b, false)
			f.resp.cfg.CacheFor = bc.cacheFor
			leaf := f.issue(b, &Status{Status: Good})
			req := mustRequest(b, f, leaf)
			b.ReportAllocs()
			for b.Loop() {
				if resp, _ := f.resp.Respond(b.Context(), req); len(resp) < 100 {
					b.Fatal("error response")
				}
			}
		})
	}
}

// BenchmarkParseAndVerify is what a receiver pays per stapled response.
func BenchmarkParseAndVerify(b *testing.B) {
	f := newFixture(b, true)
	leaf := f.issue(b, &Status{Status: Good})
	der, _ := f.resp.Respond(b.Context(), mustRequest(b, f, leaf))
	now := time.Now()
	for b.Loop() {
		if _, err := ParseAndVerify(der, leaf.Cert, f.ca.Cert, now, 0); err != nil {
			b.Fatal(err)
		}
	}
}
