package rest

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"
)

// X-Road REST r1 headers, and Passerelle's own between security servers.
const (
	HeaderClient           = "X-Road-Client"
	HeaderService          = "X-Road-Service"
	HeaderID               = "X-Road-Id"
	HeaderUserID           = "X-Road-Userid" // canonical form of X-Road-UserId
	HeaderIssue            = "X-Road-Issue"
	HeaderRepresentedParty = "X-Road-Represented-Party"
	HeaderSecurityServer   = "X-Road-Security-Server"
	HeaderRequestID        = "X-Road-Request-Id"
	HeaderRequestHash      = "X-Road-Request-Hash"
	HeaderError            = "X-Road-Error"
	// HeaderSignature carries the compact JWS of a request or response
	// between security servers. It is never signed itself, and the provider
	// removes it before the service sees the request (as the consumer does
	// before the client sees the response).
	HeaderSignature = "Passerelle-Signature"
)

// hopByHop lists the headers that concern one connection only (RFC 9110
// §7.6.1) plus those X-Road strips (Host, User-Agent, Server).
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Host", "User-Agent", "Server",
}

// EndToEnd returns a copy of h without hop-by-hop headers (those RFC 9110
// names, any Proxy-*, and those listed in Connection), Host, User-Agent and
// Server: what a security server passes on, in either direction. It also
// drops HeaderSignature, which only travels between security servers.
func EndToEnd(h http.Header) http.Header {
	out := make(http.Header, len(h))
	var listed []string
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				listed = append(listed, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	// The values are copied into one array, each key's capped so that
	// appending to one does not run into the next.
	n := 0
	for _, vv := range h {
		n += len(vv)
	}
	values := make([]string, 0, n)
	for k, vv := range h {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if slices.Contains(hopByHop, ck) || strings.HasPrefix(ck, "Proxy-") ||
			slices.Contains(listed, ck) || ck == HeaderSignature {
			continue
		}
		if prev, ok := out[ck]; ok || len(vv) == 0 {
			// A non-canonical key next to its canonical twin, or no value
			// (nil, as before).
			out[ck] = append(prev, vv...)
			continue
		}
		start := len(values)
		values = append(values, vv...)
		out[ck] = values[start:len(values):len(values)]
	}
	return out
}

// signedHeaders are the end-to-end headers, besides every X-Road-* header,
// that carry meaning for the service or the client and so are covered by
// signatures and by the X-Road-Request-Hash. Others (Authorization, Cookie,
// tracing headers, Date, Content-Length – the body length is signed on its
// own – and Accept-Encoding, which Go's transport may add) pass unsigned.
var signedHeaders = []string{
	"accept",
	"accept-charset",
	"accept-language",
	"content-disposition",
	"content-encoding",
	"content-language",
	"content-location",
	"content-range",
	"content-type",
	"etag",
	"if-match",
	"if-modified-since",
	"if-none-match",
	"if-range",
	"if-unmodified-since",
	"last-modified",
	"location",
	"range",
	"retry-after",
	"soapaction",
}

// SignedHeaderNames returns the fixed list of non X-Road headers that
// signatures cover, lower-case. Every X-Road-* header is covered too.
func SignedHeaderNames() []string { return slices.Clone(signedHeaders) }

// IsSignedHeader reports whether a header named name (any case) is covered
// by signatures and by the request hash: every X-Road-* header except
// X-Road-Error (set by whichever security server fails), and the
// SignedHeaderNames.
func IsSignedHeader(name string) bool {
	return isSignedLower(lowerName(name))
}

func isSignedLower(l string) bool {
	if strings.HasPrefix(l, "x-road-") {
		return l != "x-road-error"
	}
	_, ok := slices.BinarySearch(signedHeaders, l)
	return ok
}

// lowerName is strings.ToLower(name), without allocating for the usual
// header names in canonical form.
func lowerName(name string) string {
	if l, ok := lowerNames[name]; ok {
		return l
	}
	return strings.ToLower(name)
}

var lowerNames = func() map[string]string {
	names := []string{
		HeaderClient, HeaderService, HeaderID, HeaderUserID, HeaderIssue,
		HeaderRepresentedParty, HeaderSecurityServer, HeaderRequestID,
		HeaderRequestHash, HeaderError, HeaderSignature,
		// Frequent unsigned ones.
		"Accept-Encoding", "Authorization", "Cache-Control", "Connection",
		"Content-Length", "Cookie", "Date", "Host", "Server", "Set-Cookie",
		"Traceparent", "Tracestate", "User-Agent", "Vary",
	}
	for _, l := range signedHeaders {
		names = append(names, textproto.CanonicalMIMEHeaderKey(l))
	}
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[n] = strings.ToLower(n)
	}
	return m
}()

// SignedHeader is one signed header: its lower-case name and its values in
// the order received.
type SignedHeader struct {
	Name   string
	Values []string
}

// CanonicalHeaders returns the signed headers of h in canonical form: names
// lower-case, sorted; values in received order, untouched (Go's parser
// already trimmed surrounding whitespace). Empty when h has none.
func CanonicalHeaders(h http.Header) []SignedHeader {
	var out []SignedHeader
	for k, vv := range h {
		l := lowerName(k)
		if !isSignedLower(l) {
			continue
		}
		if out == nil {
			out = make([]SignedHeader, 0, len(h))
		}
		if len(vv) == 0 {
			continue
		}
		if i := slices.IndexFunc(out, func(s SignedHeader) bool { return s.Name == l }); i >= 0 {
			// A non-canonical key ("x-road-id" set directly in the map) next
			// to its canonical twin: merge.
			out[i].Values = append(slices.Clip(out[i].Values), vv...)
			continue
		}
		out = append(out, SignedHeader{Name: l, Values: vv})
	}
	slices.SortFunc(out, func(a, b SignedHeader) int { return strings.Compare(a.Name, b.Name) })
	return out
}
