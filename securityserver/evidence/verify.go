package evidence

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/passerelle/passerelle/hashregistry"
	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ocsp"
	"github.com/passerelle/passerelle/pki/verify"
	"github.com/passerelle/passerelle/rest"
	"github.com/passerelle/passerelle/soap"
	"github.com/passerelle/passerelle/timestamp"
)

// Trust is what an auditor trusts: the federation's CA roots, the TSA
// certificates (not trusted by themselves: they must chain to Roots), the
// registry's checkpoint verifier key, and the OCSP freshness limit.
type Trust struct {
	Roots    *x509.CertPool
	TSACerts []*x509.Certificate
	Registry note.Verifier
	// OCSPMaxAge is how old a signer's OCSP response may have been when the
	// message was signed (the federation's OCSP freshness); 0 = 3600 s.
	OCSPMaxAge time.Duration
}

// Trust directory files read by LoadTrust (the sandbox writes them).
const (
	TrustCAFile       = "ca.pem"        // required
	TrustTSAFile      = "tsa.pem"       // optional when tokens carry the TSA certificate
	TrustRegistryFile = "registry.vkey" // required
)

// LoadTrust reads a trust directory: ca.pem, registry.vkey and, if present,
// tsa.pem.
func LoadTrust(dir string) (*Trust, error) {
	roots, err := pki.LoadCertificates(filepath.Join(dir, TrustCAFile))
	if err != nil {
		return nil, fmt.Errorf("trust directory: %w", err)
	}
	t := &Trust{Roots: x509.NewCertPool()}
	for _, c := range roots {
		t.Roots.AddCert(c)
	}
	if t.TSACerts, err = pki.LoadCertificates(filepath.Join(dir, TrustTSAFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("trust directory: %w", err)
	}
	vkey, err := os.ReadFile(filepath.Join(dir, TrustRegistryFile))
	if err != nil {
		return nil, fmt.Errorf("trust directory: %w", err)
	}
	if t.Registry, err = hashregistry.NewVerifier(vkey); err != nil {
		return nil, fmt.Errorf("trust directory: %s: %w", TrustRegistryFile, err)
	}
	return t, nil
}

// Check is one verification step and what it proved (or why it failed).
type Check struct {
	Subject string // "bundle", "request", "response" or "exchange"
	Name    string // e.g. "signature", "certificate", "ocsp", "timestamp"
	OK      bool
	// Missing marks a failure for want of evidence (ErrIncomplete) rather
	// than evidence that does not verify.
	Missing bool
	Detail  string
}

func (c Check) String() string {
	status := "OK  "
	switch {
	case c.Missing:
		status = "MISS"
	case !c.OK:
		status = "FAIL"
	}
	return fmt.Sprintf("%s %-8s %-13s %s", status, c.Subject, c.Name, c.Detail)
}

// Report is what Verify checked, in order.
type Report struct {
	Manifest *Manifest // nil when the manifest could not be read
	Checks   []Check
}

// Failed returns the checks that did not pass.
func (r *Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// Err summarises the report: nil when every check passed, else an error
// wrapping ErrVerification (or ErrIncomplete when only evidence is missing)
// that names the first failure.
func (r *Report) Err() error {
	failed := r.Failed()
	if len(failed) == 0 {
		return nil
	}
	sentinel := ErrIncomplete
	for _, c := range failed {
		if !c.Missing {
			sentinel = ErrVerification
			break
		}
	}
	first := failed[0]
	for _, c := range failed {
		if !c.Missing {
			first = c
			break
		}
	}
	return fmt.Errorf("%w: %s %s: %s (%d failed checks)", sentinel, first.Subject, first.Name, first.Detail, len(failed))
}

func (r *Report) add(subject, name string, ok bool, format string, args ...any) bool {
	r.Checks = append(r.Checks, Check{Subject: subject, Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	return ok
}

func (r *Report) missing(subject, name, format string, args ...any) {
	r.Checks = append(r.Checks, Check{Subject: subject, Name: name, Missing: true, Detail: fmt.Sprintf(format, args...)})
}

// VerifyFile is Verify on a file.
func VerifyFile(path string, trust *Trust) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return &Report{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return &Report{}, err
	}
	return Verify(f, fi.Size(), trust)
}

// Verify checks a bundle offline against trust and reports every check it
// made. The error is nil only when every check passed; it wraps ErrMalformed
// when the bundle does not parse (the report then stops there), else is
// Report.Err.
func Verify(r io.ReaderAt, size int64, trust *Trust) (*Report, error) {
	rep := &Report{}
	if trust == nil || trust.Roots == nil || trust.Registry == nil {
		return rep, errors.New("evidence: trust needs the CA roots and the registry verifier key")
	}
	b, err := openBundle(r, size)
	if err != nil {
		return rep, err
	}
	rep.Manifest = b.m
	b.checkFiles(rep)

	req := b.verifyMessage(rep, trust, Request)
	var resp *message
	if b.m.message(Response) != nil {
		resp = b.verifyMessage(rep, trust, Response)
	}
	b.checkExchange(rep, req, resp)
	return rep, rep.Err()
}

// bundle is an opened ZIP with its manifest and the contents of its small
// files.
type bundle struct {
	m     *Manifest
	files map[string]*zip.File
	data  map[string][]byte // by file name; bodies are not kept
	bad   map[string]bool   // files whose digest differs from the manifest
}

func openBundle(r io.ReaderAt, size int64) (*bundle, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("%w: not a ZIP file: %v", ErrMalformed, err)
	}
	if len(zr.File) > MaxFiles {
		return nil, fmt.Errorf("%w: %d files, at most %d", ErrMalformed, len(zr.File), MaxFiles)
	}
	b := &bundle{files: map[string]*zip.File{}, data: map[string][]byte{}, bad: map[string]bool{}}
	for _, f := range zr.File {
		if !validName(f.Name) && f.Name != ManifestName {
			return nil, fmt.Errorf("%w: file name %q", ErrMalformed, f.Name)
		}
		if b.files[f.Name] != nil {
			return nil, fmt.Errorf("%w: file %q twice in the ZIP", ErrMalformed, f.Name)
		}
		b.files[f.Name] = f
	}
	mf := b.files[ManifestName]
	if mf == nil {
		return nil, fmt.Errorf("%w: no %s", ErrMalformed, ManifestName)
	}
	data, err := readAll(mf, MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, ManifestName, err)
	}
	if b.m, err = ParseManifest(data); err != nil {
		return nil, err
	}
	listed := map[string]bool{ManifestName: true}
	for _, f := range b.m.Files {
		listed[f.Name] = true
		if b.files[f.Name] == nil {
			return nil, fmt.Errorf("%w: %s lists %q, which is not in the ZIP", ErrMalformed, ManifestName, f.Name)
		}
	}
	for name := range b.files {
		if !listed[name] {
			return nil, fmt.Errorf("%w: %q is in the ZIP but not in %s", ErrMalformed, name, ManifestName)
		}
	}
	return b, nil
}

func readAll(f *zip.File, limit int64) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

// hashFile streams a file through SHA-256.
func hashFile(f *zip.File, limit int64) (int64, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	rc, err := f.Open()
	if err != nil {
		return 0, sum, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(rc, limit+1))
	if err != nil {
		return n, sum, err
	}
	if n > limit {
		return n, sum, fmt.Errorf("larger than %d bytes", limit)
	}
	h.Sum(sum[:0])
	return n, sum, nil
}

// checkFiles reads every listed file and compares it with the manifest's
// size and digest (a packaging check: the manifest is not signed).
func (b *bundle) checkFiles(rep *Report) {
	bad := 0
	for _, f := range b.m.Files {
		zf := b.files[f.Name]
		var n int64
		var sum [sha256.Size]byte
		var err error
		if f.Role.kind() == "body" {
			n, sum, err = hashFile(zf, MaxBodySize)
		} else {
			var data []byte
			if data, err = readAll(zf, MaxFileSize); err == nil {
				b.data[f.Name] = data
				n, sum = int64(len(data)), sha256.Sum256(data)
			}
		}
		switch {
		case err != nil:
			rep.add("bundle", "files", false, "%s: %v", f.Name, err)
		case n != f.Size || hex.EncodeToString(sum[:]) != f.SHA256:
			rep.add("bundle", "files", false, "%s (%s) differs from the manifest's size and SHA-256: altered after export", f.Name, f.Role)
		default:
			continue
		}
		b.bad[f.Name] = true
		bad++
	}
	if bad == 0 {
		rep.add("bundle", "files", true, "%d files as listed in %s (sizes and SHA-256); exported by %s (%s side) at %s",
			len(b.m.Files), ManifestName, b.m.Exporter.Owner, b.m.Exporter.Side, b.m.ExportedAt.UTC().Format(time.RFC3339))
	}
}

// get returns the content of a message's file of role, or nil.
func (b *bundle) get(message string, role Role) (*File, []byte) {
	f := b.m.file(message, role)
	if f == nil {
		return nil, nil
	}
	return f, b.data[f.Name]
}

// message is what verifying one signed message established.
type message struct {
	name     string
	signed   []byte // the signed message as exchanged
	hash     [sha256.Size]byte
	verified bool // the signature verified
	signedAt time.Time
	id       string
	client   pki.ClientID
	service  pki.ServiceID
	rest     *rest.Signed
	soap     *soap.Verified
}

func (b *bundle) verifyMessage(rep *Report, trust *Trust, name string) *message {
	msg := &message{name: name}
	_, signed := b.get(name, roleFor(name, "signature"))
	if signed == nil {
		rep.add(name, "signature", false, "no %s file in the bundle", roleFor(name, "signature"))
		return msg
	}
	msg.signed, msg.hash = signed, sha256.Sum256(signed)
	if mi := b.m.message(name); mi != nil && mi.Hash != hex.EncodeToString(msg.hash[:]) {
		rep.add(name, "hash", false, "the manifest gives hash %s, the signed message hashes to %x", mi.Hash, msg.hash)
	}

	var chain []*x509.Certificate
	var ocspDER []byte
	switch b.m.Protocol {
	case "rest":
		chain, ocspDER = b.verifyREST(rep, msg)
	case "soap":
		chain, ocspDER = b.verifySOAP(rep, msg)
	}
	if msg.verified {
		b.checkIdentifiers(rep, msg)
		b.checkSigner(rep, trust, msg, chain, ocspDER)
		b.checkBody(rep, msg)
	}
	b.checkTimestamp(rep, trust, msg)
	b.checkRegistry(rep, trust, msg)
	return msg
}

// restPayload is the part of a REST JWS payload the audit reads before
// rest.VerifyRequest / VerifyResponse check all of it.
type restPayload struct {
	ID         string              `json:"id"`
	Client     string              `json:"client"`
	Service    string              `json:"service"`
	Method     string              `json:"method"`
	Path       string              `json:"path"`
	Query      string              `json:"query"`
	Status     int                 `json:"status"`
	Headers    map[string][]string `json:"headers"`
	BodyLength int64               `json:"bodyLength"`
	BodySHA256 string              `json:"bodySha256"`
	Request    string              `json:"request"`
	SignedAt   string              `json:"signedAt"`
}

// verifyREST checks a compact JWS with its x5c leaf: it builds the
// descriptor the payload claims and has the rest package verify the
// signature and compare every field with it.
func (b *bundle) verifyREST(rep *Report, msg *message) ([]*x509.Certificate, []byte) {
	compact := strings.TrimSpace(string(msg.signed))
	fail := func(err error) ([]*x509.Certificate, []byte) {
		rep.add(msg.name, "signature", false, "%v", err)
		return nil, nil
	}
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		return fail(errors.New("not a compact JWS"))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return fail(fmt.Errorf("payload encoding: %v", err))
	}
	var p restPayload
	if err := json.Unmarshal(raw, &p); err != nil {
		return fail(fmt.Errorf("payload: %v", err))
	}
	client, err1 := pki.ParseClientID(p.Client)
	service, err2 := pki.ParseServiceID(p.Service)
	signedAt, err3 := time.Parse(time.RFC3339Nano, p.SignedAt)
	bodySum, err4 := base64.RawURLEncoding.DecodeString(p.BodySHA256)
	if err := errors.Join(err1, err2, err3, err4); err != nil || len(bodySum) != sha256.Size {
		return fail(fmt.Errorf("payload fields: %v", err))
	}
	var headers []rest.SignedHeader
	for k, v := range p.Headers {
		headers = append(headers, rest.SignedHeader{Name: k, Values: v})
	}
	sort.Slice(headers, func(i, j int) bool { return headers[i].Name < headers[j].Name })
	body := rest.BodyDigest{Length: p.BodyLength}
	copy(body.SHA256[:], bodySum)

	var s *rest.Signed
	if msg.name == Request {
		s, err = rest.VerifyRequest(compact, &rest.RequestDescriptor{
			ID: p.ID, Client: client, Service: service, Method: p.Method, Path: p.Path, RawQuery: p.Query,
			Headers: headers, Body: body, SignedAt: signedAt,
		})
	} else {
		d := rest.ResponseDescriptor{ID: p.ID, Client: client, Service: service, Status: p.Status, Headers: headers, Body: body, SignedAt: signedAt}
		if reqSum, err := base64.RawURLEncoding.DecodeString(p.Request); err == nil && len(reqSum) == sha256.Size {
			copy(d.Request[:], reqSum)
		}
		s, err = rest.VerifyResponse(compact, &d)
	}
	if err != nil {
		return fail(err)
	}
	msg.verified, msg.rest = true, s
	msg.signedAt, msg.id, msg.client, msg.service = s.SignedAt, s.ID, client, service
	what := fmt.Sprintf("%s %s%s", p.Method, rest.ServicePath(service), p.Path)
	if msg.name == Response {
		what = fmt.Sprintf("status %d", p.Status)
	}
	rep.add(msg.name, "signature", true, "compact JWS (%s, typ %s) verifies with the key of its x5c leaf %q; signed at %s; covers %s, %d signed headers, a body of %d bytes",
		s.Algorithm, s.Typ, s.Chain[0].Subject.CommonName, fmtTime(s.SignedAt), what, len(headers), p.BodyLength)
	return s.Chain, s.OCSP
}

