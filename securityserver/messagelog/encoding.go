package messagelog

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/passerelle/passerelle/pki"
)

// formatV1 is the first byte of a version 1 value, UTF-8 JSON (see the
// package documentation for the fields). Values are now written in version
// 2 (formatV2, binary.go); readers dispatch on the first byte.
const formatV1 = 0x01

// maxEncoded bounds a stored value the decoder accepts.
const maxEncoded = 64 << 20

type serviceV1 struct {
	Client  string `json:"client"`
	Code    string `json:"code"`
	Version string `json:"version,omitempty"`
}

type recordV1 struct {
	ID            uint64    `json:"id"`
	MessageID     string    `json:"messageId"`
	Kind          string    `json:"kind"`
	Direction     string    `json:"direction"`
	Side          string    `json:"side"`
	Protocol      string    `json:"protocol"`
	Client        string    `json:"client"`
	Service       serviceV1 `json:"service"`
	Time          time.Time `json:"time"`
	Hash          string    `json:"hash"`
	SignedStorage string    `json:"signedStorage"`
	Signed        []byte    `json:"signed,omitempty"`
	SignedLen     int64     `json:"signedLen"`
	SignerChain   [][]byte  `json:"signerChain,omitempty"`
	OCSP          []byte    `json:"ocsp,omitempty"`
	RequestHash   string    `json:"requestHash,omitempty"`
	Status        int       `json:"status,omitempty"`
	BodyMode      string    `json:"bodyMode"`
	BodyStorage   string    `json:"bodyStorage"`
	Body          []byte    `json:"body,omitempty"`
	BodyLen       int64     `json:"bodyLen"`
	BodyDigest    string    `json:"bodyDigest,omitempty"`
}

type timestampV1 struct {
	Token     []byte    `json:"token"`
	Path      [][]byte  `json:"path,omitempty"`
	BatchSize uint64    `json:"batchSize"`
	Index     uint64    `json:"index"`
	Time      time.Time `json:"time"`
}

type receiptV1 struct {
	Proof []byte `json:"proof"`
	Index uint64 `json:"index"`
}

// encodeRecord encodes r as stored. Blobs whose storage is StoredFile are not
// included: they live in files named by the record id.
func encodeRecord(r *Record) ([]byte, error) {
	v := recordFields(r)
	return marshalRecordV2(&v), nil
}

// recordFields is r as the fields of a stored record (both formats).
func recordFields(r *Record) recordV1 {
	v := recordV1{
		ID:            r.ID,
		MessageID:     r.MessageID,
		Kind:          r.Kind.String(),
		Direction:     r.Direction.String(),
		Side:          r.Side.String(),
		Protocol:      r.Protocol.String(),
		Client:        r.Client.String(),
		Service:       serviceV1{Client: r.Service.Client.String(), Code: r.Service.Code, Version: r.Service.Version},
		Time:          r.Time.UTC(),
		Hash:          r.Hash.String(),
		SignedStorage: r.SignedStorage.String(),
		SignedLen:     r.SignedLen,
		SignerChain:   r.SignerChain,
		OCSP:          r.OCSP,
		Status:        r.Status,
		BodyMode:      r.BodyMode.String(),
		BodyStorage:   r.BodyStorage.String(),
		BodyLen:       r.BodyLen,
	}
	if r.SignedStorage == StoredInline {
		v.Signed = r.Signed
	}
	if r.BodyStorage == StoredInline {
		v.Body = r.Body
	}
	if r.RequestHash != nil {
		v.RequestHash = r.RequestHash.String()
	}
	if r.BodyDigest != nil {
		v.BodyDigest = hex.EncodeToString(r.BodyDigest)
	}
	return v
}

// decodeStored reads a stored value in either format: v1 (JSON) into v
// with unmarshalV1, v2 (binary) with the given decoder.
func decodeStored[T any](data []byte, v *T, v2 func([]byte, *T) error) error {
	if len(data) > 0 && data[0] == formatV2 {
		if len(data) > maxEncoded {
			return fmt.Errorf("%w: value of %d bytes", ErrCorrupt, len(data))
		}
		return v2(data, v)
	}
	return unmarshalV1(data, v)
}

func marshalV1(v any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte(formatV1)
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

func unmarshalV1(data []byte, v any) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty value", ErrCorrupt)
	}
	if len(data) > maxEncoded {
		return fmt.Errorf("%w: value of %d bytes", ErrCorrupt, len(data))
	}
	if data[0] != formatV1 {
		return fmt.Errorf("%w: unknown format version %#x", ErrCorrupt, data[0])
	}
	dec := json.NewDecoder(bytes.NewReader(data[1:]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", ErrCorrupt)
	}
	return nil
}

