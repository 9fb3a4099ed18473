package rest

import (
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The signed payloads are written by hand rather than by json.Marshal over
// wireRequest / wireResponse: reflection and a map per message cost more
// than the rest of the encoding. The output is byte for byte what
// json.Marshal writes for the same wire struct (TestPayloadMatchesMarshal
// checks it): fields in struct order, header names sorted, one value per
// name (the last, as a map would keep), strings escaped as encoding/json
// escapes them (HTML characters, U+2028, U+2029, invalid UTF-8 as U+FFFD).

func appendRequestPayload(dst []byte, d *RequestDescriptor) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, ProtocolVersion, 10)
	dst = append(dst, `,"kind":"`+kindRequest+`","id":`...)
	dst = appendJSONString(dst, d.ID)
	dst = append(dst, `,"client":`...)
	dst = appendJSONString(dst, d.Client.String())
	dst = append(dst, `,"service":`...)
	dst = appendJSONString(dst, d.Service.String())
	dst = append(dst, `,"method":`...)
	dst = appendJSONString(dst, d.Method)
	dst = append(dst, `,"path":`...)
	dst = appendJSONString(dst, d.Path)
	dst = append(dst, `,"query":`...)
	dst = appendJSONString(dst, d.RawQuery)
	dst = append(dst, `,"headers":`...)
	dst = appendJSONHeaders(dst, d.Headers)
	dst = append(dst, `,"bodyLength":`...)
	dst = strconv.AppendInt(dst, d.Body.Length, 10)
	dst = append(dst, `,"bodySha256":"`...)
	dst = b64url.AppendEncode(dst, d.Body.SHA256[:])
	dst = append(dst, `","signedAt":`...)
	dst = appendJSONTime(dst, d.SignedAt)
	return append(dst, '}')
}

func appendResponsePayload(dst []byte, d *ResponseDescriptor) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, ProtocolVersion, 10)
	dst = append(dst, `,"kind":"`+kindResponse+`","id":`...)
	dst = appendJSONString(dst, d.ID)
	dst = append(dst, `,"client":`...)
	dst = appendJSONString(dst, d.Client.String())
	dst = append(dst, `,"service":`...)
	dst = appendJSONString(dst, d.Service.String())
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, int64(d.Status), 10)
	dst = append(dst, `,"headers":`...)
	dst = appendJSONHeaders(dst, d.Headers)
	dst = append(dst, `,"bodyLength":`...)
	dst = strconv.AppendInt(dst, d.Body.Length, 10)
	dst = append(dst, `,"bodySha256":"`...)
	dst = b64url.AppendEncode(dst, d.Body.SHA256[:])
	dst = append(dst, `","request":"`...)
	dst = b64url.AppendEncode(dst, d.Request[:])
	dst = append(dst, `","signedAt":`...)
	dst = appendJSONTime(dst, d.SignedAt)
	return append(dst, '}')
}

// appendJSONTime writes t as json.Marshal writes t.UTC().Format(timeFormat):
// RFC 3339 needs no escaping.
func appendJSONTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, timeFormat)
	return append(dst, '"')
}

// appendJSONHeaders writes hs as json.Marshal writes the map
// headersToWire(hs) makes: keys sorted, the last of duplicate names kept,
// nil values as null.
func appendJSONHeaders(dst []byte, hs []SignedHeader) []byte {
	byName := func(a, b SignedHeader) int { return strings.Compare(a.Name, b.Name) }
	if !slices.IsSortedFunc(hs, byName) { // CanonicalHeaders sorts them
		// Stable, so that the last of equal names stays last.
		hs = slices.Clone(hs)
		slices.SortStableFunc(hs, byName)
	}
	dst = append(dst, '{')
	first := true
	for i, h := range hs {
		if i+1 < len(hs) && hs[i+1].Name == h.Name {
			continue // a map keeps the last
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendJSONString(dst, h.Name)
		dst = append(dst, ':')
		if h.Values == nil {
			dst = append(dst, "null"...)
			continue
		}
		dst = append(dst, '[')
		for j, v := range h.Values {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, v)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

// jsonSafe reports the ASCII bytes encoding/json writes as they are (with
// HTML escaping, its default).
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return t
}()

// appendJSONString is encoding/json's string encoder (HTML escaping on).
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if jsonSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
