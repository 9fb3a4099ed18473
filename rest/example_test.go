package rest_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/rest"
)

// Example shows both sides of a signed request: the consumer side parses
// the client's r1 request, describes it and signs it; the provider side
// describes what it received and verifies the JWS against it.
func Example() {
	key, _ := pki.GenerateKey(pki.ECDSAP256)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	cert, _ := x509.ParseCertificate(der)

	body := `{"name":"doggie"}`
	newRequest := func() *http.Request {
		r := httptest.NewRequest("POST", "/r1/PASS/GOV/5678/PETSTORE/petstore/v2/pets", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-Road-Client", "PASS/GOV/1234/CLIENT")
		r.Header.Set("X-Road-Id", "c0ffee")
		return r
	}

	// Consumer side.
	signer, err := rest.NewSigner(key, []*x509.Certificate{cert})
	if err != nil {
		panic(err)
	}
	d, req, err := rest.DescribeRequest(newRequest(), rest.DigestBytes([]byte(body)))
	if err != nil {
		panic(err)
	}
	jws, err := signer.SignRequest(context.Background(), &d, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println("forward to", req.ServicePath(), "with", rest.HeaderSignature)

	// Provider side.
	got, _, err := rest.DescribeRequest(newRequest(), rest.DigestBytes([]byte(body)))
	if err != nil {
		panic(err)
	}
	signed, err := rest.VerifyRequest(jws, &got)
	if err != nil {
		panic(err)
	}
	fmt.Println("verified", signed.Algorithm, signed.ID, "from", signed.Chain[0].Subject.CommonName)
	fmt.Println("X-Road-Request-Hash length:", len(rest.RequestHash(&got)))
	// Output:
	// forward to /r1/PASS/GOV/5678/PETSTORE/petstore/v2/pets with Passerelle-Signature
	// verified ES256 c0ffee from example
	// X-Road-Request-Hash length: 88
}

// ExampleWriteError renders a security server's error for a REST client.
func ExampleWriteError() {
	r := httptest.NewRequest("GET", "/r1/PASS/GOV/5678/PETSTORE/petstore", nil)
	w := httptest.NewRecorder()
	err := rest.ServerProxyError(rest.CodeAccessDenied, "PASS/GOV/1234/CLIENT may not call this service", nil)
	err.Detail = "3c4d0f08-440f-417f-b935-bc801e103d51" // normally a fresh UUID
	rest.WriteError(w, r, err, rest.ErrorMode{})
	fmt.Println(w.Code, w.Header().Get("X-Road-Error"))
	fmt.Println(w.Body.String())
	// Output:
	// 403 Server.ServerProxy.AccessDenied
	// {"type":"Server.ServerProxy.AccessDenied","message":"PASS/GOV/1234/CLIENT may not call this service","detail":"3c4d0f08-440f-417f-b935-bc801e103d51","code":"Server.ServerProxy.AccessDenied","error":"PASS/GOV/1234/CLIENT may not call this service"}
}
