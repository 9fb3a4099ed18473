package securityserver

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/rest"
	"github.com/passerelle/passerelle/securityserver/messagelog"
)

// consumerTimeout bounds a whole exchange seen from the consumer side; the
// provider side applies the service's own (shorter) backend timeout.
const consumerTimeout = 5 * time.Minute

// ConsumerHandler serves the institution's client systems: X-Road REST r1.
func (s *Server) ConsumerHandler() http.Handler {
	return http.HandlerFunc(s.serveConsumer)
}

func (s *Server) serveConsumer(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	const origin = rest.OriginClientProxy
	log := s.log.With("side", "consumer")
	if isSOAPRequest(r) {
		s.serveSOAPConsumer(w, r)
		return
	}
	req, err := rest.ParseRequest(r)
	if err != nil {
		s.writeError(w, r, log, err, origin)
		return
	}
	log = log.With("messageId", req.ID, "client", req.Client.String(), "service", req.Service.String())
	if req.Kind == rest.KindListClients {
		s.serveListClients(w, r, log, req)
		return
	}
	if err := s.authorizeClient(r, req.Client); err != nil {
		s.writeError(w, r, log, err, origin)
		return
	}
	release, err := s.limiter.acquire(w, req.Client.String(), origin)
	if err != nil {
		s.writeError(w, r, log, err, origin)
		return
	}
	defer release()
	doc, err := s.checkOperational(origin)
	if err != nil {
		s.writeError(w, r, log, err, origin)
		return
	}
	servers := doc.ServersFor(req.Service.Client)
	if len(servers) == 0 {
		s.writeError(w, r, log, rest.ClientProxyError(rest.CodeUnknownService,
			fmt.Sprintf("no security server in the federation directory hosts %s", req.Service.Client), nil), origin)
		return
	}
	target := servers[0]

	body, digest, err := spoolBody(r.Body, s.cfg.Limits.MaxBodyBytes, s.cfg.DataDir)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			err = rest.ClientError(rest.CodeRequestTooLarge, fmt.Sprintf("the request body exceeds %d bytes", s.cfg.Limits.MaxBodyBytes), err)
		} else {
			err = rest.ClientError(rest.CodeBadRequest, "the request body could not be read", err)
		}
		s.writeError(w, r, log, err, origin)
		return
	}
	defer body.Close()

	ocspDER, err := s.signStapler.Staple()
	if err != nil {
		s.writeError(w, r, log, rest.ClientProxyError(rest.CodeCertValidation, "this security server has no fresh OCSP response for its signing certificate", err), origin)
		return
	}
	authOCSP, err := s.authStapler.Staple()
	if err != nil {
		s.writeError(w, r, log, rest.ClientProxyError(rest.CodeCertValidation, "this security server has no fresh OCSP response for its TLS certificate", err), origin)
		return
	}
	desc := req.Descriptor(digest)
	reqJWS, err := s.signer.SignRequest(r.Context(), &desc, ocspDER)
	if err != nil {
		s.writeError(w, r, log, rest.ClientProxyError(rest.CodeInternalError, "the request could not be signed", err), origin)
		return
	}
	reqHash, err := s.record(r.Context(), messagelog.Record{
		MessageID: req.ID, Kind: messagelog.KindRequest, Direction: messagelog.Sent, Side: messagelog.Consumer,
		Protocol: messagelog.REST, Client: req.Client, Service: req.Service, Signed: []byte(reqJWS),
		SignerChain: chainDER(s.sign.chain), OCSP: ocspDER, BodyMode: messagelog.BodyFull,
	}, body.Reader())
	if err != nil {
		s.writeError(w, r, log, rest.ClientProxyError(rest.CodeLoggingFailed, "the request could not be logged", err), origin)
		return
	}

	// Send it to the provider's security server.
	ctx, cancel := context.WithTimeout(withPeerPin(r.Context(), target.TLSCertSHA256), consumerTimeout)
	defer cancel()
	// ServicePath ends with the resource path, escaped as received.
	u := &url.URL{Scheme: "https", Host: target.Address, RawPath: req.ServicePath(), RawQuery: req.RawQuery}
	u.Path, _ = url.PathUnescape(u.RawPath)
	out, err := http.NewRequestWithContext(ctx, req.Method, u.String(), body.Reader())
	if err != nil {
		s.writeError(w, r, log, rest.ClientProxyError(rest.CodeInternalError, "the request could not be forwarded", err), origin)
		return
	}
	out.URL.RawPath, out.URL.Path = u.RawPath, u.Path
	out.ContentLength = body.Len()
	if body.Len() == 0 {
		out.Body = http.NoBody
	}
	out.Header = req.Header.Clone()
	if s.clientUsesToken(req.Client) {
		out.Header.Del("Authorization") // the client's credential for this server only
	}
	out.Header.Set(rest.HeaderSignature, reqJWS)
	out.Header.Set(HeaderAuthOCSP, base64.StdEncoding.EncodeToString(authOCSP))
	resp, err := s.toProvider.Do(out)
	if err != nil {
		code, msg := rest.CodeNetworkError, "the provider's security server could not be reached"
		var ve *tlsVerifyError
		if errors.As(err, &ve) {
			code, msg = rest.CodeSslAuthenticationFailed, "the provider's security server presented an unacceptable certificate"
		}
		s.writeError(w, r, log, rest.ClientProxyError(code, msg, err), origin)
		return
	}
	defer resp.Body.Close()
	if fp := peerFingerprint(resp.TLS); fp != target.TLSCertSHA256 {
		s.writeError(w, r, log, rest.ClientProxyError(rest.CodeSslAuthenticationFailed,
			"the provider's security server is not the one the federation directory registers", nil), origin)
		return
	}
	if resp.Header.Get(rest.HeaderError) != "" {
		// The provider's security server refused: pass its error on unsigned.
		perr, perrErr := rest.ParseError(resp)
		if perrErr != nil {
			perr = rest.ServerProxyError(rest.CodeInternalError, "the provider's security server failed", perrErr)
		}
		perr.Status = resp.StatusCode
		log.Warn("provider refused", "type", perr.Type, "detail", perr.Detail, "status", resp.StatusCode)
		s.m.result(rest.OriginServerProxy, perr.Type)
		rest.WriteError(w, r, perr, rest.ErrorMode{Strict: s.cfg.StrictXRoadErrors})
		return
	}

	// Verify the signed response before anything of it reaches the client.
	respBody, respDigest, err := spoolBody(resp.Body, s.cfg.Limits.MaxBodyBytes, s.cfg.DataDir)
	if err != nil {
		s.writeError(w, r, log, rest.ClientProxyError(rest.CodeNetworkError, "the response could not be read", err), origin)
		return
	}
	defer respBody.Close()
	respJWS := resp.Header.Get(rest.HeaderSignature)
	if respJWS == "" {
		s.writeError(w, r, log, rest.ClientProxyError(rest.CodeMissingSignature, "the response is not signed", nil), origin)
		return
	}
	rdesc := rest.DescribeResponse(&desc, reqJWS, resp.StatusCode, resp.Header, respDigest)
	signed, err := rest.VerifyResponse(respJWS, &rdesc)
	if err != nil {
		s.writeError(w, r, log, rest.ClientProxyError(rest.CodeInvalidSignature, "the response's signature does not verify", err), origin)
		return
	}
	if err := s.verifySigner(r.Context(), doc, signed.Chain, signed.OCSP, req.Service.Client); err != nil {
		s.writeError(w, r, log, rest.ClientProxyError(rest.CodeCertValidation, "the response's signing certificate is not acceptable", err), origin)
		return
	}
	if got, want := resp.Header.Get(rest.HeaderRequestHash), rest.RequestHash(&desc); got != want {
		s.writeError(w, r, log, rest.ClientProxyError(rest.CodeInconsistentResponse, "the response answers another request (X-Road-Request-Hash differs)", nil), origin)
		return
	}
	if _, err := s.record(r.Context(), messagelog.Record{
		MessageID: req.ID, Kind: messagelog.KindResponse, Direction: messagelog.Received, Side: messagelog.Consumer,
		Protocol: messagelog.REST, Client: req.Client, Service: req.Service, Signed: []byte(respJWS),
		SignerChain: chainDER(signed.Chain), OCSP: signed.OCSP, RequestHash: &reqHash, Status: resp.StatusCode,
		BodyMode: messagelog.BodyFull,
	}, respBody.Reader()); err != nil {
		s.writeError(w, r, log, rest.ClientProxyError(rest.CodeLoggingFailed, "the response could not be logged", err), origin)
		return
	}

	h := w.Header()
	copyHeaders(h, rest.EndToEnd(resp.Header))
	h.Del(HeaderAuthOCSP)
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, respBody.Reader()); err != nil {
		log.Warn("client went away while the response was written", "err", err)
	}
	s.m.exchange("consumer", req.Service.String(), resp.StatusCode, time.Since(start))
	log.Info("exchange done", "status", resp.StatusCode, "ms", time.Since(start).Milliseconds())
}

// serveListClients answers X-Road's listClients metaservice from the
// federation directory.
func (s *Server) serveListClients(w http.ResponseWriter, r *http.Request, log *slog.Logger, req *rest.Request) {
	doc, err := s.checkOperational(rest.OriginClientProxy)
	if err != nil {
		s.writeError(w, r, log, err, rest.OriginClientProxy)
		return
	}
	writeListClients(w, r, doc, req.MetaServiceParam)
}

func peerFingerprint(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return ""
	}
	return pki.Fingerprint(cs.PeerCertificates[0])
}
