package timestamp

import (
	"context"
	"crypto"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
)

// Batcher defaults.
const (
	DefaultMaxBatch      = 4096
	DefaultFlushInterval = time.Second
	DefaultTSATimeout    = 10 * time.Second
)

var (
	bucketPending = []byte("pending") // seq (8 bytes BE) → hash (32) ‖ added (unix ns, 8 BE)
	bucketBatches = []byte("batches") // id (8 bytes BE) → JSON storedBatch, stamped but not yet delivered
)

// BatcherConfig configures a Batcher.
type BatcherConfig struct {
	// Path of the bbolt file holding pending hashes and undelivered batches
	// (required). One process at a time may open it.
	Path string
	// TSAs are tried in order for every batch (at least one).
	TSAs []Stamper
	// Deliver receives the stamps of each batch (required). It is called
	// from one goroutine at a time; until it returns nil the batch stays in
	// the file and is delivered again (after a restart too), so it must be
	// idempotent: at-least-once delivery.
	Deliver func(ctx context.Context, stamps []Stamp) error
	// MaxBatch flushes as soon as this many hashes are pending
	// (DefaultMaxBatch when zero); a batch never holds more.
	MaxBatch int
	// Interval flushes whatever is pending at least this often
	// (DefaultFlushInterval when zero).
	Interval time.Duration
	// TSATimeout bounds one TSA attempt (DefaultTSATimeout when zero).
	TSATimeout time.Duration
	// Log (slog.Default() when nil), Registerer (no metrics when nil),
	// Now (time.Now when nil).
	Log        *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Validate checks cfg without side effects.
func (cfg *BatcherConfig) Validate() error {
	switch {
	case cfg.Path == "":
		return errors.New("timestamp: batcher config: path is required")
	case len(cfg.TSAs) == 0:
		return errors.New("timestamp: batcher config: at least one TSA is required")
	case cfg.Deliver == nil:
		return errors.New("timestamp: batcher config: deliver is required")
	case cfg.MaxBatch < 0 || cfg.Interval < 0 || cfg.TSATimeout < 0:
		return errors.New("timestamp: batcher config: maxBatch, interval and tsaTimeout must not be negative")
	}
	return nil
}

// Batcher collects message hashes and has them timestamped in batches. A
// hash whose Add returned nil is in the file: after a crash it is either in a
// stamped batch (delivered, or delivered again on restart) or still pending.
// Safe for concurrent use; Run drives the flushing.
type Batcher struct {
	cfg     BatcherConfig
	db      *bolt.DB
	kick    chan struct{}
	pending atomic.Int64
	flushMu sync.Mutex // one flush at a time
	closed  atomic.Bool

	mBatches  *prometheus.CounterVec
	mStamped  prometheus.Counter
	mPending  prometheus.GaugeFunc
	mOldest   prometheus.GaugeFunc
	mFailures prometheus.Counter
}

type storedBatch struct {
	ID     uint64    `json:"id"`
	TSA    string    `json:"tsa"`
	Token  []byte    `json:"token"`
	Time   time.Time `json:"genTime"`
	Hashes []Hash    `json:"hashes"`
}

// NewBatcher opens (creating) the file at cfg.Path.
func NewBatcher(cfg BatcherConfig) (*Batcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultFlushInterval
	}
	if cfg.TSATimeout == 0 {
		cfg.TSATimeout = DefaultTSATimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("timestamp: open batcher %s: %w", cfg.Path, err)
	}
	// Group commit: concurrent Adds share one transaction and one fsync.
	db.MaxBatchDelay = 2 * time.Millisecond
	var n int
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketPending, bucketBatches} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		n = tx.Bucket(bucketPending).Stats().KeyN
		return nil
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("timestamp: open batcher %s: %w", cfg.Path, err)
	}
	b := &Batcher{cfg: cfg, db: db, kick: make(chan struct{}, 1)}
	b.pending.Store(int64(n))
	b.mBatches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "passerelle_timestamp_batches_total",
		Help: "Batches stamped, by TSA position in the configured list.",
	}, []string{"tsa"})
	b.mStamped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "passerelle_timestamp_hashes_stamped_total", Help: "Message hashes stamped."})
	b.mFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "passerelle_timestamp_flush_failures_total", Help: "Flushes where no TSA gave a token."})
	b.mPending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "passerelle_timestamp_pending_hashes", Help: "Message hashes waiting for a token."},
		func() float64 { return float64(b.pending.Load()) })
	b.mOldest = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "passerelle_timestamp_oldest_pending_seconds", Help: "Age of the oldest message hash waiting for a token."},
		func() float64 { return b.PendingAge().Seconds() })
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{b.mBatches, b.mStamped, b.mFailures, b.mPending, b.mOldest} {
			if err := cfg.Registerer.Register(c); err != nil {
				db.Close()
				return nil, fmt.Errorf("timestamp: register metrics: %w", err)
			}
		}
	}
	return b, nil
}

