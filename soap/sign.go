package soap

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"sync"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/passerelle/passerelle/pki"
)

// NamespacePasserelle is the namespace of our Security header element.
const NamespacePasserelle = "urn:passerelle:soap:security:1"

// Algorithm identifiers used in signed envelopes.
const (
	AlgExcC14N      = "http://www.w3.org/2001/10/xml-exc-c14n#"
	AlgEnveloped    = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
	AlgSHA256       = "http://www.w3.org/2001/04/xmlenc#sha256"
	AlgSHA512       = "http://www.w3.org/2001/04/xmlenc#sha512"
	AlgECDSASHA256  = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
	AlgRSASHA256    = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
	securityPrefix  = "pas"
	maxChainLen     = 8
	maxOCSPLen      = 64 << 10
	maxAttachments  = 1000
	signingTimeForm = time.RFC3339Nano
)

// Signature errors; Verify wraps them in an *Error.
var (
	ErrMissingSignature = errors.New("soap: envelope not signed")
	ErrBadSignature     = errors.New("soap: invalid signature")
	ErrMemberMismatch   = errors.New("soap: signer is not the expected member")
)

// Signer signs envelopes: a key, its certificate chain (leaf first) and the
// leaf's current OCSP response (DER), carried in the signed header element.
type Signer struct {
	Key   crypto.Signer
	Chain []*x509.Certificate
	OCSP  []byte
}

// LogValue keeps the key out of logs.
func (s Signer) LogValue() string {
	if len(s.Chain) == 0 {
		return "soap.Signer{}"
	}
	return "soap.Signer{" + s.Chain[0].Subject.String() + "}"
}

// AttachmentDigest binds one MIME attachment into a signature: its position,
// Content-ID, Content-Type, Content-Transfer-Encoding and the SHA-256 of its
// body bytes exactly as transmitted.
type AttachmentDigest struct {
	ContentID        string
	ContentType      string
	TransferEncoding string
	Size             int64
	SHA256           []byte
}

// SignOptions are the per-message inputs of Sign.
type SignOptions struct {
	Time          time.Time          // signing time; zero means now
	Attachments   []AttachmentDigest // in message order
	RequestDigest []byte             // responses: MessageDigest of the signed request they answer
	Limits        Limits

	// RequestHashOf, when not nil, is the request (its SOAP part, as the
	// service received it) that a response answers, on the provider side:
	// Envelope.Sign first inserts its X-Road requestHash as InsertRequestHash
	// does, then signs, in one step without parsing the bytes again.
	RequestHashOf []byte
}

// MessageDigest is the SHA-256 of a signed SOAP part as sent between security
// servers; a response's signature carries the request's (RequestDigest).
func MessageDigest(signedEnvelope []byte) []byte {
	s := sha256.Sum256(signedEnvelope)
	return s[:]
}

// Sign signs an X-Road envelope (see the package documentation for the
// format) and returns the signed bytes: the input with one pas:Security
// element inserted as the last child of the SOAP Header, every other byte
// unchanged. The envelope must be valid (ParseEnvelope), contain no comment
// and not already be signed.
func Sign(envelope []byte, s Signer, opt SignOptions) ([]byte, error) {
	if s.Key == nil || len(s.Chain) == 0 {
		return nil, errors.New("soap: Sign needs a key and a certificate chain")
	}
	env, err := ParseEnvelope("", envelope, opt.Limits)
	if err != nil {
		return nil, err
	}
	return env.Sign(s, opt)
}

