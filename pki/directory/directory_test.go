package directory

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
)

// fixture is a federation: a CA, the operator's directory signer, two
// members with a security server each, and a draft listing them.
type fixture struct {
	ca      *pkitest.CA
	signer  *pkitest.Leaf
	srvA    *pkitest.Leaf
	srvB    *pkitest.Leaf
	tsa     *pkitest.Leaf
	draft   *Draft
	now     time.Time
	memberA pki.ClientID
	memberB pki.ClientID
}

func mustID(t testing.TB, s string) pki.ClientID {
	t.Helper()
	id, err := pki.ParseClientID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		ca:      pkitest.NewCA(t, "Federation root"),
		now:     time.Now().UTC().Truncate(time.Second),
		memberA: mustID(t, "PAS/GOV/1001"),
		memberB: mustID(t, "PAS/COM/2002"),
	}
	operator := mustID(t, "PAS/GOV/0001")
	f.signer = f.ca.Issue(t, operator, pki.UsageDirectory)
	f.srvA = f.ca.Issue(t, f.memberA, pki.UsageAuth)
	f.srvB = f.ca.Issue(t, f.memberB, pki.UsageAuth)
	f.tsa = f.ca.Issue(t, operator, pki.UsageTSA)
	d, err := NewDraft("PAS", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, vkey, err := note.GenerateKey(rand.Reader, "registry.passerelle.test")
	if err != nil {
		t.Fatal(err)
	}
	steps := []error{
		d.AddMember(f.memberA, "Ministry A", "registry"),
		d.AddMember(f.memberB, "Company B"),
		d.AddServer(f.memberA, "ss1", "127.0.0.1:5500", f.srvA.Cert, "registry"),
		d.AddServer(f.memberB, "ss1", "ss-b.example:5500", f.srvB.Cert, "portal", "PAS/GOV/1001/registry"),
		d.AddCA("", f.ca.Cert, "http://127.0.0.1:8888/ocsp"),
		d.AddTSA("tsa", "http://127.0.0.1:3180/", f.tsa.Cert),
		d.AddRegistry(Registry{Name: "main", GRPCAddress: "127.0.0.1:7000", HTTPURL: "http://127.0.0.1:7001/", VerifierKey: vkey}),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("draft step %d: %v", i, err)
		}
	}
	f.draft = d
	return f
}

func (f *fixture) verifier() *Verifier {
	return &Verifier{Roots: f.ca.Pool(), Instance: "PAS", Now: func() time.Time { return f.now }}
}

