package evidence

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/passerelle/passerelle/pki"
)

// FormatVersion is the manifest's "version".
const FormatVersion = 1

// ManifestName is the name of the manifest inside a bundle.
const ManifestName = "manifest.json"

// Limits on what Verify reads.
const (
	MaxManifestSize = 1 << 20  // manifest.json
	MaxFileSize     = 32 << 20 // any file but a body (signatures, chains, OCSP, tokens, paths, proofs)
	MaxBodySize     = 4 << 30  // a body, hashed while streamed, never held in memory
	MaxFiles        = 32       // entries in the ZIP, manifest included
)

// Errors Verify returns; callers branch on them with errors.Is.
var (
	// ErrMalformed: the bundle is not a well-formed evidence bundle (not a
	// ZIP, no or a bad manifest, files missing, extra or not as listed).
	ErrMalformed = errors.New("evidence: malformed bundle")
	// ErrVerification: a check failed; the Report says which.
	ErrVerification = errors.New("evidence: verification failed")
	// ErrIncomplete: evidence is missing (a timestamp or a registry receipt
	// not attached yet when the bundle was exported).
	ErrIncomplete = errors.New("evidence: bundle incomplete")
	// ErrNotFound: no exchange with that message id in the log.
	ErrNotFound = errors.New("evidence: exchange not found")
	// ErrAmbiguous: several exchanges carry that message id; name the client.
	ErrAmbiguous = errors.New("evidence: several exchanges with that message id")
)

// Role says what a file of a bundle is.
type Role string

// The roles of a bundle's files. The timestamp and registry roles occur
// once per message, told apart by File.Message.
const (
	RoleRequestSignature    Role = "request.signature"
	RoleRequestBody         Role = "request.body"
	RoleResponseSignature   Role = "response.signature"
	RoleResponseBody        Role = "response.body"
	RoleRequestSignerChain  Role = "request.signer_chain"
	RoleResponseSignerChain Role = "response.signer_chain"
	RoleRequestOCSP         Role = "request.ocsp"
	RoleResponseOCSP        Role = "response.ocsp"
	RoleTimestampToken      Role = "timestamp.token"
	RoleTimestampPath       Role = "timestamp.path"
	RoleRegistryProof       Role = "registry.proof"
)

var roles = []Role{
	RoleRequestSignature, RoleRequestBody, RoleResponseSignature, RoleResponseBody,
	RoleRequestSignerChain, RoleResponseSignerChain, RoleRequestOCSP, RoleResponseOCSP,
	RoleTimestampToken, RoleTimestampPath, RoleRegistryProof,
}

// Messages of an exchange: File.Message and MessageInfo.Message.
const (
	Request  = "request"
	Response = "response"
)

// kind is the part of a role after the message: "signature", "body", …
// (the whole role for the shared ones).
func (r Role) kind() string {
	if m, k, ok := strings.Cut(string(r), "."); ok && (m == Request || m == Response) {
		return k
	}
	return string(r)
}

// message is the message a role names ("" for the shared roles).
func (r Role) message() string {
	if m, _, ok := strings.Cut(string(r), "."); ok && (m == Request || m == Response) {
		return m
	}
	return ""
}

// roleFor returns the role of kind ("signature", "body", "signer_chain",
// "ocsp", or a shared role) for message.
func roleFor(message, kind string) Role {
	switch kind {
	case "signature", "body", "signer_chain", "ocsp":
		return Role(message + "." + kind)
	}
	return Role(kind)
}

// Manifest is manifest.json. It is a table of contents, not evidence:
// Verify compares its identifiers with the signed ones.
type Manifest struct {
	Version        int    `json:"version"`
	MessageID      string `json:"messageId"`
	Client         string `json:"client"`
	Service        string `json:"service"`
	ServiceVersion string `json:"serviceVersion,omitempty"`
	Protocol       string `json:"protocol"` // "rest" or "soap"
	// Exporter is the security server whose message log the bundle comes
	// from: its owner member and the side that handled the exchange.
	Exporter   Exporter      `json:"exporter"`
	ExportedAt time.Time     `json:"exportedAt"`
	Messages   []MessageInfo `json:"messages"`
	Files      []File        `json:"files"`
}

// Exporter names the security server that exported a bundle.
type Exporter struct {
	Owner string `json:"owner"` // INSTANCE/CLASS/MEMBER
	Side  string `json:"side"`  // "consumer" or "provider"
}

// MessageInfo is what the exporting server's log says of one message.
type MessageInfo struct {
	Message    string    `json:"message"`   // "request" or "response"
	Direction  string    `json:"direction"` // "sent" or "received", by the exporter
	Time       time.Time `json:"time"`      // when the exporter sent or received it
	Hash       string    `json:"hash"`      // SHA-256 of the signed message, hex
	Status     int       `json:"status,omitempty"`
	BodyMode   string    `json:"bodyMode"` // "full" or "metadata"
	BodyLength int64     `json:"bodyLength"`
	BodySHA256 string    `json:"bodySha256,omitempty"` // hex
}

