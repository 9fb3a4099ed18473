package hashregistry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/passerelle/passerelle/pki"
)

// Errors a Log returns; callers branch on them with errors.Is.
var (
	// ErrTampered: the store does not reproduce its signed checkpoint (a
	// changed, missing, extra or reordered entry or hash). The log refuses
	// to open rather than sign anything inconsistent with what it published.
	ErrTampered = errors.New("hashregistry: store does not reproduce its signed checkpoint")
	// ErrClosed: the log is closed.
	ErrClosed = errors.New("hashregistry: log closed")
	// ErrNotFound: no such entry, or a size beyond the published tree.
	ErrNotFound = errors.New("hashregistry: not found")
	// ErrInvalid: a malformed request (bad hash, kind, range, member).
	ErrInvalid = errors.New("hashregistry: invalid request")
)

var (
	bucketEntries = []byte("entries") // 8-byte BE index → canonical entry
	bucketHashes  = []byte("hashes")  // 8-byte BE stored-hash index → 32-byte hash
	bucketLeaves  = []byte("leaves")  // 32-byte leaf hash → 8-byte BE index (first occurrence)
	bucketMeta    = []byte("meta")
	keyCheckpoint = []byte("checkpoint") // the last signed checkpoint note
)

// DefaultMaxBatch bounds how many entries one commit integrates.
const DefaultMaxBatch = 8192

// Config configures Open.
type Config struct {
	// Path is the bbolt file; created when missing.
	Path string
	// Signer signs checkpoints; its name is the log's origin.
	Signer note.Signer
	// Verifier is the signer's public key (registry.vkey).
	Verifier note.Verifier
	// MaxBatch bounds the entries of one commit (DefaultMaxBatch when 0).
	MaxBatch int
	// Now is the clock for submission times (time.Now when nil).
	Now func() time.Time
	// Registerer receives the log's metrics (none when nil).
	Registerer prometheus.Registerer
	// NoSync skips fsync on commit. Only for tests and benchmarks that
	// measure something other than durability.
	NoSync bool

	// skipVerify opens a store without checking it (tests that play a
	// dishonest registry serving a tampered store).
	skipVerify bool
}

func (c *Config) validate() error {
	switch {
	case c.Path == "":
		return fmt.Errorf("%w: config: Path is empty", ErrInvalid)
	case c.Signer == nil || c.Verifier == nil:
		return fmt.Errorf("%w: config: Signer and Verifier are required", ErrInvalid)
	case c.Signer.Name() != c.Verifier.Name() || c.Signer.KeyHash() != c.Verifier.KeyHash():
		return fmt.Errorf("%w: config: Signer and Verifier are not one key pair", ErrInvalid)
	case !ValidOrigin(c.Signer.Name()):
		return fmt.Errorf("%w: config: key name %q is not a valid origin", ErrInvalid, c.Signer.Name())
	case c.MaxBatch < 0:
		return fmt.Errorf("%w: config: MaxBatch < 0", ErrInvalid)
	}
	return nil
}

// Submission is one message hash a member hands to the registry.
type Submission struct {
	Hash [sha256.Size]byte
	Kind Kind
}

// AppendReceipt is what Append returns per submission: the entry's index,
// its canonical bytes and a complete c2sp.org/tlog-proof@v1 file proving it
// in the checkpoint signed for its batch.
type AppendReceipt struct {
	Index int64
	Entry []byte
	Proof []byte
}

// Log is the registry's Merkle log in bbolt. Append is safe for concurrent
// use: concurrent calls are merged into one bbolt transaction (one fsync)
// and one signed checkpoint; a lone call is committed at once.
type Log struct {
	db       *bolt.DB
	cfg      Config
	origin   string
	reqs     chan *appendReq
	stop     chan struct{}
	stopped  chan struct{}
	closeOne sync.Once

	mu         sync.RWMutex
	checkpoint Checkpoint
	signed     []byte

	m *logMetrics
}

