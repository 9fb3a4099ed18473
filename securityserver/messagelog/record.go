package messagelog

import (
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/passerelle/passerelle/pki"
)

// Kind says whether a record is a request or a response.
type Kind uint8

// Kinds.
const (
	KindRequest Kind = iota + 1
	KindResponse
)

// Direction says whether this security server sent or received the message.
type Direction uint8

// Directions.
const (
	Sent Direction = iota + 1
	Received
)

// Side says which role of the security server logged the message: the
// consumer side (serving the institution's own client systems) or the
// provider side (serving other security servers).
type Side uint8

// Sides.
const (
	Consumer Side = iota + 1
	Provider
)

// Protocol is the client-facing message protocol of the exchange.
type Protocol uint8

// Protocols.
const (
	REST Protocol = iota + 1
	SOAP
)

// BodyMode is the per-service body logging policy, chosen per call.
type BodyMode uint8

// Body modes. The zero value is [BodyFull].
const (
	// BodyFull stores the body (inline below the threshold, in a file above).
	BodyFull BodyMode = iota
	// BodyMetadataOnly keeps only the body's length and SHA-256 digest.
	BodyMetadataOnly
)

// Storage says where a blob (the body or the signed message) of a stored
// record lives.
type Storage uint8

// Storages.
const (
	StoredNone   Storage = iota // nothing stored (metadata-only, or empty)
	StoredInline                // in the database record
	StoredFile                  // in a file beside the database
)

var (
	kindNames      = []string{KindRequest: "request", KindResponse: "response"}
	directionNames = []string{Sent: "sent", Received: "received"}
	sideNames      = []string{Consumer: "consumer", Provider: "provider"}
	protocolNames  = []string{REST: "rest", SOAP: "soap"}
	bodyModeNames  = []string{BodyFull: "full", BodyMetadataOnly: "metadata"}
	storageNames   = []string{StoredNone: "none", StoredInline: "inline", StoredFile: "file"}
)

func name(names []string, v uint8) string {
	if int(v) < len(names) && names[v] != "" {
		return names[v]
	}
	return fmt.Sprintf("invalid(%d)", v)
}

func parseName(names []string, s string) (uint8, bool) {
	for i, n := range names {
		if n != "" && n == s {
			return uint8(i), true
		}
	}
	return 0, false
}

func (k Kind) String() string      { return name(kindNames, uint8(k)) }
func (d Direction) String() string { return name(directionNames, uint8(d)) }
func (s Side) String() string      { return name(sideNames, uint8(s)) }
func (p Protocol) String() string  { return name(protocolNames, uint8(p)) }
func (m BodyMode) String() string  { return name(bodyModeNames, uint8(m)) }
func (s Storage) String() string   { return name(storageNames, uint8(s)) }

// Hash is the SHA-256 hash of a signed message as exchanged: the key under
// which the message is timestamped and appended to the hash registry.
type Hash [sha256.Size]byte

// HashOf returns the hash of a signed message.
func HashOf(signed []byte) Hash { return sha256.Sum256(signed) }

// ParseHash parses a hash in hex (as [Hash.String] prints it).
func ParseHash(s string) (Hash, error) {
	h, err := parseHash(s)
	if err != nil {
		return Hash{}, fmt.Errorf("%w: hash must be %d hex digits", ErrInvalid, 2*len(h))
	}
	return h, nil
}

// String returns the hash in lower-case hex.
func (h Hash) String() string { return fmt.Sprintf("%x", h[:]) }

// Record is one message sent or received by this security server.
//
// Fields marked "set by Append" are ignored on input and filled in on output.
type Record struct {
	ID        uint64 // internal record id; set by Append
	MessageID string // X-Road message id (X-Road-Id / messageId); required
	Kind      Kind
	Direction Direction
	Side      Side
	Protocol  Protocol
	Client    pki.ClientID  // the X-Road client of the exchange; required
	Service   pki.ServiceID // the X-Road service of the exchange; required
	Time      time.Time     // when the message was sent or received; UTC; Append sets now if zero

	// Signed is the signed message exactly as exchanged: for REST the compact
	// JWS, for SOAP the signed envelope bytes. Required.
	Signed []byte
	// SignedLen is len(Signed); set by Append.
	SignedLen int64
	// Hash is SHA-256(Signed). Set by Append; if set on input it must match.
	Hash Hash
	// SignerChain is the signer's certificate chain, DER, leaf first.
	SignerChain [][]byte
	// OCSP is the signer's OCSP response (DER) that travelled with the message.
	OCSP []byte
	// RequestHash, for a response, is the Hash of the request it answers.
	RequestHash *Hash
	// Status is the HTTP status of a response; 0 for a request.
	Status int

	// BodyMode selects full or metadata-only body logging for this call.
	BodyMode BodyMode
	// Body is the message body. On input, with BodyFull it is stored; with
	// BodyMetadataOnly only its length and digest are kept. On output it is
	// set only when the body is stored inline (see BodyStorage and
	// [Log.OpenBody]).
	Body []byte
	// BodyLen and BodyDigest (SHA-256) describe the body. Set by Append from
	// Body; with BodyMetadataOnly and a nil Body, the caller may supply them.
	BodyLen    int64
	BodyDigest []byte

	// BodyStorage and SignedStorage say where the blobs live; set by Append.
	BodyStorage   Storage
	SignedStorage Storage

	// Timestamp and Receipt are attached later; ignored by Append.
	Timestamp *Timestamp
	Receipt   *Receipt
}