// Sign is Sign for an envelope already parsed (ParseEnvelope, ParseRequest):
// it signs e.Raw from the tree parsed from those bytes, without parsing them
// again, and leaves e as it was. With opt.RequestHashOf it signs what
// InsertRequestHash would return, which must be within opt.Limits (size and
// element count, as Sign would check when parsing it).
func (e *Envelope) Sign(s Signer, opt SignOptions) ([]byte, error) {
	if s.Key == nil || len(s.Chain) == 0 {
		return nil, errors.New("soap: Sign needs a key and a certificate chain")
	}
	var (
		hashBytes []byte
		hashEl    *etree.Element
	)
	if opt.RequestHashOf != nil {
		var err error
		if hashBytes, err = e.requestHashElement(opt.RequestHashOf); err != nil {
			return nil, err
		}
		// The element as parsing the spliced bytes would make it: it
		// declares its own prefix, so its context does not change it.
		doc, _, err := parseXML(hashBytes, Limits{})
		if err != nil {
			return nil, fmt.Errorf("soap: requestHash element: %w", err)
		}
		hashEl = doc.Root()
		lim := opt.Limits.withDefaults()
		if n := int64(len(e.Raw) + len(hashBytes)); n > lim.MaxSize {
			return nil, errorf(CodeInvalidMessage, fmt.Errorf("%w (%d bytes, limit %d)", ErrTooLarge, n, lim.MaxSize), "message too large")
		}
		if e.lay.elements+1 > lim.MaxElements {
			return nil, errorf(CodeInvalidXML, fmt.Errorf("%w: more than %d elements", ErrLimit, lim.MaxElements), "malformed XML")
		}
	}
	lay := e.lay
	if err := lay.check(); err != nil {
		return nil, err
	}
	if lay.secStart >= 0 || hasSignatureElement(e.doc.Root()) {
		return nil, errorf(CodeInvalidMessage, nil, "envelope is already signed")
	}
	if lay.selfClosing {
		return nil, errorf(CodeMissingHeader, nil, "empty Header")
	}
	if err := pki.CheckPublicKey(s.Key.Public()); err != nil {
		return nil, fmt.Errorf("soap: %w", err)
	}
	t := opt.Time
	if t.IsZero() {
		t = time.Now()
	}
	sec := buildSecurity(t.UTC(), s.OCSP, opt.Attachments, opt.RequestDigest)
	// What is signed is the envelope with sec as the Header's last child
	// (after the requestHash, if any).
	appendix := []*etree.Element{sec}
	if hashEl != nil {
		appendix = []*etree.Element{hashEl, sec}
	}
	sig, err := signEnveloped(e.doc.Root(), e.header, appendix, s, len(e.Raw))
	if err != nil {
		return nil, fmt.Errorf("soap: sign: %w", err)
	}
	sec.AddChild(sig)
	out := etree.NewDocument()
	out.SetRoot(sec)
	secBytes, err := out.WriteToBytes()
	if err != nil {
		return nil, fmt.Errorf("soap: %w", err)
	}
	if hashBytes != nil {
		secBytes = append(hashBytes, secBytes...)
	}
	return splice(e.Raw, lay.headerCloseStart, secBytes), nil
}

func buildSecurity(t time.Time, ocsp []byte, atts []AttachmentDigest, reqDigest []byte) *etree.Element {
	sec := etree.NewElement(securityPrefix + ":Security")
	sec.CreateAttr("xmlns:"+securityPrefix, NamespacePasserelle)
	props := sec.CreateElement(securityPrefix + ":SignedProperties")
	props.CreateElement(securityPrefix + ":SigningTime").SetText(t.Format(signingTimeForm))
	if len(ocsp) > 0 {
		props.CreateElement(securityPrefix + ":OCSPResponse").SetText(base64.StdEncoding.EncodeToString(ocsp))
	}
	for _, a := range atts {
		e := props.CreateElement(securityPrefix + ":Attachment")
		e.CreateAttr("ContentID", a.ContentID)
		e.CreateAttr("ContentType", a.ContentType)
		if a.TransferEncoding != "" {
			e.CreateAttr("TransferEncoding", a.TransferEncoding)
		}
		e.CreateAttr("Size", strconv.FormatInt(a.Size, 10))
		e.CreateAttr("DigestAlgorithm", AlgSHA256)
		e.SetText(base64.StdEncoding.EncodeToString(a.SHA256))
	}
	if len(reqDigest) > 0 {
		e := props.CreateElement(securityPrefix + ":RequestDigest")
		e.CreateAttr("DigestAlgorithm", AlgSHA256)
		e.SetText(base64.StdEncoding.EncodeToString(reqDigest))
	}
	return sec
}

