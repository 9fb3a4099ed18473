package sandbox

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"sort"
	"strings"

	"github.com/passerelle/passerelle/soap"
)

// MaxSampleBody bounds what the sample services read.
const MaxSampleBody = 1 << 20

// HelloEcho is what the REST sample service hello answers to a request
// without a body (GET, HEAD, DELETE, OPTIONS): what it saw.
type HelloEcho struct {
	Service string              `json:"service"`
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Query   string              `json:"query"`
	Args    map[string][]string `json:"args"`
	Headers map[string]string   `json:"headers"` // the X-Road-* headers it received
}

// HelloHandler is the REST sample service hello, a JSON echo. A request
// without a body (GET, HEAD, DELETE, OPTIONS) gets a HelloEcho of the method,
// path, raw query and X-Road headers it saw; any other method (POST, PUT,
// PATCH) gets back the body it sent, with its Content-Type, byte for byte.
// Bodies above MaxSampleBody are refused with 413.
func HelloHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSampleBody))
			if err != nil {
				http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
				return
			}
			ct := r.Header.Get("Content-Type")
			if ct == "" {
				ct = "application/octet-stream"
			}
			w.Header().Set("Content-Type", ct)
			w.Write(body)
		default:
			e := HelloEcho{Service: "hello", Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
				Args: r.URL.Query(), Headers: map[string]string{}}
			keys := make([]string, 0, len(r.Header))
			for k := range r.Header {
				if strings.HasPrefix(strings.ToLower(k), "x-road-") {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				e.Headers[k] = r.Header.Get(k)
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(e)
		}
	})
}

// GetRandomHandler is the SOAP sample service getRandom (X-Road message
// protocol 4.0, SOAP 1.1 or 1.2). It answers a request whose Body holds a
// getRandom element (any namespace) with the request's envelope, Header
// bytes unchanged and in order, and the Body replaced by
//
//	<getRandomResponse><data>N</data></getRandomResponse>
//
// in the request operation's namespace, N a random number from 1 to 100.
// Anything else gets a SOAP fault.
func GetRandomHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct := r.Header.Get("Content-Type")
		v := soap.SOAP11
		if cv, err := soap.VersionFromContentType(ct); err == nil {
			v = cv
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST a SOAP envelope", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSampleBody))
		if err != nil {
			soap.WriteFault(w, v, soap.NewFault(soap.PrefixClient, err))
			return
		}
		n, err := rand.Int(rand.Reader, big.NewInt(100))
		if err != nil {
			soap.WriteFault(w, v, soap.NewFault("Server", err))
			return
		}
		resp, err := GetRandomResponse(ct, body, n.Int64()+1)
		if err != nil {
			soap.WriteFault(w, v, soap.NewFault(soap.PrefixClient, err))
			return
		}
		if ct == "" {
			ct = "text/xml; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		w.Write(resp)
	})
}

// ErrNotGetRandom reports a SOAP request for another operation than getRandom.
var ErrNotGetRandom = errors.New("sandbox: not a getRandom request")

// GetRandomResponse builds the getRandom service's answer to request (an
// X-Road 4.0 SOAP envelope, checked with soap.ParseRequest): the request's
// bytes with the Body's content replaced by a getRandomResponse carrying n.
// Everything outside the Body, the X-Road headers included, is kept byte
// for byte.
func GetRandomResponse(contentType string, request []byte, n int64) ([]byte, error) {
	if mt, _, err := mime.ParseMediaType(contentType); contentType != "" && (err != nil || mt == "multipart/related") {
		return nil, fmt.Errorf("%w: want a bare SOAP envelope, not %q", ErrNotGetRandom, contentType)
	}
	env, err := soap.ParseRequest(contentType, request, soap.DefaultLimits)
	if err != nil {
		return nil, err
	}
	op := env.Operation()
	if op.Local != "getRandom" {
		return nil, fmt.Errorf("%w: operation %q", ErrNotGetRandom, op.Local)
	}
	start, end, prefix, err := bodyContent(env.Raw)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Write(env.Raw[:start])
	name := "getRandomResponse"
	switch {
	case op.Space == "":
		b.WriteString("<getRandomResponse>")
	case prefix != "":
		name = prefix + ":getRandomResponse"
		fmt.Fprintf(&b, "<%s xmlns:%s=\"", name, prefix)
		xml.EscapeText(&b, []byte(op.Space))
		b.WriteString("\">")
	default:
		b.WriteString(`<getRandomResponse xmlns="`)
		xml.EscapeText(&b, []byte(op.Space))
		b.WriteString(`">`)
	}
	fmt.Fprintf(&b, "<data>%d</data></%s>", n, name)
	b.Write(env.Raw[end:])
	return b.Bytes(), nil
}

// bodyContent finds the byte range of the Body's single child element in a
// parsed (hence well-formed) envelope, and that element's namespace prefix.
func bodyContent(raw []byte) (start, end int, prefix string, err error) {
	d := xml.NewDecoder(bytes.NewReader(raw))
	depth := 0
	inBody := false
	for {
		off := int(d.InputOffset())
		tok, err := d.RawToken()
		if err != nil {
			return 0, 0, "", fmt.Errorf("%w: no Body element child", ErrNotGetRandom)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 && t.Name.Local == "Body" {
				inBody = true
			} else if inBody && depth == 3 {
				start, prefix = off, t.Name.Space
			}
		case xml.EndElement:
			if inBody && depth == 3 {
				end = int(d.InputOffset())
			}
			if inBody && depth == 2 {
				if end == 0 {
					return 0, 0, "", fmt.Errorf("%w: empty Body", ErrNotGetRandom)
				}
				return start, end, prefix, nil
			}
			depth--
		}
	}
}

// SampleSOAPFile is the SOAP request Start writes into the sandbox
// directory, ready for curl --data-binary @DIR/getRandom.xml.
const SampleSOAPFile = "getRandom.xml"

// GetRandomRequest returns an X-Road 4.0 SOAP 1.1 request from the
// sandbox's client to its getRandom service, with message id id.
func GetRandomRequest(id string) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
        xmlns:xrd="http://x-road.eu/xsd/xroad.xsd"
        xmlns:id="http://x-road.eu/xsd/identifiers"
        xmlns:ns1="http://sandbox.passerelle.local/producer">
    <SOAP-ENV:Header>
        <xrd:client id:objectType="SUBSYSTEM">
            <id:xRoadInstance>SANDBOX</id:xRoadInstance>
            <id:memberClass>GOV</id:memberClass>
            <id:memberCode>CONSUMER</id:memberCode>
            <id:subsystemCode>client</id:subsystemCode>
        </xrd:client>
        <xrd:service id:objectType="SERVICE">
            <id:xRoadInstance>SANDBOX</id:xRoadInstance>
            <id:memberClass>GOV</id:memberClass>
            <id:memberCode>PROVIDER</id:memberCode>
            <id:subsystemCode>services</id:subsystemCode>
            <id:serviceCode>getRandom</id:serviceCode>
        </xrd:service>
        <xrd:id>`)
	xml.EscapeText(&b, []byte(id))
	b.WriteString(`</xrd:id>
        <xrd:userId>EE12345678901</xrd:userId>
        <xrd:protocolVersion>4.0</xrd:protocolVersion>
    </SOAP-ENV:Header>
    <SOAP-ENV:Body>
        <ns1:getRandom/>
    </SOAP-ENV:Body>
</SOAP-ENV:Envelope>
`)
	return b.Bytes()
}
