package timestamp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/passerelle/passerelle/pki"
)

func msgHash(i int) Hash { return sha256.Sum256(fmt.Appendf(nil, "message %d", i)) }

func msgHashes(n int) []Hash {
	hs := make([]Hash, n)
	for i := range hs {
		hs[i] = msgHash(i)
	}
	return hs
}

func TestBatchPaths(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			hs := msgHashes(n)
			b, err := NewBatch(hs)
			if err != nil {
				t.Fatal(err)
			}
			if n == 1 && b.Root() != tlog.RecordHash(hs[0][:]) {
				t.Errorf("root of one = %v, want RecordHash(m0)", b.Root())
			}
			for i, h := range hs {
				p, err := b.Path(int64(i))
				if err != nil {
					t.Fatal(err)
				}
				if err := tlog.CheckRecord(p.Proof, p.Size, b.Root(), p.Index, tlog.RecordHash(h[:])); err != nil {
					t.Errorf("CheckRecord(%d) = %v", i, err)
				}
				// The message hash itself is not a leaf.
				if n > 1 && tlog.CheckRecord(p.Proof, p.Size, b.Root(), p.Index, h) == nil {
					t.Errorf("CheckRecord(%d) accepted the raw message hash as a leaf", i)
				}
				text, _ := p.MarshalText()
				q, err := ParseBatchPath(text)
				if err != nil {
					t.Fatalf("ParseBatchPath(%q) = %v", text, err)
				}
				if q.Index != p.Index || q.Size != p.Size || len(q.Proof) != len(p.Proof) {
					t.Errorf("round trip = %+v, want %+v", q, p)
				}
			}
		})
	}
	if _, err := NewBatch(nil); err == nil {
		t.Error("NewBatch(nil) = nil error")
	}
}

