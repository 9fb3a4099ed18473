package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"

	"github.com/passerelle/passerelle/hashregistry"
	"github.com/passerelle/passerelle/pki"
)

// Errors of the outbox.
var (
	ErrClosed  = errors.New("outbox: closed")
	ErrInvalid = errors.New("outbox: invalid item")
	// ErrBadReceipt: the registry answered with a receipt that does not
	// verify or is not for the submitted item; the items stay queued.
	ErrBadReceipt = errors.New("outbox: registry returned a bad receipt")
)

var (
	bucketPending  = []byte("pending")  // 8-byte seq → item record
	bucketReceipts = []byte("receipts") // 8-byte seq → undelivered receipt
)

// MaxRef bounds an item's reference.
const MaxRef = 1024

// Item is one message hash to register. Ref is the caller's reference
// (e.g. the message id) handed back with the receipt.
type Item struct {
	Ref  string
	Hash [sha256.Size]byte
	Kind hashregistry.Kind
}

// Receipt is a registry receipt for the item with reference Ref.
type Receipt struct {
	Ref   string
	Index int64
	Entry []byte // canonical entry (hashregistry.ParseEntry)
	Proof []byte // c2sp.org/tlog-proof@v1 file (hashregistry.VerifyReceipt)
}

// Handler receives receipts, e.g. to store them in the message log. A
// receipt is removed from the outbox only after Handler returns nil; on an
// error it is delivered again later.
type Handler func(ctx context.Context, receipts []Receipt) error

// OutboxConfig configures OpenOutbox.
type OutboxConfig struct {
	Path     string   // bbolt file, created when missing
	Appender Appender // the registry
	Handler  Handler  // receipts go here (dropped when nil)
	// Verifier, when set, checks every receipt against the registry's key
	// before the item leaves the outbox.
	Verifier   note.Verifier
	BatchSize  int           // items per Append (256 when 0)
	MinBackoff time.Duration // first retry delay (100ms when 0)
	MaxBackoff time.Duration // longest retry delay (30s when 0)
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Outbox is a durable queue of items for the registry. Submit and Backlog
// are safe for concurrent use; run one Run loop.
type Outbox struct {
	cfg     OutboxConfig
	db      *bolt.DB
	subs    chan *submitReq
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
	pending atomic.Int64
}

type submitReq struct {
	items []Item
	now   time.Time
	done  chan error
}

// OpenOutbox opens (or creates) the outbox at cfg.Path.
func OpenOutbox(cfg OutboxConfig) (*Outbox, error) {
	if cfg.Path == "" || cfg.Appender == nil {
		return nil, fmt.Errorf("%w: config needs Path and Appender", ErrInvalid)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 256
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("outbox: open %s: %w", cfg.Path, err)
	}
	o := &Outbox{cfg: cfg, db: db, subs: make(chan *submitReq, 1024), wake: make(chan struct{}, 1),
		stop: make(chan struct{}), stopped: make(chan struct{})}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketPending, bucketReceipts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		o.pending.Store(int64(tx.Bucket(bucketPending).Stats().KeyN))
		return nil
	})
	if err == nil {
		err = o.register(cfg.Registerer)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	go o.committer()
	return o, nil
}

