package ca

import (
	"testing"

	"github.com/passerelle/passerelle/pki"
)

// BenchmarkSign is one issuance: CSR checks, cfssl signing, a database
// transaction with the record and its audit entry.
func BenchmarkSign(b *testing.B) {
	c := newTestCA(b)
	csr := newCSR(b, testMember, pki.UsageAuth)
	for b.Loop() {
		if _, err := c.Sign(b.Context(), SignRequest{CSR: csr, Member: testMember, Usage: pki.UsageAuth}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOCSPStatus is the responder's per-request lookup (the database
// is opened read-only for each).
func BenchmarkOCSPStatus(b *testing.B) {
	c := newTestCA(b)
	cert, err := c.Sign(b.Context(), SignRequest{CSR: newCSR(b, testMember, pki.UsageAuth), Member: testMember, Usage: pki.UsageAuth})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.OCSPStatus(b.Context(), cert.SerialNumber); err != nil {
			b.Fatal(err)
		}
	}
}
