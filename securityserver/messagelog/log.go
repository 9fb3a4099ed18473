package messagelog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Errors. Storage failures wrap [ErrStorage] (and [ErrFull] when the disk or
// the configured size bound is full): the server turns them into a refusal.
var (
	ErrInvalid  = errors.New("messagelog: invalid record")
	ErrNotFound = errors.New("messagelog: not found")
	ErrStorage  = errors.New("messagelog: storage failure")
	ErrFull     = errors.New("messagelog: storage full")
	ErrCorrupt  = errors.New("messagelog: corrupt record")
	ErrClosed   = errors.New("messagelog: closed")
	ErrNoBody   = errors.New("messagelog: no body stored")
)

// Defaults.
const (
	DefaultInlineThreshold = 64 << 10
	DefaultMaxBatch        = 1024
	dbFileName             = "messagelog.db"
	blobDirName            = "blobs"
)

// Config configures a [Log]. Dir is required; zero values take defaults.
type Config struct {
	// Dir holds the database (messagelog.db), the segments holding the
	// records (wal/) and the blob files (blobs/). It is created (0700) when
	// missing.
	Dir string
	// InlineThreshold: a body or signed message longer than this many bytes
	// is stored in a file beside the database. Default 64 KiB.
	InlineThreshold int
	// MaxBatch bounds the appends written to a segment in one group, and
	// (times 8) the operations indexed in one transaction. Default 1024.
	MaxBatch int
	// MaxDBSize bounds the database file and the segments together, in
	// bytes (0: unbounded; blob files are not counted). Past it, Append
	// fails with ErrFull, as on a full disk.
	MaxDBSize int64
	// Logger receives maintenance messages (never message contents).
	// Default slog.Default().
	Logger *slog.Logger
}

// Validate checks c without side effects.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("messagelog: config: dir is required")
	case c.InlineThreshold < 0:
		return fmt.Errorf("messagelog: config: inlineThreshold must not be negative")
	case c.MaxBatch < 0:
		return fmt.Errorf("messagelog: config: maxBatch must not be negative")
	case c.MaxDBSize < 0:
		return fmt.Errorf("messagelog: config: maxDBSize must not be negative")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.InlineThreshold == 0 {
		c.InlineThreshold = DefaultInlineThreshold
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Bucket names and meta keys.
var (
	bRecords  = []byte("records")  // id -> encoded record
	bMsgID    = []byte("msgid")    // uvarint(len) msgid id -> nil
	bHash     = []byte("hash")     // hash id -> nil
	bTime     = []byte("time")     // time id -> nil
	bPending  = []byte("pending")  // id -> flags hash time
	bStamps   = []byte("stamps")   // id -> timestamp (see tokens.go); before version 2 hash -> encoded Timestamp
	bReceipts = []byte("receipts") // id -> encoded Receipt; before version 2 hash -> encoded Receipt
	bMeta     = []byte("meta")     // counters
	bSegments = []byte("segments") // segment number -> live records in it

	allBuckets = [][]byte{bRecords, bMsgID, bHash, bTime, bPending, bStamps, bReceipts, bMeta, bSegments, bTokens}

	kVersion = []byte("version")
	kMaxID   = []byte("maxID")
	kApplied = []byte("applied") // segment ‖ offset: the segments are applied up to there
)

// refTag starts a records value that points into a segment: refTag ‖
// segment (8) ‖ frame offset (8) ‖ payload length (4). (An encoded record
// starts with its format byte.)
const (
	refTag = 0x10
	refLen = 1 + 8 + 8 + 4
)

func recordRef(seg uint64, off int64, n int) []byte {
	b := make([]byte, 0, refLen)
	b = append(b, refTag)
	b = binary.BigEndian.AppendUint64(b, seg)
	b = binary.BigEndian.AppendUint64(b, uint64(off))
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

func parseRef(v []byte) (seg uint64, off int64, n uint32, ok bool) {
	if len(v) != refLen || v[0] != refTag {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint64(v[1:]), int64(binary.BigEndian.Uint64(v[9:])), binary.BigEndian.Uint32(v[17:]), true
}

// indexCost is what an append is assumed to add to the database (its
// index entries), for MaxDBSize.
const indexCost = 512

const (
	needTimestamp = 1 << 0
	needReceipt   = 1 << 1
	schemaVersion = 1
)

// counters are persisted in the meta bucket, updated in the same transaction
// as the records they count.
type counters struct {
	Records, PendingTS, PendingReceipt, DBBytes, FileBytes uint64
}

var counterKeys = []string{"records", "pendingTimestamp", "pendingReceipt", "dbBytes", "fileBytes"}

func (c *counters) fields() []*uint64 {
	return []*uint64{&c.Records, &c.PendingTS, &c.PendingReceipt, &c.DBBytes, &c.FileBytes}
}

// Log is a durable message log. It is safe for concurrent use.
type Log struct {
	cfg     Config
	db      *bolt.DB
	blobDir string
	log     *slog.Logger

	nextID atomic.Uint64 // last id handed out

	mu      sync.RWMutex // guards closed; held (read) while enqueuing and reading
	closed  bool
	queue   chan *op      // appends, to the committer
	stopped chan struct{} // closed once the committer and the applier have finished

	// The applier's queue: appends from the committer once durable,
	// attachments and readers' barriers directly. Never blocks the
	// committer unless maxApplyBacklog ops wait.
	amu     sync.Mutex
	aroom   *sync.Cond // signalled when the backlog shrinks
	aops    []*op
	aflush  int  // barriers in aops
	aclosed bool // no more ops will come

	asince, aattachSince time.Time // when the first op, the first attachment, was queued
	asig                 chan struct{}

	walDir    string
	wal       *wal   // the current segment; owned by the committer (nil: open one at the next write)
	walBroken error  // set by the committer when a failed write could be neither cut off nor marked
	nextSeg   uint64 // the next segment's number; owned by the committer

	segMu    sync.Mutex
	segFiles map[uint64]*os.File // segments opened for reading

	// For MaxDBSize: the database bytes in use after the last apply, the
	// bytes of the segment files, and indexCost per append acknowledged
	// but not yet applied.
	dbUsed, segBytes, unapplied atomic.Int64

	applyMu  sync.Mutex
	applyErr error // set while the applier cannot commit acknowledged records

	stateMu sync.Mutex
	state   counters // mirror of the persisted counters
	stateTx int      // the transaction that wrote them

	appended, appendFailures, commits, committedOps, deleted, commitNanos atomic.Uint64
	indexCommits, indexedOps, indexNanos                                  atomic.Uint64
}

type opKind uint8

const (
	opAppend opKind = iota
	opTimestamp
	opReceipt
	opFlush      // a reader's barrier: apply everything queued before it now
	opAttachMany // many opTimestamp and opReceipt, one wait
)

type op struct {
	kind   opKind
	id     uint64
	rec    *Record // opAppend
	enc    []byte  // encoded record (nil once written) or attachment
	encLen int     // opAppend: len of the encoded record
	hash   Hash
	fbytes uint64     // bytes in blob files (opAppend)
	ts     *Timestamp // opTimestamp
	items  []*op      // opAttachMany
	missed int        // opAttachMany: items whose hash no record has
	seg    uint64     // opAppend: the segment holding the record
	off    int64      // opAppend: its frame's offset there
	replay bool       // opAppend from a segment at Open: skip if already applied
	err    error      // logical outcome (e.g. ErrNotFound); not a storage failure
	done   chan error
}

// Open opens (creating if needed) the message log in cfg.Dir. It removes
// blob files left by appends that never committed (a crash between writing
// a body file and committing its record).
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	blobDir := filepath.Join(cfg.Dir, blobDirName)
	walDir := filepath.Join(cfg.Dir, walDirName)
	for _, d := range []string{blobDir, walDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrStorage, err)
		}
	}
	db, err := bolt.Open(filepath.Join(cfg.Dir, dbFileName), 0o600, &bolt.Options{
		Timeout:      5 * time.Second,
		MaxSize:      int(cfg.MaxDBSize),
		FreelistType: bolt.FreelistMapType,
		// The freelist is rebuilt at open instead of being rewritten on
		// every commit: far fewer pages written per (group) commit.
		NoFreelistSync: true,
	})
	if err != nil {
		return nil, fmt.Errorf("messagelog: open %s: %w", cfg.Dir, err)
	}
	l := &Log{
		cfg:     cfg,
		db:      db,
		blobDir: blobDir,
		walDir:  walDir,
		log:     cfg.Logger,
		queue:   make(chan *op, 4*cfg.MaxBatch),
		stopped: make(chan struct{}),
		asig:    make(chan struct{}, 1),

		segFiles: map[uint64]*os.File{},
	}
	l.aroom = sync.NewCond(&l.amu)
	if err := l.init(ctx); err != nil {
		db.Close()
		return nil, err
	}
	l.measureDB()
	applied := make(chan struct{})
	go l.applier(applied)
	go l.run(applied)
	return l, nil
}

func (l *Log) init(ctx context.Context) error {
	var maxID uint64
	err := l.db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		if v := meta.Get(kVersion); v == nil {
			if err := meta.Put(kVersion, u64(schemaVersion)); err != nil {
				return err
			}
		} else if len(v) != 8 || binary.BigEndian.Uint64(v) != schemaVersion {
			return fmt.Errorf("%w: unknown schema version %x", ErrCorrupt, v)
		}
		maxID = getU64(meta, kMaxID)
		if k, _ := tx.Bucket(bRecords).Cursor().Last(); k != nil {
			maxID = max(maxID, binary.BigEndian.Uint64(k))
		}
		l.state = readCounters(meta)
		return nil
	})
	if err != nil {
		return fmt.Errorf("messagelog: init: %w", err)
	}
	// Acknowledged records the database may lack are in the write-ahead
	// log: apply them before anything else (and before the sweep below,
	// which would take their blob files for orphans).
	replayed, err := l.replay(ctx, &maxID)
	if err != nil {
		return err
	}
	if replayed > 0 {
		l.log.InfoContext(ctx, "message log: applied records from the write-ahead log", "records", replayed)
	}
	swept, err := l.sweepOrphans(ctx, &maxID)
	if err != nil {
		return err
	}
	if swept > 0 {
		l.log.InfoContext(ctx, "message log: removed blob files of uncommitted records", "files", swept)
	}
	l.nextID.Store(maxID)
	return nil
}

