package rest

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
)

var (
	testClient = pki.ClientID{Instance: "PASS", Class: "GOV", Member: "1234", Subsystem: "CLIENT"}

	fixtureOnce sync.Once
	fixtureCA   *pkitest.CA
	fixtureEC   *pkitest.Leaf
	fixtureRSA  *pkitest.Leaf
	fixtureEC2  *pkitest.Leaf
)

// fixtures issues the test keys once per process (RSA generation is slow).
func fixtures(t testing.TB) (ec, rsaLeaf, ec2 *pkitest.Leaf) {
	t.Helper()
	fixtureOnce.Do(func() {
		fixtureCA = pkitest.NewCA(t, "rest test CA")
		fixtureEC = fixtureCA.Issue(t, testClient.MemberID(), pki.UsageSign)
		fixtureRSA = fixtureCA.Issue(t, testClient.MemberID(), pki.UsageSign, pkitest.WithKey(pki.RSA2048))
		fixtureEC2 = fixtureCA.Issue(t, testClient.MemberID(), pki.UsageSign)
	})
	return fixtureEC, fixtureRSA, fixtureEC2
}

// sampleRequest is the X-Road POST example (identifiers adapted) as the
// consumer side forwards it.
func sampleRequest(t testing.TB) (*http.Request, []byte) {
	t.Helper()
	body := []byte(`{ "id": 0, "category": { "id": 0, "name": "string" }, "name": "doggie", "photoUrls": [ "string" ], "tags": [ { "id": 0, "name": "string" } ], "status": "available"}`)
	r := httptest.NewRequest(http.MethodPost, "/r1/PASS/GOV/5678/PETSTORE/petstore/v2/pets?lang=fr&x=%2F", strings.NewReader(string(body)))
	r.Header.Set("Accept", "application/json")
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Road-Client", testClient.String())
	r.Header.Set("X-Road-Id", "5ea48ae9-15c1-465a-be15-9b6ef2c7ef4a")
	r.Header.Set("X-Road-UserId", "FR12345")
	r.Header.Set("Authorization", "Bearer not-signed")
	return r, body
}

func describe(t testing.TB, r *http.Request, body []byte) RequestDescriptor {
	t.Helper()
	d, _, err := DescribeRequest(r, DigestBytes(body))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSignVerifyRequestRoundTrip(t *testing.T) {
	ec, rsaLeaf, _ := fixtures(t)
	for _, tc := range []struct {
		name string
		leaf *pkitest.Leaf
		alg  string
	}{
		{"ES256", ec, "ES256"},
		{"PS256", rsaLeaf, "PS256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, body := sampleRequest(t)
			d := describe(t, r, body)
			ocsp := []byte{0x30, 0x03, 0x0a, 0x01, 0x00}
			compact, err := SignRequest(t.Context(), &d, tc.leaf.Key, tc.leaf.Chain, ocsp)
			if err != nil {
				t.Fatal(err)
			}
			if d.SignedAt.IsZero() {
				t.Fatal("SignRequest did not set SignedAt")
			}
			got := describe(t, r, body) // the receiver's own recomputation
			s, err := VerifyRequest(compact, &got)
			if err != nil {
				t.Fatalf("VerifyRequest = %v", err)
			}
			if s.Algorithm != tc.alg || s.Typ != TypRequest {
				t.Errorf("alg, typ = %s, %s; want %s, %s", s.Algorithm, s.Typ, tc.alg, TypRequest)
			}
			if len(s.Chain) != 2 || !s.Chain[0].Equal(tc.leaf.Cert) {
				t.Errorf("chain not returned as sent")
			}
			if string(s.OCSP) != string(ocsp) {
				t.Errorf("OCSP = %x, want %x", s.OCSP, ocsp)
			}
			if !s.SignedAt.Equal(d.SignedAt) || s.ID != d.ID {
				t.Errorf("SignedAt, ID = %v, %q; want %v, %q", s.SignedAt, s.ID, d.SignedAt, d.ID)
			}
			if s.Digest != JWSDigest(compact) {
				t.Errorf("Digest is not JWSDigest(compact)")
			}
		})
	}
}