// decodeRecord parses a stored record. It checks every field it can without
// reading files, including that an inline signed message matches its hash.
func decodeRecord(data []byte) (*Record, error) {
	var v recordV1
	if err := decodeStored(data, &v, unmarshalRecordV2); err != nil {
		return nil, err
	}
	r := &Record{
		ID:          v.ID,
		MessageID:   v.MessageID,
		SignedLen:   v.SignedLen,
		Time:        v.Time.UTC(),
		SignerChain: v.SignerChain,
		OCSP:        v.OCSP,
		Status:      v.Status,
		Body:        v.Body,
		BodyLen:     v.BodyLen,
	}
	var err error
	enum := func(names []string, s, field string) uint8 {
		x, ok := parseName(names, s)
		if !ok && err == nil {
			err = fmt.Errorf("%w: %s %q", ErrCorrupt, field, truncate(s))
		}
		return x
	}
	r.Kind = Kind(enum(kindNames, v.Kind, "kind"))
	r.Direction = Direction(enum(directionNames, v.Direction, "direction"))
	r.Side = Side(enum(sideNames, v.Side, "side"))
	r.Protocol = Protocol(enum(protocolNames, v.Protocol, "protocol"))
	r.BodyMode = BodyMode(enum(bodyModeNames, v.BodyMode, "bodyMode"))
	r.BodyStorage = Storage(enum(storageNames, v.BodyStorage, "bodyStorage"))
	r.SignedStorage = Storage(enum(storageNames, v.SignedStorage, "signedStorage"))
	if err != nil {
		return nil, err
	}
	if r.Client, err = pki.ParseClientID(v.Client); err != nil {
		return nil, fmt.Errorf("%w: client: %w", ErrCorrupt, err)
	}
	if r.Service, err = pki.NewServiceID(strings.Split(v.Service.Client, "/"), v.Service.Code, v.Service.Version); err != nil {
		return nil, fmt.Errorf("%w: service: %w", ErrCorrupt, err)
	}
	if r.Hash, err = parseHash(v.Hash); err != nil {
		return nil, err
	}
	if v.RequestHash != "" {
		h, err := parseHash(v.RequestHash)
		if err != nil {
			return nil, err
		}
		r.RequestHash = &h
	}
	if v.BodyDigest != "" {
		d, err := parseHash(v.BodyDigest)
		if err != nil {
			return nil, err
		}
		r.BodyDigest = d[:]
	}
	if r.SignedLen <= 0 {
		return nil, fmt.Errorf("%w: record %d: signed message length %d", ErrCorrupt, r.ID, r.SignedLen)
	}
	switch r.SignedStorage {
	case StoredInline:
		if int64(len(v.Signed)) != r.SignedLen || HashOf(v.Signed) != r.Hash {
			return nil, fmt.Errorf("%w: record %d: signed message does not match its hash", ErrCorrupt, r.ID)
		}
		r.Signed = v.Signed
	case StoredFile:
		if v.Signed != nil {
			return nil, fmt.Errorf("%w: record %d: signed message both inline and in a file", ErrCorrupt, r.ID)
		}
	default:
		return nil, fmt.Errorf("%w: record %d: no signed message", ErrCorrupt, r.ID)
	}
	if (r.BodyStorage == StoredInline) != (len(v.Body) > 0) {
		return nil, fmt.Errorf("%w: record %d: body storage %s with %d inline bytes", ErrCorrupt, r.ID, r.BodyStorage, len(v.Body))
	}
	if r.BodyLen < 0 || (r.BodyStorage == StoredInline && int64(len(v.Body)) != r.BodyLen) {
		return nil, fmt.Errorf("%w: record %d: body length %d", ErrCorrupt, r.ID, r.BodyLen)
	}
	return r, nil
}

func parseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("%w: hash %q", ErrCorrupt, truncate(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("%w: hash %q", ErrCorrupt, truncate(s))
	}
	return h, nil
}

func encodeTimestamp(t *Timestamp) ([]byte, error) {
	return marshalTimestampV2(&timestampV1{Token: t.Token, Path: t.Path, BatchSize: t.BatchSize, Index: t.Index, Time: t.Time.UTC()}), nil
}

func decodeTimestamp(data []byte) (*Timestamp, error) {
	var v timestampV1
	if err := decodeStored(data, &v, unmarshalTimestampV2); err != nil {
		return nil, err
	}
	if len(v.Token) == 0 {
		return nil, fmt.Errorf("%w: timestamp without token", ErrCorrupt)
	}
	return &Timestamp{Token: v.Token, Path: v.Path, BatchSize: v.BatchSize, Index: v.Index, Time: v.Time.UTC()}, nil
}

func encodeReceipt(r *Receipt) ([]byte, error) {
	return marshalReceiptV2(&receiptV1{Proof: r.Proof, Index: r.Index}), nil
}

func decodeReceipt(data []byte) (*Receipt, error) {
	var v receiptV1
	if err := decodeStored(data, &v, unmarshalReceiptV2); err != nil {
		return nil, err
	}
	if len(v.Proof) == 0 {
		return nil, fmt.Errorf("%w: receipt without proof", ErrCorrupt)
	}
	return &Receipt{Proof: v.Proof, Index: v.Index}, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
