package securityserver_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/passerelle/passerelle/rest"
	"github.com/passerelle/passerelle/sandbox"
)

// TestRESTEdges covers what sits around row 1: hop-by-hop headers, repeated
// X-Road-Client, bodies spooled to disk and over the limit, HEAD, path dot
// segments, and concurrent exchanges.
func TestRESTEdges(t *testing.T) {
	t.Parallel()
	sb := restSandbox(t)
	withTestServices(t, sb)

	mirror := func(t *testing.T, method, resource string, hdr http.Header, body []byte) (*http.Response, mirrorEcho) {
		t.Helper()
		resp, b := callREST(t, sb, method, mirrorService, resource, hdr, body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s = %d %s %s", method, resource, resp.StatusCode, resp.Header.Get(rest.HeaderError), b)
		}
		var e mirrorEcho
		if method != http.MethodHead {
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("%v: %.200s", err, b)
			}
		}
		return resp, e
	}

	t.Run("hop-by-hop headers stripped", func(t *testing.T) {
		_, e := mirror(t, "GET", "/h", http.Header{"Connection": {"X-Hop"}, "X-Hop": {"secret"}, "Keep-Alive": {"timeout=5"},
			"Proxy-Authorization": {"Basic eDp5"}, "Te": {"trailers"}, "X-End": {"kept"}}, nil)
		for _, h := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization", "Te"} {
			if v := e.Header.Get(h); v != "" {
				t.Errorf("the service got hop-by-hop %s: %q", h, v)
			}
		}
		if e.Header.Get("X-End") != "kept" {
			t.Errorf("end-to-end X-End lost: %v", e.Header)
		}
	})

	t.Run("last X-Road-Client counts", func(t *testing.T) {
		_, e := mirror(t, "GET", "/c", http.Header{rest.HeaderClient: {"SANDBOX/GOV/PROVIDER/services", sandbox.ClientID}}, nil)
		if got := e.Header.Values(rest.HeaderClient); len(got) != 1 || got[0] != sandbox.ClientID {
			t.Errorf("the service got X-Road-Client %q, want only %s", got, sandbox.ClientID)
		}
	})

	t.Run("body spooled to disk", func(t *testing.T) {
		big := bytes.Repeat([]byte("passerelle-0123456789-"), (3<<20)/22) // ~3 MiB, above the 1 MiB memory spool
		_, e := mirror(t, "POST", "/big", http.Header{"Content-Type": {"application/octet-stream"}}, big)
		if !bytes.Equal(e.Body, big) {
			t.Errorf("the service got %d bytes, want the %d sent", len(e.Body), len(big))
		}
	})

	t.Run("body over the limit", func(t *testing.T) {
		huge := make([]byte, 10<<20+1)
		resp, b := callREST(t, sb, "POST", mirrorService, "/huge", http.Header{"Content-Type": {"application/octet-stream"}}, huge)
		wantXRoadError(t, resp, b, http.StatusRequestEntityTooLarge, "Client.RequestTooLarge")
	})

	t.Run("HEAD", func(t *testing.T) {
		resp, _ := mirror(t, "HEAD", "/head", nil, nil)
		wantXRoadResponseHeaders(t, resp, mirrorService)
	})

	t.Run("concurrent exchanges", func(t *testing.T) {
		const n = 24
		var wg sync.WaitGroup
		errs := make(chan string, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("conc-%d-%s", i, uuid.NewString())
				body := []byte(strings.Repeat(id, 10))
				resp, b := callREST(t, sb, "POST", sandbox.RESTService, "/c", http.Header{rest.HeaderID: {id}, "Content-Type": {"text/plain"}}, body)
				if resp.StatusCode != http.StatusOK || !bytes.Equal(b, body) || resp.Header.Get(rest.HeaderID) != id {
					errs <- fmt.Sprintf("%s: %d %s", id, resp.StatusCode, b)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})

	t.Run("same X-Road-Id twice", func(t *testing.T) {
		// A client retrying with the same X-Road-Id: each attempt is a new
		// signed message of the consumer's server, not a replay (the
		// provider keys replays on the signed message's digest).
		id := "retry-" + uuid.NewString()
		for i := range 2 {
			resp, b := callREST(t, sb, "GET", sandbox.RESTService, "/retry", http.Header{rest.HeaderID: {id}}, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("attempt %d: %d %s %s", i+1, resp.StatusCode, resp.Header.Get(rest.HeaderError), b)
			}
		}
		if recs := exchangeRecords(t, sb.Provider, id); len(recs) != 4 {
			t.Errorf("provider logged %d records for two exchanges, want 4", len(recs))
		}
	})

	t.Run("dot segments in the resource path", func(t *testing.T) {
		// A resource path must not climb out of the service's base URL: a
		// backend (or a reverse proxy before it) that normalises
		// /base/../admin serves /admin. Refusing is the safe answer.
		for _, p := range []string{"/../escape", "/a/../../escape", "/%2e%2e/escape", "/.%2E/escape"} {
			t.Run(p, func(t *testing.T) {
				resp, b := callREST(t, sb, "GET", mirrorService, p, nil, nil)
				if resp.StatusCode == http.StatusOK {
					var e mirrorEcho
					json.Unmarshal(b, &e)
					t.Fatalf("the dot segments reached the service as %q; want 400 Client.BadRequest", e.Path)
				}
				wantXRoadError(t, resp, b, http.StatusBadRequest, "Client.BadRequest")
			})
		}
	})
}
