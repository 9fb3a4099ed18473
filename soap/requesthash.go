package soap

import (
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
)

// ErrRequestHash reports a missing or wrong requestHash header.
var ErrRequestHash = errors.New("soap: requestHash does not match the request")

// RequestHash is X-Road's requestHash of a request: base64 of the SHA-512 of
// the raw HTTP POST body, or of the SOAP part when the request has
// attachments. Its algorithmId is AlgSHA512.
func RequestHash(soapPart []byte) string {
	s := sha512.Sum512(soapPart)
	return base64.StdEncoding.EncodeToString(s[:])
}

// InsertRequestHash is the provider side: it adds
// <xrd:requestHash algorithmId="…#sha512"> for request (the request's SOAP
// part, as the service received it) as the last header of response, leaving
// every other byte of response as the service wrote it. A response that
// already carries a requestHash is refused.
func InsertRequestHash(response, request []byte, lim Limits) ([]byte, error) {
	env, err := ParseEnvelope("", response, lim)
	if err != nil {
		return nil, err
	}
	return env.InsertRequestHash(request)
}

// InsertRequestHash is InsertRequestHash for a response already parsed.
// (Envelope.Sign with SignOptions.RequestHashOf inserts and signs at once.)
func (e *Envelope) InsertRequestHash(request []byte) ([]byte, error) {
	el, err := e.requestHashElement(request)
	if err != nil {
		return nil, err
	}
	return splice(e.Raw, e.lay.headerCloseStart, el), nil
}

// requestHashElement checks that e may take a requestHash header and returns
// the element to insert before </Header>.
func (e *Envelope) requestHashElement(request []byte) ([]byte, error) {
	if e.Header.RequestHashAlgorithm != "" || e.Header.RequestHash != "" || len(childNS(e.header, NamespaceXRoad, "requestHash")) > 0 {
		return nil, errorf(CodeDuplicateHeaderField, nil, "Duplicate header field 'requestHash'")
	}
	lay := e.lay
	if err := lay.check(); err != nil {
		return nil, err
	}
	if lay.selfClosing {
		return nil, errorf(CodeMissingHeader, nil, "empty Header")
	}
	return []byte(`<xrd:requestHash xmlns:xrd="` + NamespaceXRoad + `" algorithmId="` + AlgSHA512 + `">` + RequestHash(request) + `</xrd:requestHash>`), nil
}

// CheckRequestHash is the consumer side: the response's requestHash must be
// X-Road's hash of request (the SOAP part the client sent).
func (e *Envelope) CheckRequestHash(request []byte) error {
	if e.Header.RequestHash == "" {
		return errorf(CodeMissingHeaderField, ErrRequestHash, "Required field 'requestHash' is missing")
	}
	if e.Header.RequestHashAlgorithm != AlgSHA512 {
		return errorf(CodeInvalidRequestHash, ErrRequestHash, "unsupported requestHash algorithm")
	}
	if subtle.ConstantTimeCompare([]byte(e.Header.RequestHash), []byte(RequestHash(request))) != 1 {
		return errorf(CodeInvalidRequestHash, ErrRequestHash, "requestHash does not match the request")
	}
	return nil
}
