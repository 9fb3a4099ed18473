package securityserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/rest"
	"github.com/passerelle/passerelle/soap"
)

// X-Road's SOAP metaservices, answered by the provider's security server
// from its configuration (X-Road service metadata protocol, annex C).
const (
	metaListMethods    = "listMethods"
	metaAllowedMethods = "allowedMethods"
	metaGetWsdl        = "getWsdl"
)

func isSOAPMetaservice(code string) bool {
	return code == metaListMethods || code == metaAllowedMethods || code == metaGetWsdl
}

// wsdlContentID names the WSDL attachment of a getWsdl response.
const wsdlContentID = "<wsdl>"

// soapMeta answers a metaservice request (env, already verified, its
// signature stripped in stripped) with a response envelope that echoes the
// request's headers, as the service would.
func (s *Server) soapMeta(ctx context.Context, env *soap.Envelope, stripped []byte) (*soapMessage, error) {
	svc := env.Header.Service
	client := env.Header.Client
	switch svc.Code {
	case metaListMethods, metaAllowedMethods:
		var b strings.Builder
		fmt.Fprintf(&b, `<xrd:%sResponse xmlns:xrd="%s" xmlns:id="%s">`, svc.Code, soap.NamespaceXRoad, soap.NamespaceIdentifiers)
		for _, sc := range s.store.services() {
			id, err := pki.ParseServiceID(sc.ID)
			if err != nil || id.Client != svc.Client {
				continue
			}
			if svc.Code == metaAllowedMethods && !allowed(sc, client) {
				continue
			}
			writeServiceXML(&b, id)
		}
		fmt.Fprintf(&b, `</xrd:%sResponse>`, svc.Code)
		out, err := replaceBody(stripped, b.String())
		if err != nil {
			return nil, err
		}
		return &soapMessage{Message: &soap.Message{Envelope: out, ContentType: env.Version.ContentType()}, store: &attachStore{}}, nil
	case metaGetWsdl:
		return s.getWsdl(ctx, env, stripped)
	}
	return nil, soapError(string(rest.CodeUnknownService), nil, "unknown service %s", svc)
}

func writeServiceXML(b *strings.Builder, id pki.ServiceID) {
	el := func(name, v string) {
		b.WriteString("<id:" + name + ">")
		_ = xml.EscapeText(b, []byte(v))
		b.WriteString("</id:" + name + ">")
	}
	b.WriteString(`<xrd:service id:objectType="SERVICE">`)
	el("xRoadInstance", id.Client.Instance)
	el("memberClass", id.Client.Class)
	el("memberCode", id.Client.Member)
	if id.Client.Subsystem != "" {
		el("subsystemCode", id.Client.Subsystem)
	}
	el("serviceCode", id.Code)
	if id.Version != "" {
		el("serviceVersion", id.Version)
	}
	b.WriteString(`</xrd:service>`)
}

