package rest

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestWriteError(t *testing.T) {
	cause := errors.New("dial tcp 10.0.0.1:8080: secret internal detail")
	for _, tc := range []struct {
		name       string
		err        error
		accept     string
		mode       ErrorMode
		wantStatus int
		wantType   string
		wantXML    bool
	}{
		{"access denied norms", ServerProxyError(CodeAccessDenied, "access denied", nil), "", ErrorMode{}, 403, "Server.ServerProxy.AccessDenied", false},
		{"access denied strict", ServerProxyError(CodeAccessDenied, "access denied", nil), "", ErrorMode{Strict: true}, 500, "Server.ServerProxy.AccessDenied", false},
		{"bad request strict", ClientError(CodeBadRequest, "bad", nil), "", ErrorMode{Strict: true}, 400, "Client.BadRequest", false},
		{"missing header", ClientError(CodeMissingHeader, "X-Road-Client required", nil), "", ErrorMode{}, 400, "Client.MissingHeader", false},
		{"unauthorised", ClientProxyError(CodeSslAuthenticationFailed, "not your client", nil), "", ErrorMode{}, 401, "Server.ClientProxy.SslAuthenticationFailed", false},
		{"unknown service", ServerProxyError(CodeUnknownService, "unknown service", nil), "", ErrorMode{}, 404, "Server.ServerProxy.UnknownService", false},
		{"too large", ClientProxyError(CodeRequestTooLarge, "body too large", nil), "", ErrorMode{}, 413, "Server.ClientProxy.RequestTooLarge", false},
		{"rate limited", ServerProxyError(CodeTooManyRequests, "slow down", nil), "", ErrorMode{}, 429, "Server.ServerProxy.TooManyRequests", false},
		{"network error", ServerProxyError(CodeNetworkError, "service unreachable", cause), "", ErrorMode{}, 502, "Server.ServerProxy.NetworkError", false},
		{"timeout", ServerProxyError(CodeServiceTimeout, "service too slow", cause), "", ErrorMode{}, 504, "Server.ServerProxy.ServiceFailed.Timeout", false},
		{"timestamper", ClientProxyError(CodeTimestamperFailed, "timestamping failed", cause), "", ErrorMode{}, 500, "Server.ClientProxy.LoggingFailed.TimestamperFailed", false},
		{"wrapped", fmtWrap(ServerProxyError(CodeInvalidSignature, "bad signature", cause)), "", ErrorMode{}, 500, "Server.ServerProxy.InvalidSignatureValue", false},
		{"plain error", cause, "", ErrorMode{Origin: OriginServerProxy}, 500, "Server.ServerProxy.InternalError", false},
		{"plain error default origin", cause, "", ErrorMode{}, 500, "Server.ClientProxy.InternalError", false},
		{"xml", ServerProxyError(CodeAccessDenied, "access <denied>", nil), "application/xml", ErrorMode{}, 403, "Server.ServerProxy.AccessDenied", true},
		{"xml preferred by q", ServerProxyError(CodeAccessDenied, "denied", nil), "application/json;q=0.5, text/xml", ErrorMode{}, 403, "Server.ServerProxy.AccessDenied", true},
		{"json preferred by q", ServerProxyError(CodeAccessDenied, "denied", nil), "application/json, application/xml;q=0.9", ErrorMode{}, 403, "Server.ServerProxy.AccessDenied", false},
		{"tie goes to json", ServerProxyError(CodeAccessDenied, "denied", nil), "*/*", ErrorMode{}, 403, "Server.ServerProxy.AccessDenied", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/r1/X/Y/Z/S/svc", nil)
			if tc.accept != "" {
				r.Header.Set("Accept", tc.accept)
			}
			w := httptest.NewRecorder()
			w.Header().Set("Content-Length", "999") // from a service: must go
			WriteError(w, r, tc.err, tc.mode)
			resp := w.Result()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if got := resp.Header.Get("X-Road-Error"); got != tc.wantType {
				t.Errorf("X-Road-Error = %q, want %q", got, tc.wantType)
			}
			if strings.Contains(string(body), "secret") {
				t.Errorf("body leaks the internal cause: %s", body)
			}
			var got wireError
			ct := resp.Header.Get("Content-Type")
			if tc.wantXML {
				if !strings.HasPrefix(ct, "application/xml") {
					t.Errorf("Content-Type = %q, want XML", ct)
				}
				if err := xml.Unmarshal(body, &got); err != nil {
					t.Fatalf("XML body %s: %v", body, err)
				}
			} else {
				if ct != "application/json;charset=utf-8" {
					t.Errorf("Content-Type = %q, want JSON", ct)
				}
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatalf("JSON body %s: %v", body, err)
				}
			}
			if got.Type != tc.wantType || got.Code != tc.wantType || got.Message == "" || got.Error != got.Message || len(got.Detail) != 36 {
				t.Errorf("body = %+v", got)
			}
			// The consumer side reads it back.
			resp.Body = io.NopCloser(strings.NewReader(string(body)))
			pe, err := ParseError(resp)
			if err != nil {
				t.Fatalf("ParseError = %v", err)
			}
			if pe.Type != tc.wantType || pe.Message != got.Message || pe.Detail != got.Detail || pe.Status != tc.wantStatus {
				t.Errorf("ParseError = %+v, want the written error", pe)
			}
		})
	}
}

