package rest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"

	"github.com/passerelle/passerelle/pki"
)

// JWS "typ" values. TypBatch is reserved for batch signatures (one JWS over
// the Merkle root of concurrent messages, each message carrying its
// inclusion path); this version refuses it.
const (
	TypRequest  = "passerelle-request+jws"
	TypResponse = "passerelle-response+jws"
	TypBatch    = "passerelle-batch+jws"
)

// Limits on what a verifier accepts.
const (
	MaxJWSSize  = 256 << 10 // a compact JWS, bytes
	MaxChainLen = 8         // certificates in x5c
)

var (
	// ErrMalformed reports a JWS (or payload, or error body) that does not
	// parse, or uses something this version does not support.
	ErrMalformed = errors.New("rest: malformed signature")
	// ErrBadSignature reports a JWS whose signature does not verify with its
	// x5c leaf key, or whose algorithm does not fit that key.
	ErrBadSignature = errors.New("rest: bad signature")
	// ErrMismatch reports a signed field that differs from what the receiver
	// recomputed from the wire; errors.As gives the *MismatchError naming it.
	ErrMismatch = errors.New("rest: signed message differs from the received one")
)

// MismatchError names the first signed field that differs from the wire:
// "id", "client", "service", "method", "path", "query", "headers[NAME]",
// "bodyLength", "bodySha256", "signedAt", and for responses "status" and
// "request". It matches ErrMismatch.
type MismatchError struct{ Field string }

func (e *MismatchError) Error() string {
	return "rest: signed field " + e.Field + " differs from the received message"
}

// Is makes errors.Is(err, ErrMismatch) true.
func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

func mismatch(field string) error { return &MismatchError{Field: field} }

// protectedHeader is the JWS protected header Passerelle writes: "alg",
// "typ", "x5c" (RFC 7515 §4.1.6: the signer's chain, leaf first, standard
// base64 DER) and "ocsp" (the signer's OCSP response, standard base64 DER,
// a private header parameter; omitted when there is none).
type protectedHeader struct {
	Alg  string   `json:"alg"`
	Typ  string   `json:"typ"`
	X5c  []string `json:"x5c"`
	OCSP string   `json:"ocsp,omitempty"`
}

// verifyHeader also catches the parameters we refuse.
type verifyHeader struct {
	protectedHeader
	Crit json.RawMessage `json:"crit"`
	B64  json.RawMessage `json:"b64"`
}

// Signer signs requests and responses with one key and its certificate chain.
// It is safe for concurrent use if its crypto.Signer is.
type Signer struct {
	key   crypto.Signer
	alg   jwa.SignatureAlgorithm
	x5c   []string
	chain []*x509.Certificate
	// hdr caches the encoded protected headers, which change only with
	// the OCSP response; a pointer, so that copies of a Signer share it.
	hdr *atomic.Pointer[signHeaders]
}

// signHeaders are the base64url protected headers a Signer writes for one
// algorithm, chain and OCSP response.
type signHeaders struct {
	alg      string
	x5c      []string
	ocsp     []byte
	req, rsp string
}