// sweepOrphans removes blob files whose record does not exist. It runs
// before the committer starts, so no append is in flight.
func (l *Log) sweepOrphans(ctx context.Context, maxID *uint64) (int, error) {
	entries, err := os.ReadDir(l.blobDir)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	n := 0
	err = l.db.View(func(tx *bolt.Tx) error {
		recs := tx.Bucket(bRecords)
		for _, e := range entries {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			id, ok := parseBlobName(e.Name())
			if ok {
				*maxID = max(*maxID, id)
				if recs.Get(u64(id)) != nil {
					continue
				}
			}
			if err := os.Remove(filepath.Join(l.blobDir, e.Name())); err != nil {
				return fmt.Errorf("%w: %w", ErrStorage, err)
			}
			n++
		}
		return nil
	})
	return n, err
}

// Close drains the appends already queued, commits them and closes the
// database. Appends after Close fail with ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.queue)
	l.mu.Unlock()
	<-l.stopped
	if l.wal != nil {
		l.wal.close()
	}
	l.segMu.Lock()
	for seq, f := range l.segFiles {
		f.Close()
		delete(l.segFiles, seq)
	}
	l.segMu.Unlock()
	return l.db.Close()
}

// Append durably stores a record and returns its id. It returns only once
// the record (and its blob files) are fsynced: the caller may then forward
// or return the message. Concurrent Appends are group-committed. On error
// nothing is stored (a blob file left behind is removed at the next Open).
func (l *Log) Append(ctx context.Context, rec Record) (uint64, error) {
	var body io.Reader
	if rec.Body != nil {
		body = bytes.NewReader(rec.Body)
	}
	return l.AppendStream(ctx, rec, body)
}

