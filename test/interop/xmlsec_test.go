package interop

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
	"github.com/passerelle/passerelle/soap"
)

// xmlsec1 returns the path of xmlsec1, skipping the test when it is missing
// (failing under CI=true, where every tool must be present).
func xmlsec1(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("xmlsec1")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("xmlsec1 not found (CI=true requires it; run make deps): %v", err)
		}
		t.Skipf("xmlsec1 not found; run make deps: %v", err)
	}
	return p
}

const soapRequest = `<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope
        xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
        xmlns:ns1="http://producer.x-road.eu"
        xmlns:xrd="http://x-road.eu/xsd/xroad.xsd"
        xmlns:id="http://x-road.eu/xsd/identifiers">
    <SOAP-ENV:Header>
        <xrd:client id:objectType="SUBSYSTEM">
            <id:xRoadInstance>PAS</id:xRoadInstance>
            <id:memberClass>GOV</id:memberClass>
            <id:memberCode>MEMBER1</id:memberCode>
            <id:subsystemCode>SUBSYSTEM1</id:subsystemCode>
        </xrd:client>
        <xrd:service id:objectType="SERVICE">
            <id:xRoadInstance>PAS</id:xRoadInstance>
            <id:memberClass>GOV</id:memberClass>
            <id:memberCode>MEMBER2</id:memberCode>
            <id:subsystemCode>SUBSYSTEM2</id:subsystemCode>
            <id:serviceCode>exampleService</id:serviceCode>
            <id:serviceVersion>v1</id:serviceVersion>
        </xrd:service>
        <xrd:id>4894e35d-bf0f-44a6-867a-8e51f1daa7e0</xrd:id>
        <xrd:userId>EE12345678901</xrd:userId>
        <xrd:issue>12345</xrd:issue>
        <xrd:protocolVersion>4.0</xrd:protocolVersion>
    </SOAP-ENV:Header>
    <SOAP-ENV:Body>
        <ns1:exampleService>
            <exampleInput attr="a &amp; b">foo &lt;bar&gt; "é"</exampleInput>
        </ns1:exampleService>
    </SOAP-ENV:Body>
</SOAP-ENV:Envelope>
`

// TestXmlsec1VerifiesSignedEnvelopes: xmlsec1, which nobody here wrote,
// accepts the envelopes soap.Sign produces (ECDSA P-256 with r||s, RSA) and
// rejects a tampered one.
func TestXmlsec1VerifiesSignedEnvelopes(t *testing.T) {
	bin := xmlsec1(t)
	dir := t.TempDir()
	ca := pkitest.NewCA(t, "xmlsec interop CA")
	caPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPEM, pki.EncodeCertificatesPEM(ca.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	member := pki.ClientID{Instance: "PAS", Class: "GOV", Member: "MEMBER1"}
	for _, alg := range []pki.KeyAlgorithm{pki.ECDSAP256, pki.RSA2048} {
		t.Run(string(alg), func(t *testing.T) {
			leaf := ca.Issue(t, member, pki.UsageSign, pkitest.WithKey(alg))
			signed, err := soap.Sign([]byte(soapRequest), soap.Signer{Key: leaf.Key, Chain: leaf.Chain, OCSP: []byte{1, 2, 3}}, soap.SignOptions{})
			if err != nil {
				t.Fatal(err)
			}
			tampered := bytes.Replace(signed, []byte("foo &lt;bar&gt;"), []byte("fool &lt;bar&gt;"), 1)
			if bytes.Equal(tampered, signed) {
				t.Fatal("tampering changed nothing")
			}
			for _, tc := range []struct {
				name string
				doc  []byte
				ok   bool
			}{
				{"signed", signed, true},
				{"tampered", tampered, false},
			} {
				t.Run(tc.name, func(t *testing.T) {
					f := filepath.Join(dir, string(alg)+"-"+tc.name+".xml")
					if err := os.WriteFile(f, tc.doc, 0o644); err != nil {
						t.Fatal(err)
					}
					out, err := exec.CommandContext(t.Context(), bin, "--verify", "--trusted-pem", caPEM,
						"--enabled-reference-uris", "empty", f).CombinedOutput()
					if ok := err == nil; ok != tc.ok {
						t.Errorf("xmlsec1 --verify %s: ok = %v, want %v\n%s", tc.name, ok, tc.ok, out)
					}
				})
			}
		})
	}
}
