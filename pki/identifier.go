package pki

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrBadIdentifier reports a malformed X-Road identifier.
var ErrBadIdentifier = errors.New("pki: malformed identifier")

// maxPartLen bounds each identifier part, as X-Road bounds its database columns.
const maxPartLen = 255

// ClientID names a member (INSTANCE/CLASS/MEMBER) or a subsystem
// (INSTANCE/CLASS/MEMBER/SUBSYSTEM), as X-Road does. The zero value is not valid.
type ClientID struct {
	Instance  string
	Class     string
	Member    string
	Subsystem string // empty for a member
}

// ServiceID names a service: a client identifier (a subsystem for REST; SOAP
// also allows a member), a service code and, for SOAP, an optional version.
type ServiceID struct {
	Client  ClientID
	Code    string
	Version string // SOAP serviceVersion; ignored by access control
}

// ValidPart reports whether s is a valid identifier part: 1 to 255 characters
// from X-Road's set A-Z a-z 0-9 ' ( ) + , - . = ?
func ValidPart(s string) bool {
	if s == "" || len(s) > maxPartLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !validChar(s[i]) {
			return false
		}
	}
	return true
}

func validChar(c byte) bool {
	switch {
	case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("'()+,-.=?", c) >= 0
}

// NewClientID builds a client identifier from its parts (3 for a member, 4 for
// a subsystem), checking each.
func NewClientID(parts ...string) (ClientID, error) {
	if len(parts) != 3 && len(parts) != 4 {
		return ClientID{}, fmt.Errorf("%w: want INSTANCE/CLASS/MEMBER[/SUBSYSTEM], got %d parts", ErrBadIdentifier, len(parts))
	}
	for i, p := range parts {
		if !ValidPart(p) {
			return ClientID{}, fmt.Errorf("%w: part %d (%q) must be 1-%d characters from A-Z a-z 0-9 '()+,-.=?", ErrBadIdentifier, i+1, truncate(p), maxPartLen)
		}
	}
	c := ClientID{Instance: parts[0], Class: parts[1], Member: parts[2]}
	if len(parts) == 4 {
		c.Subsystem = parts[3]
	}
	return c, nil
}

// ParseClientID parses "INSTANCE/CLASS/MEMBER" or "INSTANCE/CLASS/MEMBER/SUBSYSTEM".
func ParseClientID(s string) (ClientID, error) {
	return NewClientID(strings.Split(s, "/")...)
}

// ParseMemberID parses "INSTANCE/CLASS/MEMBER" and refuses a subsystem.
func ParseMemberID(s string) (ClientID, error) {
	c, err := ParseClientID(s)
	if err != nil {
		return c, err
	}
	if c.IsSubsystem() {
		return ClientID{}, fmt.Errorf("%w: %q is a subsystem, want INSTANCE/CLASS/MEMBER", ErrBadIdentifier, truncate(s))
	}
	return c, nil
}

// ParseSubsystemID parses "INSTANCE/CLASS/MEMBER/SUBSYSTEM" and refuses a member.
func ParseSubsystemID(s string) (ClientID, error) {
	c, err := ParseClientID(s)
	if err != nil {
		return c, err
	}
	if !c.IsSubsystem() {
		return ClientID{}, fmt.Errorf("%w: %q is a member, want INSTANCE/CLASS/MEMBER/SUBSYSTEM", ErrBadIdentifier, truncate(s))
	}
	return c, nil
}

// ParseServiceID parses the REST form "INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE".
func ParseServiceID(s string) (ServiceID, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 5 {
		return ServiceID{}, fmt.Errorf("%w: want INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE, got %d parts", ErrBadIdentifier, len(parts))
	}
	return NewServiceID(parts[:4], parts[4], "")
}

// NewServiceID builds a service identifier from a client's parts (3 or 4), a
// code and an optional version.
func NewServiceID(clientParts []string, code, version string) (ServiceID, error) {
	c, err := NewClientID(clientParts...)
	if err != nil {
		return ServiceID{}, err
	}
	if !ValidPart(code) {
		return ServiceID{}, fmt.Errorf("%w: service code %q", ErrBadIdentifier, truncate(code))
	}
	if version != "" && !ValidPart(version) {
		return ServiceID{}, fmt.Errorf("%w: service version %q", ErrBadIdentifier, truncate(version))
	}
	return ServiceID{Client: c, Code: code, Version: version}, nil
}

// IsSubsystem reports whether c names a subsystem rather than a member.
func (c ClientID) IsSubsystem() bool { return c.Subsystem != "" }

// IsZero reports whether c is the zero value.
func (c ClientID) IsZero() bool { return c == ClientID{} }

// MemberID returns the member that owns c (c itself for a member).
func (c ClientID) MemberID() ClientID {
	c.Subsystem = ""
	return c
}

// ObjectType is X-Road's id:objectType for c: MEMBER or SUBSYSTEM.
func (c ClientID) ObjectType() string {
	if c.IsSubsystem() {
		return "SUBSYSTEM"
	}
	return "MEMBER"
}

// Parts returns the identifier's parts in order.
func (c ClientID) Parts() []string {
	if c.IsSubsystem() {
		return []string{c.Instance, c.Class, c.Member, c.Subsystem}
	}
	return []string{c.Instance, c.Class, c.Member}
}

func (c ClientID) String() string { return strings.Join(c.Parts(), "/") }

// String returns INSTANCE/CLASS/MEMBER[/SUBSYSTEM]/SERVICE (the version is not
// part of the string form, as in X-Road's REST identifiers).
func (s ServiceID) String() string { return s.Client.String() + "/" + s.Code }

// MemberURIPrefix starts the SAN URI that binds a member identifier into a
// certificate: urn:passerelle:member:INSTANCE/CLASS/MEMBER, each part
// percent-encoded on its own (every byte outside A-Z a-z 0-9 - . as %XX).
const MemberURIPrefix = "urn:passerelle:member:"

// MemberURI returns the SAN URI binding member m into a certificate.
func MemberURI(m ClientID) *url.URL {
	parts := m.MemberID().Parts()
	for i, p := range parts {
		parts[i] = escapePart(p)
	}
	u, err := url.Parse(MemberURIPrefix + strings.Join(parts, "/"))
	if err != nil {
		// Unreachable: escapePart leaves only unreserved characters.
		panic(err)
	}
	return u
}

// ParseMemberURI reads a member identifier from a SAN URI written by MemberURI.
func ParseMemberURI(u *url.URL) (ClientID, error) {
	s := u.String()
	rest, ok := strings.CutPrefix(s, MemberURIPrefix)
	if !ok {
		return ClientID{}, fmt.Errorf("%w: URI %q is not a %s URI", ErrBadIdentifier, truncate(s), MemberURIPrefix)
	}
	parts := strings.Split(rest, "/")
	for i, p := range parts {
		d, err := url.PathUnescape(p)
		if err != nil {
			return ClientID{}, fmt.Errorf("%w: URI part %d: %v", ErrBadIdentifier, i+1, err)
		}
		parts[i] = d
	}
	if len(parts) != 3 {
		return ClientID{}, fmt.Errorf("%w: URI names %d parts, want INSTANCE/CLASS/MEMBER", ErrBadIdentifier, len(parts))
	}
	return NewClientID(parts...)
}

func escapePart(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
