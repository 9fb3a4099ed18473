package e2e

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/sandbox"
	"github.com/passerelle/passerelle/securityserver"
	"github.com/passerelle/passerelle/securityserver/messagelog"
)

// The federation is the sandbox's (same instance, members and services), so
// that the sandbox's sample services and SOAP request apply; here every part
// is a process of its own, set up with the CLI.
const (
	registryOrigin = "e2e.passerelle.test/registry"
	serverCode     = sandbox.ServerCode
	fedSigner      = sandbox.Instance + "/GOV/FEDERATION" // the directory signer's CSR subject
)

// federation is what bootstrap made and started.
type federation struct {
	root, logs                          string
	caDir, tsaDir, regDir, dirDir       string
	dirKeys, trust                      string
	ocspURL, tsaURL, regGRPC, regHTTP   string
	dirURL                              string
	ca, tsa, registry, directory        *proc
	provider, consumer                  *institution
	helloURL, getRandomURL              string
	restService, soapService, clientHdr string
}

// institution is one member with its keys, configuration and server.
type institution struct {
	name, member, subsystem string
	dir, keys, config       string
	dataDir, addrFile       string
	tokenFile               string
	srv                     *proc
	addrs                   map[string]string
}

func (in *institution) consumerURL() string { return "http://" + in.addrs["consumer"] }
func (in *institution) adminURL() string    { return "http://" + in.addrs["admin"] }

// TestFederation is the process-level end-to-end test of issue 8.
func TestFederation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole federation of processes; skipped with -short")
	}
	f := bootstrap(t)

	t.Run("rest get", func(t *testing.T) {
		resp, body := call(t, "GET", f.consumer.consumerURL()+"/r1/"+f.restService+"/pets/42?q=1", "", nil, "e2e-get-1")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET = %d %s", resp.StatusCode, body)
		}
		var e sandbox.HelloEcho
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		if e.Method != "GET" || e.Path != "/pets/42" || e.Query != "q=1" || e.Headers["X-Road-Client"] != f.clientHdr {
			t.Errorf("echo = %+v, want GET /pets/42 ?q=1 from %s", e, f.clientHdr)
		}
		if got := resp.Header.Get("X-Road-Id"); got != "e2e-get-1" {
			t.Errorf("X-Road-Id = %q, want e2e-get-1", got)
		}
	})
	t.Run("rest post", func(t *testing.T) {
		in := []byte(`{"name":"Rex","note":"aäõ€"}`)
		resp, body := call(t, "POST", f.consumer.consumerURL()+"/r1/"+f.restService, "application/json", in, "e2e-post-1")
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, in) {
			t.Errorf("POST = %d %q, want 200 %q", resp.StatusCode, body, in)
		}
	})
	t.Run("soap getRandom", func(t *testing.T) {
		resp, body := call(t, "POST", f.consumer.consumerURL()+"/", "text/xml; charset=utf-8", sandbox.GetRandomRequest("e2e-soap-1"), "")
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("getRandomResponse")) {
			t.Errorf("SOAP getRandom = %d %s", resp.StatusCode, body)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	// Traffic, then SIGKILL of the consumer's server in the middle of it.
	acked := killMidTraffic(t, f)

	// Restart on the same configuration: consumer, provider and admin ports
	// change (port 0), so the directory entry is updated and re-signed.
	restart(t, f, f.consumer)
	resp, body := call(t, "GET", f.consumer.consumerURL()+"/r1/"+f.restService+"?after=restart", "", nil, "e2e-after-restart")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET after restart = %d %s", resp.StatusCode, body)
	}

	// Whatever the log held waiting is timestamped and registered after the
	// restart.
	waitDrained(t, f.consumer)
	waitDrained(t, f.provider)

	t.Run("evidence", func(t *testing.T) {
		// The last exchange acknowledged before the kill: the one most at risk.
		for _, id := range []string{"e2e-post-1", "e2e-soap-1", acked[len(acked)-1].id} {
			checkEvidence(t, f, id)
		}
	})

	t.Run("registry audit", func(t *testing.T) {
		state := filepath.Join(f.root, "audit-state")
		vkey := filepath.Join(f.trust, "registry.vkey")
		cli(t, "audit", "registry", "--url", f.regHTTP, "--vkey", vkey, "--state", state)
		out := cli(t, "audit", "registry", "--url", f.regHTTP, "--vkey", vkey, "--state", state, "--full")
		t.Logf("audit registry --full:\n%s", out)
	})

	// Stop both servers cleanly and read their message logs.
	f.consumer.srv.stop(t)
	f.provider.srv.stop(t)
	client, err := pki.ParseClientID(f.clientHdr)
	if err != nil {
		t.Fatal(err)
	}
	checkLogged(t, f, f.consumer, client, acked, "sent request, received response")
	checkLogged(t, f, f.provider, client, acked, "received request, sent response")
}

