package securityserver

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	xocsp "golang.org/x/crypto/ocsp"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/directory"
	"github.com/passerelle/passerelle/rest"
	"github.com/passerelle/passerelle/securityserver/messagelog"
)

// ProviderHandler serves other security servers (behind mutual TLS).
func (s *Server) ProviderHandler() http.Handler {
	return http.HandlerFunc(s.serveProvider)
}

func (s *Server) serveProvider(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	const origin = rest.OriginServerProxy
	log := s.log.With("side", "provider")
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		s.writeError(w, r, log, rest.ServerProxyError(rest.CodeSslAuthenticationFailed, "a client certificate is required", nil), origin)
		return
	}
	if isSOAPRequest(r) {
		s.serveSOAPProvider(w, r)
		return
	}
	reqJWS := r.Header.Get(rest.HeaderSignature)
	authOCSP := r.Header.Get(HeaderAuthOCSP)
	r.Header.Del(rest.HeaderSignature)
	r.Header.Del(HeaderAuthOCSP)
	if r.Header.Get(rest.HeaderID) == "" {
		s.writeError(w, r, log, rest.ServerProxyError(rest.CodeMissingHeader, "X-Road-Id is required between security servers", nil), origin)
		return
	}
	req, err := rest.ParseRequest(r)
	if err != nil {
		s.writeError(w, r, log, err, origin)
		return
	}
	log = log.With("messageId", req.ID, "client", req.Client.String(), "service", req.Service.String())
	doc, err := s.checkOperational(origin)
	if err != nil {
		s.writeError(w, r, log, err, origin)
		return
	}
	// The TLS peer must be a registered security server of the client, with a
	// valid chain and a good, fresh OCSP response.
	if err := s.checkPeer(r.Context(), doc, r.TLS.PeerCertificates, authOCSP, req.Client); err != nil {
		s.writeError(w, r, log, rest.ServerProxyError(rest.CodeSslAuthenticationFailed, "the calling security server is not registered for this client, or its certificate is not acceptable", err), origin)
		return
	}
	release, err := s.limiter.acquire(w, req.Client.String(), origin)
	if err != nil {
		s.writeError(w, r, log, err, origin)
		return
	}
	defer release()
	svc := s.store.service(req.Service.String())
	if req.Kind != rest.KindService {
		if svc, err = s.providerMetaService(req); err != nil {
			s.writeError(w, r, log, err, origin)
			return
		}
	}
	if svc == nil {
		s.writeError(w, r, log, rest.ServerProxyError(rest.CodeUnknownService, fmt.Sprintf("unknown service %s", req.Service), nil), origin)
		return
	}
	if reqJWS == "" {
		s.writeError(w, r, log, rest.ServerProxyError(rest.CodeMissingSignature, "the request is not signed", nil), origin)
		return
	}
	body, digest, err := spoolBody(r.Body, s.cfg.Limits.MaxBodyBytes, s.cfg.DataDir)
	if err != nil {
		code, msg := rest.CodeBadRequest, "the request body could not be read"
		if errors.Is(err, errTooLarge) {
			code, msg = rest.CodeRequestTooLarge, fmt.Sprintf("the request body exceeds %d bytes", s.cfg.Limits.MaxBodyBytes)
		}
		s.writeError(w, r, log, rest.ServerProxyError(code, msg, err), origin)
		return
	}
	defer body.Close()
	desc := req.Descriptor(digest)
	signed, err := rest.VerifyRequest(reqJWS, &desc)
	if err != nil {
		code := rest.CodeInvalidSignature
		if errors.Is(err, rest.ErrMismatch) {
			code = rest.CodeInvalidMessage
		}
		s.writeError(w, r, log, rest.ServerProxyError(code, "the request's signature does not verify against what was received", err), origin)
		return
	}
	if err := s.verifySigner(r.Context(), doc, signed.Chain, signed.OCSP, req.Client); err != nil {
		s.writeError(w, r, log, rest.ServerProxyError(rest.CodeCertValidation, "the request's signing certificate is not acceptable for this client", err), origin)
		return
	}
	// A replay is the same signed message again: keyed by its digest, not by
	// the client's X-Road-Id, which clients may legitimately reuse.
	if err := s.replay.Check(req.Client.String(), hex.EncodeToString(signed.Digest[:]), signed.SignedAt); err != nil {
		s.writeError(w, r, log, rest.ServerProxyError(rest.CodeInvalidMessage, "the request was already received, or was signed outside the allowed time window", err), origin)
		return
	}
	if !permits(svc, req.Client, req.Method, req.Path) {
		s.writeError(w, r, log, rest.ServerProxyError(rest.CodeAccessDenied, fmt.Sprintf("client %s may not call %s %s on %s", req.Client, req.Method, orRoot(req.Path), req.Service), nil), origin)
		return
	}
	bodyMode := messagelog.BodyFull
	if svc.BodyLogging == BodyLoggingMetadata {
		bodyMode = messagelog.BodyMetadataOnly
	}
	reqHash, err := s.record(r.Context(), messagelog.Record{
		MessageID: req.ID, Kind: messagelog.KindRequest, Direction: messagelog.Received, Side: messagelog.Provider,
		Protocol: messagelog.REST, Client: req.Client, Service: req.Service, Signed: []byte(reqJWS),
		SignerChain: chainDER(signed.Chain), OCSP: signed.OCSP, BodyMode: bodyMode,
		BodyLen: digest.Length, BodyDigest: digest.SHA256[:],
	}, body.Reader())
	if err != nil {
		s.writeError(w, r, log, rest.ServerProxyError(rest.CodeLoggingFailed, "the request could not be logged", err), origin)
		return
	}

	// Call the service.
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(svc.Timeout))
	defer cancel()
	resp, err := s.callBackend(ctx, svc, req, r.Header, body)
	if err != nil {
		code, msg := rest.CodeServiceFailed, "the service could not be reached"
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			code, msg = rest.CodeServiceTimeout, fmt.Sprintf("the service did not answer within %s", time.Duration(svc.Timeout))
		}
		s.writeError(w, r, log, rest.ServerProxyError(code, msg, err), origin)
		return
	}
	defer resp.Body.Close()
	respBody, respDigest, err := spoolBody(resp.Body, s.cfg.Limits.MaxBodyBytes, s.cfg.DataDir)
	if err != nil {
		code, msg := rest.CodeServiceFailed, "the service's response could not be read"
		if errors.Is(err, errTooLarge) {
			msg = fmt.Sprintf("the service's response exceeds %d bytes", s.cfg.Limits.MaxBodyBytes)
		} else if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			code, msg = rest.CodeServiceTimeout, fmt.Sprintf("the service did not answer within %s", time.Duration(svc.Timeout))
		}
		s.writeError(w, r, log, rest.ServerProxyError(code, msg, err), origin)
		return
	}
	defer respBody.Close()

	// Sign the response, bound to the request, and log it before returning it.
	h := rest.EndToEnd(resp.Header)
	h.Del(rest.HeaderError) // only security servers set it
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "x-road-") {
			delete(h, k)
		}
	}
	h.Set(rest.HeaderClient, req.Client.String())
	h.Set(rest.HeaderService, req.Service.String())
	h.Set(rest.HeaderID, req.ID)
	h.Set(rest.HeaderRequestID, uuid.NewString())
	h.Set(rest.HeaderRequestHash, rest.RequestHash(&desc))
	rdesc := rest.DescribeResponse(&desc, reqJWS, resp.StatusCode, h, respDigest)
	ocspDER, err := s.signStapler.Staple()
	if err != nil {
		s.writeError(w, r, log, rest.ServerProxyError(rest.CodeCertValidation, "this security server has no fresh OCSP response for its signing certificate", err), origin)
		return
	}
	respJWS, err := s.signer.SignResponse(r.Context(), &rdesc, ocspDER)
	if err != nil {
		s.writeError(w, r, log, rest.ServerProxyError(rest.CodeInternalError, "the response could not be signed", err), origin)
		return
	}
	if _, err := s.record(r.Context(), messagelog.Record{
		MessageID: req.ID, Kind: messagelog.KindResponse, Direction: messagelog.Sent, Side: messagelog.Provider,
		Protocol: messagelog.REST, Client: req.Client, Service: req.Service, Signed: []byte(respJWS),
		SignerChain: chainDER(s.sign.chain), OCSP: ocspDER, RequestHash: &reqHash, Status: resp.StatusCode,
		BodyMode: bodyMode, BodyLen: respDigest.Length, BodyDigest: respDigest.SHA256[:],
	}, respBody.Reader()); err != nil {
		s.writeError(w, r, log, rest.ServerProxyError(rest.CodeLoggingFailed, "the response could not be logged", err), origin)
		return
	}
	out := w.Header()
	copyHeaders(out, h)
	if _, ok := out["Content-Type"]; !ok {
		out["Content-Type"] = nil // no sniffing: the signature covers the headers as they are
	}
	out.Set(rest.HeaderSignature, respJWS)
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, respBody.Reader()); err != nil {
		log.Warn("consumer server went away while the response was written", "err", err)
	}
	s.m.exchange("provider", req.Service.String(), resp.StatusCode, time.Since(start))
	log.Info("exchange served", "status", resp.StatusCode, "ms", time.Since(start).Milliseconds())
}

