package soap

import (
	"bytes"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"math/big"
	"regexp"
	"strings"
	"testing"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
)

var (
	bodyRE = regexp.MustCompile(`(?s)<SOAP-ENV:Body>.*</SOAP-ENV:Body>`)
	sigVal = regexp.MustCompile(`<ds:SignatureValue>([^<]*)</ds:SignatureValue>`)
)

// TestAttacks: every classic XML-DSig / XML attack on a signed envelope is
// refused by Verify (or by the member check).
func TestAttacks(t *testing.T) {
	ca := pkitest.NewCA(t, "attack CA")
	sA := signerFor(t, ca, memberA, pki.ECDSAP256)
	req := readTestdata(t, "soap-request_prmess-annexE1.xml")
	signed, err := Sign(req, sA, SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify("", signed, Limits{}); err != nil {
		t.Fatalf("Verify(untouched) = %v", err)
	}
	origBody := bodyRE.Find(signed)
	evilBody := []byte(`<SOAP-ENV:Body><ns1:exampleService><exampleInput>evil</exampleInput></ns1:exampleService></SOAP-ENV:Body>`)
	header := func(extra string) []byte {
		return bytes.Replace(signed, []byte("<xrd:client"), []byte(extra+"<xrd:client"), 1)
	}
	// A signature made by goxmldsig's default (DER) ECDSA encoding.
	derSig := func() []byte {
		m := sigVal.FindSubmatch(signed)
		raw, _ := base64.StdEncoding.DecodeString(string(m[1]))
		der, _ := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])})
		return bytes.Replace(signed, m[1], []byte(base64.StdEncoding.EncodeToString(der)), 1)
	}
	// Wrapping: the signed Body moved into a header, a new Body in its place.
	moved := bytes.Replace(header(`<w:Wrapper xmlns:w="urn:w">`+strings.ReplaceAll(string(origBody), "SOAP-ENV:Body", "w:Body")+`</w:Wrapper>`), origBody, evilBody, 1)

	for _, tc := range []struct {
		name string
		doc  []byte
	}{
		{"body replaced", bytes.Replace(signed, origBody, evilBody, 1)},
		{"body moved into a header", moved},
		{"duplicated body", bytes.Replace(signed, origBody, append(append([]byte{}, origBody...), evilBody...), 1)},
		{"body wrapped in extra element", bytes.Replace(signed, origBody, []byte(`<SOAP-ENV:Body><w:W xmlns:w="urn:w">`+string(evilBody[15:len(evilBody)-16])+`</w:W></SOAP-ENV:Body>`), 1)},
		{"reference to another element", bytes.Replace(bytes.Replace(signed, []byte(`URI=""`), []byte(`URI="#b"`), 1), []byte("<SOAP-ENV:Body>"), []byte(`<SOAP-ENV:Body Id="b">`), 1)},
		{"second reference", bytes.Replace(signed, []byte("</ds:Reference>"), []byte(`</ds:Reference><ds:Reference URI=""/>`), 1)},
		{"signed headers wrapped in an extra header", header(`<w:Extra xmlns:w="urn:w">` + hClient + `</w:Extra>`)},
		{"unsigned header added", header(`<xrd:securityToken tokenType="JWT">x</xrd:securityToken>`)},
		{"second signature", header(`<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"/>`)},
		{"Security not last", bytes.Replace(signed, []byte("</SOAP-ENV:Header>"), []byte(`<w:After xmlns:w="urn:w"/></SOAP-ENV:Header>`), 1)},
		{"comment injection", bytes.Replace(signed, []byte(">foo<"), []byte(">fo<!---->o<"), 1)},
		{"whitespace injection in text", bytes.Replace(signed, []byte(">foo<"), []byte(">foo <"), 1)},
		{"whitespace injection between elements", bytes.Replace(signed, []byte("<exampleInput>"), []byte(" <exampleInput>"), 1)},
		{"namespace redefinition", bytes.Replace(signed, []byte("<ns1:exampleService>"), []byte(`<ns1:exampleService xmlns:ns1="http://evil.example">`), 1)},
		{"envelope namespace redefinition", bytes.Replace(signed, []byte("<SOAP-ENV:Body>"), []byte(`<SOAP-ENV:Body xmlns:SOAP-ENV="urn:other">`), 1)},
		{"XXE", append([]byte(`<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>`), signed[bytes.IndexByte(signed, '\n')+1:]...)},
		{"billion laughs", append([]byte(`<!DOCTYPE l [<!ENTITY a "aa"><!ENTITY b "&a;&a;">]>`), signed[bytes.IndexByte(signed, '\n')+1:]...)},
		{"deep nesting", bytes.Replace(signed, []byte(">foo<"), []byte(">"+strings.Repeat("<a>", 80)+strings.Repeat("</a>", 80)+"<"), 1)},
		{"DER ECDSA signature", derSig()},
		{"signing time changed", regexp.MustCompile(`<pas:SigningTime>[^<]*<`).ReplaceAll(signed, []byte(`<pas:SigningTime>2020-01-01T00:00:00Z<`))},
		{"signature stripped", mustStrip(t, signed)},
		{"inclusive C14N", bytes.ReplaceAll(signed, []byte(AlgExcC14N), []byte("http://www.w3.org/2006/12/xml-c14n11"))},
		{"truncated", signed[:len(signed)/2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if bytes.Equal(tc.doc, signed) {
				t.Fatal("the attack changed nothing")
			}
			v, err := Verify("", tc.doc, Limits{})
			if err == nil {
				t.Fatalf("Verify accepted the attack; client %v", v.Envelope.Header.Client)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("Verify error %v is not an *Error", err)
			}
		})
	}

	t.Run("certificate of another member", func(t *testing.T) {
		sB := signerFor(t, ca, memberB, pki.ECDSAP256)
		other, err := Sign(req, sB, SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		v, err := Verify("", other, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if err := v.CheckClient(); !errors.Is(err, ErrMemberMismatch) {
			t.Errorf("CheckClient() = %v, want ErrMemberMismatch", err)
		}
	})
	t.Run("attachment swapped", func(t *testing.T) {
		d := sha256.Sum256([]byte("a"))
		s, err := Sign(req, sA, SignOptions{Attachments: []AttachmentDigest{{ContentID: "<a>", Size: 1, SHA256: d[:]}}})
		if err != nil {
			t.Fatal(err)
		}
		v, err := Verify("", s, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		e := sha256.Sum256([]byte("b"))
		if err := v.CheckAttachments([]AttachmentDigest{{ContentID: "<a>", Size: 1, SHA256: e[:]}}); !errors.Is(err, ErrBadSignature) {
			t.Errorf("CheckAttachments(other) = %v", err)
		}
		if err := v.CheckAttachments(nil); err == nil {
			t.Error("CheckAttachments(none) = nil")
		}
	})
	t.Run("response bound to another request", func(t *testing.T) {
		s, err := Sign(req, sA, SignOptions{RequestDigest: MessageDigest(signed)})
		if err != nil {
			t.Fatal(err)
		}
		v, err := Verify("", s, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if err := v.CheckRequestDigest(append([]byte{' '}, signed...)); err == nil {
			t.Error("CheckRequestDigest(other request) = nil")
		}
	})
	t.Run("sign refuses signed or commented envelopes", func(t *testing.T) {
		if _, err := Sign(signed, sA, SignOptions{}); err == nil {
			t.Error("Sign(signed) = nil error")
		}
		if _, err := Sign(bytes.Replace(req, []byte(">foo<"), []byte("><!--c-->foo<"), 1), sA, SignOptions{}); !errors.Is(err, ErrComment) {
			t.Errorf("Sign(commented) = %v, want ErrComment", err)
		}
	})
}

func mustStrip(t *testing.T, signed []byte) []byte {
	s, err := Strip(signed)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
