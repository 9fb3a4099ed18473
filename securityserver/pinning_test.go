package securityserver_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/directory"
	"github.com/passerelle/passerelle/sandbox"
	"github.com/passerelle/passerelle/soap"
)

// TestConsumerPinsProviderBeforeSending: when the provider's registered
// address leads to another security server of the federation (valid chain,
// auth usage, good staple, registered, but not the server hosting the
// service), the consumer side refuses it during the TLS handshake: neither a
// REST nor a SOAP request reaches it.
func TestConsumerPinsProviderBeforeSending(t *testing.T) {
	t.Parallel()
	sb := restSandbox(t)

	// The impostor presents the consumer's own auth certificate, which the
	// directory registers (for the consumer's server), with a fresh staple.
	key, err := pki.LoadPrivateKey(sb.Consumer.Keys.KeyPath(pki.UsageAuth))
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{PrivateKey: key, Leaf: sb.Consumer.AuthChain[0], OCSPStaple: fetchOCSP(t, sb, sb.Consumer.AuthChain)}
	for _, c := range sb.Consumer.AuthChain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	var reached atomic.Int32
	impostor := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	impostor.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}
	impostor.StartTLS()
	t.Cleanup(impostor.Close)

	signDirectory(t, sb, func(d *directory.Draft) error {
		for i := range d.Servers {
			if d.Servers[i].Owner == sb.Provider.Member.String() {
				d.Servers[i].Address = impostor.Listener.Addr().String()
			}
		}
		return nil
	})

	t.Run("rest", func(t *testing.T) {
		resp, body := callREST(t, sb, http.MethodPost, sandbox.RESTService, "/secret",
			http.Header{"Content-Type": {"text/plain"}}, []byte("secret"))
		wantXRoadError(t, resp, body, http.StatusUnauthorized, "Server.ClientProxy.SslAuthenticationFailed")
		if n := reached.Load(); n != 0 {
			t.Errorf("the impostor received %d request(s) before the consumer side refused it", n)
		}
	})
	t.Run("soap", func(t *testing.T) {
		req := envelope(soap.SOAP11, sandboxClient, "getRandom", uuid.NewString(), `<getRandom xmlns="urn:test"/>`)
		resp, body := post(t, sb.Info.ConsumerURL+"/", "text/xml; charset=utf-8", bytes.NewReader(req))
		wantFault(t, resp, body, soap.SOAP11, "Server.ClientProxy.SslAuthenticationFailed")
		if n := reached.Load(); n != 0 {
			t.Errorf("the impostor received %d request(s) before the consumer side refused it", n)
		}
	})
}