// AppendStream is Append with the body read from r (rec.Body is ignored):
// a large body is streamed to its file, never held in memory. r may be nil
// for a message without a body.
func (l *Log) AppendStream(ctx context.Context, rec Record, r io.Reader) (uint64, error) {
	id, err := l.appendStream(ctx, rec, r)
	if err != nil {
		l.appendFailures.Add(1)
		return 0, err
	}
	l.appended.Add(1)
	return id, nil
}

func (l *Log) appendStream(ctx context.Context, rec Record, r io.Reader) (uint64, error) {
	if err := l.checkOpen(); err != nil {
		return 0, err
	}
	o, cleanup, err := l.prepare(&rec, r)
	if err != nil {
		return 0, err
	}
	committed, err := l.submit(ctx, o)
	if err != nil {
		if !committed {
			cleanup()
		}
		return 0, err
	}
	return o.id, nil
}

// prepare validates rec, reserves its id, writes and fsyncs its blob files
// and encodes it. cleanup removes the blob files if the record never commits.
func (l *Log) prepare(rec *Record, r io.Reader) (o *op, cleanup func(), err error) {
	rec.Body = nil
	rec.Timestamp, rec.Receipt = nil, nil
	if rec.Time.IsZero() {
		rec.Time = time.Now()
	}
	rec.Time = rec.Time.UTC()
	if err := rec.validate(); err != nil {
		return nil, nil, err
	}
	if err := rec.setHash(); err != nil {
		return nil, nil, err
	}
	rec.ID = l.nextID.Add(1)
	rec.SignedLen = int64(len(rec.Signed))

	var files []string
	var fbytes uint64
	removeFiles := func() {
		for _, f := range files {
			os.Remove(f)
		}
	}
	defer func() {
		if err != nil {
			removeFiles()
		}
	}()
	if len(rec.Signed) > l.cfg.InlineThreshold {
		path := l.blobPath(rec.ID, "signed")
		files = append(files, path)
		if _, err := writeBlob(path, bytes.NewReader(rec.Signed), nil); err != nil {
			return nil, nil, storageErr(err)
		}
		rec.SignedStorage = StoredFile
		fbytes += uint64(len(rec.Signed))
	} else {
		rec.SignedStorage = StoredInline
	}
	if err := l.storeBody(rec, r, &files, &fbytes); err != nil {
		return nil, nil, err
	}
	if len(files) > 0 {
		if err := syncDir(l.blobDir); err != nil {
			return nil, nil, storageErr(err)
		}
	}
	enc, err := encodeRecord(rec)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: encode: %w", ErrInvalid, err)
	}
	return &op{kind: opAppend, id: rec.ID, rec: rec, enc: enc, encLen: len(enc), hash: rec.Hash, fbytes: fbytes}, removeFiles, nil
}

// storeBody applies the body mode: metadata-only keeps length and digest;
// full stores the body inline or, past the threshold, in a file.
func (l *Log) storeBody(rec *Record, r io.Reader, files *[]string, fbytes *uint64) error {
	rec.BodyStorage = StoredNone
	if r == nil {
		if rec.BodyMode == BodyFull && (rec.BodyLen != 0 || rec.BodyDigest != nil) {
			return fmt.Errorf("%w: full body mode without a body", ErrInvalid)
		}
		if rec.BodyMode == BodyFull {
			rec.BodyDigest = sha256.New().Sum(nil)
		}
		return nil
	}
	h := sha256.New()
	want := rec.BodyDigest
	var n int64
	if rec.BodyMode == BodyMetadataOnly {
		var err error
		if n, err = io.Copy(h, r); err != nil {
			return fmt.Errorf("messagelog: read body: %w", err)
		}
	} else {
		// Read up to the threshold in memory; spill to a file beyond it.
		size := 4 << 10
		if lr, ok := r.(interface{ Len() int }); ok {
			size = lr.Len()
		}
		w := bytes.NewBuffer(make([]byte, 0, min(size, l.cfg.InlineThreshold)+1))
		m, err := io.CopyN(w, r, int64(l.cfg.InlineThreshold)+1)
		if err != nil && err != io.EOF {
			return fmt.Errorf("messagelog: read body: %w", err)
		}
		if m <= int64(l.cfg.InlineThreshold) {
			h.Write(w.Bytes())
			n = m
			if m > 0 {
				rec.Body = w.Bytes()
				rec.BodyStorage = StoredInline
			}
		} else {
			path := l.blobPath(rec.ID, "body")
			*files = append(*files, path)
			src := &errReader{r: r}
			var err error
			if n, err = writeBlob(path, io.MultiReader(bytes.NewReader(w.Bytes()), src), h); err != nil {
				if src.err != nil {
					return fmt.Errorf("messagelog: read body: %w", src.err)
				}
				return storageErr(err)
			}
			rec.BodyStorage = StoredFile
			*fbytes += uint64(n)
		}
	}
	rec.BodyLen = n
	rec.BodyDigest = h.Sum(nil)
	if want != nil && !bytes.Equal(want, rec.BodyDigest) {
		return fmt.Errorf("%w: body digest does not match the body", ErrInvalid)
	}
	return nil
}

// AttachTimestamp records the timestamp of a message hash on every record
// with that hash. It is idempotent: the first timestamp attached to a hash
// is kept and later ones are ignored. ErrNotFound if no record has the hash.
func (l *Log) AttachTimestamp(ctx context.Context, h Hash, ts Timestamp) error {
	return l.attachOne(ctx, Attachment{Hash: h, Timestamp: &ts})
}

// attachOne is AttachMany for one hash, which must have a record.
func (l *Log) attachOne(ctx context.Context, a Attachment) error {
	missed, err := l.AttachMany(ctx, []Attachment{a})
	if err == nil && missed > 0 {
		err = fmt.Errorf("%w: no record with hash %s", ErrNotFound, a.Hash)
	}
	return err
}

