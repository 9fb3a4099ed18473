package rest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/passerelle/passerelle/pki"
)

// ProtocolVersion is the version of the signed payloads ("v"). A receiver
// refuses any other.
const ProtocolVersion = 1

// RequestDescriptor is what a request's signature covers. Both sides build it
// with the same function (Request.Descriptor or DescribeRequest) from what
// they send or receive, and the receiver compares it field by field with
// the signed one.
type RequestDescriptor struct {
	ID       string        // X-Road-Id
	Client   pki.ClientID  // X-Road-Client (the one that counts)
	Service  pki.ServiceID // from the r1 path
	Method   string
	Path     string // resource path after the service code, escaped as received
	RawQuery string // without '?'
	Headers  []SignedHeader
	Body     BodyDigest // Length and SHA256 are signed (SHA512 serves RequestHash)
	SignedAt time.Time  // set by the signer when zero
}

// ResponseDescriptor is what a response's signature covers.
type ResponseDescriptor struct {
	ID       string // the request's X-Road-Id
	Client   pki.ClientID
	Service  pki.ServiceID
	Status   int
	Headers  []SignedHeader
	Body     BodyDigest
	Request  [sha256.Size]byte // SHA-256 of the request's compact JWS (JWSDigest)
	SignedAt time.Time
}

// Descriptor returns the descriptor of req with a body of digest body.
func (req *Request) Descriptor(body BodyDigest) RequestDescriptor {
	return RequestDescriptor{
		ID:       req.ID,
		Client:   req.Client,
		Service:  req.Service,
		Method:   req.Method,
		Path:     req.Path,
		RawQuery: req.RawQuery,
		Headers:  CanonicalHeaders(req.Header),
		Body:     body,
	}
}

// DescribeRequest parses r (see ParseRequest) and returns its descriptor
// with a body of digest body: the provider side's one call, which recomputes
// from the wire what the consumer side signed.
func DescribeRequest(r *http.Request, body BodyDigest) (RequestDescriptor, *Request, error) {
	req, err := ParseRequest(r)
	if err != nil {
		return RequestDescriptor{}, nil, err
	}
	return req.Descriptor(body), req, nil
}

// DescribeResponse returns the descriptor of a response to the request
// described by req and signed as requestJWS, with status, headers h (only
// the signed ones count) and a body of digest body. The provider calls it
// with the headers it is about to write, the consumer with resp.StatusCode
// and resp.Header.
func DescribeResponse(req *RequestDescriptor, requestJWS string, status int, h http.Header, body BodyDigest) ResponseDescriptor {
	return ResponseDescriptor{
		ID:      req.ID,
		Client:  req.Client,
		Service: req.Service,
		Status:  status,
		Headers: CanonicalHeaders(h),
		Body:    body,
		Request: JWSDigest(requestJWS),
	}
}

// JWSDigest is the SHA-256 of a compact JWS's bytes: what a response binds,
// and what the message log and the hash registry record.
func JWSDigest(compact string) [sha256.Size]byte {
	d := digests.Get().(*stringDigest)
	defer digests.Put(d)
	d.h.Reset()
	for s := compact; len(s) > 0; {
		n := copy(d.buf[:], s)
		d.h.Write(d.buf[:n])
		s = s[n:]
	}
	var sum [sha256.Size]byte
	d.h.Sum(sum[:0])
	return sum
}

// stringDigest hashes a string without copying it whole ([]byte(s) would:
// a JWS is kilobytes).
type stringDigest struct {
	h   hash.Hash
	buf [2048]byte
}

var digests = sync.Pool{New: func() any { return &stringDigest{h: sha256.New()} }}

// Payload kinds ("kind"), matching the JWS "typ".
const (
	kindRequest  = "request"
	kindResponse = "response"
)

var b64url = base64.RawURLEncoding

// wireRequest is the JSON payload of a request JWS.
type wireRequest struct {
	V          int                 `json:"v"`
	Kind       string              `json:"kind"`
	ID         string              `json:"id"`
	Client     string              `json:"client"`
	Service    string              `json:"service"`
	Method     string              `json:"method"`
	Path       string              `json:"path"`
	Query      string              `json:"query"`
	Headers    map[string][]string `json:"headers"`
	BodyLength int64               `json:"bodyLength"`
	BodySHA256 string              `json:"bodySha256"`
	SignedAt   string              `json:"signedAt"`
}