// bootstrap makes the PKI, the central services, the directory and the two
// institutions with the CLI, and starts every daemon as its own process.
func bootstrap(t *testing.T) *federation {
	t.Helper()
	root := t.TempDir()
	f := &federation{
		root: root, logs: filepath.Join(root, "logs"),
		caDir: filepath.Join(root, "ca"), tsaDir: filepath.Join(root, "tsa"), regDir: filepath.Join(root, "registry"),
		dirDir: filepath.Join(root, "directory"), dirKeys: filepath.Join(root, "directory-keys"), trust: filepath.Join(root, "trust"),
		restService: sandbox.RESTService, soapService: sandbox.SOAPService, clientHdr: sandbox.ClientID,
	}
	for _, d := range []string{f.logs, f.trust} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	addrFile := func(name string) string { return filepath.Join(root, name+".addr.json") }

	// CA. Its OCSP URL goes into every certificate, so the responder runs
	// first; with port 0 the URL is known only once it listens: a second,
	// short-lived `ca serve --ocsp-url` stores it in the CA database (which
	// both processes open per transaction).
	cli(t, "ca", "init", "--dir", f.caDir, "--instance", sandbox.Instance, "--name", "Passerelle E2E Root CA", "--operator", "e2e")
	f.ca = startProc(t, f.logs, "ca", addrFile("ca"), "ca", "serve", "--dir", f.caDir, "--listen", "127.0.0.1:0", "--addr-file", addrFile("ca"))
	f.ocspURL = "http://" + f.ca.addrs(t)["ca"] + "/ocsp"
	setter := startProc(t, f.logs, "ca-set-ocsp-url", addrFile("ca-set"), "ca", "serve", "--dir", f.caDir, "--listen", "127.0.0.1:0",
		"--addr-file", addrFile("ca-set"), "--ocsp-url", f.ocspURL, "--operator", "e2e")
	setter.addrs(t)
	setter.stop(t)
	waitHealthy(t, f.ca, "http://"+f.ca.addrs(t)["ca"]+"/healthz")
	copyFile(t, filepath.Join(f.caDir, "ca.pem"), filepath.Join(f.trust, "ca.pem"))

	// TSA, certified by the CA directly from its folder.
	cli(t, "tsa", "init", "--dir", f.tsaDir, "--ca-dir", f.caDir, "--operator", "e2e")
	writeLeaf(t, filepath.Join(f.tsaDir, "tsa.pem"), filepath.Join(f.trust, "tsa.pem"))
	f.tsa = startProc(t, f.logs, "tsa", addrFile("tsa"), "tsa", "serve", "--dir", f.tsaDir, "--listen", "127.0.0.1:0", "--addr-file", addrFile("tsa"))
	f.tsaURL = "http://" + f.tsa.addrs(t)["tsa"] + "/"

	// Hash registry: note key, TLS certificate for 127.0.0.1.
	cli(t, "registry", "init", "--dir", f.regDir, "--origin", registryOrigin)
	cli(t, "ca", "sign", "--dir", f.caDir, "--csr", filepath.Join(f.regDir, "tls.csr"), "--usage", "registry",
		"--host", "127.0.0.1", "--host", "localhost", "--out", filepath.Join(f.regDir, "tls.pem"), "--operator", "e2e")
	copyFile(t, filepath.Join(f.regDir, "registry.vkey"), filepath.Join(f.trust, "registry.vkey"))
	f.registry = startProc(t, f.logs, "registry", addrFile("registry"), "registry", "serve", "--dir", f.regDir,
		"--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--trust", f.trust, "--addr-file", addrFile("registry"))
	ra := f.registry.addrs(t)
	f.regGRPC, f.regHTTP = ra["grpc"], "http://"+ra["http"]
	waitHealthy(t, f.registry, f.regHTTP+"/healthz")

	// The two institutions' keys, certified by the CA (in real life each
	// institution runs `keys generate` and `keys enroll`).
	f.provider = newInstitution(root, "provider", sandbox.ProviderMember, "services")
	f.consumer = newInstitution(root, "consumer", sandbox.ConsumerMember, "client")
	for _, in := range []*institution{f.provider, f.consumer} {
		for _, usage := range []string{"auth", "sign"} {
			cli(t, "keys", "generate", "--dir", in.keys, "--member", in.member, "--usage", usage)
			args := []string{"ca", "sign", "--dir", f.caDir, "--csr", filepath.Join(in.keys, usage+".csr"), "--member", in.member,
				"--usage", usage, "--out", filepath.Join(in.keys, usage+".pem"), "--operator", "e2e"}
			if usage == "auth" {
				args = append(args, "--host", "127.0.0.1", "--host", "localhost")
			}
			cli(t, args...)
		}
	}
	checkOCSPURL(t, filepath.Join(f.consumer.keys, "sign.pem"), f.ocspURL)

	// The directory: its signer, the members, the central services, a
	// one-second poll interval so that re-signs reach the servers at once.
	cli(t, "keys", "generate", "--dir", f.dirKeys, "--member", fedSigner, "--usage", "directory")
	cli(t, "ca", "sign", "--dir", f.caDir, "--csr", filepath.Join(f.dirKeys, "directory.csr"), "--usage", "directory",
		"--member", fedSigner, "--cn", "Passerelle E2E Directory", "--out", filepath.Join(f.dirKeys, "directory.pem"), "--operator", "e2e")
	writeLeaf(t, filepath.Join(f.dirKeys, "directory.pem"), filepath.Join(f.trust, "directory.pem"))
	cli(t, "directory", "init", "--dir", f.dirDir, "--instance", sandbox.Instance, "--expiry", "2h")
	for _, in := range []*institution{f.provider, f.consumer} {
		cli(t, "directory", "add-member", "--dir", f.dirDir, "--member", in.member, "--name", in.name, "--subsystem", in.subsystem)
	}
	cli(t, "directory", "add-ca", "--dir", f.dirDir, "--cert", filepath.Join(f.caDir, "ca.pem"), "--ocsp", f.ocspURL)
	cli(t, "directory", "add-tsa", "--dir", f.dirDir, "--url", f.tsaURL, "--cert", filepath.Join(f.tsaDir, "tsa.pem"))
	cli(t, "directory", "add-registry", "--dir", f.dirDir, "--name", "e2e", "--grpc", f.regGRPC, "--http", f.regHTTP+"/",
		"--verifier-key", filepath.Join(f.regDir, "registry.vkey"))
	cli(t, "directory", "set", "--dir", f.dirDir, "--poll-interval", "1s", "--timestamp-interval", "1s")
	signDirectory(t, f)
	f.directory = startProc(t, f.logs, "directory", addrFile("directory"), "directory", "serve", "--dir", f.dirDir,
		"--listen", "127.0.0.1:0", "--addr-file", addrFile("directory"))
	f.dirURL = "http://" + f.directory.addrs(t)["directory"] + "/directory"
	waitHealthy(t, f.directory, strings.TrimSuffix(f.dirURL, "/directory")+"/healthz")
	cli(t, "directory", "verify", "--url", f.dirURL, "--trust", f.trust, "--instance", sandbox.Instance)

	// The provider's sample services run in this process.
	hello := httptest.NewServer(sandbox.HelloHandler())
	t.Cleanup(hello.Close)
	getRandom := httptest.NewServer(sandbox.GetRandomHandler())
	t.Cleanup(getRandom.Close)
	f.helloURL, f.getRandomURL = hello.URL, getRandom.URL

	// The security servers start with a directory that does not list them
	// yet: their provider ports are known only once they listen. Then the
	// directory lists them at their bound addresses, re-signed; the servers
	// pick it up at the next poll.
	for _, in := range []*institution{f.provider, f.consumer} {
		writeServerConfig(t, f, in)
		startServer(t, f, in)
	}
	for _, in := range []*institution{f.provider, f.consumer} {
		addServer(t, f, in)
	}
	signDirectory(t, f)
	waitExchange(t, f)
	return f
}