// Add records h durably; it returns once h is committed to the file.
// Concurrent Adds share a commit.
func (b *Batcher) Add(ctx context.Context, h Hash) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := b.cfg.Now()
	err := b.db.Batch(func(tx *bolt.Tx) error { return putPending(tx, h, now) })
	if err != nil {
		return fmt.Errorf("timestamp: add: %w", err)
	}
	b.added(1)
	return nil
}

// AddMany records hs durably in one commit.
func (b *Batcher) AddMany(ctx context.Context, hs []Hash) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := b.cfg.Now()
	err := b.db.Update(func(tx *bolt.Tx) error {
		for _, h := range hs {
			if err := putPending(tx, h, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("timestamp: add: %w", err)
	}
	b.added(len(hs))
	return nil
}

func putPending(tx *bolt.Tx, h Hash, now time.Time) error {
	bk := tx.Bucket(bucketPending)
	seq, err := bk.NextSequence()
	if err != nil {
		return err
	}
	var v [40]byte
	copy(v[:32], h[:])
	binary.BigEndian.PutUint64(v[32:], uint64(now.UnixNano()))
	return bk.Put(u64(seq), v[:])
}

func u64(n uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], n)
	return k[:]
}

func (b *Batcher) added(n int) {
	if b.pending.Add(int64(n)) >= int64(b.cfg.MaxBatch) {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

// Pending is the number of hashes waiting for a token.
func (b *Batcher) Pending() int { return int(b.pending.Load()) }

// OldestPending is when the oldest hash still waiting for a token was added
// (ok false when none waits).
func (b *Batcher) OldestPending() (t time.Time, ok bool) {
	b.db.View(func(tx *bolt.Tx) error {
		_, v := tx.Bucket(bucketPending).Cursor().First()
		if len(v) == 40 {
			t, ok = time.Unix(0, int64(binary.BigEndian.Uint64(v[32:]))), true
		}
		return nil
	})
	return t, ok
}

// PendingAge is how long the oldest unstamped hash has waited (0 when none).
// The security server refuses traffic once it exceeds the federation's
// timestamping failure period.
func (b *Batcher) PendingAge() time.Duration {
	t, ok := b.OldestPending()
	if !ok {
		return 0
	}
	return max(b.cfg.Now().Sub(t), 0)
}

// Run flushes on every Interval and whenever MaxBatch hashes are pending,
// until ctx ends; then it makes one last flush attempt (bounded by
// TSATimeout) and returns nil. A flush that finds no TSA keeps the hashes
// pending and is retried on the next tick.
func (b *Batcher) Run(ctx context.Context) error {
	t := time.NewTicker(b.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.TSATimeout)
			defer cancel()
			if err := b.Flush(fctx); err != nil {
				b.cfg.Log.Warn("final timestamp flush incomplete; hashes stay pending", "err", err, "pending", b.Pending())
			}
			return nil
		case <-t.C:
		case <-b.kick:
		}
		if err := b.Flush(ctx); err != nil && ctx.Err() == nil {
			b.cfg.Log.Warn("timestamp flush failed; hashes stay pending", "err", err,
				"pending", b.Pending(), "oldestAge", b.PendingAge().String())
		}
	}
}

// Flush delivers batches stamped earlier but not yet delivered, then stamps
// everything pending, MaxBatch hashes per token. It returns an error wrapping
// ErrTSAUnavailable (or the last TSA's error) when no TSA gave a token; what
// was not stamped stays pending.
func (b *Batcher) Flush(ctx context.Context) error {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	if err := b.redeliver(ctx); err != nil {
		b.cfg.Log.Warn("timestamp delivery failed; will retry", "err", err)
	}
	for {
		keys, hashes, err := b.readPending()
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		if err := b.stampBatch(ctx, keys, hashes); err != nil {
			return err
		}
		if len(keys) < b.cfg.MaxBatch {
			return nil
		}
	}
}

