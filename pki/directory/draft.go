package directory

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/passerelle/passerelle/pki"
)

// Files in a federation operator's directory folder (DIR).
const (
	DraftFile  = "draft.json"    // the source document, edited by the CLI
	SignedFile = "directory.jws" // the latest signed document, served
)

// DefaultValidity is how long a signed directory stays valid when neither
// the draft nor the signer says otherwise.
const DefaultValidity = 24 * time.Hour

// ErrNoDraft reports a folder without a draft (run `directory init`).
var ErrNoDraft = errors.New("directory: no draft (run 'passerelle directory init')")

// Draft is the federation operator's source document: a Document without
// issuedAt/expiresAt, whose Serial is the last serial signed, plus the
// default validity of the documents signed from it.
type Draft struct {
	Document
	Validity Duration `json:"validity"`
}

// Duration is a time.Duration written in JSON as a Go duration string ("24h").
type Duration time.Duration

// MarshalJSON writes "24h0m0s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// NewDraft starts a draft for instance with the default parameters.
func NewDraft(instance string, validity time.Duration) (*Draft, error) {
	if validity <= 0 {
		validity = DefaultValidity
	}
	d := &Draft{
		Document: Document{Version: FormatVersion, Instance: instance, Params: DefaultParams()},
		Validity: Duration(validity),
	}
	if err := d.validateBody(); err != nil {
		return nil, err
	}
	return d, nil
}

// InitDir creates dir (0700) and its draft; it refuses to overwrite one.
func InitDir(dir string, d *Draft) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, DraftFile)); err == nil {
		return fmt.Errorf("directory: %s already exists", filepath.Join(dir, DraftFile))
	}
	return d.Save(dir)
}

// LoadDraft reads dir's draft and validates it.
func LoadDraft(dir string) (*Draft, error) {
	data, err := readLimited(filepath.Join(dir, DraftFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoDraft, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	d, err := ParseDraft(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, DraftFile), err)
	}
	return d, nil
}

// ParseDraft decodes a draft strictly (an unknown field is an error) and
// validates it.
func ParseDraft(data []byte) (*Draft, error) {
	var d Draft
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the draft", ErrInvalid)
	}
	if d.Validity < 0 {
		return nil, fmt.Errorf("%w: negative validity", ErrInvalid)
	}
	if err := d.validateBody(); err != nil {
		return nil, err
	}
	return &d, nil
}

