package rest

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Origin is the first part of an X-Road error type: who failed.
type Origin string

const (
	// OriginClient blames the client information system (a malformed request).
	OriginClient Origin = "Client"
	// OriginClientProxy blames the consumer's security server.
	OriginClientProxy Origin = "Server.ClientProxy"
	// OriginServerProxy blames the provider's security server (or the
	// service behind it, for ServiceFailed and its sub-codes).
	OriginServerProxy Origin = "Server.ServerProxy"
)

// Code is the rest of an X-Road error type, after the origin. The names are
// X-Road's (ee.ria.xroad.common.ErrorCodes) where X-Road has one; the few it
// lacks are marked.
type Code string

const (
	CodeBadRequest              Code = "BadRequest"              // malformed r1 request
	CodeInvalidRequest          Code = "InvalidRequest"          // well-formed but not acceptable
	CodeInvalidClientIdentifier Code = "InvalidClientIdentifier" // X-Road-Client unusable
	CodeInvalidHTTPMethod       Code = "InvalidHttpMethod"
	CodeMissingHeader           Code = "MissingHeader"
	CodeSslAuthenticationFailed Code = "SslAuthenticationFailed" // the caller is not who it must be
	CodeAccessDenied            Code = "AccessDenied"
	CodeUnknownService          Code = "UnknownService"
	CodeUnknownMember           Code = "UnknownMember"
	CodeServiceDisabled         Code = "ServiceDisabled"
	CodeRequestTooLarge         Code = "RequestTooLarge" // Passerelle's; X-Road has none
	CodeTooManyRequests         Code = "TooManyRequests" // Passerelle's; X-Road has none
	CodeNetworkError            Code = "NetworkError"
	CodeServiceFailed           Code = "ServiceFailed"
	CodeServiceTimeout          Code = "ServiceFailed.Timeout" // Passerelle's sub-code of ServiceFailed
	CodeMissingSignature        Code = "MissingSignature"
	CodeInvalidSignature        Code = "InvalidSignatureValue"
	CodeCertValidation          Code = "CertValidation"
	CodeIncorrectCertificate    Code = "IncorrectCertificate"
	CodeInvalidMessage          Code = "InvalidMessage" // signed fields differ from the wire
	CodeInconsistentResponse    Code = "InconsistentResponse"
	CodeInvalidSecurityServer   Code = "InvalidSecurityServer"
	CodeLoggingFailed           Code = "LoggingFailed"
	CodeTimestamperFailed       Code = "LoggingFailed.TimestamperFailed"
	CodeOutdatedGlobalConf      Code = "OutdatedGlobalConf"
	CodeDatabaseError           Code = "DatabaseError"
	CodeInternalError           Code = "InternalError"
)

// normsStatus maps codes to the interoperability norms' statuses; a code not
// listed is 500.
var normsStatus = map[Code]int{
	CodeBadRequest:              http.StatusBadRequest,
	CodeInvalidRequest:          http.StatusBadRequest,
	CodeInvalidClientIdentifier: http.StatusBadRequest,
	CodeInvalidHTTPMethod:       http.StatusBadRequest,
	CodeMissingHeader:           http.StatusBadRequest,
	CodeSslAuthenticationFailed: http.StatusUnauthorized,
	CodeAccessDenied:            http.StatusForbidden,
	CodeUnknownService:          http.StatusNotFound,
	CodeUnknownMember:           http.StatusNotFound,
	CodeServiceDisabled:         http.StatusNotFound,
	CodeRequestTooLarge:         http.StatusRequestEntityTooLarge,
	CodeTooManyRequests:         http.StatusTooManyRequests,
	CodeNetworkError:            http.StatusBadGateway,
	CodeServiceFailed:           http.StatusBadGateway,
	CodeServiceTimeout:          http.StatusGatewayTimeout,
}