// NewSigner checks that chain[0] certifies key and picks the algorithm:
// ES256/ES384/ES512 for ECDSA P-256/P-384/P-521 keys, PS256 for RSA keys.
func NewSigner(key crypto.Signer, chain []*x509.Certificate) (*Signer, error) {
	if key == nil || len(chain) == 0 || chain[0] == nil {
		return nil, errors.New("rest: a signer needs a key and a certificate chain")
	}
	if len(chain) > MaxChainLen {
		return nil, fmt.Errorf("rest: chain of %d certificates, at most %d", len(chain), MaxChainLen)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(chain[0].PublicKey) {
		return nil, errors.New("rest: the chain's leaf certificate does not certify the signing key")
	}
	alg, err := algorithmFor(key.Public(), "")
	if err != nil {
		return nil, err
	}
	s := &Signer{key: key, alg: alg, chain: chain, x5c: make([]string, len(chain)), hdr: new(atomic.Pointer[signHeaders])}
	for i, c := range chain {
		s.x5c[i] = base64.StdEncoding.EncodeToString(c.Raw)
	}
	return s, nil
}

// Algorithm returns the JWS "alg" s signs with.
func (s *Signer) Algorithm() string { return s.alg.String() }

// algorithmFor returns the algorithm for pub; with a non-empty want (from a
// JWS header) it checks that want fits pub instead: RS256 and PS256 both fit
// RSA keys.
func algorithmFor(pub crypto.PublicKey, want string) (jwa.SignatureAlgorithm, error) {
	if err := pki.CheckPublicKey(pub); err != nil {
		return jwa.SignatureAlgorithm{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	var alg jwa.SignatureAlgorithm
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			alg = jwa.ES256()
		case elliptic.P384():
			alg = jwa.ES384()
		case elliptic.P521():
			alg = jwa.ES512()
		}
	case *rsa.PublicKey:
		alg = jwa.PS256()
		if want == jwa.RS256().String() {
			alg = jwa.RS256()
		}
	}
	if alg.String() == "" {
		return alg, fmt.Errorf("%w: unsupported key type %T", ErrBadSignature, pub)
	}
	if want != "" && want != alg.String() {
		return alg, fmt.Errorf("%w: algorithm %q does not fit the x5c leaf key", ErrBadSignature, want)
	}
	return alg, nil
}

// SignRequest signs d as a compact JWS, setting d.SignedAt to now (UTC) when
// it is zero. ocspDER is the signer's current OCSP response (may be nil).
func (s *Signer) SignRequest(ctx context.Context, d *RequestDescriptor, ocspDER []byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if d.SignedAt.IsZero() {
		d.SignedAt = time.Now().UTC()
	}
	b := getBuf()
	defer putBuf(b)
	b.json = appendRequestPayload(b.json[:0], d)
	return s.signBuf(b, TypRequest, ocspDER)
}

// SignResponse signs d as a compact JWS, setting d.SignedAt to now (UTC)
// when it is zero.
func (s *Signer) SignResponse(ctx context.Context, d *ResponseDescriptor, ocspDER []byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if d.SignedAt.IsZero() {
		d.SignedAt = time.Now().UTC()
	}
	b := getBuf()
	defer putBuf(b)
	b.json = appendResponsePayload(b.json[:0], d)
	return s.signBuf(b, TypResponse, ocspDER)
}

// signBuf signs b.json as a JWS of type typ, using b.input for the signing
// input.
func (s *Signer) signBuf(b *jwsBuf, typ string, ocspDER []byte) (string, error) {
	hdr, err := s.header(typ, ocspDER)
	if err != nil {
		return "", err
	}
	// Room for the signing input and, after it, the signature's encoding
	// (up to RSA-4096's 512 bytes).
	b.input = slices.Grow(b.input[:0], len(hdr)+1+b64url.EncodedLen(len(b.json))+b64url.EncodedLen(512))
	b.input = append(b.input, hdr...)
	b.input = append(b.input, '.')
	b.input = b64url.AppendEncode(b.input, b.json)
	sig, err := jwsbb.Sign(s.key, s.alg.String(), b.input, rand.Reader)
	if err != nil {
		return "", fmt.Errorf("rest: signing: %w", err)
	}
	var out strings.Builder
	out.Grow(len(b.input) + 1 + b64url.EncodedLen(len(sig)))
	out.Write(b.input)
	out.WriteByte('.')
	out.Write(b64url.AppendEncode(b.input[len(b.input):], sig))
	return out.String(), nil
}

// header returns the base64url protected header for typ and ocspDER, from
// s.hdr when they are the ones it holds.
func (s *Signer) header(typ string, ocspDER []byte) (string, error) {
	alg := s.alg.String()
	var h *signHeaders
	if s.hdr != nil {
		h = s.hdr.Load()
	}
	if h == nil || h.alg != alg || !bytes.Equal(h.ocsp, ocspDER) || !slices.Equal(h.x5c, s.x5c) {
		nh := &signHeaders{alg: alg, x5c: s.x5c, ocsp: bytes.Clone(ocspDER)}
		var err error
		if nh.req, err = s.encodeHeader(TypRequest, ocspDER); err != nil {
			return "", err
		}
		if nh.rsp, err = s.encodeHeader(TypResponse, ocspDER); err != nil {
			return "", err
		}
		if s.hdr != nil {
			s.hdr.Store(nh)
		}
		h = nh
	}
	switch typ {
	case TypRequest:
		return h.req, nil
	case TypResponse:
		return h.rsp, nil
	}
	return s.encodeHeader(typ, ocspDER)
}

func (s *Signer) encodeHeader(typ string, ocspDER []byte) (string, error) {
	h := protectedHeader{Alg: s.alg.String(), Typ: typ, X5c: s.x5c}
	if len(ocspDER) > 0 {
		h.OCSP = base64.StdEncoding.EncodeToString(ocspDER)
	}
	hj, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("rest: encoding JWS header: %w", err)
	}
	return b64url.EncodeToString(hj), nil
}

