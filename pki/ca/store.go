package ca

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// DefaultLockTimeout is how long a transaction waits for the database file
// lock held by another process (a running `ca serve`, an admin command).
const DefaultLockTimeout = 5 * time.Second

// ErrBusy reports that another process held the database for longer than the
// lock timeout.
var ErrBusy = errors.New("ca: certificate database busy (locked by another process)")

var (
	bucketMeta        = []byte("meta")
	bucketCerts       = []byte("certs")
	bucketEnrollments = []byte("enrollments")
	bucketAudit       = []byte("audit")
	allBuckets        = [][]byte{bucketMeta, bucketCerts, bucketEnrollments, bucketAudit}
)

// store is the bbolt certificate database. It opens the file only for the
// duration of one transaction, so that several processes (a running
// `ca serve` and the administrator's commands) share it: bbolt takes an
// exclusive file lock for writers and a shared one for readers.
type store struct {
	path    string
	timeout time.Duration
	mu      sync.RWMutex // queues this process's transactions before the file lock
}

// tx is one transaction over the certificate database.
type tx struct{ b *bolt.Tx }

func (s *store) open(ctx context.Context, readOnly bool) (*bolt.DB, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	timeout := s.timeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: readOnly})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrBusy, s.path)
	}
	if err != nil {
		return nil, fmt.Errorf("ca: open certificate database: %w", err)
	}
	return db, nil
}

// update runs fn in a read-write transaction, committed when fn returns nil.
func (s *store) update(ctx context.Context, fn func(*tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	db, err := s.open(ctx, false)
	if err != nil {
		return err
	}
	err = db.Update(func(b *bolt.Tx) error { return fn(&tx{b}) })
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("ca: close certificate database: %w", cerr)
	}
	return err
}

// view runs fn in a read-only transaction.
func (s *store) view(ctx context.Context, fn func(*tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	db, err := s.open(ctx, true)
	if err != nil {
		return err
	}
	err = db.View(func(b *bolt.Tx) error { return fn(&tx{b}) })
	db.Close()
	return err
}

// create makes a new database with its buckets; it fails if one exists.
func createStore(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: DefaultLockTimeout})
	if err != nil {
		return fmt.Errorf("ca: create certificate database: %w", err)
	}
	err = db.Update(func(b *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := b.CreateBucket(name); err != nil {
				return fmt.Errorf("ca: create bucket %s: %w", name, err)
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

func (t *tx) bucket(name []byte) (*bolt.Bucket, error) {
	b := t.b.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("ca: certificate database has no %q bucket (not made by ca init?)", name)
	}
	return b, nil
}

func (t *tx) get(bucket []byte, key string, v any) (bool, error) {
	b, err := t.bucket(bucket)
	if err != nil {
		return false, err
	}
	data := b.Get([]byte(key))
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("ca: corrupt %s record %q: %w", bucket, key, err)
	}
	return true, nil
}

func (t *tx) put(bucket []byte, key string, v any) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

// each calls fn with every record of bucket, in key order, decoded by decode.
func (t *tx) each(bucket []byte, fn func(k, v []byte) error) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	return b.ForEach(fn)
}

// audit appends rec to the append-only audit log, numbering it.
func (t *tx) audit(rec AuditRecord) error {
	b, err := t.bucket(bucketAudit)
	if err != nil {
		return err
	}
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	rec.Seq = seq
	if rec.Time.IsZero() {
		rec.Time = time.Now().UTC()
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], seq)
	return b.Put(key[:], data)
}
