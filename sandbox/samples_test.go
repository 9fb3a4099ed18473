package sandbox_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/passerelle/passerelle/sandbox"
	"github.com/passerelle/passerelle/soap"
)

var getRandomQuery = []byte(`<?xml version="1.0" encoding="utf-8"?>
<SOAP-ENV:Envelope
        xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
        xmlns:xroad="http://x-road.eu/xsd/xroad.xsd"
        xmlns:id="http://x-road.eu/xsd/identifiers">
    <SOAP-ENV:Header>
        <xroad:client id:objectType="SUBSYSTEM">
            <id:xRoadInstance>SANDBOX</id:xRoadInstance>
            <id:memberClass>GOV</id:memberClass>
            <id:memberCode>CONSUMER</id:memberCode>
            <id:subsystemCode>client</id:subsystemCode>
        </xroad:client>
        <xroad:service id:objectType="SERVICE">
            <id:xRoadInstance>SANDBOX</id:xRoadInstance>
            <id:memberClass>GOV</id:memberClass>
            <id:memberCode>PROVIDER</id:memberCode>
            <id:subsystemCode>services</id:subsystemCode>
            <id:serviceCode>getRandom</id:serviceCode>
        </xroad:service>
        <xroad:userId>EE:PIN:abc4567</xroad:userId>
        <xroad:id>411d6755661409fed365ad8135f8210be07613da</xroad:id>
        <xroad:issue/>
        <xroad:protocolVersion>4.0</xroad:protocolVersion>
    </SOAP-ENV:Header>
    <SOAP-ENV:Body>
        <xroad:getRandom/>
    </SOAP-ENV:Body>
</SOAP-ENV:Envelope>
`)

func headerBytes(t *testing.T, env []byte) []byte {
	t.Helper()
	i, j := bytes.Index(env, []byte("<SOAP-ENV:Header>")), bytes.Index(env, []byte("</SOAP-ENV:Header>"))
	if i < 0 || j < 0 {
		t.Fatalf("no Header in %s", env)
	}
	return env[:j]
}