// Error is a security server's error as it reaches a REST client: an X-Road
// type, a public message, a detail UUID that ties the wire to the log, and
// the HTTP status (under the interoperability norms; Strict mode maps it to
// X-Road's 400/500). Err, the internal cause, is never written to the wire:
// log it, with Detail.
type Error struct {
	Type    string // e.g. "Server.ServerProxy.AccessDenied"
	Message string // public, safe to show the client
	Detail  string // a UUID, also logged
	Status  int    // HTTP status under the interoperability norms
	Err     error  // internal cause; logged, never sent
}

// NewError makes an Error of origin and code with a public message, an
// internal cause (may be nil) and a fresh detail UUID.
func NewError(origin Origin, code Code, message string, cause error) *Error {
	st, ok := normsStatus[code]
	if !ok {
		st = http.StatusInternalServerError
	}
	return &Error{
		Type:    string(origin) + "." + string(code),
		Message: message,
		Detail:  uuid.NewString(),
		Status:  st,
		Err:     cause,
	}
}

// ClientError blames the client information system (status 400 unless the
// code says otherwise).
func ClientError(code Code, message string, cause error) *Error {
	return NewError(OriginClient, code, message, cause)
}

// ClientProxyError blames the consumer's security server.
func ClientProxyError(code Code, message string, cause error) *Error {
	return NewError(OriginClientProxy, code, message, cause)
}

// ServerProxyError blames the provider's security server.
func ServerProxyError(code Code, message string, cause error) *Error {
	return NewError(OriginServerProxy, code, message, cause)
}

// Error returns the type, message, detail and internal cause: for logs only.
func (e *Error) Error() string {
	s := e.Type + ": " + e.Message + " (detail " + e.Detail + ")"
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.Err }

// Is matches another *Error of the same Type, so that
// errors.Is(err, rest.ClientError(rest.CodeBadRequest, "", nil)) works; most
// callers use errors.As and look at Type.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Type == e.Type
}

// HasCode reports whether e's type ends in code (whatever its origin).
func (e *Error) HasCode(code Code) bool {
	return strings.HasSuffix(e.Type, "."+string(code))
}

// IsClientError reports whether e blames the client information system.
func (e *Error) IsClientError() bool { return strings.HasPrefix(e.Type, string(OriginClient)+".") }

// ErrorMode chooses how WriteError maps errors to the wire.
type ErrorMode struct {
	// Strict uses X-Road's own mapping: 400 for Client.* errors, 500 for
	// every other one. The default follows the interoperability norms (400,
	// 401, 403, 404, 413, 429, 500, 502, 504).
	Strict bool
	// Origin types an error that is not an *Error (an internal error of the
	// caller): OriginClientProxy when empty.
	Origin Origin
}

// StatusFor returns the HTTP status e is written with under mode.
func (e *Error) StatusFor(mode ErrorMode) int {
	if mode.Strict {
		if e.IsClientError() {
			return http.StatusBadRequest
		}
		return http.StatusInternalServerError
	}
	if e.Status < 400 || e.Status > 599 {
		return http.StatusInternalServerError
	}
	return e.Status
}

// wireError is the body: X-Road's type/message/detail and the
// interoperability norms' code/error in one object.
type wireError struct {
	XMLName xml.Name `json:"-" xml:"error"`
	Type    string   `json:"type" xml:"type"`
	Message string   `json:"message" xml:"message"`
	Detail  string   `json:"detail" xml:"detail"`
	Code    string   `json:"code" xml:"code"`
	Error   string   `json:"error" xml:"error"`
}