// callBackend sends the request to the service: its base URL joined with the
// resource path and query as received.
func (s *Server) callBackend(ctx context.Context, svc *ServiceConfig, req *rest.Request, in http.Header, body *spool) (*http.Response, error) {
	if req.Kind != rest.KindService {
		return s.metaResponse(req) // the provider's security server answers metaservices itself
	}
	base, err := url.Parse(svc.URL)
	if err != nil {
		return nil, err
	}
	u := *base
	rawPath := strings.TrimSuffix(base.EscapedPath(), "/") + req.Path
	if req.Path == "" {
		rawPath = base.EscapedPath()
	}
	u.Path, err = url.PathUnescape(rawPath)
	if err != nil {
		return nil, err
	}
	u.RawPath = rawPath
	u.RawQuery = req.RawQuery
	out, err := http.NewRequestWithContext(ctx, req.Method, u.String(), body.Reader())
	if err != nil {
		return nil, err
	}
	out.URL = &u
	out.ContentLength = body.Len()
	if body.Len() == 0 {
		out.Body = http.NoBody
	}
	out.Header = rest.EndToEnd(in)
	return s.backendFor(svc).Do(out)
}

// checkPeer verifies the calling security server: its TLS certificate is
// registered in the directory for the client, chains to a trusted root, and
// has a good, fresh OCSP response (sent base64 in HeaderAuthOCSP). A
// successful check is cached per certificate and response until the response
// would be stale.
func (s *Server) checkPeer(ctx context.Context, doc *directory.Document, chain []*x509.Certificate, ocspB64 string, client pki.ClientID) error {
	fp := pki.Fingerprint(chain[0])
	if !doc.ServesClient(client, fp) {
		return fmt.Errorf("certificate %s… is not registered for %s", fp[:16], client)
	}
	sum := sha256.Sum256([]byte(ocspB64))
	now := time.Now()
	if v, ok := s.peerCache.Load(fp); ok {
		if p := v.(peerOK); p.ocsp == sum && p.serial == doc.Serial && now.Before(p.until) {
			return nil
		}
	}
	der, err := base64.StdEncoding.DecodeString(ocspB64)
	if err != nil {
		return fmt.Errorf("%s: %w", HeaderAuthOCSP, err)
	}
	v, err := s.currentVerifier(doc)
	if err != nil {
		return err
	}
	if _, err := v.Verify(ctx, chain, der, pki.UsageAuth); err != nil {
		return err
	}
	// Trusted again without verification for peerCacheFor at most, never
	// past the moment the response stops being fresh, and only under the
	// directory it was verified with. One entry per peer certificate.
	until := now.Add(peerCacheFor)
	if r, err := xocsp.ParseResponse(der, nil); err == nil {
		fresh := r.ThisUpdate.Add(doc.Params.OCSPFreshness())
		if !r.NextUpdate.IsZero() && r.NextUpdate.Before(fresh) {
			fresh = r.NextUpdate
		}
		if fresh.Before(until) {
			until = fresh
		}
	}
	s.peerCache.Store(fp, peerOK{ocsp: sum, serial: doc.Serial, until: until})
	return nil
}

// peerOK is a verified TLS peer: which OCSP response (digest of the header
// value), under which directory serial, until when.
type peerOK struct {
	ocsp   [sha256.Size]byte
	serial uint64
	until  time.Time
}

// peerCacheFor is how long a verified peer certificate and OCSP response
// are trusted without verifying them again.
const peerCacheFor = time.Minute
