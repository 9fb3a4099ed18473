package messagelog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// cleanupChunk bounds the records examined per write transaction, so that
// Cleanup never holds the writer long against the appends on the hot path.
const cleanupChunk = 256

// testHookSegmentRemove runs just before Cleanup removes segment seq.
var testHookSegmentRemove = func(seq uint64) {}

// CleanupStats counts what a Cleanup did.
type CleanupStats struct {
	Deleted int // records removed
	Kept    int // records past retention kept: not yet timestamped and registered (or unreadable)
	Files   int // blob files removed
}

// Cleanup deletes the records with a time before olderThan, with their
// blob files and attachments, but never a record that is not yet both
// timestamped and registered: those are counted in Kept and stay until a
// later Cleanup finds them complete.
func (l *Log) Cleanup(ctx context.Context, olderThan time.Time) (CleanupStats, error) {
	var st CleanupStats
	cutoff := timeKey(olderThan.UTC())
	var from []byte
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		var files []string
		var segs []uint64
		var done bool
		var deleted, kept int
		var c counters
		var txid int
		l.mu.RLock()
		if l.closed {
			l.mu.RUnlock()
			return st, ErrClosed
		}
		err := l.db.Update(func(tx *bolt.Tx) error {
			files, segs, done, deleted, kept = nil, nil, false, 0, 0
			txid = tx.ID()
			meta := tx.Bucket(bMeta)
			c = readCounters(meta)
			pending := tx.Bucket(bPending)
			cur := tx.Bucket(bTime).Cursor()
			var k []byte
			if from == nil {
				k, _ = cur.First()
			} else {
				k, _ = cur.Seek(from)
			}
			var victims []*Record
			for n := 0; ; n++ {
				if len(k) < 8 || bytes.Compare(k[:8], cutoff) >= 0 {
					done = true
					break
				}
				if n == cleanupChunk {
					from = bytes.Clone(k)
					break
				}
				id := k[8:]
				if pending.Get(id) != nil {
					kept++
				} else if r, err := l.load(tx, bytesToID(id)); err != nil {
					l.log.Error("message log: cleanup: unreadable record kept", "id", bytesToID(id), "err", err)
					kept++
				} else {
					victims = append(victims, r)
				}
				k, _ = cur.Next()
			}
			for _, r := range victims {
				rf, seg, err := l.deleteRecord(tx, r, &c)
				if err != nil {
					return err
				}
				files = append(files, rf...)
				if seg != nil {
					segs = append(segs, *seg)
				}
				deleted++
			}
			return writeCounters(meta, &c)
		})
		l.mu.RUnlock()
		if err != nil {
			return st, storageErr(err)
		}
		l.setState(c, txid)
		l.deleted.Add(uint64(deleted))
		st.Deleted += deleted
		st.Kept += kept
		for _, f := range files {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				l.log.Error("message log: cleanup: removing blob file", "err", err)
				continue
			}
			st.Files++
		}
		for _, seq := range segs {
			if err := l.removeSegment(seq, filepath.Join(l.walDir, segmentName(seq))); err != nil && !errors.Is(err, fs.ErrNotExist) {
				l.log.Error("message log: cleanup: removing segment", "segment", segmentName(seq), "err", err)
				continue
			}
			st.Files++
		}
		if done {
			return st, nil
		}
	}
}

// removeSegment removes segment seq's file (at path) once its last record
// is deleted. Its read handle is closed and the file removed under segMu, so
// that a reader with an older snapshot cannot reopen it in between and keep
// it open (its space in use, uncounted, until Close): it finds it gone.
func (l *Log) removeSegment(seq uint64, path string) error {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	if f, ok := l.segFiles[seq]; ok {
		f.Close()
		delete(l.segFiles, seq)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	testHookSegmentRemove(seq)
	if err := os.Remove(path); err != nil {
		return err
	}
	l.segBytes.Add(-fi.Size())
	if err := os.Remove(endMarkerPath(l.walDir, seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// deleteRecord removes r, its index entries and, when no other record has
// its hash, its attachments. It returns the blob files, and the segment
// whose last record it was (if it may go), to remove once the transaction
// has committed.
func (l *Log) deleteRecord(tx *bolt.Tx, r *Record, c *counters) ([]string, *uint64, error) {
	key := u64(r.ID)
	var files []string
	var gone *uint64
	enc := tx.Bucket(bRecords).Get(key)
	if seq, _, n, ok := parseRef(enc); ok {
		c.DBBytes -= min(c.DBBytes, uint64(n))
		// The segment goes with its last record, once nothing more can be
		// applied to it (it is before the applied position).
		segs := tx.Bucket(bSegments)
		live := getU64(segs, u64(seq))
		if live > 1 {
			if err := segs.Put(u64(seq), u64(live-1)); err != nil {
				return nil, nil, err
			}
		} else {
			if err := segs.Delete(u64(seq)); err != nil {
				return nil, nil, err
			}
			if applied, _ := getApplied(tx.Bucket(bMeta)); seq < applied {
				gone = &seq
			}
		}
	} else {
		c.DBBytes -= min(c.DBBytes, uint64(len(enc)))
	}
	dels := []struct {
		b []byte
		k []byte
	}{
		{bRecords, key},
		{bMsgID, msgIDKey(r.MessageID, r.ID)},
		{bHash, cat(r.Hash[:], key)},
		{bTime, cat(timeKey(r.Time), key)},
	}
	for _, d := range dels {
		if err := tx.Bucket(d.b).Delete(d.k); err != nil {
			return nil, nil, err
		}
	}
	// The record's attachments; those stored under the hash (before
	// version 2) go with the last record of that hash.
	keys := [][]byte{key}
	if len(idsWithPrefix(tx.Bucket(bHash), r.Hash[:])) == 0 {
		keys = append(keys, r.Hash[:])
	}
	for _, k := range keys {
		n, err := deleteStamp(tx, k)
		if err != nil {
			return nil, nil, err
		}
		c.DBBytes -= min(c.DBBytes, uint64(n))
		bk := tx.Bucket(bReceipts)
		if v := bk.Get(k); v != nil {
			c.DBBytes -= min(c.DBBytes, uint64(len(v)))
			if err := bk.Delete(k); err != nil {
				return nil, nil, err
			}
		}
	}
	c.Records--
	if r.SignedStorage == StoredFile {
		files = append(files, l.blobPath(r.ID, "signed"))
		c.FileBytes -= min(c.FileBytes, uint64(r.SignedLen))
	}
	if r.BodyStorage == StoredFile {
		files = append(files, l.blobPath(r.ID, "body"))
		c.FileBytes -= min(c.FileBytes, uint64(r.BodyLen))
	}
	return files, gone, nil
}

func bytesToID(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}
