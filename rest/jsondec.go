package rest

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// payloadFields are the fields of a request or response payload, as
// decoded, before decodeCommon checks them. headers are in payload order,
// not yet checked.
type payloadFields struct {
	v                         int
	kind, id, client, service string
	method, path, query       string // requests
	status                    int    // responses
	request                   string // responses
	headers                   []SignedHeader
	bodyLength                int64
	bodySHA256, signedAt      string
}

// maxFastHeaders bounds the payload headers decodePayloadFast takes (it
// looks for duplicates pairwise); more go the encoding/json way.
const maxFastHeaders = 64

// decodePayloadFast decodes a payload of kind written the plain way signers
// write it (appendRequestPayload does): one JSON object, each known field at
// most once, its key spelt exactly, integers without fraction or exponent,
// headers an object of arrays of strings, nothing after the object but
// white space. On such input
// encoding/json (decodeStrict into wireRequest / wireResponse) decodes the
// same values, which FuzzDecodePayloadFast checks. For anything else it
// reports false and the caller decodes with encoding/json, which accepts or
// refuses exactly as before. The strings without escapes are slices of s.
func decodePayloadFast(s, kind string) (f payloadFields, ok bool) {
	p := jsonScanner{s: s}
	if !p.consume('{') {
		return f, false
	}
	var seen uint16
	if !p.consume('}') {
		for {
			key, ok := p.str()
			if !ok || !p.consume(':') {
				return f, false
			}
			var bit uint16
			switch {
			case key == "v":
				bit = 1 << 0
				var n int64
				n, ok = p.int(strconv.IntSize)
				f.v = int(n)
			case key == "kind":
				bit = 1 << 1
				f.kind, ok = p.str()
			case key == "id":
				bit = 1 << 2
				f.id, ok = p.str()
			case key == "client":
				bit = 1 << 3
				f.client, ok = p.str()
			case key == "service":
				bit = 1 << 4
				f.service, ok = p.str()
			case key == "headers":
				bit = 1 << 5
				f.headers, ok = p.headers()
			case key == "bodyLength":
				bit = 1 << 6
				f.bodyLength, ok = p.int(64)
			case key == "bodySha256":
				bit = 1 << 7
				f.bodySHA256, ok = p.str()
			case key == "signedAt":
				bit = 1 << 8
				f.signedAt, ok = p.str()
			case key == "method" && kind == kindRequest:
				bit = 1 << 9
				f.method, ok = p.str()
			case key == "path" && kind == kindRequest:
				bit = 1 << 10
				f.path, ok = p.str()
			case key == "query" && kind == kindRequest:
				bit = 1 << 11
				f.query, ok = p.str()
			case key == "status" && kind == kindResponse:
				bit = 1 << 12
				var n int64
				n, ok = p.int(strconv.IntSize)
				f.status = int(n)
			case key == "request" && kind == kindResponse:
				bit = 1 << 13
				f.request, ok = p.str()
			default:
				return f, false
			}
			if !ok || seen&bit != 0 {
				return f, false
			}
			seen |= bit
			if p.consume(',') {
				continue
			}
			if p.consume('}') {
				break
			}
			return f, false
		}
	}
	p.space()
	return f, p.i == len(s)
}

// jsonScanner reads the plain JSON decodePayloadFast accepts from s[i:].
type jsonScanner struct {
	s string
	i int
}

func (p *jsonScanner) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// consume skips white space and c, reporting whether c was there.
func (p *jsonScanner) consume(c byte) bool {
	p.space()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string. One without escapes, in valid UTF-8 (what signers
// write but for the characters appendJSONString escapes), is a slice of s.
func (p *jsonScanner) str() (string, bool) {
	p.space()
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return "", false
	}
	start, plain := p.i+1, true
	for j := start; j < len(p.s); j++ {
		switch c := p.s[j]; {
		case c == '"':
			v := p.s[start:j]
			p.i = j + 1
			if plain || utf8.ValidString(v) && strings.IndexByte(v, '\\') < 0 {
				return v, true
			}
			return unquote(v), true
		case c == '\\':
			plain = false
			j++
			if j >= len(p.s) {
				return "", false
			}
			switch p.s[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if getu4(p.s[j-1:]) < 0 {
					return "", false
				}
				j += 4
			default:
				return "", false
			}
		case c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			plain = false
		}
	}
	return "", false
}

// unquote decodes the escapes of a string str has checked, and replaces
// invalid UTF-8 with U+FFFD, as encoding/json does.
func unquote(s string) string {
	b := make([]byte, 0, len(s)+utf8.UTFMax)
	for r := 0; r < len(s); {
		switch c := s[r]; {
		case c == '\\':
			r++
			switch s[r] {
			case 'b':
				b = append(b, '\b')
				r++
			case 'f':
				b = append(b, '\f')
				r++
			case 'n':
				b = append(b, '\n')
				r++
			case 'r':
				b = append(b, '\r')
				r++
			case 't':
				b = append(b, '\t')
				r++
			case 'u':
				rr := getu4(s[r-1:])
				r += 5
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != unicode.ReplacementChar {
						r += 6
						b = utf8.AppendRune(b, dec)
						break
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
			default: // " \ /
				b = append(b, s[r])
				r++
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRuneInString(s[r:])
			r += size
			b = utf8.AppendRune(b, rr)
		}
	}
	return string(b)
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s string) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range []byte(s[2:6]) {
		switch {
		case '0' <= c && c <= '9':
			c = c - '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// int reads a JSON integer (no fraction, no exponent) that fits in bits.
func (p *jsonScanner) int(bits int) (int64, bool) {
	p.space()
	j := p.i
	if j < len(p.s) && p.s[j] == '-' {
		j++
	}
	d := j
	for j < len(p.s) && '0' <= p.s[j] && p.s[j] <= '9' {
		j++
	}
	if j == d || (p.s[d] == '0' && j-d > 1) {
		return 0, false
	}
	if j < len(p.s) && (p.s[j] == '.' || p.s[j] == 'e' || p.s[j] == 'E') {
		return 0, false
	}
	n, err := strconv.ParseInt(p.s[p.i:j], 10, bits)
	if err != nil {
		return 0, false
	}
	p.i = j
	return n, true
}

// headers reads an object of arrays of strings, each name once.
func (p *jsonScanner) headers() ([]SignedHeader, bool) {
	if !p.consume('{') {
		return nil, false
	}
	if p.consume('}') {
		return []SignedHeader{}, true
	}
	var endsBuf [maxFastHeaders]int
	hs := make([]SignedHeader, 0, 8)
	values := make([]string, 0, 8)
	ends := endsBuf[:0] // of each header's values in values
	for {
		name, ok := p.str()
		if !ok || !p.consume(':') || !p.consume('[') || len(hs) == maxFastHeaders {
			return nil, false
		}
		for _, h := range hs {
			if h.Name == name {
				return nil, false
			}
		}
		if !p.consume(']') {
			for {
				v, ok := p.str()
				if !ok {
					return nil, false
				}
				values = append(values, v)
				if p.consume(',') {
					continue
				}
				if p.consume(']') {
					break
				}
				return nil, false
			}
		}
		hs = append(hs, SignedHeader{Name: name})
		ends = append(ends, len(values))
		if p.consume(',') {
			continue
		}
		if p.consume('}') {
			break
		}
		return nil, false
	}
	start := 0
	for i := range hs {
		hs[i].Values = values[start:ends[i]:ends[i]]
		start = ends[i]
	}
	return hs, true
}
