package securityserver

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
)

// TestJWKSCacheIssuerDown: once the refresh period has passed while the
// issuer is unreachable, the cache keeps serving the last good key set and
// tries the issuer again at most every jwksMinRefetch, not on every request
// (each attempt holds the cache's lock for up to its 10 s timeout, so every
// token-authenticated request would queue behind it).
func TestJWKSCacheIssuerDown(t *testing.T) {
	var hits atomic.Int32
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}`))
	}))
	t.Cleanup(srv.Close)

	c := newJWKSCache(srv.URL, time.Nanosecond) // every get is past the refresh period
	if _, err := c.get(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	for i := range 5 {
		set, err := c.get(t.Context(), i%2 == 1)
		if err != nil || set == nil || set.Len() != 1 {
			t.Fatalf("get %d with the issuer down: %v, %v; want the last good set", i, set, err)
		}
	}
	if n := hits.Load(); n > 2 {
		t.Errorf("the issuer was asked %d times (1 fetch, then at most 1 retry per %s), want at most 2", n, jwksMinRefetch)
	}
	if c.mayRefetch() {
		t.Errorf("mayRefetch right after a failed fetch, want false for %s", jwksMinRefetch)
	}
}

// TestInternalTLSKeyMode: the HTTPS consumer side's key is refused when its
// file is readable by group or others, like every other private key the
// server loads.
func TestInternalTLSKeyMode(t *testing.T) {
	dir := t.TempDir()
	leaf := pkitest.NewCA(t, "Internal TLS CA").Issue(t, pki.ClientID{}, pki.UsageAuth)
	keyPath, certPath := filepath.Join(dir, "internal.key"), filepath.Join(dir, "internal.pem")
	if err := pki.WritePrivateKey(keyPath, leaf.Key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pki.EncodeCertificatesPEM(leaf.Chain...), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: &Config{Keys: KeysConfig{InternalTLSKey: keyPath, InternalTLSCert: certPath}}}
	conf, err := s.consumerServerTLS()
	if err != nil {
		t.Fatalf("key file 0600: %v", err)
	}
	if len(conf.Certificates) != 1 || !conf.Certificates[0].Leaf.Equal(leaf.Cert) {
		t.Fatalf("certificates = %v", conf.Certificates)
	}
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.consumerServerTLS(); err == nil {
		t.Fatal("a world-readable internal TLS key was accepted")
	}
}