// Attachment is one message hash's timestamp or registry receipt (one of
// the two), for AttachMany.
type Attachment struct {
	Hash      Hash
	Timestamp *Timestamp
	Receipt   *Receipt
}

// AttachMany attaches timestamps and receipts as AttachTimestamp and
// AttachReceipt do, in one transaction with one wait (a batch of a TSA or
// of the registry wakes one goroutine, not one per message). Hashes that no
// record has are skipped and counted in missed.
func (l *Log) AttachMany(ctx context.Context, as []Attachment) (missed int, err error) {
	o := &op{kind: opAttachMany, items: make([]*op, 0, len(as))}
	for _, a := range as {
		var it *op
		switch {
		case (a.Timestamp == nil) == (a.Receipt == nil):
			return 0, fmt.Errorf("%w: an attachment is a timestamp or a receipt", ErrInvalid)
		case a.Timestamp != nil:
			if len(a.Timestamp.Token) == 0 {
				return 0, fmt.Errorf("%w: timestamp without token", ErrInvalid)
			}
			it = &op{kind: opTimestamp, hash: a.Hash, ts: a.Timestamp}
		default:
			if len(a.Receipt.Proof) == 0 {
				return 0, fmt.Errorf("%w: receipt without proof", ErrInvalid)
			}
			enc, err := encodeReceipt(a.Receipt)
			if err != nil {
				return 0, fmt.Errorf("%w: %w", ErrInvalid, err)
			}
			it = &op{kind: opReceipt, hash: a.Hash, enc: enc}
		}
		o.items = append(o.items, it)
	}
	if len(o.items) == 0 {
		return 0, nil
	}
	if _, err := l.submit(ctx, o); err != nil {
		return 0, err
	}
	return o.missed, nil
}

// AttachReceipt records the registry receipt of a message hash on every
// record with that hash; idempotent like AttachTimestamp.
func (l *Log) AttachReceipt(ctx context.Context, h Hash, rc Receipt) error {
	return l.attachOne(ctx, Attachment{Hash: h, Receipt: &rc})
}

func (l *Log) checkOpen() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	return nil
}

// submit queues o for the committer and waits for its outcome. committed
// reports whether o may have been (or was) committed: after a context
// cancellation the outcome is unknown and counted as possibly committed.
func (l *Log) submit(ctx context.Context, o *op) (committed bool, err error) {
	o.done = make(chan error, 1)
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return false, ErrClosed
	}
	if o.kind != opAppend {
		// Attachments and barriers are not written ahead: every append
		// acknowledged before is already in the applier's queue.
		l.enqueueApply([]*op{o}, false)
	} else {
		select {
		case l.queue <- o:
		case <-ctx.Done():
			l.mu.RUnlock()
			return false, ctx.Err()
		}
	}
	l.mu.RUnlock()
	select {
	case err := <-o.done:
		if err != nil && !errors.Is(err, ErrStorage) {
			return true, err // logical outcome of a committed batch
		}
		return err == nil, err
	case <-ctx.Done():
		return true, ctx.Err()
	}
}

// applyLinger is how long the applier lets acknowledged records gather
// before indexing them into the database in one transaction: a bbolt commit
// costs about the same for one record as for hundreds (every touched page is
// rewritten, and two fdatasyncs), and nothing waits for it but readers, who
// ask for it at once (sync). Longer gathers make fewer but larger commits,
// whose writes then delay the segment writes on the same disk: 100 ms
// against 500 ms took the in-process p99 at 200 req/s from ≈ 11.6 to
// ≈ 8.7 ms (with the smaller zero fills) at no measurable throughput cost.
const applyLinger = 100 * time.Millisecond

// attachLinger is how long an attachment waits for others: its caller (the
// batcher, the registry outbox) waits for it before going on.
const attachLinger = 50 * time.Millisecond

// applyBatchFactor: the applier commits at most (and without waiting out
// applyLinger, at least) this many times MaxBatch ops in one transaction.
const applyBatchFactor = 8

// applyRetry is how often a stuck applier tries again.
const applyRetry = time.Second