type appendReq struct {
	entries [][]byte
	done    chan appendResult
}

type appendResult struct {
	first  int64
	signed []byte
	cp     Checkpoint
	err    error
}

// Open opens (or creates) the log at cfg.Path. It recomputes every stored
// hash from the entries and refuses to open, with ErrTampered, unless the
// store reproduces the last checkpoint it signed. A new store gets a signed
// checkpoint of the empty tree.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: cfg.NoSync, NoFreelistSync: true})
	if err != nil {
		return nil, fmt.Errorf("hashregistry: open %s: %w", cfg.Path, err)
	}
	l := &Log{
		db: db, cfg: cfg, origin: cfg.Signer.Name(),
		reqs: make(chan *appendReq, 1024), stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	if err := l.load(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if l.m, err = newLogMetrics(cfg.Registerer, l); err != nil {
		db.Close()
		return nil, err
	}
	go l.run()
	return l, nil
}

// load verifies the store against its checkpoint, or initialises it.
func (l *Log) load(ctx context.Context) error {
	return l.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEntries, bucketHashes, bucketLeaves, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		signed := tx.Bucket(bucketMeta).Get(keyCheckpoint)
		if signed == nil {
			if tx.Bucket(bucketEntries).Stats().KeyN != 0 || tx.Bucket(bucketHashes).Stats().KeyN != 0 {
				return fmt.Errorf("%w: entries but no checkpoint", ErrTampered)
			}
			cp := Checkpoint{Origin: l.origin, Size: 0, Hash: emptyTreeHash()}
			s, err := SignCheckpoint(cp, l.cfg.Signer)
			if err != nil {
				return err
			}
			l.checkpoint, l.signed = cp, s
			return tx.Bucket(bucketMeta).Put(keyCheckpoint, s)
		}
		cp, err := OpenCheckpoint(signed, l.cfg.Verifier)
		if err != nil {
			return fmt.Errorf("%w: stored checkpoint: %w", ErrTampered, err)
		}
		if l.cfg.skipVerify {
			l.checkpoint, l.signed = cp, bytes.Clone(signed)
			return nil
		}
		if err := verifyTree(ctx, tx, cp); err != nil {
			return err
		}
		l.checkpoint, l.signed = cp, bytes.Clone(signed)
		return nil
	})
}

func emptyTreeHash() tlog.Hash {
	h, _ := tlog.TreeHash(0, nil)
	return h
}

// verifyTree recomputes every stored hash and the root from the entries and
// compares them with the store and with cp.
func verifyTree(ctx context.Context, tx *bolt.Tx, cp Checkpoint) error {
	hb := tx.Bucket(bucketHashes)
	r := txHashReader(tx)
	c := tx.Bucket(bucketEntries).Cursor()
	var n int64
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if n%65536 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if len(k) != 8 || int64(binary.BigEndian.Uint64(k)) != n {
			return fmt.Errorf("%w: entry key %x where index %d was expected", ErrTampered, k, n)
		}
		if _, err := ParseEntry(v); err != nil {
			return fmt.Errorf("%w: entry %d: %w", ErrTampered, n, err)
		}
		hs, err := tlog.StoredHashes(n, v, r)
		if err != nil {
			return fmt.Errorf("%w: entry %d: %w", ErrTampered, n, err)
		}
		base := tlog.StoredHashIndex(0, n)
		for i, h := range hs {
			got := hb.Get(u64(base + int64(i)))
			if !bytes.Equal(got, h[:]) {
				return fmt.Errorf("%w: stored hash %d does not match entry %d", ErrTampered, base+int64(i), n)
			}
		}
		n++
	}
	if n != cp.Size {
		return fmt.Errorf("%w: %d entries, checkpoint says %d", ErrTampered, n, cp.Size)
	}
	if got := int64(hb.Stats().KeyN); got != tlog.StoredHashCount(n) {
		return fmt.Errorf("%w: %d stored hashes, want %d", ErrTampered, got, tlog.StoredHashCount(n))
	}
	root, err := tlog.TreeHash(n, r)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTampered, err)
	}
	if root != cp.Hash {
		return fmt.Errorf("%w: root %s, checkpoint says %s", ErrTampered, root, cp.Hash)
	}
	return nil
}

