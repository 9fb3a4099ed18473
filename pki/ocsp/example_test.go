package ocsp_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"log"
	"math/big"
	"net/http"
	"time"

	"github.com/passerelle/passerelle/pki/ocsp"
)

// A CA serves OCSP for its certificates from its database.
func ExampleNewResponder() {
	var (
		caCert *x509.Certificate // the CA certificate
		caKey  crypto.Signer     // its key
	)
	source := ocsp.StatusFunc(func(ctx context.Context, serial *big.Int) (ocsp.Status, error) {
		return ocsp.Status{Status: ocsp.Unknown}, nil // look the serial up in the CA database
	})
	r, err := ocsp.NewResponder(ocsp.ResponderConfig{Issuer: caCert, Signer: caKey, Source: source})
	if err != nil {
		log.Fatal(err)
	}
	// Route keeps /ocsp/{base64} intact; everything else goes to the mux.
	log.Fatal(http.ListenAndServe("127.0.0.1:8888", r.Route(http.NewServeMux())))
}

// A receiver checks the OCSP response a sender attached to its message.
func ExampleParseAndVerify() {
	var (
		senderCert, issuer *x509.Certificate
		attached           []byte // DER, from the message
	)
	resp, err := ocsp.ParseAndVerify(attached, senderCert, issuer, time.Now(), 3600*time.Second)
	if err != nil {
		fmt.Println("refused:", err) // errors.Is: ErrRevoked, ErrStale, ErrUnauthorizedResponder, ...
		return
	}
	fmt.Println("good until", resp.Expiry(3600*time.Second))
}

// A security server keeps its own certificate's OCSP response fresh and
// attaches it to every message it sends.
func ExampleStapler() {
	var ownCert, issuer *x509.Certificate
	s, err := ocsp.NewStapler(ocsp.StaplerConfig{Cert: ownCert, Issuer: issuer})
	if err != nil {
		log.Fatal(err)
	}
	go s.Run(context.Background())
	der, err := s.Staple() // fails closed (ErrStale) once nothing fresh is left
	if err != nil {
		log.Print(err)
		return
	}
	_ = der // attach to the message
}