func TestBatchVerify(t *testing.T) {
	tsa := newTestTSA(t)
	hs := msgHashes(10)
	b, err := NewBatch(hs)
	if err != nil {
		t.Fatal(err)
	}
	root := b.Root()
	tok, err := tsa.client(t, nil).Stamp(t.Context(), root[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	p3, _ := b.Path(3)
	p4, _ := b.Path(4)
	tampered, _ := b.Path(3)
	tampered.Proof = append([]Hash(nil), tampered.Proof...)
	tampered.Proof[0][0] ^= 1
	cases := []struct {
		name string
		msg  Hash
		path BatchPath
		want error
	}{
		{"ok", hs[3], p3, nil},
		{"other message", msgHash(99), p3, ErrBadProof},
		{"other path", hs[3], p4, ErrBadProof},
		{"tampered path", hs[3], tampered, ErrBadProof},
		{"bad index", hs[3], BatchPath{Index: 10, Size: 10, Proof: p3.Proof}, ErrBadProof},
		{"other index", hs[3], BatchPath{Index: 2, Size: 10, Proof: p3.Proof}, ErrBadProof},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.msg, tc.path, tok.DER, tsa.ca.Pool(), VerifyOptions{})
			if !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseBatchPathErrors(t *testing.T) {
	h := msgHash(0).String()
	for _, text := range []string{
		"",
		"passerelle-batch-path/v1\nindex 0\nsize 1",
		"passerelle-batch-path/v2\nindex 0\nsize 1\n",
		"passerelle-batch-path/v1\nindex 1\nsize 1\n",
		"passerelle-batch-path/v1\nindex 0\nsize 0\n",
		"passerelle-batch-path/v1\nindex -1\nsize 2\n",
		"passerelle-batch-path/v1\nindex 01\nsize 2\n",
		"passerelle-batch-path/v1\nindex 0\nsize 2\n" + h + "x\n",
		"passerelle-batch-path/v1\nindex 0\nsize 2\n\n",
		"passerelle-batch-path/v1\nindex 0\nsize 2\n" + h,
	} {
		if _, err := ParseBatchPath([]byte(text)); !errors.Is(err, ErrBadProof) {
			t.Errorf("ParseBatchPath(%q) = %v, want ErrBadProof", text, err)
		}
	}
}

func FuzzParseBatchPath(f *testing.F) {
	b, _ := NewBatch(msgHashes(5))
	for i := range int64(5) {
		p, _ := b.Path(i)
		text, _ := p.MarshalText()
		f.Add(text)
	}
	f.Add([]byte("passerelle-batch-path/v1\nindex 0\nsize 1\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		p, err := ParseBatchPath(text)
		if err != nil {
			return
		}
		out, _ := p.MarshalText()
		if !bytes.Equal(out, text) {
			t.Errorf("ParseBatchPath(%q) re-marshals to %q", text, out)
		}
	})
}

// collector gathers delivered stamps.
type collector struct {
	mu     sync.Mutex
	stamps map[Hash]Stamp
	calls  int
	fail   bool
}

func newCollector() *collector { return &collector{stamps: map[Hash]Stamp{}} }

func (c *collector) deliver(_ context.Context, ss []Stamp) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.fail {
		return errors.New("message log unavailable")
	}
	for _, s := range ss {
		c.stamps[s.Hash] = s
	}
	return nil
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.stamps)
}

// switchable is a TSA that can be taken down.
type switchable struct {
	mu   sync.Mutex
	down bool
	h    http.Handler
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	s.h.ServeHTTP(w, r)
}

func (s *switchable) set(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

func newBatcher(t *testing.T, path string, tsas []Stamper, c *collector, mod func(*BatcherConfig)) *Batcher {
	t.Helper()
	cfg := BatcherConfig{Path: path, TSAs: tsas, Deliver: c.deliver, Interval: time.Hour, TSATimeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	b, err := NewBatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestBatcherFailoverOutageRestart(t *testing.T) {
	tsa := newTestTSA(t)
	sw := &switchable{h: tsa.srv}
	hs := httptest.NewServer(sw)
	defer hs.Close()
	primary := tsa.client(t, func(c *ClientConfig) { c.URL = hs.URL })
	backup := newTestTSAWith(t, tsa.ca, tsa.ca.Issue(t, pki.ClientID{}, pki.UsageTSA))
	bsw := &switchable{h: backup.srv}
	bhs := httptest.NewServer(bsw)
	defer bhs.Close()
	second := backup.client(t, func(c *ClientConfig) { c.URL = bhs.URL })
	tsas := []Stamper{primary, second}

	clk := &clock{now: time.Now()}
	path := filepath.Join(t.TempDir(), "batcher.db")
	col := newCollector()
	b := newBatcher(t, path, tsas, col, func(c *BatcherConfig) { c.Now = clk.Now })
	t.Cleanup(func() { b.Close() }) // the last one opened
	ctx := t.Context()

	t.Run("failover", func(t *testing.T) {
		sw.set(true)
		if err := b.AddMany(ctx, msgHashes(10)); err != nil {
			t.Fatal(err)
		}
		if err := b.Flush(ctx); err != nil {
			t.Fatalf("Flush = %v", err)
		}
		if col.len() != 10 || b.Pending() != 0 {
			t.Fatalf("delivered %d, pending %d; want 10, 0", col.len(), b.Pending())
		}
		for h, s := range col.stamps {
			if s.TSA != bhs.URL {
				t.Errorf("stamp TSA = %q, want the backup %q", s.TSA, bhs.URL)
			}
			if _, err := s.Verify(tsa.ca.Pool(), VerifyOptions{}); err != nil || s.Hash != h {
				t.Errorf("stamp.Verify = %v", err)
			}
		}
	})

	extra := []Hash{msgHash(100), msgHash(101), msgHash(102)}
	t.Run("outage", func(t *testing.T) {
		bsw.set(true)
		for _, h := range extra {
			if err := b.Add(ctx, h); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Flush(ctx); !errors.Is(err, ErrTSAUnavailable) {
			t.Errorf("Flush with every TSA down = %v, want ErrTSAUnavailable", err)
		}
		clk.add(time.Hour)
		if got := b.PendingAge(); got != time.Hour {
			t.Errorf("PendingAge = %v, want 1h", got)
		}
		if b.Pending() != 3 {
			t.Errorf("Pending = %d, want 3", b.Pending())
		}
	})

	t.Run("restart", func(t *testing.T) {
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Add(ctx, msgHash(1000)); !errors.Is(err, ErrClosed) {
			t.Errorf("Add after Close = %v, want ErrClosed", err)
		}
		sw.set(false)
		b = newBatcher(t, path, tsas, col, func(c *BatcherConfig) { c.Now = clk.Now })
		if b.Pending() != 3 || b.PendingAge() != time.Hour {
			t.Fatalf("after restart: pending %d age %v, want 3 and 1h", b.Pending(), b.PendingAge())
		}
		if err := b.Flush(ctx); err != nil {
			t.Fatalf("Flush = %v", err)
		}
		if b.Pending() != 0 || b.PendingAge() != 0 {
			t.Errorf("after flush: pending %d age %v, want 0", b.Pending(), b.PendingAge())
		}
		for _, h := range extra {
			s, ok := col.stamps[h]
			if !ok {
				t.Fatalf("hash %v not delivered", h)
			}
			if s.TSA != hs.URL {
				t.Errorf("stamp TSA = %q, want the primary %q", s.TSA, hs.URL)
			}
			if _, err := s.Verify(tsa.ca.Pool(), VerifyOptions{}); err != nil {
				t.Errorf("stamp.Verify = %v", err)
			}
		}
	})

	t.Run("delivery retried", func(t *testing.T) {
		col.fail = true
		h := msgHash(200)
		if err := b.Add(ctx, h); err != nil {
			t.Fatal(err)
		}
		if err := b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		col.fail = false
		if _, ok := col.stamps[h]; ok {
			t.Fatal("delivered while the receiver failed")
		}
		if err := b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok := col.stamps[h]; !ok {
			t.Error("stamp not delivered again after the receiver recovered")
		}
	})
}

func TestBatcherRunSizeAndInterval(t *testing.T) {
	tsa := newTestTSA(t)
	col := newCollector()
	b := newBatcher(t, filepath.Join(t.TempDir(), "b.db"), []Stamper{tsa.client(t, nil)}, col, func(c *BatcherConfig) {
		c.MaxBatch = 8
		c.Interval = 50 * time.Millisecond
	})
	defer b.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := b.Add(ctx, msgHash(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for col.len() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	if col.len() != n {
		t.Fatalf("delivered %d, want %d", col.len(), n)
	}
	for _, s := range col.stamps {
		if s.Path.Size > 8 {
			t.Errorf("batch of %d, want at most MaxBatch 8", s.Path.Size)
		}
	}
}