// Save validates the draft and writes it to dir atomically.
func (d *Draft) Save(dir string) error {
	if err := d.validateBody(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	return pki.WriteFileAtomic(filepath.Join(dir, DraftFile), append(data, '\n'), 0o644)
}

// AddMember adds a member, or updates its name (when name is not empty) and
// adds subsystems it does not have yet.
func (d *Draft) AddMember(id pki.ClientID, name string, subsystems ...string) error {
	return d.try(func() error { return d.addMember(id, name, subsystems...) })
}

func (d *Draft) addMember(id pki.ClientID, name string, subsystems ...string) error {
	if id.IsSubsystem() || id.IsZero() {
		return fmt.Errorf("%w: %q is not a member identifier", ErrInvalid, id)
	}
	if id.Instance != d.Instance {
		return fmt.Errorf("%w: member %s is not in instance %s", ErrInvalid, id, d.Instance)
	}
	for _, s := range subsystems {
		if !pki.ValidPart(s) {
			return fmt.Errorf("%w: subsystem code %q", ErrInvalid, s)
		}
	}
	i := slices.IndexFunc(d.Members, func(m Member) bool { return m.ID == id.String() })
	if i < 0 {
		d.Members = append(d.Members, Member{ID: id.String()})
		i = len(d.Members) - 1
	}
	m := &d.Members[i]
	if name != "" {
		m.Name = name
	}
	for _, s := range subsystems {
		if !slices.Contains(m.Subsystems, s) {
			m.Subsystems = append(m.Subsystems, s)
		}
	}
	return d.validateBody()
}

// AddServer adds or replaces (same owner and code) a security server. Each
// hosted subsystem is a full INSTANCE/CLASS/MEMBER/SUBSYSTEM, or a bare
// subsystem code of the owner, which is added to the owner when missing.
func (d *Draft) AddServer(owner pki.ClientID, code, address string, tlsCert *x509.Certificate, subsystems ...string) error {
	return d.try(func() error { return d.addServer(owner, code, address, tlsCert, subsystems...) })
}

func (d *Draft) addServer(owner pki.ClientID, code, address string, tlsCert *x509.Certificate, subsystems ...string) error {
	if _, ok := d.Member(owner); !ok {
		return fmt.Errorf("%w: owner %s is not a member (add it first)", ErrInvalid, owner)
	}
	s := Server{Owner: owner.String(), Code: code, Address: address, TLSCertSHA256: pki.Fingerprint(tlsCert)}
	for _, sub := range subsystems {
		if !strings.Contains(sub, "/") {
			if err := d.addMember(owner, "", sub); err != nil {
				return err
			}
			o := owner
			o.Subsystem = sub
			sub = o.String()
		}
		if !slices.Contains(s.Subsystems, sub) {
			s.Subsystems = append(s.Subsystems, sub)
		}
	}
	if i := slices.IndexFunc(d.Servers, func(x Server) bool { return x.ID() == s.ID() }); i >= 0 {
		d.Servers[i] = s
	} else {
		d.Servers = append(d.Servers, s)
	}
	return d.validateBody()
}

// AddCA adds a trusted root (or replaces the entry of the same certificate).
func (d *Draft) AddCA(name string, root *x509.Certificate, ocspURLs ...string) error {
	return d.try(func() error { return d.addCA(name, root, ocspURLs...) })
}

func (d *Draft) addCA(name string, root *x509.Certificate, ocspURLs ...string) error {
	c := CA{Name: name, Certificate: string(pki.EncodeCertificatesPEM(root)), OCSPURLs: ocspURLs}
	if name == "" {
		c.Name = root.Subject.CommonName
	}
	i := slices.IndexFunc(d.CAs, func(x CA) bool { return x.cert != nil && x.cert.Equal(root) })
	if i >= 0 {
		d.CAs[i] = c
	} else {
		d.CAs = append(d.CAs, c)
	}
	return d.validateBody()
}

// AddTSA adds a TSA (or replaces the entry with the same URL).
func (d *Draft) AddTSA(name, url string, tsaCert *x509.Certificate) error {
	return d.try(func() error { return d.addTSA(name, url, tsaCert) })
}

func (d *Draft) addTSA(name, url string, tsaCert *x509.Certificate) error {
	t := TSA{Name: name, URL: url, Certificate: string(pki.EncodeCertificatesPEM(tsaCert))}
	if name == "" {
		t.Name = tsaCert.Subject.CommonName
	}
	if i := slices.IndexFunc(d.TSAs, func(x TSA) bool { return x.URL == url }); i >= 0 {
		d.TSAs[i] = t
	} else {
		d.TSAs = append(d.TSAs, t)
	}
	return d.validateBody()
}

// AddRegistry adds a hash registry (or replaces the entry with the same name).
func (d *Draft) AddRegistry(r Registry) error {
	return d.try(func() error { return d.addRegistry(r) })
}

func (d *Draft) addRegistry(r Registry) error {
	r.VerifierKey = strings.TrimSpace(r.VerifierKey)
	if i := slices.IndexFunc(d.Registries, func(x Registry) bool { return x.Name == r.Name }); i >= 0 {
		d.Registries[i] = r
	} else {
		d.Registries = append(d.Registries, r)
	}
	return d.validateBody()
}

// try runs an edit and, when it fails, puts the draft back as it was.
func (d *Draft) try(edit func() error) error {
	snap, err := json.Marshal(d.Document)
	if err != nil {
		return err
	}
	if err := edit(); err != nil {
		var prev Document
		if uerr := json.Unmarshal(snap, &prev); uerr == nil && prev.validateBody() == nil {
			d.Document = prev
		}
		return err
	}
	return nil
}

// Sign bumps the draft's serial and returns the signed document, valid for
// validity from now (the draft's validity when zero). The caller saves the
// draft after writing the signed document (SignDir does both).
func (d *Draft) Sign(key crypto.Signer, chain []*x509.Certificate, now time.Time, validity time.Duration) ([]byte, *Document, error) {
	if validity <= 0 {
		validity = time.Duration(d.Validity)
	}
	if validity <= 0 {
		validity = DefaultValidity
	}
	doc := d.Document
	doc.Serial++
	doc.IssuedAt = now.UTC().Truncate(time.Second)
	doc.ExpiresAt = doc.IssuedAt.Add(validity)
	signed, err := Sign(&doc, key, chain)
	if err != nil {
		return nil, nil, err
	}
	doc.CAs, doc.TSAs = slices.Clone(doc.CAs), slices.Clone(doc.TSAs)
	if err := doc.prepare(); err != nil {
		return nil, nil, err
	}
	d.Serial = doc.Serial
	return signed, &doc, nil
}

// SignDir signs dir's draft with key and chain and writes dir/directory.jws
// atomically, with a serial above both the draft's and the one already
// published. It returns the document signed.
func SignDir(dir string, key crypto.Signer, chain []*x509.Certificate, now time.Time, validity time.Duration) (*Document, error) {
	d, err := LoadDraft(dir)
	if err != nil {
		return nil, err
	}
	signedPath := filepath.Join(dir, SignedFile)
	if prev, err := readLimited(signedPath); err == nil {
		if doc, err := Peek(prev); err == nil && doc.Serial > d.Serial {
			d.Serial = doc.Serial
		}
	}
	signed, doc, err := d.Sign(key, chain, now, validity)
	if err != nil {
		return nil, err
	}
	if err := pki.WriteFileAtomic(signedPath, append(signed, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	if err := d.Save(dir); err != nil {
		return nil, err
	}
	return doc, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxSize)
	}
	return data, nil
}
