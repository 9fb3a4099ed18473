package soap

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/beevik/etree"
	"github.com/google/uuid"
)

// Prefixes of X-Road fault codes: who is at fault and where it was found.
const (
	PrefixClient      = "Client"             // the client system's request is wrong
	PrefixClientProxy = "Server.ClientProxy" // found by the consumer-side security server
	PrefixServerProxy = "Server.ServerProxy" // found by the provider-side security server
)

// X-Road error codes (the part after the prefix). ServiceFailed is prepended
// by a security server to a code describing a fault in the service's response
// (Server.ClientProxy.ServiceFailed.MissingBody).
const (
	CodeInternalError            = "InternalError"
	CodeInvalidXML               = "InvalidXml"
	CodeInvalidSoap              = "InvalidSoap"
	CodeInvalidContentType       = "InvalidContentType"
	CodeInvalidMessage           = "InvalidMessage"
	CodeMissingHeader            = "MissingHeader"
	CodeMissingHeaderField       = "MissingHeaderField"
	CodeDuplicateHeaderField     = "DuplicateHeaderField"
	CodeInvalidHeaderField       = "InvalidHeaderField"
	CodeMissingBody              = "MissingBody"
	CodeInvalidBody              = "InvalidBody"
	CodeInvalidProtocolVersion   = "InvalidProtocolVersion"
	CodeInvalidClientIdentifier  = "InvalidClientIdentifier"
	CodeInvalidServiceIdentifier = "InvalidServiceIdentifier"
	CodeInvalidRequestHash       = "InconsistentResponse"
	CodeMissingSignature         = "MissingSignature"
	CodeInvalidSignatureValue    = "InvalidSignatureValue"
	CodeSignerMismatch           = "InvalidSignerCertificate"
	CodeInvalidAttachment        = "InvalidAttachment"
	CodeServiceFailed            = "ServiceFailed"
)

// Error is a protocol error with its X-Road code and a message that is safe to
// send to a peer. Err, the internal cause, is for logs only and never reaches
// the wire. Errors returned by this package that a caller turns into a fault
// are *Error; check causes with errors.Is (ErrInvalidXML, ErrBadSignature…).
type Error struct {
	Code string // X-Road code without prefix, e.g. MissingHeaderField
	Msg  string // public message
	Err  error  // internal cause, may be nil
}

