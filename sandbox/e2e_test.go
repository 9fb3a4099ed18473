package sandbox_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/passerelle/passerelle/sandbox"
)

func do(t *testing.T, method, url, contentType string, body []byte, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestExchange is the first end-to-end test of the product: a client
// system's requests through the consumer's security server, the provider's
// security server, to the sample services, and back.
func TestExchange(t *testing.T) {
	sb := start(t)
	info := sb.Info
	xroad := map[string]string{"X-Road-Client": info.ClientID}
	service := info.ConsumerURL + "/r1/" + info.RESTService

	getTests := []struct {
		name, resource, query, wantPath string
	}{
		{"service root", "", "q=1", "/"},
		{"resource path", "/anything", "q=1", "/anything"},
		{"nested path and query", "/pets/42/photos", "size=large&q=%C3%A4", "/pets/42/photos"},
	}
	for _, tt := range getTests {
		t.Run("rest get "+tt.name, func(t *testing.T) {
			resp, body := do(t, "GET", service+tt.resource+"?"+tt.query, "", nil, xroad)
			if tt.resource != "" {
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET = %d %s\n%s", resp.StatusCode, resp.Header, body)
			}
			var e sandbox.HelloEcho
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if e.Method != "GET" || e.Path != tt.wantPath || e.Query != tt.query || e.Headers["X-Road-Client"] != info.ClientID {
				t.Errorf("echo = %+v, want GET %s ?%s", e, tt.wantPath, tt.query)
			}
			for _, h := range []string{"X-Road-Id", "X-Road-Request-Hash", "X-Road-Client", "X-Road-Service"} {
				if resp.Header.Get(h) == "" {
					t.Errorf("response lacks %s", h)
				}
			}
		})
	}

	postTests := []struct {
		name, resource, contentType string
		body                        []byte
	}{
		{"json utf-8", "", "application/json", []byte(`{"name":"Rex","note":"aäõ€"}`)},
		{"binary", "", "application/octet-stream", []byte{0, 1, 2, 0xfe, 0xff}},
		{"json with resource path", "/pets", "application/json", []byte(`{"name":"Rex"}`)},
	}
	for _, tt := range postTests {
		t.Run("rest post "+tt.name, func(t *testing.T) {
			resp, body := do(t, "POST", service+tt.resource, tt.contentType, tt.body, xroad)
			if tt.resource != "" {
			}
			if resp.StatusCode != http.StatusOK || !bytes.Equal(body, tt.body) {
				t.Errorf("POST = %d %q, want 200 %q", resp.StatusCode, body, tt.body)
			}
		})
	}

	t.Run("rest refused without X-Road-Client", func(t *testing.T) {
		resp, body := do(t, "GET", service, "", nil, nil)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Road-Error") == "" {
			t.Errorf("GET without X-Road-Client = %d %s, want 400 with X-Road-Error", resp.StatusCode, body)
		}
	})

	t.Run("soap getRandom", func(t *testing.T) {
		resp, body := do(t, "POST", info.ConsumerURL+"/", "text/xml; charset=utf-8", getRandomQuery, nil)
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("getRandomResponse")) {
			t.Errorf("SOAP getRandom = %d %s", resp.StatusCode, body)
		}
	})
}

// TestRestartProviderServer stops the provider's security server and starts
// it again: with port base 0 it comes back on a new port behind the same
// relay, which the directory lists, and the exchange works again.
func TestRestartProviderServer(t *testing.T) {
	sb := start(t)
	url := sb.Info.ConsumerURL + "/r1/" + sb.Info.RESTService + "?q=1"
	xroad := map[string]string{"X-Road-Client": sb.Info.ClientID}
	if resp, body := do(t, "GET", url, "", nil, xroad); resp.StatusCode != http.StatusOK {
		t.Fatalf("before: %d %s", resp.StatusCode, body)
	}
	if err := sb.StopServer(sb.Provider); err != nil {
		t.Fatalf("StopServer: %v", err)
	}
	if sb.Provider.Server() != nil {
		t.Error("Server() of a stopped server is not nil")
	}
	if resp, body := do(t, "GET", url, "", nil, xroad); resp.StatusCode == http.StatusOK {
		t.Errorf("with the provider's server down: %d %s, want an error", resp.StatusCode, body)
	}
	if err := sb.RestartServer(t.Context(), sb.Provider); err != nil {
		t.Fatalf("RestartServer: %v", err)
	}
	if resp, body := do(t, "GET", url, "", nil, xroad); resp.StatusCode != http.StatusOK {
		t.Errorf("after restart: %d %s", resp.StatusCode, body)
	}
}
