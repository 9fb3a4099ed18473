package soap

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
)

var (
	memberA = pki.ClientID{Instance: "PAS", Class: "GOV", Member: "MEMBER1"}
	memberB = pki.ClientID{Instance: "PAS", Class: "GOV", Member: "MEMBER2"}
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func signerFor(t testing.TB, ca *pkitest.CA, m pki.ClientID, alg pki.KeyAlgorithm) Signer {
	t.Helper()
	l := ca.Issue(t, m, pki.UsageSign, pkitest.WithKey(alg))
	return Signer{Key: l.Key, Chain: l.Chain, OCSP: []byte{0x30, 0x03, 0x0a, 0x01, 0x00}}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	ca := pkitest.NewCA(t, "soap test CA")
	req := readTestdata(t, "soap-request_prmess-annexE1.xml")
	for _, alg := range []pki.KeyAlgorithm{pki.ECDSAP256, pki.RSA2048} {
		t.Run(string(alg), func(t *testing.T) {
			s := signerFor(t, ca, memberA, alg)
			at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			atts := []AttachmentDigest{{ContentID: "<data.bin>", ContentType: "application/octet-stream", TransferEncoding: "base64", Size: 28, SHA256: bytes.Repeat([]byte{7}, 32)}}
			signed, err := Sign(req, s, SignOptions{Time: at, Attachments: atts, RequestDigest: MessageDigest([]byte("req"))})
			if err != nil {
				t.Fatal(err)
			}
			v, err := Verify("text/xml; charset=UTF-8", signed, Limits{})
			if err != nil {
				t.Fatalf("Verify(signed) = %v", err)
			}
			if v.Signer != memberA {
				t.Errorf("Signer = %v, want %v", v.Signer, memberA)
			}
			if err := v.CheckClient(); err != nil {
				t.Errorf("CheckClient() = %v", err)
			}
			if err := v.CheckServiceProvider(); !errors.Is(err, ErrMemberMismatch) {
				t.Errorf("CheckServiceProvider() = %v, want ErrMemberMismatch", err)
			}
			if !v.SigningTime.Equal(at) || !bytes.Equal(v.OCSP, s.OCSP) || len(v.Chain) != 2 {
				t.Errorf("Verified = time %v ocsp %x chain %d", v.SigningTime, v.OCSP, len(v.Chain))
			}
			if err := v.CheckAttachments(atts); err != nil {
				t.Errorf("CheckAttachments = %v", err)
			}
			if err := v.CheckRequestDigest([]byte("req")); err != nil {
				t.Errorf("CheckRequestDigest = %v", err)
			}
			stripped, err := v.Stripped()
			if err != nil || !bytes.Equal(stripped, req) {
				t.Errorf("Stripped() differs from the original envelope (err %v)", err)
			}
		})
	}
}

// TestEnvelopeSign: signing a parsed envelope gives the bytes Sign gives
// (RSA PKCS #1 v1.5 signatures are deterministic), leaves the envelope as it
// was, and with RequestHashOf signs exactly what InsertRequestHash returns.
func TestEnvelopeSign(t *testing.T) {
	ca := pkitest.NewCA(t, "soap test CA")
	s := signerFor(t, ca, memberA, pki.RSA2048)
	req := readTestdata(t, "soap-request_prmess-annexE1.xml")
	resp := envelope(hAll, bodyOK)
	opt := SignOptions{Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), RequestDigest: MessageDigest([]byte("req"))}

	env, err := ParseEnvelope("", req, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := env.doc.WriteToBytes()
	want, err := Sign(req, s, opt)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := env.Sign(s, opt)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Envelope.Sign =\n%s\nwant\n%s", got, want)
		}
	}
	if after, _ := env.doc.WriteToBytes(); !bytes.Equal(after, before) {
		t.Errorf("Envelope.Sign changed the envelope's tree:\n%s", after)
	}

	withHash, err := InsertRequestHash(resp, req, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want, err = Sign(withHash, s, opt)
	if err != nil {
		t.Fatal(err)
	}
	renv, err := ParseEnvelope("", resp, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	hopt := opt
	hopt.RequestHashOf = req
	got, err := renv.Sign(s, hopt)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Envelope.Sign with RequestHashOf =\n%s\nwant\n%s", got, want)
	}
	v, err := Verify("", got, Limits{})
	if err != nil {
		t.Fatalf("Verify = %v", err)
	}
	if err := v.Envelope.CheckRequestHash(req); err != nil {
		t.Errorf("CheckRequestHash = %v", err)
	}
	// The limits bound the envelope with requestHash, as Sign's parse of
	// InsertRequestHash's output does.
	for _, lim := range []Limits{{MaxSize: int64(len(withHash) - 1)}, {MaxElements: renv.lay.elements}} {
		_, werr := Sign(withHash, s, SignOptions{Time: opt.Time, Limits: lim})
		lopt := hopt
		lopt.Limits = lim
		if _, err := renv.Sign(s, lopt); err == nil || !isCode(werr, err.(*Error).Code) {
			t.Errorf("Envelope.Sign with RequestHashOf and %+v = %v, want %v", lim, err, werr)
		}
	}
	if _, err := v.Envelope.Sign(s, hopt); !isCode(err, CodeDuplicateHeaderField) {
		t.Errorf("Sign with RequestHashOf of a response with requestHash = %v, want %s", err, CodeDuplicateHeaderField)
	}
}

func isCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// TestCertCache: a certificate parsed again comes from the cache; one larger
// than maxCachedCertSize is parsed every time and not kept.
func TestCertCache(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(extra int) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0),
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Value: make([]byte, extra)}}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	for _, tc := range []struct {
		name   string
		der    []byte
		cached bool
	}{
		{"small", mk(10), true},
		{"large", mk(maxCachedCertSize), false},
	} {
		a, err := parseCertificate(tc.der)
		if err != nil {
			t.Fatal(err)
		}
		b, err := parseCertificate(tc.der)
		if err != nil {
			t.Fatal(err)
		}
		certCache.Lock()
		_, kept := certCache.m[string(tc.der)]
		certCache.Unlock()
		if (a == b) != tc.cached || kept != tc.cached {
			t.Errorf("%s (%d bytes): same certificate %v, kept %v, want %v", tc.name, len(tc.der), a == b, kept, tc.cached)
		}
	}
}
