package load

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/passerelle/passerelle/sandbox"
)

// Kind is a message shape the bench sends.
type Kind string

// The three message shapes of the exchange benchmark.
const (
	RESTGet  Kind = "REST GET 1 KiB"  // a GET whose JSON answer is about 1 KiB
	RESTPost Kind = "REST POST 1 KiB" // a 1 KiB JSON body, echoed
	SOAP     Kind = "SOAP 1 KiB"      // a getRandom envelope (about 1.2 KiB), unique id each
)

// Kinds lists the message shapes in report order.
var Kinds = []Kind{RESTGet, RESTPost, SOAP}

// Endpoints says where each message shape goes for one system under test.
type Endpoints struct {
	REST string // base URL of the REST service: {REST}/bench?… and {REST}/bench
	SOAP string // URL the SOAP envelope is POSTed to
}

// Sandbox holds what a running sandbox (its sandbox.json and the provider's
// server.yaml) says about where things are.
type Sandbox struct {
	Info     *sandbox.Info
	Pair     Endpoints // through the consumer side
	Backend  Endpoints // the sample services, called directly
	HelloURL string    // the REST backend's base URL
	SOAPURL  string    // the SOAP backend's base URL
}

// LoadSandbox reads DIR/sandbox.json and DIR/provider/server.yaml.
func LoadSandbox(dir string) (*Sandbox, error) {
	info, err := sandbox.LoadInfo(filepath.Join(dir, sandbox.InfoFile))
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "provider", "server.yaml"))
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Services []struct {
			ID  string `yaml:"id"`
			URL string `yaml:"url"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("load: provider server.yaml: %w", err)
	}
	s := &Sandbox{Info: info}
	for _, svc := range cfg.Services {
		switch svc.ID {
		case info.RESTService:
			s.HelloURL = strings.TrimSuffix(svc.URL, "/")
		case info.SOAPService:
			s.SOAPURL = strings.TrimSuffix(svc.URL, "/")
		}
	}
	if s.HelloURL == "" || s.SOAPURL == "" {
		return nil, fmt.Errorf("load: provider server.yaml lacks %s or %s", info.RESTService, info.SOAPService)
	}
	s.Pair = Endpoints{REST: info.ConsumerURL + "/r1/" + info.RESTService, SOAP: info.ConsumerURL + "/"}
	s.Backend = Endpoints{REST: s.HelloURL, SOAP: s.SOAPURL + "/"}
	return s, nil
}

// getPad makes the hello service's echo of a GET about 1 KiB: it repeats
// the raw query in "query" and "args".
var getPad = strings.Repeat("x", 400)

// PostBody is the 1 KiB JSON body of RESTPost.
var PostBody = func() []byte {
	b := []byte(`{"pad":"`)
	b = append(b, bytes.Repeat([]byte("y"), 1024-len(b)-2)...)
	return append(b, `"}`...)
}()

// soapParts is the getRandom request split around its message id.
var soapParts = func() [2][]byte {
	const marker = "LOADGEN-MESSAGE-ID"
	req := sandbox.GetRandomRequest(marker)
	before, after, ok := bytes.Cut(req, []byte(marker))
	if !ok {
		panic("load: sandbox.GetRandomRequest does not carry its id")
	}
	return [2][]byte{before, after}
}()

// SOAPRequest is the getRandom envelope with message id id.
func SOAPRequest(id string) []byte {
	b := make([]byte, 0, len(soapParts[0])+len(id)+len(soapParts[1]))
	b = append(b, soapParts[0]...)
	b = append(b, id...)
	return append(b, soapParts[1]...)
}

// NewRequestFunc returns the request factory of kind k against e; client is
// the X-Road client id sent in X-Road-Client (ignored by direct backends),
// run a prefix making SOAP message ids unique across runs.
func NewRequestFunc(k Kind, e Endpoints, client, run string) func(i uint64) (*http.Request, error) {
	switch k {
	case RESTGet:
		url := e.REST + "/bench?pad=" + getPad
		return func(uint64) (*http.Request, error) {
			r, err := http.NewRequest(http.MethodGet, url, nil)
			if err != nil {
				return nil, err
			}
			r.Header.Set("X-Road-Client", client)
			r.Header.Set("Accept", "application/json")
			return r, nil
		}
	case RESTPost:
		url := e.REST + "/bench"
		return func(uint64) (*http.Request, error) {
			r, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(PostBody))
			if err != nil {
				return nil, err
			}
			r.Header.Set("X-Road-Client", client)
			r.Header.Set("Content-Type", "application/json")
			return r, nil
		}
	case SOAP:
		return func(i uint64) (*http.Request, error) {
			r, err := http.NewRequest(http.MethodPost, e.SOAP, bytes.NewReader(SOAPRequest(fmt.Sprintf("%s-%d", run, i))))
			if err != nil {
				return nil, err
			}
			r.Header.Set("Content-Type", "text/xml; charset=utf-8")
			return r, nil
		}
	}
	return func(uint64) (*http.Request, error) { return nil, fmt.Errorf("load: unknown message kind %q", k) }
}