// verifySOAP checks an enveloped XML-DSig with soap.Verify.
func (b *bundle) verifySOAP(rep *Report, msg *message) ([]*x509.Certificate, []byte) {
	v, err := soap.Verify("", msg.signed, soap.Limits{MaxSize: MaxFileSize})
	if err != nil {
		rep.add(msg.name, "signature", false, "%v", err)
		return nil, nil
	}
	h := v.Envelope.Header
	msg.verified, msg.soap = true, v
	msg.signedAt, msg.id, msg.client = v.SigningTime, h.ID, h.Client
	if h.Service != nil {
		msg.service = *h.Service
	}
	op := v.Envelope.Operation()
	rep.add(msg.name, "signature", true, "enveloped XML-DSig (exclusive C14N, SHA-256, one reference to the whole %s envelope) verifies with the key of %q; signed at %s; operation %s, %d signed attachments",
		v.Envelope.Version, v.Chain[0].Subject.CommonName, fmtTime(v.SigningTime), op.Local, len(v.Attachments))
	return v.Chain, v.OCSP
}

// checkIdentifiers compares the signed identifiers with the manifest's.
func (b *bundle) checkIdentifiers(rep *Report, msg *message) {
	var diffs []string
	if msg.id != b.m.MessageID {
		diffs = append(diffs, fmt.Sprintf("message id %q, manifest %q", msg.id, b.m.MessageID))
	}
	if msg.client.String() != b.m.Client {
		diffs = append(diffs, fmt.Sprintf("client %s, manifest %s", msg.client, b.m.Client))
	}
	if msg.service.String() != b.m.Service || msg.service.Version != b.m.ServiceVersion {
		diffs = append(diffs, fmt.Sprintf("service %s, manifest %s", serviceString(msg.service), b.m.Service))
	}
	if len(diffs) > 0 {
		rep.add(msg.name, "identifiers", false, "signed %s", strings.Join(diffs, "; "))
		return
	}
	rep.add(msg.name, "identifiers", true, "signed message id %q, client %s, service %s: as the manifest says", msg.id, msg.client, serviceString(msg.service))
}