// sign signs the draft (bumping its serial) at f.now.
func (f *fixture) sign(t testing.TB) []byte {
	t.Helper()
	signed, _, err := f.draft.Sign(f.signer.Key, f.signer.Chain, f.now, 0)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func TestSignVerifyRoundTrip(t *testing.T) {
	for _, alg := range []pki.KeyAlgorithm{pki.ECDSAP256, pki.RSA2048} {
		t.Run(string(alg), func(t *testing.T) {
			f := newFixture(t)
			f.signer = f.ca.Issue(t, pki.ClientID{}, pki.UsageDirectory, pkitest.WithKey(alg))
			signed := f.sign(t)
			d, err := f.verifier().Verify(signed)
			if err != nil {
				t.Fatalf("Verify = %v", err)
			}
			if d.Serial != 1 || d.Instance != "PAS" || len(d.Members) != 2 || len(d.Servers) != 2 {
				t.Errorf("Verify = serial %d instance %q %d members %d servers, want 1 PAS 2 2", d.Serial, d.Instance, len(d.Members), len(d.Servers))
			}
			if got, want := d.ExpiresAt.Sub(d.IssuedAt), 24*time.Hour; got != want {
				t.Errorf("validity = %v, want %v", got, want)
			}
			if d.Params != DefaultParams() {
				t.Errorf("params = %+v, want defaults", d.Params)
			}
		})
	}
}

func TestSignRefusesWrongUsage(t *testing.T) {
	f := newFixture(t)
	auth := f.ca.Issue(t, f.memberA, pki.UsageAuth)
	if _, _, err := f.draft.Sign(auth.Key, auth.Chain, f.now, 0); !errors.Is(err, ErrUntrustedSigner) {
		t.Errorf("Sign with an auth certificate = %v, want ErrUntrustedSigner", err)
	}
	if _, _, err := f.draft.Sign(f.srvA.Key, f.signer.Chain, f.now, 0); err == nil {
		t.Error("Sign with a key that does not match the certificate succeeded")
	}
}

// resign signs payload with leaf, bypassing Sign's checks, to forge what an
// attacker (or a careless operator) might produce.
func resign(t *testing.T, payload string, leaf *pkitest.Leaf, typ string) []byte {
	t.Helper()
	d, err := ParseDocument([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	// Sign checks the usage; go below it for certificates that lack it.
	signed, err := signJWS(d, leaf.Key, leaf.Chain, typ)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func segments(t *testing.T, signed []byte) (hdr, payload, sig string) {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(string(signed)), ".")
	if len(parts) != 3 {
		t.Fatalf("not compact: %d parts", len(parts))
	}
	return parts[0], parts[1], parts[2]
}

func TestVerifyRefuses(t *testing.T) {
	f := newFixture(t)
	good := f.sign(t)
	hdr, payload, sig := segments(t, good)
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	tampered := strings.Replace(string(raw), "127.0.0.1:5500", "203.0.113.9:5500", 1)
	otherCA := pkitest.NewCA(t, "Rogue root")
	rogue := otherCA.Issue(t, pki.ClientID{}, pki.UsageDirectory)
	member := f.ca.Issue(t, f.memberA, pki.UsageSign) // same key usage as directory
	expiredSigner := f.ca.Issue(t, pki.ClientID{}, pki.UsageDirectory, pkitest.WithValidity(f.now.Add(-48*time.Hour), f.now.Add(-time.Hour)))

	later := *f.verifier()
	later.Now = func() time.Time { return f.now.Add(25 * time.Hour) }
	earlier := *f.verifier()
	earlier.Now = func() time.Time { return f.now.Add(-time.Hour) }
	pinned := *f.verifier()
	pinned.Signers = append(pinned.Signers, f.signer.Cert)
	otherInstance := *f.verifier()
	otherInstance.Instance = "EE"

	tests := []struct {
		name   string
		signed []byte
		v      *Verifier
		want   error
	}{
		{"tampered payload", []byte(hdr + "." + base64.RawURLEncoding.EncodeToString([]byte(tampered)) + "." + sig), f.verifier(), ErrBadSignature},
		{"tampered signature", []byte(hdr + "." + payload + "." + sig[:10] + flip(sig[10]) + sig[11:]), f.verifier(), ErrBadSignature},
		{"signature removed", []byte(hdr + "." + payload + "."), f.verifier(), ErrMalformed},
		{"not a JWS", []byte("{}"), f.verifier(), ErrMalformed},
		{"auth certificate", resign(t, string(raw), f.srvA, JWSType), f.verifier(), ErrUntrustedSigner},
		{"TSA certificate", resign(t, string(raw), f.tsa, JWSType), f.verifier(), ErrUntrustedSigner},
		{"member signing certificate, pinned", resign(t, string(raw), member, JWSType), &pinned, ErrUntrustedSigner},
		{"another CA", resign(t, string(raw), rogue, JWSType), f.verifier(), ErrUntrustedSigner},
		{"expired signer certificate", resign(t, string(raw), expiredSigner, JWSType), f.verifier(), ErrUntrustedSigner},
		{"wrong typ", resign(t, string(raw), f.signer, "JWT"), f.verifier(), ErrMalformed},
		{"expired", good, &later, ErrExpired},
		{"issued in the future", good, &earlier, ErrNotYetValid},
		{"wrong instance", good, &otherInstance, ErrWrongInstance},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.v.Verify(tt.signed)
			if !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := pinned.Verify(good); err != nil {
		t.Errorf("pinned Verify(good) = %v", err)
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestLookups(t *testing.T) {
	f := newFixture(t)
	d, err := f.verifier().Verify(f.sign(t))
	if err != nil {
		t.Fatal(err)
	}
	fpA, fpB := pki.Fingerprint(f.srvA.Cert), pki.Fingerprint(f.srvB.Cert)
	registry := mustID(t, "PAS/GOV/1001/registry")
	portal := mustID(t, "PAS/COM/2002/portal")

	t.Run("ServersFor", func(t *testing.T) {
		got := d.ServersFor(registry)
		if len(got) != 2 || got[0].ID() != "PAS/GOV/1001/ss1" || got[1].ID() != "PAS/COM/2002/ss1" {
			t.Errorf("ServersFor(%s) = %+v, want A's and B's ss1", registry, got)
		}
		if got := d.ServersFor(portal); len(got) != 1 || got[0].Address != "ss-b.example:5500" || got[0].TLSCertSHA256 != fpB {
			t.Errorf("ServersFor(%s) = %+v", portal, got)
		}
		if got := d.ServersFor(mustID(t, "PAS/GOV/1001/nope")); got != nil {
			t.Errorf("ServersFor(unknown) = %+v, want none", got)
		}
	})
	t.Run("Member", func(t *testing.T) {
		m, ok := d.Member(f.memberA)
		if !ok || m.Name != "Ministry A" {
			t.Errorf("Member(%s) = %+v, %v", f.memberA, m, ok)
		}
		if _, ok := d.Member(mustID(t, "PAS/GOV/9999")); ok {
			t.Error("Member(unknown) found")
		}
		if !d.HasClient(portal) || d.HasClient(mustID(t, "PAS/COM/2002/other")) {
			t.Error("HasClient wrong")
		}
	})
	t.Run("server binding", func(t *testing.T) {
		tests := []struct {
			client pki.ClientID
			fp     string
			want   bool
		}{
			{f.memberA, fpA, true},
			{f.memberA, fpB, false},
			{registry, fpA, true},
			{registry, fpB, true}, // B hosts A's subsystem
			{portal, fpA, false},
			{portal, fpB, true},
			{f.memberB, strings.ToUpper(fpB), true},
		}
		for _, tt := range tests {
			if got := d.ServesClient(tt.client, tt.fp); got != tt.want {
				t.Errorf("ServesClient(%s, %.8s) = %v, want %v", tt.client, tt.fp, got, tt.want)
			}
		}
		if !d.IsServerOf(f.memberA, fpA) || d.IsServerOf(f.memberB, fpA) {
			t.Error("IsServerOf wrong")
		}
	})
	t.Run("trust", func(t *testing.T) {
		if _, err := f.srvA.Cert.Verify(x509VerifyOptions(d)); err != nil {
			t.Errorf("member cert does not verify against RootPool: %v", err)
		}
		if got := d.OCSPURLs(f.ca.Cert); len(got) != 1 || got[0] != "http://127.0.0.1:8888/ocsp" {
			t.Errorf("OCSPURLs = %v", got)
		}
		if len(d.TSAs) != 1 || !d.TSAs[0].Cert().Equal(f.tsa.Cert) {
			t.Errorf("TSAs = %+v", d.TSAs)
		}
		if _, err := d.Registries[0].Verifier(); err != nil {
			t.Errorf("registry verifier: %v", err)
		}
		if got := d.Params.ReplayWindow(); got != 300*time.Second {
			t.Errorf("ReplayWindow = %v", got)
		}
	})
}

func TestDraftRefusesInconsistency(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		do   func(d *Draft) error
	}{
		{"member of another instance", func(d *Draft) error { return d.AddMember(mustID(t, "EE/GOV/1"), "") }},
		{"server of unknown owner", func(d *Draft) error {
			return d.AddServer(mustID(t, "PAS/GOV/404"), "ss", "h:1", f.srvA.Cert)
		}},
		{"bad address", func(d *Draft) error { return d.AddServer(f.memberA, "ss2", "nohost", f.srvA.Cert) }},
		{"hosting an unknown subsystem", func(d *Draft) error {
			return d.AddServer(f.memberA, "ss3", "h:1", f.srvA.Cert, "PAS/COM/2002/none")
		}},
		{"bad registry key", func(d *Draft) error {
			return d.AddRegistry(Registry{Name: "x", GRPCAddress: "h:1", HTTPURL: "http://h/", VerifierKey: "nope"})
		}},
		{"leaf as CA", func(d *Draft) error { return d.AddCA("", f.srvA.Cert) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(f.draft); !errors.Is(err, ErrInvalid) && !errors.Is(err, pki.ErrBadIdentifier) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
			if err := f.draft.validateBody(); err != nil {
				t.Errorf("draft left inconsistent: %v", err)
			}
		})
	}
}

func x509VerifyOptions(d *Document) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: d.RootPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
}

func TestLoadVerifier(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	if _, err := LoadVerifier(dir, "PAS"); err == nil {
		t.Error("LoadVerifier(empty dir) succeeded")
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(TrustCAFile, pki.EncodeCertificatesPEM(f.ca.Cert))
	if _, err := LoadVerifier(dir, "PAS"); err == nil {
		t.Error("LoadVerifier without directory.pem succeeded, want the pin required")
	}
	write(TrustSignerFile, pki.EncodeCertificatesPEM(f.signer.Cert))
	v, err := LoadVerifier(dir, "PAS")
	if err != nil {
		t.Fatal(err)
	}
	v.Now = func() time.Time { return f.now }
	if _, err := v.Verify(f.sign(t)); err != nil {
		t.Errorf("Verify = %v", err)
	}
	other := f.ca.Issue(t, pki.ClientID{}, pki.UsageDirectory)
	signed, _, err := f.draft.Sign(other.Key, other.Chain, f.now, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(signed); !errors.Is(err, ErrUntrustedSigner) {
		t.Errorf("Verify(unpinned signer) = %v, want ErrUntrustedSigner", err)
	}
}
