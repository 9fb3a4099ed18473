package timestamp

import (
	"bytes"
	"crypto"
	"math/big"
	"testing"

	tsp "github.com/digitorus/timestamp"
)

// FuzzParseQuery: any body gets a reply, never a panic; a query ParseQuery
// accepts has a supported imprint of the right length and our policy.
func FuzzParseQuery(f *testing.F) {
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		d := make([]byte, h.Size())
		der, err := (&tsp.Request{HashAlgorithm: h, HashedMessage: d, Nonce: big.NewInt(99), Certificates: true}).Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	withPolicy, _ := (&tsp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: make([]byte, 32), TSAPolicyOID: testPolicy}).Marshal()
	f.Add(withPolicy)
	sha1q, _ := (&tsp.Request{HashAlgorithm: crypto.SHA1, HashedMessage: make([]byte, 20)}).Marshal()
	f.Add(sha1q)
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, der []byte) {
		req, fi, err := ParseQuery(der, testPolicy)
		if err != nil {
			if fi == tsp.UnknownFailureInfo {
				t.Errorf("refusal without failInfo: %v", err)
			}
			return
		}
		if CheckHash(req.HashAlgorithm, req.HashedMessage) != nil {
			t.Errorf("accepted %v imprint of %d bytes", req.HashAlgorithm, len(req.HashedMessage))
		}
		if len(req.TSAPolicyOID) > 0 && !req.TSAPolicyOID.Equal(testPolicy) {
			t.Errorf("accepted policy %v", req.TSAPolicyOID)
		}
	})
}

// FuzzVerifyToken: an altered token never verifies as saying something else.
// CMS leaves some bytes unsigned (the certificate set, the outer digest
// algorithm list), so the property is on what the token says, not its bytes.
func FuzzVerifyToken(f *testing.F) {
	tsa := newTestTSA(f)
	digest := Digest([]byte("fuzz"))
	tok, err := tsa.client(f, nil).Stamp(f.Context(), digest, crypto.SHA256)
	if err != nil {
		f.Fatal(err)
	}
	noCerts, err := tsa.client(f, func(c *ClientConfig) {
		c.NoCertReq = true
		c.Certificates = tsa.leaf.Chain[:1]
	}).Stamp(f.Context(), digest, crypto.SHA256)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok.DER)
	f.Add(noCerts.DER)
	f.Add(tok.DER[:len(tok.DER)-1])
	roots := tsa.ca.Pool()
	f.Fuzz(func(t *testing.T, token []byte) {
		info, err := VerifyToken(token, digest, roots, VerifyOptions{Certificates: tsa.leaf.Chain[:1]})
		if err != nil {
			return
		}
		var want Info
		switch info.Serial.Cmp(tok.Serial) {
		case 0:
			want = tok.Info
		default:
			want = noCerts.Info
		}
		if info.Serial.Cmp(want.Serial) != 0 || !info.Time.Equal(want.Time) || info.Accuracy != want.Accuracy ||
			!bytes.Equal(info.Imprint, want.Imprint) || info.Hash != want.Hash || !info.Policy.Equal(want.Policy) ||
			info.Nonce.Cmp(want.Nonce) != 0 || !bytes.Equal(info.TSA.Raw, want.TSA.Raw) {
			t.Errorf("altered token verified as %+v, want %+v", info, want)
		}
	})
}
