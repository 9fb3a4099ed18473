package messagelog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Segments are where records live and where an Append becomes durable: the
// committer writes the encoded records of a whole group to the current
// segment with one write and one fdatasync, acknowledges them, and hands
// them to the applier, which indexes them (by reference: segment, offset)
// into the bbolt database in large, lingering transactions off the hot
// path. At Open, the records after the applied position are indexed before
// anything else runs. (The directory is still named "wal".)
//
// A segment is a sequence of frames:
//
//	uint32 length (big-endian) ‖ uint32 CRC-32C of the payload ‖ payload
//
// where the payload is the encoded record (see encodeRecord). A frame that is
// cut short or fails its CRC ends the segment (a crash during a write that
// was never acknowledged).

const (
	walDirName = "wal"
	walSuffix  = ".wal"
	// walSegmentSize is the size past which the committer starts a new
	// segment, so that applied segments can be removed.
	walSegmentSize = 64 << 20
	walFrameHeader = 8
)

// walSegmentAge is the age past which the committer starts a new segment
// even if this one is small: retention removes a segment only once every
// record in it is deleted, so a quiet server's old records must not share a
// file with today's for long. (A variable for tests, set before Open.)
var walSegmentAge = time.Hour

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// Zero-filling ahead: an fdatasync after writing into a file's existing,
// already-written blocks flushes data only, while one after growing the file
// must also commit the file system's journal, and waits behind everything
// else being committed (the database's transactions). A background filler
// therefore keeps walFillAhead..2*walFillAhead bytes of zeros, written and
// synced, ahead of the write position; the zeros past the data end the
// segment for readers (a frame cannot have length 0) and are cut off when
// the segment is retired. Fills are kept small (at most 1 MiB, synced at
// once) because a fill's fdatasync occupies the disk the segment writes
// wait for: 8 MiB fills showed in the open-loop p99.
const walFillAhead = 512 << 10

// wal is the current segment. Only the committer goroutine writes to it;
// its filler zero-fills ahead.
type wal struct {
	dir    string
	seq    uint64
	f      *os.File
	size   int64
	buf    []byte
	opened time.Time

	mu               sync.Mutex
	cond             *sync.Cond
	filled           int64 // zeros written and synced up to here
	filling          bool  // the filler is writing [fillFrom, fillTo)
	fillFrom, fillTo int64
	fillWG           sync.WaitGroup
	noFill           bool // tests and small logs: plain appends
}

func segmentName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, walSuffix) }

// segments lists the segment numbers present in dir, in order.
func segments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), walSuffix)
		if !ok || len(name) != 16 {
			continue
		}
		seq, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	return seqs, nil
}

// openWAL creates segment seq (which must not exist) and makes its directory
// entry durable.
func openWAL(dir string, seq uint64) (*wal, error) {
	f, err := os.OpenFile(filepath.Join(dir, segmentName(seq)), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	w := &wal{dir: dir, seq: seq, f: f, opened: time.Now()}
	w.cond = sync.NewCond(&w.mu)
	return w, nil
}

// reserve waits until [w.size, end) is not being zero-filled, and starts
// the filler when fewer than walFillAhead zeros are left ahead of end.
func (w *wal) reserve(end int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.filling && end > w.fillFrom {
		w.cond.Wait()
	}
	// Fill in proportion to what the segment holds (a small log does not
	// get megabytes of zeros), up to 2*walFillAhead at a time.
	chunk := min(2*walFillAhead, max(256<<10, end))
	if w.noFill || w.filling || w.filled-end >= chunk/2 || end >= walSegmentSize {
		return
	}
	w.filling = true
	w.fillFrom = max(w.filled, end)
	w.fillTo = min(w.fillFrom+chunk, walSegmentSize+walFillAhead)
	w.fillWG.Add(1)
	go w.fill(w.fillFrom, w.fillTo)
}

// zeroBlock is what the filler writes (never written to).
var zeroBlock [1 << 20]byte

// fill writes and syncs zeros over [from, to), through a file of its own:
// Linux reports a writeback error once per open file, so an fdatasync of
// the filler through the committer's file could take the error meant for
// the committer's data, whose own fdatasync would then succeed.
func (w *wal) fill(from, to int64) {
	defer w.fillWG.Done()
	zeros := zeroBlock[:]
	f, err := os.OpenFile(w.path(), os.O_WRONLY, 0)
	if err == nil {
		for off := from; off < to && err == nil; off += int64(len(zeros)) {
			_, err = f.WriteAt(zeros[:min(int64(len(zeros)), to-off)], off)
		}
		if err == nil {
			err = fdatasync(f)
		}
		err = errors.Join(err, f.Close())
	}
	w.mu.Lock()
	if err == nil {
		w.filled = to
	} else {
		w.noFill = true // plain appends from now on
	}
	w.filling = false
	w.cond.Broadcast()
	w.mu.Unlock()
}

func (w *wal) path() string { return filepath.Join(w.dir, segmentName(w.seq)) }

// write appends one frame per payload and fdatasyncs the segment. On error
// nothing of the group counts as written: the segment is cut back to its
// previous size, and an error that leaves the segment in doubt is returned
// as errWALBroken (the caller must start a new segment).
func (w *wal) write(payloads [][]byte, offsets []int64) error {
	w.buf = w.buf[:0]
	for i, p := range payloads {
		offsets[i] = w.size + int64(len(w.buf))
		w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(len(p)))
		w.buf = binary.BigEndian.AppendUint32(w.buf, crc32.Checksum(p, crc32c))
		w.buf = append(w.buf, p...)
	}
	w.reserve(w.size + int64(len(w.buf)))
	_, err := w.f.WriteAt(w.buf, w.size)
	if err == nil {
		err = fdatasync(w.f)
	}
	if err != nil {
		// Cut the unacknowledged frames off so that they are never applied.
		if terr := truncateFile(w.f, w.size); terr != nil {
			return errors.Join(err, errWALBroken)
		}
		if serr := w.f.Sync(); serr != nil {
			return errors.Join(err, errWALBroken)
		}
		return err
	}
	w.size += int64(len(w.buf))
	if cap(w.buf) > 1<<20 {
		w.buf = nil // do not keep a large group's buffer
	}
	return nil
}

