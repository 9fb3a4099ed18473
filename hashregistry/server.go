package hashregistry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/verify"
	pb "github.com/passerelle/passerelle/proto/hashregistry/v1"
)

// Errors of the server's member authentication.
var (
	// ErrNoClientCert: the call carried no verified TLS client certificate.
	ErrNoClientCert = errors.New("hashregistry: no verified client certificate")
	// ErrNotMember: the client certificate binds no member, or was refused
	// (revoked, expired, wrong usage).
	ErrNotMember = errors.New("hashregistry: client certificate is not an enrolled member's")
	// ErrStatusUnavailable: the submitter's revocation status could not be
	// established (OCSP responder unreachable, no fresh response). The
	// append is refused, fail closed, but may be retried.
	ErrStatusUnavailable = errors.New("hashregistry: revocation status of the client certificate unavailable")
)

// ChainVerifier validates a submitter's certificate chain, including its
// revocation status, and returns the member it binds. *verify.Verifier (of
// pki/verify, configured with an OCSP client) is the implementation; it
// must be safe for concurrent use and should cache, so that an append does
// not cost an OCSP query.
type ChainVerifier interface {
	Verify(ctx context.Context, chain []*x509.Certificate, ocspDER []byte, usage pki.Usage) (pki.ClientID, error)
}

// CheckRevocation returns a ServerConfig.CheckChain that refuses an append
// unless v accepts the chain as a member's TLS certificate (pki.UsageAuth)
// that is not revoked. v fetches the leaf's OCSP response itself (members
// do not staple one to gRPC calls); an unreachable responder or a stale
// response is ErrStatusUnavailable, a revoked or otherwise refused
// certificate any other error (which the server reports as ErrNotMember).
func CheckRevocation(v ChainVerifier) func(ctx context.Context, chain []*x509.Certificate) error {
	return func(ctx context.Context, chain []*x509.Certificate) error {
		_, err := v.Verify(ctx, chain, nil, pki.UsageAuth)
		if errors.Is(err, verify.ErrStaleOCSP) {
			return fmt.Errorf("%w: %w", ErrStatusUnavailable, err)
		}
		return err
	}
}

// MaxEntriesPerRead bounds GetEntries.
const MaxEntriesPerRead = 1024

// ServerConfig configures NewServer.
type ServerConfig struct {
	Log    *Log
	Logger *slog.Logger
	// CheckChain, when set, is called with the verified client chain (leaf
	// first) before an append, to check revocation (CheckRevocation); an
	// error refuses the append. The TLS layer has already verified the
	// chain against the trust roots. A real registry always sets it.
	CheckChain func(ctx context.Context, chain []*x509.Certificate) error
}

// Server serves the log over gRPC (passerelle.hashregistry.v1) and the C2SP
// tlog-tiles HTTP read API. It is safe for concurrent use.
type Server struct {
	pb.UnimplementedHashRegistryServer
	cfg ServerConfig
}

// NewServer returns a server for cfg.Log.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Log == nil {
		return nil, fmt.Errorf("%w: ServerConfig.Log is nil", ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg}, nil
}

// ServerTLSConfig is the registry's gRPC TLS configuration: TLS 1.3 only,
// client certificates verified against roots when given. Append refuses
// calls without one; reads do not need one.
func ServerTLSConfig(cert tls.Certificate, roots *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    roots,
	}
}

// NewGRPCServer returns a gRPC server over tlsConf with the error
// interceptor and s registered.
func (s *Server) NewGRPCServer(tlsConf *tls.Config) *grpc.Server {
	g := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsConf)),
		grpc.UnaryInterceptor(s.errorInterceptor),
		grpc.MaxRecvMsgSize(8<<20),
	)
	pb.RegisterHashRegistryServer(g, s)
	return g
}

// errorInterceptor is the one place errors reach the gRPC wire: a safe
// public message per cause; the internal cause is logged.
func (s *Server) errorInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if err == nil {
		return resp, nil
	}
	if _, ok := status.FromError(err); ok {
		return nil, err
	}
	var code codes.Code
	var msg string
	switch {
	case errors.Is(err, ErrNoClientCert):
		code, msg = codes.Unauthenticated, "a member's TLS client certificate is required"
	case errors.Is(err, ErrStatusUnavailable):
		code, msg = codes.Unavailable, "the client certificate's revocation status is unavailable; retry later"
	case errors.Is(err, ErrNotMember):
		code, msg = codes.PermissionDenied, "the client certificate is not an enrolled member's"
	case errors.Is(err, ErrInvalid):
		code, msg = codes.InvalidArgument, "invalid request"
	case errors.Is(err, ErrNotFound):
		code, msg = codes.NotFound, "not found"
	case errors.Is(err, ErrClosed):
		code, msg = codes.Unavailable, "registry shutting down"
	case errors.Is(err, context.Canceled):
		code, msg = codes.Canceled, "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		code, msg = codes.DeadlineExceeded, "deadline exceeded"
	default:
		code, msg = codes.Internal, "internal error"
	}
	lvl := slog.LevelInfo
	if code == codes.Internal {
		lvl = slog.LevelError
	}
	s.cfg.Logger.Log(ctx, lvl, "rpc failed", "method", info.FullMethod, "code", code.String(), "err", err.Error())
	return nil, status.Error(code, msg)
}

