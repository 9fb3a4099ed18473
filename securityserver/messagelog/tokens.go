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
//	stamps:  record id → stampRefTag ‖ SHA-256(token) ‖ the timestamp encoded without its token
//	tokens:  SHA-256(token) → uint64 references ‖ token
//
// (A stamps value that starts with a format byte holds its token itself.)
const stampRefTag = 0x11

var bTokens = []byte("tokens")

// putStamp stores ts under key in the stamps bucket and returns the bytes
// it added.
func putStamp(tx *bolt.Tx, key []byte, ts *Timestamp) (int, error) {
	d := sha256.Sum256(ts.Token)
	added, err := refToken(tx, d[:], ts.Token)
	if err != nil {
		return 0, err
	}
	rest := marshalTimestampV2(&timestampV1{Path: ts.Path, BatchSize: ts.BatchSize, Index: ts.Index, Time: ts.Time.UTC()})
	v := make([]byte, 0, 1+len(d)+len(rest))
	v = append(append(append(v, stampRefTag), d[:]...), rest...)
	if err := tx.Bucket(bStamps).Put(key, v); err != nil {
		return 0, err
	}
	return added + len(v), nil
}

// refToken counts one more reference to token d, storing the token (when
// given) if it is new, and returns the bytes it added.
func refToken(tx *bolt.Tx, d, token []byte) (int, error) {
	tokens := tx.Bucket(bTokens)
	if v := tokens.Get(d); len(v) > 8 {
		// Rewrite only the count: the token is the same bytes.
		nv := make([]byte, len(v))
		copy(nv, v)
		binary.BigEndian.PutUint64(nv, binary.BigEndian.Uint64(v)+1)
		return 0, tokens.Put(d, nv)
	}
	if token == nil {
		return 0, fmt.Errorf("%w: timestamp token %x missing", ErrCorrupt, d)
	}
	return 8 + len(token), tokens.Put(d, append(u64(1), token...))
}

// copyStamp stores a stamps value v (read from another record with the same
// hash) under key, and returns the bytes it added.
func copyStamp(tx *bolt.Tx, key, v []byte) (int, error) {
	if len(v) > 1+sha256.Size && v[0] == stampRefTag {
		if _, err := refToken(tx, v[1:1+sha256.Size], nil); err != nil {
			return 0, err
		}
	}
	return len(v), tx.Bucket(bStamps).Put(key, append([]byte(nil), v...))
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

// deleteStamp removes the stamp under key (if any), and its token with its
// last reference, and returns the bytes it freed.
func deleteStamp(tx *bolt.Tx, key []byte) (int, error) {
	stamps := tx.Bucket(bStamps)
	v := stamps.Get(key)
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
	return freed, stamps.Delete(key)
}