func serviceString(s pki.ServiceID) string {
	if s.Version != "" {
		return s.String() + " (version " + s.Version + ")"
	}
	return s.String()
}

// checkSigner validates the signer's chain at signing time, the member
// binding and the OCSP response that travelled with the message.
func (b *bundle) checkSigner(rep *Report, trust *Trust, msg *message, chain []*x509.Certificate, ocspDER []byte) {
	if f, data := b.get(msg.name, roleFor(msg.name, "signer_chain")); f != nil {
		certs, err := pki.ParseCertificatesPEM(data)
		switch {
		case err != nil:
			rep.add(msg.name, "signer chain", false, "%s: %v", f.Name, err)
		case !sameChain(certs, chain):
			rep.add(msg.name, "signer chain", false, "%s is not the chain the signature carries", f.Name)
		default:
			rep.add(msg.name, "signer chain", true, "%s (%d certificates) is the chain the signature carries", f.Name, len(certs))
		}
	}
	v, err := verify.New(verify.Config{Roots: trust.Roots, Now: func() time.Time { return msg.signedAt }})
	if err != nil {
		rep.add(msg.name, "certificate", false, "%v", err)
		return
	}
	member, issuer, err := v.VerifyChain(chain, pki.UsageSign)
	if err != nil {
		rep.add(msg.name, "certificate", false, "signer %q: %v", chain[0].Subject.CommonName, err)
		return
	}
	rep.add(msg.name, "certificate", true, "signer %q (serial %s) chains to %q in %s, has the sign usage, was valid at signing time, binds member %s",
		chain[0].Subject.CommonName, chain[0].SerialNumber.Text(16), issuer.Subject.CommonName, TrustCAFile, member)

	want, who := msg.client.MemberID(), "the client's member"
	if msg.name == Response {
		want, who = msg.service.Client.MemberID(), "the service's member"
	}
	if member != want {
		rep.add(msg.name, "member", false, "signed by member %s, but %s is %s", member, who, want)
	} else {
		rep.add(msg.name, "member", true, "signer's member %s is %s", member, who)
	}

	if f, data := b.get(msg.name, roleFor(msg.name, "ocsp")); f != nil && !bytes.Equal(data, ocspDER) {
		rep.add(msg.name, "ocsp", false, "%s is not the OCSP response the signature carries", f.Name)
		return
	}
	if len(ocspDER) == 0 {
		rep.add(msg.name, "ocsp", false, "the signature carries no OCSP response")
		return
	}
	maxAge := trust.OCSPMaxAge
	if maxAge <= 0 {
		maxAge = ocsp.DefaultMaxAge
	}
	resp, err := ocsp.ParseAndVerify(ocspDER, chain[0], issuer, msg.signedAt, maxAge)
	if err != nil {
		rep.add(msg.name, "ocsp", false, "at signing time: %v", err)
		return
	}
	by := "the CA itself"
	if !bytes.Equal(resp.Signer.Raw, issuer.Raw) {
		by = fmt.Sprintf("delegated responder %q (OCSPSigning, issued by the CA)", resp.Signer.Subject.CommonName)
	}
	rep.add(msg.name, "ocsp", true, "good for serial %s, signed by %s, thisUpdate %s: %s old at signing time (limit %s)",
		resp.Serial.Text(16), by, fmtTime(resp.ThisUpdate), msg.signedAt.Sub(resp.ThisUpdate).Round(time.Second), maxAge)
}

