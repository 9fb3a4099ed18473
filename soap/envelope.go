package soap

import (
	"encoding/base64"
	"encoding/xml"
	"errors"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/beevik/etree"

	"github.com/passerelle/passerelle/pki"
)

// Namespaces.
const (
	NamespaceSOAP11         = "http://schemas.xmlsoap.org/soap/envelope/"
	NamespaceSOAP12         = "http://www.w3.org/2003/05/soap-envelope"
	NamespaceXRoad          = "http://x-road.eu/xsd/xroad.xsd"
	NamespaceIdentifiers    = "http://x-road.eu/xsd/identifiers"
	NamespaceRepresentation = "http://x-road.eu/xsd/representation.xsd"
)

// ProtocolVersion is the only X-Road message protocol version accepted.
const ProtocolVersion = "4.0"

// Version is a SOAP version.
type Version int

// SOAP versions.
const (
	SOAP11 Version = 1 // text/xml
	SOAP12 Version = 2 // application/soap+xml
)

// Namespace is the envelope namespace of v.
func (v Version) Namespace() string {
	if v == SOAP12 {
		return NamespaceSOAP12
	}
	return NamespaceSOAP11
}

// ContentType is the media type (with charset) of a version-v envelope.
func (v Version) ContentType() string {
	if v == SOAP12 {
		return "application/soap+xml; charset=utf-8"
	}
	return "text/xml; charset=utf-8"
}

func (v Version) String() string {
	if v == SOAP12 {
		return "SOAP 1.2"
	}
	return "SOAP 1.1"
}

// VersionFromContentType maps a SOAP part's media type to a version:
// text/xml is 1.1, application/soap+xml 1.2, application/xop+xml (MTOM) by its
// type parameter. A charset other than UTF-8 is refused.
func VersionFromContentType(ct string) (Version, error) {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, errorf(CodeInvalidContentType, err, "invalid content type")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return 0, errorf(CodeInvalidContentType, nil, "charset must be UTF-8")
	}
	switch mt {
	case "text/xml":
		return SOAP11, nil
	case "application/soap+xml":
		return SOAP12, nil
	case "application/xop+xml":
		if t, ok := params["type"]; ok && t != "application/xop+xml" {
			return VersionFromContentType(t)
		}
	}
	return 0, errorf(CodeInvalidContentType, nil, "content type %q is not a SOAP envelope", truncate(mt))
}

// Header holds the X-Road 4.0 SOAP headers.
type Header struct {
	Client               pki.ClientID
	Service              *pki.ServiceID // required in requests
	ID                   string
	UserID               string
	Issue                string
	ProtocolVersion      string
	RequestHash          string // base64, whitespace removed; responses only
	RequestHashAlgorithm string
	RepresentedParty     *RepresentedParty
	SecurityServer       *SecurityServerID
	SecurityToken        string // xrd:securityToken, passed through
	SecurityTokenType    string
}

// RepresentedParty is the representation extension header.
type RepresentedParty struct {
	Class string // optional
	Code  string
}

// SecurityServerID names a security server: its owner member and server code.
type SecurityServerID struct {
	Owner pki.ClientID
	Code  string
}

// Envelope is a parsed, validated SOAP envelope with X-Road headers. It keeps
// the bytes it was parsed from; callers forward those, never a re-serialization.
type Envelope struct {
	Version Version
	Header  Header
	Raw     []byte

	doc    *etree.Document
	header *etree.Element
	body   *etree.Element
	lay    layout // where Header and Security sit in Raw
}

// Operation is the name of the Body's single child (the operation of a
// document/literal wrapped message, e.g. {http://x-road.eu/xsd/xroad.xsd}listMethods).
func (e *Envelope) Operation() xml.Name {
	c := e.body.ChildElements()[0]
	return xml.Name{Space: c.NamespaceURI(), Local: c.Tag}
}

// IsFault reports whether the Body holds a SOAP Fault.
func (e *Envelope) IsFault() bool {
	op := e.Operation()
	return op.Local == "Fault" && op.Space == e.Version.Namespace()
}

