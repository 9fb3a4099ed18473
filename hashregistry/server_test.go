package hashregistry

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
	pb "github.com/passerelle/passerelle/proto/hashregistry/v1"
)

// testRegistry is a real registry on loopback: gRPC with mTLS and the HTTP
// tile API.
type testRegistry struct {
	log     *Log
	ca      *pkitest.CA
	grpc    string
	httpURL string
	keys    testKeys
}

func startRegistry(t testing.TB, path string, k testKeys, opts ...func(*Config)) *testRegistry {
	t.Helper()
	return startRegistryWith(t, path, k, pkitest.NewCA(t, "test federation"), nil, opts...)
}

// startRegistryWith starts a registry whose members chain to ca, with check
// as ServerConfig.CheckChain.
func startRegistryWith(t testing.TB, path string, k testKeys, ca *pkitest.CA, check func(context.Context, []*x509.Certificate) error, opts ...func(*Config)) *testRegistry {
	t.Helper()
	cfg := Config{Path: path, Signer: k.signer, Verifier: k.verifier}
	for _, o := range opts {
		o(&cfg)
	}
	l, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srvCert := ca.Issue(t, pki.ClientID{}, pki.UsageRegistry)
	s, err := NewServer(ServerConfig{Log: l, CheckChain: check})
	if err != nil {
		t.Fatal(err)
	}
	g := s.NewGRPCServer(ServerTLSConfig(srvCert.TLSCertificate(), ca.Pool()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(ln)
	mux := http.NewServeMux()
	s.Handle(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		g.Stop()
		hs.Close()
		l.Close()
	})
	return &testRegistry{log: l, ca: ca, grpc: ln.Addr().String(), httpURL: hs.URL, keys: k}
}

func (r *testRegistry) dial(t testing.TB, certs ...tls.Certificate) pb.HashRegistryClient {
	t.Helper()
	conf := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: r.ca.Pool(), Certificates: certs, ServerName: "localhost"}
	cc, err := grpc.NewClient(r.grpc, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pb.NewHashRegistryClient(cc)
}

func pbSubs(from, n int) *pb.AppendRequest {
	req := &pb.AppendRequest{}
	for i := range n {
		s := sub(from + i)
		req.Submissions = append(req.Submissions, &pb.Submission{MessageHash: s.Hash[:], Kind: pb.Kind(s.Kind)})
	}
	return req
}

func TestGRPCAppendAndRead(t *testing.T) {
	k := newTestKeys(t, testOrigin)
	r := startRegistry(t, filepath.Join(t.TempDir(), "log.db"), k)
	member := pki.ClientID{Instance: "EE", Class: "COM", Member: "12345"}
	c := r.dial(t, r.ca.Issue(t, member, pki.UsageAuth).TLSCertificate())
	ctx := t.Context()
	resp, err := c.Append(ctx, pbSubs(0, 10))
	if err != nil {
		t.Fatal(err)
	}
	for i, rc := range resp.Receipts {
		got, err := VerifyReceipt(rc.Proof, k.verifier)
		if err != nil {
			t.Fatalf("receipt %d: %v", i, err)
		}
		if got.Entry.Member != member {
			t.Fatalf("receipt %d member = %s, want %s (from the certificate)", i, got.Entry.Member, member)
		}
	}
	cp, err := c.GetCheckpoint(ctx, &pb.GetCheckpointRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := OpenCheckpoint(cp.Checkpoint, k.verifier); err != nil || c.Size != 10 {
		t.Fatalf("GetCheckpoint = %+v, %v; want size 10", c, err)
	}
	leaf := sha256.Sum256(append([]byte{0}, resp.Receipts[4].Entry...))
	ip, err := c.GetInclusionProof(ctx, &pb.GetInclusionProofRequest{Leaf: &pb.GetInclusionProofRequest_LeafHash{LeafHash: leaf[:]}})
	if err != nil || ip.Index != 4 {
		t.Fatalf("GetInclusionProof(leaf 4) = %v, %v", ip, err)
	}
	if _, err := c.GetConsistencyProof(ctx, &pb.GetConsistencyProofRequest{OldSize: 3, NewSize: 10}); err != nil {
		t.Fatal(err)
	}
	es, err := c.GetEntries(ctx, &pb.GetEntriesRequest{Start: 8, Count: 100})
	if err != nil || len(es.Entries) != 2 {
		t.Fatalf("GetEntries(8, 100) = %d entries, %v; want 2", len(es.GetEntries()), err)
	}
	_, err = c.GetInclusionProof(ctx, &pb.GetInclusionProofRequest{Leaf: &pb.GetInclusionProofRequest_Index{Index: 99}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("GetInclusionProof(99) code = %v, want NotFound", status.Code(err))
	}
	_, err = c.Append(ctx, &pb.AppendRequest{Submissions: []*pb.Submission{{MessageHash: []byte("short"), Kind: pb.Kind_KIND_REQUEST}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Append(short hash) code = %v, want InvalidArgument", status.Code(err))
	}
}

func TestAppendRequiresMemberCertificate(t *testing.T) {
	k := newTestKeys(t, testOrigin)
	r := startRegistry(t, filepath.Join(t.TempDir(), "log.db"), k)
	other := pkitest.NewCA(t, "someone else")
	tests := []struct {
		name  string
		certs []tls.Certificate
		want  codes.Code
	}{
		{"no client certificate", nil, codes.Unauthenticated},
		{"certificate without member", []tls.Certificate{r.ca.Issue(t, pki.ClientID{}, pki.UsageAuth).TLSCertificate()}, codes.PermissionDenied},
		// The client offers no certificate the server's CA list accepts.
		{"certificate from another CA", []tls.Certificate{other.Issue(t, testMember, pki.UsageAuth).TLSCertificate()}, codes.Unauthenticated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := r.dial(t, tc.certs...)
			_, err := c.Append(t.Context(), pbSubs(0, 1))
			if got := status.Code(err); got != tc.want {
				t.Fatalf("Append code = %v (%v), want %v", got, err, tc.want)
			}
		})
	}
	if got := r.log.Size(); got != 0 {
		t.Fatalf("log size after refused appends = %d, want 0", got)
	}
}

func TestHTTPTiles(t *testing.T) {
	k := newTestKeys(t, testOrigin)
	r := startRegistry(t, filepath.Join(t.TempDir(), "log.db"), k)
	appendN(t, r.log, 0, 300)
	tests := []struct {
		path string
		want int
	}{
		{"/checkpoint", http.StatusOK},
		{"/tile/0/000", http.StatusOK},
		{"/tile/0/001.p/44", http.StatusOK},
		{"/tile/0/001", http.StatusNotFound},
		{"/tile/1/000.p/1", http.StatusOK},
		{"/tile/entries/000", http.StatusOK},
		{"/tile/entries/001.p/44", http.StatusOK},
		{"/tile/0/1", http.StatusBadRequest},
		{"/tile/0/x000/001", http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := http.Get(r.httpURL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("GET %s = %d, want %d", tc.path, resp.StatusCode, tc.want)
			}
		})
	}
}

func TestAuditorConsistencyAndFull(t *testing.T) {
	k := newTestKeys(t, testOrigin)
	r := startRegistry(t, filepath.Join(t.TempDir(), "log.db"), k)
	a := &Auditor{URL: r.httpURL, Verifier: k.verifier, StateDir: t.TempDir()}
	ctx := t.Context()
	rep, err := a.Audit(ctx, false)
	if err != nil || rep.Previous != nil || rep.Checkpoint.Size != 0 {
		t.Fatalf("first audit = %+v, %v", rep, err)
	}
	for _, n := range []int{1, 255, 2, 600, 1} {
		appendN(t, r.log, int(r.log.Size()), n)
		rep, err := a.Audit(ctx, true)
		if err != nil {
			t.Fatalf("audit at size %d: %v", r.log.Size(), err)
		}
		if rep.EntriesChecked != r.log.Size() || rep.Previous == nil {
			t.Fatalf("audit at size %d = %+v", r.log.Size(), rep)
		}
	}
}

// rewriteStore plays an operator who rewrites the log and re-signs it with
// the log's own key: it replaces the file at path by a log holding entries.
func rewriteStore(t *testing.T, path string, k testKeys, mutate func([][]byte) [][]byte) {
	t.Helper()
	l, err := Open(t.Context(), Config{Path: path, Signer: k.signer, Verifier: k.verifier})
	if err != nil {
		t.Fatal(err)
	}
	es, err := l.Entries(t.Context(), 0, l.Size())
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	es = mutate(es)
	tmp := path + ".new"
	nl, err := Open(t.Context(), Config{Path: tmp, Signer: k.signer, Verifier: k.verifier})
	if err != nil {
		t.Fatal(err)
	}
	req := &appendReq{entries: es, done: make(chan appendResult, 1)}
	nl.commit([]*appendReq{req})
	if res := <-req.done; res.err != nil {
		t.Fatal(res.err)
	}
	nl.Close()
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestAuditorDetectsRewrittenLog(t *testing.T) {
	k := newTestKeys(t, testOrigin)
	flip := func(i int) func([][]byte) [][]byte {
		return func(es [][]byte) [][]byte { es[i][20] ^= 1; return es }
	}
	tests := []struct {
		name   string
		mutate func([][]byte) [][]byte
		extra  int // entries appended after the rewrite
	}{
		{"changed hash, same size", flip(10), 0},
		{"changed hash, then grown", flip(10), 5},
		{"truncated", func(es [][]byte) [][]byte { return es[:len(es)-3] }, 0},
		{"truncated, then regrown past", func(es [][]byte) [][]byte { return es[:len(es)-3] }, 10},
		{"reordered", func(es [][]byte) [][]byte { es[3], es[4] = es[4], es[3]; return es }, 0},
		{"reordered, then grown", func(es [][]byte) [][]byte { es[3], es[4] = es[4], es[3]; return es }, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log.db")
			state := t.TempDir()
			r := startRegistry(t, path, k)
			appendN(t, r.log, 0, 40)
			a := &Auditor{URL: r.httpURL, Verifier: k.verifier, StateDir: state}
			if _, err := a.Audit(t.Context(), true); err != nil {
				t.Fatal(err)
			}
			r.log.Close()
			rewriteStore(t, path, k, tc.mutate)
			r2 := startRegistry(t, path, k) // the rewritten store is self-consistent: it starts
			appendN(t, r2.log, 1000, tc.extra)
			a.URL = r2.httpURL
			rep, err := a.Audit(t.Context(), false)
			if !errors.Is(err, ErrFork) {
				t.Fatalf("Audit after %s: err = %v, want ErrFork", tc.name, err)
			}
			if rep.ForkEvidence == "" {
				t.Fatalf("no fork evidence written")
			}
		})
	}
}

func TestAuditorFullDetectsTamperedStore(t *testing.T) {
	k := newTestKeys(t, testOrigin)
	for _, tc := range tamperings[:4] {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log.db")
			l := openTestLog(t, path, k)
			appendN(t, l, 0, 300)
			l.Close()
			tamper(t, path, tc.f)
			r := startRegistry(t, path, k, func(c *Config) { c.skipVerify = true })
			a := &Auditor{URL: r.httpURL, Verifier: k.verifier, StateDir: t.TempDir()}
			_, err := a.Audit(t.Context(), true)
			if err == nil {
				t.Fatalf("full audit of a store with %s passed", tc.name)
			}
			t.Logf("%s: %v", tc.name, err)
		})
	}
}