func TestVerifyRequestDetectsAlteredFields(t *testing.T) {
	ec, _, _ := fixtures(t)
	r, body := sampleRequest(t)
	d := describe(t, r, body)
	compact, err := SignRequest(t.Context(), &d, ec.Key, ec.Chain, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := pki.ClientID{Instance: "PASS", Class: "GOV", Member: "9999", Subsystem: "CLIENT"}
	for _, tc := range []struct {
		name  string
		alter func(r *http.Request, body *[]byte)
		field string
	}{
		{"method", func(r *http.Request, _ *[]byte) { r.Method = http.MethodPut }, "method"},
		{"path", func(r *http.Request, _ *[]byte) { r.URL.Path += "/x"; r.URL.RawPath = "" }, "path"},
		{"query", func(r *http.Request, _ *[]byte) { r.URL.RawQuery = "lang=en&x=%2F" }, "query"},
		{"service", func(r *http.Request, _ *[]byte) {
			r.URL.Path = strings.Replace(r.URL.Path, "PETSTORE", "PETSHOP", 1)
		}, "service"},
		{"content type", func(r *http.Request, _ *[]byte) { r.Header.Set("Content-Type", "text/plain") }, "headers[content-type]"},
		{"added X-Road header", func(r *http.Request, _ *[]byte) { r.Header.Set("X-Road-Issue", "123") }, "headers[x-road-issue]"},
		{"removed header", func(r *http.Request, _ *[]byte) { r.Header.Del("Accept") }, "headers[accept]"},
		{"user id", func(r *http.Request, _ *[]byte) { r.Header.Set("X-Road-UserId", "FR999") }, "headers[x-road-userid]"},
		{"body", func(_ *http.Request, b *[]byte) { (*b)[10] ^= 1 }, "bodySha256"},
		{"body length", func(_ *http.Request, b *[]byte) { *b = append(*b, ' ') }, "bodyLength"},
		{"id", func(r *http.Request, _ *[]byte) { r.Header.Set("X-Road-Id", "other") }, "id"},
		{"client", func(r *http.Request, _ *[]byte) { r.Header.Set("X-Road-Client", other.String()) }, "client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, body := sampleRequest(t)
			tc.alter(r, &body)
			got := describe(t, r, body)
			_, err := VerifyRequest(compact, &got)
			var me *MismatchError
			if !errors.Is(err, ErrMismatch) || !errors.As(err, &me) {
				t.Fatalf("VerifyRequest = %v, want ErrMismatch", err)
			}
			if me.Field != tc.field {
				t.Errorf("mismatched field = %q, want %q", me.Field, tc.field)
			}
		})
	}
	t.Run("time", func(t *testing.T) {
		got := describe(t, r, body)
		got.SignedAt = d.SignedAt.Add(time.Second)
		_, err := VerifyRequest(compact, &got)
		var me *MismatchError
		if !errors.As(err, &me) || me.Field != "signedAt" {
			t.Fatalf("VerifyRequest = %v, want a signedAt mismatch", err)
		}
	})
	t.Run("unsigned header ignored", func(t *testing.T) {
		r, body := sampleRequest(t)
		r.Header.Set("Authorization", "Bearer other")
		r.Header.Set("Traceparent", "00-abc")
		got := describe(t, r, body)
		if _, err := VerifyRequest(compact, &got); err != nil {
			t.Fatalf("VerifyRequest = %v, want success", err)
		}
	})
}

