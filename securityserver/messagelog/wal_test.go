package messagelog

import (
	"bytes"
	"context"
	"time"

	"errors"
	"fmt"
	bolt "go.etcd.io/bbolt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// walFrames prepares records as Append would (ids, blob files, encoding)
// and writes them to a new write-ahead log segment in dir, as a committer
// that crashed before the applier ran would leave them.
func walFrames(t *testing.T, dir string, seq uint64, recs ...Record) (ids []uint64, payloads [][]byte) {
	t.Helper()
	l := openLog(t, Config{Dir: dir, InlineThreshold: 100})
	for _, r := range recs {
		o, _, err := l.prepare(&r, bytesReader(r.Body))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, o.id)
		payloads = append(payloads, o.enc)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	w, err := openWAL(filepath.Join(dir, walDirName), seq)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	if err := w.write(payloads, make([]int64, len(payloads))); err != nil {
		t.Fatal(err)
	}
	return ids, payloads
}

func TestWALReplay(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, Config{Dir: dir})
	before := mustAppend(t, l, request(0, 50, 10))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Records 1 and 2 reached the write-ahead log only (record 2 has its
	// body in a blob file); then a torn frame, as a crash mid-write leaves.
	ids, payloads := walFrames(t, dir, 7, request(1, 50, 10), request(2, 50, 500))
	seg := filepath.Join(dir, walDirName, segmentName(7))
	f, err := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	frame := append([]byte{0, 0, 1, 0, 1, 2, 3, 4}, payloads[0][:40]...)
	if _, err := f.Write(frame); err != nil {
		t.Fatal(err)
	}
	f.Close()

	l = openLog(t, Config{Dir: dir, InlineThreshold: 100})
	for i, id := range append([]uint64{before}, ids...) {
		r, err := l.Get(t.Context(), id)
		if err != nil || r.MessageID != request(i, 0, 0).MessageID {
			t.Fatalf("Get(%d) after replay = %v, %v", id, r, err)
		}
	}
	r, _ := l.Get(t.Context(), ids[1])
	if got := readBody(t, l, r); string(got) != string(request(2, 50, 500).Body) {
		t.Errorf("replayed record's blob body = %q", got)
	}
	if st := l.Stats(); st.Records != 3 || st.PendingTimestamp != 3 {
		t.Errorf("Stats() after replay = %+v, want 3 records, 3 pending", st)
	}
	// The segments hold the records: both stay.
	if seqs, _ := segments(filepath.Join(dir, walDirName)); len(seqs) != 2 || seqs[1] != 7 {
		t.Errorf("segments after replay = %v, want [0 7]", seqs)
	}
	// New appends get new ids and a new segment (not after the torn frame).
	if id := mustAppend(t, l, request(3, 50, 10)); id <= ids[1] {
		t.Errorf("id after replay = %d, want > %d", id, ids[1])
	}
	if l.nextSeg != 9 {
		t.Errorf("next segment = %d, want 9 (8 is in use)", l.nextSeg)
	}
}

func TestWALReplayIdempotent(t *testing.T) {
	dir := t.TempDir()
	ids, _ := walFrames(t, dir, 1, request(1, 50, 10))
	l := openLog(t, Config{Dir: dir})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The applied position is lost (as if the crash came between applying
	// and recording it): replaying the same frames must not duplicate.
	db, err := bolt.Open(filepath.Join(dir, dbFileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Delete(kApplied) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	l = openLog(t, Config{Dir: dir})
	if st := l.Stats(); st.Records != 1 {
		t.Errorf("Stats().Records after replaying twice = %d, want 1", st.Records)
	}
	if _, err := l.Get(t.Context(), ids[0]); err != nil {
		t.Error(err)
	}
}

func TestWALReplaySkipsRecordWithoutBlob(t *testing.T) {
	dir := t.TempDir()
	ids, _ := walFrames(t, dir, 1, request(1, 50, 10), request(2, 50, 500))
	// Record 2's append failed after its frame reached the disk: its blob
	// file was removed and it was never acknowledged.
	if err := os.Remove(filepath.Join(dir, blobDirName, fmt.Sprintf("%016x.body", ids[1]))); err != nil {
		t.Fatal(err)
	}
	l := openLog(t, Config{Dir: dir, InlineThreshold: 100})
	if _, err := l.Get(t.Context(), ids[0]); err != nil {
		t.Errorf("Get(record 1) = %v", err)
	}
	if _, err := l.Get(t.Context(), ids[1]); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(record without its blob) = %v, want ErrNotFound", err)
	}
}

func TestWALReplayCorruptRecord(t *testing.T) {
	dir := t.TempDir()
	walFrames(t, dir, 1)
	w, err := openWAL(filepath.Join(dir, walDirName), 2)
	if err != nil {
		t.Fatal(err)
	}
	// An intact frame (its CRC matches) that is not a record: fail closed.
	if err := w.write([][]byte{[]byte("\x01{\"bogus\":true}")}, make([]int64, 1)); err != nil {
		t.Fatal(err)
	}
	w.close()
	if l, err := Open(t.Context(), Config{Dir: dir}); !errors.Is(err, ErrCorrupt) {
		if l != nil {
			l.Close()
		}
		t.Fatalf("Open with a corrupt write-ahead log record = %v, want ErrCorrupt", err)
	}
}

// TestWALWriteFailure: a failed fdatasync refuses the group (ErrStorage),
// the refused record is never found, not even after a restart, and the
// next appends go to a new segment.
func TestWALWriteFailure(t *testing.T) {
	dir := t.TempDir()
	// The hook is set before the log opens and restored after it closes
	// (cleanups run last-registered first): the filler calls it too.
	var fail atomic.Bool
	orig := fdatasync
	fdatasync = func(f *os.File) error {
		if fail.Load() {
			return syscall.EIO
		}
		return orig(f)
	}
	t.Cleanup(func() { fdatasync = orig })
	l := openLog(t, Config{Dir: dir})
	ok1 := mustAppend(t, l, request(1, 50, 10))
	fail.Store(true)
	if _, err := l.Append(t.Context(), request(2, 50, 10)); !errors.Is(err, ErrStorage) {
		t.Fatalf("Append with a failing disk = %v, want ErrStorage", err)
	}
	fail.Store(false)
	ok3 := mustAppend(t, l, request(3, 50, 10))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, Config{Dir: dir})
	recs, err := l.List(t.Context(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.MessageID)
	}
	if len(recs) != 2 || recs[0].ID != ok1 || recs[1].ID != ok3 {
		t.Errorf("records after a refused append and a restart = %v, want msg-1 and msg-3", got)
	}
}

func bytesReader(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

// TestSegmentRemovedWithItsRecords: a segment file stays while any of its
// records is live and goes with the last one, by Cleanup; the segment being
// written stays.
func TestSegmentRemovedWithItsRecords(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, Config{Dir: dir})
	for i := range 3 {
		r := request(i, 50, 10)
		r.Time = time.Date(2020, 1, 1, 0, 0, i, 0, time.UTC)
		completeRecord(t, l, mustAppend(t, l, r))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, Config{Dir: dir}) // the next appends go to segment 1
	r := request(9, 50, 10)
	r.Time = time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC)
	completeRecord(t, l, mustAppend(t, l, r))
	walDir := filepath.Join(dir, walDirName)
	if seqs, _ := segments(walDir); len(seqs) != 2 {
		t.Fatalf("segments = %v, want 2", seqs)
	}
	// Delete two of segment 0's three records: it stays.
	if _, err := l.Cleanup(t.Context(), time.Date(2020, 1, 1, 0, 0, 2, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if seqs, _ := segments(walDir); len(seqs) != 2 {
		t.Fatalf("segments after deleting part of segment 0 = %v, want both", seqs)
	}
	// Delete everything: segment 0 goes, segment 1 (being written) stays.
	st, err := l.Cleanup(t.Context(), time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil || st.Deleted != 2 {
		t.Fatalf("Cleanup = %+v, %v", st, err)
	}
	if seqs, _ := segments(walDir); len(seqs) != 1 || seqs[0] != 1 {
		t.Errorf("segments after deleting every record = %v, want [1]", seqs)
	}
	mustAppend(t, l, request(10, 50, 10))
}

// completeRecord attaches a timestamp and a receipt to record id, so that
// Cleanup may delete it.
func completeRecord(t *testing.T, l *Log, id uint64) {
	t.Helper()
	r, err := l.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AttachTimestamp(t.Context(), r.Hash, Timestamp{Token: []byte("tok")}); err != nil {
		t.Fatal(err)
	}
	if err := l.AttachReceipt(t.Context(), r.Hash, Receipt{Proof: []byte("proof")}); err != nil {
		t.Fatal(err)
	}
}

// TestSegmentCorruption: a record whose bytes in its segment are altered is
// reported corrupt, not returned.
func TestSegmentCorruption(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, Config{Dir: dir})
	id := mustAppend(t, l, request(1, 50, 10))
	seg := filepath.Join(dir, walDirName, segmentName(0))
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.Replace(data, []byte("jws-1."), []byte("jws-2."), 1)
	if err := os.WriteFile(seg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	l.dropSegment(0)
	if _, err := l.Get(t.Context(), id); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Get of an altered record = %v, want ErrCorrupt", err)
	}
}

// TestSegmentZeroFill: the committer's segment is zero-filled ahead of its
// data; after a crash (the segment never closed) the zeros end the data,
// the records are applied, and the zeros are cut off.
func TestSegmentZeroFill(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, Config{Dir: dir})
	var ids []uint64
	for i := range 20 {
		ids = append(ids, mustAppend(t, l, request(i, 2000, 2000)))
	}
	l.sync(t.Context())
	seg := filepath.Join(dir, walDirName, segmentName(0))
	l.wal.fillWG.Wait()
	fi, err := os.Stat(seg)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() <= l.wal.size {
		t.Fatalf("segment size %d, data %d: nothing filled ahead", fi.Size(), l.wal.size)
	}
	dataEnd := l.wal.size
	// A crash: copy the directory as the disk would hold it, without the
	// records having been applied (remove the applied position).
	crash := t.TempDir()
	if err := os.CopyFS(crash, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(crash, dbFileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		tx.DeleteBucket(bRecords)
		tx.CreateBucket(bRecords)
		return tx.Bucket(bMeta).Delete(kApplied)
	})
	db.Close()
	l2 := openLog(t, Config{Dir: crash})
	for i, id := range ids {
		r, err := l2.Get(t.Context(), id)
		if err != nil || r.MessageID != request(i, 0, 0).MessageID {
			t.Fatalf("Get(%d) after a crash with a zero-filled segment = %v, %v", id, r, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(crash, walDirName, segmentName(0))); err != nil || fi.Size() != dataEnd {
		t.Errorf("segment after replay: %v, %v bytes, want %d (zeros cut off)", err, fi.Size(), dataEnd)
	}
	// A clean close cuts the zeros off too.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(seg); err != nil || fi.Size() != dataEnd {
		t.Errorf("segment after Close: %v, %d bytes, want %d", err, fi.Size(), dataEnd)
	}
}

// TestSegmentRotatesWithAge: a segment older than walSegmentAge is closed
// after its next group, so that retention can remove old records' bytes on
// a quiet server too.
func TestSegmentRotatesWithAge(t *testing.T) {
	dir := t.TempDir()
	orig := walSegmentAge
	walSegmentAge = 20 * time.Millisecond
	t.Cleanup(func() { walSegmentAge = orig }) // after the log closes
	l := openLog(t, Config{Dir: dir})
	mustAppend(t, l, request(1, 50, 10))
	time.Sleep(50 * time.Millisecond)
	mustAppend(t, l, request(2, 50, 10))
	mustAppend(t, l, request(3, 50, 10))
	if seqs, _ := segments(filepath.Join(dir, walDirName)); len(seqs) != 2 {
		t.Errorf("segments after an old segment's next group = %v, want 2", seqs)
	}
}

// TestSegmentNumbersAfterAppliedSegmentRemoved: once Open has removed every
// segment (all their records deleted), the next segment must still come
// after the applied position. Otherwise the new records sit before it: a
// crash loses them (replay starts at the applied position) and Cleanup
// takes their segment, the one being written, for an applied one.
func TestSegmentNumbersAfterAppliedSegmentRemoved(t *testing.T) {
	dir := t.TempDir()
	day := func(d int) time.Time { return time.Date(2020, 1, d, 0, 0, 0, 0, time.UTC) }
	appendAt := func(l *Log, n int, at time.Time) uint64 {
		r := request(n, 50, 10)
		r.Time = at
		return mustAppend(t, l, r)
	}
	// Segment 0, then segment 1; Cleanup deletes everything (segment 1,
	// where the applied position is, stays until the next Open).
	l := openLog(t, Config{Dir: dir})
	completeRecord(t, l, appendAt(l, 0, day(1)))
	l.Close()
	l = openLog(t, Config{Dir: dir})
	completeRecord(t, l, appendAt(l, 1, day(2)))
	if _, err := l.Cleanup(t.Context(), day(30)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = openLog(t, Config{Dir: dir}) // removes segment 1
	l.Close()
	walDir := filepath.Join(dir, walDirName)
	if seqs, _ := segments(walDir); len(seqs) != 0 {
		t.Fatalf("segments after every record was deleted = %v, want none", seqs)
	}

	l = openLog(t, Config{Dir: dir})
	done := appendAt(l, 2, day(3))
	completeRecord(t, l, done)
	// Acknowledged, not yet applied (the applier lingers); Cleanup deletes
	// the only applied record of the current segment meanwhile.
	kept := appendAt(l, 3, time.Now())
	if _, err := l.Cleanup(t.Context(), day(30)); err != nil {
		t.Fatal(err)
	}
	r, err := l.Get(t.Context(), kept)
	if err != nil || r.MessageID != "msg-3" {
		t.Fatalf("Get(acknowledged record) after a Cleanup = %v, %v", r, err)
	}
	// Every applied record is before the applied position (what replay
	// relies on after a crash).
	l.db.View(func(tx *bolt.Tx) error {
		seg, off := getApplied(tx.Bucket(bMeta))
		rs, ro, n, _ := parseRef(tx.Bucket(bRecords).Get(u64(kept)))
		if end := ro + walFrameHeader + int64(n); rs > seg || (rs == seg && end > off) {
			t.Errorf("record %d ends at segment %d offset %d, after the applied position (%d, %d)", kept, rs, end, seg, off)
		}
		return nil
	})
}

// TestFillerSyncErrorReachesCommitter: Linux reports a writeback error once
// per open file (errseq). If the filler synced through the committer's own
// file, its fdatasync could take the error for the committer's data, and
// the committer's fdatasync would then succeed: an acknowledged group that
// never reached the disk. The hook models that: an injected error is
// reported once to each *os.File, and the committer's call waits for the
// filler's.
func TestFillerSyncErrorReachesCommitter(t *testing.T) {
	dir := t.TempDir()
	var (
		mu       sync.Mutex
		gen      int
		seen     = map[*os.File]int{}
		fillerIn = make(chan struct{})
		once     sync.Once
	)
	orig := fdatasync
	fdatasync = func(f *os.File) error {
		filler := calledFrom("(*wal).fill")
		if filler {
			defer once.Do(func() { close(fillerIn) })
		} else if calledFrom("(*wal).write") {
			mu.Lock()
			g := gen
			mu.Unlock()
			if g > 0 {
				select {
				case <-fillerIn:
				case <-time.After(5 * time.Second):
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[f] < gen {
			seen[f] = gen
			return syscall.EIO
		}
		return orig(f)
	}
	t.Cleanup(func() { fdatasync = orig })
	l := openLog(t, Config{Dir: dir})
	mu.Lock()
	gen = 1 // the disk fails the next writeback
	mu.Unlock()
	if id, err := l.Append(t.Context(), request(1, 50, 10)); !errors.Is(err, ErrStorage) {
		t.Fatalf("Append whose data failed to reach the disk = %d, %v; want ErrStorage", id, err)
	}
}

// calledFrom reports whether a function whose name contains fn is on the
// caller's stack.
func calledFrom(fn string) bool {
	pc := make([]uintptr, 32)
	frames := runtime.CallersFrames(pc[:runtime.Callers(2, pc)])
	for {
		f, more := frames.Next()
		if strings.Contains(f.Function, fn) {
			return true
		}
		if !more {
			return false
		}
	}
}

// TestSegmentRemovalNotReopened: a reader whose snapshot predates a
// Cleanup may still look up a record of a segment being removed; it must
// not reopen and keep the segment's file between Cleanup dropping the read
// handle and removing it (the removed file's space would stay in use, and
// uncounted, until Close).
func TestSegmentRemovalNotReopened(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, Config{Dir: dir})
	r := request(1, 50, 10)
	r.Time = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	completeRecord(t, l, mustAppend(t, l, r))
	l.Close()
	l = openLog(t, Config{Dir: dir})
	mustAppend(t, l, request(2, 50, 10)) // segment 1: segment 0 is before the applied position
	l.sync(t.Context())

	reopened := make(chan error, 1)
	t.Cleanup(func() { testHookSegmentRemove = func(uint64) {} })
	testHookSegmentRemove = func(seq uint64) {
		go func() { // a reader with an older snapshot
			_, done, err := l.segment(seq)
			if err == nil {
				done()
			}
			reopened <- err
		}()
		time.Sleep(50 * time.Millisecond)
	}
	st, err := l.Cleanup(t.Context(), time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil || st.Deleted != 1 {
		t.Fatalf("Cleanup = %+v, %v", st, err)
	}
	if err := <-reopened; !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("opening a segment being removed = %v, want fs.ErrNotExist", err)
	}
	l.segMu.Lock()
	_, kept := l.segFiles[0]
	l.segMu.Unlock()
	if kept {
		t.Error("a removed segment's file is still held open")
	}
}

// TestWALReplaySkippedIDNotReused: the id of a record replay skips (its
// append failed after its frame reached the segment) is not handed out
// again: its frame stays in the segment, and at a later replay it would be
// taken for the new record with that id, whose blob file it would find.
func TestWALReplaySkippedIDNotReused(t *testing.T) {
	dir := t.TempDir()
	ids, _ := walFrames(t, dir, 1, request(1, 50, 10), request(2, 50, 500))
	if err := os.Remove(filepath.Join(dir, blobDirName, fmt.Sprintf("%016x.body", ids[1]))); err != nil {
		t.Fatal(err)
	}
	l := openLog(t, Config{Dir: dir, InlineThreshold: 100})
	if id := mustAppend(t, l, request(3, 50, 500)); id <= ids[1] {
		t.Errorf("id after replay skipped record %d = %d, want > %d", ids[1], id, ids[1])
	}
}

// TestSegmentHandlesBounded: reading records from many segments keeps at
// most maxOpenSegments handles open; the others are opened per read.
func TestSegmentHandlesBounded(t *testing.T) {
	orig := walSegmentAge
	walSegmentAge = 0 // every group closes its segment
	t.Cleanup(func() { walSegmentAge = orig })
	l := openLog(t, Config{})
	var ids []uint64
	for i := range maxOpenSegments + 8 {
		ids = append(ids, mustAppend(t, l, request(i, 50, 10)))
	}
	for i, id := range ids {
		r, err := l.Get(t.Context(), id)
		if err != nil || r.MessageID != request(i, 0, 0).MessageID {
			t.Fatalf("Get(%d) = %v, %v", id, r, err)
		}
	}
	l.segMu.Lock()
	n := len(l.segFiles)
	l.segMu.Unlock()
	if n > maxOpenSegments {
		t.Errorf("%d segment handles open, want at most %d", n, maxOpenSegments)
	}
	if seqs, _ := segments(l.walDir); len(seqs) < maxOpenSegments+8 {
		t.Fatalf("only %d segments: the test needs one per record", len(seqs))
	}
}

// TestWALBrokenWriteNotReplayed: a group whose fdatasync failed and that
// could not be cut off its segment is refused, and never found later, even
// when a crash makes the segment be replayed from its start.
func TestWALBrokenWriteNotReplayed(t *testing.T) {
	dir := t.TempDir()
	var fail atomic.Bool
	origSync, origTrunc := fdatasync, truncateFile
	fdatasync = func(f *os.File) error {
		if fail.Load() {
			return syscall.EIO
		}
		return origSync(f)
	}
	truncateFile = func(f *os.File, n int64) error {
		if fail.Load() {
			return syscall.EIO
		}
		return origTrunc(f, n)
	}
	t.Cleanup(func() { fdatasync, truncateFile = origSync, origTrunc })
	l := openLog(t, Config{Dir: dir})
	mustAppend(t, l, request(1, 50, 10))
	fail.Store(true)
	if _, err := l.Append(t.Context(), request(2, 50, 10)); !errors.Is(err, ErrStorage) {
		t.Fatalf("Append with a failing disk = %v, want ErrStorage", err)
	}
	fail.Store(false)
	mustAppend(t, l, request(3, 50, 10))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := readEndMarker(filepath.Join(dir, walDirName), 0); !ok || err != nil {
		t.Fatalf("end marker of segment 0: %v, %v", ok, err)
	}
	// A crash before anything was applied: replay reads segment 0 again.
	db, err := bolt.Open(filepath.Join(dir, dbFileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Delete(kApplied) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	l = openLog(t, Config{Dir: dir})
	recs, err := l.List(t.Context(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.MessageID)
	}
	if len(got) != 2 || got[0] != "msg-1" || got[1] != "msg-3" {
		t.Errorf("records after replaying a segment with a refused group = %v, want [msg-1 msg-3]", got)
	}
}
