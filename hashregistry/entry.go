package hashregistry

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/passerelle/passerelle/pki"
)

// Kind says whether a logged message was a request or a response.
type Kind uint8

const (
	KindRequest  Kind = 1
	KindResponse Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindResponse:
		return "response"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Valid reports whether k is request or response.
func (k Kind) Valid() bool { return k == KindRequest || k == KindResponse }

// ParseKind reads "request" or "response".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "request":
		return KindRequest, nil
	case "response":
		return KindResponse, nil
	}
	return 0, fmt.Errorf("%w: kind %q (want request or response)", ErrBadEntry, s)
}

// EntryVersion is the first byte of every canonical entry.
const EntryVersion = 1

// entryFixed is the length of an entry without its member identifier:
// version, kind, time, hash, member length.
const entryFixed = 1 + 1 + 8 + sha256.Size + 2

// MaxMemberLen bounds the member identifier in an entry.
const MaxMemberLen = 1024

// ErrBadEntry reports bytes that are not a canonical entry.
var ErrBadEntry = errors.New("hashregistry: malformed entry")

// Entry is one record of the log: which member submitted which message hash,
// of what kind, when the registry integrated it. The member comes from the
// submitter's TLS client certificate, never from the request body.
//
// Its canonical encoding (version 1), the bytes whose RFC 6962 leaf hash the
// tree holds, is, in order and with no padding:
//
//	1 byte   version (0x01)
//	1 byte   kind (0x01 request, 0x02 response)
//	8 bytes  submission time, Unix milliseconds UTC, big-endian signed
//	32 bytes SHA-256 of the message
//	2 bytes  length of the member identifier, big-endian
//	n bytes  member identifier, "INSTANCE/CLASS/MEMBER[/SUBSYSTEM]" (X-Road characters only)
//
// Every field has a fixed length or an explicit one, and parsing refuses
// trailing bytes, so one entry has exactly one encoding.
type Entry struct {
	Member pki.ClientID
	Hash   [sha256.Size]byte
	Kind   Kind
	Time   time.Time // millisecond precision, UTC
}

// Marshal returns the canonical encoding of e.
func (e Entry) Marshal() ([]byte, error) {
	if !e.Kind.Valid() {
		return nil, fmt.Errorf("%w: kind %d", ErrBadEntry, e.Kind)
	}
	m, err := e.member()
	if err != nil {
		return nil, err
	}
	return e.appendTo(make([]byte, 0, entryFixed+len(m)), m), nil
}

// member returns e's member identifier as encoded, checking it.
func (e Entry) member() (string, error) {
	if e.Member.IsZero() {
		return "", fmt.Errorf("%w: no member", ErrBadEntry)
	}
	m := e.Member.String()
	if len(m) > MaxMemberLen {
		return "", fmt.Errorf("%w: member identifier too long", ErrBadEntry)
	}
	return m, nil
}

// appendTo appends the encoding of e, whose member identifier is m (from
// e.member) and kind valid, to b.
func (e Entry) appendTo(b []byte, m string) []byte {
	b = append(b, EntryVersion, byte(e.Kind))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixMilli()))
	b = append(b, e.Hash[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
	return append(b, m...)
}

// ParseEntry decodes a canonical entry, refusing anything Marshal would not
// have written.
func ParseEntry(b []byte) (Entry, error) {
	if len(b) < entryFixed {
		return Entry{}, fmt.Errorf("%w: %d bytes", ErrBadEntry, len(b))
	}
	if b[0] != EntryVersion {
		return Entry{}, fmt.Errorf("%w: version %d", ErrBadEntry, b[0])
	}
	e := Entry{Kind: Kind(b[1])}
	if !e.Kind.Valid() {
		return Entry{}, fmt.Errorf("%w: kind %d", ErrBadEntry, b[1])
	}
	e.Time = time.UnixMilli(int64(binary.BigEndian.Uint64(b[2:10]))).UTC()
	copy(e.Hash[:], b[10:42])
	n := int(binary.BigEndian.Uint16(b[42:44]))
	if n > MaxMemberLen || len(b) != entryFixed+n {
		return Entry{}, fmt.Errorf("%w: member length %d in %d bytes", ErrBadEntry, n, len(b))
	}
	m, err := pki.ParseClientID(string(b[44:]))
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %w", ErrBadEntry, err)
	}
	if m.String() != string(b[44:]) {
		return Entry{}, fmt.Errorf("%w: member not canonical", ErrBadEntry)
	}
	e.Member = m
	return e, nil
}