func u64(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

// txHashReader reads stored hashes from tx.
func txHashReader(tx *bolt.Tx) tlog.HashReaderFunc {
	b := tx.Bucket(bucketHashes)
	return func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		var k [8]byte
		for i, idx := range indexes {
			binary.BigEndian.PutUint64(k[:], uint64(idx))
			v := b.Get(k[:])
			if len(v) != tlog.HashSize {
				return nil, fmt.Errorf("%w: stored hash %d missing", ErrTampered, idx)
			}
			copy(out[i][:], v)
		}
		return out, nil
	}
}

// memoHashReader remembers the hashes r returned: the proofs of one
// batch's neighbouring entries share most of their hashes.
func memoHashReader(r tlog.HashReaderFunc) tlog.HashReaderFunc {
	memo := map[int64]tlog.Hash{}
	var miss []int64
	return func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		miss = miss[:0]
		for _, idx := range indexes {
			if _, ok := memo[idx]; !ok {
				miss = append(miss, idx)
			}
		}
		if len(miss) > 0 {
			hs, err := r(miss)
			if err != nil {
				return nil, err
			}
			for i, idx := range miss {
				memo[idx] = hs[i]
			}
		}
		for i, idx := range indexes {
			out[i] = memo[idx]
		}
		return out, nil
	}
}

// Origin returns the log's origin (its key name).
func (l *Log) Origin() string { return l.origin }

// Checkpoint returns the latest checkpoint and its signed note.
func (l *Log) Checkpoint() (Checkpoint, []byte) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.checkpoint, l.signed
}

// Size returns the size of the latest signed checkpoint.
func (l *Log) Size() int64 {
	c, _ := l.Checkpoint()
	return c.Size
}

// Close stops accepting appends, lets queued ones commit, and closes the store.
func (l *Log) Close() error {
	var err error
	l.closeOne.Do(func() {
		close(l.stop)
		<-l.stopped
		err = l.db.Close()
	})
	return err
}

