package soap

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/passerelle/passerelle/pki"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata")

func TestParseFixtures(t *testing.T) {
	for _, tc := range []struct {
		file            string
		client, service string
		version         string
		rp              *RepresentedParty
		hash            bool
	}{
		{"soap-request_prmess-annexE1.xml", "PAS/GOV/MEMBER1/SUBSYSTEM1", "PAS/GOV/MEMBER2/SUBSYSTEM2/exampleService", "v1", nil, false},
		{"soap-response_prmess-annexE2.xml", "PAS/GOV/MEMBER1/SUBSYSTEM1", "PAS/GOV/MEMBER2/SUBSYSTEM2/exampleService", "v1", nil, true},
		{"soap-fault-nontechnical_prmess-annexD2.xml", "PAS/GOV/MEMBER1/SUBSYSTEM1", "PAS/GOV/MEMBER2/SUBSYSTEM2/test", "v1", nil, true},
		{"testres_getstate-subsystem.query", "PAS/BUSINESS/consumer/subsys1", "PAS/BUSINESS/producer/subsys2/getState", "", nil, false},
		{"testres_getstate-subsystem.answer", "PAS/BUSINESS/consumer/subsys1", "PAS/BUSINESS/producer/subsys2/getState", "", nil, false},
		{"testres_simple-representedparty.query", "PAS/BUSINESS/consumer", "PAS/BUSINESS/producer/testQuery", "", &RepresentedParty{Class: "COM", Code: "MEMBER3"}, false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			env, err := ParseRequest("text/xml; charset=utf-8", readTestdata(t, tc.file), Limits{})
			if err != nil {
				t.Fatalf("ParseRequest = %v", err)
			}
			h := env.Header
			if h.Client.String() != tc.client || h.Service.String() != tc.service || h.Service.Version != tc.version {
				t.Errorf("client, service, version = %s, %s, %q; want %s, %s, %q", h.Client, h.Service, h.Service.Version, tc.client, tc.service, tc.version)
			}
			if h.ProtocolVersion != "4.0" || h.ID == "" {
				t.Errorf("protocolVersion, id = %q, %q", h.ProtocolVersion, h.ID)
			}
			if (tc.rp == nil) != (h.RepresentedParty == nil) || tc.rp != nil && *tc.rp != *h.RepresentedParty {
				t.Errorf("representedParty = %+v, want %+v", h.RepresentedParty, tc.rp)
			}
			if hasHash := h.RequestHash != ""; hasHash != tc.hash || tc.hash && (h.RequestHashAlgorithm != AlgSHA512 || strings.ContainsAny(h.RequestHash, " \n")) {
				t.Errorf("requestHash = %q (%s)", h.RequestHash, h.RequestHashAlgorithm)
			}
		})
	}
}

// envelope builds a SOAP 1.1 X-Road request with the given headers and body content.
func envelope(headers, body string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers">
<SOAP-ENV:Header>` + headers + `</SOAP-ENV:Header>
<SOAP-ENV:Body>` + body + `</SOAP-ENV:Body>
</SOAP-ENV:Envelope>`)
}

const (
	hClient   = `<xrd:client id:objectType="SUBSYSTEM"><id:xRoadInstance>PAS</id:xRoadInstance><id:memberClass>GOV</id:memberClass><id:memberCode>MEMBER1</id:memberCode><id:subsystemCode>SUB1</id:subsystemCode></xrd:client>`
	hService  = `<xrd:service id:objectType="SERVICE"><id:xRoadInstance>PAS</id:xRoadInstance><id:memberClass>GOV</id:memberClass><id:memberCode>MEMBER2</id:memberCode><id:serviceCode>getThing</id:serviceCode><id:serviceVersion>v2</id:serviceVersion></xrd:service>`
	hID       = `<xrd:id>1c1d2e</xrd:id>`
	hProto    = `<xrd:protocolVersion>4.0</xrd:protocolVersion>`
	hAll      = hClient + hService + hID + hProto
	bodyOK    = `<m:getThing xmlns:m="urn:m"><q>1</q></m:getThing>`
	soap12Env = `<?xml version="1.0"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers"><env:Header>` + hAll + `</env:Header><env:Body>` + bodyOK + `</env:Body></env:Envelope>`
)