// wireResponse is the JSON payload of a response JWS.
type wireResponse struct {
	V          int                 `json:"v"`
	Kind       string              `json:"kind"`
	ID         string              `json:"id"`
	Client     string              `json:"client"`
	Service    string              `json:"service"`
	Status     int                 `json:"status"`
	Headers    map[string][]string `json:"headers"`
	BodyLength int64               `json:"bodyLength"`
	BodySHA256 string              `json:"bodySha256"`
	Request    string              `json:"request"`
	SignedAt   string              `json:"signedAt"`
}

const timeFormat = time.RFC3339Nano

// headersFromWire lists the headers of a payload decoded by encoding/json,
// in no particular order.
func headersFromWire(m map[string][]string) []SignedHeader {
	out := make([]SignedHeader, 0, len(m))
	for k, v := range m {
		out = append(out, SignedHeader{Name: k, Values: v})
	}
	return out
}

// checkWireHeaders refuses a payload header that is not a signed header
// named in canonical form, or has no value, and sorts hs by name.
func checkWireHeaders(hs []SignedHeader) ([]SignedHeader, error) {
	for _, h := range hs {
		if h.Name != strings.ToLower(h.Name) || !IsSignedHeader(h.Name) || len(h.Values) == 0 {
			return nil, fmt.Errorf("%w: payload header %q is not a signed header in canonical form", ErrMalformed, h.Name)
		}
	}
	slices.SortFunc(hs, func(a, b SignedHeader) int { return strings.Compare(a.Name, b.Name) })
	return hs, nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: payload: trailing data", ErrMalformed)
	}
	return nil
}

// decodeCommon checks and decodes the fields requests and responses share.
func decodeCommon(f *payloadFields, wantKind string) (
	c pki.ClientID, s pki.ServiceID, hs []SignedHeader, sum [sha256.Size]byte, t time.Time, err error) {
	if f.v != ProtocolVersion {
		err = fmt.Errorf("%w: payload version %d, want %d", ErrMalformed, f.v, ProtocolVersion)
		return
	}
	if f.kind != wantKind {
		err = fmt.Errorf("%w: payload kind %q, want %q", ErrMalformed, f.kind, wantKind)
		return
	}
	if c, err = pki.ParseClientID(f.client); err != nil {
		err = fmt.Errorf("%w: payload client: %v", ErrMalformed, err)
		return
	}
	if s, err = pki.ParseServiceID(f.service); err != nil {
		err = fmt.Errorf("%w: payload service: %v", ErrMalformed, err)
		return
	}
	if hs, err = checkWireHeaders(f.headers); err != nil {
		return
	}
	if sum, err = decodeSum(f.bodySHA256); err != nil {
		return
	}
	if t, err = time.Parse(timeFormat, f.signedAt); err != nil {
		err = fmt.Errorf("%w: payload signedAt: %v", ErrMalformed, err)
	}
	return
}

func decodeSum(s string) (sum [sha256.Size]byte, err error) {
	if b64url.DecodedLen(len(s)) != sha256.Size {
		return sum, fmt.Errorf("%w: payload digest has the wrong length", ErrMalformed)
	}
	if _, err := b64url.Strict().Decode(sum[:], []byte(s)); err != nil {
		return sum, fmt.Errorf("%w: payload digest: %v", ErrMalformed, err)
	}
	return sum, nil
}

// decodePayload decodes a payload of kind: decodePayloadFast when it can,
// encoding/json (decodeStrict) otherwise.
func decodePayload(payload, kind string) (payloadFields, error) {
	if f, ok := decodePayloadFast(payload, kind); ok {
		return f, nil
	}
	return decodePayloadStrict([]byte(payload), kind)
}

