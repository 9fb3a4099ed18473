package securityserver

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/rest"
	"github.com/passerelle/passerelle/securityserver/messagelog"
	"github.com/passerelle/passerelle/soap"
)

// SOAP (X-Road message protocol 4.0) on both sides. The consumer side reads
// the client's POST (bare envelope or multipart/related), validates its
// X-Road headers, signs the envelope with soap.Sign (attachments bound by
// their digests), logs it, POSTs it over mutual TLS to the provider's
// security server, verifies the signed response (signer = the service's
// member, bound to the request, requestHash = X-Road's hash of what the
// client sent), logs it, strips the signature and returns it. The provider
// side verifies the request on the bytes received, checks the TLS peer, the
// signer's certificate and member, replay and access rights, logs it, POSTs
// exactly the signed envelope, signature stripped, to the service, adds
// requestHash to the service's answer, signs it bound to the request, logs it
// and returns it. Faults go through faultSOAP only. See docs/soap.md.

// isSOAPRequest reports whether r is an X-Road SOAP request: a POST outside
// the REST paths with a SOAP 1.1, SOAP 1.2 or multipart content type.
func isSOAPRequest(r *http.Request) bool {
	if r.Method != http.MethodPost || strings.HasPrefix(r.URL.Path, "/r1/") || r.URL.Path == "/listClients" {
		return false
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return false
	}
	switch mt {
	case "text/xml", "application/soap+xml", "multipart/related":
		return true
	}
	return false
}

// headerSOAPAction is SOAP 1.1's action header. It passes from the client to
// the service unchanged; it is not covered by the signature (SOAP 1.2 carries
// the action in the Content-Type, which is).
const headerSOAPAction = "SOAPAction"

// faultVersion guesses the SOAP version of a request from its content type,
// for a fault written before the envelope is parsed.
func faultVersion(ct string) soap.Version {
	if v, err := soap.VersionFromContentType(ct); err == nil {
		return v
	}
	if mt, p, err := mime.ParseMediaType(ct); err == nil && mt == "multipart/related" {
		for _, t := range []string{p["type"], p["start-info"]} {
			if v, err := soap.VersionFromContentType(t); err == nil {
				return v
			}
		}
	}
	return soap.SOAP11
}

// faultSOAP is the one place where the server's SOAP faults reach a client
// or a peer: logged with the message id (in log), the X-Road code, the
// faultDetail uuid and the internal cause; written with the public message
// only, as SOAP 1.1 or 1.2 like the request.
func (s *Server) faultSOAP(w http.ResponseWriter, r *http.Request, log *slog.Logger, v soap.Version, prefix string, err error) {
	f := soap.NewFault(prefix, err)
	level := slog.LevelWarn
	if strings.HasSuffix(f.Code, soap.CodeInternalError) || strings.Contains(f.Code, "LoggingFailed") {
		level = slog.LevelError
	}
	log.Log(r.Context(), level, "request refused", "protocol", "soap", "type", f.Code, "detail", f.Detail, "err", errString(err))
	s.m.result(rest.Origin(prefix), f.Code)
	soap.WriteFault(w, v, f)
}

// passFault relays a fault from the service or the provider's security
// server, rendered again by the one renderer.
func (s *Server) passFault(w http.ResponseWriter, log *slog.Logger, v soap.Version, f *soap.Fault, from string) {
	log.Warn("fault passed on", "from", from, "type", f.Code, "detail", f.Detail)
	s.m.result(rest.OriginServerProxy, f.Code)
	soap.WriteFault(w, v, f)
}

// fromREST turns an error of the shared helpers (checkOperational) into a
// SOAP protocol error with the same X-Road code.
func fromREST(err error, origin rest.Origin) error {
	var e *rest.Error
	if !errors.As(err, &e) {
		return err
	}
	code := strings.TrimPrefix(e.Type, string(origin)+".")
	return &soap.Error{Code: code, Msg: e.Message, Err: e.Err}
}

// serviceKey is a SOAP service's key in s.services: its identifier without
// serviceVersion, which access control ignores. A service on a member
// without subsystem is I/C/M/CODE.
func serviceKey(id pki.ServiceID) string { return id.Client.String() + "/" + id.Code }

// checkEchoed checks that a response echoes the request's X-Road headers,
// as X-Road does: client, service, id, userId, issue, protocolVersion.
func checkEchoed(req, resp *soap.Header) error {
	if resp.Client != req.Client || resp.Service == nil || req.Service == nil || *resp.Service != *req.Service ||
		resp.ID != req.ID || resp.UserID != req.UserID || resp.Issue != req.Issue || resp.ProtocolVersion != req.ProtocolVersion {
		return soapError(soap.CodeInvalidRequestHash, nil, "the response's X-Road headers do not match the request's")
	}
	return nil
}