// Timestamp is the RFC 3161 evidence for a message hash: one token per
// Merkle batch of hashes, plus this hash's audit path in that batch. The
// bytes are opaque to the message log.
type Timestamp struct {
	Token     []byte    // DER TimeStampToken (CMS ContentInfo)
	Path      [][]byte  // Merkle audit path from the leaf to the batch root
	BatchSize uint64    // number of hashes in the batch
	Index     uint64    // this hash's index in the batch
	Time      time.Time // the token's genTime (UTC), for display
}

// Receipt is the hash registry's evidence that a message hash was appended.
type Receipt struct {
	Proof []byte // C2SP tlog-proof bytes (opaque to the message log)
	Index uint64 // leaf index in the registry
}

// Timestamped reports whether a timestamp is attached.
func (r *Record) Timestamped() bool { return r.Timestamp != nil }

// Registered reports whether a registry receipt is attached.
func (r *Record) Registered() bool { return r.Receipt != nil }

// maxMessageIDLen bounds the X-Road message id we index.
const maxMessageIDLen = 1024

// validate checks the caller-supplied fields of a record to append.
func (r *Record) validate() error {
	switch {
	case r.MessageID == "":
		return fmt.Errorf("%w: message id is empty", ErrInvalid)
	case len(r.MessageID) > maxMessageIDLen:
		return fmt.Errorf("%w: message id longer than %d bytes", ErrInvalid, maxMessageIDLen)
	case r.Kind != KindRequest && r.Kind != KindResponse:
		return fmt.Errorf("%w: kind %s", ErrInvalid, r.Kind)
	case r.Direction != Sent && r.Direction != Received:
		return fmt.Errorf("%w: direction %s", ErrInvalid, r.Direction)
	case r.Side != Consumer && r.Side != Provider:
		return fmt.Errorf("%w: side %s", ErrInvalid, r.Side)
	case r.Protocol != REST && r.Protocol != SOAP:
		return fmt.Errorf("%w: protocol %s", ErrInvalid, r.Protocol)
	case r.BodyMode != BodyFull && r.BodyMode != BodyMetadataOnly:
		return fmt.Errorf("%w: body mode %s", ErrInvalid, r.BodyMode)
	case r.Client.IsZero():
		return fmt.Errorf("%w: client id is empty", ErrInvalid)
	case r.Service.Client.IsZero() || r.Service.Code == "":
		return fmt.Errorf("%w: service id is empty", ErrInvalid)
	case len(r.Signed) == 0:
		return fmt.Errorf("%w: signed message is empty", ErrInvalid)
	case r.Kind == KindResponse && (r.Status < 100 || r.Status > 599):
		return fmt.Errorf("%w: response status %d", ErrInvalid, r.Status)
	case r.Kind == KindRequest && r.Status != 0:
		return fmt.Errorf("%w: request with status %d", ErrInvalid, r.Status)
	case r.BodyDigest != nil && len(r.BodyDigest) != sha256.Size:
		return fmt.Errorf("%w: body digest is %d bytes, want %d", ErrInvalid, len(r.BodyDigest), sha256.Size)
	case r.BodyLen < 0:
		return fmt.Errorf("%w: negative body length", ErrInvalid)
	}
	return nil
}

// setHash sets r.Hash to the hash of r.Signed, checking a hash the caller
// supplied.
func (r *Record) setHash() error {
	h := HashOf(r.Signed)
	if r.Hash != (Hash{}) && r.Hash != h {
		return fmt.Errorf("%w: hash is not SHA-256 of the signed message", ErrInvalid)
	}
	r.Hash = h
	return nil
}
