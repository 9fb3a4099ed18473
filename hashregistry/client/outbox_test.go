package client

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"

	"github.com/passerelle/passerelle/hashregistry"
	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
)

var member = pki.ClientID{Instance: "EE", Class: "GOV", Member: "70000001"}

func openLog(t testing.TB) (*hashregistry.Log, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "registry.test/outbox")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	l, err := hashregistry.Open(context.Background(), hashregistry.Config{Path: filepath.Join(t.TempDir(), "log.db"), Signer: s, Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, v
}

func item(ref string) Item {
	return Item{Ref: ref, Hash: sha256.Sum256([]byte(ref)), Kind: hashregistry.KindRequest}
}

// flaky fails every Append while down is set.
type flaky struct {
	Appender
	down  atomic.Bool
	calls atomic.Int64
}

func (f *flaky) Append(ctx context.Context, subs []hashregistry.Submission) ([]hashregistry.AppendReceipt, error) {
	f.calls.Add(1)
	if f.down.Load() {
		return nil, errors.New("registry unreachable")
	}
	return f.Appender.Append(ctx, subs)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOutboxSurvivesOutageAndRestart(t *testing.T) {
	l, v := openLog(t)
	app := &flaky{Appender: LogAppender{Log: l, Member: member}}
	app.down.Store(true)
	var mu sync.Mutex
	got := map[string]Receipt{}
	handler := func(ctx context.Context, rs []Receipt) error {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range rs {
			got[r.Ref] = r
		}
		return nil
	}
	path := filepath.Join(t.TempDir(), "outbox.db")
	cfg := OutboxConfig{Path: path, Appender: app, Handler: handler, Verifier: v, BatchSize: 16, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	o, err := OpenOutbox(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := o.Submit(t.Context(), []Item{item(fmt.Sprint("a", i))}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- o.Run(ctx) }()
	waitFor(t, "retries", func() bool { return app.calls.Load() >= 3 })
	if n, oldest := o.Backlog(); n != 50 || oldest.IsZero() {
		t.Fatalf("Backlog() during outage = %d, %v; want 50 and a time", n, oldest)
	}
	cancel()
	<-done
	o.Close()

	// Restart: the backlog is still there, and drains once the registry is back.
	o, err = OpenOutbox(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if n, _ := o.Backlog(); n != 50 {
		t.Fatalf("Backlog() after restart = %d, want 50", n)
	}
	app.down.Store(false)
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	go o.Run(ctx)
	for i := 50; i < 80; i++ {
		if err := o.Submit(t.Context(), []Item{item(fmt.Sprint("a", i))}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "drain", func() bool { n, _ := o.Backlog(); mu.Lock(); defer mu.Unlock(); return n == 0 && len(got) == 80 })
	for ref, r := range got {
		rc, err := hashregistry.VerifyReceipt(r.Proof, v)
		if err != nil {
			t.Fatalf("receipt %s: %v", ref, err)
		}
		if rc.Entry.Hash != item(ref).Hash {
			t.Fatalf("receipt %s is for another hash", ref)
		}
	}
	if l.Size() != 80 {
		t.Fatalf("log size = %d, want 80", l.Size())
	}
}

func TestOutboxConcurrentSubmitsShareCommits(t *testing.T) {
	l, _ := openLog(t)
	o, err := OpenOutbox(OutboxConfig{Path: filepath.Join(t.TempDir(), "outbox.db"), Appender: LogAppender{Log: l, Member: member}})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 20 {
				if err := o.Submit(t.Context(), []Item{item(fmt.Sprint(w, "/", i))}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if n, _ := o.Backlog(); n != 320 {
		t.Fatalf("Backlog() = %d, want 320", n)
	}
}

const (
	envChildDir  = "PASSERELLE_OUTBOX_CHILD_DIR"
	envChildAddr = "PASSERELLE_OUTBOX_CHILD_REGISTRY"
)

// TestOutboxKill9 runs a child process (this test binary) that submits
// items to an outbox draining to a real registry over gRPC and prints each
// acknowledged submission; the parent kills it with SIGKILL mid-stream,
// reopens the outbox and checks that every acknowledged item is in the
// registry or still queued, and that all of them reach the registry.
func TestOutboxKill9(t *testing.T) {
	if dir := os.Getenv(envChildDir); dir != "" {
		outboxChild(t, dir, os.Getenv(envChildAddr))
		return
	}
	l, _ := openLog(t)
	ca := pkitest.NewCA(t, "federation")
	srv, err := hashregistry.NewServer(hashregistry.ServerConfig{Log: l})
	if err != nil {
		t.Fatal(err)
	}
	g := srv.NewGRPCServer(hashregistry.ServerTLSConfig(ca.Issue(t, pki.ClientID{}, pki.UsageRegistry).TLSCertificate(), ca.Pool()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(ln)
	defer g.Stop()

	dir := t.TempDir()
	leaf := ca.Issue(t, member, pki.UsageAuth)
	if err := pki.WritePrivateKey(filepath.Join(dir, "key.pem"), leaf.Key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pki.EncodeCertificatesPEM(leaf.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pki.EncodeCertificatesPEM(ca.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOutboxKill9$", "-test.v")
	cmd.Env = append(os.Environ(), envChildDir+"="+dir, envChildAddr+"="+ln.Addr().String())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := -1
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if n, err := strconv.Atoi(string(sc.Bytes())); err == nil {
			acked = n
			if acked >= 300 && l.Size() > 0 {
				break // mid-stream: submitting and draining both under way
			}
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	cmd.Wait()
	if acked < 0 {
		t.Fatal("child acknowledged nothing")
	}
	t.Logf("killed the child after %d acknowledged submissions; registry held %d entries", acked+1, l.Size())

	inLog := func() map[[32]byte]bool {
		es, err := l.Entries(t.Context(), 0, l.Size())
		if err != nil {
			t.Fatal(err)
		}
		m := map[[32]byte]bool{}
		for _, b := range es {
			e, err := hashregistry.ParseEntry(b)
			if err != nil {
				t.Fatal(err)
			}
			m[e.Hash] = true
		}
		return m
	}
	o, err := OpenOutbox(OutboxConfig{Path: filepath.Join(dir, "outbox.db"), Appender: LogAppender{Log: l, Member: member}})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	queued := map[[32]byte]bool{}
	o.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPending).ForEach(func(k, v []byte) error {
			it, _, err := decodeItem(v)
			queued[it.Hash] = err == nil
			return err
		})
	})
	logged := inLog()
	for i := 0; i <= acked; i++ {
		for j := range childBatch {
			h := item(childRef(i, j)).Hash
			if !logged[h] && !queued[h] {
				t.Fatalf("acknowledged item %s is neither in the registry nor in the outbox", childRef(i, j))
			}
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go o.Run(ctx)
	waitFor(t, "drain after restart", func() bool { n, _ := o.Backlog(); return n == 0 })
	logged = inLog()
	for i := 0; i <= acked; i++ {
		for j := range childBatch {
			if !logged[item(childRef(i, j)).Hash] {
				t.Fatalf("acknowledged item %s never reached the registry", childRef(i, j))
			}
		}
	}
}

const childBatch = 4

func childRef(i, j int) string { return fmt.Sprintf("msg-%d-%d", i, j) }

func outboxChild(t *testing.T, dir, addr string) {
	key, err := pki.LoadPrivateKey(filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.LoadCertificates(filepath.Join(dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := pki.LoadCertificates(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(roots[0])
	c, err := Dial(addr, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: "localhost",
		Certificates: []tls.Certificate{{Certificate: [][]byte{certs[0].Raw}, PrivateKey: key, Leaf: certs[0]}}})
	if err != nil {
		t.Fatal(err)
	}
	o, err := OpenOutbox(OutboxConfig{Path: filepath.Join(dir, "outbox.db"), Appender: c, BatchSize: 64, MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go o.Run(context.Background())
	for i := 0; i < 1_000_000; i++ {
		items := make([]Item, childBatch)
		for j := range items {
			items[j] = item(childRef(i, j))
		}
		if err := o.Submit(context.Background(), items); err != nil {
			t.Fatal(err)
		}
		fmt.Println(i) // acknowledged: durably queued
	}
}

// swapProofs hands back each receipt with the next one's (valid) proof.
type swapProofs struct{ Appender }

func (s swapProofs) Append(ctx context.Context, subs []hashregistry.Submission) ([]hashregistry.AppendReceipt, error) {
	rs, err := s.Appender.Append(ctx, subs)
	if err != nil || len(rs) < 2 {
		return rs, err
	}
	first := rs[0].Proof
	for i := range rs[:len(rs)-1] {
		rs[i].Proof = rs[i+1].Proof
	}
	rs[len(rs)-1].Proof = first
	return rs, nil
}

func TestOutboxRefusesProofOfAnotherEntry(t *testing.T) {
	l, v := openLog(t)
	o, err := OpenOutbox(OutboxConfig{
		Path:     filepath.Join(t.TempDir(), "outbox.db"),
		Appender: swapProofs{LogAppender{Log: l, Member: member}},
		Verifier: v,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Submit(context.Background(), []Item{item("a"), item("b")}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.drainOnce(context.Background()); !errors.Is(err, ErrBadReceipt) {
		t.Fatalf("drainOnce = %v, want ErrBadReceipt", err)
	}
	if n, _ := o.Backlog(); n != 2 {
		t.Fatalf("backlog %d, want the 2 items still queued", n)
	}
}