func newInstitution(root, name, member, subsystem string) *institution {
	d := filepath.Join(root, name)
	return &institution{name: name, member: member, subsystem: subsystem, dir: d, keys: filepath.Join(d, "keys"),
		config: filepath.Join(d, "server.yaml"), dataDir: filepath.Join(d, "data"), addrFile: filepath.Join(d, "addrs.json"),
		tokenFile: filepath.Join(d, "admin.token")}
}

func signDirectory(t *testing.T, f *federation) {
	t.Helper()
	cli(t, "directory", "sign", "--dir", f.dirDir, "--key", filepath.Join(f.dirKeys, "directory.key"),
		"--cert", filepath.Join(f.dirKeys, "directory.pem"))
}

func addServer(t *testing.T, f *federation, in *institution) {
	t.Helper()
	cli(t, "directory", "add-server", "--dir", f.dirDir, "--owner", in.member, "--code", serverCode,
		"--address", in.addrs["provider"], "--tls-cert", filepath.Join(in.keys, "auth.pem"), "--subsystem", in.subsystem)
}

// writeServerConfig writes the institution's server.yaml (as an operator
// would from deploy/config/security-server.yaml) and its admin token.
func writeServerConfig(t *testing.T, f *federation, in *institution) {
	t.Helper()
	token := make([]byte, 32)
	for i := range token {
		token[i] = byte(i*7 + len(in.name))
	}
	if err := pki.WriteFileAtomic(in.tokenFile, []byte(hex.EncodeToString(token)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := securityserver.Config{
		Owner: in.member, ServerCode: serverCode,
		// dataDir, unlike the other paths, is not resolved against the
		// configuration file's folder: absolute.
		DataDir:   in.dataDir,
		Keys:      securityserver.KeysConfig{AuthKey: "keys/auth.key", AuthCert: "keys/auth.pem", SignKey: "keys/sign.key", SignCert: "keys/sign.pem"},
		Trust:     f.trust,
		Directory: securityserver.DirectoryConfig{URL: f.dirURL},
		Listen:    securityserver.ListenConfig{Consumer: "127.0.0.1:0", Provider: "127.0.0.1:0", Admin: "127.0.0.1:0"},
		Clients:   []securityserver.ClientConfig{{ID: in.member + "/" + in.subsystem}},
		// Relative to the configuration file.
		AdminTokenFile: "admin.token",
	}
	if in == f.provider {
		allow := []string{f.clientHdr}
		cfg.Services = []securityserver.ServiceConfig{
			{ID: f.restService, URL: f.helloURL, Timeout: securityserver.Duration(10 * time.Second), BodyLogging: securityserver.BodyLoggingFull, Allow: allow},
			{ID: f.soapService, URL: f.getRandomURL, Timeout: securityserver.Duration(10 * time.Second), BodyLogging: securityserver.BodyLoggingFull, Allow: allow},
		}
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFileAtomic(in.config, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// startServer runs `passerelle server` for in and waits until it is healthy.
func startServer(t *testing.T, f *federation, in *institution) {
	t.Helper()
	in.srv = startProc(t, f.logs, in.name, in.addrFile, "server", "--config", in.config, "--addr-file", in.addrFile)
	in.addrs = in.srv.addrs(t)
	waitHealthy(t, in.srv, in.adminURL()+"/healthz")
}

// restart starts in's server again on its configuration; if its provider
// address changed, the directory is updated and re-signed.
func restart(t *testing.T, f *federation, in *institution) {
	t.Helper()
	old := in.addrs["provider"]
	startServer(t, f, in)
	if in.addrs["provider"] != old {
		addServer(t, f, in)
		signDirectory(t, f)
	}
}

// waitExchange waits until a REST call goes through both servers: the
// consumer has polled the directory that lists the provider.
func waitExchange(t *testing.T, f *federation) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		resp, body := call(t, "GET", f.consumer.consumerURL()+"/r1/"+f.restService+"?ready="+strconv.Itoa(i), "", nil, "")
		if resp.StatusCode == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no exchange through the pair after 30 s: %d %s", resp.StatusCode, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// call sends one request to a consumer side and reads the whole answer.
func call(t *testing.T, method, url, contentType string, body []byte, xroadID string) (*http.Response, []byte) {
	t.Helper()
	resp, data, err := send(method, url, contentType, body, xroadID)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp, data
}

var client = &http.Client{Timeout: 20 * time.Second}

func send(method, url, contentType string, body []byte, xroadID string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if strings.Contains(url, "/r1/") {
		req.Header.Set("X-Road-Client", sandbox.ClientID)
		if xroadID != "" {
			req.Header.Set("X-Road-Id", xroadID)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, data, err
}

// exchange is one acknowledged exchange of the traffic loop.
type exchange struct {
	id   string
	soap bool
}

// killMidTraffic runs concurrent REST and SOAP exchanges through the
// consumer's server, SIGKILLs it once enough have been acknowledged (an
// HTTP 200 with the expected body received), and returns those.
func killMidTraffic(t *testing.T, f *federation) []exchange {
	t.Helper()
	const workers, killAfter = 6, 120
	var (
		mu     sync.Mutex
		acked  []exchange
		nAcked atomic.Int64
		failed atomic.Int64 // attempts without a 200: from the kill on
		stop   atomic.Bool
		wg     sync.WaitGroup
	)
	base := f.consumer.consumerURL()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				id := fmt.Sprintf("e2e-load-%d-%d", w, i)
				var (
					resp *http.Response
					body []byte
					err  error
					ok   func([]byte) bool
				)
				switch soap := i%3 == 2; {
				case soap:
					resp, body, err = send("POST", base+"/", "text/xml; charset=utf-8", sandbox.GetRandomRequest(id), "")
					ok = func(b []byte) bool { return bytes.Contains(b, []byte("getRandomResponse")) }
				case i%3 == 1:
					in := []byte(`{"worker":` + strconv.Itoa(w) + `,"i":` + strconv.Itoa(i) + `}`)
					resp, body, err = send("POST", base+"/r1/"+f.restService+"/load", "application/json", in, id)
					ok = func(b []byte) bool { return bytes.Equal(b, in) }
				default:
					resp, body, err = send("GET", base+"/r1/"+f.restService+"/load?i="+strconv.Itoa(i), "", nil, id)
					ok = func(b []byte) bool { return bytes.Contains(b, []byte(`"/load"`)) }
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					if stop.Load() {
						return
					}
					// Errors are expected only once the server is killed.
					time.Sleep(5 * time.Millisecond)
					continue
				}
				if !ok(body) {
					t.Errorf("exchange %s: unexpected body %q", id, body)
					continue
				}
				mu.Lock()
				acked = append(acked, exchange{id: id, soap: i%3 == 2})
				mu.Unlock()
				nAcked.Add(1)
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for nAcked.Load() < killAfter && time.Now().Before(deadline) && !t.Failed() {
		time.Sleep(5 * time.Millisecond)
	}
	f.consumer.srv.kill()
	// The workers see their connections fail; the ones in flight get no 200.
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < killAfter {
		t.Fatalf("only %d exchanges acknowledged in 30 s before the kill, want %d", len(acked), killAfter)
	}
	if failed.Load() == 0 {
		t.Fatal("no exchange failed: the kill did not happen mid-traffic")
	}
	t.Logf("%d exchanges acknowledged before SIGKILL; %d attempts failed from it on", len(acked), failed.Load())
	return acked
}

// waitDrained waits until in's server has timestamped and registered
// everything (its metrics say nothing is waiting).
func waitDrained(t *testing.T, in *institution) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		m := metrics(t, in.adminURL()+"/metrics")
		last = fmt.Sprintf("timestamp_pending=%v registry_backlog=%v", m["passerelle_timestamp_pending"], m["passerelle_registry_backlog"])
		if v, ok := m["passerelle_timestamp_pending"]; ok && v == 0 {
			if v, ok := m["passerelle_registry_backlog"]; ok && v == 0 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: still waiting after 30 s: %s", in.name, last)
}

// metrics reads the unlabelled samples of a Prometheus text exposition.
func metrics(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, body := call(t, "GET", url, "", nil, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", url, resp.StatusCode)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			m[name] = v
		}
	}
	return m
}

// checkEvidence exports exchange id's evidence bundle from the consumer's
// admin API and verifies it offline, both with the CLI. An incomplete bundle
// (evidence not attached yet) is exported again, as the CLI advises: the
// server's queue metrics can read zero a moment before the last timestamp
// is attached in the message log.
func checkEvidence(t *testing.T, f *federation, id string) {
	t.Helper()
	zip := filepath.Join(f.root, "evidence-"+id+".zip")
	deadline := time.Now().Add(15 * time.Second)
	for {
		os.Remove(zip)
		cli(t, "evidence", "export", "--admin-url", f.consumer.adminURL(), "--token-file", f.consumer.tokenFile,
			"--id", id, "--out", zip)
		out, err := tryCLI(t, "audit", "evidence", zip, "--trust", f.trust)
		if err == nil {
			t.Logf("audit evidence %s:\n%s", id, out)
			return
		}
		if !strings.Contains(out, "bundle incomplete") || time.Now().After(deadline) {
			t.Fatalf("passerelle audit evidence %s: %v\n%s", zip, err, out)
		}
		t.Logf("audit evidence %s: incomplete, exporting again: %s", id, strings.TrimSpace(out))
		time.Sleep(200 * time.Millisecond)
	}
}

// checkLogged opens in's message log (its server stopped) and checks that
// every acknowledged exchange has its request and response there, each
// timestamped and registered.
func checkLogged(t *testing.T, f *federation, in *institution, client pki.ClientID, acked []exchange, what string) {
	t.Helper()
	l, err := messagelog.Open(t.Context(), messagelog.Config{Dir: filepath.Join(in.dataDir, "messagelog")})
	if err != nil {
		t.Fatalf("%s: open message log: %v", in.name, err)
	}
	defer l.Close()
	var missing, unstamped, unregistered []string
	var receipt *messagelog.Record
	for _, ex := range acked {
		recs, err := l.ByMessageID(t.Context(), ex.id, client)
		if err != nil {
			t.Fatalf("%s: ByMessageID(%s): %v", in.name, ex.id, err)
		}
		var req, resp bool
		for _, r := range recs {
			switch r.Kind {
			case messagelog.KindRequest:
				req = true
			case messagelog.KindResponse:
				resp = true
			}
			if !r.Timestamped() {
				unstamped = append(unstamped, ex.id+"/"+r.Kind.String())
			}
			if !r.Registered() {
				unregistered = append(unregistered, ex.id+"/"+r.Kind.String())
			} else if receipt == nil {
				receipt = r
			}
		}
		if !req || !resp {
			missing = append(missing, fmt.Sprintf("%s (request %v, response %v)", ex.id, req, resp))
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s: %d of %d acknowledged exchanges not fully in the message log (%s): %v", in.name, len(missing), len(acked), what, missing)
	}
	if len(unstamped) > 0 {
		t.Errorf("%s: %d records not timestamped: %v", in.name, len(unstamped), unstamped)
	}
	if len(unregistered) > 0 {
		t.Errorf("%s: %d records not registered: %v", in.name, len(unregistered), unregistered)
	}
	if receipt == nil {
		return
	}
	// One receipt, checked offline by the auditor's command.
	path := filepath.Join(f.root, in.name+"-receipt.tlog-proof")
	if err := os.WriteFile(path, receipt.Receipt.Proof, 0o644); err != nil {
		t.Fatal(err)
	}
	cli(t, "audit", "receipt", path, "--vkey", filepath.Join(f.trust, "registry.vkey"), "--hash", receipt.Hash.String())
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFileAtomic(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeLeaf writes the first certificate of the PEM chain src to dst.
func writeLeaf(t *testing.T, src, dst string) {
	t.Helper()
	certs, err := pki.LoadCertificates(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFileAtomic(dst, pki.EncodeCertificatesPEM(certs[0]), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkOCSPURL checks that a certificate issued after the OCSP URL was set
// names it.
func checkOCSPURL(t *testing.T, path, want string) {
	t.Helper()
	certs, err := pki.LoadCertificates(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := certs[0].OCSPServer; len(got) != 1 || got[0] != want {
		t.Fatalf("%s names OCSP %v, want [%s]", path, got, want)
	}
}