// jwsBuf holds the scratch space of one signature or verification.
type jwsBuf struct {
	json  []byte // the payload
	input []byte // the signing input, then the signature's encoding
}

var jwsBufs = sync.Pool{New: func() any { return new(jwsBuf) }}

func getBuf() *jwsBuf { return jwsBufs.Get().(*jwsBuf) }

// putBuf returns b to the pool unless it grew large (a big message), so
// that the pool does not pin memory.
func putBuf(b *jwsBuf) {
	if cap(b.json)+cap(b.input) <= 64<<10 {
		jwsBufs.Put(b)
	}
}

// SignRequest signs d with signer, whose certificate chain (leaf first) goes
// into x5c, and ocspDER (may be nil) into "ocsp". A server signing many
// messages keeps a *Signer instead.
func SignRequest(ctx context.Context, d *RequestDescriptor, signer crypto.Signer, chain []*x509.Certificate, ocspDER []byte) (string, error) {
	s, err := NewSigner(signer, chain)
	if err != nil {
		return "", err
	}
	return s.SignRequest(ctx, d, ocspDER)
}

// SignResponse is SignRequest for responses.
func SignResponse(ctx context.Context, d *ResponseDescriptor, signer crypto.Signer, chain []*x509.Certificate, ocspDER []byte) (string, error) {
	s, err := NewSigner(signer, chain)
	if err != nil {
		return "", err
	}
	return s.SignResponse(ctx, d, ocspDER)
}

// Signed is what a verified JWS tells the receiver. The chain and the OCSP
// response are NOT validated here: the caller checks them (path to a trusted
// root, usage, member binding, OCSP status and freshness) with pki/verify.
type Signed struct {
	Algorithm string
	Typ       string
	Chain     []*x509.Certificate // as sent in x5c, leaf first; shared, do not modify
	OCSP      []byte              // the signer's OCSP response (DER), nil if none
	SignedAt  time.Time
	ID        string
	Digest    [sha256.Size]byte // JWSDigest of the compact JWS
	// Exactly one of these is set, per Typ.
	Request  *RequestDescriptor
	Response *ResponseDescriptor
}

// VerifyRequest verifies a request JWS with its x5c leaf key, then compares
// every signed field with got, recomputed by the receiver from the wire (a
// zero got.SignedAt is not compared; Signed.SignedAt gives the signed time
// for the replay check). Errors wrap ErrMalformed, ErrBadSignature or
// ErrMismatch (a *MismatchError naming the field).
func VerifyRequest(compact string, got *RequestDescriptor) (*Signed, error) {
	s, payload, err := verifyCompact(compact, TypRequest)
	if err != nil {
		return nil, err
	}
	d, err := unmarshalRequest(payload)
	if err != nil {
		return nil, err
	}
	if err := d.compare(got); err != nil {
		return nil, err
	}
	s.Request, s.SignedAt, s.ID = d, d.SignedAt, d.ID
	return s, nil
}

// VerifyResponse is VerifyRequest for responses; got.Request must be the
// JWSDigest of the request JWS the consumer sent (DescribeResponse sets it).
func VerifyResponse(compact string, got *ResponseDescriptor) (*Signed, error) {
	s, payload, err := verifyCompact(compact, TypResponse)
	if err != nil {
		return nil, err
	}
	d, err := unmarshalResponse(payload)
	if err != nil {
		return nil, err
	}
	if err := d.compare(got); err != nil {
		return nil, err
	}
	s.Response, s.SignedAt, s.ID = d, d.SignedAt, d.ID
	return s, nil
}