func sameChain(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// checkBody compares the logged body with the signed digests: the REST body
// with bodyLength and bodySha256, the SOAP attachments one by one with the
// signed attachment list.
func (b *bundle) checkBody(rep *Report, msg *message) {
	f := b.m.file(msg.name, roleFor(msg.name, "body"))
	if msg.rest != nil {
		want := signedBody(msg.rest)
		if f == nil {
			if want.Length == 0 {
				rep.add(msg.name, "body", true, "empty body (signed length 0)")
			} else {
				rep.add(msg.name, "body", true, "not in the bundle (metadata-only logging); signed: %d bytes, SHA-256 %x", want.Length, want.SHA256)
			}
			return
		}
		if b.bad[f.Name] {
			rep.add(msg.name, "body", false, "%s was altered (see the files check)", f.Name)
			return
		}
		n, sum, err := hashFile(b.files[f.Name], MaxBodySize)
		switch {
		case err != nil:
			rep.add(msg.name, "body", false, "%s: %v", f.Name, err)
		case n != want.Length || sum != want.SHA256:
			rep.add(msg.name, "body", false, "%s (%d bytes, SHA-256 %x) is not the signed body (%d bytes, SHA-256 %x)", f.Name, n, sum, want.Length, want.SHA256)
		default:
			rep.add(msg.name, "body", true, "%s: %d bytes whose SHA-256 is the signed bodySha256", f.Name, n)
		}
		return
	}
	atts := msg.soap.Attachments
	if f == nil {
		if len(atts) == 0 {
			rep.add(msg.name, "body", true, "no attachments (the SOAP body is inside the signed envelope)")
		} else {
			rep.add(msg.name, "body", true, "%d signed attachments not in the bundle (metadata-only logging)", len(atts))
		}
		return
	}
	rc, err := b.files[f.Name].Open()
	if err != nil {
		rep.add(msg.name, "body", false, "%s: %v", f.Name, err)
		return
	}
	defer rc.Close()
	for i, a := range atts {
		h := sha256.New()
		n, err := io.Copy(h, io.LimitReader(rc, a.Size))
		if err != nil || n != a.Size || !bytes.Equal(h.Sum(nil), a.SHA256) {
			rep.add(msg.name, "body", false, "%s: attachment %d (%s) differs from its signed digest", f.Name, i+1, a.ContentID)
			return
		}
	}
	if n, _ := io.Copy(io.Discard, io.LimitReader(rc, 1)); n != 0 {
		rep.add(msg.name, "body", false, "%s holds more than the %d signed attachments", f.Name, len(atts))
		return
	}
	rep.add(msg.name, "body", true, "%s: %d attachments, each matching its signed size and SHA-256", f.Name, len(atts))
}

// signedBody is the body digest a verified REST signature covers.
func signedBody(s *rest.Signed) rest.BodyDigest {
	if s.Request != nil {
		return s.Request.Body
	}
	return s.Response.Body
}

// checkTimestamp verifies the token over the batch root computed from the
// message hash and its path.
func (b *bundle) checkTimestamp(rep *Report, trust *Trust, msg *message) {
	if msg.signed == nil {
		return
	}
	tf, token := b.get(msg.name, RoleTimestampToken)
	pf, pathText := b.get(msg.name, RoleTimestampPath)
	if tf == nil || pf == nil {
		rep.missing(msg.name, "timestamp", "no %s and %s for the %s: not yet timestamped when exported; export again later", RoleTimestampToken, RoleTimestampPath, msg.name)
		return
	}
	path, err := timestamp.ParseBatchPath(pathText)
	if err != nil {
		rep.add(msg.name, "timestamp", false, "%s: %v", pf.Name, err)
		return
	}
	info, err := timestamp.Verify(timestamp.Hash(msg.hash), path, token, trust.Roots, timestamp.VerifyOptions{Certificates: trust.TSACerts})
	if err != nil {
		rep.add(msg.name, "timestamp", false, "%v", err)
		return
	}
	rep.add(msg.name, "timestamp", true, "message hash %x is leaf %d of a batch of %d; the RFC 3161 token (serial %s) by TSA %q (chains to %s, critical timeStamping EKU) covers that batch's root; genTime %s (±%s)",
		msg.hash[:8], path.Index, path.Size, info.Serial.Text(16), info.TSA.Subject.CommonName, TrustCAFile, fmtTime(info.Time), info.Accuracy)
	if msg.verified {
		// The signer's clock and the TSA's may differ a little.
		const skew = time.Minute
		if info.Time.Add(info.Accuracy + skew).Before(msg.signedAt) {
			rep.add(msg.name, "timestamp", false, "genTime %s is before the signing time %s", fmtTime(info.Time), fmtTime(msg.signedAt))
		} else {
			rep.add(msg.name, "timestamp", true, "signed at %s, timestamped %s later: the message existed, signed, by %s", fmtTime(msg.signedAt), info.Time.Sub(msg.signedAt).Round(time.Millisecond), fmtTime(info.Time))
		}
	}
}

// checkRegistry verifies the registry receipt and that its entry names this
// message.
func (b *bundle) checkRegistry(rep *Report, trust *Trust, msg *message) {
	if msg.signed == nil {
		return
	}
	f, proof := b.get(msg.name, RoleRegistryProof)
	if f == nil {
		rep.missing(msg.name, "registry", "no %s for the %s: not yet registered when exported; export again later", RoleRegistryProof, msg.name)
		return
	}
	rc, err := hashregistry.VerifyReceipt(proof, trust.Registry)
	if err != nil {
		rep.add(msg.name, "registry", false, "%s: %v", f.Name, err)
		return
	}
	wantKind := hashregistry.KindRequest
	if msg.name == Response {
		wantKind = hashregistry.KindResponse
	}
	switch {
	case rc.Entry.Hash != msg.hash:
		rep.add(msg.name, "registry", false, "the receipt's entry names message hash %x, not this message's %x", rc.Entry.Hash, msg.hash)
	case rc.Entry.Kind != wantKind:
		rep.add(msg.name, "registry", false, "the receipt's entry is a %s, not a %s", rc.Entry.Kind, wantKind)
	case rc.Entry.Member.String() != b.m.Exporter.Owner:
		rep.add(msg.name, "registry", false, "the receipt's entry was submitted by %s, not by the exporter %s", rc.Entry.Member, b.m.Exporter.Owner)
	default:
		rep.add(msg.name, "registry", true, "entry %d of log %q (checkpoint of %d entries signed by the key in %s; inclusion proof verified) names this %s's hash, submitted by %s at %s",
			rc.Index, rc.Checkpoint.Origin, rc.Checkpoint.Size, TrustRegistryFile, rc.Entry.Kind, rc.Entry.Member, fmtTime(rc.Entry.Time))
	}
}

// checkExchange binds the response to the request.
func (b *bundle) checkExchange(rep *Report, req, resp *message) {
	if resp == nil {
		rep.add("exchange", "response", true, "no response in the bundle: only the request is proved")
		return
	}
	if !req.verified || !resp.verified {
		rep.add("exchange", "binding", false, "cannot bind the response to the request: a signature did not verify")
		return
	}
	switch {
	case resp.id != req.id || resp.client != req.client || resp.service != req.service:
		rep.add("exchange", "binding", false, "the response's signed identifiers (%q, %s, %s) are not the request's", resp.id, resp.client, resp.service)
	case resp.rest != nil:
		if resp.rest.Response.Request != req.hash {
			rep.add("exchange", "binding", false, "the response signs request hash %x, the request's is %x", resp.rest.Response.Request, req.hash)
			return
		}
		rep.add("exchange", "binding", true, "the response signs the SHA-256 of the request JWS (%x…): it answers this request", req.hash[:8])
	case resp.soap != nil:
		if err := resp.soap.CheckRequestDigest(req.signed); err != nil {
			rep.add("exchange", "binding", false, "%v", err)
			return
		}
		rep.add("exchange", "binding", true, "the response's signed properties carry the digest of the signed request envelope: it answers this request")
	}
}

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
