package timestamp

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"time"

	tsp "github.com/digitorus/timestamp"
	"github.com/prometheus/client_golang/prometheus"
)

// Content types of RFC 3161 §3.4 (time-stamp protocol via HTTP).
const (
	ContentTypeQuery = "application/timestamp-query"
	ContentTypeReply = "application/timestamp-reply"
)

// MaxRequestSize bounds a time-stamp query body. A SHA-512 query with a
// policy, a nonce and a few extensions is well under 1 KiB.
const MaxRequestSize = 16 << 10

// DefaultAccuracy is the accuracy the TSA claims when its config sets none:
// genTime has one-second resolution (DER GeneralizedTime without fractions)
// and the host clock is assumed NTP-disciplined well within that.
const DefaultAccuracy = time.Second

// Issued is what the TSA records of every token it issues.
type Issued struct {
	Serial  *big.Int
	Time    time.Time // genTime, UTC
	Hash    crypto.Hash
	Imprint []byte
	Nonce   *big.Int // nil when the request had none
	Policy  asn1.ObjectIdentifier
}

// Ledger records issued tokens. Record must be durable when it returns: the
// server sends a reply only after its token is recorded. Implementations must
// be safe for concurrent use.
type Ledger interface {
	Record(ctx context.Context, iss Issued) error
}

