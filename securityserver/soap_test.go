package securityserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/ocsp"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/sandbox"
	"github.com/passerelle/passerelle/securityserver"
	"github.com/passerelle/passerelle/securityserver/messagelog"
	"github.com/passerelle/passerelle/soap"
)

// xroadDir holds the X-Road example messages.
const xroadDir = "../../shared/interop/xroad"

func startSandbox(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	sb, err := sandbox.Start(t.Context(), sandbox.Config{Dir: filepath.Join(t.TempDir(), "sb")})
	if err != nil {
		t.Fatalf("sandbox.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("sandbox Close: %v", err)
		}
	})
	return sb
}

// example reads an X-Road example message and adapts its identifiers to the
// sandbox: the client becomes the sandbox's client subsystem, the service
// serviceCode on the provider's subsystem, the message id a fresh one.
func example(t *testing.T, name, serviceCode string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(xroadDir, name))
	if err != nil {
		t.Fatalf("X-Road example %s (../shared/interop/xroad, beside the repository): %v", name, err)
	}
	return adapt(t, data, serviceCode, uuid.NewString())
}

var (
	clientRe  = regexp.MustCompile(`(?s)<(\w+):client id:objectType="\w+">.*?</\w+:client>`)
	serviceRe = regexp.MustCompile(`(?s)<(\w+):service id:objectType="SERVICE">.*?</\w+:service>`)
	idRe      = regexp.MustCompile(`<(\w+):id>[^<]*</\w+:id>`)
)

func adapt(t *testing.T, data []byte, serviceCode, id string) []byte {
	t.Helper()
	data = clientRe.ReplaceAll(data, []byte(`<$1:client id:objectType="SUBSYSTEM"><id:xRoadInstance>SANDBOX</id:xRoadInstance><id:memberClass>GOV</id:memberClass><id:memberCode>CONSUMER</id:memberCode><id:subsystemCode>client</id:subsystemCode></$1:client>`))
	data = serviceRe.ReplaceAll(data, []byte(`<$1:service id:objectType="SERVICE"><id:xRoadInstance>SANDBOX</id:xRoadInstance><id:memberClass>GOV</id:memberClass><id:memberCode>PROVIDER</id:memberCode><id:subsystemCode>services</id:subsystemCode><id:serviceCode>`+serviceCode+`</id:serviceCode><id:serviceVersion>v1</id:serviceVersion></$1:service>`))
	data = idRe.ReplaceAll(data, []byte(`<$1:id>`+id+`</$1:id>`))
	return data
}

