package sandbox_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/passerelle/passerelle/hashregistry"
	"github.com/passerelle/passerelle/hashregistry/client"
	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ca"
	"github.com/passerelle/passerelle/pki/directory"
	"github.com/passerelle/passerelle/pki/ocsp"
	"github.com/passerelle/passerelle/sandbox"
	"github.com/passerelle/passerelle/timestamp"
)

func start(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	begin := time.Now()
	sb, err := sandbox.Start(t.Context(), sandbox.Config{Dir: filepath.Join(t.TempDir(), "sb")})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("sandbox started in %v", time.Since(begin))
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return sb
}

func TestInfoFile(t *testing.T) {
	sb := start(t)
	data, err := os.ReadFile(sb.InfoPath)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"version", "consumer_url", "client_id", "rest_service", "soap_service", "admin_url",
		"admin_token_file", "registry_url", "registry_grpc", "registry_vkey", "trust_dir", "tsa_url",
		"ocsp_url", "directory_url"}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sandbox.json keys = %v, want %v", got, want)
	}
	info, err := sandbox.LoadInfo(sb.InfoPath)
	if err != nil {
		t.Fatal(err)
	}
	if *info != sb.Info {
		t.Errorf("LoadInfo = %+v, want %+v", *info, sb.Info)
	}
	for k, want := range map[string]string{"client_id": sandbox.ClientID, "rest_service": sandbox.RESTService, "soap_service": sandbox.SOAPService} {
		if m[k] != want {
			t.Errorf("%s = %v, want %s", k, m[k], want)
		}
	}
	if m["version"] != 1.0 {
		t.Errorf("version = %v, want 1", m["version"])
	}
	fi, err := os.Stat(info.AdminTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("admin token mode = %v, want 0600", fi.Mode().Perm())
	}
	for _, f := range []string{info.RegistryVKey, filepath.Join(info.TrustDir, "ca.pem"), filepath.Join(info.TrustDir, "directory.pem"),
		filepath.Join(info.TrustDir, "registry.vkey"), filepath.Join(info.TrustDir, "tsa.pem"),
		sb.Provider.ConfigPath, sb.Consumer.ConfigPath} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%v", err)
		}
	}
	for _, k := range []string{"auth.key", "sign.key"} {
		fi, err := os.Stat(filepath.Join(string(sb.Consumer.Keys), k))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", k, fi.Mode().Perm())
		}
	}
}

func TestStartRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x"), nil, 0o644)
	if _, err := sandbox.Start(t.Context(), sandbox.Config{Dir: dir}); !errors.Is(err, sandbox.ErrDirNotEmpty) {
		t.Errorf("Start(non-empty dir) = %v, want ErrDirNotEmpty", err)
	}
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestCentralServices(t *testing.T) {
	sb := start(t)
	info := sb.Info
	ctx := t.Context()

	t.Run("healthz", func(t *testing.T) {
		for _, svc := range []*sandbox.Service{sb.CAService, sb.TSA, sb.RegistryHTTP, sb.Directory} {
			if code, body := get(t, svc.URL()+"/healthz"); code != http.StatusOK {
				t.Errorf("%s /healthz = %d %s", svc.Name, code, body)
			}
		}
	})

	t.Run("ocsp", func(t *testing.T) {
		chain := sb.Consumer.SignChain
		resp, err := ocsp.Fetch(ctx, chain[0], chain[1], info.OCSPURL)
		if err != nil {
			t.Fatalf("OCSP for the consumer's sign certificate: %v", err)
		}
		if resp.Status != ocsp.Good {
			t.Errorf("status = %v, want good", resp.Status)
		}
		if url, _ := ocsp.ResponderURL(chain[0]); url != info.OCSPURL {
			t.Errorf("certificate names OCSP %q, want %q", url, info.OCSPURL)
		}
	})

	t.Run("tsa", func(t *testing.T) {
		c, err := timestamp.NewClient(timestamp.ClientConfig{URL: info.TSAURL, Roots: sb.Roots()})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := c.Stamp(ctx, timestamp.Digest([]byte("hello")), crypto.SHA256)
		if err != nil {
			t.Fatalf("Stamp: %v", err)
		}
		if tok == nil {
			t.Fatal("no token")
		}
	})

	t.Run("registry", func(t *testing.T) {
		code, body := get(t, info.RegistryURL+"/checkpoint")
		if code != http.StatusOK {
			t.Fatalf("GET /checkpoint = %d %s", code, body)
		}
		vkey, err := os.ReadFile(info.RegistryVKey)
		if err != nil {
			t.Fatal(err)
		}
		v, err := hashregistry.NewVerifier(vkey)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := hashregistry.OpenCheckpoint(body, v)
		if err != nil {
			t.Fatalf("checkpoint: %v", err)
		}
		// An append over mTLS with the consumer's auth certificate.
		key, err := pki.LoadPrivateKey(sb.Consumer.Keys.KeyPath(pki.UsageAuth))
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Certificate{PrivateKey: key, Leaf: sb.Consumer.AuthChain[0]}
		for _, c := range sb.Consumer.AuthChain {
			tc.Certificate = append(tc.Certificate, c.Raw)
		}
		gc, err := client.Dial(info.RegistryGRPC, &tls.Config{Certificates: []tls.Certificate{tc}, RootCAs: sb.Roots(), MinVersion: tls.VersionTLS13})
		if err != nil {
			t.Fatal(err)
		}
		defer gc.Close()
		rcpts, err := gc.Append(ctx, []hashregistry.Submission{{Hash: sha256.Sum256([]byte("m")), Kind: hashregistry.KindRequest}})
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		r, err := hashregistry.VerifyReceipt(rcpts[0].Proof, v)
		if err != nil {
			t.Fatalf("receipt: %v", err)
		}
		if r.Entry.Member.String() != sandbox.ConsumerMember || r.Index != cp.Size {
			t.Errorf("receipt = member %s index %d, want %s at %d", r.Entry.Member, r.Index, sandbox.ConsumerMember, cp.Size)
		}
	})

	t.Run("directory", func(t *testing.T) {
		signed, err := directory.Fetch(ctx, nil, info.DirectoryURL)
		if err != nil {
			t.Fatal(err)
		}
		v, err := directory.LoadVerifier(info.TrustDir, sandbox.Instance)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := v.Verify(signed)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		for _, in := range []*sandbox.Institution{sb.Provider, sb.Consumer} {
			if !doc.ServesClient(in.Subsystem, pki.Fingerprint(in.AuthChain[0])) {
				t.Errorf("directory: %s not served by its server", in.Subsystem)
			}
			srv, ok := doc.Server(in.Member.String() + "/" + sandbox.ServerCode)
			if !ok || srv.Address != in.ProviderAddr {
				t.Errorf("directory server of %s = %+v, want address %s", in.Member, srv, in.ProviderAddr)
			}
		}
		if len(doc.TSAs) != 1 || len(doc.Registries) != 1 || len(doc.CAs) != 1 {
			t.Errorf("directory lists %d TSAs, %d registries, %d CAs; want 1 each", len(doc.TSAs), len(doc.Registries), len(doc.CAs))
		}
		doc2, err := sb.SignDirectory(nil)
		if err != nil {
			t.Fatal(err)
		}
		if doc2.Serial <= doc.Serial {
			t.Errorf("re-signed serial %d, want > %d", doc2.Serial, doc.Serial)
		}
		signed, _ = directory.Fetch(ctx, nil, info.DirectoryURL)
		if doc3, err := v.Verify(signed); err != nil || doc3.Serial != doc2.Serial {
			t.Errorf("served after re-sign: %v, %v; want serial %d", doc3, err, doc2.Serial)
		}
	})

	t.Run("tsa stop and start", func(t *testing.T) {
		c, _ := timestamp.NewClient(timestamp.ClientConfig{URL: info.TSAURL, Roots: sb.Roots(), HTTPClient: &http.Client{Timeout: 2 * time.Second}})
		sb.TSA.Stop()
		if _, err := c.Stamp(ctx, timestamp.Digest([]byte("x")), crypto.SHA256); !errors.Is(err, timestamp.ErrTSAUnavailable) {
			t.Errorf("Stamp with the TSA down = %v, want ErrTSAUnavailable", err)
		}
		if err := sb.TSA.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Stamp(ctx, timestamp.Digest([]byte("x")), crypto.SHA256); err != nil {
			t.Errorf("Stamp after restart: %v", err)
		}
	})

	t.Run("revoke", func(t *testing.T) {
		chain := sb.Provider.SignChain
		if err := sb.Revoke(ctx, chain[0], ca.ReasonKeyCompromise); err != nil {
			t.Fatal(err)
		}
		_, err := ocsp.Fetch(ctx, chain[0], chain[1], info.OCSPURL)
		if !errors.Is(err, ocsp.ErrRevoked) {
			t.Errorf("OCSP after revocation = %v, want ErrRevoked", err)
		}
	})
}