// serveSOAPConsumer carries an X-Road SOAP 4.0 request from a client system.
func (s *Server) serveSOAPConsumer(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	const prefix, origin = soap.PrefixClientProxy, rest.OriginClientProxy
	log := s.log.With("side", "consumer", "protocol", "soap")
	v := faultVersion(r.Header.Get("Content-Type"))

	msg, err := s.readSOAPMessage(r.Header.Get("Content-Type"), r.Body)
	if err != nil {
		s.faultSOAP(w, r, log, v, soap.PrefixClient, err)
		return
	}
	defer msg.Close()
	env, err := soap.ParseRequest(msg.ContentType, msg.Envelope, s.soapLimits())
	if err != nil {
		s.faultSOAP(w, r, log, v, soap.PrefixClient, err)
		return
	}
	v = env.Version
	hdr := &env.Header
	svc := *hdr.Service
	log = log.With("messageId", hdr.ID, "client", hdr.Client.String(), "service", svc.String())
	if err := s.authorizeClient(r, hdr.Client); err != nil {
		s.faultSOAP(w, r, log, v, prefix, fromREST(err, origin))
		return
	}
	release, err := s.limiter.acquire(w, hdr.Client.String(), origin)
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, fromREST(err, origin))
		return
	}
	defer release()
	doc, err := s.checkOperational(origin)
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, fromREST(err, origin))
		return
	}
	servers := doc.ServersFor(svc.Client)
	if len(servers) == 0 {
		s.faultSOAP(w, r, log, v, prefix, soapError(string(rest.CodeUnknownService), nil,
			"no security server in the federation directory hosts %s", svc.Client))
		return
	}
	target := servers[0]

	ocspDER, err := s.signStapler.Staple()
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, soapError(string(rest.CodeCertValidation), err, "this security server has no fresh OCSP response for its signing certificate"))
		return
	}
	authOCSP, err := s.authStapler.Staple()
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, soapError(string(rest.CodeCertValidation), err, "this security server has no fresh OCSP response for its TLS certificate"))
		return
	}
	// Signed from the tree ParseRequest built of the same bytes.
	signed, err := env.Sign(soap.Signer{Key: s.sign.key, Chain: s.sign.chain, OCSP: ocspDER},
		soap.SignOptions{Attachments: msg.Attachments, Limits: s.soapLimits()})
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, fmt.Errorf("sign the request: %w", err))
		return
	}
	reqHash, err := s.record(r.Context(), messagelog.Record{
		MessageID: hdr.ID, Kind: messagelog.KindRequest, Direction: messagelog.Sent, Side: messagelog.Consumer,
		Protocol: messagelog.SOAP, Client: hdr.Client, Service: svc, Signed: signed,
		SignerChain: chainDER(s.sign.chain), OCSP: ocspDER, BodyMode: messagelog.BodyFull,
	}, msg.attachments())
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, soapError(string(rest.CodeLoggingFailed), err, "the request could not be logged"))
		return
	}

	// Send it to the provider's security server.
	ctx, cancel := context.WithTimeout(withPeerPin(r.Context(), target.TLSCertSHA256), consumerTimeout)
	defer cancel()
	ct, body, n, done := msg.body(signed)
	defer done()
	u := &url.URL{Scheme: "https", Host: target.Address, Path: "/"}
	out, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), body)
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, fmt.Errorf("forward the request: %w", err))
		return
	}
	out.ContentLength = n
	out.Header.Set("Content-Type", ct)
	if a := r.Header.Values(headerSOAPAction); len(a) > 0 {
		out.Header[headerSOAPAction] = a // written as SOAP 1.1 spells it
	}
	out.Header.Set(HeaderAuthOCSP, base64.StdEncoding.EncodeToString(authOCSP))
	resp, err := s.toProvider.Do(out)
	if err != nil {
		code, m := rest.CodeNetworkError, "the provider's security server could not be reached"
		var ve *tlsVerifyError
		if errors.As(err, &ve) {
			code, m = rest.CodeSslAuthenticationFailed, "the provider's security server presented an unacceptable certificate"
		}
		s.faultSOAP(w, r, log, v, prefix, soapError(string(code), err, "%s", m))
		return
	}
	defer resp.Body.Close()
	if fp := peerFingerprint(resp.TLS); fp != target.TLSCertSHA256 {
		s.faultSOAP(w, r, log, v, prefix, soapError(string(rest.CodeSslAuthenticationFailed), nil,
			"the provider's security server is not the one the federation directory registers"))
		return
	}

	// Verify the signed response before anything of it reaches the client.
	rmsg, err := s.readSOAPMessage(resp.Header.Get("Content-Type"), resp.Body)
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, soapError(string(rest.CodeNetworkError), err,
			"the response of the provider's security server could not be read (HTTP %d)", resp.StatusCode))
		return
	}
	defer rmsg.Close()
	if f, ferr := soap.ParseFault(rmsg.Envelope, s.soapLimits()); ferr == nil {
		// The provider's security server or the service refused: pass it on.
		s.passFault(w, log, v, f, "provider")
		return
	}
	verified, err := soap.Verify(rmsg.ContentType, rmsg.Envelope, s.soapLimits())
	if err == nil {
		err = verified.CheckServiceProvider()
	}
	if err == nil {
		err = verified.CheckRequestDigest(signed)
	}
	if err == nil {
		err = verified.CheckAttachments(rmsg.Attachments)
	}
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, err)
		return
	}
	if err := s.verifySigner(r.Context(), doc, verified.Chain, verified.OCSP, pki.ClientID{}); err != nil {
		s.faultSOAP(w, r, log, v, prefix, soapError(string(rest.CodeCertValidation), err, "the response's signing certificate is not acceptable"))
		return
	}
	renv := verified.Envelope
	if err := checkEchoed(hdr, &renv.Header); err != nil {
		s.faultSOAP(w, r, log, v, prefix, err)
		return
	}
	if err := renv.CheckRequestHash(msg.Envelope); err != nil {
		s.faultSOAP(w, r, log, v, prefix, err)
		return
	}
	if _, err := s.record(r.Context(), messagelog.Record{
		MessageID: hdr.ID, Kind: messagelog.KindResponse, Direction: messagelog.Received, Side: messagelog.Consumer,
		Protocol: messagelog.SOAP, Client: hdr.Client, Service: svc, Signed: rmsg.Envelope,
		SignerChain: chainDER(verified.Chain), OCSP: verified.OCSP, RequestHash: &reqHash, Status: http.StatusOK,
		BodyMode: messagelog.BodyFull,
	}, rmsg.attachments()); err != nil {
		s.faultSOAP(w, r, log, v, prefix, soapError(string(rest.CodeLoggingFailed), err, "the response could not be logged"))
		return
	}
	stripped, err := verified.Stripped()
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, fmt.Errorf("strip the signature: %w", err))
		return
	}
	b := newBoundary()
	w.Header().Set("Content-Type", rmsg.contentType(b))
	w.WriteHeader(http.StatusOK)
	if err := rmsg.write(w, stripped, b); err != nil {
		log.Warn("client went away while the response was written", "err", err)
	}
	s.m.exchange("consumer", serviceKey(svc), http.StatusOK, time.Since(start))
	log.Info("exchange done", "status", http.StatusOK, "ms", time.Since(start).Milliseconds())
}