func fmtWrap(err error) error { return errors.Join(errors.New("context"), err) }

func TestWriteErrorFixtureShape(t *testing.T) {
	// The X-Road example 2 body, plus the norms' fields, in this key order.
	e := ServerProxyError(CodeNetworkError, "Connect to 10.139.178.1:8080 failed: Connection timed out", nil)
	e.Detail = "9bc95b6e-2f1d-4a41-a7e6-11eda7d734d5"
	w := httptest.NewRecorder()
	WriteError(w, nil, e, ErrorMode{Strict: true})
	want := `{"type":"Server.ServerProxy.NetworkError","message":"Connect to 10.139.178.1:8080 failed: Connection timed out","detail":"9bc95b6e-2f1d-4a41-a7e6-11eda7d734d5","code":"Server.ServerProxy.NetworkError","error":"Connect to 10.139.178.1:8080 failed: Connection timed out"}`
	if got := w.Body.String(); got != want || w.Code != 500 {
		t.Errorf("WriteError = %d %s\nwant 500 %s", w.Code, got, want)
	}
}

func TestParseErrorNotSecurityServer(t *testing.T) {
	// X-Road example 1: the service's own 405 passes as is.
	resp := &http.Response{StatusCode: 405, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{"status":405,"error":"Method Not Allowed"}`))}
	if _, err := ParseError(resp); !errors.Is(err, ErrNotSecurityServerError) {
		t.Errorf("ParseError = %v, want ErrNotSecurityServerError", err)
	}
}

func TestRequestHashGolden(t *testing.T) {
	// Golden values computed independently with openssl:
	//   printf 'GET /r1/...\naccept: ...\n' | openssl dgst -sha512 -binary | base64
	get := &RequestDescriptor{
		Method:  "GET",
		Service: mustService(t, "PASS/GOV/5678/PETSTORE/petstore"),
		Path:    "/v2/pets/1124",
		Headers: CanonicalHeaders(http.Header{
			"Accept":        {"application/json"},
			"X-Road-Client": {"PASS/GOV/1234/CLIENT"},
			"X-Road-Id":     {"29f4d011-ef17-4f2f-9bb1-0452ce17d3f5"},
			"User-Agent":    {"curl/8"}, // not signed, not hashed
		}),
		Body: EmptyBody,
	}
	if got, want := RequestHash(get), "DHs+1ExS2SD/Khghn/ujp1ns4DzIhF3XUBa+7hMIFe3WFIIJnjsdhWPWv7+bSxh7C7NCiI4csmx90WnLgmJidQ=="; got != want {
		t.Errorf("RequestHash(GET) = %s, want %s", got, want)
	}
	post := &RequestDescriptor{
		Method:   "POST",
		Service:  mustService(t, "PASS/GOV/5678/PETSTORE/petstore"),
		Path:     "/v2/pets",
		RawQuery: "lang=fr",
		Headers: CanonicalHeaders(http.Header{
			"Accept":        {"application/json"},
			"Content-Type":  {"application/json"},
			"X-Road-Client": {"PASS/GOV/1234/CLIENT"},
			"X-Road-Id":     {"dcaaa3a2-a158-41e1-8775-309848052358"},
		}),
		Body: DigestBytes([]byte(`{"name":"doggie"}`)),
	}
	if got, want := RequestHash(post), "HQjivF1sHxb+RE5gTvIYFwx+ep9sdlnkUuQTokZ+X8lnEZvUMZyQ5iI67znhticDwyi5u/Ub8naA4dENpaES2g=="; got != want {
		t.Errorf("RequestHash(POST) = %s, want %s", got, want)
	}
	// The streaming digester agrees with DigestBytes.
	d := NewDigester()
	io.Copy(d, strings.NewReader(`{"name":"doggie"}`))
	if d.Sum() != post.Body {
		t.Errorf("Digester.Sum differs from DigestBytes")
	}
}

func TestReplayGuard(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	g, err := NewReplayGuard(ReplayGuardConfig{Window: time.Minute, MaxEntries: 3, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name     string
		client   string
		id       string
		signedAt time.Time
		advance  time.Duration
		want     error
	}{
		{"first", "A", "1", now, 0, nil},
		{"replay", "A", "1", now, 0, ErrReplay},
		{"same id other client", "B", "1", now, 0, nil},
		{"too old", "A", "2", now.Add(-2 * time.Minute), 0, ErrStale},
		{"too far ahead", "A", "3", now.Add(2 * time.Minute), 0, ErrStale},
		{"third", "A", "4", now.Add(30 * time.Second), 0, nil},
		{"full", "A", "5", now, 0, ErrReplayGuardFull},
		{"expired entries make room", "A", "6", now.Add(3 * time.Minute), 3 * time.Minute, nil},
		{"old replay now stale", "A", "1", now, 0, ErrStale},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		if err := g.Check(s.client, s.id, s.signedAt); !errors.Is(err, s.want) || (s.want == nil && err != nil) {
			t.Errorf("%s: Check(%s, %s) = %v, want %v", s.name, s.client, s.id, err, s.want)
		}
	}
	if g.Len() != 1 {
		t.Errorf("Len = %d after expiry, want 1", g.Len())
	}
	if _, err := NewReplayGuard(ReplayGuardConfig{}); err == nil {
		t.Error("NewReplayGuard accepted a zero window")
	}
}