// signEnveloped makes the ds:Signature of the document root with appendix
// appended to header: the one reference URI="" with the enveloped-signature
// and exclusive C14N transforms, SHA-256, signed with s.Key, the chain in
// KeyInfo. The element is the one goxmldsig's ConstructSignature makes (with
// exclusive C14N, no Id attribute, prefix ds); the tree is not changed.
func signEnveloped(root, header *etree.Element, appendix []*etree.Element, s Signer, sizeHint int) (*etree.Element, error) {
	var method string
	switch s.Key.Public().(type) {
	case *ecdsa.PublicKey:
		method = AlgECDSASHA256
	case *rsa.PublicKey:
		method = AlgRSASHA256
	default:
		return nil, errors.New("unsupported signature method")
	}
	c := getC14N()
	defer c.release()
	c.out.Grow(sizeHint + 4096)
	c.appendTo, c.appendix = header, appendix
	if err := c.element(root); err != nil {
		return nil, err
	}
	digest := c.sum()

	child := func(parent *etree.Element, tag string) *etree.Element {
		el := parent.CreateElement(tag)
		el.Space = "ds"
		return el
	}
	sig := &etree.Element{Space: "ds", Tag: "Signature"}
	sig.CreateAttr("xmlns:ds", dsig.Namespace)
	si := &etree.Element{Space: "ds", Tag: "SignedInfo"}
	child(si, "CanonicalizationMethod").CreateAttr("Algorithm", AlgExcC14N)
	child(si, "SignatureMethod").CreateAttr("Algorithm", method)
	ref := child(si, "Reference")
	ref.CreateAttr("URI", "")
	tr := child(ref, "Transforms")
	child(tr, "Transform").CreateAttr("Algorithm", AlgEnveloped)
	child(tr, "Transform").CreateAttr("Algorithm", AlgExcC14N)
	child(ref, "DigestMethod").CreateAttr("Algorithm", AlgSHA256)
	child(ref, "DigestValue").SetText(base64.StdEncoding.EncodeToString(digest[:]))
	sig.AddChild(si)

	// SignedInfo canonicalized in the context goxmldsig gives it: the
	// root's declarations and the Signature's.
	c.reset()
	if err := c.declare(root); err != nil {
		return nil, err
	}
	if err := c.declare(sig); err != nil {
		return nil, err
	}
	if err := c.element(si); err != nil {
		return nil, err
	}
	h := c.sum()
	value, err := rawSigner{s.Key}.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	child(sig, "SignatureValue").SetText(base64.StdEncoding.EncodeToString(value))
	x509Data := child(child(sig, "KeyInfo"), "X509Data")
	for _, cert := range s.Chain {
		child(x509Data, "X509Certificate").SetText(base64.StdEncoding.EncodeToString(cert.Raw))
	}
	return sig, nil
}

// certCache keeps the certificates Verify parsed, by their DER, as
// crypto/tls does: a peer's chain comes with every message. A parsed
// certificate is not modified by anyone; the cache is emptied when full.
// Only certificates of at most maxCachedCertSize bytes are kept, so that it
// holds a few MiB at most whatever the peers send (a certificate may be as
// large as an envelope, and is parsed before the signature is checked).
var certCache struct {
	sync.Mutex
	m map[string]*x509.Certificate
}

const (
	maxCachedCerts    = 256
	maxCachedCertSize = 16 << 10
)

func parseCertificate(der []byte) (*x509.Certificate, error) {
	if len(der) > maxCachedCertSize {
		return x509.ParseCertificate(der)
	}
	certCache.Lock()
	c, ok := certCache.m[string(der)]
	certCache.Unlock()
	if ok {
		return c, nil
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	certCache.Lock()
	if certCache.m == nil || len(certCache.m) >= maxCachedCerts {
		certCache.m = make(map[string]*x509.Certificate)
	}
	certCache.m[string(der)] = c
	certCache.Unlock()
	return c, nil
}

// rawSigner makes ECDSA signatures in XML-DSig's r‖s form (goxmldsig would
// write the DER that crypto.Signer returns). RSA passes through.
type rawSigner struct{ crypto.Signer }

func (r rawSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := r.Signer.Sign(rand, digest, opts)
	if err != nil {
		return nil, err
	}
	pub, ok := r.Public().(*ecdsa.PublicKey)
	if !ok {
		return sig, nil
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("soap: ECDSA signer returned malformed DER")
	}
	n := (pub.Curve.Params().BitSize + 7) / 8
	out := make([]byte, 2*n)
	rs.R.FillBytes(out[:n])
	rs.S.FillBytes(out[n:])
	return out, nil
}

// Verified is what Verify proved: the envelope (parsed from the verified
// bytes; every byte of it but the Signature is covered), the signer, and the
// signed properties. The caller still validates Chain (path to a trusted
// root, OCSP status from OCSP) and checks the member (CheckClient,
// CheckServiceProvider) and the attachments (CheckAttachments).
type Verified struct {
	Envelope      *Envelope
	Signer        pki.ClientID // member bound into the leaf certificate
	Chain         []*x509.Certificate
	OCSP          []byte
	SigningTime   time.Time
	Attachments   []AttachmentDigest
	RequestDigest []byte
	Digest        []byte // MessageDigest of the signed bytes
}

// Verify checks the signature of a signed envelope, on the bytes received,
// and returns what was signed. It refuses anything but exactly one
// pas:Security element, last in the SOAP Header, holding SignedProperties
// and the only ds:Signature of the document; a SignedInfo with exclusive
// C14N, ECDSA-SHA256 or RSA-SHA256 and exactly one Reference, URI="", with
// the enveloped-signature and exclusive C14N transforms and SHA-256. Errors
// are *Error (code InvalidSignatureValue or MissingSignature, or a parse code)
// wrapping ErrBadSignature / ErrMissingSignature.
func Verify(contentType string, data []byte, lim Limits) (*Verified, error) {
	env, err := ParseEnvelope(contentType, data, lim)
	if err != nil {
		return nil, err
	}
	v, err := verify(env)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, err
		}
		if errors.Is(err, ErrMissingSignature) {
			return nil, errorf(CodeMissingSignature, err, "message is not signed")
		}
		return nil, errorf(CodeInvalidSignatureValue, err, "invalid signature")
	}
	return v, nil
}

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadSignature}, args...)...)
}

