package timestamp

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var bucketTokens = []byte("tokens")

// BoltLedger records issued tokens in a bbolt file: key the serial (big
// endian), value a JSON record. Concurrent Record calls share one commit
// (bbolt's Batch), so one fsync covers many tokens. Safe for concurrent use;
// bbolt lets one process at a time open the file.
type BoltLedger struct {
	db *bolt.DB
}

// LedgerEntry is the stored form of Issued.
type LedgerEntry struct {
	Serial  string    `json:"serial"` // hex
	Time    time.Time `json:"genTime"`
	Hash    string    `json:"hashAlgorithm"`
	Imprint []byte    `json:"imprint"`
	Nonce   string    `json:"nonce,omitempty"` // hex
	Policy  string    `json:"policy"`
}

// OpenLedger opens (creating) the ledger at path.
func OpenLedger(path string) (*BoltLedger, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("timestamp: ledger %s is in use by another process", path)
		}
		return nil, fmt.Errorf("timestamp: open ledger: %w", err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketTokens)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("timestamp: open ledger: %w", err)
	}
	db.MaxBatchDelay = 2 * time.Millisecond // group commit: concurrent Records share one fsync
	return &BoltLedger{db: db}, nil
}

// Close closes the file.
func (l *BoltLedger) Close() error { return l.db.Close() }

// Record stores iss durably.
func (l *BoltLedger) Record(ctx context.Context, iss Issued) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e := LedgerEntry{
		Serial:  iss.Serial.Text(16),
		Time:    iss.Time.UTC(),
		Hash:    iss.Hash.String(),
		Imprint: iss.Imprint,
		Policy:  iss.Policy.String(),
	}
	if iss.Nonce != nil {
		e.Nonce = iss.Nonce.Text(16)
	}
	val, err := json.Marshal(e)
	if err != nil {
		return err
	}
	key := iss.Serial.Bytes()
	return l.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b.Get(key) != nil {
			return fmt.Errorf("timestamp: serial %x issued twice", key)
		}
		return b.Put(key, val)
	})
}

// Lookup returns the record of serial, or false.
func (l *BoltLedger) Lookup(serial *big.Int) (LedgerEntry, bool, error) {
	var e LedgerEntry
	var found bool
	err := l.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketTokens).Get(serial.Bytes())
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &e)
	})
	return e, found, err
}

// Count returns the number of recorded tokens.
func (l *BoltLedger) Count() (int, error) {
	var n int
	err := l.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketTokens).Stats().KeyN
		return nil
	})
	return n, err
}

// parseHashName names the imprint algorithms in config and CLI.
func parseHashName(s string) (crypto.Hash, error) {
	switch s {
	case "sha256", "SHA-256":
		return crypto.SHA256, nil
	case "sha384", "SHA-384":
		return crypto.SHA384, nil
	case "sha512", "SHA-512":
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("%w: %q (want sha256, sha384 or sha512)", ErrUnsupportedHash, s)
}

// ParseHashName parses sha256, sha384 or sha512.
func ParseHashName(s string) (crypto.Hash, error) { return parseHashName(s) }

// Check reports whether the ledger can be read (for /healthz).
func (l *BoltLedger) Check() error {
	return l.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketTokens) == nil {
			return errors.New("timestamp: ledger has no tokens bucket")
		}
		return nil
	})
}