// appendJSON writes e as json.Marshal does (TestErrorBodyMatchesMarshal).
func (e *wireError) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"type":`...)
	dst = appendJSONString(dst, e.Type)
	dst = append(dst, `,"message":`...)
	dst = appendJSONString(dst, e.Message)
	dst = append(dst, `,"detail":`...)
	dst = appendJSONString(dst, e.Detail)
	dst = append(dst, `,"code":`...)
	dst = appendJSONString(dst, e.Code)
	dst = append(dst, `,"error":`...)
	dst = appendJSONString(dst, e.Error)
	return append(dst, '}')
}

// AsError returns err as an *Error: itself if it is one (or wraps one), or
// an InternalError of mode's origin with a generic message and err as cause.
func AsError(err error, mode ErrorMode) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	o := mode.Origin
	if o == "" {
		o = OriginClientProxy
	}
	return NewError(o, CodeInternalError, "internal error in the security server", err)
}

// WriteError writes err as a security server's REST error: the X-Road-Error
// header, a status per mode, and a body in JSON (the default) or XML when
// the request's Accept prefers XML. Only the public fields are written; the
// caller logs err (its Error() includes the cause and the detail). r may be
// nil (JSON is then used).
func WriteError(w http.ResponseWriter, r *http.Request, err error, mode ErrorMode) {
	e := AsError(err, mode)
	body := wireError{Type: e.Type, Message: e.Message, Detail: e.Detail, Code: e.Type, Error: e.Message}
	h := w.Header()
	// Whatever the service had set no longer describes this body.
	for _, k := range []string{"Content-Length", "Content-Encoding", "Content-Disposition", "Etag", "Last-Modified"} {
		h.Del(k)
	}
	// h.Set each, with one array for the four values (the keys are
	// canonical).
	v := make([]string, 4)
	set := func(i int, k, val string) {
		v[i] = val
		h[k] = v[i : i+1 : i+1]
	}
	set(0, HeaderError, e.Type)
	set(1, "X-Content-Type-Options", "nosniff")
	var b []byte
	if r != nil && PrefersXML(r.Header.Get("Accept")) {
		set(2, "Content-Type", "application/xml;charset=utf-8")
		x, _ := xml.Marshal(body) // strings only: cannot fail
		b = append([]byte(xml.Header), x...)
	} else {
		set(2, "Content-Type", "application/json;charset=utf-8")
		b = body.appendJSON(make([]byte, 0, 128+2*(len(body.Type)+len(body.Message))))
	}
	set(3, "Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(e.StatusFor(mode))
	if r == nil || r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// PrefersXML reports whether an Accept header value ranks an XML media type
// (application/xml, text/xml, or a +xml suffix) strictly above JSON. With no
// Accept, or a tie, JSON wins, as X-Road defaults to application/json.
func PrefersXML(accept string) bool {
	if accept == "" {
		return false
	}
	var qJSON, qXML float64 = -1, -1
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 && f <= 1 {
				q = f
			}
		}
		switch {
		case mt == "application/json" || strings.HasSuffix(mt, "+json"):
			qJSON = max(qJSON, q)
		case mt == "application/xml" || mt == "text/xml" || strings.HasSuffix(mt, "+xml"):
			qXML = max(qXML, q)
		case mt == "*/*" || mt == "application/*":
			qJSON = max(qJSON, q)
		}
	}
	return qXML > 0 && qXML > qJSON
}

// ErrNotSecurityServerError reports a response without X-Road-Error: the
// error, if any, is the service's own and passes as is.
var ErrNotSecurityServerError = errors.New("rest: response carries no X-Road-Error header")

// maxErrorBody bounds how much of an error response ParseError reads.
const maxErrorBody = 64 << 10

// ParseError reads a security server's error from resp (consuming at most
// 64 KiB of its body; the caller still closes it). It returns
// ErrNotSecurityServerError when resp has no X-Road-Error header. The type
// comes from the body, or from the header when the body is unreadable; the
// Status is resp's.
func ParseError(resp *http.Response) (*Error, error) {
	typ := resp.Header.Get(HeaderError)
	if typ == "" {
		return nil, ErrNotSecurityServerError
	}
	e := &Error{Type: typ, Status: resp.StatusCode}
	if resp.Body == nil {
		return e, nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return e, fmt.Errorf("rest: reading error body: %w", err)
	}
	var body wireError
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/xml" || mt == "text/xml" || strings.HasSuffix(mt, "+xml") {
		err = xml.Unmarshal(data, &body)
	} else {
		err = json.Unmarshal(data, &body)
	}
	if err != nil {
		return e, fmt.Errorf("%w: error body: %v", ErrMalformed, err)
	}
	if body.Type != "" {
		e.Type = body.Type
	}
	e.Message = body.Message
	if e.Message == "" {
		e.Message = body.Error
	}
	e.Detail = body.Detail
	return e, nil
}