func TestParseEnvelopeVersions(t *testing.T) {
	env, err := ParseRequest("", envelope(hAll, bodyOK), Limits{})
	if err != nil || env.Version != SOAP11 {
		t.Fatalf("SOAP 1.1: %v, %v", env, err)
	}
	if s := env.Header.Service; s.Client.IsSubsystem() || s.Version != "v2" {
		t.Errorf("service on a member = %+v", s)
	}
	if op := env.Operation(); op.Space != "urn:m" || op.Local != "getThing" {
		t.Errorf("Operation() = %v", op)
	}
	env, err = ParseRequest("application/soap+xml; charset=utf-8", []byte(soap12Env), Limits{})
	if err != nil || env.Version != SOAP12 {
		t.Fatalf("SOAP 1.2: %v, %v", env, err)
	}
}

func TestValidationFaultCodes(t *testing.T) {
	for _, tc := range []struct {
		name, ct string
		doc      []byte
		code     string
	}{
		{"no protocolVersion", "", envelope(hClient+hService+hID, bodyOK), CodeMissingHeaderField},
		{"protocolVersion 3.1", "", envelope(hClient+hService+hID+`<xrd:protocolVersion>3.1</xrd:protocolVersion>`, bodyOK), CodeInvalidProtocolVersion},
		{"no client", "", envelope(hService+hID+hProto, bodyOK), CodeMissingHeaderField},
		{"no service", "", envelope(hClient+hID+hProto, bodyOK), CodeMissingHeaderField},
		{"no id", "", envelope(hClient+hService+hProto, bodyOK), CodeMissingHeaderField},
		{"two ids", "", envelope(hAll+hID, bodyOK), CodeDuplicateHeaderField},
		{"empty body", "", envelope(hAll, ""), CodeMissingBody},
		{"two body children", "", envelope(hAll, bodyOK+bodyOK), CodeInvalidBody},
		{"no header", "", []byte(`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><a/></s:Body></s:Envelope>`), CodeMissingHeader},
		{"no body", "", []byte(`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header/></s:Envelope>`), CodeMissingBody},
		{"two bodies", "", bytes.Replace(envelope(hAll, bodyOK), []byte("</SOAP-ENV:Envelope>"), []byte("<SOAP-ENV:Body/></SOAP-ENV:Envelope>"), 1), CodeInvalidSoap},
		{"wrong namespace", "", []byte(`<s:Envelope xmlns:s="urn:x"><s:Body/></s:Envelope>`), CodeInvalidSoap},
		{"1.1 as soap+xml", "application/soap+xml", envelope(hAll, bodyOK), CodeInvalidContentType},
		{"1.2 as text/xml", "text/xml", []byte(soap12Env), CodeInvalidContentType},
		{"json content type", "application/json", envelope(hAll, bodyOK), CodeInvalidContentType},
		{"latin-1 charset", "text/xml; charset=iso-8859-1", envelope(hAll, bodyOK), CodeInvalidContentType},
		{"bad client part", "", envelope(strings.Replace(hClient, "MEMBER1", "MEM BER1", 1)+hService+hID+hProto, bodyOK), CodeInvalidClientIdentifier},
		{"whitespace in identifier", "", envelope(strings.Replace(hClient, ">MEMBER1<", "> MEMBER1<", 1)+hService+hID+hProto, bodyOK), CodeInvalidClientIdentifier},
		{"member client with subsystem", "", envelope(strings.Replace(hClient, `"SUBSYSTEM"`, `"MEMBER"`, 1)+hService+hID+hProto, bodyOK), CodeInvalidClientIdentifier},
		{"service without code", "", envelope(hClient+strings.Replace(hService, "<id:serviceCode>getThing</id:serviceCode>", "", 1)+hID+hProto, bodyOK), CodeInvalidServiceIdentifier},
		{"malformed XML", "", []byte("<a>"), CodeInvalidXML},
		{"too large", "", envelope(hAll, `<m:x xmlns:m="urn:m">`+strings.Repeat("a", 11<<20)+`</m:x>`), CodeInvalidMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRequest(tc.ct, tc.doc, Limits{})
			var e *Error
			if !errors.As(err, &e) || e.Code != tc.code {
				t.Fatalf("ParseRequest = %v, want code %s", err, tc.code)
			}
			f := NewFault(PrefixClient, err)
			if f.Code != "Client."+tc.code || f.Detail == "" {
				t.Errorf("NewFault = %+v", f)
			}
		})
	}
}