func hasSignatureElement(root *etree.Element) bool {
	_, sigs := countSecurity(root)
	return sigs > 0
}

// countSecurity counts our Security elements and ds:Signature elements in
// el's subtree.
func countSecurity(el *etree.Element) (secs, sigs int) {
	if isNS(el, NamespacePasserelle, "Security") {
		secs++
	}
	if isNS(el, dsig.Namespace, "Signature") {
		sigs++
	}
	for _, t := range el.Child {
		if c, ok := t.(*etree.Element); ok {
			s, g := countSecurity(c)
			secs, sigs = secs+s, sigs+g
		}
	}
	return secs, sigs
}

// onlyChildren returns el's child elements if each has namespace ns and the
// given names in order, with no non-whitespace text, else nil.
func onlyChildren(el *etree.Element, ns string, names ...string) []*etree.Element {
	kids := el.ChildElements()
	if len(kids) != len(names) {
		return nil
	}
	for i, k := range kids {
		if !isNS(k, ns, names[i]) {
			return nil
		}
	}
	for _, t := range el.Child {
		if cd, ok := t.(*etree.CharData); ok && len(bytes.TrimSpace([]byte(cd.Data))) > 0 {
			return nil
		}
	}
	return kids
}

func algorithm(el *etree.Element) string { return el.SelectAttrValue("Algorithm", "") }