func (o *Outbox) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_registry_outbox_backlog", Help: "Items waiting for the registry."},
			func() float64 { n, _ := o.Backlog(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_registry_outbox_backlog_age_seconds", Help: "Age of the oldest waiting item."},
			func() float64 {
				_, t := o.Backlog()
				if t.IsZero() {
					return 0
				}
				return time.Since(t).Seconds()
			}),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the outbox after queued Submits are written. Run must have
// returned (or not be running).
func (o *Outbox) Close() error {
	var err error
	o.once.Do(func() {
		close(o.stop)
		<-o.stopped
		err = o.db.Close()
	})
	return err
}

// Submit queues items durably: it returns nil only once they are on disk.
// Concurrent Submits are written in one transaction (one fsync).
func (o *Outbox) Submit(ctx context.Context, items []Item) error {
	if len(items) == 0 {
		return nil
	}
	for i, it := range items {
		if !it.Kind.Valid() || len(it.Ref) > MaxRef {
			return fmt.Errorf("%w: item %d", ErrInvalid, i)
		}
	}
	req := &submitReq{items: items, now: time.Now(), done: make(chan error, 1)}
	select {
	case o.subs <- req:
	case <-o.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// committer writes queued Submits, merging whatever is queued into one
// transaction.
func (o *Outbox) committer() {
	defer close(o.stopped)
	for {
		var batch []*submitReq
		select {
		case r := <-o.subs:
			batch = append(batch, r)
		case <-o.stop:
			for {
				select {
				case r := <-o.subs:
					o.write([]*submitReq{r})
				default:
					return
				}
			}
		}
	merge:
		for len(batch) < 4096 {
			select {
			case r := <-o.subs:
				batch = append(batch, r)
			default:
				break merge
			}
		}
		o.write(batch)
	}
}

func (o *Outbox) write(batch []*submitReq) {
	n := 0
	err := o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPending)
		b.FillPercent = 1
		for _, r := range batch {
			for _, it := range r.items {
				seq, err := b.NextSequence()
				if err != nil {
					return err
				}
				if err := b.Put(u64(seq), encodeItem(it, r.now)); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	if err == nil {
		o.pending.Add(int64(n))
		select {
		case o.wake <- struct{}{}:
		default:
		}
	} else {
		err = fmt.Errorf("outbox: write: %w", err)
	}
	for _, r := range batch {
		r.done <- err
	}
}

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// item record: 8-byte queued time (Unix ns), kind, 32-byte hash, ref.
func encodeItem(it Item, queued time.Time) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(queued.UnixNano()))
	b = append(b, byte(it.Kind))
	b = append(b, it.Hash[:]...)
	return append(b, it.Ref...)
}

func decodeItem(b []byte) (Item, time.Time, error) {
	if len(b) < 8+1+sha256.Size {
		return Item{}, time.Time{}, fmt.Errorf("outbox: corrupt item of %d bytes", len(b))
	}
	it := Item{Kind: hashregistry.Kind(b[8]), Ref: string(b[41:])}
	copy(it.Hash[:], b[9:41])
	return it, time.Unix(0, int64(binary.BigEndian.Uint64(b))), nil
}

// receipt record: 2-byte ref length, ref, 8-byte index, 4-byte entry
// length, entry, proof.
func encodeReceipt(r Receipt) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(r.Ref)))
	b = append(b, r.Ref...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Index))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Entry)))
	b = append(b, r.Entry...)
	return append(b, r.Proof...)
}

func decodeReceipt(b []byte) (Receipt, error) {
	bad := fmt.Errorf("outbox: corrupt receipt of %d bytes", len(b))
	if len(b) < 2 {
		return Receipt{}, bad
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n+12 {
		return Receipt{}, bad
	}
	r := Receipt{Ref: string(b[2 : 2+n])}
	b = b[2+n:]
	r.Index = int64(binary.BigEndian.Uint64(b))
	m := int(binary.BigEndian.Uint32(b[8:]))
	b = b[12:]
	if len(b) < m {
		return Receipt{}, bad
	}
	r.Entry, r.Proof = bytes.Clone(b[:m]), bytes.Clone(b[m:])
	return r, nil
}

// Backlog returns how many items wait for the registry and when the
// oldest of them was queued (zero when none).
func (o *Outbox) Backlog() (int, time.Time) {
	var oldest time.Time
	o.db.View(func(tx *bolt.Tx) error {
		_, v := tx.Bucket(bucketPending).Cursor().First()
		if v != nil {
			_, oldest, _ = decodeItem(v)
		}
		return nil
	})
	return int(o.pending.Load()), oldest
}

// Run drains the outbox until ctx ends: it delivers any undelivered
// receipts, then sends pending items in batches of BatchSize, retrying with
// exponential backoff (and jitter) while the registry fails.
func (o *Outbox) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		if backoff > 0 {
			t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		if err := ctx.Err(); err != nil {
			return nil
		}
		if err := o.deliver(ctx); err != nil {
			o.cfg.Logger.Warn("registry receipts not delivered", "err", err.Error())
			backoff = o.next(backoff)
			continue
		}
		sent, err := o.drainOnce(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			n, oldest := o.Backlog()
			o.cfg.Logger.Warn("registry append failed; will retry", "err", err.Error(), "backlog", n, "oldest", oldest)
			backoff = o.next(backoff)
		case sent == 0:
			backoff = 0
			select {
			case <-ctx.Done():
				return nil
			case <-o.wake:
			case <-time.After(time.Second):
			}
		default:
			backoff = 0
		}
	}
}

func (o *Outbox) next(b time.Duration) time.Duration {
	if b == 0 {
		return o.cfg.MinBackoff
	}
	return min(2*b, o.cfg.MaxBackoff)
}