// close waits for the filler, cuts the zeros past the data off and closes
// the segment.
func (w *wal) close() error {
	w.fillWG.Wait()
	err := w.f.Truncate(w.size)
	if err == nil {
		err = fdatasync(w.f)
	}
	return errors.Join(err, w.f.Close())
}

// truncateFile cuts a segment back after a failed write. A variable so that
// tests can make it fail.
var truncateFile = func(f *os.File, size int64) error { return f.Truncate(size) }

// An end marker, "<segment>.end" beside a segment, holds the size (8 bytes,
// big-endian) past which the segment's bytes were never acknowledged: it
// is written when a failed write could not be cut back off the segment, and
// replay reads no further.
func endMarkerPath(dir string, seq uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016x.end", seq))
}

func writeEndMarker(dir string, seq uint64, size int64) error {
	path := endMarkerPath(dir, seq)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(binary.BigEndian.AppendUint64(nil, uint64(size)))
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// readEndMarker returns segment seq's end marker, if it has one.
func readEndMarker(dir string, seq uint64) (size int64, ok bool, err error) {
	b, err := os.ReadFile(endMarkerPath(dir, seq))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if len(b) != 8 {
		return 0, false, fmt.Errorf("%w: end marker of segment %s: %d bytes", ErrCorrupt, segmentName(seq), len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), true, nil
}

// errWALBroken says a failed write could not be cut back: the segment must
// not be written again.
var errWALBroken = errors.New("write-ahead log segment in doubt")

// readSegment calls fn with each intact frame's offset and payload in
// order, from offset from on and up to limit (-1: the whole file). It returns where the data ends, and torn =
// true when the segment ends in a cut-short or corrupt frame (the rest is
// ignored).
func readSegment(path string, from, limit int64, fn func(off int64, payload []byte) error) (end int64, torn bool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false, err
	}
	if limit >= 0 && limit < int64(len(data)) {
		data = data[:limit] // what follows was never acknowledged
	}
	if from > int64(len(data)) {
		return 0, false, fmt.Errorf("%w: segment %s is shorter (%d bytes) than its applied part (%d)", ErrCorrupt, filepath.Base(path), len(data), from)
	}
	off := from
	data = data[from:]
	for len(data) > 0 {
		if len(data) < walFrameHeader {
			return off, true, nil
		}
		n := binary.BigEndian.Uint32(data)
		sum := binary.BigEndian.Uint32(data[4:])
		if n == 0 && sum == 0 {
			return off, false, nil // the zeros filled ahead of the data
		}
		if n == 0 || uint64(n) > uint64(len(data)-walFrameHeader) {
			return off, true, nil
		}
		p := data[walFrameHeader : walFrameHeader+int(n)]
		if crc32.Checksum(p, crc32c) != sum {
			return off, true, nil
		}
		if err := fn(off, p); err != nil {
			return off, false, err
		}
		data = data[walFrameHeader+int(n):]
		off += walFrameHeader + int64(n)
	}
	return off, false, nil
}

// readFrame reads the frame at off in f, of payload length n, and checks it.
func readFrame(f *os.File, off int64, n uint32) ([]byte, error) {
	b := make([]byte, walFrameHeader+int(n))
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("%w: reading a record from %s: %w", ErrCorrupt, filepath.Base(f.Name()), err)
	}
	if binary.BigEndian.Uint32(b) != n || crc32.Checksum(b[walFrameHeader:], crc32c) != binary.BigEndian.Uint32(b[4:]) {
		return nil, fmt.Errorf("%w: the record at %d in %s fails its check", ErrCorrupt, off, filepath.Base(f.Name()))
	}
	return b[walFrameHeader:], nil
}

// fdatasync makes a segment's data durable (its size too: the file grew).
// A variable so that tests can simulate a failing disk.
var fdatasync = func(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
