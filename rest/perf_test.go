package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/passerelle/passerelle/pki"
)

// marshalReference is how payloads were written before appendRequestPayload
// and appendResponsePayload: json.Marshal over the wire structs. The hand
// written encoders must match it byte for byte.
func headersToWireReference(hs []SignedHeader) map[string][]string {
	m := make(map[string][]string, len(hs))
	for _, h := range hs {
		m[h.Name] = h.Values
	}
	return m
}

func marshalRequestReference(d *RequestDescriptor) ([]byte, error) {
	return json.Marshal(wireRequest{
		V: ProtocolVersion, Kind: kindRequest, ID: d.ID,
		Client: d.Client.String(), Service: d.Service.String(),
		Method: d.Method, Path: d.Path, Query: d.RawQuery,
		Headers:    headersToWireReference(d.Headers),
		BodyLength: d.Body.Length, BodySHA256: b64url.EncodeToString(d.Body.SHA256[:]),
		SignedAt: d.SignedAt.UTC().Format(timeFormat),
	})
}

func marshalResponseReference(d *ResponseDescriptor) ([]byte, error) {
	return json.Marshal(wireResponse{
		V: ProtocolVersion, Kind: kindResponse, ID: d.ID,
		Client: d.Client.String(), Service: d.Service.String(),
		Status:     d.Status,
		Headers:    headersToWireReference(d.Headers),
		BodyLength: d.Body.Length, BodySHA256: b64url.EncodeToString(d.Body.SHA256[:]),
		Request:  b64url.EncodeToString(d.Request[:]),
		SignedAt: d.SignedAt.UTC().Format(timeFormat),
	})
}

// payloadCase builds descriptors from loosely checked strings, as a fuzzer
// would: whatever a caller might put in a descriptor.
func payloadCase(id, method, path, query, hname, hvalue string, status int, length int64, nanos int64) (RequestDescriptor, ResponseDescriptor) {
	client := pki.ClientID{Instance: "PASS", Class: "GOV", Member: "1234", Subsystem: "CLIENT"}
	svc := pki.ServiceID{Client: pki.ClientID{Instance: "PASS", Class: "GOV", Member: "5678", Subsystem: "PET(S)+,=?'"}, Code: "petstore"}
	hs := []SignedHeader{
		{Name: "accept", Values: []string{"application/json"}},
		{Name: hname, Values: []string{hvalue, hvalue + "<&>"}},
		{Name: "x-road-id", Values: []string{id}},
		{Name: "x-road-nil", Values: nil},
		{Name: "x-road-empty", Values: []string{}},
		{Name: hname, Values: []string{"last " + hvalue}}, // a map keeps the last
	}
	signedAt := time.Unix(0, nanos).In(time.FixedZone("X", 3600))
	rd := RequestDescriptor{
		ID: id, Client: client, Service: svc, Method: method, Path: path, RawQuery: query,
		Headers: hs, Body: DigestBytes([]byte(hvalue)), SignedAt: signedAt,
	}
	rd.Body.Length = length
	sd := ResponseDescriptor{
		ID: id, Client: client, Service: svc, Status: status, Headers: hs,
		Body: rd.Body, Request: JWSDigest(path), SignedAt: signedAt,
	}
	return rd, sd
}

func checkPayloads(t *testing.T, rd *RequestDescriptor, sd *ResponseDescriptor) {
	t.Helper()
	want, err := marshalRequestReference(rd)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendRequestPayload(nil, rd); !bytes.Equal(got, want) {
		t.Errorf("appendRequestPayload =\n%s\nwant\n%s", got, want)
	}
	want, err = marshalResponseReference(sd)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendResponsePayload(nil, sd); !bytes.Equal(got, want) {
		t.Errorf("appendResponsePayload =\n%s\nwant\n%s", got, want)
	}
}

