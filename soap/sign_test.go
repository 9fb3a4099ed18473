package soap

import (
	"bytes"
	"errors"
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