// File is one file of a bundle.
type File struct {
	Name    string `json:"name"`
	Role    Role   `json:"role"`
	Message string `json:"message"` // "request" or "response"
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"` // hex
}

// ParseManifest decodes and checks manifest.json: known version, valid
// identifiers, file names that are plain names, known roles, each role
// at most once per message.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest of %d bytes", ErrMalformed, len(data))
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: manifest: trailing data", ErrMalformed)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrMalformed, err)
	}
	return &m, nil
}

func (m *Manifest) check() error {
	if m.Version != FormatVersion {
		return fmt.Errorf("version %d, want %d", m.Version, FormatVersion)
	}
	if m.MessageID == "" {
		return errors.New("no messageId")
	}
	if _, err := pki.ParseClientID(m.Client); err != nil {
		return fmt.Errorf("client: %v", err)
	}
	if _, err := pki.ParseServiceID(m.Service); err != nil {
		return fmt.Errorf("service: %v", err)
	}
	if m.Protocol != "rest" && m.Protocol != "soap" {
		return fmt.Errorf("protocol %q, want rest or soap", m.Protocol)
	}
	if _, err := pki.ParseMemberID(m.Exporter.Owner); err != nil {
		return fmt.Errorf("exporter owner: %v", err)
	}
	if m.Exporter.Side != "consumer" && m.Exporter.Side != "provider" {
		return fmt.Errorf("exporter side %q, want consumer or provider", m.Exporter.Side)
	}
	seenMsg := map[string]bool{}
	for _, mi := range m.Messages {
		if mi.Message != Request && mi.Message != Response {
			return fmt.Errorf("message %q, want request or response", mi.Message)
		}
		if seenMsg[mi.Message] {
			return fmt.Errorf("message %q listed twice", mi.Message)
		}
		seenMsg[mi.Message] = true
		if h, err := hex.DecodeString(mi.Hash); err != nil || len(h) != 32 {
			return fmt.Errorf("%s hash %q is not 64 hex digits", mi.Message, mi.Hash)
		}
	}
	if !seenMsg[Request] {
		return errors.New("no request message")
	}
	if len(m.Files) > MaxFiles-1 {
		return fmt.Errorf("%d files, at most %d", len(m.Files), MaxFiles-1)
	}
	names := map[string]bool{ManifestName: true}
	type key struct {
		msg  string
		role Role
	}
	seen := map[key]bool{}
	for _, f := range m.Files {
		if !validName(f.Name) {
			return fmt.Errorf("file name %q: want a plain name of letters, digits, '.', '-', '_'", f.Name)
		}
		if names[f.Name] {
			return fmt.Errorf("file %q listed twice", f.Name)
		}
		names[f.Name] = true
		if !slices.Contains(roles, f.Role) {
			return fmt.Errorf("file %q: unknown role %q", f.Name, f.Role)
		}
		if !seenMsg[f.Message] {
			return fmt.Errorf("file %q: message %q is not one of the bundle's messages", f.Name, f.Message)
		}
		if rm := f.Role.message(); rm != "" && rm != f.Message {
			return fmt.Errorf("file %q: role %s belongs to the %s, not the %s", f.Name, f.Role, rm, f.Message)
		}
		if seen[key{f.Message, f.Role}] {
			return fmt.Errorf("role %s of the %s listed twice", f.Role, f.Message)
		}
		seen[key{f.Message, f.Role}] = true
		if h, err := hex.DecodeString(f.SHA256); err != nil || len(h) != 32 {
			return fmt.Errorf("file %q: sha256 is not 64 hex digits", f.Name)
		}
		if f.Size < 0 {
			return fmt.Errorf("file %q: negative size", f.Name)
		}
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 100 || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// file returns the manifest entry of role for message, or nil.
func (m *Manifest) file(message string, role Role) *File {
	for i := range m.Files {
		if m.Files[i].Message == message && m.Files[i].Role == role {
			return &m.Files[i]
		}
	}
	return nil
}

// message returns the MessageInfo of message, or nil.
func (m *Manifest) message(message string) *MessageInfo {
	for i := range m.Messages {
		if m.Messages[i].Message == message {
			return &m.Messages[i]
		}
	}
	return nil
}

// fileName is the name Write gives a file of role for message in a bundle of
// protocol.
func fileName(protocol, message string, role Role) string {
	switch role.kind() {
	case "signature":
		if protocol == "soap" {
			return message + ".xml"
		}
		return message + ".jws"
	case "body":
		if protocol == "soap" {
			return message + ".attachments"
		}
		return message + ".body"
	case "signer_chain":
		return message + ".chain.pem"
	case "ocsp":
		return message + ".ocsp.der"
	case "timestamp.token":
		return message + ".timestamp.tst"
	case "timestamp.path":
		return message + ".timestamp.path"
	case "registry.proof":
		return message + ".registry.proof"
	}
	return message + "." + string(role)
}
