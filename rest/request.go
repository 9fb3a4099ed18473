package rest

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"

	"github.com/passerelle/passerelle/pki"
)

// Kind says what an r1 request asks for: a service, or one of X-Road's REST
// metaservices (which the security server answers itself).
type Kind uint8

const (
	KindService        Kind = iota // /r1/I/C/M/S/SERVICE[/path]
	KindListClients                // /listClients[?xRoadInstance=I]
	KindListMethods                // /r1/I/C/M/S/listMethods
	KindAllowedMethods             // /r1/I/C/M/S/allowedMethods
	KindGetOpenAPI                 // /r1/I/C/M/S/getOpenAPI?serviceCode=CODE
)

func (k Kind) String() string {
	switch k {
	case KindService:
		return "service"
	case KindListClients:
		return "listClients"
	case KindListMethods:
		return "listMethods"
	case KindAllowedMethods:
		return "allowedMethods"
	case KindGetOpenAPI:
		return "getOpenAPI"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// ProtocolPrefix starts every r1 service path.
const ProtocolPrefix = "/r1/"

// maxHeaderValue bounds the X-Road header values we accept (X-Road-Id,
// X-Road-UserId, ...).
const maxHeaderValue = 1024

// Request is a client's r1 request as the security server understands it.
type Request struct {
	Kind    Kind
	Method  string
	Client  pki.ClientID  // the last X-Road-Client; zero only for KindListClients
	Service pki.ServiceID // the target (for metaservices, the subsystem and the metaservice name)
	// Path is the resource path after the service code, escaped exactly as
	// received ("" when there is none, "/" for a trailing slash).
	Path string
	// RawQuery is the query as received, without '?'.
	RawQuery string
	// ID is X-Road-Id, generated (UUID v4) when the client sent none.
	ID          string
	IDGenerated bool
	// The optional X-Road headers, as received ("" when absent).
	UserID           string
	Issue            string
	RepresentedParty string
	SecurityServer   string
	// MetaServiceParam is getOpenAPI's serviceCode or listClients'
	// xRoadInstance ("" when absent).
	MetaServiceParam string
	// Header holds the end-to-end headers to pass on (see EndToEnd), with a
	// single X-Road-Client (the one that counts) and X-Road-Id set.
	Header http.Header
}

// ParseRequest reads an r1 request (or a metaservice request) from r. Each
// identifier part is percent-decoded on its own, from r.URL's escaped path,
// so that an encoded '/' stays inside its part. Errors are *Error of type
// Client.BadRequest (or Client.InvalidClientIdentifier for X-Road-Client),
// ready for WriteError.
func ParseRequest(r *http.Request) (*Request, error) {
	if r.URL == nil {
		return nil, badRequest("request has no URL", nil)
	}
	req := &Request{Method: r.Method, RawQuery: r.URL.RawQuery}
	ep := r.URL.EscapedPath()
	switch {
	case ep == "/listClients":
		req.Kind = KindListClients
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, badRequest("malformed query string", err)
		}
		if inst := q.Get("xRoadInstance"); inst != "" {
			if !pki.ValidPart(inst) {
				return nil, badRequest("xRoadInstance is not a valid identifier part", nil)
			}
			req.MetaServiceParam = inst
		}
	case strings.HasPrefix(ep, ProtocolPrefix):
		if err := req.parsePath(ep[len(ProtocolPrefix):]); err != nil {
			return nil, err
		}
	default:
		return nil, badRequest("path must start with /r1/INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE (X-Road Message Protocol for REST r1)", nil)
	}

	if vv := r.Header.Values(HeaderClient); len(vv) > 0 {
		c, err := pki.ParseClientID(strings.TrimSpace(vv[len(vv)-1]))
		if err != nil {
			return nil, ClientError(CodeInvalidClientIdentifier, "X-Road-Client must be INSTANCE/CLASS/MEMBER[/SUBSYSTEM] with parts from A-Z a-z 0-9 '()+,-.=?", err)
		}
		req.Client = c
	} else if req.Kind != KindListClients {
		return nil, ClientError(CodeMissingHeader, "the X-Road-Client header is required", nil)
	}

	var err error
	if req.ID, err = lastValue(r.Header, HeaderID); err != nil {
		return nil, err
	}
	if req.ID == "" {
		req.ID, req.IDGenerated = uuid.NewString(), true
	}
	for _, f := range []struct {
		dst  *string
		name string
	}{
		{&req.UserID, HeaderUserID},
		{&req.Issue, HeaderIssue},
		{&req.RepresentedParty, HeaderRepresentedParty},
		{&req.SecurityServer, HeaderSecurityServer},
	} {
		if *f.dst, err = lastValue(r.Header, f.name); err != nil {
			return nil, err
		}
	}

	req.Header = EndToEnd(r.Header)
	if !req.Client.IsZero() {
		req.Header[HeaderClient] = []string{req.Client.String()}
	}
	req.Header[HeaderID] = []string{req.ID}
	return req, nil
}

// checkResourcePath refuses a resource path that could climb out of the
// service's base URL once a backend (or a proxy before it) normalises it:
// a "." or ".." segment, raw or percent-encoded, also behind an encoded
// slash or backslash inside a segment.
func checkResourcePath(escaped string) error {
	for _, seg := range strings.Split(escaped, "/") {
		d, err := url.PathUnescape(seg)
		if err != nil {
			return badRequest("the resource path is not valid percent-encoding", err)
		}
		for _, part := range strings.FieldsFunc(d, func(r rune) bool { return r == '/' || r == '\\' }) {
			if part == "." || part == ".." {
				return badRequest("the resource path must not contain . or .. segments", nil)
			}
		}
	}
	return nil
}

// parsePath reads INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/path] (escaped).
func (req *Request) parsePath(rest string) error {
	// Split off the five identifier parts, keep the rest escaped.
	var parts [5]string
	for i := range parts {
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			if i < 4 {
				return badRequest("path must name INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE", nil)
			}
			parts[i], rest = rest, ""
			break
		}
		parts[i], rest = rest[:j], rest[j:]
		if i < 4 {
			rest = rest[1:]
		}
	}
	for i, p := range parts {
		d, err := url.PathUnescape(p)
		if err != nil {
			return badRequest(fmt.Sprintf("identifier part %d of the path is not valid percent-encoding", i+1), err)
		}
		parts[i] = d
	}
	svc, err := pki.NewServiceID(parts[:4], parts[4], "")
	if err != nil {
		return badRequest("the path's service identifier must be INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE with parts from A-Z a-z 0-9 '()+,-.=?", err)
	}
	if err := checkResourcePath(rest); err != nil {
		return err
	}
	req.Service, req.Path = svc, rest
	if rest == "" || rest == "/" {
		switch svc.Code {
		case "listMethods":
			req.Kind = KindListMethods
		case "allowedMethods":
			req.Kind = KindAllowedMethods
		case "getOpenAPI":
			req.Kind = KindGetOpenAPI
			q, err := url.ParseQuery(req.RawQuery)
			if err != nil {
				return badRequest("malformed query string", err)
			}
			code := q.Get("serviceCode")
			if !pki.ValidPart(code) {
				return badRequest("getOpenAPI needs a valid serviceCode parameter", nil)
			}
			req.MetaServiceParam = code
		}
	}
	return nil
}