func TestHardenedXML(t *testing.T) {
	ok := envelope(hAll, bodyOK)
	deep := `<m:x xmlns:m="urn:m">` + strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100) + `</m:x>`
	for _, tc := range []struct {
		name string
		doc  []byte
		want error
	}{
		{"XXE", append([]byte(`<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>`), ok[len(`<?xml version="1.0" encoding="UTF-8"?>`):]...), ErrDTD},
		{"billion laughs", []byte(`<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><l>&b;</l>`), ErrDTD},
		{"undeclared entity", envelope(hAll, `<m:x xmlns:m="urn:m">&nbsp;</m:x>`), ErrInvalidXML},
		{"deep nesting", envelope(hAll, deep), ErrLimit},
		{"processing instruction", envelope(hAll, `<?evil x?>`+bodyOK), ErrProcInst},
		{"comment", envelope(hAll, `<!--c-->`+bodyOK), ErrComment},
		{"duplicate Id", envelope(hAll, `<m:x xmlns:m="urn:m" xmlns:wsu="urn:wsu"><a Id="1"/><b wsu:Id="1"/></m:x>`), ErrDuplicateID},
		{"duplicate attribute", envelope(hAll, `<m:x xmlns:m="urn:m" a="1" a="2"/>`), ErrInvalidXML},
		{"two roots", append(ok, []byte("<x/>")...), ErrInvalidXML},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := scan(tc.doc, Limits{}); !errors.Is(err, tc.want) {
				t.Errorf("scan = %v, want %v", err, tc.want)
			}
			if _, err := ParseEnvelope("", tc.doc, Limits{}); err == nil {
				t.Error("ParseEnvelope accepted it")
			}
		})
	}
	if err := scan(ok, Limits{}); err != nil {
		t.Errorf("scan(valid) = %v", err)
	}
	if err := scan(ok, Limits{MaxElements: 5}); !errors.Is(err, ErrLimit) {
		t.Errorf("scan with MaxElements 5 = %v, want ErrLimit", err)
	}
}

func TestFaultGolden(t *testing.T) {
	f := &Fault{Code: PrefixClientProxy + "." + CodeServiceFailed + "." + CodeMissingBody, String: "Malformed SOAP message: body missing", Detail: "f31e7451-f0ac-48f6-9f05-1f0459e48eea"}
	for _, tc := range []struct {
		v      Version
		golden string
	}{{SOAP11, "fault-soap11.golden.xml"}, {SOAP12, "fault-soap12.golden.xml"}} {
		t.Run(tc.v.String(), func(t *testing.T) {
			got := f.Marshal(tc.v)
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if want := readTestdata(t, tc.golden); !bytes.Equal(got, want) {
				t.Errorf("Marshal(%s) =\n%s\nwant\n%s", tc.v, got, want)
			}
			back, err := ParseFault(got, Limits{})
			if err != nil || *back != *f {
				t.Errorf("ParseFault(Marshal) = %+v, %v; want %+v", back, err, f)
			}
		})
	}
	// The SOAP 1.1 rendering is X-Road's Annex D.1 example.
	if got, want := f.Marshal(SOAP11), readTestdata(t, "soap-fault-technical_prmess-annexD1.xml"); !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)) {
		t.Errorf("SOAP 1.1 fault differs from Annex D.1:\n%s", got)
	}
	if _, err := ParseFault(readTestdata(t, "soap-request_prmess-annexE1.xml"), Limits{}); !errors.Is(err, ErrNotFault) {
		t.Errorf("ParseFault(request) = %v, want ErrNotFault", err)
	}
}

func TestNewFaultHidesInternalCause(t *testing.T) {
	f := NewFault(PrefixServerProxy, errors.New("open /var/secret: permission denied"))
	if f.Code != "Server.ServerProxy.InternalError" || strings.Contains(string(f.Marshal(SOAP11)), "secret") {
		t.Errorf("NewFault(internal) = %+v", f)
	}
	wrapped := errorf(CodeMissingBody, errors.New("secret cause"), "body missing")
	if out := string(NewFault(PrefixClient, wrapped).Marshal(SOAP12)); strings.Contains(out, "secret") || !strings.Contains(out, "Client.MissingBody") || !strings.Contains(out, "env:Sender") {
		t.Errorf("SOAP 1.2 fault = %s", out)
	}
}