// getWsdl answers getWsdl: the service's WSDL, fetched from its backend at
// URL?wsdl (the configuration has no WSDL field), as a MIME attachment of a
// getWsdlResponse, as X-Road does. The client must be allowed to call the
// service whose WSDL it asks for.
func (s *Server) getWsdl(ctx context.Context, env *soap.Envelope, stripped []byte) (*soapMessage, error) {
	code, version, err := getWsdlParams(stripped)
	if err != nil {
		return nil, err
	}
	target := pki.ServiceID{Client: env.Header.Service.Client, Code: code}
	svc := s.store.service(serviceKey(target))
	if svc == nil {
		return nil, soapError(string(rest.CodeUnknownService), nil, "unknown service %s", serviceKey(target))
	}
	if !allowed(svc, env.Header.Client) {
		return nil, soapError(string(rest.CodeAccessDenied), nil, "client %s may not call %s", env.Header.Client, serviceKey(target))
	}
	u, err := url.Parse(svc.URL)
	if err != nil {
		return nil, soapError(soap.CodeServiceFailed, err, "the service's WSDL could not be fetched")
	}
	u.RawQuery = "wsdl"
	ctx, cancel := context.WithTimeout(ctx, time.Duration(svc.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, soapError(soap.CodeServiceFailed, err, "the service's WSDL could not be fetched")
	}
	resp, err := s.backendFor(svc).Do(req)
	if err != nil {
		return nil, soapError(soap.CodeServiceFailed, err, "the service's WSDL could not be fetched")
	}
	defer resp.Body.Close()
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK || (mt != "text/xml" && mt != "application/xml" && mt != "application/wsdl+xml") {
		return nil, soapError(soap.CodeServiceFailed, fmt.Errorf("GET %s: HTTP %d, %q", u.Redacted(), resp.StatusCode, mt),
			"the service's WSDL could not be fetched")
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<xrd:getWsdlResponse xmlns:xrd="%s"><xrd:serviceCode>`, soap.NamespaceXRoad)
	_ = xml.EscapeText(&b, []byte(code))
	b.WriteString(`</xrd:serviceCode>`)
	if version != "" {
		b.WriteString(`<xrd:serviceVersion>`)
		_ = xml.EscapeText(&b, []byte(version))
		b.WriteString(`</xrd:serviceVersion>`)
	}
	b.WriteString(`</xrd:getWsdlResponse>`)
	out, err := replaceBody(stripped, b.String())
	if err != nil {
		return nil, err
	}
	st := &attachStore{dir: s.cfg.DataDir, limit: s.cfg.Limits.MaxBodyBytes}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(st, h), resp.Body)
	if err != nil {
		st.Close()
		return nil, soapError(soap.CodeServiceFailed, err, "the service's WSDL could not be read")
	}
	partHeader := textproto.MIMEHeader{"Content-Type": {"text/xml; charset=UTF-8"}, "Content-Id": {wsdlContentID}}
	soapMT, _, _ := mime.ParseMediaType(env.Version.ContentType())
	return &soapMessage{
		Message: &soap.Message{Envelope: out, ContentType: env.Version.ContentType(), Multipart: true,
			Attachments: []soap.AttachmentDigest{{ContentID: wsdlContentID, ContentType: "text/xml; charset=UTF-8", Size: n, SHA256: h.Sum(nil)}}},
		params: map[string]string{"type": soapMT, "start": "<rootpart>"},
		parts:  []spooledPart{{header: partHeader, off: 0, len: n}},
		store:  st,
	}, nil
}

// getWsdlParams reads serviceCode and serviceVersion from a getWsdl request.
func getWsdlParams(envelope []byte) (code, version string, err error) {
	d := xml.NewDecoder(bytes.NewReader(envelope))
	var path []xml.Name
	var text *string
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", "", soapError(soap.CodeInvalidBody, err, "malformed getWsdl request")
		}
		switch t := tok.(type) {
		case xml.StartElement:
			path = append(path, t.Name)
			text = nil
			if len(path) == 4 && path[1].Local == "Body" && path[2] == (xml.Name{Space: soap.NamespaceXRoad, Local: metaGetWsdl}) {
				switch t.Name {
				case xml.Name{Space: soap.NamespaceXRoad, Local: "serviceCode"}:
					text = &code
				case xml.Name{Space: soap.NamespaceXRoad, Local: "serviceVersion"}:
					text = &version
				}
			}
		case xml.CharData:
			if text != nil {
				*text += string(t)
			}
		case xml.EndElement:
			path = path[:len(path)-1]
			text = nil
		}
	}
	code, version = strings.TrimSpace(code), strings.TrimSpace(version)
	if code == "" {
		return "", "", soapError(soap.CodeInvalidBody, nil, "getWsdl needs a serviceCode")
	}
	return code, version, nil
}

// replaceBody returns envelope with the content of its SOAP Body replaced
// by content; every byte outside the Body's content is kept.
func replaceBody(envelope []byte, content string) ([]byte, error) {
	d := xml.NewDecoder(bytes.NewReader(envelope))
	depth := 0
	open := int64(-1)
	for {
		off := d.InputOffset()
		tok, err := d.RawToken()
		if err != nil {
			return nil, soapError(soap.CodeMissingBody, err, "no Body")
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 && t.Name.Local == "Body" {
				open = d.InputOffset()
			}
		case xml.EndElement:
			if depth == 2 && t.Name.Local == "Body" && open >= 0 && off >= open {
				out := make([]byte, 0, len(envelope)+len(content))
				out = append(out, envelope[:open]...)
				out = append(out, content...)
				return append(out, envelope[off:]...), nil
			}
			depth--
		}
	}
}