func (b *Batcher) readPending() (keys [][]byte, hashes []Hash, err error) {
	err = b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketPending).Cursor()
		for k, v := c.First(); k != nil && len(keys) < b.cfg.MaxBatch; k, v = c.Next() {
			if len(v) != 40 {
				return fmt.Errorf("timestamp: corrupt pending entry %x", k)
			}
			keys = append(keys, append([]byte(nil), k...))
			var h Hash
			copy(h[:], v[:32])
			hashes = append(hashes, h)
		}
		return nil
	})
	return keys, hashes, err
}

type namer interface{ URL() string }

func stamperName(i int, s Stamper) string {
	if n, ok := s.(namer); ok {
		return n.URL()
	}
	return fmt.Sprintf("tsa[%d]", i)
}

func (b *Batcher) stampBatch(ctx context.Context, keys [][]byte, hashes []Hash) error {
	batch, err := NewBatch(hashes)
	if err != nil {
		return err
	}
	root := batch.Root()
	var tok *Token
	var name string
	var errs []error
	for i, s := range b.cfg.TSAs {
		sctx, cancel := context.WithTimeout(ctx, b.cfg.TSATimeout)
		tok, err = s.Stamp(sctx, root[:], crypto.SHA256)
		cancel()
		if err == nil {
			name = stamperName(i, s)
			b.mBatches.WithLabelValues(fmt.Sprint(i)).Inc()
			break
		}
		errs = append(errs, fmt.Errorf("%s: %w", stamperName(i, s), err))
		if ctx.Err() != nil {
			break
		}
	}
	if tok == nil {
		b.mFailures.Inc()
		return fmt.Errorf("%w: no TSA stamped the batch: %w", ErrTSAUnavailable, errors.Join(errs...))
	}
	sb := storedBatch{TSA: name, Token: tok.DER, Time: tok.Time, Hashes: hashes}
	// One transaction moves the hashes from pending to a stamped batch.
	err = b.db.Update(func(tx *bolt.Tx) error {
		pb := tx.Bucket(bucketPending)
		for _, k := range keys {
			if err := pb.Delete(k); err != nil {
				return err
			}
		}
		bb := tx.Bucket(bucketBatches)
		id, err := bb.NextSequence()
		if err != nil {
			return err
		}
		sb.ID = id
		val, err := json.Marshal(sb)
		if err != nil {
			return err
		}
		return bb.Put(u64(id), val)
	})
	if err != nil {
		return fmt.Errorf("timestamp: commit batch: %w", err)
	}
	b.pending.Add(-int64(len(keys)))
	b.mStamped.Add(float64(len(keys)))
	if err := b.deliver(ctx, sb, batch); err != nil {
		b.cfg.Log.Warn("timestamp delivery failed; will retry", "batch", sb.ID, "err", err)
	}
	return nil
}

// deliver hands a batch's stamps over and forgets the batch once accepted.
func (b *Batcher) deliver(ctx context.Context, sb storedBatch, batch *Batch) error {
	stamps := make([]Stamp, len(sb.Hashes))
	for i, h := range sb.Hashes {
		p, err := batch.Path(int64(i))
		if err != nil {
			return err
		}
		stamps[i] = Stamp{Hash: h, BatchID: sb.ID, Path: p, Token: sb.Token, Time: sb.Time, TSA: sb.TSA}
	}
	if err := b.cfg.Deliver(ctx, stamps); err != nil {
		return err
	}
	return b.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketBatches).Delete(u64(sb.ID)) })
}

func (b *Batcher) redeliver(ctx context.Context) error {
	var todo []storedBatch
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBatches).ForEach(func(k, v []byte) error {
			var sb storedBatch
			if err := json.Unmarshal(v, &sb); err != nil {
				return fmt.Errorf("corrupt batch %x: %w", k, err)
			}
			todo = append(todo, sb)
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, sb := range todo {
		batch, err := NewBatch(sb.Hashes)
		if err != nil {
			return err
		}
		if err := b.deliver(ctx, sb, batch); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the file. Pending hashes stay in it for the next NewBatcher.
// Call it after Run has returned.
func (b *Batcher) Close() error {
	b.closed.Store(true)
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	return b.db.Close()
}
