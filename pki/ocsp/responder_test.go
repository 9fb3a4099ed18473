package ocsp

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
	xocsp "golang.org/x/crypto/ocsp"
)

func TestResponderStatuses(t *testing.T) {
	revokedAt := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)
	for _, delegated := range []bool{false, true} {
		f := newFixture(t, delegated)
		good := f.issue(t, &Status{Status: Good})
		revoked := f.issue(t, &Status{Status: Revoked, RevokedAt: revokedAt, Reason: xocsp.KeyCompromise})
		unknown := f.issue(t, nil)
		tests := []struct {
			name    string
			leaf    *pkitest.Leaf
			want    CertStatus
			wantErr error
		}{
			{"good", good, Good, nil},
			{"revoked", revoked, Revoked, ErrRevoked},
			{"unknown", unknown, Unknown, ErrUnknownCert},
		}
		for _, tt := range tests {
			for _, method := range []string{http.MethodPost, http.MethodGet} {
				name := tt.name + "/" + method
				if delegated {
					name += "/delegated"
				}
				t.Run(name, func(t *testing.T) {
					der := f.ask(t, method, tt.leaf)
					r, err := ParseAndVerify(der, tt.leaf.Cert, f.ca.Cert, time.Now(), 0)
					if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
						t.Fatalf("ParseAndVerify error = %v, want %v", err, tt.wantErr)
					}
					if r == nil || r.Status != tt.want {
						t.Fatalf("status = %v, want %v", r, tt.want)
					}
					if r.NextUpdate.Sub(r.ThisUpdate) != time.Hour {
						t.Errorf("nextUpdate - thisUpdate = %v, want 1h", r.NextUpdate.Sub(r.ThisUpdate))
					}
					if tt.want == Revoked {
						var re *RevokedError
						if !errors.As(err, &re) || !re.At.Equal(revokedAt) || re.Reason != xocsp.KeyCompromise {
							t.Errorf("revoked error = %#v, want at %v reason %d", err, revokedAt, xocsp.KeyCompromise)
						}
					}
					wantSigner := f.ca.Cert
					if delegated {
						wantSigner = f.signer.Cert
					}
					if !r.Signer.Equal(wantSigner) {
						t.Errorf("signer = %s, want %s", r.Signer.Subject, wantSigner.Subject)
					}
				})
			}
		}
	}
}

