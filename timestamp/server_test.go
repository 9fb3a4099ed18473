package timestamp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	tsp "github.com/digitorus/timestamp"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

var testPolicy = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 3161, 1}

type testTSA struct {
	ca     *pkitest.CA
	leaf   *pkitest.Leaf
	ledger *BoltLedger
	srv    *Server
	http   *httptest.Server
}

func newTestTSA(t testing.TB) *testTSA {
	t.Helper()
	ca := pkitest.NewCA(t, "Test root")
	leaf := ca.Issue(t, pki.ClientID{}, pki.UsageTSA)
	return newTestTSAWith(t, ca, leaf)
}

func newTestTSAWith(t testing.TB, ca *pkitest.CA, leaf *pkitest.Leaf) *testTSA {
	t.Helper()
	ledger, err := OpenLedger(filepath.Join(t.TempDir(), "tokens.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ledger.Close() })
	srv, err := NewServer(ServerConfig{Signer: leaf.Key, Chain: leaf.Chain, Policy: testPolicy, Ledger: ledger, Log: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &testTSA{ca: ca, leaf: leaf, ledger: ledger, srv: srv, http: hs}
}

func (ts *testTSA) client(t testing.TB, mod func(*ClientConfig)) *Client {
	t.Helper()
	cfg := ClientConfig{URL: ts.http.URL, Roots: ts.ca.Pool()}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStampAndVerify(t *testing.T) {
	tsa := newTestTSA(t)
	msg := []byte("hello passerelle")
	s256 := sha256.Sum256(msg)
	s384 := sha512.Sum384(msg)
	s512 := sha512.Sum512(msg)
	cases := []struct {
		name   string
		h      crypto.Hash
		digest []byte
		mod    func(*ClientConfig)
	}{
		{"sha256", crypto.SHA256, s256[:], nil},
		{"sha384", crypto.SHA384, s384[:], nil},
		{"sha512", crypto.SHA512, s512[:], nil},
		{"policy", crypto.SHA256, s256[:], func(c *ClientConfig) { c.Policy = testPolicy }},
		{"no certReq", crypto.SHA256, s256[:], func(c *ClientConfig) {
			c.NoCertReq = true
			c.Certificates = []*x509.Certificate{tsa.leaf.Cert}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := tsa.client(t, tc.mod).Stamp(t.Context(), tc.digest, tc.h)
			if err != nil {
				t.Fatalf("Stamp = %v", err)
			}
			if !bytes.Equal(tok.Imprint, tc.digest) || tok.Hash != tc.h {
				t.Errorf("imprint = %v %x, want %v %x", tok.Hash, tok.Imprint, tc.h, tc.digest)
			}
			if !tok.Policy.Equal(testPolicy) {
				t.Errorf("policy = %v, want %v", tok.Policy, testPolicy)
			}
			if tok.Accuracy != DefaultAccuracy {
				t.Errorf("accuracy = %v, want %v", tok.Accuracy, DefaultAccuracy)
			}
			if d := time.Since(tok.Time); d < -2*time.Second || d > time.Minute {
				t.Errorf("genTime = %v, %v from now", tok.Time, d)
			}
			e, ok, err := tsa.ledger.Lookup(tok.Serial)
			if err != nil || !ok {
				t.Fatalf("ledger Lookup(%x) = %v, %v", tok.Serial, ok, err)
			}
			if !bytes.Equal(e.Imprint, tc.digest) || !e.Time.Equal(tok.Time) {
				t.Errorf("ledger entry = %+v, want imprint %x time %v", e, tc.digest, tok.Time)
			}
			// Offline re-verification, as an auditor would.
			opts := VerifyOptions{}
			if tc.mod != nil {
				opts.Certificates = []*x509.Certificate{tsa.leaf.Cert}
			}
			if _, err := VerifyToken(tok.DER, tc.digest, tsa.ca.Pool(), opts); err != nil {
				t.Errorf("VerifyToken = %v", err)
			}
		})
	}
}

func TestTokenCertificates(t *testing.T) {
	tsa := newTestTSA(t)
	d := Digest([]byte("x"))
	with, err := tsa.client(t, nil).Stamp(t.Context(), d, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(mustParse(t, with.DER).Certificates); n == 0 {
		t.Errorf("certReq true: token carries no certificate")
	}
	// Without certReq and without the TSA certificate the client cannot verify.
	_, err = tsa.client(t, func(c *ClientConfig) { c.NoCertReq = true }).Stamp(t.Context(), d, crypto.SHA256)
	if !errors.Is(err, ErrUntrustedTSA) {
		t.Errorf("certReq false, no TSA cert: Stamp = %v, want ErrUntrustedTSA", err)
	}
}

func mustParse(t *testing.T, token []byte) *tsp.Timestamp {
	t.Helper()
	ts, err := tsp.Parse(token)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestVerifyTokenErrors(t *testing.T) {
	tsa := newTestTSA(t)
	d := Digest([]byte("message"))
	tok, err := tsa.client(t, nil).Stamp(t.Context(), d, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	other := pkitest.NewCA(t, "Other root")
	cases := []struct {
		name   string
		token  []byte
		digest []byte
		roots  *x509.CertPool
		opts   VerifyOptions
		want   error
	}{
		{"other digest", tok.DER, Digest([]byte("other")), tsa.ca.Pool(), VerifyOptions{}, ErrImprintMismatch},
		{"other root", tok.DER, d, other.Pool(), VerifyOptions{}, ErrUntrustedTSA},
		{"no roots", tok.DER, d, nil, VerifyOptions{}, ErrUntrustedTSA},
		{"nonce", tok.DER, d, tsa.ca.Pool(), VerifyOptions{Nonce: big.NewInt(42)}, ErrNonceMismatch},
		{"policy", tok.DER, d, tsa.ca.Pool(), VerifyOptions{Policy: asn1.ObjectIdentifier{1, 2, 3}}, ErrPolicyMismatch},
		{"hash", tok.DER, d, tsa.ca.Pool(), VerifyOptions{Hash: crypto.SHA512}, ErrImprintMismatch},
		{"skew", tok.DER, d, tsa.ca.Pool(), VerifyOptions{MaxSkew: time.Minute, Now: time.Now().Add(time.Hour)}, ErrTimeSkew},
		{"garbage", []byte("not a token"), d, tsa.ca.Pool(), VerifyOptions{}, ErrBadToken},
		{"truncated", tok.DER[:len(tok.DER)/2], d, tsa.ca.Pool(), VerifyOptions{}, ErrBadToken},
		{"later than cert", tok.DER, d, tsa.ca.Pool(), VerifyOptions{MaxSkew: time.Minute, Now: time.Now().Add(-time.Hour)}, ErrTimeSkew},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyToken(tc.token, tc.digest, tc.roots, tc.opts)
			if !errors.Is(err, tc.want) {
				t.Errorf("VerifyToken = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestServerRefusesNonTSACertificate(t *testing.T) {
	ca := pkitest.NewCA(t, "root")
	leaf := ca.Issue(t, pki.ClientID{}, pki.UsageSign)
	ledger, err := OpenLedger(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ledger.Close()
	_, err = NewServer(ServerConfig{Signer: leaf.Key, Chain: leaf.Chain, Policy: testPolicy, Ledger: ledger})
	if !errors.Is(err, ErrUntrustedTSA) {
		t.Errorf("NewServer(sign certificate) = %v, want ErrUntrustedTSA", err)
	}
}

// query builds a DER request, with fields the library's Marshal cannot set.
func query(t *testing.T, version int, alg asn1.ObjectIdentifier, digest []byte, policy asn1.ObjectIdentifier, exts []pkix.Extension) []byte {
	t.Helper()
	type mi struct {
		HashAlgorithm pkix.AlgorithmIdentifier
		HashedMessage []byte
	}
	type req struct {
		Version        int
		MessageImprint mi
		ReqPolicy      asn1.ObjectIdentifier `asn1:"optional"`
		Nonce          *big.Int              `asn1:"optional"`
		CertReq        bool                  `asn1:"optional,default:false"`
		Extensions     []pkix.Extension      `asn1:"tag:0,optional"`
	}
	der, err := asn1.Marshal(req{Version: version, MessageImprint: mi{pkix.AlgorithmIdentifier{Algorithm: alg, Parameters: asn1.NullRawValue}, digest},
		ReqPolicy: policy, Nonce: big.NewInt(7), CertReq: true, Extensions: exts})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestServerRefusals(t *testing.T) {
	tsa := newTestTSA(t)
	d := Digest([]byte("m"))
	cases := []struct {
		name        string
		contentType string
		body        []byte
		wantHTTP    int
		wantFail    tsp.FailureInfo
	}{
		{"garbage", ContentTypeQuery, []byte("hello"), 200, tsp.BadDataFormat},
		{"empty", ContentTypeQuery, nil, 200, tsp.BadDataFormat},
		{"trailing data", ContentTypeQuery, append(query(t, 1, oidSHA256, d, nil, nil), 0), 200, tsp.BadDataFormat},
		{"version 2", ContentTypeQuery, query(t, 2, oidSHA256, d, nil, nil), 200, tsp.BadRequest},
		{"sha1", ContentTypeQuery, query(t, 1, asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}, d[:20], nil, nil), 200, tsp.BadAlgorithm},
		{"md5", ContentTypeQuery, query(t, 1, asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}, d[:16], nil, nil), 200, tsp.BadAlgorithm},
		{"short digest", ContentTypeQuery, query(t, 1, oidSHA256, d[:31], nil, nil), 200, tsp.BadDataFormat},
		{"empty digest", ContentTypeQuery, query(t, 1, oidSHA256, nil, nil, nil), 200, tsp.BadDataFormat},
		{"other policy", ContentTypeQuery, query(t, 1, oidSHA256, d, asn1.ObjectIdentifier{1, 2, 3, 4}, nil), 200, tsp.UnacceptedPolicy},
		{"extension", ContentTypeQuery, query(t, 1, oidSHA256, d, nil, []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3}, Value: []byte{5, 0}}}), 200, tsp.UnacceptedExtension},
		{"content type", "text/plain", query(t, 1, oidSHA256, d, nil, nil), 200, tsp.BadRequest},
		{"too big", ContentTypeQuery, make([]byte, MaxRequestSize+1), 413, tsp.BadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(tsa.http.URL, tc.contentType, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantHTTP {
				t.Errorf("HTTP status = %d, want %d", resp.StatusCode, tc.wantHTTP)
			}
			if ct := resp.Header.Get("Content-Type"); ct != ContentTypeReply {
				t.Errorf("Content-Type = %q, want %q", ct, ContentTypeReply)
			}
			_, err = TokenFromReply(body)
			var re *RejectedError
			if !errors.As(err, &re) {
				t.Fatalf("TokenFromReply = %v, want *RejectedError", err)
			}
			if re.Status != tsp.Rejection || re.FailInfo != tc.wantFail {
				t.Errorf("reply status %d failInfo %v, want rejection %v", re.Status, re.FailInfo, tc.wantFail)
			}
		})
	}
	t.Run("GET", func(t *testing.T) {
		resp, err := http.Get(tsa.http.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET status = %d, want 405", resp.StatusCode)
		}
	})
	if n, _ := tsa.ledger.Count(); n != 0 {
		t.Errorf("ledger holds %d tokens after refusals only, want 0", n)
	}
}

func TestClientUnavailable(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer hs.Close()
	ca := pkitest.NewCA(t, "root")
	c, err := NewClient(ClientConfig{URL: hs.URL, Roots: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stamp(t.Context(), Digest(nil), crypto.SHA256); !errors.Is(err, ErrTSAUnavailable) {
		t.Errorf("Stamp(503) = %v, want ErrTSAUnavailable", err)
	}
	hs.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := c.Stamp(ctx, Digest(nil), crypto.SHA256); !errors.Is(err, ErrTSAUnavailable) {
		t.Errorf("Stamp(closed) = %v, want ErrTSAUnavailable", err)
	}
	if _, err := c.Stamp(ctx, []byte("short"), crypto.SHA256); !errors.Is(err, ErrUnsupportedHash) {
		t.Errorf("Stamp(short digest) = %v, want ErrUnsupportedHash", err)
	}
}
