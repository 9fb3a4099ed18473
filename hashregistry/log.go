package hashregistry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
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
	// keyLeavesIndexed: 8-byte BE count of entries the leaves bucket
	// covers. The leaf index is derived data, written behind the log in
	// sorted passes (flushLeaves); absent in stores that predate it, which
	// indexed every entry in its commit.
	keyLeavesIndexed = []byte("leaves-indexed")
)

// The leaf-hash index is written in one sorted pass once leafFlushAt
// entries are pending, or when no batch came for leafFlushIdle: random
// inserts into a large B+tree, one batch at a time, were the costliest part
// of a commit. Until then, pending leaf hashes are looked up in memory.
const (
	leafFlushAt   = 1 << 16
	leafFlushIdle = 200 * time.Millisecond
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

	// Owned by the committer (and by Open before it starts).
	edge          map[int64]tlog.Hash // right edge of the published tree
	leavesIndexed int64               // entries the on-disk leaf index covers

	upper upperCache // stored hashes at level >= cacheLevel
	tail  leafTail   // leaf hashes of entries from leavesIndexed on

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
	hashes tlog.HashReader // the batch's hashes and the edge before it
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
	// A large initial mapping (address space, not memory) spares the
	// growing log most re-mmaps, which wait for every read transaction and
	// so stall proofs while appends run.
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{
		Timeout: 2 * time.Second, NoSync: cfg.NoSync, NoFreelistSync: true, InitialMmapSize: 1 << 30,
	})
	if err != nil {
		return nil, fmt.Errorf("hashregistry: open %s: %w", cfg.Path, err)
	}
	l := &Log{
		db: db, cfg: cfg, origin: cfg.Signer.Name(),
		reqs: make(chan *appendReq, 1024), stop: make(chan struct{}), stopped: make(chan struct{}),
		upper: upperCache{m: map[int64]tlog.Hash{}}, tail: leafTail{m: map[tlog.Hash]int64{}},
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
			l.checkpoint, l.signed, l.edge = cp, s, map[int64]tlog.Hash{}
			if err := tx.Bucket(bucketMeta).Put(keyLeavesIndexed, u64(0)); err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Put(keyCheckpoint, s)
		}
		cp, err := OpenCheckpoint(signed, l.cfg.Verifier)
		if err != nil {
			return fmt.Errorf("%w: stored checkpoint: %w", ErrTampered, err)
		}
		l.leavesIndexed = cp.Size
		if v := tx.Bucket(bucketMeta).Get(keyLeavesIndexed); v != nil {
			if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) > cp.Size {
				return fmt.Errorf("%w: leaf index covers %x entries of %d", ErrTampered, v, cp.Size)
			}
			l.leavesIndexed = int64(binary.BigEndian.Uint64(v))
		}
		if !l.cfg.skipVerify {
			// Keep what the hot paths need in memory as it is recomputed.
			var upper, leaves []indexedHash
			err := verifyTree(ctx, tx, cp, func(n int64, hs []tlog.Hash) {
				base := tlog.StoredHashIndex(0, n)
				for lvl := cacheLevel; lvl < len(hs); lvl++ {
					upper = append(upper, indexedHash{base + int64(lvl), hs[lvl]})
				}
				if n >= l.leavesIndexed {
					leaves = append(leaves, indexedHash{n, hs[0]})
				}
			})
			if err != nil {
				return err
			}
			l.upper.add(upper)
			l.tail.add(leaves)
		}
		edge, err := readEdge(cp.Size, txHashReader(tx))
		if err != nil && !l.cfg.skipVerify {
			return fmt.Errorf("%w: %w", ErrTampered, err)
		} else if err != nil {
			edge = map[int64]tlog.Hash{} // a dishonest test registry; appends read bbolt
		}
		l.checkpoint, l.signed, l.edge = cp, bytes.Clone(signed), edge
		return nil
	})
}

func emptyTreeHash() tlog.Hash {
	h, _ := tlog.TreeHash(0, nil)
	return h
}