// ParseEnvelope parses and validates an X-Road SOAP envelope as X-Road does:
// hardened XML intake (see Limits), SOAP version from contentType (may be
// empty: then from the namespace) matching the envelope's namespace, one
// Header with the X-Road headers (client, id and protocolVersion "4.0"
// mandatory, none twice, identifiers well-formed), exactly one Body with one
// child element. Errors are *Error with the X-Road code.
func ParseEnvelope(contentType string, data []byte, lim Limits) (*Envelope, error) {
	doc, lay, err := parseXML(data, lim)
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, errorf(CodeInvalidMessage, err, "message too large")
		}
		return nil, errorf(CodeInvalidXML, err, "malformed XML")
	}
	root := doc.Root()
	v, err := versionOf(root)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		cv, err := VersionFromContentType(contentType)
		if err != nil {
			return nil, err
		}
		if cv != v {
			return nil, errorf(CodeInvalidContentType, nil, "content type is %s but the envelope is %s", cv, v)
		}
	}
	env := &Envelope{Version: v, Raw: data, doc: doc, lay: lay}
	ns := v.Namespace()
	kids := root.ChildElements()
	for _, t := range root.Child {
		if cd, ok := t.(*etree.CharData); ok && strings.TrimSpace(cd.Data) != "" {
			return nil, errorf(CodeInvalidSoap, nil, "text inside Envelope")
		}
	}
	switch {
	case len(kids) == 0 || !isNS(kids[0], ns, "Header") && !isNS(kids[0], ns, "Body"):
		if len(kids) == 0 {
			return nil, errorf(CodeMissingBody, nil, "Malformed SOAP message: body missing")
		}
		return nil, errorf(CodeInvalidSoap, nil, "unexpected element %q in Envelope", kids[0].Tag)
	case isNS(kids[0], ns, "Body"):
		return nil, errorf(CodeMissingHeader, nil, "Malformed SOAP message: header missing")
	}
	env.header = kids[0]
	if len(kids) < 2 || !isNS(kids[1], ns, "Body") {
		if len(kids) >= 2 && isNS(kids[1], ns, "Header") {
			return nil, errorf(CodeInvalidSoap, nil, "more than one Header")
		}
		if len(kids) >= 2 {
			return nil, errorf(CodeInvalidSoap, nil, "unexpected element %q in Envelope", kids[1].Tag)
		}
		return nil, errorf(CodeMissingBody, nil, "Malformed SOAP message: body missing")
	}
	if len(kids) > 2 {
		return nil, errorf(CodeInvalidSoap, nil, "unexpected element %q after Body", kids[2].Tag)
	}
	env.body = kids[1]
	switch n := len(env.body.ChildElements()); {
	case n == 0:
		return nil, errorf(CodeMissingBody, nil, "Malformed SOAP message: body missing")
	case n > 1:
		return nil, errorf(CodeInvalidBody, nil, "Body must have exactly one child element")
	}
	for _, t := range env.body.Child {
		if cd, ok := t.(*etree.CharData); ok && strings.TrimSpace(cd.Data) != "" {
			return nil, errorf(CodeInvalidBody, nil, "text inside Body")
		}
	}
	if err := parseHeader(env.header, &env.Header); err != nil {
		return nil, err
	}
	return env, nil
}

// ParseRequest is ParseEnvelope plus the request rules: a service header.
func ParseRequest(contentType string, data []byte, lim Limits) (*Envelope, error) {
	env, err := ParseEnvelope(contentType, data, lim)
	if err != nil {
		return nil, err
	}
	if env.Header.Service == nil {
		return nil, errorf(CodeMissingHeaderField, nil, "Required field 'service' is missing")
	}
	return env, nil
}

func versionOf(root *etree.Element) (Version, error) {
	if root.Tag != "Envelope" {
		return 0, errorf(CodeInvalidSoap, nil, "root element is not a SOAP Envelope")
	}
	switch root.NamespaceURI() {
	case NamespaceSOAP11:
		return SOAP11, nil
	case NamespaceSOAP12:
		return SOAP12, nil
	}
	return 0, errorf(CodeInvalidSoap, nil, "unknown SOAP envelope namespace")
}

func isNS(el *etree.Element, ns, local string) bool {
	return el.Tag == local && el.NamespaceURI() == ns
}

func childNS(el *etree.Element, ns, local string) []*etree.Element {
	var out []*etree.Element
	for _, c := range el.ChildElements() {
		if isNS(c, ns, local) {
			out = append(out, c)
		}
	}
	return out
}

// textField returns the text of a header element that must hold text only.
func textField(el *etree.Element) (string, error) {
	if len(el.ChildElements()) > 0 {
		return "", errorf(CodeInvalidHeaderField, nil, "header field %q must hold text only", el.Tag)
	}
	return leafText(el), nil
}