// lastValue returns the last value of header name ("" if absent), refusing
// over-long values and control characters.
func lastValue(h http.Header, name string) (string, error) {
	vv := h.Values(name)
	if len(vv) == 0 {
		return "", nil
	}
	v := strings.TrimSpace(vv[len(vv)-1])
	if len(v) > maxHeaderValue {
		return "", badRequest(name+" is too long", nil)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			return "", badRequest(name+" contains control characters", nil)
		}
	}
	return v, nil
}

func badRequest(msg string, cause error) *Error {
	return ClientError(CodeBadRequest, msg, cause)
}

// ServicePath returns the r1 path of req's service, each identifier part
// percent-encoded on its own, followed by the resource path as received:
// what the consumer side sends to the provider side.
func (req *Request) ServicePath() string {
	return ServicePath(req.Service) + req.Path
}

// ServicePath returns "/r1/INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE" for s,
// each part percent-encoded on its own.
func ServicePath(s pki.ServiceID) string {
	return string(appendServicePath(make([]byte, 0, 64), s))
}

func appendServicePath(b []byte, s pki.ServiceID) []byte {
	b = append(b, ProtocolPrefix...)
	for _, p := range s.Client.Parts() {
		b = append(b, url.PathEscape(p)...)
		b = append(b, '/')
	}
	b = append(b, url.PathEscape(s.Code)...)
	return b
}
