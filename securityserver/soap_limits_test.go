package securityserver_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/passerelle/passerelle/sandbox"
	"github.com/passerelle/passerelle/securityserver"
	"github.com/passerelle/passerelle/soap"
)

// TestSOAPProviderConcurrencyLimit: limits.maxConcurrentPerClient holds on
// the provider side for SOAP as for REST: a client's request beyond the
// limit is refused (TooManyRequests) before it reaches the service.
func TestSOAPProviderConcurrencyLimit(t *testing.T) {
	t.Parallel()
	sb := restSandbox(t)
	arrived := make(chan struct{}, 8)
	release := make(chan struct{})
	held := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		w.Write(body) // echoes the request's headers: an acceptable answer
	}))
	t.Cleanup(held.Close)
	restReconfigure(t, sb, sb.Provider, func(c *securityserver.Config) { c.Limits.MaxConcurrentPerClient = 1 })
	if err := adminOf(t, sb.Provider).AddService(t.Context(), securityserver.ServiceConfig{
		ID: "SANDBOX/GOV/PROVIDER/services/heldSoap", URL: held.URL, Allow: []string{sandbox.ClientID},
		Timeout: securityserver.Duration(5 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	call := func() (*http.Response, []byte) {
		req := envelope(soap.SOAP11, sandboxClient, "heldSoap", uuid.NewString(), `<held xmlns="urn:test"/>`)
		return post(t, sb.Info.ConsumerURL+"/", "text/xml; charset=utf-8", bytes.NewReader(req))
	}
	done := make(chan int)
	go func() {
		resp, _ := call()
		done <- resp.StatusCode
	}()
	select {
	case <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("the first request never reached the service")
	}
	resp, body := call()
	close(release)
	wantFault(t, resp, body, soap.SOAP11, "Server.ServerProxy.TooManyRequests")
	if st := <-done; st != http.StatusOK {
		t.Errorf("the held request ended with %d", st)
	}
	if n := len(arrived); n != 0 {
		t.Errorf("%d request(s) beyond the limit reached the service", n)
	}
}