func parseHeader(h *etree.Element, out *Header) error {
	seen := map[string]bool{}
	for _, el := range h.ChildElements() {
		ns := el.NamespaceURI()
		if ns != NamespaceXRoad && ns != NamespaceRepresentation {
			continue // other headers pass through (ours is checked by Verify)
		}
		key := ns + " " + el.Tag
		if seen[key] {
			return errorf(CodeDuplicateHeaderField, nil, "Duplicate header field '%s'", el.Tag)
		}
		seen[key] = true
		var err error
		switch {
		case ns == NamespaceRepresentation && el.Tag == "representedParty":
			out.RepresentedParty, err = parseRepresentedParty(el)
		case ns == NamespaceRepresentation:
			continue
		case el.Tag == "client":
			var c pki.ClientID
			c, _, err = parseIdentifier(el, "client")
			out.Client = c
		case el.Tag == "service":
			var s pki.ServiceID
			s, err = parseService(el)
			out.Service = &s
		case el.Tag == "securityServer":
			out.SecurityServer, err = parseSecurityServer(el)
		case el.Tag == "id":
			out.ID, err = textField(el)
		case el.Tag == "userId":
			out.UserID, err = textField(el)
		case el.Tag == "issue":
			out.Issue, err = textField(el)
		case el.Tag == "protocolVersion":
			out.ProtocolVersion, err = textField(el)
		case el.Tag == "securityToken":
			out.SecurityToken, err = textField(el)
			out.SecurityTokenType = el.SelectAttrValue("tokenType", "")
		case el.Tag == "requestHash":
			var s string
			s, err = textField(el)
			out.RequestHash = strings.Join(strings.Fields(s), "")
			out.RequestHashAlgorithm = el.SelectAttrValue("algorithmId", "")
		}
		if err != nil {
			return err
		}
	}
	switch {
	case !seen[NamespaceXRoad+" client"]:
		return errorf(CodeMissingHeaderField, nil, "Required field 'client' is missing")
	case !seen[NamespaceXRoad+" id"]:
		return errorf(CodeMissingHeaderField, nil, "Required field 'id' is missing")
	case !seen[NamespaceXRoad+" protocolVersion"]:
		return errorf(CodeMissingHeaderField, nil, "Required field 'protocolVersion' is missing")
	case strings.TrimSpace(out.ID) == "":
		return errorf(CodeInvalidHeaderField, nil, "Header field 'id' is empty")
	case out.ProtocolVersion != ProtocolVersion:
		return errorf(CodeInvalidProtocolVersion, nil, "Invalid protocol version (expected %s)", ProtocolVersion)
	}
	return nil
}

// identifier reads an X-Road identifier element: @id:objectType and its
// id:* parts, each at most once and nothing else.
func identifierParts(el *etree.Element, code string) (string, map[string]string, error) {
	ot := ""
	for _, a := range el.Attr {
		if a.Key == "objectType" && el.NamespaceURI() != "" && attrNS(el, a) == NamespaceIdentifiers {
			ot = a.Value
		}
	}
	if ot == "" {
		return "", nil, errorf(code, nil, "'%s' has no id:objectType", el.Tag)
	}
	parts := map[string]string{}
	for _, c := range el.ChildElements() {
		if c.NamespaceURI() != NamespaceIdentifiers {
			return "", nil, errorf(code, nil, "unexpected element %q in '%s'", c.Tag, el.Tag)
		}
		switch c.Tag {
		case "xRoadInstance", "memberClass", "memberCode", "subsystemCode", "serviceCode", "serviceVersion", "serverCode":
		default:
			return "", nil, errorf(code, nil, "unexpected element %q in '%s'", c.Tag, el.Tag)
		}
		if _, dup := parts[c.Tag]; dup {
			return "", nil, errorf(code, nil, "duplicate %q in '%s'", c.Tag, el.Tag)
		}
		if len(c.ChildElements()) > 0 {
			return "", nil, errorf(code, nil, "%q in '%s' must hold text only", c.Tag, el.Tag)
		}
		parts[c.Tag] = leafText(c)
	}
	return ot, parts, nil
}

func attrNS(el *etree.Element, a etree.Attr) string {
	if a.Space == "" {
		return ""
	}
	return a.NamespaceURI()
}

func memberParts(p map[string]string) []string {
	return []string{p["xRoadInstance"], p["memberClass"], p["memberCode"]}
}