// verifyTree recomputes every stored hash and the root from the entries and
// compares them with the store and with cp. It walks the entries and the
// stored hashes in one sequential pass each, keeping the right edge of the
// tree in memory (all a next entry's hashes need), and hands visit each
// entry's stored hashes once they matched.
func verifyTree(ctx context.Context, tx *bolt.Tx, cp Checkpoint, visit func(n int64, hs []tlog.Hash)) error {
	hc := tx.Bucket(bucketHashes).Cursor()
	hk, hv := hc.First()
	edge := &batchHashes{edge: map[int64]tlog.Hash{}}
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
		hs, err := tlog.StoredHashes(n, v, edge)
		if err != nil {
			return fmt.Errorf("%w: entry %d: %w", ErrTampered, n, err)
		}
		base := tlog.StoredHashIndex(0, n)
		for i, h := range hs {
			want := base + int64(i)
			if len(hk) != 8 || int64(binary.BigEndian.Uint64(hk)) != want {
				return fmt.Errorf("%w: stored hash %d missing (found key %x)", ErrTampered, want, hk)
			}
			if !bytes.Equal(hv, h[:]) {
				return fmt.Errorf("%w: stored hash %d does not match entry %d", ErrTampered, want, n)
			}
			hk, hv = hc.Next()
		}
		// The subtrees entry n completed merge into one at level len(hs)-1.
		top := len(hs) - 1
		for lvl := range top {
			delete(edge.edge, tlog.StoredHashIndex(lvl, (n>>lvl)-1))
		}
		edge.edge[tlog.StoredHashIndex(top, n>>top)] = hs[top]
		visit(n, hs)
		n++
	}
	if n != cp.Size {
		return fmt.Errorf("%w: %d entries, checkpoint says %d", ErrTampered, n, cp.Size)
	}
	if hk != nil {
		return fmt.Errorf("%w: stored hash %x beyond the %d entries", ErrTampered, hk, n)
	}
	root, err := tlog.TreeHash(n, edge)
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