// Append integrates subs for member (taken by the caller from the
// submitter's verified TLS client certificate) and returns, once the batch
// holding them is durably committed and its checkpoint signed, one receipt
// per submission, in order. If ctx ends first the entries may still be
// committed.
func (l *Log) Append(ctx context.Context, member pki.ClientID, subs []Submission) ([]AppendReceipt, error) {
	if len(subs) == 0 {
		return nil, nil
	}
	if len(subs) > l.cfg.MaxBatch {
		return nil, fmt.Errorf("%w: %d submissions, at most %d", ErrInvalid, len(subs), l.cfg.MaxBatch)
	}
	now := l.cfg.Now().UTC().Truncate(time.Millisecond)
	req := &appendReq{entries: make([][]byte, len(subs)), done: make(chan appendResult, 1)}
	for i, s := range subs {
		b, err := Entry{Member: member, Hash: s.Hash, Kind: s.Kind, Time: now}.Marshal()
		if err != nil {
			return nil, fmt.Errorf("%w: submission %d: %w", ErrInvalid, i, err)
		}
		req.entries[i] = b
	}
	select {
	case l.reqs <- req:
	case <-l.stop:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var res appendResult
	select {
	case res = <-req.done:
	case <-l.stopped:
		select {
		case res = <-req.done:
		default:
			return nil, ErrClosed
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if res.err != nil {
		return nil, res.err
	}
	out := make([]AppendReceipt, len(subs))
	err := l.db.View(func(tx *bolt.Tx) error {
		r := memoHashReader(txHashReader(tx))
		for i := range subs {
			idx := res.first + int64(i)
			p, err := tlog.ProveRecord(res.cp.Size, idx, r)
			if err != nil {
				return err
			}
			pf := ProofFile{Extra: req.entries[i], Index: idx, Proof: p, Checkpoint: res.signed}
			out[i] = AppendReceipt{Index: idx, Entry: req.entries[i], Proof: pf.Marshal()}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hashregistry: proving appended entries: %w", err)
	}
	return out, nil
}

// run is the single committer: it takes the first queued request, merges
// whatever else is queued (up to MaxBatch entries) and commits them together.
func (l *Log) run() {
	defer close(l.stopped)
	var batch []*appendReq
	for {
		batch = batch[:0]
		select {
		case r := <-l.reqs:
			batch = append(batch, r)
		case <-l.stop:
			// Commit what is already queued, then stop.
			for {
				select {
				case r := <-l.reqs:
					l.commit([]*appendReq{r})
				default:
					return
				}
			}
		}
		n := len(batch[0].entries)
	merge:
		for n < l.cfg.MaxBatch {
			select {
			case r := <-l.reqs:
				if n+len(r.entries) > l.cfg.MaxBatch {
					l.commit(batch)
					batch, n = append(batch[:0], r), 0
				} else {
					batch = append(batch, r)
				}
				n += len(r.entries)
			default:
				break merge
			}
		}
		l.commit(batch)
	}
}

// commit writes batch in one transaction with its signed checkpoint.
func (l *Log) commit(batch []*appendReq) {
	start := time.Now()
	l.mu.RLock()
	first := l.checkpoint.Size
	l.mu.RUnlock()
	var cp Checkpoint
	var signed []byte
	count := 0
	err := l.db.Update(func(tx *bolt.Tx) error {
		eb, hb, lb := tx.Bucket(bucketEntries), tx.Bucket(bucketHashes), tx.Bucket(bucketLeaves)
		eb.FillPercent, hb.FillPercent = 1, 1
		r := txHashReader(tx)
		n := first
		for _, req := range batch {
			for _, e := range req.entries {
				if err := eb.Put(u64(n), e); err != nil {
					return err
				}
				hs, err := tlog.StoredHashes(n, e, r)
				if err != nil {
					return err
				}
				base := tlog.StoredHashIndex(0, n)
				for i, h := range hs {
					if err := hb.Put(u64(base+int64(i)), h[:]); err != nil {
						return err
					}
				}
				if lb.Get(hs[0][:]) == nil {
					if err := lb.Put(hs[0][:], u64(n)); err != nil {
						return err
					}
				}
				n++
			}
		}
		count = int(n - first)
		root, err := tlog.TreeHash(n, r)
		if err != nil {
			return err
		}
		cp = Checkpoint{Origin: l.origin, Size: n, Hash: root}
		if signed, err = SignCheckpoint(cp, l.cfg.Signer); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyCheckpoint, signed)
	})
	if err == nil {
		l.mu.Lock()
		l.checkpoint, l.signed = cp, signed
		l.mu.Unlock()
		l.m.observeCommit(count, time.Since(start))
	} else {
		err = fmt.Errorf("hashregistry: commit: %w", err)
	}
	res := appendResult{first: first, signed: signed, cp: cp, err: err}
	for _, req := range batch {
		req.done <- res
		res.first += int64(len(req.entries))
	}
}

// view runs f in a read transaction.
func (l *Log) view(ctx context.Context, f func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.db.View(f)
}

// resolveSize maps 0 to the published size and refuses sizes beyond it.
func (l *Log) resolveSize(size int64) (int64, error) {
	pub := l.Size()
	if size == 0 {
		return pub, nil
	}
	if size < 0 || size > pub {
		return 0, fmt.Errorf("%w: tree size %d (published %d)", ErrNotFound, size, pub)
	}
	return size, nil
}

// ProveInclusion returns the inclusion proof of entry index in the tree of
// size entries (the published size when 0).
func (l *Log) ProveInclusion(ctx context.Context, index, size int64) (tlog.RecordProof, int64, error) {
	size, err := l.resolveSize(size)
	if err != nil {
		return nil, 0, err
	}
	if index < 0 || index >= size {
		return nil, 0, fmt.Errorf("%w: index %d in a tree of %d", ErrNotFound, index, size)
	}
	var p tlog.RecordProof
	err = l.view(ctx, func(tx *bolt.Tx) error {
		var err error
		p, err = tlog.ProveRecord(size, index, txHashReader(tx))
		return err
	})
	return p, size, err
}

// IndexOf returns the index of the first entry with the given leaf hash.
func (l *Log) IndexOf(ctx context.Context, leaf tlog.Hash) (int64, error) {
	idx := int64(-1)
	err := l.view(ctx, func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketLeaves).Get(leaf[:]); len(v) == 8 {
			idx = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if idx < 0 || idx >= l.Size() {
		return 0, fmt.Errorf("%w: leaf hash %s", ErrNotFound, leaf)
	}
	return idx, nil
}

// ProveConsistency proves the tree of oldSize entries is a prefix of the
// tree of newSize entries (the published size when 0).
func (l *Log) ProveConsistency(ctx context.Context, oldSize, newSize int64) (tlog.TreeProof, int64, error) {
	newSize, err := l.resolveSize(newSize)
	if err != nil {
		return nil, 0, err
	}
	if oldSize < 0 || oldSize > newSize {
		return nil, 0, fmt.Errorf("%w: old size %d, new size %d", ErrInvalid, oldSize, newSize)
	}
	var p tlog.TreeProof
	if oldSize == 0 || oldSize == newSize {
		return p, newSize, nil
	}
	err = l.view(ctx, func(tx *bolt.Tx) error {
		var err error
		p, err = tlog.ProveTree(newSize, oldSize, txHashReader(tx))
		return err
	})
	return p, newSize, err
}

// Entries returns up to count canonical entries from start, within the
// published tree.
func (l *Log) Entries(ctx context.Context, start, count int64) ([][]byte, error) {
	size := l.Size()
	if start < 0 || count < 0 || start > size {
		return nil, fmt.Errorf("%w: entries from %d (size %d)", ErrInvalid, start, size)
	}
	count = min(count, size-start)
	out := make([][]byte, 0, count)
	err := l.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEntries).Cursor()
		k, v := c.Seek(u64(start))
		for i := int64(0); i < count; i++ {
			if k == nil || int64(binary.BigEndian.Uint64(k)) != start+i {
				return fmt.Errorf("%w: entry %d missing", ErrTampered, start+i)
			}
			out = append(out, bytes.Clone(v))
			k, v = c.Next()
		}
		return nil
	})
	return out, err
}

// ReadTile returns the data of a C2SP tile (t.H must be 8; t.L =
// LevelEntries for an entry bundle) if the published tree covers it.
func (l *Log) ReadTile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	size := l.Size()
	if t.H != TileHeight || t.W < 1 || t.W > TileWidth || t.N < 0 {
		return nil, fmt.Errorf("%w: tile %+v", ErrInvalid, t)
	}
	level := max(t.L, 0)
	avail := size >> (TileHeight * level)
	if t.N*TileWidth+int64(t.W) > avail {
		return nil, fmt.Errorf("%w: tile %s beyond the tree of %d", ErrNotFound, TilePath(t), size)
	}
	if t.L != LevelEntries {
		var data []byte
		err := l.view(ctx, func(tx *bolt.Tx) error {
			var err error
			data, err = tlog.ReadTileData(t, txHashReader(tx))
			return err
		})
		return data, err
	}
	entries, err := l.Entries(ctx, t.N*TileWidth, int64(t.W))
	if err != nil {
		return nil, err
	}
	var b []byte
	for _, e := range entries {
		b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	}
	return b, nil
}
