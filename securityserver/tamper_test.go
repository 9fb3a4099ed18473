package securityserver_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ca"
	"github.com/passerelle/passerelle/pki/ocsp"
	"github.com/passerelle/passerelle/rest"
	"github.com/passerelle/passerelle/sandbox"
	"github.com/passerelle/passerelle/securityserver"
)

// rogue plays a consumer's security server by hand: it signs r1 requests
// with a sign key and sends them over mutual TLS with a TLS key straight to
// the provider's security server, so that a test can alter anything between
// signing and sending.
type rogue struct {
	sb       *sandbox.Sandbox
	signer   *rest.Signer
	signCert []*x509.Certificate
	signOCSP []byte
	authOCSP []byte
	client   *http.Client
}

// newRogue loads the TLS (auth) and sign keys of the institutions given
// from the sandbox and fetches fresh OCSP responses for both certificates
// from the sandbox CA's responder.
func newRogue(t *testing.T, sb *sandbox.Sandbox, auth, sign *sandbox.Institution) *rogue {
	t.Helper()
	authKey, err := pki.LoadPrivateKey(auth.Keys.KeyPath(pki.UsageAuth))
	if err != nil {
		t.Fatal(err)
	}
	signKey, err := pki.LoadPrivateKey(sign.Keys.KeyPath(pki.UsageSign))
	if err != nil {
		t.Fatal(err)
	}
	return newRogueWith(t, sb, authKey, auth.AuthChain, signKey, sign.SignChain)
}

func newRogueWith(t *testing.T, sb *sandbox.Sandbox, authKey crypto.Signer, authChain []*x509.Certificate, signKey crypto.Signer, signChain []*x509.Certificate) *rogue {
	t.Helper()
	signer, err := rest.NewSigner(signKey, signChain)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{PrivateKey: authKey, Leaf: authChain[0]}
	for _, c := range authChain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	roots := sb.Roots()
	rg := &rogue{sb: sb, signer: signer, signCert: signChain,
		signOCSP: fetchOCSP(t, sb, signChain), authOCSP: fetchOCSP(t, sb, authChain),
		client: &http.Client{Transport: &http.Transport{
			TLSClientConfig:    &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "127.0.0.1"},
			DisableCompression: true,
		}}}
	t.Cleanup(rg.client.CloseIdleConnections)
	return rg
}

// fetchOCSP asks the sandbox CA's responder about chain[0]; a revoked
// certificate's response is returned too (that is the point).
func fetchOCSP(t *testing.T, sb *sandbox.Sandbox, chain []*x509.Certificate) []byte {
	t.Helper()
	r, err := ocsp.Fetch(t.Context(), chain[0], chain[1], sb.Info.OCSPURL)
	if err != nil && !errors.Is(err, ocsp.ErrRevoked) {
		t.Fatalf("OCSP for %s: %v", chain[0].Subject, err)
	}
	if r == nil {
		t.Fatalf("OCSP for %s: no response (%v)", chain[0].Subject, err)
	}
	return r.Raw
}

// wireRequest is a signed request as it will travel, open to alteration.
type wireRequest struct {
	Method string
	Path   string // r1 path and resource path, escaped
	Query  string
	Header http.Header
	Body   []byte
	JWS    string
}

// sign builds the r1 request (method, resource after the service code,
// X-Road-Client client, headers) as the consumer side would forward it, and
// signs it; signedAt zero means now.
func (rg *rogue) sign(t *testing.T, method, service, resource, client string, hdr http.Header, body []byte, signedAt time.Time) *wireRequest {
	t.Helper()
	in := httptest.NewRequest(method, "/r1/"+service+resource, bytes.NewReader(body))
	for k, v := range hdr {
		in.Header[k] = v
	}
	in.Header.Set(rest.HeaderClient, client)
	if in.Header.Get(rest.HeaderID) == "" {
		in.Header.Set(rest.HeaderID, "rogue-"+uuid.NewString())
	}
	req, err := rest.ParseRequest(in)
	if err != nil {
		t.Fatal(err)
	}
	d := req.Descriptor(rest.DigestBytes(body))
	d.SignedAt = signedAt
	jws, err := rg.signer.SignRequest(t.Context(), &d, rg.signOCSP)
	if err != nil {
		t.Fatal(err)
	}
	return &wireRequest{Method: req.Method, Path: req.ServicePath(), Query: req.RawQuery, Header: req.Header.Clone(), Body: body, JWS: jws}
}

