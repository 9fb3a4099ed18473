package securityserver_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"gopkg.in/yaml.v3"

	"github.com/passerelle/passerelle/sandbox"
	"github.com/passerelle/passerelle/securityserver"
	"github.com/passerelle/passerelle/soap"
)

const (
	echoService   = "SANDBOX/GOV/PROVIDER/services/echo"
	deniedService = "SANDBOX/GOV/PROVIDER/services/denied"
	testWSDL      = `<?xml version="1.0"?><wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" name="echo"/>`
	largeLimit    = 64 << 20
)

// echoBackend answers a POST with the request itself (same content type,
// same bytes: a SOAP request echoes its own headers) and GET ?wsdl with a
// WSDL. Bodies are spooled to disk, so that memory stays flat.
func echoBackend(t *testing.T) *httptest.Server {
	dir := t.TempDir()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Values("SOAPAction"); len(a) > 0 {
			lastSOAPAction.Store(&a[0])
		}
		if r.Method == http.MethodGet && r.URL.RawQuery == "wsdl" {
			w.Header().Set("Content-Type", "text/xml")
			io.WriteString(w, testWSDL)
			return
		}
		f, err := os.CreateTemp(dir, "echo-*")
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer os.Remove(f.Name())
		defer f.Close()
		n, err := io.Copy(f, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		io.Copy(w, io.NewSectionReader(f, 0, n))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// lastSOAPAction is the SOAPAction header the echo backend last received.
var lastSOAPAction atomic.Pointer[string]

// reconfigure restarts an institution's server with edit applied to its
// configuration.
func reconfigure(t *testing.T, sb *sandbox.Sandbox, in *sandbox.Institution, edit func(*securityserver.Config)) {
	t.Helper()
	data, err := os.ReadFile(in.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	var c securityserver.Config
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	edit(&c)
	if data, err = yaml.Marshal(&c); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in.ConfigPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sb.StopServer(in); err != nil {
		t.Fatal(err)
	}
	if err := sb.RestartServer(t.Context(), in); err != nil {
		t.Fatal(err)
	}
}

// mimeExample reads an X-Road .mime example: its Content-Type header and its
// body (lines ending CRLF), identifiers adapted to the sandbox.
func mimeExample(t *testing.T, name, serviceCode string) (string, []byte) {
	t.Helper()
	data := example(t, name, serviceCode)
	data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	head, body, ok := bytes.Cut(data, []byte("\n\n"))
	if !ok {
		t.Fatalf("%s: no blank line after the transport headers", name)
	}
	head = bytes.ReplaceAll(head, []byte("\n    "), []byte(" ")) // unwrap
	var ct string
	for _, l := range strings.Split(string(head), "\n") {
		if v, ok := strings.CutPrefix(l, "Content-Type: "); ok {
			ct = v
		}
	}
	return ct, bytes.ReplaceAll(body, []byte("\n"), []byte("\r\n"))
}

func TestSOAPAttachmentsAndMetaservices(t *testing.T) {
	sb := startSandbox(t)
	echo := echoBackend(t)
	reconfigure(t, sb, sb.Provider, func(c *securityserver.Config) {
		c.Limits.MaxBodyBytes = largeLimit
		c.Services = append(c.Services,
			securityserver.ServiceConfig{ID: echoService, URL: echo.URL, Timeout: securityserver.Duration(time.Minute),
				BodyLogging: securityserver.BodyLoggingFull, Allow: []string{sandbox.ClientID}},
			securityserver.ServiceConfig{ID: deniedService, URL: echo.URL, Timeout: securityserver.Duration(time.Minute),
				BodyLogging: securityserver.BodyLoggingFull, Allow: []string{"SANDBOX/GOV/SOMEONE/else"}})
	})
	reconfigure(t, sb, sb.Consumer, func(c *securityserver.Config) { c.Limits.MaxBodyBytes = largeLimit })
	url := "http://" + sb.Consumer.Addrs["consumer"] + "/"

	t.Run("examples with attachments", func(t *testing.T) {
		for _, tc := range []struct{ name, file string }{
			{"SwA", "soap-request-swaref-attachment_prmess-annexF.mime"},
			{"MTOM", "soap-request-mtom_prmess-annexG.mime"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ct, req := mimeExample(t, tc.file, "echo")
				resp, body := post(t, url, ct, bytes.NewReader(req))
				wantResponse(t, resp, body, req, ct)
				in, err := soap.ReadMessage(ct, bytes.NewReader(req), soap.Limits{}, nil)
				if err != nil {
					t.Fatal(err)
				}
				out, err := soap.ReadMessage(resp.Header.Get("Content-Type"), bytes.NewReader(body), soap.Limits{}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(in.Attachments) == 0 || len(out.Attachments) != len(in.Attachments) {
					t.Fatalf("attachments: sent %d, got back %d", len(in.Attachments), len(out.Attachments))
				}
				for i := range in.Attachments {
					if !bytes.Equal(in.Attachments[i].SHA256, out.Attachments[i].SHA256) || in.Attachments[i].ContentID != out.Attachments[i].ContentID {
						t.Errorf("attachment %d: got %+v, want %+v", i, out.Attachments[i], in.Attachments[i])
					}
				}
				if out.MTOM != in.MTOM {
					t.Errorf("MTOM = %v, want %v", out.MTOM, in.MTOM)
				}
			})
		}
	})

	t.Run("SOAPAction reaches the service", func(t *testing.T) {
		const action = `"urn:passerelle:test#echo"`
		req := envelope(soap.SOAP11, sandboxClient, "echo", uuid.NewString(), `<echo/>`)
		resp, body := post(t, url, "text/xml", bytes.NewReader(req), "SOAPAction", action)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if got := lastSOAPAction.Load(); got == nil || *got != action {
			t.Fatalf("the service saw SOAPAction %v, want %s", got, action)
		}
	})

	t.Run("access denied", func(t *testing.T) {
		req := envelope(soap.SOAP11, sandboxClient, "denied", uuid.NewString(), `<denied/>`)
		resp, body := post(t, url, "text/xml", bytes.NewReader(req))
		wantFault(t, resp, body, soap.SOAP11, "Server.ServerProxy.AccessDenied")
	})

	t.Run("metaservices", func(t *testing.T) {
		for _, tc := range []struct {
			code, body string
			want       []string
			notWant    []string
		}{
			{"listMethods", `<xrd:listMethods/>`, []string{"getRandom", "echo", "denied"}, nil},
			{"allowedMethods", `<xrd:allowedMethods/>`, []string{"getRandom", "echo"}, []string{"denied"}},
		} {
			t.Run(tc.code, func(t *testing.T) {
				req := envelope(soap.SOAP11, sandboxClient, tc.code, uuid.NewString(), tc.body)
				resp, body := post(t, url, "text/xml", bytes.NewReader(req))
				env := wantResponse(t, resp, body, req, "text/xml")
				if env.Operation().Local != tc.code+"Response" {
					t.Errorf("operation = %v", env.Operation())
				}
				for _, w := range tc.want {
					if !bytes.Contains(body, []byte("<id:serviceCode>"+w+"</id:serviceCode>")) {
						t.Errorf("%s lacks %s:\n%s", tc.code, w, body)
					}
				}
				for _, w := range tc.notWant {
					if bytes.Contains(body, []byte("<id:serviceCode>"+w+"</id:serviceCode>")) {
						t.Errorf("%s lists %s:\n%s", tc.code, w, body)
					}
				}
			})
		}
		t.Run("getWsdl", func(t *testing.T) {
			req := envelope(soap.SOAP11, sandboxClient, "getWsdl", uuid.NewString(), `<xrd:getWsdl><xrd:serviceCode>echo</xrd:serviceCode></xrd:getWsdl>`)
			resp, body := post(t, url, "text/xml", bytes.NewReader(req))
			wantResponse(t, resp, body, req, "text/xml")
			_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
			mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
			if _, err := mr.NextPart(); err != nil {
				t.Fatal(err)
			}
			p, err := mr.NextPart()
			if err != nil {
				t.Fatalf("no WSDL attachment: %v", err)
			}
			if got, _ := io.ReadAll(p); string(got) != testWSDL {
				t.Errorf("WSDL = %q, want %q", got, testWSDL)
			}
		})
		t.Run("getWsdl denied", func(t *testing.T) {
			req := envelope(soap.SOAP11, sandboxClient, "getWsdl", uuid.NewString(), `<xrd:getWsdl><xrd:serviceCode>denied</xrd:serviceCode></xrd:getWsdl>`)
			resp, body := post(t, url, "text/xml", bytes.NewReader(req))
			wantFault(t, resp, body, soap.SOAP11, "Server.ServerProxy.AccessDenied")
		})
	})

	t.Run("large attachment streams", func(t *testing.T) {
		const size = 50 << 20
		req := envelope(soap.SOAP11, sandboxClient, "echo", uuid.NewString(), `<echo/>`)
		boundary := "large-boundary"
		ct := mime.FormatMediaType("multipart/related", map[string]string{"type": "text/xml", "boundary": boundary})
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		sum := sha256.New() // computed here: the writer goroutine has no happens-before edge with the check
		for n := 0; n < size; n += len(chunk) {
			sum.Write(chunk)
		}
		pr, pw := io.Pipe()
		go func() {
			mw := multipart.NewWriter(pw)
			mw.SetBoundary(boundary)
			p, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/xml; charset=utf-8"}})
			p.Write(req)
			p, _ = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/octet-stream"}, "Content-Id": {"<big>"}})
			for n := 0; n < size; n += len(chunk) {
				if _, err := p.Write(chunk); err != nil {
					pw.CloseWithError(err)
					return
				}
			}
			pw.CloseWithError(mw.Close())
		}()

		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		var peak atomic.Uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			var m runtime.MemStats
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
			}
		}()

		hreq, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, pr)
		if err != nil {
			t.Fatal(err)
		}
		hreq.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		var got []soap.AttachmentDigest
		dir := t.TempDir()
		msg, err := soap.ReadMessage(resp.Header.Get("Content-Type"), resp.Body, soap.Limits{}, func(int, textproto.MIMEHeader) (io.WriteCloser, error) {
			return os.Create(filepath.Join(dir, "att"))
		})
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		got = msg.Attachments
		if len(got) != 1 || got[0].Size != size || !bytes.Equal(got[0].SHA256, sum.Sum(nil)) {
			t.Fatalf("attachment back: %+v, want %d bytes with the digest sent", got, size)
		}
		grew := int64(peak.Load()) - int64(base.HeapInuse)
		t.Logf("heap in use grew by at most %d MiB for a %d MiB attachment through two servers", grew>>20, size>>20)
		if grew > size/2 {
			t.Errorf("heap grew by %d MiB: the attachment is held in memory", grew>>20)
		}
	})
}
