package verify_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/verify"
)

// A receiver checks the signer of a message: the chain and the OCSP
// response travel with the message.
func ExampleVerifier_Verify() {
	var (
		roots    *x509.CertPool      // the trust directory's ca.pem
		chain    []*x509.Certificate // from the message, leaf first
		ocspDER  []byte              // from the message
		claimed  pki.ClientID        // the member the message claims to come from
		verifier *verify.Verifier
		err      error
	)
	if verifier, err = verify.New(verify.Config{Roots: roots}); err != nil {
		log.Fatal(err)
	}
	member, err := verifier.Verify(context.Background(), chain, ocspDER, pki.UsageSign)
	switch {
	case errors.Is(err, verify.ErrRevoked), errors.Is(err, verify.ErrUntrusted):
		fmt.Println("refuse:", err)
	case errors.Is(err, verify.ErrStaleOCSP):
		fmt.Println("ask the sender to refresh its OCSP response:", err)
	case err != nil:
		fmt.Println("refuse:", err)
	case member != claimed.MemberID():
		fmt.Println("signed by", member, "but claims", claimed)
	}
}