// send sends w to the provider's security server over mutual TLS.
func (rg *rogue) send(t *testing.T, w *wireRequest) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	u := "https://" + rg.sb.Provider.ProviderAddr + w.Path
	if w.Query != "" {
		u += "?" + w.Query
	}
	req, err := http.NewRequestWithContext(ctx, w.Method, u, bytes.NewReader(w.Body))
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Body) == 0 {
		req.Body = http.NoBody
	}
	req.Header = w.Header.Clone()
	if w.JWS != "" {
		req.Header.Set(rest.HeaderSignature, w.JWS)
	}
	if rg.authOCSP != nil {
		req.Header.Set(securityserver.HeaderAuthOCSP, base64.StdEncoding.EncodeToString(rg.authOCSP))
	}
	resp, err := rg.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", w.Method, u, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp, b.Bytes()
}

// wantSignedOK checks a provider's signed 200 answer to a rogue request.
func wantSignedOK(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(rest.HeaderSignature) == "" {
		t.Fatalf("= %d %s %s, want a signed 200", resp.StatusCode, resp.Header.Get(rest.HeaderError), body)
	}
}

// TestProviderRefusesTampering is row 2 and row 3: a request altered
// between the servers, replayed, signed by another member than its client,
// sent from an unregistered TLS certificate, or signed with a revoked
// certificate is refused by the provider's security server, with the type
// that says why.
func TestProviderRefusesTampering(t *testing.T) {
	t.Parallel()
	sb := restSandbox(t)
	rg := newRogue(t, sb, sb.Consumer, sb.Consumer)
	json := http.Header{"Content-Type": {"application/json"}}
	body := []byte(`{"name":"Rex","note":"aäõ€"}`)
	post := func(t *testing.T) *wireRequest {
		h := json.Clone()
		h.Set(rest.HeaderUserID, "EE12345678901")
		return rg.sign(t, "POST", sandbox.RESTService, "/pets?lang=et&tag=a", sandbox.ClientID, h, body, time.Time{})
	}

	t.Run("untouched request passes", func(t *testing.T) {
		// The control: the same harness without alteration is accepted, so
		// that the refusals below are the alterations' doing.
		resp, got := rg.send(t, post(t))
		wantSignedOK(t, resp, got)
		if !bytes.Equal(got, body) {
			t.Errorf("body = %q, want the echo %q", got, body)
		}
		resp, got = rg.send(t, rg.sign(t, "GET", sandbox.RESTService, "/pets/%C3%A4?q=%20&q=2", sandbox.ClientID, nil, nil, time.Time{}))
		wantSignedOK(t, resp, got)
	})

	const invalid = "Server.ServerProxy.InvalidMessage"
	alterations := []struct {
		name  string
		alter func(*wireRequest)
		want  string
	}{
		{"body byte changed", func(w *wireRequest) { w.Body = bytes.Replace(w.Body, []byte("Rex"), []byte("Rez"), 1) }, invalid},
		{"body truncated", func(w *wireRequest) { w.Body = w.Body[:len(w.Body)-1] }, invalid},
		{"body appended", func(w *wireRequest) { w.Body = append(w.Body, ' ') }, invalid},
		{"body removed", func(w *wireRequest) { w.Body = nil }, invalid},
		{"query value changed", func(w *wireRequest) { w.Query = "lang=en&tag=a" }, invalid},
		{"query reordered", func(w *wireRequest) { w.Query = "tag=a&lang=et" }, invalid},
		{"query parameter added", func(w *wireRequest) { w.Query += "&admin=1" }, invalid},
		{"query removed", func(w *wireRequest) { w.Query = "" }, invalid},
		{"resource path changed", func(w *wireRequest) { w.Path = strings.Replace(w.Path, "/pets", "/users", 1) }, invalid},
		{"service changed", func(w *wireRequest) { w.Path = strings.Replace(w.Path, "/hello/", "/getRandom/", 1) }, invalid},
		{"method changed", func(w *wireRequest) { w.Method = "PUT" }, invalid},
		{"X-Road-UserId changed", func(w *wireRequest) { w.Header.Set(rest.HeaderUserID, "EE00000000000") }, invalid},
		{"X-Road-UserId removed", func(w *wireRequest) { w.Header.Del(rest.HeaderUserID) }, invalid},
		{"X-Road-Issue added", func(w *wireRequest) { w.Header.Set(rest.HeaderIssue, "injected") }, invalid},
		{"X-Road-Id changed", func(w *wireRequest) { w.Header.Set(rest.HeaderID, "rogue-"+uuid.NewString()) }, invalid},
		{"Content-Type changed", func(w *wireRequest) { w.Header.Set("Content-Type", "text/plain") }, invalid},
		{"Accept-Language added", func(w *wireRequest) { w.Header.Set("Accept-Language", "et") }, invalid},
		{"signature from another request", func(w *wireRequest) {
			other := rg.sign(t, "POST", sandbox.RESTService, "/pets?lang=et&tag=a", sandbox.ClientID, json, []byte(`{}`), time.Time{})
			w.JWS = other.JWS
		}, invalid},
		{"signature value altered", func(w *wireRequest) {
			parts := strings.Split(w.JWS, ".")
			sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
			sig[5] ^= 1
			w.JWS = parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
		}, "Server.ServerProxy.InvalidSignatureValue"},
		{"signature missing", func(w *wireRequest) { w.JWS = "" }, "Server.ServerProxy.MissingSignature"},
	}
	for _, tt := range alterations {
		t.Run(tt.name, func(t *testing.T) {
			w := post(t)
			tt.alter(w)
			resp, got := rg.send(t, w)
			wantXRoadError(t, resp, got, 0, tt.want)
		})
	}

	t.Run("replay refused", func(t *testing.T) {
		w := post(t)
		resp, got := rg.send(t, w)
		wantSignedOK(t, resp, got)
		resp, got = rg.send(t, w)
		wantXRoadError(t, resp, got, 0, invalid)
		// Nothing of the replay reached the provider's log: one request.
		recs := exchangeRecords(t, sb.Provider, w.Header.Get(rest.HeaderID))
		if len(recs) != 2 {
			t.Errorf("provider logged %d records for the replayed id, want the first exchange's 2", len(recs))
		}
	})
	t.Run("signed outside the replay window", func(t *testing.T) {
		w := rg.sign(t, "GET", sandbox.RESTService, "/old", sandbox.ClientID, nil, nil, time.Now().Add(-10*time.Minute))
		resp, got := rg.send(t, w)
		wantXRoadError(t, resp, got, 0, invalid)
		w = rg.sign(t, "GET", sandbox.RESTService, "/future", sandbox.ClientID, nil, nil, time.Now().Add(10*time.Minute))
		resp, got = rg.send(t, w)
		wantXRoadError(t, resp, got, 0, invalid)
	})

	t.Run("signer member is not the client's member", func(t *testing.T) {
		// TLS as the consumer's server (registered for the client), but the
		// request signed with the provider member's sign key.
		mixed := newRogue(t, sb, sb.Consumer, sb.Provider)
		resp, got := mixed.send(t, mixed.sign(t, "GET", sandbox.RESTService, "/x", sandbox.ClientID, nil, nil, time.Time{}))
		wantXRoadError(t, resp, got, 0, "Server.ServerProxy.CertValidation")
	})
	t.Run("TLS certificate registered for another client", func(t *testing.T) {
		// TLS as the provider's own server, which does not host the
		// consumer's client subsystem; signature by the client's member.
		other := newRogue(t, sb, sb.Provider, sb.Consumer)
		resp, got := other.send(t, other.sign(t, "GET", sandbox.RESTService, "/x", sandbox.ClientID, nil, nil, time.Time{}))
		wantXRoadError(t, resp, got, http.StatusUnauthorized, "Server.ServerProxy.SslAuthenticationFailed")
	})
	t.Run("TLS certificate registered nowhere", func(t *testing.T) {
		// A valid auth certificate of the consumer member, issued by the
		// federation's CA but not in the directory: refused in the handshake.
		key, chain := issueAuth(t, sb, sb.Consumer.Member)
		stranger := newRogueWith(t, sb, key, chain, mustSignKey(t, sb.Consumer), sb.Consumer.SignChain)
		w := stranger.sign(t, "GET", sandbox.RESTService, "/x", sandbox.ClientID, nil, nil, time.Time{})
		req, _ := http.NewRequestWithContext(t.Context(), "GET", "https://"+sb.Provider.ProviderAddr+w.Path, nil)
		req.Header = w.Header
		req.Header.Set(rest.HeaderSignature, w.JWS)
		req.Header.Set(securityserver.HeaderAuthOCSP, base64.StdEncoding.EncodeToString(stranger.authOCSP))
		resp, err := stranger.client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("an unregistered TLS certificate got %d, want the handshake refused", resp.StatusCode)
		}
		if !strings.Contains(err.Error(), "tls") && !strings.Contains(err.Error(), "certificate") {
			t.Errorf("error %v, want a TLS refusal", err)
		}
	})
	t.Run("TLS OCSP response missing", func(t *testing.T) {
		noOCSP := newRogue(t, sb, sb.Consumer, sb.Consumer)
		noOCSP.authOCSP = nil
		resp, got := noOCSP.send(t, noOCSP.sign(t, "GET", sandbox.RESTService, "/x", sandbox.ClientID, nil, nil, time.Time{}))
		wantXRoadError(t, resp, got, http.StatusUnauthorized, "Server.ServerProxy.SslAuthenticationFailed")
	})

	// Row 3, last: revocation is for good.
	t.Run("revoked sign certificate", func(t *testing.T) {
		testRevokedSignCertificate(t, sb, rg)
	})
}

