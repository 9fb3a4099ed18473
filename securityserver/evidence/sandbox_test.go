package evidence_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/sandbox"
	"github.com/passerelle/passerelle/securityserver/evidence"
	"github.com/passerelle/passerelle/securityserver/messagelog"
)

// fixture is one sandbox shared by the tests of this package, with one REST
// GET, one REST POST and one SOAP exchange, all timestamped and registered,
// and their bundles exported through the admin API.
type fixture struct {
	sb      *sandbox.Sandbox
	token   string
	trust   *evidence.Trust
	bundles map[string][]byte // "rest-get", "rest-post", "soap"
	ids     map[string]string
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
	fixDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fix != nil {
		fix.sb.Close()
	}
	if fixDir != "" {
		os.RemoveAll(fixDir)
	}
	os.Exit(code)
}

func getFixture(t testing.TB) *fixture {
	t.Helper()
	fixOnce.Do(func() { fix, fixErr = newFixture() })
	if fixErr != nil {
		t.Fatalf("sandbox fixture: %v", fixErr)
	}
	return fix
}

func newFixture() (*fixture, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var err error
	if fixDir, err = os.MkdirTemp("", "evidence-test-"); err != nil {
		return nil, err
	}
	sb, err := sandbox.Start(ctx, sandbox.Config{Dir: fixDir + "/sb"})
	if err != nil {
		return nil, err
	}
	f := &fixture{sb: sb, bundles: map[string][]byte{}, ids: map[string]string{}}
	tok, err := os.ReadFile(sb.Info.AdminTokenFile)
	if err != nil {
		return f, err
	}
	f.token = strings.TrimSpace(string(tok))
	if f.trust, err = evidence.LoadTrust(sb.TrustDir); err != nil {
		return f, err
	}
	info := sb.Info
	calls := []struct {
		name, method, url, ct string
		body                  []byte
		soap                  bool
	}{
		{"rest-get", "GET", info.ConsumerURL + "/r1/" + info.RESTService + "/anything?q=1", "", nil, false},
		{"rest-post", "POST", info.ConsumerURL + "/r1/" + info.RESTService + "/pets", "application/json", []byte(`{"name":"Rex"}`), false},
		{"soap", "POST", info.ConsumerURL + "/", "text/xml; charset=utf-8", nil, true},
		// getRandom refuses attachments with a fault: the request, with its
		// attachment, is logged all the same.
		{"soap-attachment", "POST", info.ConsumerURL + "/", `multipart/related; type="text/xml"; boundary=b0undary`, nil, true},
	}
	for _, c := range calls {
		id := uuid.NewString()
		f.ids[c.name] = id
		body := c.body
		if c.soap {
			body = sandbox.GetRandomRequest(id)
		}
		if c.name == "soap-attachment" {
			body = []byte("--b0undary\r\nContent-Type: text/xml; charset=utf-8\r\n\r\n" + string(body) +
				"\r\n--b0undary\r\nContent-Type: application/octet-stream\r\nContent-ID: <att1>\r\n\r\n" + attachment +
				"\r\n--b0undary--\r\n")
		}
		req, _ := http.NewRequestWithContext(ctx, c.method, c.url, bytes.NewReader(body))
		if c.ct != "" {
			req.Header.Set("Content-Type", c.ct)
		}
		if !c.soap {
			req.Header.Set("X-Road-Client", info.ClientID)
			req.Header.Set("X-Road-Id", id)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return f, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && c.name != "soap-attachment" {
			return f, &httpError{c.name, resp.Status, string(b)}
		}
	}
	client, _ := pki.ParseClientID(info.ClientID)
	for name, id := range f.ids {
		if err := waitComplete(ctx, sb.Consumer.Server().Log(), id, client); err != nil {
			return f, err
		}
		var buf bytes.Buffer
		if _, err := evidence.Fetch(ctx, nil, info.AdminURL, f.token, id, pki.ClientID{}, &buf); err != nil {
			return f, err
		}
		f.bundles[name] = buf.Bytes()
	}
	return f, nil
}

// attachment is the SOAP attachment of the "soap-attachment" exchange.
const attachment = "attached bytes, signed by digest"

type httpError struct{ name, status, body string }

func (e *httpError) Error() string { return e.name + ": " + e.status + ": " + e.body }

// waitComplete waits until every record of the exchange is timestamped and
// registered.
func waitComplete(ctx context.Context, l *messagelog.Log, id string, client pki.ClientID) error {
	for {
		recs, err := l.ByMessageID(ctx, id, client)
		if err != nil {
			return err
		}
		done := len(recs) >= 1
		for _, r := range recs {
			done = done && r.Timestamped() && r.Registered()
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestVerifySandboxBundles(t *testing.T) {
	f := getFixture(t)
	for name, b := range f.bundles {
		t.Run(name, func(t *testing.T) {
			rep, err := evidence.Verify(bytes.NewReader(b), int64(len(b)), f.trust)
			for _, c := range rep.Checks {
				t.Log(c)
			}
			if err != nil {
				t.Fatalf("Verify = %v", err)
			}
		})
	}
}

func TestSOAPAttachmentBody(t *testing.T) {
	f := getFixture(t)
	b := f.bundles["soap-attachment"]
	rep, err := evidence.Verify(bytes.NewReader(b), int64(len(b)), f.trust)
	for _, c := range rep.Checks {
		t.Log(c)
	}
	if err != nil {
		t.Fatalf("Verify = %v", err)
	}
	found := false
	for _, c := range rep.Checks {
		if c.Subject == "request" && c.Name == "body" && strings.Contains(c.Detail, "1 attachments") {
			found = true
		}
	}
	if !found {
		t.Error("no request body check over 1 attachment")
	}

	files, m := unpack(t, b)
	name := fileOf(m, evidence.Request, evidence.RoleRequestBody)
	files[name] = bytes.Replace(files[name], []byte("signed"), []byte("forged"), 1)
	b = repack(t, files, m, true)
	rep, err = evidence.Verify(bytes.NewReader(b), int64(len(b)), f.trust)
	if !errors.Is(err, evidence.ErrVerification) {
		t.Fatalf("Verify of a changed attachment = %v", err)
	}
	for _, c := range rep.Failed() {
		t.Log(c)
	}
}
