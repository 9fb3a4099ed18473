package ocsp

import (
	"bytes"
	"testing"
	"time"

	"github.com/passerelle/passerelle/pki/pkitest"
	xocsp "golang.org/x/crypto/ocsp"
)

// FuzzRespond feeds arbitrary requests to the responder: it must never
// panic, and must answer every input with a well-formed OCSP response.
func FuzzRespond(f *testing.F) {
	fx := newFixture(f, false)
	leaf := fx.issue(f, &Status{Status: Good})
	plain, err := xocsp.CreateRequest(leaf.Cert, fx.ca.Cert, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(plain)
	f.Add(requestWithNonce(f, fx, leaf, []byte("nonce-0123456789")))
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x03, 0x30, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, req []byte) {
		resp, _ := fx.resp.Respond(t.Context(), req)
		if _, err := xocsp.ParseResponse(resp, nil); err != nil {
			if _, isStatus := err.(xocsp.ResponseError); !isStatus {
				t.Fatalf("response to %x does not parse: %v", req, err)
			}
		}
		_, _ = decodeGETPath("/ocsp/" + string(req)) // must not panic
	})
}

// FuzzParseAndVerify alters a valid response: an altered response may be
// refused but must never verify with different contents, nor panic.
func FuzzParseAndVerify(f *testing.F) {
	fx := newFixture(f, true)
	leaf := fx.issue(f, &Status{Status: Good})
	now := time.Now()
	good, _ := fx.resp.Respond(f.Context(), mustRequest(f, fx, leaf))
	orig, err := ParseAndVerify(good, leaf.Cert, fx.ca.Cert, now, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, uint16(0), byte(0))
	f.Add(good, uint16(10), byte(1))
	f.Add(good, uint16(len(good)-5), byte(0x80))
	f.Add([]byte{}, uint16(0), byte(0))
	f.Add(xocsp.UnauthorizedErrorResponse, uint16(0), byte(0))
	f.Fuzz(func(t *testing.T, der []byte, pos uint16, flip byte) {
		if len(der) > 0 {
			der = bytes.Clone(der)
			der[int(pos)%len(der)] ^= flip
		}
		r, err := ParseAndVerify(der, leaf.Cert, fx.ca.Cert, now, 0)
		if err != nil {
			return
		}
		if r.Status != orig.Status || r.Serial.Cmp(orig.Serial) != 0 || !r.ThisUpdate.Equal(orig.ThisUpdate) || !r.NextUpdate.Equal(orig.NextUpdate) {
			t.Fatalf("altered response verified with other contents: %+v, original %+v", r, orig)
		}
	})
}

func mustRequest(t testing.TB, f *fixture, leaf *pkitest.Leaf) []byte {
	t.Helper()
	der, err := xocsp.CreateRequest(leaf.Cert, f.ca.Cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