func (e *Error) Error() string {
	if e.Err != nil {
		return "soap: " + e.Code + ": " + e.Msg + ": " + e.Err.Error()
	}
	return "soap: " + e.Code + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(code string, cause error, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// Fault is a SOAP fault as X-Road writes it.
type Fault struct {
	Code   string // full code: PrefixClient + "." + CodeMissingBody, …
	String string // faultstring / Reason
	Actor  string // faultactor / Role
	Detail string // faultDetail: a UUID that the server logs with the cause
}

// NewFault makes the fault for err, found at prefix (PrefixClient,
// PrefixClientProxy or PrefixServerProxy). An *Error in err's chain gives the
// code and public message; anything else becomes InternalError with a
// generic message, so that no internal cause reaches the wire. Detail is a
// fresh UUID: log it with err.
func NewFault(prefix string, err error) *Fault {
	f := &Fault{Code: prefix + "." + CodeInternalError, String: "Internal error", Detail: uuid.NewString()}
	var e *Error
	if errors.As(err, &e) {
		f.Code = prefix + "." + e.Code
		f.String = e.Msg
	}
	return f
}

// Error makes a Fault usable as an error (a fault parsed from a response).
func (f *Fault) Error() string { return "soap fault " + f.Code + ": " + f.String }

// Marshal renders f as a SOAP envelope of version v: for SOAP 1.1 the X-Road
// Fault (faultcode, faultstring, faultactor, detail/faultDetail); for SOAP 1.2
// a Fault whose Code is env:Sender (Client.* codes) or env:Receiver with the
// X-Road code as Subcode, Reason, optional Role and Detail/faultDetail.
func (f *Fault) Marshal(v Version) []byte {
	var b bytes.Buffer
	b.WriteString(xml.Header[:len(xml.Header)-1] + "\n")
	esc := func(s string) string {
		var w strings.Builder
		_ = xml.EscapeText(&w, []byte(s))
		return w.String()
	}
	if v == SOAP12 {
		top := "env:Receiver"
		if f.Code == PrefixClient || strings.HasPrefix(f.Code, PrefixClient+".") {
			top = "env:Sender"
		}
		fmt.Fprintf(&b, `<env:Envelope xmlns:env="%s">
    <env:Body>
        <env:Fault>
            <env:Code>
                <env:Value>%s</env:Value>
                <env:Subcode>
                    <env:Value>%s</env:Value>
                </env:Subcode>
            </env:Code>
            <env:Reason>
                <env:Text xml:lang="en">%s</env:Text>
            </env:Reason>
`, NamespaceSOAP12, top, esc(f.Code), esc(f.String))
		if f.Actor != "" {
			fmt.Fprintf(&b, "            <env:Role>%s</env:Role>\n", esc(f.Actor))
		}
		fmt.Fprintf(&b, `            <env:Detail>
                <faultDetail xmlns="">%s</faultDetail>
            </env:Detail>
        </env:Fault>
    </env:Body>
</env:Envelope>
`, esc(f.Detail))
		return b.Bytes()
	}
	fmt.Fprintf(&b, `<SOAP-ENV:Envelope xmlns:SOAP-ENV="%s">
    <SOAP-ENV:Body>
        <SOAP-ENV:Fault>
            <faultcode>%s</faultcode>
            <faultstring>%s</faultstring>
            <faultactor>%s</faultactor>
            <detail>
                <faultDetail xmlns="">%s</faultDetail>
            </detail>
        </SOAP-ENV:Fault>
    </SOAP-ENV:Body>
</SOAP-ENV:Envelope>
`, NamespaceSOAP11, esc(f.Code), esc(f.String), esc(f.Actor), esc(f.Detail))
	return b.Bytes()
}

// WriteFault is the one place where a SOAP fault reaches the wire: it writes
// f as version v with HTTP status 500, as SOAP and X-Road do.
func WriteFault(w http.ResponseWriter, v Version, f *Fault) {
	w.Header().Set("Content-Type", v.ContentType())
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write(f.Marshal(v))
}

// ParseFault reads a fault from a SOAP 1.1 or 1.2 envelope. It returns
// ErrNotFault (wrapped) when the envelope's Body holds something else.
func ParseFault(data []byte, lim Limits) (*Fault, error) {
	// Every response is asked whether it is a fault: a message that does
	// not even mention the element's name is answered without an XML parse.
	if !bytes.Contains(data, []byte("Fault")) {
		return nil, fmt.Errorf("%w: no Fault element", ErrNotFault)
	}
	doc, _, err := parseXML(data, lim)
	if err != nil {
		return nil, err
	}
	root := doc.Root()
	v, err := versionOf(root)
	if err != nil {
		return nil, err
	}
	body := childNS(root, v.Namespace(), "Body")
	if len(body) != 1 {
		return nil, fmt.Errorf("%w: want one Body", ErrNotFault)
	}
	fe := childNS(body[0], v.Namespace(), "Fault")
	if len(fe) != 1 || len(body[0].ChildElements()) != 1 {
		return nil, ErrNotFault
	}
	el := fe[0]
	f := &Fault{}
	if v == SOAP11 {
		f.Code = leafText(el.SelectElement("faultcode"))
		f.String = leafText(el.SelectElement("faultstring"))
		f.Actor = leafText(el.SelectElement("faultactor"))
		if d := el.SelectElement("detail"); d != nil {
			f.Detail = leafText(d.SelectElement("faultDetail"))
		}
	} else {
		ns := v.Namespace()
		code := firstNS(el, ns, "Code")
		f.Code = leafText(firstNS(code, ns, "Value"))
		if sub := firstNS(code, ns, "Subcode"); sub != nil {
			f.Code = leafText(firstNS(sub, ns, "Value"))
		}
		f.String = leafText(firstNS(firstNS(el, ns, "Reason"), ns, "Text"))
		f.Actor = leafText(firstNS(el, ns, "Role"))
		if d := firstNS(el, ns, "Detail"); d != nil {
			f.Detail = leafText(d.SelectElement("faultDetail"))
		}
	}
	if f.Code == "" {
		return nil, fmt.Errorf("%w: fault without code", ErrNotFault)
	}
	return f, nil
}

// ErrNotFault reports an envelope that carries no fault.
var ErrNotFault = errors.New("soap: not a fault")

func firstNS(el *etree.Element, ns, local string) *etree.Element {
	if el == nil {
		return nil
	}
	if c := childNS(el, ns, local); len(c) > 0 {
		return c[0]
	}
	return nil
}

// leafText is the character data directly inside el ("" for nil).
func leafText(el *etree.Element) string {
	if el == nil {
		return ""
	}
	var b strings.Builder
	for _, t := range el.Child {
		if cd, ok := t.(*etree.CharData); ok {
			b.WriteString(cd.Data)
		}
	}
	return b.String()
}