// serveSOAPProvider serves a signed SOAP request from another security server.
func (s *Server) serveSOAPProvider(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	const prefix, origin = soap.PrefixServerProxy, rest.OriginServerProxy
	log := s.log.With("side", "provider", "protocol", "soap")
	v := faultVersion(r.Header.Get("Content-Type"))
	authOCSP := r.Header.Get(HeaderAuthOCSP)

	msg, err := s.readSOAPMessage(r.Header.Get("Content-Type"), r.Body)
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, err)
		return
	}
	defer msg.Close()
	// Everything below works on the envelope parsed from the verified bytes:
	// what is processed is exactly what was signed.
	verified, err := soap.Verify(msg.ContentType, msg.Envelope, s.soapLimits())
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, err)
		return
	}
	env := verified.Envelope
	v = env.Version
	hdr := &env.Header
	log = log.With("messageId", hdr.ID, "client", hdr.Client.String())
	if hdr.Service == nil {
		s.faultSOAP(w, r, log, v, prefix, soapError(soap.CodeMissingHeaderField, nil, "Required field 'service' is missing"))
		return
	}
	svcID := *hdr.Service
	log = log.With("service", svcID.String())
	doc, err := s.checkOperational(origin)
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, fromREST(err, origin))
		return
	}
	// The TLS peer must be a registered security server of the client, with a
	// valid chain and a good, fresh OCSP response.
	if err := s.checkPeer(r.Context(), doc, r.TLS.PeerCertificates, authOCSP, hdr.Client); err != nil {
		s.faultSOAP(w, r, log, v, prefix, soapError(string(rest.CodeSslAuthenticationFailed), err,
			"the calling security server is not registered for this client, or its certificate is not acceptable"))
		return
	}
	release, err := s.limiter.acquire(w, hdr.Client.String(), origin)
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, fromREST(err, origin))
		return
	}
	defer release()
	if err := verified.CheckClient(); err != nil {
		s.faultSOAP(w, r, log, v, prefix, err)
		return
	}
	if err := s.verifySigner(r.Context(), doc, verified.Chain, verified.OCSP, pki.ClientID{}); err != nil {
		s.faultSOAP(w, r, log, v, prefix, soapError(string(rest.CodeCertValidation), err, "the request's signing certificate is not acceptable for this client"))
		return
	}
	if err := verified.CheckAttachments(msg.Attachments); err != nil {
		s.faultSOAP(w, r, log, v, prefix, err)
		return
	}
	// Keyed by the signed message's digest, like REST: clients may reuse ids.
	if err := s.replay.Check(hdr.Client.String(), hex.EncodeToString(verified.Digest), verified.SigningTime); err != nil {
		s.faultSOAP(w, r, log, v, prefix, soapError(soap.CodeInvalidMessage, err,
			"the request was already received, or was signed outside the allowed time window"))
		return
	}
	if svcID.Client.MemberID() != s.owner {
		s.faultSOAP(w, r, log, v, prefix, soapError(string(rest.CodeUnknownService), nil, "unknown service %s", svcID))
		return
	}
	svc := s.store.service(serviceKey(svcID))
	meta := svc == nil && isSOAPMetaservice(svcID.Code)
	if svc == nil && !meta {
		s.faultSOAP(w, r, log, v, prefix, soapError(string(rest.CodeUnknownService), nil, "unknown service %s", svcID))
		return
	}
	if svc != nil && !allowed(svc, hdr.Client) {
		s.faultSOAP(w, r, log, v, prefix, soapError(string(rest.CodeAccessDenied), nil,
			"client %s may not call %s", hdr.Client, serviceKey(svcID)))
		return
	}
	bodyMode := messagelog.BodyFull
	if svc != nil && svc.BodyLogging == BodyLoggingMetadata {
		bodyMode = messagelog.BodyMetadataOnly
	}
	reqHash, err := s.record(r.Context(), messagelog.Record{
		MessageID: hdr.ID, Kind: messagelog.KindRequest, Direction: messagelog.Received, Side: messagelog.Provider,
		Protocol: messagelog.SOAP, Client: hdr.Client, Service: svcID, Signed: msg.Envelope,
		SignerChain: chainDER(verified.Chain), OCSP: verified.OCSP, BodyMode: bodyMode,
	}, msg.attachments())
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, soapError(string(rest.CodeLoggingFailed), err, "the request could not be logged"))
		return
	}
	// The service sees the envelope as the client sent it.
	stripped, err := verified.Stripped()
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, fmt.Errorf("strip the signature: %w", err))
		return
	}

	var (
		rmsg *soapMessage
		renv *soap.Envelope // rmsg's envelope, parsed
	)
	if meta {
		rmsg, err = s.soapMeta(r.Context(), env, stripped)
	} else {
		rmsg, renv, err = s.callSOAPBackend(r.Context(), svc, msg, env, stripped, r.Header.Values(headerSOAPAction))
	}
	if err != nil {
		var f *soap.Fault
		if errors.As(err, &f) {
			s.passFault(w, log, v, f, "service")
			return
		}
		s.faultSOAP(w, r, log, v, prefix, err)
		return
	}
	defer rmsg.Close()

	// Answer: requestHash added, signed bound to the request, logged.
	if renv == nil {
		if renv, err = soap.ParseEnvelope("", rmsg.Envelope, s.soapLimits()); err != nil {
			s.faultSOAP(w, r, log, v, prefix, serviceFailed(err))
			return
		}
	}
	ocspDER, err := s.signStapler.Staple()
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, soapError(string(rest.CodeCertValidation), err, "this security server has no fresh OCSP response for its signing certificate"))
		return
	}
	// One step from the parsed response: requestHash inserted (what
	// soap.InsertRequestHash returns), then signed.
	signed, err := renv.Sign(soap.Signer{Key: s.sign.key, Chain: s.sign.chain, OCSP: ocspDER}, soap.SignOptions{
		Attachments: rmsg.Attachments, RequestDigest: verified.Digest, RequestHashOf: stripped, Limits: s.soapLimits()})
	if err != nil {
		s.faultSOAP(w, r, log, v, prefix, serviceFailed(err))
		return
	}
	if _, err := s.record(r.Context(), messagelog.Record{
		MessageID: hdr.ID, Kind: messagelog.KindResponse, Direction: messagelog.Sent, Side: messagelog.Provider,
		Protocol: messagelog.SOAP, Client: hdr.Client, Service: svcID, Signed: signed,
		SignerChain: chainDER(s.sign.chain), OCSP: ocspDER, RequestHash: &reqHash, Status: http.StatusOK, BodyMode: bodyMode,
	}, rmsg.attachments()); err != nil {
		s.faultSOAP(w, r, log, v, prefix, soapError(string(rest.CodeLoggingFailed), err, "the response could not be logged"))
		return
	}
	b := newBoundary()
	w.Header().Set("Content-Type", rmsg.contentType(b))
	w.WriteHeader(http.StatusOK)
	if err := rmsg.write(w, signed, b); err != nil {
		log.Warn("consumer server went away while the response was written", "err", err)
	}
	s.m.exchange("provider", serviceKey(svcID), http.StatusOK, time.Since(start))
	log.Info("exchange served", "status", http.StatusOK, "ms", time.Since(start).Milliseconds())
}