func TestPayloadMatchesMarshal(t *testing.T) {
	for _, tc := range []struct {
		name                                   string
		id, method, path, query, hname, hvalue string
	}{
		{"plain", "5ea48ae9-15c1-465a-be15-9b6ef2c7ef4a", "POST", "/v2/pets", "lang=fr&x=%2F", "content-type", "application/json"},
		{"html", "<id>&", "GET", "/a<b>", "q=<&>", "etag", `"W/x"`},
		{"controls", "a\x00b\x1f\x7f", "\b\f\n\r\t", `\path\`, "\"", "location", "\u2028\u2029"},
		{"invalid utf-8", "\xff\xfe", "M\xc3", "/\xe2\x82", "ü€😀", "if-match", "\xed\xa0\x80"},
		{"unsorted", "", "", "", "", "a-first", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd, sd := payloadCase(tc.id, tc.method, tc.path, tc.query, tc.hname, tc.hvalue, 200, 12, 1772366400123456789)
			checkPayloads(t, &rd, &sd)
			rd.Headers, sd.Headers = nil, nil
			checkPayloads(t, &rd, &sd)
		})
	}
	t.Run("sample", func(t *testing.T) {
		r, body := sampleRequest(t)
		rd := describe(t, r, body)
		rd.SignedAt = time.Now()
		h := http.Header{}
		h.Set("Content-Type", "application/json")
		h.Set(HeaderRequestHash, RequestHash(&rd))
		sd := DescribeResponse(&rd, "x.y.z", 201, h, DigestBytes(nil))
		sd.SignedAt = rd.SignedAt
		checkPayloads(t, &rd, &sd)
	})
}

func FuzzPayloadMatchesMarshal(f *testing.F) {
	f.Add("id", "POST", "/v2/pets", "a=1", "content-type", "application/json", 200, int64(5), int64(0))
	f.Add("<&>", "\x00", "\u2028", "\xff", "etag", "\"", -1, int64(-1), int64(-62135596800000000000/1e3))
	f.Fuzz(func(t *testing.T, id, method, path, query, hname, hvalue string, status int, length, nanos int64) {
		rd, sd := payloadCase(id, method, path, query, hname, hvalue, status, length, nanos)
		checkPayloads(t, &rd, &sd)
	})
}

// TestVerifyRemembersHeaders: the second message under a header takes the
// remembered path, which refuses what the first path refuses.
func TestVerifyRemembersHeaders(t *testing.T) {
	ec, _, ec2 := fixtures(t)
	r, body := sampleRequest(t)
	ocsp := []byte{0x30, 0x03, 0x0a, 0x01, 0x07} // unlike any other test's
	s, err := NewSigner(ec.Key, ec.Chain)
	if err != nil {
		t.Fatal(err)
	}
	sign := func() string {
		t.Helper()
		d := describe(t, r, body)
		c, err := s.SignRequest(t.Context(), &d, ocsp)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first, second := sign(), sign()
	if h1, _, _ := strings.Cut(first, "."); !strings.HasPrefix(second, h1+".") {
		t.Fatal("two signatures with the same OCSP response have different headers")
	}
	got := describe(t, r, body)
	for i, c := range []string{first, second, first} {
		sg, err := VerifyRequest(c, &got)
		if err != nil {
			t.Fatalf("VerifyRequest #%d = %v", i, err)
		}
		if !bytes.Equal(sg.OCSP, ocsp) || sg.Algorithm != "ES256" || sg.Typ != TypRequest || !sg.Chain[0].Equal(ec.Cert) || sg.Digest != JWSDigest(c) {
			t.Fatalf("VerifyRequest #%d = %+v", i, sg)
		}
		sg.OCSP[0] ^= 0xff // the caller's own copy
	}
	hdr, rest, _ := strings.Cut(second, ".")
	payload, sig, _ := strings.Cut(rest, ".")
	if headers.get(hdr) == nil {
		t.Fatal("the verified header is not remembered: the cases below would not take the remembered path")
	}

	// ec2's signature under ec's (remembered) header.
	s2, err := NewSigner(ec2.Key, ec2.Chain)
	if err != nil {
		t.Fatal(err)
	}
	s2.x5c = s.x5c
	d := describe(t, r, body)
	forged, err := s2.SignRequest(t.Context(), &d, ocsp)
	if err != nil {
		t.Fatal(err)
	}
	if h, _, _ := strings.Cut(forged, "."); h != hdr {
		t.Fatal("the forged JWS does not reuse the header")
	}
	otherPayload := strings.Split(forged, ".")[1]

	for _, tc := range []struct {
		name    string
		compact string
		want    error
	}{
		{"another key", forged, ErrBadSignature},
		{"payload swapped", hdr + "." + otherPayload + "." + sig, ErrBadSignature},
		{"signature truncated", hdr + "." + payload + "." + sig[:len(sig)-2], ErrBadSignature},
		{"stray bits", hdr + "." + payload + "." + strayBits(sig), ErrMalformed},
		{"empty signature", hdr + "." + payload + ".", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := VerifyRequest(tc.compact, &got); !errors.Is(err, tc.want) {
				t.Fatalf("VerifyRequest = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("wrong typ", func(t *testing.T) {
		rd := DescribeResponse(&got, first, 200, http.Header{}, EmptyBody)
		if _, err := VerifyResponse(second, &rd); !errors.Is(err, ErrMalformed) {
			t.Fatalf("VerifyResponse(request JWS) = %v, want ErrMalformed", err)
		}
	})
}

// TestHeaderCacheBounded: the remembered headers stay within
// maxHeaderCacheBytes, and a header larger than maxCachedHeader is not kept.
func TestHeaderCacheBounded(t *testing.T) {
	ec, _, _ := fixtures(t)
	c := headerCache{m: make(map[string]*verifiedHeader)}
	vh := &verifiedHeader{chain: ec.Chain}
	for i := range 20000 {
		c.put(fmt.Sprintf("%d%0200d", i, 0), vh)
		if c.size > maxHeaderCacheBytes {
			t.Fatalf("after %d headers the cache holds %d bytes, more than %d", i+1, c.size, maxHeaderCacheBytes)
		}
	}
	if n := len(c.m); n == 0 || n*(len(ec.Cert.Raw)+parsedCertCost) > maxHeaderCacheBytes {
		t.Fatalf("%d headers kept", n)
	}
	c.put("large", &verifiedHeader{chain: ec.Chain, ocsp: make([]byte, maxCachedHeader)})
	if c.get("large") != nil {
		t.Fatal("a header larger than maxCachedHeader was kept")
	}
}

// TestSignerHeaderFollowsOCSP: a Signer's remembered header changes with
// the OCSP response it is given.
func TestSignerHeaderFollowsOCSP(t *testing.T) {
	ec, _, _ := fixtures(t)
	r, body := sampleRequest(t)
	s, err := NewSigner(ec.Key, ec.Chain)
	if err != nil {
		t.Fatal(err)
	}
	for _, ocsp := range [][]byte{nil, {1, 2, 3}, {1, 2, 4}, nil, {1, 2, 4}} {
		d := describe(t, r, body)
		c, err := s.SignRequest(t.Context(), &d, ocsp)
		if err != nil {
			t.Fatal(err)
		}
		got := describe(t, r, body)
		sg, err := VerifyRequest(c, &got)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sg.OCSP, ocsp) || (ocsp == nil) != (sg.OCSP == nil) {
			t.Errorf("signed with OCSP %x, verified %x", ocsp, sg.OCSP)
		}
	}
}

func samePayloadFields(a, b payloadFields) bool {
	sortHs := func(hs []SignedHeader) []SignedHeader {
		hs = slices.Clone(hs)
		slices.SortFunc(hs, func(x, y SignedHeader) int { return strings.Compare(x.Name, y.Name) })
		return hs
	}
	ah, bh := sortHs(a.headers), sortHs(b.headers)
	if len(ah) != len(bh) {
		return false
	}
	for i := range ah {
		if ah[i].Name != bh[i].Name || !slices.Equal(ah[i].Values, bh[i].Values) {
			return false
		}
	}
	a.headers, b.headers = nil, nil
	return reflect.DeepEqual(a, b)
}

func payloadSeeds(t testing.TB) [][]byte {
	r, body := sampleRequest(t)
	rd := describe(t, r, body)
	rd.SignedAt = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(HeaderRequestHash, RequestHash(&rd))
	sd := DescribeResponse(&rd, "x.y.z", 201, h, DigestBytes(nil))
	sd.SignedAt = rd.SignedAt
	req, resp := appendRequestPayload(nil, &rd), appendResponsePayload(nil, &sd)
	return [][]byte{
		req, resp,
		[]byte(` {"v":1 , "kind":"request","headers":{"accept":[]},"bodyLength":-0}` + "\n"),
		[]byte(`{"v":1,"v":1}`),
		[]byte(`{"V":1,"ID":"x"}`),
		[]byte(`{"v":1.0}`),
		[]byte(`{"v":01}`),
		[]byte(`{"id":"a\u0062"}`),
		[]byte(`{"id":"\xff"}`),
		[]byte(`{"id":"a\nb\t\"\\\/\b\f\r\u00e9\ud83d\ude00\ud800x\udc00\ud800\u0041é\u2028","headers":{"x-road-\u0041":["\u003c"]}}`),
		[]byte(`{"headers":{"a":["x"],"a":["y"]}}`),
		[]byte(`{"headers":null}`),
		[]byte(`{"headers":{"a":null,"b":["x",null]}}`),
		[]byte(`{"status":200,"request":"x"}`),
		[]byte(`{"method":"GET","path":"/","query":""}`),
		[]byte(`{}]`),
		[]byte(`{} x`),
		[]byte(`{"bodyLength":9223372036854775808}`),
		[]byte(`null`),
		[]byte(``),
	}
}

// TestDecodePayloadFast: the payloads signers write take the fast path.
func TestDecodePayloadFast(t *testing.T) {
	seeds := payloadSeeds(t)
	for i, kind := range []string{kindRequest, kindResponse} {
		f, ok := decodePayloadFast(string(seeds[i]), kind)
		if !ok {
			t.Fatalf("decodePayloadFast(%s) refused %s", kind, seeds[i])
		}
		want, err := decodePayloadStrict(seeds[i], kind)
		if err != nil || !samePayloadFields(f, want) {
			t.Fatalf("decodePayloadFast(%s) = %+v, encoding/json %+v, %v", kind, f, want, err)
		}
	}
}

// FuzzDecodePayloadFast: whatever decodePayloadFast accepts, encoding/json
// accepts too, with the same values.
func FuzzDecodePayloadFast(f *testing.F) {
	for _, s := range payloadSeeds(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, response bool) {
		kind := kindRequest
		if response {
			kind = kindResponse
		}
		got, ok := decodePayloadFast(string(data), kind)
		if !ok {
			return
		}
		want, err := decodePayloadStrict(data, kind)
		if err != nil {
			t.Fatalf("decodePayloadFast accepted %q, which encoding/json refuses: %v", data, err)
		}
		if !samePayloadFields(got, want) {
			t.Fatalf("decodePayloadFast(%q) = %+v, encoding/json %+v", data, got, want)
		}
	})
}

func TestErrorBodyMatchesMarshal(t *testing.T) {
	for _, e := range []wireError{
		{},
		{Type: "Server.ServerProxy.AccessDenied", Message: "client PASS/GOV/1 may not call GET / on X", Detail: "0b8b6a4e-6a2a-4b7e-9d0e-1c1f3f0e2a11"},
		{Type: "<&>", Message: "\x00\"\\\u2028\xff é", Detail: "\t", Code: "c", Error: "e"},
	} {
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.appendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("appendJSON = %s, want %s", got, want)
		}
	}
}

// TestConcurrentSignVerify: one Signer and the verifier's caches under
// concurrent use, with the OCSP response changing (run with -race).
func TestConcurrentSignVerify(t *testing.T) {
	ec, _, _ := fixtures(t)
	r, body := sampleRequest(t)
	s, err := NewSigner(ec.Key, ec.Chain)
	if err != nil {
		t.Fatal(err)
	}
	d := describe(t, r, body)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20 {
				ocsp := []byte{0x30, byte(g), byte(i % 3)}
				dd := d
				c, err := s.SignRequest(t.Context(), &dd, ocsp)
				if err != nil {
					t.Error(err)
					return
				}
				got := d // SignedAt zero: not compared
				sg, err := VerifyRequest(c, &got)
				if err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(sg.OCSP, ocsp) {
					t.Errorf("OCSP = %x, want %x", sg.OCSP, ocsp)
				}
			}
		})
	}
	wg.Wait()
}

// endToEndReference is EndToEnd as it was before it shared one array.
func endToEndReference(h http.Header) http.Header {
	out := make(http.Header, len(h))
	var listed []string
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				listed = append(listed, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	for k, vv := range h {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if slices.Contains(hopByHop, ck) || strings.HasPrefix(ck, "Proxy-") ||
			slices.Contains(listed, ck) || ck == HeaderSignature {
			continue
		}
		out[ck] = append(out[ck], vv...)
	}
	return out
}

func TestEndToEndMatchesReference(t *testing.T) {
	h := http.Header{
		"Content-Type":       {"application/json"},
		"X-Road-Id":          {"1"},
		"X-Empty":            {},
		"X-Nil":              nil,
		"Accept":             {"a", "b"},
		"Connection":         {"keep-alive, X-Hop"},
		"X-Hop":              {"x"},
		"Proxy-Authenticate": {"y"},
		HeaderSignature:      {"jws"},
	}
	got, want := EndToEnd(h), endToEndReference(h)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("EndToEnd = %#v, want %#v", got, want)
	}
	// A non-canonical twin is merged (in map order).
	twins := EndToEnd(http.Header{"Content-Type": {"a"}, "content-type": {"b"}, "Accept": {"c"}})
	if ct := slices.Sorted(slices.Values(twins["Content-Type"])); !slices.Equal(ct, []string{"a", "b"}) || len(twins) != 2 {
		t.Errorf("EndToEnd(twins) = %q", twins)
	}
	// Appending to one key's values leaves the others alone.
	got["Accept"] = append(got["Accept"], "c")
	for k, vv := range want {
		if k != "Accept" && !slices.Equal(got[k], vv) {
			t.Errorf("after an append, %s = %q, want %q", k, got[k], vv)
		}
	}
	for _, name := range []string{"Content-Type", "content-type", "X-ROAD-ID", "x-road-error", "If-None-Match", "Authorization", "K\u212Aey", "\u0130f-Match", "\xff"} {
		if got, want := lowerName(name), strings.ToLower(name); got != want {
			t.Errorf("lowerName(%q) = %q, want %q", name, got, want)
		}
	}
}

// canonicalHeadersReference is CanonicalHeaders as it was before it looked
// names up (7b2afb7), twin merge included.
func canonicalHeadersReference(h http.Header) []SignedHeader {
	isSigned := func(name string) bool {
		l := strings.ToLower(name)
		if strings.HasPrefix(l, "x-road-") {
			return l != "x-road-error"
		}
		_, ok := slices.BinarySearch(signedHeaders, l)
		return ok
	}
	n := 0
	for k := range h {
		if isSigned(k) {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]SignedHeader, 0, n)
	for k, vv := range h {
		if !isSigned(k) || len(vv) == 0 {
			continue
		}
		l := strings.ToLower(k)
		if i := slices.IndexFunc(out, func(s SignedHeader) bool { return s.Name == l }); i >= 0 {
			out[i].Values = append(slices.Clip(out[i].Values), vv...)
			continue
		}
		out = append(out, SignedHeader{Name: l, Values: vv})
	}
	slices.SortFunc(out, func(a, b SignedHeader) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func TestCanonicalHeadersMatchesReference(t *testing.T) {
	for _, h := range []http.Header{
		nil,
		{},
		{"Authorization": {"x"}, "Date": {"y"}},
		{"X-Road-Id": {}},
		{"X-Road-Error": {"e"}},
		{"Content-Type": {"a"}, "X-Road-Client": {"c"}, "Etag": {"1", "2"}, "Cookie": {"z"}, "X-Road-Anything": {"q"}, "If-\u0130f": {"k"}, "\u0130f-Match": {"i"}},
	} {
		got, want := CanonicalHeaders(h), canonicalHeadersReference(h)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("CanonicalHeaders(%q) = %#v, want %#v", h, got, want)
		}
	}
	// Non-canonical twins are merged, their values in map order: compare
	// them sorted.
	twins := http.Header{"X-Road-Id": {"a"}, "x-road-id": {"b", "c"}, "X-ROAD-ID": {}, "Etag": {"e"}, "etag": {"f"}}
	sortValues := func(hs []SignedHeader) []SignedHeader {
		for i := range hs {
			hs[i].Values = slices.Sorted(slices.Values(hs[i].Values))
		}
		return hs
	}
	got, want := sortValues(CanonicalHeaders(twins)), sortValues(canonicalHeadersReference(twins))
	if !reflect.DeepEqual(got, want) || len(got) != 2 || len(got[1].Values) != 3 {
		t.Errorf("CanonicalHeaders(%q) = %#v, want %#v", twins, got, want)
	}
}