func TestGetRandomResponse(t *testing.T) {
	soap12 := strings.NewReplacer("http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope").Replace(string(getRandomQuery))
	tests := []struct {
		name, ct string
		req      []byte
		wantOp   string
	}{
		{"soap11 prefixed", "text/xml; charset=utf-8", getRandomQuery, `<xroad:getRandomResponse xmlns:xroad="http://x-road.eu/xsd/xroad.xsd"><data>42</data></xroad:getRandomResponse>`},
		{"soap12", "application/soap+xml; charset=utf-8", []byte(soap12), `<xroad:getRandomResponse xmlns:xroad="http://x-road.eu/xsd/xroad.xsd"><data>42</data></xroad:getRandomResponse>`},
		{"default namespace", "text/xml", bytes.Replace(getRandomQuery, []byte("<xroad:getRandom/>"), []byte(`<getRandom xmlns="urn:x"><seed>1</seed></getRandom>`), 1), `<getRandomResponse xmlns="urn:x"><data>42</data></getRandomResponse>`},
		{"no namespace", "", bytes.Replace(getRandomQuery, []byte("<xroad:getRandom/>"), []byte(`<getRandom></getRandom>`), 1), `<getRandomResponse><data>42</data></getRandomResponse>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := sandbox.GetRandomResponse(tt.ct, tt.req, 42)
			if err != nil {
				t.Fatalf("GetRandomResponse: %v", err)
			}
			if !bytes.Contains(resp, []byte(tt.wantOp)) {
				t.Errorf("response body:\n%s\nwant %s", resp, tt.wantOp)
			}
			if got, want := headerBytes(t, resp), headerBytes(t, tt.req); !bytes.Equal(got, want) {
				t.Errorf("headers changed:\n%s\nwant\n%s", got, want)
			}
			env, err := soap.ParseEnvelope(tt.ct, resp, soap.DefaultLimits)
			if err != nil {
				t.Fatalf("response does not parse: %v", err)
			}
			if env.Operation().Local != "getRandomResponse" {
				t.Errorf("operation = %v", env.Operation())
			}
		})
	}
}

func TestGetRandomRefuses(t *testing.T) {
	tests := []struct {
		name string
		req  []byte
	}{
		{"other operation", bytes.Replace(getRandomQuery, []byte("<xroad:getRandom/>"), []byte("<xroad:getState/>"), 1)},
		{"not xml", []byte("hello")},
		{"no service header", regexp.MustCompile(`(?s)<xroad:service.*</xroad:service>`).ReplaceAll(getRandomQuery, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := sandbox.GetRandomResponse("text/xml", tt.req, 1); err == nil {
				t.Error("GetRandomResponse succeeded, want an error")
			}
			rec := httptest.NewRecorder()
			sandbox.GetRandomHandler().ServeHTTP(rec, httptest.NewRequest("POST", "/", bytes.NewReader(tt.req)))
			if _, err := soap.ParseFault(rec.Body.Bytes(), soap.DefaultLimits); err != nil {
				t.Errorf("handler answer is not a fault (%v): %s", err, rec.Body)
			}
		})
	}
	if _, err := sandbox.GetRandomResponse("text/xml", tests[0].req, 1); !errors.Is(err, sandbox.ErrNotGetRandom) {
		t.Errorf("other operation: %v, want ErrNotGetRandom", err)
	}
}

func TestHello(t *testing.T) {
	h := sandbox.HelloHandler()
	tests := []struct {
		name, method, target, ct string
		body                     []byte
		wantCT                   string
		wantBody                 []byte // nil: a HelloEcho
	}{
		{"get", "GET", "/anything/x%2Fy?q=1&q=2", "", nil, "application/json", nil},
		{"delete", "DELETE", "/pets/1", "", nil, "application/json", nil},
		{"post json", "POST", "/pets", "application/json", []byte(`{"name":"Rex"}`), "application/json", []byte(`{"name":"Rex"}`)},
		{"put binary", "PUT", "/blob", "", []byte{0, 1, 2, 0xff}, "application/octet-stream", []byte{0, 1, 2, 0xff}},
		{"post utf-8", "POST", "/", "text/plain; charset=utf-8", []byte("aäõ€"), "text/plain; charset=utf-8", []byte("aäõ€")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.target, bytes.NewReader(tt.body))
			if tt.ct != "" {
				req.Header.Set("Content-Type", tt.ct)
			}
			req.Header.Set("X-Road-Client", "SANDBOX/GOV/CONSUMER/client")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != tt.wantCT {
				t.Fatalf("%s %s = %d %q, want 200 %q", tt.method, tt.target, rec.Code, rec.Header().Get("Content-Type"), tt.wantCT)
			}
			if tt.wantBody != nil {
				if !bytes.Equal(rec.Body.Bytes(), tt.wantBody) {
					t.Errorf("body = %q, want %q", rec.Body.Bytes(), tt.wantBody)
				}
				return
			}
			var e sandbox.HelloEcho
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatal(err)
			}
			path, query, _ := strings.Cut(tt.target, "?")
			if e.Method != tt.method || e.Path != path || e.Query != query || e.Headers["X-Road-Client"] != "SANDBOX/GOV/CONSUMER/client" {
				t.Errorf("echo = %+v", e)
			}
		})
	}
}

func FuzzGetRandomResponse(f *testing.F) {
	f.Add("text/xml", getRandomQuery)
	f.Add("application/soap+xml", bytes.Replace(getRandomQuery, []byte("http://schemas.xmlsoap.org/soap/envelope/"), []byte("http://www.w3.org/2003/05/soap-envelope"), 1))
	f.Add("", bytes.Replace(getRandomQuery, []byte("<xroad:getRandom/>"), []byte(`<a:getRandom xmlns:a="u&amp;&quot;"><x/></a:getRandom>`), 1))
	f.Add("text/xml", []byte("<x/>"))
	f.Fuzz(func(t *testing.T, ct string, req []byte) {
		resp, err := sandbox.GetRandomResponse(ct, req, 7)
		if err != nil {
			return
		}
		// What it answers is an envelope with the request's headers.
		in, err := soap.ParseRequest(ct, req, soap.DefaultLimits)
		if err != nil {
			t.Fatalf("answered a request that does not parse: %v", err)
		}
		out, err := soap.ParseEnvelope(ct, resp, soap.DefaultLimits)
		if err != nil {
			t.Fatalf("response does not parse: %v\n%s", err, resp)
		}
		if out.Header.ID != in.Header.ID || out.Header.Client != in.Header.Client || out.Operation().Local != "getRandomResponse" || out.Operation().Space != in.Operation().Space {
			t.Errorf("response header %+v op %v, request %+v op %v", out.Header, out.Operation(), in.Header, in.Operation())
		}
	})
}

func TestGetRandomRequest(t *testing.T) {
	req := sandbox.GetRandomRequest("id-1")
	env, err := soap.ParseRequest("text/xml", req, soap.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if env.Header.Client.String() != sandbox.ClientID || env.Header.Service.String() != sandbox.SOAPService || env.Header.ID != "id-1" {
		t.Errorf("header = %+v", env.Header)
	}
	if _, err := sandbox.GetRandomResponse("text/xml", req, 5); err != nil {
		t.Errorf("GetRandomResponse: %v", err)
	}
}