func parseIdentifier(el *etree.Element, what string) (pki.ClientID, string, error) {
	code := CodeInvalidClientIdentifier
	ot, p, err := identifierParts(el, code)
	if err != nil {
		return pki.ClientID{}, "", err
	}
	parts := memberParts(p)
	switch ot {
	case "MEMBER":
		if _, ok := p["subsystemCode"]; ok {
			return pki.ClientID{}, "", errorf(code, nil, "'%s' of type MEMBER has a subsystemCode", what)
		}
	case "SUBSYSTEM":
		parts = append(parts, p["subsystemCode"])
	default:
		return pki.ClientID{}, "", errorf(code, nil, "'%s' has objectType %q, want MEMBER or SUBSYSTEM", what, truncate(ot))
	}
	for _, k := range []string{"serviceCode", "serviceVersion", "serverCode"} {
		if _, ok := p[k]; ok {
			return pki.ClientID{}, "", errorf(code, nil, "'%s' has a %s", what, k)
		}
	}
	c, err := pki.NewClientID(parts...)
	if err != nil {
		return pki.ClientID{}, "", errorf(code, err, "malformed '%s' identifier", what)
	}
	return c, ot, nil
}

func parseService(el *etree.Element) (pki.ServiceID, error) {
	code := CodeInvalidServiceIdentifier
	ot, p, err := identifierParts(el, code)
	if err != nil {
		return pki.ServiceID{}, err
	}
	if ot != "SERVICE" {
		return pki.ServiceID{}, errorf(code, nil, "'service' has objectType %q, want SERVICE", truncate(ot))
	}
	if _, ok := p["serverCode"]; ok {
		return pki.ServiceID{}, errorf(code, nil, "'service' has a serverCode")
	}
	parts := memberParts(p)
	if sub, ok := p["subsystemCode"]; ok {
		parts = append(parts, sub)
	}
	_, hasVersion := p["serviceVersion"]
	if hasVersion && p["serviceVersion"] == "" {
		return pki.ServiceID{}, errorf(code, nil, "empty serviceVersion")
	}
	s, err := pki.NewServiceID(parts, p["serviceCode"], p["serviceVersion"])
	if err != nil {
		return pki.ServiceID{}, errorf(code, err, "malformed 'service' identifier")
	}
	return s, nil
}

func parseSecurityServer(el *etree.Element) (*SecurityServerID, error) {
	code := CodeInvalidHeaderField
	ot, p, err := identifierParts(el, code)
	if err != nil {
		return nil, err
	}
	if ot != "SERVER" {
		return nil, errorf(code, nil, "'securityServer' has objectType %q, want SERVER", truncate(ot))
	}
	m, err := pki.NewClientID(memberParts(p)...)
	if err != nil || !pki.ValidPart(p["serverCode"]) {
		return nil, errorf(code, err, "malformed 'securityServer' identifier")
	}
	return &SecurityServerID{Owner: m, Code: p["serverCode"]}, nil
}

func parseRepresentedParty(el *etree.Element) (*RepresentedParty, error) {
	rp := &RepresentedParty{}
	var haveCode bool
	for _, c := range el.ChildElements() {
		if c.NamespaceURI() != NamespaceRepresentation || len(c.ChildElements()) > 0 {
			return nil, errorf(CodeInvalidHeaderField, nil, "malformed 'representedParty'")
		}
		switch c.Tag {
		case "partyClass":
			rp.Class = leafText(c)
		case "partyCode":
			rp.Code, haveCode = leafText(c), true
		default:
			return nil, errorf(CodeInvalidHeaderField, nil, "malformed 'representedParty'")
		}
	}
	if !haveCode || !pki.ValidPart(rp.Code) || rp.Class != "" && !pki.ValidPart(rp.Class) {
		return nil, errorf(CodeInvalidHeaderField, nil, "malformed 'representedParty'")
	}
	return rp, nil
}

// decodeB64 decodes standard base64 ignoring whitespace.
func decodeB64(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b >= utf8.RuneSelf || asciiSpace[b] {
			return base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
		}
	}
	return base64.StdEncoding.DecodeString(s)
}

// asciiSpace are the ASCII bytes strings.Fields splits at.
var asciiSpace = [utf8.RuneSelf]bool{'\t': true, '\n': true, '\v': true, '\f': true, '\r': true, ' ': true}