// ServerConfig configures a TSA.
type ServerConfig struct {
	// Signer and Chain (TSA certificate first, then its issuers, the root
	// optional) are required. The certificate must carry the critical
	// timeStamping extended key usage (RFC 3161 §2.3).
	Signer crypto.Signer
	Chain  []*x509.Certificate
	// Policy is the TSA policy OID written in every token (required). A
	// request naming another policy is refused with unacceptedPolicy.
	Policy asn1.ObjectIdentifier
	// Accuracy of genTime (DefaultAccuracy when zero).
	Accuracy time.Duration
	// Ledger records every token before it is returned (required).
	Ledger Ledger
	// Log (slog.Default() when nil), Registerer for metrics (none when nil),
	// Now (time.Now when nil).
	Log        *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Validate checks cfg without side effects.
func (cfg *ServerConfig) Validate() error {
	if cfg.Signer == nil {
		return errors.New("timestamp: server config: signer is required")
	}
	if len(cfg.Chain) == 0 {
		return errors.New("timestamp: server config: chain (TSA certificate first) is required")
	}
	if err := CheckTSACertificate(cfg.Chain[0]); err != nil {
		return fmt.Errorf("timestamp: server config: chain[0]: %w", err)
	}
	if !publicKeysEqual(cfg.Chain[0].PublicKey, cfg.Signer.Public()) {
		return errors.New("timestamp: server config: signer does not match the TSA certificate")
	}
	if len(cfg.Policy) < 2 {
		return errors.New("timestamp: server config: policy OID is required")
	}
	if cfg.Accuracy < 0 {
		return errors.New("timestamp: server config: accuracy must not be negative")
	}
	if cfg.Ledger == nil {
		return errors.New("timestamp: server config: ledger is required")
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// Server is an RFC 3161 TSA. It is an http.Handler (POST at any path it is
// mounted on) and can answer raw DER queries with Respond. Safe for
// concurrent use.
type Server struct {
	cfg      ServerConfig
	replies  *prometheus.CounterVec
	duration prometheus.Histogram
}

// NewServer checks cfg, fills in defaults and registers the metrics.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Accuracy == 0 {
		cfg.Accuracy = DefaultAccuracy
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg: cfg,
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_tsa_replies_total",
			Help: "Time-stamp replies sent, by outcome (granted or the failInfo name).",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "passerelle_tsa_request_duration_seconds",
			Help:    "Time to answer a time-stamp query, recording included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.replies, s.duration} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("timestamp: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Certificate returns the TSA certificate.
func (s *Server) Certificate() *x509.Certificate { return s.cfg.Chain[0] }

// refusal is a query the TSA answers with PKIStatus rejection.
type refusal struct {
	info   tsp.FailureInfo
	reason string // logged, not sent: the reply carries only the failInfo bit
}

func outcomeName(f tsp.FailureInfo) string {
	switch f {
	case tsp.BadAlgorithm:
		return "badAlg"
	case tsp.BadRequest:
		return "badRequest"
	case tsp.BadDataFormat:
		return "badDataFormat"
	case tsp.TimeNotAvailable:
		return "timeNotAvailable"
	case tsp.UnacceptedPolicy:
		return "unacceptedPolicy"
	case tsp.UnacceptedExtension:
		return "unacceptedExtension"
	case tsp.AddInfoNotAvailable:
		return "addInfoNotAvailable"
	case tsp.SystemFailure:
		return "systemFailure"
	}
	return "unknown"
}

// ParseQuery parses a DER TimeStampReq and checks it against what this TSA
// supports: version 1, a SHA-256/384/512 imprint of the right length, no
// policy or our policy, no extensions (we know none, so RFC 3161 §2.4.1 says
// refuse). On refusal it returns the failInfo to answer with.
func ParseQuery(der []byte, policy asn1.ObjectIdentifier) (*tsp.Request, tsp.FailureInfo, error) {
	req, r := parseQuery(der, policy)
	if r != nil {
		return nil, r.info, errors.New("timestamp: query refused: " + r.reason)
	}
	return req, tsp.UnknownFailureInfo, nil
}

func parseQuery(der []byte, policy asn1.ObjectIdentifier) (*tsp.Request, *refusal) {
	var head reqHead
	rest, err := asn1.Unmarshal(der, &head)
	if err != nil || len(rest) > 0 {
		return nil, &refusal{tsp.BadDataFormat, "not a DER TimeStampReq"}
	}
	if head.Version != 1 {
		return nil, &refusal{tsp.BadRequest, fmt.Sprintf("version %d", head.Version)}
	}
	h, ok := hashForOID(head.MessageImprint.HashAlgorithm.Algorithm)
	if !ok {
		return nil, &refusal{tsp.BadAlgorithm, "hash algorithm " + head.MessageImprint.HashAlgorithm.Algorithm.String()}
	}
	req, err := tsp.ParseRequest(der)
	if err != nil {
		return nil, &refusal{tsp.BadDataFormat, "TimeStampReq: " + err.Error()}
	}
	if req.HashAlgorithm != h || len(req.HashedMessage) != h.Size() {
		return nil, &refusal{tsp.BadDataFormat, fmt.Sprintf("%d-byte imprint for %v", len(req.HashedMessage), h)}
	}
	if len(req.TSAPolicyOID) > 0 && !req.TSAPolicyOID.Equal(policy) {
		return nil, &refusal{tsp.UnacceptedPolicy, "policy " + req.TSAPolicyOID.String()}
	}
	if len(req.Extensions) > 0 {
		return nil, &refusal{tsp.UnacceptedExtension, "extension " + req.Extensions[0].Id.String()}
	}
	if req.Nonce != nil && req.Nonce.Sign() < 0 {
		return nil, &refusal{tsp.BadDataFormat, "negative nonce"}
	}
	return req, nil
}

// Respond answers one DER query with a DER TimeStampResp. A query it refuses
// gets a rejection reply with the failInfo bit set (err is nil: that is a
// valid answer); err is non-nil only when the TSA itself failed (signing or
// recording), and then reply is a systemFailure rejection to send.
func (s *Server) Respond(ctx context.Context, der []byte) (reply []byte, err error) {
	start := time.Now()
	defer func() { s.duration.Observe(time.Since(start).Seconds()) }()
	req, ref := parseQuery(der, s.cfg.Policy)
	if ref != nil {
		s.cfg.Log.Info("time-stamp query refused", "failInfo", outcomeName(ref.info), "reason", ref.reason)
		return s.reject(ref.info), nil
	}
	reply, iss, err := s.issue(req)
	if err != nil {
		s.cfg.Log.Error("time-stamp issuance failed", "err", err)
		return s.reject(tsp.SystemFailure), err
	}
	if err := s.cfg.Ledger.Record(ctx, iss); err != nil {
		s.cfg.Log.Error("time-stamp not recorded; reply withheld", "serial", iss.Serial.Text(16), "err", err)
		return s.reject(tsp.SystemFailure), fmt.Errorf("timestamp: record token: %w", err)
	}
	s.replies.WithLabelValues("granted").Inc()
	s.cfg.Log.Debug("time-stamp issued", "serial", iss.Serial.Text(16), "genTime", iss.Time)
	return reply, nil
}

// issue signs a token. Notes on github.com/digitorus/timestamp, which does
// the encoding and signing:
//   - serialNumber: random 160 bits, whatever the request; unique, so we keep
//     it and record it (Issued.Serial).
//   - genTime: DER GeneralizedTime with whole seconds, so we truncate and
//     claim Accuracy (default 1 s) to cover it; the library writes accuracy
//     as seconds/millis/micros as RFC 3161 §2.4.2 has it.
//   - nonce is echoed when set; certReq maps to AddTSACertificate, and then
//     the TSA certificate and its issuers are put in SignedData.certificates.
//   - The signed attributes carry signingCertificateV2 (ESSCertIDv2) over the
//     TSA certificate, hashed with the imprint's algorithm.
//   - ordering is false and no TSTInfo extensions are written.
func (s *Server) issue(req *tsp.Request) ([]byte, Issued, error) {
	now := s.cfg.Now().UTC().Truncate(time.Second)
	t := &tsp.Timestamp{
		HashAlgorithm:     req.HashAlgorithm,
		HashedMessage:     req.HashedMessage,
		Time:              now,
		Accuracy:          s.cfg.Accuracy,
		Policy:            s.cfg.Policy,
		Nonce:             req.Nonce,
		AddTSACertificate: req.Certificates,
	}
	if len(s.cfg.Chain) > 1 {
		t.Certificates = s.cfg.Chain[1:]
	}
	reply, err := t.CreateResponseWithOpts(s.cfg.Chain[0], s.cfg.Signer, crypto.SHA256)
	if err != nil {
		return nil, Issued{}, fmt.Errorf("sign token: %w", err)
	}
	serial, err := replySerial(reply)
	if err != nil {
		return nil, Issued{}, err
	}
	return reply, Issued{
		Serial:  serial,
		Time:    now,
		Hash:    req.HashAlgorithm,
		Imprint: req.HashedMessage,
		Nonce:   req.Nonce,
		Policy:  s.cfg.Policy,
	}, nil
}

// replySerial reads back the serial the library chose.
func replySerial(reply []byte) (*big.Int, error) {
	var r respStatus
	if _, err := asn1.Unmarshal(reply, &r); err != nil {
		return nil, fmt.Errorf("re-read reply: %w", err)
	}
	info, err := parseTSTInfo(r.Token.FullBytes)
	if err != nil {
		return nil, fmt.Errorf("re-read token: %w", err)
	}
	return info.SerialNumber, nil
}

func (s *Server) reject(f tsp.FailureInfo) []byte {
	s.replies.WithLabelValues(outcomeName(f)).Inc()
	der, err := tsp.CreateErrorResponse(tsp.Rejection, f)
	if err != nil { // marshalling two fixed fields cannot fail
		panic(err)
	}
	return der
}

// ServeHTTP implements RFC 3161 §3.4: POST a DER query with Content-Type
// application/timestamp-query, get a DER reply as
// application/timestamp-reply. Refusals are replies too (HTTP 200, PKIStatus
// rejection); only a wrong method (405), an oversized body (413) or a TSA
// failure (500) change the HTTP status, and the body is still a reply.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST an application/timestamp-query", http.StatusMethodNotAllowed)
		return
	}
	writeReply := func(status int, der []byte) {
		w.Header().Set("Content-Type", ContentTypeReply)
		w.WriteHeader(status)
		w.Write(der)
	}
	if ct := r.Header.Get("Content-Type"); ct != ContentTypeQuery {
		s.cfg.Log.Info("time-stamp query refused", "failInfo", "badRequest", "reason", "content type "+ct)
		writeReply(http.StatusOK, s.reject(tsp.BadRequest))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestSize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeReply(http.StatusRequestEntityTooLarge, s.reject(tsp.BadRequest))
			return
		}
		s.cfg.Log.Info("time-stamp query unreadable", "err", err)
		writeReply(http.StatusBadRequest, s.reject(tsp.BadDataFormat))
		return
	}
	reply, err := s.Respond(r.Context(), body)
	if err != nil {
		writeReply(http.StatusInternalServerError, reply)
		return
	}
	writeReply(http.StatusOK, reply)
}