// envelope builds a request of SOAP version v for serviceCode with body.
func envelope(v soap.Version, client, serviceCode, id, body string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<env:Envelope xmlns:env="` + v.Namespace() + `" xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers">
  <env:Header>
    ` + client + `
    <xrd:service id:objectType="SERVICE"><id:xRoadInstance>SANDBOX</id:xRoadInstance><id:memberClass>GOV</id:memberClass><id:memberCode>PROVIDER</id:memberCode><id:subsystemCode>services</id:subsystemCode><id:serviceCode>` + serviceCode + `</id:serviceCode></xrd:service>
    <xrd:id>` + id + `</xrd:id>
    <xrd:userId>EE12345678901</xrd:userId>
    <xrd:protocolVersion>4.0</xrd:protocolVersion>
  </env:Header>
  <env:Body>` + body + `</env:Body>
</env:Envelope>
`)
}

const sandboxClient = `<xrd:client id:objectType="SUBSYSTEM"><id:xRoadInstance>SANDBOX</id:xRoadInstance><id:memberClass>GOV</id:memberClass><id:memberCode>CONSUMER</id:memberCode><id:subsystemCode>client</id:subsystemCode></xrd:client>`

func post(t *testing.T, url, contentType string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// wantResponse checks a successful exchange: HTTP 200, a valid envelope of
// version v echoing the request's headers, no signature of ours, and a
// requestHash over the request's SOAP part.
func wantResponse(t *testing.T, resp *http.Response, body, request []byte, contentType string) *soap.Envelope {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200\n%s", resp.StatusCode, body)
	}
	msg, err := soap.ReadMessage(resp.Header.Get("Content-Type"), bytes.NewReader(body), soap.Limits{}, nil)
	if err != nil {
		t.Fatalf("ReadMessage(response): %v", err)
	}
	env, err := soap.ParseEnvelope(msg.ContentType, msg.Envelope, soap.Limits{})
	if err != nil {
		t.Fatalf("ParseEnvelope(response): %v\n%s", err, msg.Envelope)
	}
	reqMsg, err := soap.ReadMessage(contentType, bytes.NewReader(request), soap.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reqEnv, err := soap.ParseRequest(reqMsg.ContentType, reqMsg.Envelope, soap.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if env.Header.Client != reqEnv.Header.Client || env.Header.ID != reqEnv.Header.ID || env.Header.Service == nil || *env.Header.Service != *reqEnv.Header.Service {
		t.Errorf("response headers = %+v, want those of %+v", env.Header, reqEnv.Header)
	}
	if err := env.CheckRequestHash(reqMsg.Envelope); err != nil {
		t.Errorf("CheckRequestHash: %v", err)
	}
	if bytes.Contains(msg.Envelope, []byte(soap.NamespacePasserelle)) {
		t.Errorf("response still carries the security servers' signature")
	}
	return env
}

func wantFault(t *testing.T, resp *http.Response, body []byte, v soap.Version, code string) *soap.Fault {
	t.Helper()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", resp.StatusCode)
	}
	if got, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); got != strings.Split(v.ContentType(), ";")[0] {
		t.Errorf("fault content type = %q, want %s", got, v.ContentType())
	}
	f, err := soap.ParseFault(body, soap.Limits{})
	if err != nil {
		t.Fatalf("ParseFault: %v\n%s", err, body)
	}
	if f.Code != code {
		t.Errorf("fault code = %q (%s), want %q", f.Code, f.String, code)
	}
	if _, err := uuid.Parse(f.Detail); err != nil {
		t.Errorf("faultDetail %q is not a uuid", f.Detail)
	}
	return f
}

func TestSOAPExchange(t *testing.T) {
	sb := startSandbox(t)
	url := sb.Info.ConsumerURL + "/"

	t.Run("examples", func(t *testing.T) {
		for _, tc := range []struct{ name, file string }{
			{"annexE1", "soap-request_prmess-annexE1.xml"},
			{"getstate-subsystem", "testres_getstate-subsystem.query"},
			{"representedparty", "testres_simple-representedparty.query"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				req := example(t, tc.file, "getRandom")
				// The sample service answers an operation named getRandom.
				req = regexp.MustCompile(`(?s)<SOAP-ENV:Body>.*</SOAP-ENV:Body>`).ReplaceAll(req,
					[]byte(`<SOAP-ENV:Body><ns1:getRandom xmlns:ns1="http://producer.x-road.eu"/></SOAP-ENV:Body>`))
				resp, body := post(t, url, "text/xml; charset=utf-8", bytes.NewReader(req))
				env := wantResponse(t, resp, body, req, "text/xml; charset=utf-8")
				if env.Operation().Local != "getRandomResponse" {
					t.Errorf("operation = %v, want getRandomResponse", env.Operation())
				}
			})
		}
	})

	t.Run("soap12", func(t *testing.T) {
		ct := "application/soap+xml; charset=utf-8"
		req := envelope(soap.SOAP12, sandboxClient, "getRandom", uuid.NewString(), `<getRandom xmlns="urn:test"/>`)
		resp, body := post(t, url, ct, bytes.NewReader(req))
		env := wantResponse(t, resp, body, req, ct)
		if env.Version != soap.SOAP12 {
			t.Errorf("version = %v, want SOAP 1.2", env.Version)
		}
	})

	t.Run("faults", func(t *testing.T) {
		other := strings.Replace(sandboxClient, ">client<", ">other<", 1)
		noVersion := bytes.Replace(envelope(soap.SOAP11, sandboxClient, "getRandom", uuid.NewString(), `<getRandom/>`),
			[]byte("<xrd:protocolVersion>4.0</xrd:protocolVersion>"), nil, 1)
		badVersion := bytes.Replace(envelope(soap.SOAP12, sandboxClient, "getRandom", uuid.NewString(), `<getRandom/>`),
			[]byte(">4.0<"), []byte(">3.1<"), 1)
		xxe := []byte(`<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>` +
			string(envelope(soap.SOAP11, sandboxClient, "getRandom", uuid.NewString(), `<getRandom>&e;</getRandom>`))[len(`<?xml version="1.0" encoding="UTF-8"?>`):])
		for _, tc := range []struct {
			name string
			v    soap.Version
			req  []byte
			code string
		}{
			{"unregistered client", soap.SOAP11, envelope(soap.SOAP11, other, "getRandom", uuid.NewString(), `<getRandom/>`), "Server.ClientProxy.InvalidClientIdentifier"},
			{"no protocolVersion", soap.SOAP11, noVersion, "Client.MissingHeaderField"},
			{"protocolVersion 3.1 SOAP 1.2", soap.SOAP12, badVersion, "Client.InvalidProtocolVersion"},
			{"no body", soap.SOAP11, envelope(soap.SOAP11, sandboxClient, "getRandom", uuid.NewString(), ``), "Client.MissingBody"},
			{"XXE", soap.SOAP11, xxe, "Client.InvalidXml"},
			{"unknown service", soap.SOAP11, envelope(soap.SOAP11, sandboxClient, "nope", uuid.NewString(), `<nope/>`), "Server.ServerProxy.UnknownService"},
			{"service fault passes", soap.SOAP11, envelope(soap.SOAP11, sandboxClient, "getRandom", uuid.NewString(), `<notRandom/>`), ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, body := post(t, url, tc.v.ContentType(), bytes.NewReader(tc.req))
				if tc.code == "" {
					if f, err := soap.ParseFault(body, soap.Limits{}); err != nil || resp.StatusCode != 500 {
						t.Fatalf("want the service's fault, got %d %v\n%s", resp.StatusCode, err, body)
					} else {
						t.Logf("service fault: %s", f.Code)
					}
					return
				}
				wantFault(t, resp, body, tc.v, tc.code)
			})
		}
	})

	t.Run("logged envelopes verify with xmlsec1", func(t *testing.T) {
		id := uuid.NewString()
		req := envelope(soap.SOAP11, sandboxClient, "getRandom", id, `<getRandom xmlns="urn:test">a &amp; b</getRandom>`)
		resp, body := post(t, url, "text/xml", bytes.NewReader(req))
		wantResponse(t, resp, body, req, "text/xml")
		client, _ := pki.ParseSubsystemID(sandbox.ClientID)
		for _, in := range []*sandbox.Institution{sb.Consumer, sb.Provider} {
			recs, err := in.Server().Log().ByMessageID(t.Context(), id, client)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 2 {
				t.Fatalf("%s logged %d records for %s, want 2", in.Member, len(recs), id)
			}
			for _, rec := range recs {
				if rec.Protocol != messagelog.SOAP {
					t.Errorf("protocol = %v, want soap", rec.Protocol)
				}
				xmlsecVerify(t, sb, rec.Signed, true)
				xmlsecVerify(t, sb, bytes.Replace(rec.Signed, []byte("EE12345678901"), []byte("EE12345678902"), 1), false)
			}
		}
	})

	t.Run("envelope altered between the servers", func(t *testing.T) {
		id := uuid.NewString()
		req := envelope(soap.SOAP11, sandboxClient, "getRandom", id, `<getRandom xmlns="urn:test"/>`)
		resp, body := post(t, url, "text/xml", bytes.NewReader(req))
		wantResponse(t, resp, body, req, "text/xml")
		client, _ := pki.ParseSubsystemID(sandbox.ClientID)
		recs, err := sb.Consumer.Server().Log().ByMessageID(t.Context(), id, client)
		if err != nil || len(recs) == 0 {
			t.Fatalf("ByMessageID: %v, %d records", err, len(recs))
		}
		signed := recs[0].Signed
		for _, tc := range []struct {
			name     string
			envelope []byte
			code     string
		}{
			{"body changed", bytes.Replace(signed, []byte(`<getRandom xmlns="urn:test"/>`), []byte(`<getRandom xmlns="urn:test2"/>`), 1), "Server.ServerProxy.InvalidSignatureValue"},
			{"header changed", bytes.Replace(signed, []byte("EE12345678901"), []byte("EE12345678902"), 1), "Server.ServerProxy.InvalidSignatureValue"},
			{"signature removed", mustStrip(t, signed), "Server.ServerProxy.MissingSignature"},
			{"replayed", signed, "Server.ServerProxy.InvalidMessage"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, body := postProvider(t, sb, "text/xml", tc.envelope)
				wantFault(t, resp, body, soap.SOAP11, tc.code)
			})
		}
	})
}

func mustStrip(t *testing.T, signed []byte) []byte {
	t.Helper()
	b, err := soap.Strip(signed)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// postProvider POSTs straight to the provider's security server over mutual
// TLS, as the consumer's server would (with its TLS key).
func postProvider(t *testing.T, sb *sandbox.Sandbox, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(sb.Consumer.Keys.CertPath(pki.UsageAuth), sb.Consumer.Keys.KeyPath(pki.UsageAuth))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, // the test does not check the provider
	}}}
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+sb.Provider.ProviderAddr+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set(securityserver.HeaderAuthOCSP, base64.StdEncoding.EncodeToString(authOCSP(t, sb)))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// authOCSP fetches a fresh OCSP response for the consumer's TLS certificate.
func authOCSP(t *testing.T, sb *sandbox.Sandbox) []byte {
	t.Helper()
	chain, err := pki.LoadCertificates(sb.Consumer.Keys.CertPath(pki.UsageAuth))
	if err != nil {
		t.Fatal(err)
	}
	q, err := ocsp.CreateRequest(chain[0], chain[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, der := post(t, sb.Info.OCSPURL, "application/ocsp-request", bytes.NewReader(q))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("OCSP: %d", resp.StatusCode)
	}
	return der
}

// xmlsecVerify runs xmlsec1 --verify on a signed envelope with the
// sandbox's CA as the only trusted root.
func xmlsecVerify(t *testing.T, sb *sandbox.Sandbox, doc []byte, wantOK bool) {
	t.Helper()
	bin := xmlsec1(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "signed.xml")
	if err := os.WriteFile(f, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	caPEM := filepath.Join(sb.TrustDir, "ca.pem")
	out, err := runCmd(t, bin, "--verify", "--trusted-pem", caPEM, "--enabled-reference-uris", "empty", f)
	if ok := err == nil; ok != wantOK {
		t.Errorf("xmlsec1 --verify: ok = %v, want %v\n%s", ok, wantOK, out)
	}
}
