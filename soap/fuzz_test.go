package soap

import (
	"bytes"
	"sync"
	"testing"
	"time"

	dsig "github.com/russellhaering/goxmldsig"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
)

func FuzzParseEnvelope(f *testing.F) {
	for _, name := range []string{"soap-request_prmess-annexE1.xml", "soap-response_prmess-annexE2.xml", "testres_simple-representedparty.query", "soap-fault-technical_prmess-annexD1.xml"} {
		f.Add(readTestdata(f, name))
	}
	f.Add(envelope(hAll, bodyOK))
	f.Add([]byte(soap12Env))
	f.Add([]byte(`<!DOCTYPE l [<!ENTITY a "aa">]><l>&a;</l>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := Limits{MaxSize: 1 << 20}
		env, err := ParseEnvelope("", data, lim)
		if err != nil {
			return
		}
		_ = env.Operation()
		_, _ = ParseFault(data, lim)
		_, _ = InsertRequestHash(data, data, lim)
	})
}

var (
	fuzzOnce   sync.Once
	fuzzSigned []byte
)

// canonicalSigned is the exclusive C14N of a verified envelope without its
// Signature: what the signature covers.
func canonicalSigned(t *testing.T, v *Verified) []byte {
	root := v.Envelope.doc.Root().Copy()
	for _, h := range root.ChildElements() {
		for _, s := range h.ChildElements() {
			if isNS(s, NamespacePasserelle, "Security") || s.Tag == "Security" {
				for _, c := range s.ChildElements() {
					if c.Tag == "Signature" {
						s.RemoveChild(c)
					}
				}
			}
		}
	}
	out, err := dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("").Canonicalize(root)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// FuzzVerify: no panic, and an altered envelope that still verifies means
// exactly the same signed content (an equivalent serialization), same headers.
func FuzzVerify(f *testing.F) {
	fuzzOnce.Do(func() {
		ca := pkitest.NewCA(f, "fuzz CA")
		s := signerFor(f, ca, memberA, pki.ECDSAP256)
		var err error
		if fuzzSigned, err = Sign(readTestdata(f, "soap-request_prmess-annexE1.xml"), s, SignOptions{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}); err != nil {
			f.Fatal(err)
		}
	})
	f.Add(fuzzSigned)
	f.Add(bytes.Replace(fuzzSigned, []byte(">foo<"), []byte(">bar<"), 1))
	f.Add(bytes.Replace(fuzzSigned, []byte("SOAP-ENV:Body"), []byte("SOAP-ENV:Bod"), 2))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Verify("", data, Limits{MaxSize: 1 << 20})
		if err != nil {
			return
		}
		orig, err := Verify("", fuzzSigned, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(canonicalSigned(t, v), canonicalSigned(t, orig)) {
			t.Fatalf("altered envelope verified with different content:\n%s", data)
		}
		if v.Envelope.Header != orig.Envelope.Header && (v.Envelope.Header.Client != orig.Envelope.Header.Client || *v.Envelope.Header.Service != *orig.Envelope.Header.Service) {
			t.Fatalf("altered envelope verified with different headers: %+v", v.Envelope.Header)
		}
	})
}

func benchEnvelope() []byte {
	// About 1 KiB.
	return envelope(hAll, `<m:getThing xmlns:m="urn:m"><q>`+string(bytes.Repeat([]byte("x"), 400))+`</q></m:getThing>`)
}

func BenchmarkSign(b *testing.B) {
	ca := pkitest.NewCA(b, "bench CA")
	for _, alg := range []pki.KeyAlgorithm{pki.ECDSAP256, pki.RSA2048} {
		b.Run(string(alg), func(b *testing.B) {
			s := signerFor(b, ca, memberA, alg)
			env := benchEnvelope()
			b.SetBytes(int64(len(env)))
			for b.Loop() {
				if _, err := Sign(env, s, SignOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	ca := pkitest.NewCA(b, "bench CA")
	for _, alg := range []pki.KeyAlgorithm{pki.ECDSAP256, pki.RSA2048} {
		b.Run(string(alg), func(b *testing.B) {
			signed, err := Sign(benchEnvelope(), signerFor(b, ca, memberA, alg), SignOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(signed)))
			for b.Loop() {
				if _, err := Verify("text/xml", signed, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseEnvelope: a signed envelope through the hardened intake, on
// the plain path and through encoding/xml.
func BenchmarkParseEnvelope(b *testing.B) {
	ca := pkitest.NewCA(b, "bench CA")
	signed, err := Sign(benchEnvelope(), signerFor(b, ca, memberA, pki.ECDSAP256), SignOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("plain", func(b *testing.B) {
		b.SetBytes(int64(len(signed)))
		for b.Loop() {
			if _, err := ParseEnvelope("text/xml", signed, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-xml", func(b *testing.B) {
		b.SetBytes(int64(len(signed)))
		for b.Loop() {
			if _, _, err := parseDecoder(signed, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