// ask sends an OCSP request about leaf and returns the raw response.
func (f *fixture) ask(t testing.TB, method string, leaf *pkitest.Leaf) []byte {
	t.Helper()
	reqDER, err := xocsp.CreateRequest(leaf.Cert, f.ca.Cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	var resp *http.Response
	if method == http.MethodPost {
		resp, err = http.Post(f.url, "application/ocsp-request", bytes.NewReader(reqDER))
	} else {
		resp, err = http.Get(f.url + "/" + url.PathEscape(base64.StdEncoding.EncodeToString(reqDER)))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/ocsp-response" {
		t.Fatalf("HTTP %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	return body
}

func TestResponderGETEncodings(t *testing.T) {
	f := newFixture(t, false)
	leaf := f.issue(t, &Status{Status: Good})
	reqDER, err := xocsp.CreateRequest(leaf.Cert, f.ca.Cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(reqDER)
	tests := []struct{ name, path string }{
		{"escaped", url.PathEscape(b64)},
		{"query-escaped", url.QueryEscape(b64)},
		{"raw", b64},
		{"unpadded", strings.TrimRight(b64, "=")},
		{"url-alphabet", base64.RawURLEncoding.EncodeToString(reqDER)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeGETPath("/ocsp/" + tt.path)
			if err != nil || !bytes.Equal(got, reqDER) {
				t.Fatalf("decodeGETPath(%q) = %x, %v; want %x", tt.path, got, err, reqDER)
			}
		})
	}
	// A path with "//" must reach the responder unchanged through Route.
	t.Run("double-slash", func(t *testing.T) {
		got, err := decodeGETPath("/ocsp/MEow//QT")
		if err != nil || base64.StdEncoding.EncodeToString(got) != "MEow//QT" {
			t.Fatalf("decodeGETPath kept %q, %v", base64.StdEncoding.EncodeToString(got), err)
		}
	})
}

func TestResponderRejects(t *testing.T) {
	f := newFixture(t, false)
	other := pkitest.NewCA(t, "Other CA")
	otherLeaf := other.Issue(t, member, pki.UsageSign)
	otherReq, err := xocsp.CreateRequest(otherLeaf.Cert, other.Cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		method   string
		path     string
		body     []byte
		wantCode int
		wantBody []byte
	}{
		{"garbage", http.MethodPost, "/ocsp", []byte("not an OCSP request"), 200, xocsp.MalformedRequestErrorResponse},
		{"empty", http.MethodPost, "/ocsp", nil, 200, xocsp.MalformedRequestErrorResponse},
		{"truncated", http.MethodPost, "/ocsp", otherReq[:len(otherReq)-3], 200, xocsp.MalformedRequestErrorResponse},
		{"too large", http.MethodPost, "/ocsp", bytes.Repeat([]byte{0x30}, MaxRequestSize+1), 413, xocsp.MalformedRequestErrorResponse},
		{"other issuer", http.MethodPost, "/ocsp", otherReq, 200, xocsp.UnauthorizedErrorResponse},
		{"bad base64", http.MethodGet, "/ocsp/!!!!", nil, 200, xocsp.MalformedRequestErrorResponse},
		{"GET no request", http.MethodGet, "/ocsp/", nil, 200, xocsp.MalformedRequestErrorResponse},
		{"GET garbage", http.MethodGet, "/ocsp/" + base64.StdEncoding.EncodeToString([]byte("junk")), nil, 200, xocsp.MalformedRequestErrorResponse},
		{"method", http.MethodPut, "/ocsp", nil, 405, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, f.srv.URL+tt.path, bytes.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/ocsp-request")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantCode {
				t.Errorf("HTTP status = %d, want %d", resp.StatusCode, tt.wantCode)
			}
			if tt.wantBody != nil && !bytes.Equal(body, tt.wantBody) {
				t.Errorf("body = %x, want %x", body, tt.wantBody)
			}
		})
	}
}

// requestWithNonce builds a request about leaf carrying a nonce extension.
func requestWithNonce(t testing.TB, f *fixture, leaf *pkitest.Leaf, nonce []byte) []byte {
	t.Helper()
	plain, err := xocsp.CreateRequest(leaf.Cert, f.ca.Cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	var req asn1Request
	if _, err := asn1.Unmarshal(plain, &req); err != nil {
		t.Fatal(err)
	}
	val, err := asn1.Marshal(nonce)
	if err != nil {
		t.Fatal(err)
	}
	req.TBSRequest.RequestExtensions = []pkix.Extension{{Id: oidNonce, Value: val}}
	der, err := asn1.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestResponderNonce(t *testing.T) {
	for _, delegated := range []bool{false, true} {
		t.Run(map[bool]string{false: "ca", true: "delegated"}[delegated], func(t *testing.T) {
			f := newFixture(t, delegated)
			leaf := f.issue(t, &Status{Status: Good})
			nonce := []byte("0123456789abcdef")
			der, _ := f.resp.Respond(t.Context(), requestWithNonce(t, f, leaf, nonce))
			r, err := ParseAndVerify(der, leaf.Cert, f.ca.Cert, time.Now(), 0)
			if err != nil || r.Status != Good {
				t.Fatalf("ParseAndVerify = %v, %v; want good", r, err)
			}
			_, data, err := splitResponse(der)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := asn1.Marshal(nonce)
			if len(data.ResponseExtensions) != 1 || !data.ResponseExtensions[0].Id.Equal(oidNonce) || !bytes.Equal(data.ResponseExtensions[0].Value, want) {
				t.Fatalf("response extensions = %v, want the nonce", data.ResponseExtensions)
			}
		})
	}
}

func TestResponderCacheSeesRevocation(t *testing.T) {
	f := newFixture(t, false)
	leaf := f.issue(t, &Status{Status: Good})
	first := f.ask(t, http.MethodPost, leaf)
	if again := f.ask(t, http.MethodPost, leaf); !bytes.Equal(first, again) {
		t.Error("second answer was signed again; want the cached response")
	}
	f.src.set(leaf.Cert.SerialNumber, Status{Status: Revoked, RevokedAt: time.Now(), Reason: xocsp.Superseded})
	_, err := ParseAndVerify(f.ask(t, http.MethodPost, leaf), leaf.Cert, f.ca.Cert, time.Now(), 0)
	if !errors.Is(err, ErrRevoked) {
		t.Fatalf("after revocation: %v, want ErrRevoked", err)
	}
}

func TestNewResponderRefuses(t *testing.T) {
	ca := pkitest.NewCA(t, "Test CA")
	other := pkitest.NewCA(t, "Other CA")
	ocspCert := ca.Issue(t, member, pki.UsageOCSP)
	authCert := ca.Issue(t, member, pki.UsageAuth)
	otherOCSP := other.Issue(t, member, pki.UsageOCSP)
	src := newMemSource()
	tests := []struct {
		name string
		cfg  ResponderConfig
	}{
		{"no source", ResponderConfig{Issuer: ca.Cert, Signer: ca.Key}},
		{"no issuer", ResponderConfig{Signer: ca.Key, Source: src}},
		{"wrong key", ResponderConfig{Issuer: ca.Cert, Signer: other.Key, Source: src}},
		{"signer not matching cert", ResponderConfig{Issuer: ca.Cert, Signer: ca.Key, SignerCert: ocspCert.Cert, Source: src}},
		{"no OCSP EKU", ResponderConfig{Issuer: ca.Cert, Signer: authCert.Key, SignerCert: authCert.Cert, Source: src}},
		{"other CA's signer", ResponderConfig{Issuer: ca.Cert, Signer: otherOCSP.Key, SignerCert: otherOCSP.Cert, Source: src}},
		{"negative validity", ResponderConfig{Issuer: ca.Cert, Signer: ca.Key, Source: src, Validity: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewResponder(tt.cfg); !errors.Is(err, ErrBadConfig) {
				t.Fatalf("NewResponder() error = %v, want ErrBadConfig", err)
			}
		})
	}
}
