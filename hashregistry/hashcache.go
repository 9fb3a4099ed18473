package hashregistry

import (
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// What the log keeps in memory so that its hot paths do not read bbolt:
//
//   - the right edge of the tree: the hashes of the complete subtrees the
//     tree of the current size decomposes into (at most 63). Appending an
//     entry, computing the root and proving the entries of a fresh batch
//     read only these and the hashes the batch itself stores (batchHashes).
//   - every stored hash at level cacheLevel and above (1/2^cacheLevel of
//     the entries: 4,096 hashes, 128 KiB of hashes, per million entries):
//     the upper part of every inclusion and consistency proof.
//   - the leaf hashes of the entries the on-disk leaf index does not hold
//     yet (leafTail, below).
//
// Every hash in memory was either computed by commit or recomputed from the
// entries when the log was opened, and stored hashes never change, so these
// caches never disagree with a verified store.

// cacheLevel is the lowest tree level whose stored hashes stay in memory.
const cacheLevel = 8

// upperCache holds the stored hashes at level cacheLevel and above. Safe
// for concurrent use.
type upperCache struct {
	mu sync.RWMutex
	m  map[int64]tlog.Hash
}

func (c *upperCache) add(hs []indexedHash) {
	if len(hs) == 0 {
		return
	}
	c.mu.Lock()
	for _, x := range hs {
		c.m[x.idx] = x.h
	}
	c.mu.Unlock()
}

type indexedHash struct {
	idx int64
	h   tlog.Hash
}

// edgeIndexes returns the stored-hash indexes of the complete subtrees the
// tree of n entries decomposes into, largest (leftmost) first.
func edgeIndexes(n int64) []int64 {
	var out []int64
	var start int64
	for level := 62; level >= 0; level-- {
		if n&(1<<level) != 0 {
			out = append(out, tlog.StoredHashIndex(level, start>>level))
			start += 1 << level
		}
	}
	return out
}

// readEdge reads the right edge of the tree of n entries through r.
func readEdge(n int64, r tlog.HashReader) (map[int64]tlog.Hash, error) {
	idx := edgeIndexes(n)
	hs, err := r.ReadHashes(idx)
	if err != nil {
		return nil, err
	}
	edge := make(map[int64]tlog.Hash, len(idx))
	for i, x := range idx {
		edge[x] = hs[i]
	}
	return edge, nil
}

// batchHashes reads the stored hashes of one batch (fresh, contiguous from
// stored index base) and the right edge of the tree before it (edge),
// which is all that appending the batch, its root and its entries' proofs
// need. Anything else goes to fallback. It is immutable once the batch is
// committed, so the batch's submitters read it concurrently.
type batchHashes struct {
	base     int64
	fresh    []tlog.Hash
	edge     map[int64]tlog.Hash
	fallback tlog.HashReaderFunc // nil: a miss is an error
}

func (b *batchHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var miss []int
	for i, idx := range indexes {
		if j := idx - b.base; j >= 0 && j < int64(len(b.fresh)) {
			out[i] = b.fresh[j]
		} else if h, ok := b.edge[idx]; ok {
			out[i] = h
		} else {
			miss = append(miss, i)
		}
	}
	if len(miss) == 0 {
		return out, nil
	}
	if b.fallback == nil {
		return nil, fmt.Errorf("hashregistry: stored hash %d not in the batch or the right edge", indexes[miss[0]])
	}
	idx := make([]int64, len(miss))
	for k, i := range miss {
		idx[k] = indexes[i]
	}
	hs, err := b.fallback(idx)
	if err != nil {
		return nil, err
	}
	for k, i := range miss {
		out[i] = hs[k]
	}
	return out, nil
}

// leafTail maps the leaf hashes of the entries the on-disk leaf index does
// not hold yet to their first index. The committer adds to it and moves it
// to disk in one sorted pass (flushLeaves); readers look it up. Safe for
// concurrent use.
type leafTail struct {
	mu sync.RWMutex
	m  map[tlog.Hash]int64
}

func (t *leafTail) get(h tlog.Hash) (int64, bool) {
	t.mu.RLock()
	i, ok := t.m[h]
	t.mu.RUnlock()
	return i, ok
}

func (t *leafTail) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}

func (t *leafTail) add(hs []indexedHash) {
	t.mu.Lock()
	for _, x := range hs {
		if _, ok := t.m[x.h]; !ok {
			t.m[x.h] = x.idx
		}
	}
	t.mu.Unlock()
}