func TestRequestHash(t *testing.T) {
	req := readTestdata(t, "soap-request_prmess-annexE1.xml")
	resp := envelope(hAll, `<m:r xmlns:m="urn:m"/>`)
	withHash, err := InsertRequestHash(resp, req, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	env, err := ParseEnvelope("text/xml", withHash, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.CheckRequestHash(req); err != nil {
		t.Errorf("CheckRequestHash(request) = %v", err)
	}
	if err := env.CheckRequestHash(append(req, ' ')); !errors.Is(err, ErrRequestHash) {
		t.Errorf("CheckRequestHash(other) = %v, want ErrRequestHash", err)
	}
	if _, err := InsertRequestHash(withHash, req, Limits{}); err == nil {
		t.Error("InsertRequestHash twice succeeded")
	}
	// Every other byte is the service's.
	if i := bytes.Index(withHash, []byte("<xrd:requestHash")); !bytes.Equal(withHash[:i], resp[:i]) {
		t.Error("InsertRequestHash changed bytes before the header")
	}
}

// mimeFixture splits an X-Road Annex F/G example into its Content-Type and body.
func mimeFixture(t *testing.T, name string) (string, []byte) {
	data := readTestdata(t, name)
	head, body, _ := bytes.Cut(data, []byte("\n\n"))
	unfolded := strings.ReplaceAll(string(head), "\n    ", " ")
	for _, l := range strings.Split(unfolded, "\n") {
		if v, ok := strings.CutPrefix(l, "Content-Type: "); ok {
			return v, body
		}
	}
	t.Fatalf("%s: no Content-Type", name)
	return "", nil
}

type bufCloser struct{ bytes.Buffer }

func (*bufCloser) Close() error { return nil }

func TestReadMessageAttachments(t *testing.T) {
	for _, tc := range []struct {
		file string
		mtom bool
	}{{"soap-request-swaref-attachment_prmess-annexF.mime", false}, {"soap-request-mtom_prmess-annexG.mime", true}} {
		t.Run(tc.file, func(t *testing.T) {
			ct, body := mimeFixture(t, tc.file)
			var spooled bufCloser
			msg, err := ReadMessage(ct, bytes.NewReader(body), Limits{}, func(i int, h textproto.MIMEHeader) (io.WriteCloser, error) { return &spooled, nil })
			if err != nil {
				t.Fatal(err)
			}
			if msg.MTOM != tc.mtom || len(msg.Attachments) != 1 {
				t.Fatalf("MTOM, attachments = %v, %d", msg.MTOM, len(msg.Attachments))
			}
			a := msg.Attachments[0]
			if a.ContentID != "<data.bin>" || a.TransferEncoding != "base64" || a.Size != int64(spooled.Len()) || !bytes.Contains(spooled.Bytes(), []byte("VGhpcyBpcyBhdHRhY2htZW50Lg0K")) {
				t.Errorf("attachment = %+v, spooled %q", a, spooled.String())
			}
			env, err := ParseRequest(msg.ContentType, msg.Envelope, Limits{})
			if err != nil {
				t.Fatalf("ParseRequest(SOAP part) = %v", err)
			}
			if env.Header.Client != (pki.ClientID{Instance: "PAS", Class: "GOV", Member: "MEMBER1", Subsystem: "SUBSYSTEM1"}) {
				t.Errorf("client = %v", env.Header.Client)
			}
		})
	}
}

func TestReadMessageBounded(t *testing.T) {
	// A 64 MiB attachment streams through; only the SOAP part is held.
	big := io.MultiReader(strings.NewReader("--B\r\nContent-Type: text/xml\r\n\r\n"+string(envelope(hAll, bodyOK))+"\r\n--B\r\nContent-ID: <a>\r\n\r\n"),
		io.LimitReader(zeros{}, 64<<20), strings.NewReader("\r\n--B--\r\n"))
	msg, err := ReadMessage(`multipart/related; type="text/xml"; boundary=B`, big, Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Attachments[0].Size != 64<<20 {
		t.Errorf("size = %d", msg.Attachments[0].Size)
	}
	_, err = ReadMessage("text/xml", io.LimitReader(zeros{}, 2<<20), Limits{MaxSize: 1 << 20}, nil)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized envelope: %v, want ErrTooLarge", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// scan is parseXML's verdict on data.
func scan(data []byte, lim Limits) error {
	_, _, err := parseXML(data, lim)
	return err
}
