package soap_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
	"github.com/passerelle/passerelle/soap"
)

// The consumer-side server signs the client's envelope; the provider-side
// server verifies it, checks the signer against the client header, and
// forwards the envelope without the signature.
func ExampleSign() {
	t := &testing.T{}
	ca := pkitest.NewCA(t, "example CA")
	member := pki.ClientID{Instance: "PAS", Class: "GOV", Member: "MEMBER1"}
	leaf := ca.Issue(t, member, pki.UsageSign)
	request, _ := os.ReadFile("testdata/soap-request_prmess-annexE1.xml")

	signed, err := soap.Sign(request, soap.Signer{Key: leaf.Key, Chain: leaf.Chain}, soap.SignOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	v, err := soap.Verify("text/xml", signed, soap.Limits{})
	if err != nil {
		fmt.Println(soap.NewFault(soap.PrefixServerProxy, err).Code)
		return
	}
	fmt.Println("signer:", v.Signer, "client check:", v.CheckClient())
	forwarded, _ := v.Stripped()
	fmt.Println("service sees the client's bytes:", string(forwarded) == string(request))
	// Output:
	// signer: PAS/GOV/MEMBER1 client check: <nil>
	// service sees the client's bytes: true
}