// member returns the member of the caller's verified client certificate.
func (s *Server) member(ctx context.Context) (pki.ClientID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return pki.ClientID{}, ErrNoClientCert
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return pki.ClientID{}, ErrNoClientCert
	}
	chain := ti.State.VerifiedChains[0]
	m, err := pki.MemberFromCert(chain[0])
	if err != nil {
		return pki.ClientID{}, fmt.Errorf("%w: %w", ErrNotMember, err)
	}
	if s.cfg.CheckChain != nil {
		if err := s.cfg.CheckChain(ctx, chain); errors.Is(err, ErrStatusUnavailable) {
			return pki.ClientID{}, err
		} else if err != nil {
			return pki.ClientID{}, fmt.Errorf("%w: %w", ErrNotMember, err)
		}
	}
	return m, nil
}

// Append implements the gRPC Append.
func (s *Server) Append(ctx context.Context, req *pb.AppendRequest) (*pb.AppendResponse, error) {
	m, err := s.member(ctx)
	if err != nil {
		return nil, err
	}
	subs := make([]Submission, len(req.GetSubmissions()))
	for i, x := range req.GetSubmissions() {
		if len(x.GetMessageHash()) != len(subs[i].Hash) {
			return nil, fmt.Errorf("%w: submission %d: message hash of %d bytes", ErrInvalid, i, len(x.GetMessageHash()))
		}
		copy(subs[i].Hash[:], x.GetMessageHash())
		subs[i].Kind = Kind(x.GetKind())
		if !subs[i].Kind.Valid() {
			return nil, fmt.Errorf("%w: submission %d: kind %v", ErrInvalid, i, x.GetKind())
		}
	}
	rs, err := s.cfg.Log.Append(ctx, m, subs)
	if err != nil {
		return nil, err
	}
	out := &pb.AppendResponse{Receipts: make([]*pb.Receipt, len(rs))}
	for i, r := range rs {
		out.Receipts[i] = &pb.Receipt{Index: r.Index, Entry: r.Entry, Proof: r.Proof}
	}
	return out, nil
}

// GetCheckpoint implements the gRPC GetCheckpoint.
func (s *Server) GetCheckpoint(ctx context.Context, _ *pb.GetCheckpointRequest) (*pb.GetCheckpointResponse, error) {
	_, signed := s.cfg.Log.Checkpoint()
	return &pb.GetCheckpointResponse{Checkpoint: signed}, nil
}

// GetInclusionProof implements the gRPC GetInclusionProof.
func (s *Server) GetInclusionProof(ctx context.Context, req *pb.GetInclusionProofRequest) (*pb.GetInclusionProofResponse, error) {
	cp, signed := s.cfg.Log.Checkpoint()
	size := req.GetTreeSize()
	if size == 0 {
		size = cp.Size
	}
	var idx int64
	switch l := req.GetLeaf().(type) {
	case *pb.GetInclusionProofRequest_Index:
		idx = l.Index
	case *pb.GetInclusionProofRequest_LeafHash:
		var h tlog.Hash
		if len(l.LeafHash) != len(h) {
			return nil, fmt.Errorf("%w: leaf hash of %d bytes", ErrInvalid, len(l.LeafHash))
		}
		copy(h[:], l.LeafHash)
		var err error
		if idx, err = s.cfg.Log.IndexOf(ctx, h); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: neither index nor leaf hash", ErrInvalid)
	}
	p, size, err := s.cfg.Log.ProveInclusion(ctx, idx, size)
	if err != nil {
		return nil, err
	}
	out := &pb.GetInclusionProofResponse{Index: idx, TreeSize: size, Hashes: hashesBytes(p)}
	if size == cp.Size {
		out.Checkpoint = signed
	}
	return out, nil
}

// GetConsistencyProof implements the gRPC GetConsistencyProof.
func (s *Server) GetConsistencyProof(ctx context.Context, req *pb.GetConsistencyProofRequest) (*pb.GetConsistencyProofResponse, error) {
	p, n, err := s.cfg.Log.ProveConsistency(ctx, req.GetOldSize(), req.GetNewSize())
	if err != nil {
		return nil, err
	}
	return &pb.GetConsistencyProofResponse{OldSize: req.GetOldSize(), NewSize: n, Hashes: hashesBytes(p)}, nil
}

// GetEntries implements the gRPC GetEntries.
func (s *Server) GetEntries(ctx context.Context, req *pb.GetEntriesRequest) (*pb.GetEntriesResponse, error) {
	es, err := s.cfg.Log.Entries(ctx, req.GetStart(), min(req.GetCount(), MaxEntriesPerRead))
	if err != nil {
		return nil, err
	}
	return &pb.GetEntriesResponse{Entries: es}, nil
}

func hashesBytes[T ~[]tlog.Hash](hs T) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// Handle adds the C2SP tlog-tiles read API to mux: GET /checkpoint,
// /tile/<L>/<N>[.p/<W>] and /tile/entries/<N>[.p/<W>].
func (s *Server) Handle(mux *http.ServeMux) {
	mux.HandleFunc("GET /checkpoint", func(w http.ResponseWriter, r *http.Request) {
		_, signed := s.cfg.Log.Checkpoint()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(signed)
	})
	mux.HandleFunc("GET /tile/", func(w http.ResponseWriter, r *http.Request) {
		t, err := ParseTilePath(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			http.Error(w, "bad tile path", http.StatusBadRequest)
			return
		}
		data, err := s.cfg.Log.ReadTile(r.Context(), t)
		switch {
		case errors.Is(err, ErrNotFound):
			http.Error(w, "no such tile", http.StatusNotFound)
			return
		case err != nil:
			s.cfg.Logger.Error("reading tile", "path", r.URL.Path, "err", err.Error())
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		w.Write(data)
	})
}