func TestSampleServicesDirect(t *testing.T) {
	sb := start(t)
	code, body := get(t, sb.Hello.URL()+"/anything?q=1")
	var e sandbox.HelloEcho
	if err := json.Unmarshal(body, &e); err != nil || code != 200 {
		t.Fatalf("hello GET = %d %s (%v)", code, body, err)
	}
	if e.Method != "GET" || e.Path != "/anything" || e.Query != "q=1" {
		t.Errorf("hello GET echo = %+v", e)
	}
	resp, err := http.Post(sb.GetRandom.URL(), "text/xml; charset=utf-8", bytes.NewReader(getRandomQuery))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte("getRandomResponse")) {
		t.Errorf("getRandom = %d %s", resp.StatusCode, b)
	}
}

// TestPortBase starts a sandbox with a port layout (no relays: the
// directory lists the servers' own provider ports) and checks the offsets.
func TestPortBase(t *testing.T) {
	var sb *sandbox.Sandbox
	var err error
	for try := 0; try < 3; try++ {
		base := 20000 + 100*int(time.Now().UnixNano()%300)
		sb, err = sandbox.Start(t.Context(), sandbox.Config{Dir: filepath.Join(t.TempDir(), "sb"), PortBase: base})
		if err == nil {
			defer sb.Close()
			break
		}
		t.Logf("port base %d: %v", base, err)
	}
	if err != nil {
		t.Skipf("no free port layout found: %v", err)
	}
	want := map[string]int{
		sb.Info.ConsumerURL:                  sandbox.OffsetConsumer,
		sb.Info.AdminURL:                     sandbox.OffsetConsumerAdmin,
		"http://" + sb.Provider.ProviderAddr: sandbox.OffsetProviderProvider,
		"http://" + sb.Consumer.ProviderAddr: sandbox.OffsetConsumerProvider,
		sb.Info.TSAURL:                       sandbox.OffsetTSA,
		sb.Info.RegistryURL:                  sandbox.OffsetRegistryHTTP,
		"http://" + sb.Info.RegistryGRPC:     sandbox.OffsetRegistryGRPC,
		sb.Info.DirectoryURL:                 sandbox.OffsetDirectory,
		sb.Hello.URL():                       sandbox.OffsetHello,
		sb.GetRandom.URL():                   sandbox.OffsetGetRandom,
	}
	consumerPort := port(t, sb.Info.ConsumerURL)
	for u, off := range want {
		if got := port(t, u); got != consumerPort+off {
			t.Errorf("%s: port %d, want base %d + %d", u, got, consumerPort, off)
		}
	}
	if sb.Provider.Addrs["provider"] != sb.Provider.ProviderAddr {
		t.Errorf("provider server listens on %s, directory lists %s", sb.Provider.Addrs["provider"], sb.Provider.ProviderAddr)
	}
	resp, body := do(t, "GET", sb.Info.ConsumerURL+"/r1/"+sb.Info.RESTService+"?q=1", "", nil, map[string]string{"X-Road-Client": sb.Info.ClientID})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("REST GET through the layout = %d %s", resp.StatusCode, body)
	}
}

func port(t *testing.T, u string) int {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(pu.Port())
	if err != nil {
		t.Fatalf("%s: %v", u, err)
	}
	return p
}
