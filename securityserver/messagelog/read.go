package messagelog

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/passerelle/passerelle/pki"
)

// view runs fn in a read transaction, refusing after Close.
func (l *Log) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// See every acknowledged append. A stuck applier answers at once with
	// its failure: the reader then sees what is applied.
	if err := l.sync(ctx); errors.Is(err, ErrClosed) || ctx.Err() != nil {
		return cmp.Or(ctx.Err(), err)
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	return l.db.View(fn)
}

// load decodes record id (from its segment) and joins its attachments. It
// does not read blob files.
func (l *Log) load(tx *bolt.Tx, id uint64) (*Record, error) {
	v := tx.Bucket(bRecords).Get(u64(id))
	if v == nil {
		return nil, fmt.Errorf("%w: record %d", ErrNotFound, id)
	}
	v, err := l.recordBytes(v)
	if err != nil {
		return nil, err
	}
	r, err := decodeRecord(v)
	if err != nil {
		return nil, err
	}
	if r.ID != id {
		return nil, fmt.Errorf("%w: record %d stored under id %d", ErrCorrupt, r.ID, id)
	}
	if v := attachmentOf(tx, bStamps, id, r.Hash); v != nil {
		if r.Timestamp, err = getStamp(tx, v); err != nil {
			return nil, err
		}
	}
	if v := attachmentOf(tx, bReceipts, id, r.Hash); v != nil {
		if r.Receipt, err = decodeReceipt(v); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// loadSigned reads a signed message stored in a file and checks its hash.
func (l *Log) loadSigned(r *Record) error {
	if r.SignedStorage != StoredFile {
		return nil
	}
	b, err := os.ReadFile(l.blobPath(r.ID, "signed"))
	if err != nil {
		return fmt.Errorf("%w: record %d: signed message file: %w", ErrCorrupt, r.ID, err)
	}
	if int64(len(b)) != r.SignedLen || HashOf(b) != r.Hash {
		return fmt.Errorf("%w: record %d: signed message file does not match its hash", ErrCorrupt, r.ID)
	}
	r.Signed = b
	return nil
}

// Get returns record id, with its signed message (read from its file if
// stored there) and attachments. The body is set only when stored inline;
// see OpenBody.
func (l *Log) Get(ctx context.Context, id uint64) (*Record, error) {
	var r *Record
	err := l.view(ctx, func(tx *bolt.Tx) (err error) {
		r, err = l.load(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, l.loadSigned(r)
}

func (l *Log) getMany(ctx context.Context, b []byte, prefix []byte, keep func(*Record) bool) ([]*Record, error) {
	var out []*Record
	err := l.view(ctx, func(tx *bolt.Tx) error {
		for _, id := range idsWithPrefix(tx.Bucket(b), prefix) {
			r, err := l.load(tx, id)
			if err != nil {
				return err
			}
			if keep == nil || keep(r) {
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, r := range out {
		if err := l.loadSigned(r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ByHash returns the records of a signed message, in id order: usually one,
// two when this server both sent and received it.
func (l *Log) ByHash(ctx context.Context, h Hash) ([]*Record, error) {
	return l.getMany(ctx, bHash, h[:], nil)
}

// ByMessageID returns the records with an X-Road message id, in id order:
// the request and the response of an exchange, as sent and/or received.
// Message ids are chosen by clients and need not be unique: a non-zero
// client narrows the result to that client's exchanges.
func (l *Log) ByMessageID(ctx context.Context, messageID string, client pki.ClientID) ([]*Record, error) {
	var keep func(*Record) bool
	if !client.IsZero() {
		keep = func(r *Record) bool { return r.Client == client }
	}
	return l.getMany(ctx, bMsgID, msgIDPrefix(messageID), keep)
}

// List returns up to limit records with ids greater than after, in id order,
// for browsing: pass the last id returned to get the next page. Signed is nil
// for records whose signed message is in a file (use Get). Ids are reserved
// when an Append starts, so a record may become visible after a page with
// higher ids was read.
func (l *Log) List(ctx context.Context, after uint64, limit int) ([]*Record, error) {
	if limit <= 0 {
		limit = 30
	}
	var out []*Record
	err := l.view(ctx, func(tx *bolt.Tx) error {
		if after == ^uint64(0) {
			return nil
		}
		c := tx.Bucket(bRecords).Cursor()
		k, _ := c.Seek(u64(after + 1))
		for ; k != nil && len(out) < limit; k, _ = c.Next() {
			r, err := l.load(tx, binary.BigEndian.Uint64(k))
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// OpenBody opens the stored body of r (inline or in a file). ErrNoBody when
// only metadata was kept or the body was empty.
func (l *Log) OpenBody(ctx context.Context, r *Record) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch r.BodyStorage {
	case StoredInline:
		return io.NopCloser(bytes.NewReader(r.Body)), nil
	case StoredFile:
		f, err := os.Open(l.blobPath(r.ID, "body"))
		if err != nil {
			return nil, fmt.Errorf("%w: record %d: body file: %w", ErrCorrupt, r.ID, err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("%w: record %d", ErrNoBody, r.ID)
}

// PendingEntry is a record still waiting for its timestamp or receipt.
type PendingEntry struct {
	ID             uint64
	Hash           Hash
	Time           time.Time // the record's time: how long it has waited
	NeedsTimestamp bool
	NeedsReceipt   bool
}

// pendingPage bounds the entries read per read transaction, so that a long
// listing never holds a transaction open against the writers.
const pendingPage = 1024

// Pending calls fn for every record not yet timestamped or not yet
// registered, in id order. It reads in pages of short transactions; records
// appended meanwhile may or may not be seen. Used at start-up to re-feed the
// timestamp batcher and the registry outbox.
func (l *Log) Pending(ctx context.Context, fn func(PendingEntry) error) error {
	var after []byte
	for {
		var page []PendingEntry
		err := l.view(ctx, func(tx *bolt.Tx) error {
			c := tx.Bucket(bPending).Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.First()
			} else if k, v = c.Seek(after); bytes.Equal(k, after) {
				k, v = c.Next()
			}
			for ; k != nil && len(page) < pendingPage; k, v = c.Next() {
				if len(k) != 8 || len(v) != 1+len(Hash{})+8 {
					return fmt.Errorf("%w: pending entry %x", ErrCorrupt, k)
				}
				e := PendingEntry{
					ID:             binary.BigEndian.Uint64(k),
					Time:           timeFromKey(v[1+len(Hash{}):]),
					NeedsTimestamp: v[0]&needTimestamp != 0,
					NeedsReceipt:   v[0]&needReceipt != 0,
				}
				copy(e.Hash[:], v[1:])
				page = append(page, e)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < pendingPage {
			return nil
		}
		after = u64(page[len(page)-1].ID)
	}
}

// Stats are the numbers the server exports as metrics.
type Stats struct {
	Records          uint64 // records stored
	PendingTimestamp uint64 // records without a timestamp
	PendingReceipt   uint64 // records without a registry receipt
	DBBytes          uint64 // encoded record and attachment bytes in the database (not reclaimed pages)
	FileBytes        uint64 // bytes in blob files
	DBFileSize       int64  // size of the database file

	// Since Open:
	Appended       uint64        // records appended
	AppendFailures uint64        // Appends that failed (invalid, storage, cancelled)
	Commits        uint64        // group writes of the committer to the segments (one fdatasync each)
	CommittedOps   uint64        // appends in those; CommittedOps/Commits is the mean group
	CommitTime     time.Duration // total time in those writes, fdatasync included
	IndexCommits   uint64        // database transactions of the applier
	IndexedOps     uint64        // appends and attachments in those
	IndexTime      time.Duration // total time in those transactions
	Deleted        uint64        // records removed by Cleanup
}

// Stats returns current counts; cheap, no I/O but a stat of the database file.
func (l *Log) Stats() Stats {
	l.sync(context.Background()) // count what is acknowledged; fails only when closed
	l.stateMu.Lock()
	c := l.state
	l.stateMu.Unlock()
	s := Stats{
		Records:          c.Records,
		PendingTimestamp: c.PendingTS,
		PendingReceipt:   c.PendingReceipt,
		DBBytes:          c.DBBytes,
		FileBytes:        c.FileBytes,
		Appended:         l.appended.Load(),
		AppendFailures:   l.appendFailures.Load(),
		Commits:          l.commits.Load(),
		CommittedOps:     l.committedOps.Load(),
		CommitTime:       time.Duration(l.commitNanos.Load()),
		IndexCommits:     l.indexCommits.Load(),
		IndexedOps:       l.indexedOps.Load(),
		IndexTime:        time.Duration(l.indexNanos.Load()),
		Deleted:          l.deleted.Load(),
	}
	if fi, err := os.Stat(l.db.Path()); err == nil {
		s.DBFileSize = fi.Size()
	}
	return s
}