// run is the group committer: it takes whatever is queued (up to MaxBatch),
// makes the appends among it durable in the write-ahead log with one write
// and one fdatasync, acknowledges them, and passes everything on to the
// applier in order. A lone writer waits for one fdatasync; many share it.
func (l *Log) run(applied <-chan struct{}) {
	defer close(l.stopped)
	batch := make([]*op, 0, l.cfg.MaxBatch)
	for o := range l.queue {
		batch = append(batch[:0], o)
	fill:
		for len(batch) < l.cfg.MaxBatch {
			select {
			case o, ok := <-l.queue:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		l.writeAhead(batch)
	}
	l.amu.Lock()
	l.aclosed = true
	l.amu.Unlock()
	l.signalApplier()
	<-applied
}

// maxApplyBacklog bounds the ops waiting for the applier before the
// committer waits for it (back-pressure instead of unbounded memory).
const maxApplyBacklog = 4 * applyBatchFactor * DefaultMaxBatch

// enqueueApply hands ops to the applier. wait makes the caller (the
// committer) wait while the backlog is full.
func (l *Log) enqueueApply(ops []*op, wait bool) {
	l.amu.Lock()
	for wait && len(l.aops) >= maxApplyBacklog {
		l.aroom.Wait()
	}
	if len(l.aops) == 0 {
		l.asince = time.Now()
	}
	l.aops = append(l.aops, ops...)
	for _, o := range ops {
		switch o.kind {
		case opFlush:
			l.aflush++
		case opAttachMany:
			if l.aattachSince.IsZero() {
				l.aattachSince = time.Now()
			}
		}
	}
	l.amu.Unlock()
	l.signalApplier()
}

func (l *Log) signalApplier() {
	select {
	case l.asig <- struct{}{}:
	default:
	}
}

// writeAhead makes batch's appends durable and acknowledges them, then
// hands batch (less the refused appends) to the applier.
func (l *Log) writeAhead(batch []*op) {
	var payloads [][]byte
	var refused []*op
	var room int64
	if l.cfg.MaxDBSize > 0 {
		// Keep a margin for the database's meta and branch pages.
		room = l.cfg.MaxDBSize - l.dbUsed.Load() - l.segBytes.Load() - l.unapplied.Load() - 64<<10
	}
	failure := l.applyFailure()
	if failure == nil {
		failure = l.walBroken
	}
	for _, o := range batch {
		if o.kind != opAppend {
			continue
		}
		switch {
		case failure != nil:
			o.err = failure
		case l.cfg.MaxDBSize > 0 && walFrameHeader+int64(len(o.enc))+indexCost > room:
			o.err = fmt.Errorf("%w: %w: the message log would exceed %d bytes", ErrStorage, ErrFull, l.cfg.MaxDBSize)
		default:
			room -= walFrameHeader + int64(len(o.enc)) + indexCost
			payloads = append(payloads, o.enc)
			continue
		}
		refused = append(refused, o)
	}
	if len(payloads) > 0 {
		offsets := make([]int64, len(payloads))
		if err := l.writeWAL(payloads, offsets); err != nil {
			l.log.Error("message log: write-ahead log write failed", "records", len(payloads), "err", err)
			err = storageErr(err)
			for _, o := range batch {
				if o.kind == opAppend && o.err == nil {
					o.err = err
					refused = append(refused, o)
				}
			}
		} else {
			i := 0
			for _, o := range batch {
				if o.kind == opAppend && o.err == nil {
					o.seg, o.off = l.wal.seq, offsets[i]
					i++
					// The applier needs the record's keys only: do not
					// hold its bytes until it runs.
					o.enc, o.rec = nil, &Record{MessageID: o.rec.MessageID, Time: o.rec.Time}
				}
			}
		}
	}
	// Queue the durable appends for the applier before acknowledging
	// them, so that whatever their callers do next (attach, read) comes
	// after them.
	next := make([]*op, 0, len(batch))
	for _, o := range batch {
		if o.err == nil {
			next = append(next, o)
		}
	}
	if len(next) > 0 {
		l.unapplied.Add(indexCost * int64(len(next)))
		l.enqueueApply(next, true)
	}
	for _, o := range next {
		o.done <- nil
	}
	for _, o := range refused {
		o.done <- o.err
	}
	if l.wal != nil && (l.wal.size >= walSegmentSize || time.Since(l.wal.opened) > walSegmentAge) {
		l.retireSegment()
	}
}

// writeWAL writes payloads to the current segment, opening one if needed,
// and sets their frames' offsets. A segment whose write failed is retired:
// the next write opens another.
func (l *Log) writeWAL(payloads [][]byte, offsets []int64) error {
	if l.wal == nil {
		w, err := openWAL(l.walDir, l.nextSeg)
		if err != nil {
			return err
		}
		l.wal, l.nextSeg = w, l.nextSeg+1
	}
	before, start := l.wal.size, time.Now()
	if err := l.wal.write(payloads, offsets); err != nil {
		if errors.Is(err, errWALBroken) {
			// The refused group may still be in the segment: make sure it
			// is never replayed, or refuse everything from now on.
			if merr := writeEndMarker(l.walDir, l.wal.seq, before); merr != nil {
				l.log.Error("message log: cannot mark where a failed segment write starts; refusing every append until restart", "err", merr)
				l.walBroken = fmt.Errorf("%w: a failed write could not be cut off its segment: %w", ErrStorage, merr)
			}
		}
		l.retireSegment()
		return err
	}
	l.segBytes.Add(l.wal.size - before)
	l.commitNanos.Add(uint64(time.Since(start)))
	l.commits.Add(1)
	l.committedOps.Add(uint64(len(payloads)))
	return nil
}

// retireSegment closes the current segment: the next write opens another.
// A segment is removed once Cleanup has deleted all its records.
func (l *Log) retireSegment() {
	l.wal.close()
	l.wal = nil
}

// applier indexes what it is handed into the database: it lets ops gather
// for applyLinger (or MaxBatch ops, or until a reader asks) and commits them
// in one transaction. Appends are already acknowledged; a failure to apply
// them leaves them in their segment, makes the committer refuse new appends
// (applyFailure) and is retried every applyRetry.
func (l *Log) applier(done chan<- struct{}) {
	defer close(done)
	var pending []*op // taken from the queue, not yet applied (the applier is stuck)
	var retryAt time.Time
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		l.amu.Lock()
		queued, flushes, closed := len(l.aops), l.aflush, l.aclosed
		since, attachSince := l.asince, l.aattachSince
		l.amu.Unlock()
		n := len(pending) + queued
		now := time.Now()
		var deadline time.Time
		switch {
		case len(pending) > 0:
			deadline = retryAt
		case queued > 0:
			deadline = since.Add(applyLinger)
			if !attachSince.IsZero() && attachSince.Add(attachLinger).Before(deadline) {
				deadline = attachSince.Add(attachLinger)
			}
		}
		// A stuck applier (pending) waits for retryAt whatever the backlog:
		// only a reader or Close makes it try again sooner.
		full := len(pending) == 0 && n >= applyBatchFactor*l.cfg.MaxBatch
		if !(closed || flushes > 0 || full || (n > 0 && !now.Before(deadline))) {
			if n > 0 {
				timer.Reset(deadline.Sub(now))
			}
			select {
			case <-l.asig:
			case <-timer.C:
			}
			timer.Stop()
			continue
		}
		l.amu.Lock()
		pending = append(pending, l.aops...)
		l.aops, l.aflush = nil, 0
		l.asince, l.aattachSince = time.Time{}, time.Time{}
		l.aroom.Broadcast()
		l.amu.Unlock()
		pending = l.applyPending(pending)
		retryAt = time.Now().Add(applyRetry)
		if closed {
			l.amu.Lock()
			more := len(l.aops) > 0
			l.amu.Unlock()
			if more {
				continue
			}
			if len(pending) > 0 {
				// Closing with a stuck applier: what is left stays in
				// its segment for the next Open.
				l.finish(pending, l.applyFailure())
			}
			return
		}
	}
}

// applyPending commits pending (in MaxBatch chunks) and returns what could
// not be applied: an append that fails alone stops the applier there.
func (l *Log) applyPending(pending []*op) []*op {
	for len(pending) > 0 {
		chunk := pending[:min(len(pending), applyBatchFactor*l.cfg.MaxBatch)]
		if err := l.update(chunk); err == nil {
			l.applied(chunk, nil)
			pending = pending[len(chunk):]
			continue
		}
		// Isolate the failure: apply each op alone.
		for len(pending) > 0 {
			o := pending[0]
			err := l.update(pending[:1])
			if err != nil && o.kind == opAppend {
				l.setApplyFailure(err)
				// Readers asking now get what is applied.
				l.finish(slices.DeleteFunc(slices.Clone(pending), func(o *op) bool { return o.kind != opFlush }), err)
				return slices.DeleteFunc(pending, func(o *op) bool { return o.kind == opFlush })
			}
			l.applied(pending[:1], err)
			pending = pending[1:]
		}
	}
	l.setApplyFailure(nil)
	return nil
}

// applied completes ops after their transaction: acknowledged appends leave
// the unapplied count, attachments and readers get their outcome.
func (l *Log) applied(ops []*op, err error) {
	for _, o := range ops {
		if o.kind == opAppend && !o.replay {
			l.unapplied.Add(-indexCost)
		}
	}
	l.finish(ops, err)
	l.measureDB()
}

// finish sends each waiting op (attachments, readers) its outcome.
func (l *Log) finish(ops []*op, err error) {
	for _, o := range ops {
		if o.done == nil || o.kind == opAppend {
			continue
		}
		if err == nil {
			err := o.err
			o.done <- err
		} else {
			o.done <- err
		}
	}
}

func (l *Log) applyFailure() error {
	l.applyMu.Lock()
	defer l.applyMu.Unlock()
	return l.applyErr
}

func (l *Log) setApplyFailure(err error) {
	l.applyMu.Lock()
	defer l.applyMu.Unlock()
	if err != nil && l.applyErr == nil {
		l.log.Error("message log: cannot index acknowledged records; they stay in the write-ahead log and new messages are refused", "err", err)
	} else if err == nil && l.applyErr != nil {
		l.log.Info("message log: indexing acknowledged records again")
	}
	if err != nil {
		err = storageErr(err)
	}
	l.applyErr = err
}

// measureDB records the database bytes in use, for MaxDBSize.
func (l *Log) measureDB() {
	if l.cfg.MaxDBSize == 0 {
		return
	}
	l.db.View(func(tx *bolt.Tx) error {
		free := int64(l.db.Stats().FreePageN) * int64(l.db.Info().PageSize)
		l.dbUsed.Store(tx.Size() - free)
		return nil
	})
}

// sync waits until everything queued before it is in the database: readers
// call it so that an acknowledged append is found at once.
func (l *Log) sync(ctx context.Context) error {
	_, err := l.submit(ctx, &op{kind: opFlush})
	return err
}

// replay applies the records of the segments that the database lacks:
// those written after the applied position (acknowledged, not yet applied
// when the process stopped). A record whose blob file is missing was never
// acknowledged (its files are removed when its append fails) and is
// skipped. It then removes the segments without live records.
func (l *Log) replay(ctx context.Context, maxID *uint64) (int, error) {
	seqs, err := segments(l.walDir)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	if len(seqs) > 0 {
		l.nextSeg = seqs[len(seqs)-1] + 1
	}
	var fromSeg uint64
	var fromOff int64
	if err := l.db.View(func(tx *bolt.Tx) error {
		fromSeg, fromOff = getApplied(tx.Bucket(bMeta))
		if tx.Bucket(bMeta).Get(kApplied) != nil {
			// New records must come after the applied position even when
			// its segment is gone (removed below, or at an earlier Open,
			// once all its records were deleted): replay starts there, and
			// Cleanup removes the segments before it.
			l.nextSeg = max(l.nextSeg, fromSeg+1)
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	var ops []*op
	n := 0
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		if err := l.update(ops); err != nil {
			return fmt.Errorf("messagelog: applying the segments: %w", err)
		}
		for _, o := range ops {
			*maxID = max(*maxID, o.id)
		}
		n += len(ops)
		ops = ops[:0]
		return nil
	}
	for _, seq := range seqs {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if seq < fromSeg {
			continue
		}
		from := int64(0)
		if seq == fromSeg {
			from = fromOff
		}
		path := filepath.Join(l.walDir, segmentName(seq))
		limit, marked, err := readEndMarker(l.walDir, seq)
		if err != nil {
			return n, err
		}
		if !marked {
			limit = -1
		}
		end, torn, err := readSegment(path, from, limit, func(off int64, p []byte) error {
			rec, err := decodeRecord(p)
			if err != nil {
				return fmt.Errorf("segment %s: %w", segmentName(seq), err)
			}
			// Even a skipped record's id stays used: its frame stays too.
			*maxID = max(*maxID, rec.ID)
			var fbytes uint64
			for _, b := range []struct {
				st   Storage
				kind string
				n    int64
			}{{rec.SignedStorage, "signed", rec.SignedLen}, {rec.BodyStorage, "body", rec.BodyLen}} {
				if b.st != StoredFile {
					continue
				}
				if _, err := os.Stat(l.blobPath(rec.ID, b.kind)); err != nil {
					l.log.Warn("message log: a record without its blob file skipped (never acknowledged)", "id", rec.ID)
					return nil
				}
				fbytes += uint64(b.n)
			}
			ops = append(ops, &op{kind: opAppend, id: rec.ID, rec: &Record{MessageID: rec.MessageID, Time: rec.Time}, encLen: len(p), hash: rec.Hash, fbytes: fbytes, seg: seq, off: off, replay: true})
			if len(ops) >= l.cfg.MaxBatch {
				return flush()
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		if err := flush(); err != nil { // before the next segment's data is read
			return n, err
		}
		if torn {
			l.log.Warn("message log: a segment ends in an unacknowledged partial write", "segment", segmentName(seq))
		}
		// Cut off what follows the data (a partial write, zeros filled
		// ahead): the segment is never written again.
		if fi, err := os.Stat(path); err == nil && fi.Size() > end {
			if err := truncateSync(path, end); err != nil {
				return n, fmt.Errorf("%w: %w", ErrStorage, err)
			}
		}
	}
	return n, l.removeDeadSegments(seqs)
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// removeDeadSegments removes, at Open, the segments in which no record is
// live (all applied, all deleted), and counts the others' bytes.
func (l *Log) removeDeadSegments(seqs []uint64) error {
	removed := false
	for _, seq := range seqs {
		path := filepath.Join(l.walDir, segmentName(seq))
		var live uint64
		if err := l.db.View(func(tx *bolt.Tx) error {
			live = getU64(tx.Bucket(bSegments), u64(seq))
			return nil
		}); err != nil {
			return fmt.Errorf("%w: %w", ErrStorage, err)
		}
		if live > 0 {
			fi, err := os.Stat(path)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrStorage, err)
			}
			l.segBytes.Add(fi.Size())
			continue
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("%w: %w", ErrStorage, err)
		}
		if err := os.Remove(endMarkerPath(l.walDir, seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %w", ErrStorage, err)
		}
		removed = true
	}
	if removed {
		if err := syncDir(l.walDir); err != nil {
			return fmt.Errorf("%w: %w", ErrStorage, err)
		}
	}
	return nil
}

// getApplied returns the position up to which the segments are applied.
func getApplied(meta *bolt.Bucket) (seg uint64, off int64) {
	if v := meta.Get(kApplied); len(v) == 16 {
		return binary.BigEndian.Uint64(v), int64(binary.BigEndian.Uint64(v[8:]))
	}
	return 0, 0
}

// maxOpenSegments bounds the read handles kept open: older segments are
// read rarely (evidence, audits) and opened for each read.
const maxOpenSegments = 32

// segment returns segment seq opened for reading, and what to call once
// the read is done.
func (l *Log) segment(seq uint64) (*os.File, func(), error) {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	if f, ok := l.segFiles[seq]; ok {
		return f, func() {}, nil
	}
	f, err := os.Open(filepath.Join(l.walDir, segmentName(seq)))
	if err != nil {
		return nil, nil, err
	}
	if len(l.segFiles) >= maxOpenSegments {
		return f, func() { f.Close() }, nil
	}
	l.segFiles[seq] = f
	return f, func() {}, nil
}

// dropSegment closes segment seq's read handle (the next read reopens it).
func (l *Log) dropSegment(seq uint64) {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	if f, ok := l.segFiles[seq]; ok {
		f.Close()
		delete(l.segFiles, seq)
	}
}

// recordBytes returns the encoded record stored under a records value: the
// value itself, or the frame it points to in a segment.
func (l *Log) recordBytes(v []byte) ([]byte, error) {
	seq, off, n, ok := parseRef(v)
	if !ok {
		return v, nil
	}
	f, done, err := l.segment(seq)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: segment %s is gone (records deleted meanwhile)", ErrNotFound, segmentName(seq))
		}
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	defer done()
	b, err := readFrame(f, off, n)
	if errors.Is(err, os.ErrClosed) {
		// Cleanup removed the segment (with its last record) meanwhile.
		return nil, fmt.Errorf("%w: segment %s is gone (records deleted meanwhile)", ErrNotFound, segmentName(seq))
	}
	return b, err
}

// update commits ops in one transaction.
func (l *Log) update(ops []*op) error {
	if !slices.ContainsFunc(ops, func(o *op) bool { return o.kind != opFlush }) {
		return nil
	}
	var c counters
	var txid int
	start := time.Now()
	err := l.db.Update(func(tx *bolt.Tx) error {
		txid = tx.ID()
		meta := tx.Bucket(bMeta)
		c = readCounters(meta)
		maxID := getU64(meta, kMaxID)
		for _, o := range ops {
			o.err = nil
			if o.kind == opFlush {
				continue
			}
			if err := l.apply(tx, o, &c); err != nil {
				return err
			}
			maxID = max(maxID, o.id)
		}
		if err := meta.Put(kMaxID, u64(maxID)); err != nil {
			return err
		}
		// Ops come in segment order: the last append is the furthest.
		for _, o := range slices.Backward(ops) {
			if o.kind == opAppend {
				end := o.off + walFrameHeader + int64(o.encLen)
				if seg, off := getApplied(meta); o.seg > seg || (o.seg == seg && end > off) {
					if err := meta.Put(kApplied, binary.BigEndian.AppendUint64(u64(o.seg), uint64(end))); err != nil {
						return err
					}
				}
				break
			}
		}
		return writeCounters(meta, &c)
	})
	if err != nil {
		l.log.Error("message log: commit failed", "ops", len(ops), "err", err)
		return storageErr(err)
	}
	l.setState(c, txid)
	l.indexNanos.Add(uint64(time.Since(start)))
	l.indexCommits.Add(1)
	l.indexedOps.Add(uint64(len(ops)))
	return nil
}

func (l *Log) apply(tx *bolt.Tx, o *op, c *counters) error {
	switch o.kind {
	case opAppend:
		key := u64(o.id)
		if o.replay && tx.Bucket(bRecords).Get(key) != nil {
			return nil // applied before the crash
		}
		if err := tx.Bucket(bRecords).Put(key, recordRef(o.seg, o.off, o.encLen)); err != nil {
			return err
		}
		segs := tx.Bucket(bSegments)
		if err := segs.Put(u64(o.seg), u64(getU64(segs, u64(o.seg))+1)); err != nil {
			return err
		}
		if err := tx.Bucket(bMsgID).Put(msgIDKey(o.rec.MessageID, o.id), nil); err != nil {
			return err
		}
		// Another record of the same message (sent and received by this
		// server) may already have its evidence: it is this one's too.
		flags := byte(needTimestamp | needReceipt)
		for _, other := range idsWithPrefix(tx.Bucket(bHash), o.hash[:]) {
			if v := attachmentOf(tx, bStamps, other, o.hash); v != nil && flags&needTimestamp != 0 {
				n, err := copyStamp(tx, key, v)
				if err != nil {
					return err
				}
				c.DBBytes += uint64(n)
				flags &^= needTimestamp
			}
			if v := attachmentOf(tx, bReceipts, other, o.hash); v != nil && flags&needReceipt != 0 {
				if err := tx.Bucket(bReceipts).Put(key, bytes.Clone(v)); err != nil {
					return err
				}
				c.DBBytes += uint64(len(v))
				flags &^= needReceipt
			}
		}
		if flags&needTimestamp != 0 {
			c.PendingTS++
		}
		if flags&needReceipt != 0 {
			c.PendingReceipt++
		}
		if err := tx.Bucket(bHash).Put(cat(o.hash[:], key), nil); err != nil {
			return err
		}
		if err := tx.Bucket(bTime).Put(cat(timeKey(o.rec.Time), key), nil); err != nil {
			return err
		}
		if flags != 0 {
			if err := tx.Bucket(bPending).Put(key, cat(cat([]byte{flags}, o.hash[:]), timeKey(o.rec.Time))); err != nil {
				return err
			}
		}
		c.Records++
		c.DBBytes += uint64(o.encLen)
		c.FileBytes += o.fbytes
		return nil
	case opAttachMany:
		o.missed = 0
		for _, it := range o.items {
			it.err = nil
			if err := l.apply(tx, it, c); err != nil {
				return err
			}
			if it.err != nil {
				o.missed++
			}
		}
		return nil
	case opTimestamp, opReceipt:
		bucket, flag, pendingCount := bStamps, byte(needTimestamp), &c.PendingTS
		if o.kind == opReceipt {
			bucket, flag, pendingCount = bReceipts, needReceipt, &c.PendingReceipt
		}
		ids := idsWithPrefix(tx.Bucket(bHash), o.hash[:])
		if len(ids) == 0 {
			o.err = fmt.Errorf("%w: no record with hash %s", ErrNotFound, o.hash)
			return nil
		}
		// Stored per record (ids are close together, hashes are not: far
		// fewer pages rewritten per commit). The first attachment wins.
		b := tx.Bucket(bucket)
		pending := tx.Bucket(bPending)
		for _, id := range ids {
			key := u64(id)
			if attachmentOf(tx, bucket, id, o.hash) != nil {
				continue
			}
			if o.kind == opTimestamp {
				n, err := putStamp(tx, key, o.ts)
				if err != nil {
					return err
				}
				c.DBBytes += uint64(n)
			} else {
				if err := b.Put(key, o.enc); err != nil {
					return err
				}
				c.DBBytes += uint64(len(o.enc))
			}
			v := pending.Get(key)
			if v == nil || v[0]&flag == 0 {
				continue
			}
			*pendingCount--
			nv := cat([]byte{v[0] &^ flag}, v[1:])
			var err error
			if nv[0] == 0 {
				err = pending.Delete(key)
			} else {
				err = pending.Put(key, nv)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("messagelog: unknown op %d", o.kind)
}

// setState publishes the counters written by transaction txid, unless a
// later transaction's are already published (Cleanup and the applier
// commit concurrently and publish after their commits, in either order).
func (l *Log) setState(c counters, txid int) {
	l.stateMu.Lock()
	if txid > l.stateTx {
		l.state, l.stateTx = c, txid
	}
	l.stateMu.Unlock()
}

// storageErr wraps a write failure as ErrStorage, adding ErrFull when the
// disk or the size bound is full.
func storageErr(err error) error {
	if errors.Is(err, ErrStorage) {
		return err
	}
	if errors.Is(err, berrors.ErrMaxSizeReached) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w: %w", ErrStorage, ErrFull, err)
	}
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", ErrStorage, ErrClosed)
	}
	return fmt.Errorf("%w: %w", ErrStorage, err)
}

// Keys.

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b *bolt.Bucket, k []byte) uint64 {
	if v := b.Get(k); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func readCounters(meta *bolt.Bucket) counters {
	var c counters
	for i, f := range c.fields() {
		*f = getU64(meta, []byte(counterKeys[i]))
	}
	return c
}

func writeCounters(meta *bolt.Bucket, c *counters) error {
	for i, f := range c.fields() {
		if err := meta.Put([]byte(counterKeys[i]), u64(*f)); err != nil {
			return err
		}
	}
	return nil
}

func cat(a, b []byte) []byte {
	out := make([]byte, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}

func msgIDPrefix(msgID string) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(msgID))), msgID...)
}

func msgIDKey(msgID string, id uint64) []byte {
	return binary.BigEndian.AppendUint64(msgIDPrefix(msgID), id)
}

// timeKey orders times (including before 1970) as unsigned big-endian bytes.
func timeKey(t time.Time) []byte {
	return u64(uint64(t.UnixNano()) ^ (1 << 63))
}

func timeFromKey(k []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(k)^(1<<63))).UTC()
}

// attachmentOf returns record id's stamps or receipts value: under its id
// or, written before version 2, under its hash.
func attachmentOf(tx *bolt.Tx, bucket []byte, id uint64, h Hash) []byte {
	b := tx.Bucket(bucket)
	if v := b.Get(u64(id)); v != nil {
		return v
	}
	return b.Get(h[:])
}

// idsWithPrefix returns the record ids of index keys "prefix || id".
func idsWithPrefix(b *bolt.Bucket, prefix []byte) []uint64 {
	var ids []uint64
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if len(k) == len(prefix)+8 {
			ids = append(ids, binary.BigEndian.Uint64(k[len(prefix):]))
		}
	}
	return ids
}

// errReader remembers the error of the reader it wraps, so that a failing
// body source (a client gone) is not reported as a storage failure.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}
