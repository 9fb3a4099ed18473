package soap

import (
	"bytes"
	"encoding/xml"
	"unicode/utf8"
)

type tokStatus int

const (
	tokOK    tokStatus = iota
	tokEOF             // end of the document
	tokOther           // not in the plain subset: use encoding/xml
)

// plainTokenizer yields the tokens encoding/xml's Decoder.RawToken yields
// (Strict, no Entity map) for a plain subset of XML, which covers the
// envelopes security servers exchange, faster; at anything outside the
// subset, well-formed or not, it answers tokOther and parseXML starts over
// with encoding/xml. The subset:
//
//   - an XML declaration at the very start (read by encoding/xml itself);
//   - start, end and empty-element tags, attributes in double or single
//     quotes after whitespace (space, tab, newline), whitespace before '>';
//   - names of ASCII letters, digits, '_', '-' and '.', starting with a
//     letter or '_', with at most one ':' that has a part on both sides;
//   - text and attribute values of valid UTF-8 XML characters without '&',
//     '\r' or "]]>" (nor '<' in values): what encoding/xml passes through
//     unchanged;
//   - no comment, CDATA section, DOCTYPE or other processing instruction.
//
// TestPlainTokenizer and FuzzPlainTokenizer compare it with encoding/xml.
type plainTokenizer struct {
	data    []byte
	pos     int
	close   bool       // the EndElement of an empty-element tag is due
	closing xml.Name   // its name
	open    []xml.Name // of the start tags not yet closed, to reuse their strings
}

func (z *plainTokenizer) next() (xml.Token, tokStatus) {
	if z.close {
		z.close = false
		return xml.EndElement{Name: z.closing}, tokOK
	}
	d := z.data
	if z.pos >= len(d) {
		return nil, tokEOF
	}
	if d[z.pos] != '<' {
		end := bytes.IndexByte(d[z.pos:], '<')
		if end < 0 {
			end = len(d)
		} else {
			end += z.pos
		}
		t := d[z.pos:end]
		if !plainText(t) {
			return nil, tokOther
		}
		z.pos = end
		return xml.CharData(t), tokOK
	}
	if z.pos+1 >= len(d) {
		return nil, tokOther
	}
	switch d[z.pos+1] {
	case '/':
		var name xml.Name
		p, ok := z.pos+2, false
		if n := len(z.open); n > 0 {
			// Most likely the name of the open element: no new strings.
			name = z.open[n-1]
			p, ok = z.matchName(p, name)
		}
		if ok {
			z.open = z.open[:len(z.open)-1]
		} else if name, p, ok = z.name(z.pos + 2); !ok {
			return nil, tokOther
		}
		p = skipSpace(d, p)
		if p >= len(d) || d[p] != '>' {
			return nil, tokOther
		}
		z.pos = p + 1
		return xml.EndElement{Name: name}, tokOK
	case '?':
		return z.declaration()
	case '!':
		return nil, tokOther
	}
	name, p, ok := z.name(z.pos + 1)
	if !ok {
		return nil, tokOther
	}
	attrs := []xml.Attr{}
	for {
		q := skipSpace(d, p)
		if q >= len(d) {
			return nil, tokOther
		}
		switch d[q] {
		case '>':
			z.pos = q + 1
			z.open = append(z.open, name)
			return xml.StartElement{Name: name, Attr: attrs}, tokOK
		case '/':
			if q+1 < len(d) && d[q+1] == '>' {
				z.pos = q + 2
				z.close, z.closing = true, name
				return xml.StartElement{Name: name, Attr: attrs}, tokOK
			}
			return nil, tokOther
		}
		if q == p {
			return nil, tokOther // no whitespace before the attribute
		}
		an, r, ok := z.name(q)
		if !ok {
			return nil, tokOther
		}
		r = skipSpace(d, r)
		if r >= len(d) || d[r] != '=' {
			return nil, tokOther
		}
		r = skipSpace(d, r+1)
		if r >= len(d) || d[r] != '"' && d[r] != '\'' {
			return nil, tokOther
		}
		e := bytes.IndexByte(d[r+1:], d[r])
		if e < 0 {
			return nil, tokOther
		}
		e += r + 1
		v := d[r+1 : e]
		if bytes.IndexByte(v, '<') >= 0 || !plainText(v) {
			return nil, tokOther
		}
		attrs = append(attrs, xml.Attr{Name: an, Value: string(v)})
		p = e + 1
	}
}