// testRevokedSignCertificate is row 3: once the consumer's sign certificate
// is revoked, (a) the provider refuses a request that carries the refreshed
// (revoked) OCSP response – and so for its TLS certificate, revoked next –
// and (b) the consumer's own security server,
// whose OCSP response is refreshed at its restart, fails closed: it refuses
// to sign with Server.ClientProxy.CertValidation.
func testRevokedSignCertificate(t *testing.T, sb *sandbox.Sandbox, rg *rogue) {
	// Before: the real exchange works.
	if resp, body := callREST(t, sb, "GET", sandbox.RESTService, "/before", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("before revocation: %d %s", resp.StatusCode, body)
	}
	if err := sb.Revoke(t.Context(), sb.Consumer.SignChain[0], ca.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	t.Run("provider refuses the revoked OCSP response", func(t *testing.T) {
		rg.signOCSP = fetchOCSP(t, sb, sb.Consumer.SignChain)
		resp, got := rg.send(t, rg.sign(t, "GET", sandbox.RESTService, "/x", sandbox.ClientID, nil, nil, time.Time{}))
		wantXRoadError(t, resp, got, 0, "Server.ServerProxy.CertValidation")
	})
	t.Run("provider refuses a revoked TLS certificate", func(t *testing.T) {
		if err := sb.Revoke(t.Context(), sb.Consumer.AuthChain[0], ca.ReasonKeyCompromise); err != nil {
			t.Fatal(err)
		}
		rg.signOCSP = fetchOCSP(t, sb, sb.Consumer.SignChain)
		rg.authOCSP = fetchOCSP(t, sb, sb.Consumer.AuthChain)
		resp, got := rg.send(t, rg.sign(t, "GET", sandbox.RESTService, "/x", sandbox.ClientID, nil, nil, time.Time{}))
		wantXRoadError(t, resp, got, http.StatusUnauthorized, "Server.ServerProxy.SslAuthenticationFailed")
	})
	t.Run("consumer server fails closed once refreshed", func(t *testing.T) {
		if err := sb.StopServer(sb.Consumer); err != nil {
			t.Fatal(err)
		}
		// The server starts but never reports healthy: its own OCSP
		// response says revoked.
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		if err := sb.RestartServer(ctx, sb.Consumer); err == nil {
			t.Error("the consumer's server reports healthy with a revoked sign certificate")
		}
		if sb.Consumer.Server() == nil {
			t.Fatal("the consumer's server is not running")
		}
		if err := sb.Consumer.Server().Health(); err == nil {
			t.Error("Health() = nil with a revoked sign certificate")
		}
		url := "http://" + sb.Consumer.Addrs["consumer"] + "/r1/" + sandbox.RESTService + "/after"
		resp, body := doHTTP(t, nil, "GET", url, http.Header{rest.HeaderClient: {sandbox.ClientID}}, nil)
		wantXRoadError(t, resp, body, http.StatusInternalServerError, "Server.ClientProxy.CertValidation")
	})
}

// issueAuth has the sandbox CA issue a new auth certificate for member,
// which no directory entry names.
func issueAuth(t *testing.T, sb *sandbox.Sandbox, member pki.ClientID) (crypto.Signer, []*x509.Certificate) {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.CreateCSR(key, member, pki.UsageAuth)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := sb.CA.Sign(t.Context(), ca.SignRequest{CSR: csr, Member: member, Usage: pki.UsageAuth, Operator: "test", Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	return key, []*x509.Certificate{cert, sb.CA.Certificate()}
}

func mustSignKey(t *testing.T, in *sandbox.Institution) crypto.Signer {
	t.Helper()
	k, err := pki.LoadPrivateKey(in.Keys.KeyPath(pki.UsageSign))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
