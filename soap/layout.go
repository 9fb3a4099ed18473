package soap

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
)

// layout is where the Header and our Security element sit in an envelope's
// bytes, so that Sign, Strip and InsertRequestHash edit the bytes in place and
// leave every other byte as the client wrote it. parseXML records it while it
// builds the tree; locate finds it in bytes that are not parsed otherwise.
type layout struct {
	headerOpenEnd    int64 // just after <Header …>
	headerCloseStart int64 // start of </Header>
	selfClosing      bool  // <Header/>
	secStart, secEnd int64 // our (first) Security element, -1 when absent
	secCount         int   // Security elements in the Header (parseXML)
	elements         int   // elements in the document (parseXML)
}

// errTwoSecurity is locate's error for a second Security header.
var errTwoSecurity = fmt.Errorf("%w: two Security headers", ErrBadSignature)

// check is locate's verdict on a layout recorded by parseXML.
func (l layout) check() error {
	if l.secCount > 1 {
		return errTwoSecurity
	}
	if l.headerOpenEnd < 0 || l.headerCloseStart < 0 {
		return errorf(CodeMissingHeader, nil, "Malformed SOAP message: header missing")
	}
	return nil
}

func locate(data []byte) (layout, error) {
	l := layout{headerOpenEnd: -1, headerCloseStart: -1, secStart: -1, secEnd: -1}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	depth := 0
	var envNS string
	for {
		before := d.InputOffset()
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return l, fmt.Errorf("%w: %v", ErrInvalidXML, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch {
			case depth == 1:
				envNS = t.Name.Space
			case depth == 2 && t.Name.Space == envNS && t.Name.Local == "Header" && l.headerOpenEnd < 0:
				l.headerOpenEnd = d.InputOffset()
			case depth == 3 && l.headerOpenEnd >= 0 && l.headerCloseStart < 0 &&
				t.Name.Space == NamespacePasserelle && t.Name.Local == "Security":
				if l.secStart >= 0 {
					return l, errTwoSecurity
				}
				l.secStart = before
			}
		case xml.EndElement:
			switch {
			case depth == 2 && t.Name.Space == envNS && t.Name.Local == "Header" && l.headerCloseStart < 0:
				l.headerCloseStart = before
				l.selfClosing = before == l.headerOpenEnd && bytes.HasSuffix(data[:before], []byte("/>"))
			case depth == 3 && l.secStart >= 0 && l.secEnd < 0 && t.Name.Space == NamespacePasserelle && t.Name.Local == "Security":
				l.secEnd = d.InputOffset()
			}
			depth--
		}
	}
	if l.headerOpenEnd < 0 || l.headerCloseStart < 0 {
		return l, errorf(CodeMissingHeader, nil, "Malformed SOAP message: header missing")
	}
	return l, nil
}

func splice(data []byte, at int64, insert []byte) []byte {
	out := make([]byte, 0, len(data)+len(insert))
	out = append(out, data[:at]...)
	out = append(out, insert...)
	return append(out, data[at:]...)
}