// verifyCompact checks the JWS structure, header and signature and returns
// the decoded payload.
//
// Everything verifyCompact learns from the protected header is a function of
// its encoded bytes alone, and a peer sends the same header with every
// message until its OCSP response changes. So once a header has passed every
// check below and a signature made under it has verified, its result is kept
// (headers, keyed by the exact encoded header): later messages with that
// header only have their signature verified under the remembered key and
// algorithm. A header not seen before takes the full path, jwx's own header
// checks included.
func verifyCompact(compact, wantTyp string) (*Signed, string, error) {
	if len(compact) > MaxJWSSize {
		return nil, "", fmt.Errorf("%w: JWS of %d bytes, at most %d", ErrMalformed, len(compact), MaxJWSSize)
	}
	hdrB64, rest, ok := strings.Cut(compact, ".")
	if !ok || strings.Count(rest, ".") != 1 {
		return nil, "", fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	// jwx's decoder tolerates non-zero padding bits; refuse them so that one
	// signature has exactly one encoding (and one JWSDigest).
	payloadB64, sigB64, _ := strings.Cut(rest, ".")
	if !canonicalB64(payloadB64) || !canonicalB64(sigB64) || sigB64 == "" {
		return nil, "", fmt.Errorf("%w: payload or signature is not canonical base64url", ErrMalformed)
	}
	if vh := headers.get(hdrB64); vh != nil {
		if vh.typ != wantTyp {
			return nil, "", fmt.Errorf("%w: typ %q, want %q", ErrMalformed, vh.typ, wantTyp)
		}
		payload, err := vh.verify(compact[:len(hdrB64)+1+len(payloadB64)], payloadB64, sigB64)
		if err != nil {
			return nil, "", err
		}
		s := &Signed{Algorithm: vh.algName, Typ: vh.typ, Chain: vh.chain, Digest: JWSDigest(compact)}
		if vh.hasOCSP {
			s.OCSP = bytes.Clone(vh.ocsp) // the caller's to keep
		}
		return s, payload, nil
	}

	hj, err := b64url.Strict().DecodeString(hdrB64)
	if err != nil {
		return nil, "", fmt.Errorf("%w: header encoding: %v", ErrMalformed, err)
	}
	var h verifyHeader
	dec := json.NewDecoder(bytes.NewReader(hj))
	if err := dec.Decode(&h); err != nil || dec.More() {
		return nil, "", fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	switch {
	case h.Crit != nil:
		return nil, "", fmt.Errorf("%w: \"crit\" is not supported", ErrMalformed)
	case h.B64 != nil:
		return nil, "", fmt.Errorf("%w: \"b64\" is not supported", ErrMalformed)
	case h.Alg == "":
		return nil, "", fmt.Errorf("%w: no \"alg\"", ErrMalformed)
	case h.Typ == TypBatch:
		return nil, "", fmt.Errorf("%w: batch signatures are not supported by protocol version %d", ErrMalformed, ProtocolVersion)
	case h.Typ != wantTyp:
		return nil, "", fmt.Errorf("%w: typ %q, want %q", ErrMalformed, h.Typ, wantTyp)
	case len(h.X5c) == 0 || len(h.X5c) > MaxChainLen:
		return nil, "", fmt.Errorf("%w: x5c must hold 1 to %d certificates", ErrMalformed, MaxChainLen)
	}
	chain, err := chains.parse(h.X5c)
	if err != nil {
		return nil, "", err
	}
	s := &Signed{Algorithm: h.Alg, Typ: h.Typ, Chain: chain, Digest: JWSDigest(compact)}
	if h.OCSP != "" {
		if s.OCSP, err = base64.StdEncoding.Strict().DecodeString(h.OCSP); err != nil {
			return nil, "", fmt.Errorf("%w: ocsp encoding: %v", ErrMalformed, err)
		}
	}
	alg, err := algorithmFor(s.Chain[0].PublicKey, h.Alg)
	if err != nil {
		return nil, "", err
	}
	payload, err := jws.VerifyCompactFast(s.Chain[0].PublicKey, []byte(compact), alg)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	headers.put(hdrB64, &verifiedHeader{
		algName: h.Alg, alg: alg, typ: h.Typ, chain: chain,
		ocsp: bytes.Clone(s.OCSP), hasOCSP: s.OCSP != nil,
	})
	return s, string(payload), nil
}

// verifiedHeader is what a protected header that passed verifyCompact's
// checks says.
type verifiedHeader struct {
	algName string // "alg" as sent
	alg     jwa.SignatureAlgorithm
	typ     string
	chain   []*x509.Certificate
	ocsp    []byte // decoded "ocsp"; shared, copied out
	hasOCSP bool
}

// verify checks sigB64 over the signing input with vh's key and algorithm
// (jwx's primitive, as jws.VerifyCompactFast calls it) and returns the
// decoded payload. Both segments are canonical base64url already.
func (vh *verifiedHeader) verify(input, payloadB64, sigB64 string) (string, error) {
	b := getBuf()
	defer putBuf(b)
	var err error
	if b.json, err = b64url.AppendDecode(b.json[:0], []byte(sigB64)); err != nil {
		return "", fmt.Errorf("%w: failed to decode signature: %v", ErrBadSignature, err)
	}
	b.input = append(b.input[:0], input...)
	if err := jwsbb.Verify(vh.chain[0].PublicKey, vh.alg.String(), b.input, b.json); err != nil {
		return "", fmt.Errorf("%w: signature verification failed for %s: %v", ErrBadSignature, vh.alg, err)
	}
	if b.json, err = b64url.AppendDecode(b.json[:0], []byte(payloadB64)); err != nil {
		return "", fmt.Errorf("%w: failed to decode payload: %v", ErrBadSignature, err)
	}
	return string(b.json), nil
}

// headerCache keeps verifiedHeaders by their encoded header. Bounded by an
// estimate of the memory its entries hold: when full it is emptied (simple,
// and a steady state refills it at once).
type headerCache struct {
	mu   sync.RWMutex
	m    map[string]*verifiedHeader
	size int
}

const (
	maxHeaderCacheBytes = 16 << 20
	maxCachedHeader     = maxHeaderCacheBytes / 256 // larger headers are parsed every time
	headerEntryCost     = 256                       // a map entry and its verifiedHeader
	parsedCertCost      = 4 << 10                   // an x509.Certificate's parsed fields
)

var headers = headerCache{m: make(map[string]*verifiedHeader)}

func (c *headerCache) get(hdrB64 string) *verifiedHeader {
	c.mu.RLock()
	vh := c.m[hdrB64]
	c.mu.RUnlock()
	return vh
}

func (c *headerCache) put(hdrB64 string, vh *verifiedHeader) {
	// The key, the decoded OCSP response, the entry itself, and the parsed
	// chain: its DER and the parsed fields, which for a small certificate
	// hold several times its DER (a P-256 certificate of 394 bytes keeps
	// about 3 KB in all once parsed).
	cost := len(hdrB64) + len(vh.ocsp) + headerEntryCost
	for _, c := range vh.chain {
		cost += len(c.Raw) + parsedCertCost
	}
	if cost > maxCachedHeader {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[hdrB64]; ok {
		return
	}
	if c.size+cost > maxHeaderCacheBytes {
		clear(c.m)
		c.size = 0
	}
	c.m[strings.Clone(hdrB64)] = vh // not a slice of the whole JWS
	c.size += cost
}

// canonicalB64 reports whether s is unpadded base64url whose last character
// carries no stray bits.
func canonicalB64(s string) bool {
	for i := 0; i < len(s); i++ {
		if b64urlValue[s[i]] < 0 {
			return false
		}
	}
	if len(s) == 0 {
		return true
	}
	v := b64urlValue[s[len(s)-1]]
	switch len(s) % 4 {
	case 1:
		return false
	case 2:
		return v&0x0f == 0
	case 3:
		return v&0x03 == 0
	}
	return true
}

// b64urlValue maps a byte to its value in the base64url alphabet, -1 when it
// is not in it.
var b64urlValue = func() (t [256]int8) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = int8(i)
	}
	return t
}()

// chainCache keeps parsed x5c chains: a peer sends the same chain with every
// message, and parsing it costs more than verifying the signature. Bounded:
// when full it is emptied (simple, and a steady state refills it at once).
type chainCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte][]*x509.Certificate
}

const maxCachedChains = 4096

var chains = chainCache{m: make(map[[sha256.Size]byte][]*x509.Certificate)}

// parse returns the certificates of x5c, leaf first. The result is shared
// between callers: read it, do not modify it.
func (c *chainCache) parse(x5c []string) ([]*x509.Certificate, error) {
	h := sha256.New()
	for _, s := range x5c {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	c.mu.Lock()
	chain, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return chain, nil
	}
	chain = make([]*x509.Certificate, len(x5c))
	for i, s := range x5c {
		der, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: x5c[%d] encoding: %v", ErrMalformed, i, err)
		}
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("%w: x5c[%d]: %v", ErrMalformed, i, err)
		}
	}
	c.mu.Lock()
	if len(c.m) >= maxCachedChains {
		clear(c.m)
	}
	c.m[key] = chain
	c.mu.Unlock()
	return chain, nil
}