// commonDeclarations are XML declarations encoding/xml accepts as they are
// (version 1.0, encoding UTF-8): their ProcInst is Target "xml" and the
// bytes between "<?xml " and "?>".
var commonDeclarations = [][]byte{
	[]byte(`<?xml version="1.0" encoding="UTF-8"?>`),
	[]byte(`<?xml version="1.0" encoding="utf-8"?>`),
	[]byte(`<?xml version="1.0"?>`),
	[]byte(`<?xml version='1.0' encoding='UTF-8'?>`),
	[]byte(`<?xml version='1.0' encoding='utf-8'?>`),
	[]byte(`<?xml version='1.0'?>`),
}

// declaration reads an XML declaration at the start of the document: a
// common one directly, any other with encoding/xml (version and encoding
// checks included).
func (z *plainTokenizer) declaration() (xml.Token, tokStatus) {
	if z.pos != 0 || !bytes.HasPrefix(z.data, []byte("<?xml")) {
		return nil, tokOther
	}
	for _, decl := range commonDeclarations {
		if bytes.HasPrefix(z.data, decl) {
			z.pos = len(decl)
			return xml.ProcInst{Target: "xml", Inst: decl[len("<?xml ") : len(decl)-len("?>")]}, tokOK
		}
	}
	end := bytes.Index(z.data, []byte("?>"))
	if end < 0 {
		return nil, tokOther
	}
	end += 2
	d := xml.NewDecoder(bytes.NewReader(z.data[:end]))
	d.Strict = true
	tok, err := d.RawToken()
	if pi, ok := tok.(xml.ProcInst); err == nil && ok && d.InputOffset() == int64(end) && pi.Target == "xml" {
		z.pos = end
		return pi.Copy(), tokOK
	}
	return nil, tokOther
}

// name reads a name at p: what encoding/xml's nsname returns for it, and
// the position after it.
func (z *plainTokenizer) name(p int) (xml.Name, int, bool) {
	d := z.data
	start, colon := p, -1
	if p >= len(d) || !isASCIILetter(d[p]) && d[p] != '_' {
		return xml.Name{}, 0, false
	}
	for p++; p < len(d); p++ {
		c := d[p]
		switch {
		case isASCIILetter(c) || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.':
			continue
		case c == ':':
			if colon >= 0 {
				return xml.Name{}, 0, false
			}
			colon = p
			continue
		case c >= utf8.RuneSelf:
			return xml.Name{}, 0, false
		}
		break
	}
	if colon < 0 {
		return xml.Name{Local: string(d[start:p])}, p, true
	}
	if colon == p-1 {
		return xml.Name{}, 0, false
	}
	return xml.Name{Space: string(d[start:colon]), Local: string(d[colon+1 : p])}, p, true
}

// matchName reports whether the name at p is want, as name would read it,
// and the position after it.
func (z *plainTokenizer) matchName(p int, want xml.Name) (int, bool) {
	d := z.data[p:]
	n := len(want.Local)
	if want.Space != "" {
		if len(d) <= len(want.Space) || string(d[:len(want.Space)]) != want.Space || d[len(want.Space)] != ':' {
			return 0, false
		}
		n += len(want.Space) + 1
	}
	if len(d) < n || string(d[n-len(want.Local):n]) != want.Local {
		return 0, false
	}
	// The name must end there, as name would end it.
	if n < len(d) {
		c := d[n]
		if isASCIILetter(c) || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':' || c >= utf8.RuneSelf {
			return 0, false
		}
	}
	return p + n, true
}

func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func skipSpace(d []byte, p int) int {
	for p < len(d) && (d[p] == ' ' || d[p] == '\t' || d[p] == '\n') {
		p++
	}
	return p
}

// plainText reports whether encoding/xml passes t (text or an attribute
// value) through unchanged and without error: valid UTF-8 XML characters,
// no '&' (a reference), no '\r' (normalized) and no "]]>".
func plainText(t []byte) bool {
	for i := 0; i < len(t); {
		c := t[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '&' || c == '\r':
				return false
			case c < 0x20 && c != '\t' && c != '\n':
				return false
			case c == '>' && i >= 2 && t[i-1] == ']' && t[i-2] == ']':
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(t[i:])
		if r == utf8.RuneError && size == 1 || !inCharacterRange(r) {
			return false
		}
		i += size
	}
	return true
}
