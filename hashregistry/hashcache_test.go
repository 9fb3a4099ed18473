package hashregistry

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// memTree is a whole tree's stored hashes in memory: the reference the
// in-memory shortcuts are checked against.
type memTree []tlog.Hash

func (m *memTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(*m)) {
			return nil, fmt.Errorf("stored hash %d of %d", x, len(*m))
		}
		out[i] = (*m)[x]
	}
	return out, nil
}

func (m *memTree) add(t *testing.T, n int64) {
	hs, err := tlog.StoredHashes(n, fmt.Appendf(nil, "entry %d", n), m)
	if err != nil {
		t.Fatal(err)
	}
	*m = append(*m, hs...)
}

// TestBatchNeedsOnlyEdgeAndFresh checks the claim commit and Append rely
// on: appending a batch, computing its root and proving each of its entries
// read only the right edge of the tree before the batch and the hashes the
// batch stores, never the store (batchHashes has no fallback here).
func TestBatchNeedsOnlyEdgeAndFresh(t *testing.T) {
	for _, first := range []int64{0, 1, 2, 3, 7, 8, 255, 256, 257, 1000, 4095} {
		for _, count := range []int64{1, 2, 5, 256, 300} {
			t.Run(fmt.Sprintf("first=%d/count=%d", first, count), func(t *testing.T) {
				var full memTree
				for n := range first {
					full.add(t, n)
				}
				edge, err := readEdge(first, &full)
				if err != nil {
					t.Fatal(err)
				}
				base := tlog.StoredHashIndex(0, first)
				bh := &batchHashes{base: base, edge: edge}
				for n := first; n < first+count; n++ {
					hs, err := tlog.StoredHashes(n, fmt.Appendf(nil, "entry %d", n), bh)
					if err != nil {
						t.Fatalf("StoredHashes(%d) from the edge: %v", n, err)
					}
					bh.fresh = append(bh.fresh, hs...)
					full.add(t, n)
				}
				size := first + count
				root, err := tlog.TreeHash(size, bh)
				if err != nil {
					t.Fatalf("TreeHash(%d) from the batch: %v", size, err)
				}
				if want, _ := tlog.TreeHash(size, &full); root != want {
					t.Fatalf("TreeHash(%d) = %v, want %v", size, root, want)
				}
				for n := first; n < size; n++ {
					p, err := tlog.ProveRecord(size, n, bh)
					if err != nil {
						t.Fatalf("ProveRecord(%d, %d) from the batch: %v", size, n, err)
					}
					if err := tlog.CheckRecord(p, size, root, n, tlog.RecordHash(fmt.Appendf(nil, "entry %d", n))); err != nil {
						t.Fatalf("CheckRecord(%d, %d): %v", size, n, err)
					}
				}
				if _, err := readEdge(size, bh); err != nil {
					t.Fatalf("next edge from the batch: %v", err)
				}
			})
		}
	}
}

// TestIndexOfPendingFlushedReopened looks entries up by leaf hash while
// their index is pending in memory, once written to bbolt, after a restart
// that lost part of the index, and checks the first occurrence wins and a
// tampered index is caught.
func TestIndexOfPendingFlushedReopened(t *testing.T) {
	k := newTestKeys(t, testOrigin)
	path := filepath.Join(t.TempDir(), "log.db")
	fixed := func() time.Time { return time.UnixMilli(1700000000000) }
	open := func() *Log {
		t.Helper()
		l, err := Open(t.Context(), Config{Path: path, Signer: k.signer, Verifier: k.verifier, Now: fixed})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	leafOf := func(rs []AppendReceipt, i int) tlog.Hash { return tlog.RecordHash(rs[i].Entry) }
	check := func(l *Log, leaf tlog.Hash, want int64) {
		t.Helper()
		if got, err := l.IndexOf(t.Context(), leaf); err != nil || got != want {
			t.Fatalf("IndexOf = %d, %v; want %d", got, err, want)
		}
	}

	l := open()
	a := appendN(t, l, 0, 100)
	dup := appendN(t, l, 37, 1) // same member, hash, kind and time: the same entry, index 100
	if dup[0].Index != 100 || leafOf(dup, 0) != leafOf(a, 37) {
		t.Fatalf("duplicate entry at %d with leaf %v, want 100 with the leaf of 37", dup[0].Index, leafOf(dup, 0))
	}
	check(l, leafOf(a, 37), 37) // both pending: the first
	check(l, leafOf(a, 99), 99)
	l.Close() // flushes the pending index

	l = open()
	if got := l.tail.len(); got != 0 {
		t.Fatalf("pending leaf hashes after a clean close and reopen = %d, want 0", got)
	}
	b := appendN(t, l, 37, 1) // pending again, index 101; 37 is on disk
	check(l, leafOf(b, 0), 37)
	check(l, leafOf(a, 5), 5)
	l.Close()

	// A crash before the index caught up: only the first 50 entries indexed.
	tamper(t, path, func(tx *bolt.Tx) error {
		lb := tx.Bucket(bucketLeaves)
		for i := 50; i < 100; i++ {
			h := leafOf(a, i)
			if err := lb.Delete(h[:]); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyLeavesIndexed, u64(50))
	})
	l = open()
	check(l, leafOf(a, 70), 70)
	check(l, leafOf(a, 10), 10)
	if _, err := l.IndexOf(t.Context(), tlog.RecordHash([]byte("never logged"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("IndexOf(unknown) err = %v, want ErrNotFound", err)
	}
	l.Close()

	// An operator points the index at another entry: refused, not served.
	tamper(t, path, func(tx *bolt.Tx) error {
		h := leafOf(a, 10)
		return tx.Bucket(bucketLeaves).Put(h[:], u64(11))
	})
	l = open()
	if _, err := l.IndexOf(t.Context(), leafOf(a, 10)); !errors.Is(err, ErrTampered) {
		t.Fatalf("IndexOf with a tampered index: err = %v, want ErrTampered", err)
	}
}