// hashReader reads stored hashes from the upper cache, else from tx.
func (l *Log) hashReader(tx *bolt.Tx) tlog.HashReaderFunc {
	b := tx.Bucket(bucketHashes)
	return func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		var k [8]byte
		l.upper.mu.RLock()
		defer l.upper.mu.RUnlock()
		for i, idx := range indexes {
			if h, ok := l.upper.m[idx]; ok {
				out[i] = h
				continue
			}
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

// viewReader reads stored hashes in a read transaction of its own.
func (l *Log) viewReader(indexes []int64) ([]tlog.Hash, error) {
	var out []tlog.Hash
	err := l.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = l.hashReader(tx)(indexes)
		return err
	})
	return out, err
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
	if err := marshalEntries(req.entries, member, now, subs); err != nil {
		return nil, err
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
	// The batch's proofs need only the hashes the batch stored and the
	// right edge before it, which the committer hands over in memory.
	pfs := make([]ProofFile, len(subs))
	total := 0
	for i := range subs {
		idx := res.first + int64(i)
		p, err := tlog.ProveRecord(res.cp.Size, idx, res.hashes)
		if err != nil {
			return nil, fmt.Errorf("hashregistry: proving appended entry %d: %w", idx, err)
		}
		pfs[i] = ProofFile{Extra: req.entries[i], Index: idx, Proof: p, Checkpoint: res.signed}
		total += pfs[i].size()
	}
	out := make([]AppendReceipt, len(subs))
	buf := make([]byte, 0, total)
	for i, pf := range pfs {
		start := len(buf)
		buf = pf.AppendTo(buf)
		out[i] = AppendReceipt{Index: pf.Index, Entry: pf.Extra, Proof: buf[start:len(buf):len(buf)]}
	}
	return out, nil
}

// marshalEntries encodes one canonical entry per submission into out, all
// in one allocation.
func marshalEntries(out [][]byte, member pki.ClientID, now time.Time, subs []Submission) error {
	e := Entry{Member: member, Time: now}
	m, err := e.member()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	size := entryFixed + len(m)
	slab := make([]byte, 0, size*len(subs))
	for i, s := range subs {
		if !s.Kind.Valid() {
			return fmt.Errorf("%w: submission %d: %w: kind %d", ErrInvalid, i, ErrBadEntry, s.Kind)
		}
		e.Hash, e.Kind = s.Hash, s.Kind
		slab = e.appendTo(slab, m)
		out[i] = slab[len(slab)-size : len(slab) : len(slab)]
	}
	return nil
}

// run is the single committer: it takes the first queued request, merges
// whatever else is queued (up to MaxBatch entries) and commits them
// together. Between batches it moves pending leaf hashes to the on-disk
// index (flushLeaves) when enough are pending or the log is idle.
func (l *Log) run() {
	defer close(l.stopped)
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	defer idle.Stop()
	var batch []*appendReq
	for {
		batch = batch[:0]
		select {
		case r := <-l.reqs:
			batch = append(batch, r)
		case <-idle.C:
			l.flushLeaves()
			continue
		case <-l.stop:
			// Commit what is already queued, then stop.
			for {
				select {
				case r := <-l.reqs:
					l.commit([]*appendReq{r})
				default:
					l.flushLeaves()
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
		if l.tail.len() >= leafFlushAt {
			l.flushLeaves()
		} else {
			idle.Reset(leafFlushIdle)
		}
	}
}

// commit integrates batch: it computes the batch's stored hashes and the
// new root in memory (from the right edge of the tree; no bbolt reads),
// writes entries, hashes and the signed checkpoint in one transaction (one
// fsync), then publishes the checkpoint.
func (l *Log) commit(batch []*appendReq) {
	start := time.Now()
	first := l.Size()
	count := 0
	for _, req := range batch {
		count += len(req.entries)
	}
	base := tlog.StoredHashIndex(0, first)
	n := first + int64(count)
	bh := &batchHashes{
		base: base, fresh: make([]tlog.Hash, 0, tlog.StoredHashCount(n)-base),
		edge: l.edge, fallback: l.viewReader,
	}
	var (
		upper  []indexedHash
		leaves = make([]indexedHash, 0, count)
		cp     Checkpoint
		signed []byte
	)
	err := func() error {
		i := first
		for _, req := range batch {
			for _, e := range req.entries {
				hs, err := tlog.StoredHashes(i, e, bh)
				if err != nil {
					return err
				}
				at := base + int64(len(bh.fresh))
				for lvl := cacheLevel; lvl < len(hs); lvl++ {
					upper = append(upper, indexedHash{at + int64(lvl), hs[lvl]})
				}
				leaves = append(leaves, indexedHash{i, hs[0]})
				bh.fresh = append(bh.fresh, hs...)
				i++
			}
		}
		root, err := tlog.TreeHash(n, bh)
		if err != nil {
			return err
		}
		cp = Checkpoint{Origin: l.origin, Size: n, Hash: root}
		if signed, err = SignCheckpoint(cp, l.cfg.Signer); err != nil {
			return err
		}
		keys := make([]byte, 8*(count+len(bh.fresh)))
		key := func(x int64) []byte {
			k := keys[:8:8]
			keys = keys[8:]
			binary.BigEndian.PutUint64(k, uint64(x))
			return k
		}
		return l.db.Update(func(tx *bolt.Tx) error {
			eb, hb := tx.Bucket(bucketEntries), tx.Bucket(bucketHashes)
			eb.FillPercent, hb.FillPercent = 1, 1
			i := first
			for _, req := range batch {
				for _, e := range req.entries {
					if err := eb.Put(key(i), e); err != nil {
						return err
					}
					i++
				}
			}
			for j := range bh.fresh {
				if err := hb.Put(key(base+int64(j)), bh.fresh[j][:]); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(keyCheckpoint, signed)
		})
	}()
	var edge map[int64]tlog.Hash
	if err == nil {
		edge, err = readEdge(n, bh)
	}
	res := appendResult{first: first, signed: signed, cp: cp, hashes: bh, err: err}
	if err == nil {
		l.upper.add(upper)
		l.tail.add(leaves)
		l.edge = edge
		l.mu.Lock()
		l.checkpoint, l.signed = cp, signed
		l.mu.Unlock()
		l.m.observeCommit(count, time.Since(start))
	} else {
		res.err = fmt.Errorf("hashregistry: commit: %w", err)
	}
	for _, req := range batch {
		req.done <- res
		res.first += int64(len(req.entries))
	}
}

// flushLeaves writes the pending leaf hashes to the on-disk leaf index in
// one sorted pass and records how many entries it now covers. The index is
// derived from the entries, so a failure only leaves the hashes pending
// (and a crash has Open recompute them).
func (l *Log) flushLeaves() {
	size := l.Size()
	if size == l.leavesIndexed {
		return
	}
	l.tail.mu.RLock()
	pending := make([]indexedHash, 0, len(l.tail.m))
	for h, i := range l.tail.m {
		pending = append(pending, indexedHash{i, h})
	}
	l.tail.mu.RUnlock()
	slices.SortFunc(pending, func(a, b indexedHash) int { return bytes.Compare(a.h[:], b.h[:]) })
	vals := make([]byte, 8*len(pending))
	err := l.db.Update(func(tx *bolt.Tx) error {
		lb := tx.Bucket(bucketLeaves)
		for k, x := range pending {
			if lb.Get(x.h[:]) != nil {
				continue // an earlier entry has this leaf hash
			}
			v := vals[8*k : 8*k+8 : 8*k+8]
			binary.BigEndian.PutUint64(v, uint64(x.idx))
			if err := lb.Put(pending[k].h[:], v); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyLeavesIndexed, u64(size))
	})
	if err != nil {
		l.m.leafFlushErrors.Inc()
		return
	}
	l.tail.mu.Lock()
	l.tail.m = map[tlog.Hash]int64{}
	l.tail.mu.Unlock()
	l.leavesIndexed = size
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
		p, err = tlog.ProveRecord(size, index, l.hashReader(tx))
		return err
	})
	return p, size, err
}

// IndexOf returns the index of the first entry with the given leaf hash.
func (l *Log) IndexOf(ctx context.Context, leaf tlog.Hash) (int64, error) {
	size := l.Size()
	// The pending tail first: a flush may move it to disk meanwhile, and
	// an entry on disk is always the earlier one.
	idx, ok := l.tail.get(leaf)
	if !ok {
		idx = -1
	}
	err := l.view(ctx, func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketLeaves).Get(leaf[:]); len(v) == 8 {
			if i := int64(binary.BigEndian.Uint64(v)); idx < 0 || i < idx {
				idx = i
			}
		}
		if idx < 0 || idx >= size {
			return nil
		}
		// The index is derived data: check it against the stored leaf hash.
		hs, err := l.hashReader(tx)([]int64{tlog.StoredHashIndex(0, idx)})
		if err != nil {
			return err
		}
		if hs[0] != leaf {
			return fmt.Errorf("%w: leaf index names entry %d for a leaf hash it does not have", ErrTampered, idx)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if idx < 0 || idx >= size {
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
		p, err = tlog.ProveTree(newSize, oldSize, l.hashReader(tx))
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
	if t.N > avail/TileWidth || t.N*TileWidth+int64(t.W) > avail { // the first test keeps N*TileWidth from overflowing
		return nil, fmt.Errorf("%w: tile %s beyond the tree of %d", ErrNotFound, TilePath(t), size)
	}
	if t.L != LevelEntries {
		var data []byte
		err := l.view(ctx, func(tx *bolt.Tx) error {
			var err error
			data, err = tlog.ReadTileData(t, l.hashReader(tx))
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