// decodePayloadStrict decodes a payload of kind with encoding/json.
func decodePayloadStrict(data []byte, kind string) (payloadFields, error) {
	if kind == kindRequest {
		var w wireRequest
		if err := decodeStrict(data, &w); err != nil {
			return payloadFields{}, err
		}
		return payloadFields{
			v: w.V, kind: w.Kind, id: w.ID, client: w.Client, service: w.Service,
			method: w.Method, path: w.Path, query: w.Query, headers: headersFromWire(w.Headers),
			bodyLength: w.BodyLength, bodySHA256: w.BodySHA256, signedAt: w.SignedAt,
		}, nil
	}
	var w wireResponse
	if err := decodeStrict(data, &w); err != nil {
		return payloadFields{}, err
	}
	return payloadFields{
		v: w.V, kind: w.Kind, id: w.ID, client: w.Client, service: w.Service,
		status: w.Status, request: w.Request, headers: headersFromWire(w.Headers),
		bodyLength: w.BodyLength, bodySHA256: w.BodySHA256, signedAt: w.SignedAt,
	}, nil
}

func unmarshalRequest(payload string) (*RequestDescriptor, error) {
	w, err := decodePayload(payload, kindRequest)
	if err != nil {
		return nil, err
	}
	c, s, hs, sum, t, err := decodeCommon(&w, kindRequest)
	if err != nil {
		return nil, err
	}
	return &RequestDescriptor{
		ID: w.id, Client: c, Service: s, Method: w.method, Path: w.path, RawQuery: w.query,
		Headers: hs, Body: BodyDigest{Length: w.bodyLength, SHA256: sum}, SignedAt: t,
	}, nil
}

func unmarshalResponse(payload string) (*ResponseDescriptor, error) {
	w, err := decodePayload(payload, kindResponse)
	if err != nil {
		return nil, err
	}
	c, s, hs, sum, t, err := decodeCommon(&w, kindResponse)
	if err != nil {
		return nil, err
	}
	req, err := decodeSum(w.request)
	if err != nil {
		return nil, err
	}
	return &ResponseDescriptor{
		ID: w.id, Client: c, Service: s, Status: w.status, Headers: hs,
		Body: BodyDigest{Length: w.bodyLength, SHA256: sum}, Request: req, SignedAt: t,
	}, nil
}

// compareHeaders returns the name of the first signed header that differs.
func compareHeaders(signed, got []SignedHeader) (string, bool) {
	i, j := 0, 0
	for i < len(signed) || j < len(got) {
		switch {
		case j >= len(got) || (i < len(signed) && signed[i].Name < got[j].Name):
			return signed[i].Name, false
		case i >= len(signed) || got[j].Name < signed[i].Name:
			return got[j].Name, false
		}
		if !slices.Equal(signed[i].Values, got[j].Values) {
			return signed[i].Name, false
		}
		i++
		j++
	}
	return "", true
}

// compare returns a *MismatchError naming the first field of s (signed) that
// differs from g (recomputed from the wire). A zero g.SignedAt is not
// compared.
func (s *RequestDescriptor) compare(g *RequestDescriptor) error {
	switch {
	case s.ID != g.ID:
		return mismatch("id")
	case s.Client != g.Client:
		return mismatch("client")
	case s.Service != g.Service:
		return mismatch("service")
	case s.Method != g.Method:
		return mismatch("method")
	case s.Path != g.Path:
		return mismatch("path")
	case s.RawQuery != g.RawQuery:
		return mismatch("query")
	case s.Body.Length != g.Body.Length:
		return mismatch("bodyLength")
	case s.Body.SHA256 != g.Body.SHA256:
		return mismatch("bodySha256")
	case !g.SignedAt.IsZero() && !s.SignedAt.Equal(g.SignedAt):
		return mismatch("signedAt")
	}
	if name, ok := compareHeaders(s.Headers, g.Headers); !ok {
		return mismatch("headers[" + name + "]")
	}
	return nil
}

func (s *ResponseDescriptor) compare(g *ResponseDescriptor) error {
	switch {
	case s.ID != g.ID:
		return mismatch("id")
	case s.Client != g.Client:
		return mismatch("client")
	case s.Service != g.Service:
		return mismatch("service")
	case s.Status != g.Status:
		return mismatch("status")
	case s.Request != g.Request:
		return mismatch("request")
	case s.Body.Length != g.Body.Length:
		return mismatch("bodyLength")
	case s.Body.SHA256 != g.Body.SHA256:
		return mismatch("bodySha256")
	case !g.SignedAt.IsZero() && !s.SignedAt.Equal(g.SignedAt):
		return mismatch("signedAt")
	}
	if name, ok := compareHeaders(s.Headers, g.Headers); !ok {
		return mismatch("headers[" + name + "]")
	}
	return nil
}