func verify(env *Envelope) (*Verified, error) {
	root := env.doc.Root()
	secs := childNS(env.header, NamespacePasserelle, "Security")
	allSecs, allSigs := countSecurity(root)
	if len(secs) == 0 && allSigs == 0 {
		return nil, ErrMissingSignature
	}
	hk := env.header.ChildElements()
	if len(secs) != 1 || hk[len(hk)-1] != secs[0] {
		return nil, bad("want one Security element, last in Header")
	}
	if allSecs != 1 || allSigs != 1 {
		return nil, bad("more than one Security or Signature element")
	}
	sec := secs[0]
	parts := sec.ChildElements()
	if len(parts) != 2 || !isNS(parts[0], NamespacePasserelle, "SignedProperties") || !isNS(parts[1], dsig.Namespace, "Signature") {
		return nil, bad("Security must hold SignedProperties and Signature")
	}
	props, sig := parts[0], parts[1]
	ds := dsig.Namespace
	sp := onlyChildren(sig, ds, "SignedInfo", "SignatureValue", "KeyInfo")
	if sp == nil {
		return nil, bad("Signature must hold SignedInfo, SignatureValue, KeyInfo")
	}
	signedInfo, sigValue, keyInfo := sp[0], sp[1], sp[2]
	si := onlyChildren(signedInfo, ds, "CanonicalizationMethod", "SignatureMethod", "Reference")
	if si == nil {
		return nil, bad("SignedInfo must hold one Reference")
	}
	if algorithm(si[0]) != AlgExcC14N || len(si[0].ChildElements()) > 0 {
		return nil, bad("canonicalization must be exclusive C14N")
	}
	sigAlg := algorithm(si[1])
	ref := si[2]
	if uri := ref.SelectAttr("URI"); uri == nil || uri.Value != "" || len(ref.Attr) != 1 {
		return nil, bad("Reference must be URI=\"\"")
	}
	rp := onlyChildren(ref, ds, "Transforms", "DigestMethod", "DigestValue")
	if rp == nil {
		return nil, bad("malformed Reference")
	}
	tr := onlyChildren(rp[0], ds, "Transform", "Transform")
	if tr == nil || algorithm(tr[0]) != AlgEnveloped || algorithm(tr[1]) != AlgExcC14N ||
		len(tr[0].ChildElements())+len(tr[1].ChildElements()) > 0 {
		return nil, bad("transforms must be enveloped-signature, exclusive C14N")
	}
	if algorithm(rp[1]) != AlgSHA256 {
		return nil, bad("digest must be SHA-256")
	}
	wantDigest, err := decodeB64(leafText(rp[2]))
	if err != nil || len(wantDigest) != sha256.Size {
		return nil, bad("malformed DigestValue")
	}
	sigBytes, err := decodeB64(leafText(sigValue))
	if err != nil {
		return nil, bad("malformed SignatureValue")
	}
	x5 := onlyChildren(keyInfo, ds, "X509Data")
	if x5 == nil {
		return nil, bad("KeyInfo must hold X509Data")
	}
	certEls := x5[0].ChildElements()
	if len(certEls) == 0 || len(certEls) > maxChainLen {
		return nil, bad("X509Data must hold 1 to %d certificates", maxChainLen)
	}
	var chain []*x509.Certificate
	for _, ce := range certEls {
		if !isNS(ce, ds, "X509Certificate") {
			return nil, bad("X509Data may hold X509Certificate only")
		}
		der, err := decodeB64(leafText(ce))
		if err != nil {
			return nil, bad("malformed X509Certificate")
		}
		c, err := parseCertificate(der)
		if err != nil {
			return nil, bad("malformed X509Certificate: %v", err)
		}
		chain = append(chain, c)
	}

	// SignedInfo, canonicalized in its context, checked with the leaf key.
	c := getC14N()
	defer c.release()
	if err := c.inContext(signedInfo); err != nil {
		return nil, bad("%v", err)
	}
	if err := checkSignature(chain[0], sigAlg, c.sum(), sigBytes); err != nil {
		return nil, err
	}

	// The one reference: the whole envelope without the Signature.
	c.reset()
	c.out.Grow(len(env.Raw))
	c.skip = sig
	if err := c.element(root); err != nil {
		return nil, bad("%v", err)
	}
	got := c.sum()
	if subtle.ConstantTimeCompare(got[:], wantDigest) != 1 {
		return nil, bad("digest mismatch")
	}

	v := &Verified{Envelope: env, Chain: chain, Digest: MessageDigest(env.Raw)}
	if err := parseProps(props, v); err != nil {
		return nil, err
	}
	m, err := pki.MemberFromCert(chain[0])
	if err != nil {
		return nil, bad("signer certificate: %v", err)
	}
	v.Signer = m
	return v, nil
}

// checkSignature checks sig, made by cert's key with alg over the bytes
// whose SHA-256 is h.
func checkSignature(cert *x509.Certificate, alg string, h [sha256.Size]byte, sig []byte) error {
	switch pub := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if alg != AlgECDSASHA256 {
			return bad("signature method %q does not fit an ECDSA key", truncate(alg))
		}
		n := (pub.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*n {
			return bad("ECDSA SignatureValue must be r||s of %d bytes", 2*n)
		}
		r, s := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
		if !ecdsa.Verify(pub, h[:], r, s) {
			return bad("signature does not verify")
		}
	case *rsa.PublicKey:
		if alg != AlgRSASHA256 {
			return bad("signature method %q does not fit an RSA key", truncate(alg))
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig); err != nil {
			return bad("signature does not verify")
		}
	default:
		return bad("unsupported signer key")
	}
	return nil
}