// serviceFailed blames the service for a response that is not an
// acceptable X-Road envelope: ServiceFailed.<code>, as X-Road does.
func serviceFailed(err error) error {
	var e *soap.Error
	if errors.As(err, &e) {
		return &soap.Error{Code: soap.CodeServiceFailed + "." + e.Code, Msg: "the service's response is not acceptable: " + e.Msg, Err: err}
	}
	return soapError(soap.CodeServiceFailed, err, "the service's response is not acceptable")
}

// callSOAPBackend POSTs the stripped envelope (with the request's
// attachments) to the service with Content-Type and SOAPAction only, and
// reads its answer under the limits, returned with its parsed envelope.
// reqEnv is the verified request (envelope is its bytes without our Security
// header, which carries no X-Road header: its version and headers are
// envelope's). A SOAP fault from the service comes back as a *soap.Fault
// error, to be passed on as it is.
func (s *Server) callSOAPBackend(ctx context.Context, svc *ServiceConfig, req *soapMessage, reqEnv *soap.Envelope, envelope []byte, action []string) (*soapMessage, *soap.Envelope, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(svc.Timeout))
	defer cancel()
	timeout := func(err error) error {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return soapError(string(rest.CodeServiceTimeout), err, "the service did not answer within %s", time.Duration(svc.Timeout))
		}
		return nil
	}
	ct, body, n, done := req.body(envelope)
	defer done()
	out, err := http.NewRequestWithContext(ctx, http.MethodPost, svc.URL, body)
	if err != nil {
		return nil, nil, soapError(soap.CodeServiceFailed, err, "the service could not be reached")
	}
	out.ContentLength = n
	out.Header.Set("Content-Type", ct)
	if len(action) > 0 {
		out.Header[headerSOAPAction] = action
	}
	resp, err := s.backendFor(svc).Do(out)
	if err != nil {
		if terr := timeout(err); terr != nil {
			return nil, nil, terr
		}
		return nil, nil, soapError(soap.CodeServiceFailed, err, "the service could not be reached")
	}
	defer resp.Body.Close()
	rmsg, err := s.readSOAPMessage(resp.Header.Get("Content-Type"), resp.Body)
	if err != nil {
		if terr := timeout(err); terr != nil {
			return nil, nil, terr
		}
		return nil, nil, serviceFailed(err)
	}
	if f, ferr := soap.ParseFault(rmsg.Envelope, s.soapLimits()); ferr == nil {
		rmsg.Close()
		return nil, nil, f
	}
	renv, err := soap.ParseEnvelope(rmsg.ContentType, rmsg.Envelope, s.soapLimits())
	if err == nil {
		if renv.Version != reqEnv.Version {
			err = soapError(soap.CodeInvalidContentType, nil, "the response's SOAP version differs from the request's")
		} else {
			err = checkEchoed(&reqEnv.Header, &renv.Header)
		}
	}
	if err != nil {
		rmsg.Close()
		return nil, nil, serviceFailed(err)
	}
	return rmsg, renv, nil
}
