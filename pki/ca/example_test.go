package ca_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ca"
)

// A CA issues a TSA certificate whose extended key usage is critical, as
// RFC 3161 requires, and binds a member into an auth certificate.
func ExampleCA_Sign() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "ca-example")
	defer os.RemoveAll(dir)
	c, err := ca.Init(ctx, ca.InitConfig{Dir: filepath.Join(dir, "ca"), Instance: "EE"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	key, _ := pki.GenerateKey(pki.ECDSAP256)
	csr, _ := pki.CreateCSR(key, pki.ClientID{}, pki.UsageTSA)
	tsa, err := c.Sign(ctx, ca.SignRequest{CSR: csr, Usage: pki.UsageTSA, Operator: "example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range tsa.Extensions {
		if e.Id.Equal(pki.OIDExtKeyUsage) {
			fmt.Println("tsa EKU critical:", e.Critical)
		}
	}

	member, _ := pki.ParseMemberID("EE/GOV/A(1)")
	key, _ = pki.GenerateKey(pki.ECDSAP256)
	csr, _ = pki.CreateCSR(key, member, pki.UsageAuth)
	auth, err := c.Sign(ctx, ca.SignRequest{CSR: csr, Member: member, Usage: pki.UsageAuth, Hosts: []string{"ss1.example.org"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("auth SAN:", auth.URIs[0], auth.DNSNames[0])
	// Output:
	// tsa EKU critical: true
	// auth SAN: urn:passerelle:member:EE/GOV/A%281%29 ss1.example.org
}