func TestVerifyRequestRefusesTampering(t *testing.T) {
	ec, rsaLeaf, ec2 := fixtures(t)
	r, body := sampleRequest(t)
	d := describe(t, r, body)
	compact, err := SignRequest(t.Context(), &d, ec.Key, ec.Chain, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A JWS signed by ec2's key but carrying ec's chain.
	s2, err := NewSigner(ec2.Key, ec2.Chain)
	if err != nil {
		t.Fatal(err)
	}
	s2.x5c = x5cOf(ec.Chain)
	wrongKey, err := s2.SignRequest(t.Context(), &d, nil)
	if err != nil {
		t.Fatal(err)
	}
	// An RSA signature labelled RS256 and one with a changed alg.
	srsa, err := NewSigner(rsaLeaf.Key, rsaLeaf.Chain)
	if err != nil {
		t.Fatal(err)
	}
	psCompact, err := srsa.SignRequest(t.Context(), &d, nil)
	if err != nil {
		t.Fatal(err)
	}
	hdr, rest, _ := strings.Cut(psCompact, ".")
	hj, _ := b64url.DecodeString(hdr)
	relabelled := b64url.EncodeToString([]byte(strings.Replace(string(hj), `"PS256"`, `"RS256"`, 1))) + "." + rest

	parts := strings.Split(compact, ".")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for _, tc := range []struct {
		name    string
		compact string
		want    error
	}{
		{"another key's x5c", wrongKey, ErrBadSignature},
		{"alg relabelled", relabelled, ErrBadSignature},
		{"signature altered", parts[0] + "." + parts[1] + "." + flip(parts[2], 5), ErrBadSignature},
		{"payload altered", parts[0] + "." + flip(parts[1], 20) + "." + parts[2], ErrBadSignature},
		{"empty", "", ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], ErrMalformed},
		{"four parts", compact + ".x", ErrMalformed},
		{"header not base64", "!!." + parts[1] + "." + parts[2], ErrMalformed},
		{"alg none", b64url.EncodeToString([]byte(`{"alg":"none","typ":"`+TypRequest+`","x5c":["`+x5cOf(ec.Chain)[0]+`"]}`)) + "." + parts[1] + "." + parts[2], ErrBadSignature},
		{"empty signature", parts[0] + "." + parts[1] + ".", ErrMalformed},
		{"stray bits in signature", parts[0] + "." + parts[1] + "." + strayBits(parts[2]), ErrMalformed},
		{"response typ", b64url.EncodeToString([]byte(`{"alg":"ES256","typ":"`+TypResponse+`","x5c":[]}`)) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"batch typ", b64url.EncodeToString([]byte(`{"alg":"ES256","typ":"`+TypBatch+`","x5c":[]}`)) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"crit", b64url.EncodeToString([]byte(`{"alg":"ES256","typ":"`+TypRequest+`","crit":["x"],"x5c":[]}`)) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"no x5c", b64url.EncodeToString([]byte(`{"alg":"ES256","typ":"`+TypRequest+`"}`)) + "." + parts[1] + "." + parts[2], ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := describe(t, r, body)
			_, err := VerifyRequest(tc.compact, &got)
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyRequest = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("RS256 accepted", func(t *testing.T) {
		// A genuine RS256 signature from another JOSE producer verifies.
		rs, err := signRS256ForTest(srsa, &d)
		if err != nil {
			t.Fatal(err)
		}
		got := describe(t, r, body)
		s, err := VerifyRequest(rs, &got)
		if err != nil || s.Algorithm != "RS256" {
			t.Fatalf("VerifyRequest(RS256) = %v, %v", s, err)
		}
	})
}

func TestSignVerifyResponse(t *testing.T) {
	ec, rsaLeaf, _ := fixtures(t)
	r, body := sampleRequest(t)
	rd := describe(t, r, body)
	reqJWS, err := SignRequest(t.Context(), &rd, ec.Key, ec.Chain, nil)
	if err != nil {
		t.Fatal(err)
	}
	respBody := []byte(`{"id":5657082955040122,"name":"doggie"}`)
	header := func() http.Header {
		h := http.Header{}
		h.Set("Content-Type", "application/json;charset=utf-8")
		h.Set(HeaderID, rd.ID)
		h.Set(HeaderClient, rd.Client.String())
		h.Set(HeaderService, rd.Service.String())
		h.Set(HeaderRequestHash, RequestHash(&rd))
		h.Set("Date", "Thu, 21 Mar 2019 12:49:38 GMT")
		return h
	}
	d := DescribeResponse(&rd, reqJWS, http.StatusOK, header(), DigestBytes(respBody))
	compact, err := SignResponse(t.Context(), &d, rsaLeaf.Key, rsaLeaf.Chain, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("round trip", func(t *testing.T) {
		got := DescribeResponse(&rd, reqJWS, http.StatusOK, header(), DigestBytes(respBody))
		s, err := VerifyResponse(compact, &got)
		if err != nil {
			t.Fatal(err)
		}
		if s.Response == nil || s.Response.Status != 200 || s.Algorithm != "PS256" {
			t.Errorf("Signed = %+v", s)
		}
	})
	if _, err := VerifyRequest(compact, &rd); !errors.Is(err, ErrMalformed) {
		t.Errorf("VerifyRequest(response JWS) = %v, want ErrMalformed", err)
	}
	other := rd
	other.ID = "another-request"
	otherJWS, err := SignRequest(t.Context(), &other, ec.Key, ec.Chain, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		got   func() ResponseDescriptor
		field string
	}{
		{"status", func() ResponseDescriptor {
			return DescribeResponse(&rd, reqJWS, http.StatusCreated, header(), DigestBytes(respBody))
		}, "status"},
		{"request JWS", func() ResponseDescriptor {
			d := DescribeResponse(&other, otherJWS, http.StatusOK, header(), DigestBytes(respBody))
			d.ID = rd.ID
			return d
		}, "request"},
		{"request hash", func() ResponseDescriptor {
			h := header()
			h.Set(HeaderRequestHash, "AAAA")
			return DescribeResponse(&rd, reqJWS, http.StatusOK, h, DigestBytes(respBody))
		}, "headers[x-road-request-hash]"},
		{"body", func() ResponseDescriptor {
			return DescribeResponse(&rd, reqJWS, http.StatusOK, header(), DigestBytes([]byte(`{}`)))
		}, "bodyLength"},
		{"id", func() ResponseDescriptor {
			return DescribeResponse(&other, reqJWS, http.StatusOK, header(), DigestBytes(respBody))
		}, "id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.got()
			_, err := VerifyResponse(compact, &got)
			var me *MismatchError
			if !errors.As(err, &me) || me.Field != tc.field {
				t.Fatalf("VerifyResponse = %v, want a mismatch of %s", err, tc.field)
			}
		})
	}
}

func TestNewSignerRefusesForeignChain(t *testing.T) {
	ec, _, ec2 := fixtures(t)
	if _, err := NewSigner(ec.Key, ec2.Chain); err == nil {
		t.Fatal("NewSigner accepted a chain that does not certify the key")
	}
}

func x5cOf(chain []*x509.Certificate) []string {
	out := make([]string, len(chain))
	for i, c := range chain {
		out[i] = base64.StdEncoding.EncodeToString(c.Raw)
	}
	return out
}

// signRS256ForTest signs d with s's RSA key as RS256, as another JOSE
// producer might.
func signRS256ForTest(s *Signer, d *RequestDescriptor) (string, error) {
	rs := *s
	rs.alg = jwa.RS256()
	payload, err := d.marshal()
	if err != nil {
		return "", err
	}
	return rs.sign(TypRequest, payload, nil)
}

// strayBits changes the unused low bits of s's last base64url character.
func strayBits(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	v := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[v|1])
}

// marshal returns the JSON payload of a request JWS (see appendRequestPayload).
func (d *RequestDescriptor) marshal() ([]byte, error) {
	return appendRequestPayload(nil, d), nil
}

// sign signs payload as a JWS of type typ (tests sign payloads of their own).
func (s *Signer) sign(typ string, payload, ocspDER []byte) (string, error) {
	b := getBuf()
	defer putBuf(b)
	b.json = append(b.json[:0], payload...)
	return s.signBuf(b, typ, ocspDER)
}
