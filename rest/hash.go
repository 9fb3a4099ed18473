package rest

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"hash"
)

// BodyDigest describes a body by its length and digests: SHA-256 for
// Passerelle's signatures, SHA-512 for X-Road's X-Road-Request-Hash. The
// zero value is not the empty body's digest; use EmptyBody.
type BodyDigest struct {
	Length int64
	SHA256 [sha256.Size]byte
	SHA512 [sha512.Size]byte
}

// EmptyBody is the digest of a body of length 0.
var EmptyBody = DigestBytes(nil)

// DigestBytes digests an in-memory body.
func DigestBytes(b []byte) BodyDigest {
	return BodyDigest{Length: int64(len(b)), SHA256: sha256.Sum256(b), SHA512: sha512.Sum512(b)}
}

// Digester computes a BodyDigest while the body is written to it, e.g.
// io.Copy(io.MultiWriter(spool, d), body). Not safe for concurrent use.
type Digester struct {
	n    int64
	s256 hash.Hash
	s512 hash.Hash
}

// NewDigester returns a Digester ready for writing.
func NewDigester() *Digester {
	return &Digester{s256: sha256.New(), s512: sha512.New()}
}

// Write hashes p; it never fails.
func (d *Digester) Write(p []byte) (int, error) {
	d.n += int64(len(p))
	d.s256.Write(p)
	d.s512.Write(p)
	return len(p), nil
}

// Sum returns the digest of what was written so far.
func (d *Digester) Sum() BodyDigest {
	bd := BodyDigest{Length: d.n}
	d.s256.Sum(bd.SHA256[:0])
	d.s512.Sum(bd.SHA512[:0])
	return bd
}

// RequestHash returns X-Road-Request-Hash for a request: X-Road's definition
//
//	base64(SHA-512(SHA-512(H) ‖ SHA-512(body)))   when the body is not empty
//	base64(SHA-512(H))                            when it is (Length 0)
//
// (standard base64, padded), where H, "the request headers", is Passerelle's
// canonical serialisation of the request's meaningful parts, in UTF-8:
//
//	METHOD SP R1PATH [ "?" RAWQUERY ] LF
//	name ":" SP value LF        for each signed header value
//
// METHOD is the HTTP method; R1PATH is ServicePath(service) (each identifier
// part percent-encoded by Go's url.PathEscape) followed by the resource path
// exactly as received; RAWQUERY is the query as received ("?" omitted when
// the query is empty). The headers are those IsSignedHeader selects – every
// X-Road-* header (so X-Road-Client and X-Road-Id) and the fixed list of
// SignedHeaderNames – with names in lower case, sorted, one line per value,
// values in received order. The provider's security server computes it over
// the request it received, the consumer's over the request it sent; both
// take the fields from the same RequestDescriptor.
func RequestHash(d *RequestDescriptor) string {
	b := make([]byte, 0, 512)
	b = append(b, d.Method...)
	b = append(b, ' ')
	b = appendServicePath(b, d.Service)
	b = append(b, d.Path...)
	if d.RawQuery != "" {
		b = append(b, '?')
		b = append(b, d.RawQuery...)
	}
	b = append(b, '\n')
	for _, sh := range d.Headers {
		for _, v := range sh.Values {
			b = append(b, sh.Name...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, '\n')
		}
	}
	hh := sha512.Sum512(b)
	if d.Body.Length == 0 {
		return base64.StdEncoding.EncodeToString(hh[:])
	}
	var cat [2 * sha512.Size]byte
	copy(cat[:], hh[:])
	copy(cat[sha512.Size:], d.Body.SHA512[:])
	sum := sha512.Sum512(cat[:])
	return base64.StdEncoding.EncodeToString(sum[:])
}