func parseProps(props *etree.Element, v *Verified) error {
	ns := NamespacePasserelle
	var haveTime bool
	for _, c := range props.ChildElements() {
		if c.NamespaceURI() != ns || len(c.ChildElements()) > 0 {
			return bad("unexpected element in SignedProperties")
		}
		txt := leafText(c)
		switch c.Tag {
		case "SigningTime":
			if haveTime {
				return bad("two SigningTime")
			}
			t, err := time.Parse(time.RFC3339Nano, txt)
			if err != nil {
				return bad("malformed SigningTime")
			}
			v.SigningTime, haveTime = t, true
		case "OCSPResponse":
			b, err := decodeB64(txt)
			if err != nil || v.OCSP != nil || len(b) > maxOCSPLen {
				return bad("malformed OCSPResponse")
			}
			v.OCSP = b
		case "Attachment":
			d, err := decodeB64(txt)
			size, serr := strconv.ParseInt(c.SelectAttrValue("Size", ""), 10, 64)
			if err != nil || serr != nil || len(d) != sha256.Size || c.SelectAttrValue("DigestAlgorithm", "") != AlgSHA256 || len(v.Attachments) >= maxAttachments {
				return bad("malformed Attachment")
			}
			v.Attachments = append(v.Attachments, AttachmentDigest{
				ContentID: c.SelectAttrValue("ContentID", ""), ContentType: c.SelectAttrValue("ContentType", ""),
				TransferEncoding: c.SelectAttrValue("TransferEncoding", ""), Size: size, SHA256: d,
			})
		case "RequestDigest":
			d, err := decodeB64(txt)
			if err != nil || len(d) != sha256.Size || v.RequestDigest != nil || c.SelectAttrValue("DigestAlgorithm", "") != AlgSHA256 {
				return bad("malformed RequestDigest")
			}
			v.RequestDigest = d
		default:
			return bad("unexpected element in SignedProperties")
		}
	}
	if !haveTime {
		return bad("SigningTime missing")
	}
	return nil
}

// CheckMember reports whether the signer is member want (its member part).
func (v *Verified) CheckMember(want pki.ClientID) error {
	if v.Signer != want.MemberID() {
		return errorf(CodeSignerMismatch, ErrMemberMismatch, "signer certificate does not belong to member %s", want.MemberID())
	}
	return nil
}

// CheckClient checks a request: the signer must be the client header's member.
func (v *Verified) CheckClient() error { return v.CheckMember(v.Envelope.Header.Client) }

// CheckServiceProvider checks a response: the signer must be the member that
// owns the service header's service.
func (v *Verified) CheckServiceProvider() error {
	if v.Envelope.Header.Service == nil {
		return errorf(CodeMissingHeaderField, nil, "Required field 'service' is missing")
	}
	return v.CheckMember(v.Envelope.Header.Service.Client)
}

// CheckRequestDigest checks that a signed response answers the signed request
// whose bytes are request.
func (v *Verified) CheckRequestDigest(request []byte) error {
	if subtle.ConstantTimeCompare(v.RequestDigest, MessageDigest(request)) != 1 {
		return errorf(CodeInvalidRequestHash, ErrBadSignature, "response is not bound to the request")
	}
	return nil
}

// CheckAttachments compares the attachments received (ReadMessage) with the
// signed list: same count, order, headers and digests.
func (v *Verified) CheckAttachments(got []AttachmentDigest) error {
	if len(got) != len(v.Attachments) {
		return errorf(CodeInvalidAttachment, ErrBadSignature, "attachments do not match the signature")
	}
	for i, a := range v.Attachments {
		g := got[i]
		if a.ContentID != g.ContentID || a.ContentType != g.ContentType || a.TransferEncoding != g.TransferEncoding ||
			a.Size != g.Size || subtle.ConstantTimeCompare(a.SHA256, g.SHA256) != 1 {
			return errorf(CodeInvalidAttachment, ErrBadSignature, "attachment %d does not match the signature", i+1)
		}
	}
	return nil
}

// Stripped returns the verified envelope without our Security element: the
// bytes the consumer-side server signed, as its client sent them. The
// element cut out is the one Verify checked (its place was recorded when the
// bytes were parsed).
func (v *Verified) Stripped() ([]byte, error) {
	lay := v.Envelope.lay
	if err := lay.check(); err != nil {
		return nil, err
	}
	return strip(v.Envelope.Raw, lay)
}

// Strip removes our Security header element (signature and signed
// properties) from a signed envelope, leaving every other byte as it was.
func Strip(signed []byte) ([]byte, error) {
	lay, err := locate(signed)
	if err != nil {
		return nil, err
	}
	return strip(signed, lay)
}

func strip(signed []byte, lay layout) ([]byte, error) {
	if lay.secStart < 0 {
		return nil, ErrMissingSignature
	}
	out := make([]byte, 0, len(signed)-int(lay.secEnd-lay.secStart))
	out = append(out, signed[:lay.secStart]...)
	return append(out, signed[lay.secEnd:]...), nil
}