// drainOnce sends one batch and moves it from pending to receipts.
func (o *Outbox) drainOnce(ctx context.Context) (int, error) {
	var keys [][]byte
	var items []Item
	err := o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketPending).Cursor()
		for k, v := c.First(); k != nil && len(items) < o.cfg.BatchSize; k, v = c.Next() {
			it, _, err := decodeItem(v)
			if err != nil {
				return err
			}
			keys, items = append(keys, bytes.Clone(k)), append(items, it)
		}
		return nil
	})
	if err != nil || len(items) == 0 {
		return 0, err
	}
	subs := make([]hashregistry.Submission, len(items))
	for i, it := range items {
		subs[i] = hashregistry.Submission{Hash: it.Hash, Kind: it.Kind}
	}
	rs, err := o.cfg.Appender.Append(ctx, subs)
	if err != nil {
		return 0, err
	}
	if len(rs) != len(items) {
		return 0, fmt.Errorf("%w: %d receipts for %d items", ErrBadReceipt, len(rs), len(items))
	}
	var verifier note.Verifier
	if o.cfg.Verifier != nil {
		verifier = &memoVerifier{Verifier: o.cfg.Verifier, ok: map[[sha256.Size]byte]bool{}}
	}
	for i, r := range rs {
		e, err := hashregistry.ParseEntry(r.Entry)
		if err != nil || e.Hash != items[i].Hash || e.Kind != items[i].Kind {
			return 0, fmt.Errorf("%w: receipt %d is for another entry", ErrBadReceipt, i)
		}
		if verifier != nil {
			got, err := hashregistry.VerifyReceipt(r.Proof, verifier)
			if err != nil {
				return 0, fmt.Errorf("%w: %w", ErrBadReceipt, err)
			}
			// The proof must be about this very entry, not any entry.
			if got.Index != r.Index || got.Entry.Hash != e.Hash || got.Entry.Kind != e.Kind ||
				got.Entry.Member != e.Member || !got.Entry.Time.Equal(e.Time) {
				return 0, fmt.Errorf("%w: receipt %d proves another entry", ErrBadReceipt, i)
			}
		}
	}
	err = o.db.Update(func(tx *bolt.Tx) error {
		p, rb := tx.Bucket(bucketPending), tx.Bucket(bucketReceipts)
		for i, k := range keys {
			if err := p.Delete(k); err != nil {
				return err
			}
			if o.cfg.Handler != nil {
				rc := Receipt{Ref: items[i].Ref, Index: rs[i].Index, Entry: rs[i].Entry, Proof: rs[i].Proof}
				if err := rb.Put(k, encodeReceipt(rc)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("outbox: recording receipts: %w", err)
	}
	o.pending.Add(-int64(len(items)))
	return len(items), o.deliver(ctx)
}

// deliver hands stored receipts to the Handler and removes those it took.
func (o *Outbox) deliver(ctx context.Context) error {
	if o.cfg.Handler == nil {
		return nil
	}
	for {
		var keys [][]byte
		var rcs []Receipt
		err := o.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketReceipts).Cursor()
			for k, v := c.First(); k != nil && len(rcs) < o.cfg.BatchSize; k, v = c.Next() {
				r, err := decodeReceipt(v)
				if err != nil {
					return err
				}
				keys, rcs = append(keys, bytes.Clone(k)), append(rcs, r)
			}
			return nil
		})
		if err != nil || len(rcs) == 0 {
			return err
		}
		if err := o.cfg.Handler(ctx, rcs); err != nil {
			return fmt.Errorf("outbox: receipt handler: %w", err)
		}
		err = o.db.Update(func(tx *bolt.Tx) error {
			for _, k := range keys {
				if err := tx.Bucket(bucketReceipts).Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
}

// LogAppender adapts an in-process *hashregistry.Log (tests, a registry
// co-located with a server) to Appender, appending as Member.
type LogAppender struct {
	Log    *hashregistry.Log
	Member pki.ClientID
}

// Append implements Appender.
func (a LogAppender) Append(ctx context.Context, subs []hashregistry.Submission) ([]hashregistry.AppendReceipt, error) {
	return a.Log.Append(ctx, a.Member, subs)
}

// memoVerifier remembers the signatures it accepted. The receipts of one
// Append share their batch's checkpoint, so its signature is checked once per
// batch, not once per receipt (Ed25519 verification was a tenth of a security
// server's CPU). Each receipt's inclusion proof is still checked.
type memoVerifier struct {
	note.Verifier
	ok map[[sha256.Size]byte]bool
}

func (m *memoVerifier) Verify(msg, sig []byte) bool {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(msg)))
	h.Write(n[:])
	h.Write(msg)
	h.Write(sig)
	var k [sha256.Size]byte
	h.Sum(k[:0])
	if m.ok[k] {
		return true
	}
	if !m.Verifier.Verify(msg, sig) {
		return false
	}
	m.ok[k] = true
	return true
}
