package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/passerelle/passerelle/internal/daemon"
	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/directory"
	"github.com/passerelle/passerelle/pki/pkitest"
)

func runDirectory(t *testing.T, ctx context.Context, args ...string) (string, error) {
	t.Helper()
	cmd := newDirectoryCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDirectoryCLI walks the operator's path of docs/directory.md: init,
// add members, a server, a CA, a TSA, a registry, set a parameter, sign,
// verify, serve; a security server's poller follows a new sign.
func TestDirectoryCLI(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "fed")
	ca := pkitest.NewCA(t, "Federation root")
	signer := ca.Issue(t, pki.ClientID{}, pki.UsageDirectory)
	member, _ := pki.ParseMemberID("PAS/GOV/1001")
	srv := ca.Issue(t, member, pki.UsageAuth)
	tsa := ca.Issue(t, pki.ClientID{}, pki.UsageTSA)
	keyFile := filepath.Join(tmp, "directory.key")
	if err := pki.WritePrivateKey(keyFile, signer.Key); err != nil {
		t.Fatal(err)
	}
	certFile := writeFile(t, filepath.Join(tmp, "directory.pem"), pki.EncodeCertificatesPEM(signer.Chain...))
	caFile := writeFile(t, filepath.Join(tmp, "ca.pem"), pki.EncodeCertificatesPEM(ca.Cert))
	srvFile := writeFile(t, filepath.Join(tmp, "ss1.pem"), pki.EncodeCertificatesPEM(srv.Cert))
	tsaFile := writeFile(t, filepath.Join(tmp, "tsa.pem"), pki.EncodeCertificatesPEM(tsa.Cert))
	_, vkey, err := note.GenerateKey(rand.Reader, "registry")
	if err != nil {
		t.Fatal(err)
	}
	vkeyFile := writeFile(t, filepath.Join(tmp, "registry.vkey"), []byte(vkey+"\n"))
	ctx := t.Context()

	steps := [][]string{
		{"init", "--dir", dir, "--instance", "PAS", "--expiry", "12h"},
		{"add-member", "--dir", dir, "--member", "PAS/GOV/1001", "--name", "Ministry", "--subsystem", "registry"},
		{"add-server", "--dir", dir, "--owner", "PAS/GOV/1001", "--code", "ss1", "--address", "127.0.0.1:5500", "--tls-cert", srvFile, "--subsystem", "registry"},
		{"add-ca", "--dir", dir, "--cert", caFile, "--ocsp", "http://127.0.0.1:8888/ocsp"},
		{"add-tsa", "--dir", dir, "--url", "http://127.0.0.1:3180/", "--cert", tsaFile},
		{"add-registry", "--dir", dir, "--name", "main", "--grpc", "127.0.0.1:7000", "--http", "http://127.0.0.1:7001/", "--verifier-key", vkeyFile},
		{"set", "--dir", dir, "--replay-window", "2m", "--poll-interval", "30s"},
		{"sign", "--dir", dir, "--key", keyFile, "--cert", certFile},
	}
	for _, args := range steps {
		if out, err := runDirectory(t, ctx, args...); err != nil {
			t.Fatalf("directory %s = %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	out, err := runDirectory(t, ctx, "verify", "--file", filepath.Join(dir, directory.SignedFile), "--ca", caFile, "--signer", certFile, "--instance", "PAS")
	if err != nil || !strings.Contains(out, "serial 1") || !strings.Contains(out, "1 servers") {
		t.Fatalf("verify = %v\n%s", err, out)
	}
	trust := filepath.Join(tmp, "trust")
	if err := os.Mkdir(trust, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(trust, directory.TrustCAFile), pki.EncodeCertificatesPEM(ca.Cert))
	writeFile(t, filepath.Join(trust, directory.TrustSignerFile), pki.EncodeCertificatesPEM(signer.Cert))
	if out, err := runDirectory(t, ctx, "verify", "--file", filepath.Join(dir, directory.SignedFile), "--trust", trust); err != nil {
		t.Fatalf("verify --trust = %v\n%s", err, out)
	}
	writeFile(t, filepath.Join(trust, directory.TrustSignerFile), pki.EncodeCertificatesPEM(srv.Cert))
	if _, err := runDirectory(t, ctx, "verify", "--file", filepath.Join(dir, directory.SignedFile), "--trust", trust); err == nil {
		t.Error("verify with another pinned signer succeeded")
	}
	if _, err := runDirectory(t, ctx, "set", "--dir", dir, "--replay-window", "1500ms"); err == nil {
		t.Error("set --replay-window 1500ms succeeded, want an error")
	}
	if _, err := runDirectory(t, ctx, "add-server", "--dir", dir, "--owner", "PAS/GOV/404", "--code", "x", "--address", "h:1", "--tls-cert", srvFile); err == nil {
		t.Error("add-server with an unknown owner succeeded")
	}
	if _, err := runDirectory(t, ctx, "sign", "--dir", dir, "--key", keyFile, "--cert", srvFile); err == nil {
		t.Error("sign with a certificate that does not match the key succeeded")
	}

	addrFile := filepath.Join(tmp, "addr.json")
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		_, err := runDirectory(t, sctx, "serve", "--dir", dir, "--listen", "127.0.0.1:0", "--addr-file", addrFile)
		served <- err
	}()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve = %v", err)
		}
	}()
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("serve wrote no address file")
		}
		if m, err := daemon.ReadAddrFile(addrFile); err == nil {
			addr = m["directory"]
		}
	}

	p, err := directory.NewPoller(directory.PollerConfig{
		Source:    directory.HTTPSource{URL: "http://" + addr + "/directory"},
		Verifier:  &directory.Verifier{Roots: ca.Pool(), Signers: signer.Chain[:1], Instance: "PAS"},
		StatePath: filepath.Join(tmp, "server-state.json"),
	})
	if err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 2; want++ {
		if err := p.Refresh(ctx); err != nil {
			t.Fatalf("Refresh = %v", err)
		}
		d, err := p.Current()
		if err != nil || d.Serial != want {
			t.Fatalf("Current = %v, %v; want serial %d", d, err, want)
		}
		if d.Params.ReplayWindow() != 2*time.Minute || p.Interval() != 30*time.Second {
			t.Errorf("params = %+v", d.Params)
		}
		if _, err := runDirectory(t, ctx, "sign", "--dir", dir, "--key", keyFile, "--cert", certFile); err != nil {
			t.Fatal(err)
		}
	}
}
