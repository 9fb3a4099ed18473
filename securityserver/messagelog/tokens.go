package messagelog

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Timestamp tokens are shared: one RFC 3161 token covers a whole Merkle
// batch of message hashes, so the stamps bucket keeps, per hash, only its
// audit path and a reference to the token, which the tokens bucket holds
// once with a count of the stamps that refer to it:
//
//	stamps:  hash → stampRefTag ‖ SHA-256(token) ‖ the timestamp encoded without its token
//	tokens:  SHA-256(token) → uint64 references ‖ token
//
// (A stamps value that starts with a format byte holds its token itself.)
const stampRefTag = 0x11

var bTokens = []byte("tokens")

// putStamp stores ts for hash h and returns the bytes it added.
func putStamp(tx *bolt.Tx, h Hash, ts *Timestamp) (int, error) {
	d := sha256.Sum256(ts.Token)
	tokens := tx.Bucket(bTokens)
	added := 0
	refs := uint64(1)
	if v := tokens.Get(d[:]); len(v) > 8 {
		refs += binary.BigEndian.Uint64(v)
		// Rewrite only the count: the token is the same bytes.
		nv := make([]byte, len(v))
		copy(nv, v)
		binary.BigEndian.PutUint64(nv, refs)
		if err := tokens.Put(d[:], nv); err != nil {
			return 0, err
		}
	} else {
		if err := tokens.Put(d[:], append(u64(refs), ts.Token...)); err != nil {
			return 0, err
		}
		added += 8 + len(ts.Token)
	}
	rest := marshalTimestampV2(&timestampV1{Path: ts.Path, BatchSize: ts.BatchSize, Index: ts.Index, Time: ts.Time.UTC()})
	v := make([]byte, 0, 1+len(d)+len(rest))
	v = append(append(append(v, stampRefTag), d[:]...), rest...)
	if err := tx.Bucket(bStamps).Put(h[:], v); err != nil {
		return 0, err
	}
	return added + len(v), nil
}

// getStamp decodes a stamps value, joining its token.
func getStamp(tx *bolt.Tx, v []byte) (*Timestamp, error) {
	if len(v) == 0 || v[0] != stampRefTag {
		return decodeTimestamp(v)
	}
	if len(v) < 1+sha256.Size+1 {
		return nil, fmt.Errorf("%w: timestamp reference of %d bytes", ErrCorrupt, len(v))
	}
	tok := tx.Bucket(bTokens).Get(v[1 : 1+sha256.Size])
	if len(tok) <= 8 {
		return nil, fmt.Errorf("%w: timestamp token %x missing", ErrCorrupt, v[1:1+sha256.Size])
	}
	var t timestampV1
	if err := unmarshalTimestampV2(v[1+sha256.Size:], &t); err != nil {
		return nil, err
	}
	return &Timestamp{Token: append([]byte(nil), tok[8:]...), Path: t.Path, BatchSize: t.BatchSize, Index: t.Index, Time: t.Time.UTC()}, nil
}

// deleteStamp removes the stamp of h (if any), and its token with its last
// reference, and returns the bytes it freed.
func deleteStamp(tx *bolt.Tx, h Hash) (int, error) {
	stamps := tx.Bucket(bStamps)
	v := stamps.Get(h[:])
	if v == nil {
		return 0, nil
	}
	freed := len(v)
	if v[0] == stampRefTag && len(v) > 1+sha256.Size {
		d := append([]byte(nil), v[1:1+sha256.Size]...)
		tokens := tx.Bucket(bTokens)
		if tv := tokens.Get(d); len(tv) > 8 {
			if refs := binary.BigEndian.Uint64(tv); refs > 1 {
				nv := append([]byte(nil), tv...)
				binary.BigEndian.PutUint64(nv, refs-1)
				if err := tokens.Put(d, nv); err != nil {
					return 0, err
				}
			} else {
				freed += len(tv)
				if err := tokens.Delete(d); err != nil {
					return 0, err
				}
			}
		}
	}
	return freed, stamps.Delete(h[:])
}
