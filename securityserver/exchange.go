package securityserver

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/directory"
	"github.com/passerelle/passerelle/rest"
	"github.com/passerelle/passerelle/securityserver/messagelog"
)

// Headers Passerelle adds between security servers, besides
// rest.HeaderSignature. Receivers strip them before passing a message on.
const (
	// HeaderAuthOCSP carries the consumer server's OCSP response (DER,
	// standard base64) for its TLS client certificate: Go's TLS server does
	// not expose a client's stapled response.
	HeaderAuthOCSP = "Passerelle-Auth-Ocsp"
)

// record logs a signed message durably and queues its hash for the
// timestamp batcher and the registry outbox (see feeder.go). It returns once
// the record is committed: whatever the caller acknowledges next is logged,
// and the log keeps it pending until it is timestamped and registered.
func (s *Server) record(ctx context.Context, rec messagelog.Record, body io.Reader) (messagelog.Hash, error) {
	h := messagelog.HashOf(rec.Signed)
	rec.Hash = h
	if _, err := s.mlog.AppendStream(ctx, rec, body); err != nil {
		return h, err
	}
	return h, s.feed(ctx, h, rec.Kind)
}

// verifySigner validates a message signer's chain and OCSP response against
// the directory in hand (roots, freshness) for the sign usage and, when want
// is not zero, checks that the certificate is bound to want's member.
func (s *Server) verifySigner(ctx context.Context, doc *directory.Document, chain []*x509.Certificate, ocspDER []byte, want pki.ClientID) error {
	v, err := s.currentVerifier(doc)
	if err != nil {
		return err
	}
	signer, err := v.Verify(ctx, chain, ocspDER, pki.UsageSign)
	if err != nil {
		return err
	}
	if !want.IsZero() && signer != want.MemberID() {
		return fmt.Errorf("signed by %s, expected %s", signer, want.MemberID())
	}
	return nil
}

func chainDER(chain []*x509.Certificate) [][]byte {
	out := make([][]byte, len(chain))
	for i, c := range chain {
		out[i] = c.Raw
	}
	return out
}

// checkOperational refuses traffic when the directory has expired or the
// TSA has been unreachable for longer than the failure period. origin says
// which side is refusing.
func (s *Server) checkOperational(origin rest.Origin) (*directory.Document, error) {
	doc, err := s.dir.Current()
	if err != nil {
		return nil, rest.NewError(origin, rest.CodeOutdatedGlobalConf,
			"the security server's copy of the federation directory is expired or missing", err)
	}
	if age := s.batcher.PendingAge(); age > doc.Params.TimestampFailurePeriod() {
		return nil, rest.NewError(origin, rest.CodeTimestamperFailed,
			"messages cannot be timestamped: the time-stamping authority has been unreachable for longer than the failure period", nil)
	}
	return doc, nil
}

// writeError is the one place where the server's REST errors reach a
// client: logged with the message id and the internal cause, written with
// the public message only.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error, origin rest.Origin) {
	mode := rest.ErrorMode{Strict: s.cfg.StrictXRoadErrors, Origin: origin}
	e := rest.AsError(err, mode)
	level := slog.LevelWarn
	if !e.IsClientError() && e.StatusFor(mode) >= 500 {
		level = slog.LevelError
	}
	log.Log(r.Context(), level, "request refused", "type", e.Type, "detail", e.Detail, "status", e.StatusFor(mode), "err", errString(e.Err))
	s.m.result(origin, e.Type)
	rest.WriteError(w, r, e, mode)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// copyHeaders sets h's values on dst, replacing what dst had for those names.
func copyHeaders(dst, h http.Header) {
	for k, v := range h {
		dst[k] = v
	}
}
