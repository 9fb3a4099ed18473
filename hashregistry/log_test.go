package hashregistry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/passerelle/passerelle/pki"
)

const testOrigin = "registry.test/passerelle"

type testKeys struct {
	skey, vkey string
	signer     note.Signer
	verifier   note.Verifier
}

func newTestKeys(t testing.TB, origin string) testKeys {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return testKeys{skey, vkey, s, v}
}

func openTestLog(t testing.TB, path string, k testKeys) *Log {
	t.Helper()
	l, err := Open(context.Background(), Config{Path: path, Signer: k.signer, Verifier: k.verifier})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

var testMember = pki.ClientID{Instance: "EE", Class: "GOV", Member: "70000001"}

func sub(i int) Submission {
	return Submission{Hash: sha256.Sum256(fmt.Appendf(nil, "message %d", i)), Kind: Kind(1 + i%2)}
}

func appendN(t testing.TB, l *Log, from, n int) []AppendReceipt {
	t.Helper()
	subs := make([]Submission, n)
	for i := range subs {
		subs[i] = sub(from + i)
	}
	rs, err := l.Append(context.Background(), testMember, subs)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestAppendReceiptsVerify(t *testing.T) {
	k := newTestKeys(t, testOrigin)
	l := openTestLog(t, filepath.Join(t.TempDir(), "log.db"), k)
	if got := l.Size(); got != 0 {
		t.Fatalf("Size() = %d, want 0", got)
	}
	total := 0
	for _, n := range []int{1, 2, 3, 5, 8, 13, 100, 255, 256, 257, 1000} {
		rs := appendN(t, l, total, n)
		if len(rs) != n {
			t.Fatalf("Append(%d) gave %d receipts", n, len(rs))
		}
		for i, r := range rs {
			if r.Index != int64(total+i) {
				t.Fatalf("receipt %d index = %d, want %d", i, r.Index, total+i)
			}
			got, err := VerifyReceipt(r.Proof, k.verifier)
			if err != nil {
				t.Fatalf("VerifyReceipt(index %d): %v", r.Index, err)
			}
			if got.Entry.Hash != sub(total+i).Hash || got.Entry.Member != testMember || got.Checkpoint.Size != int64(total+n) {
				t.Fatalf("VerifyReceipt(index %d) = %+v", r.Index, got)
			}
		}
		total += n
	}
}

// TestProofsManySizes checks inclusion and consistency proofs between every
// pair of tree sizes up to 70 and a sample beyond.
func TestProofsManySizes(t *testing.T) {
	k := newTestKeys(t, testOrigin)
	l := openTestLog(t, filepath.Join(t.TempDir(), "log.db"), k)
	ctx := t.Context()
	roots := []tlog.Hash{emptyTreeHash()}
	var leaves []tlog.Hash
	for i := range 300 {
		rs := appendN(t, l, i, 1)
		leaves = append(leaves, tlog.RecordHash(rs[0].Entry))
		cp, _ := l.Checkpoint()
		roots = append(roots, cp.Hash)
	}
	sizes := []int64{}
	for n := int64(1); n <= 70; n++ {
		sizes = append(sizes, n)
	}
	sizes = append(sizes, 127, 128, 129, 255, 256, 257, 299, 300)
	for _, n := range sizes {
		for _, idx := range []int64{0, n / 3, n / 2, n - 1} {
			p, _, err := l.ProveInclusion(ctx, idx, n)
			if err != nil {
				t.Fatalf("ProveInclusion(%d, %d): %v", idx, n, err)
			}
			if err := tlog.CheckRecord(p, n, roots[n], idx, leaves[idx]); err != nil {
				t.Fatalf("CheckRecord(%d in %d): %v", idx, n, err)
			}
		}
		for _, old := range []int64{1, n / 2, n - 1, n} {
			if old < 1 {
				continue
			}
			p, _, err := l.ProveConsistency(ctx, old, n)
			if err != nil {
				t.Fatalf("ProveConsistency(%d, %d): %v", old, n, err)
			}
			if err := tlog.CheckTree(p, n, roots[n], old, roots[old]); err != nil {
				t.Fatalf("CheckTree(%d → %d): %v", old, n, err)
			}
		}
	}
	idx, err := l.IndexOf(ctx, leaves[123])
	if err != nil || idx != 123 {
		t.Fatalf("IndexOf(leaf 123) = %d, %v; want 123", idx, err)
	}
	if _, _, err := l.ProveInclusion(ctx, 0, 301); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ProveInclusion beyond size: err = %v, want ErrNotFound", err)
	}
}

func TestConcurrentAppendsGroupCommit(t *testing.T) {
	k := newTestKeys(t, testOrigin)
	l := openTestLog(t, filepath.Join(t.TempDir(), "log.db"), k)
	const workers, each = 32, 20
	var wg sync.WaitGroup
	seen := make([][]int64, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				rs, err := l.Append(t.Context(), testMember, []Submission{sub(w*1000 + i)})
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := VerifyReceipt(rs[0].Proof, k.verifier); err != nil {
					t.Error(err)
				}
				seen[w] = append(seen[w], rs[0].Index)
			}
		})
	}
	wg.Wait()
	all := map[int64]bool{}
	for _, s := range seen {
		for _, i := range s {
			if all[i] {
				t.Fatalf("index %d given twice", i)
			}
			all[i] = true
		}
	}
	if got := l.Size(); got != workers*each {
		t.Fatalf("Size() = %d, want %d", got, workers*each)
	}
}

func TestReopenVerifies(t *testing.T) {
	k := newTestKeys(t, testOrigin)
	path := filepath.Join(t.TempDir(), "log.db")
	l := openTestLog(t, path, k)
	appendN(t, l, 0, 77)
	want, _ := l.Checkpoint()
	l.Close()
	l2 := openTestLog(t, path, k)
	if got, _ := l2.Checkpoint(); got != want {
		t.Fatalf("reopened checkpoint = %+v, want %+v", got, want)
	}
	appendN(t, l2, 77, 3)
	if got := l2.Size(); got != 80 {
		t.Fatalf("Size() = %d, want 80", got)
	}
	other := newTestKeys(t, testOrigin)
	l2.Close()
	if _, err := Open(t.Context(), Config{Path: path, Signer: other.signer, Verifier: other.verifier}); !errors.Is(err, ErrTampered) {
		t.Fatalf("Open with another key: err = %v, want ErrTampered", err)
	}
}

// tamper edits the bbolt file directly, as an operator with disk access could.
func tamper(t *testing.T, path string, f func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(f); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// Tamperings are the operator's edits the server must refuse at start.
var tamperings = []struct {
	name string
	f    func(tx *bolt.Tx) error
}{
	{"changed message hash", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		e := append([]byte(nil), b.Get(u64(10))...)
		e[20] ^= 1
		return b.Put(u64(10), e)
	}},
	{"changed stored hash", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHashes)
		i := tlog.StoredHashIndex(0, 10) // a leaf hash: served in the level-0 tiles
		h := append([]byte(nil), b.Get(u64(i))...)
		h[0] ^= 1
		return b.Put(u64(i), h)
	}},
	{"truncated log", func(tx *bolt.Tx) error {
		n := tx.Bucket(bucketEntries).Stats().KeyN
		if err := tx.Bucket(bucketEntries).Delete(u64(int64(n - 1))); err != nil {
			return err
		}
		for i := tlog.StoredHashIndex(0, int64(n-1)); i < tlog.StoredHashCount(int64(n)); i++ {
			if err := tx.Bucket(bucketHashes).Delete(u64(i)); err != nil {
				return err
			}
		}
		return nil
	}},
	{"reordered entries", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		e3, e4 := append([]byte(nil), b.Get(u64(3))...), append([]byte(nil), b.Get(u64(4))...)
		if err := b.Put(u64(3), e4); err != nil {
			return err
		}
		return b.Put(u64(4), e3)
	}},
	{"removed checkpoint", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Delete(keyCheckpoint)
	}},
	{"rewound checkpoint", func(tx *bolt.Tx) error {
		// An older genuine checkpoint does not match the stored tree either.
		return tx.Bucket(bucketMeta).Put(keyCheckpoint, tx.Bucket(bucketMeta).Get([]byte("old")))
	}},
}

func TestOpenDetectsTampering(t *testing.T) {
	k := newTestKeys(t, testOrigin)
	for _, tc := range tamperings {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log.db")
			l := openTestLog(t, path, k)
			appendN(t, l, 0, 20)
			_, old := l.Checkpoint()
			appendN(t, l, 20, 20)
			l.Close()
			tamper(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte("old"), old) })
			tamper(t, path, tc.f)
			_, err := Open(t.Context(), Config{Path: path, Signer: k.signer, Verifier: k.verifier})
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("Open after %s: err = %v, want ErrTampered", tc.name, err)
			}
		})
	}
}

func TestReadTile(t *testing.T) {
	k := newTestKeys(t, testOrigin)
	l := openTestLog(t, filepath.Join(t.TempDir(), "log.db"), k)
	appendN(t, l, 0, 600)
	ctx := t.Context()
	data, err := l.ReadTile(ctx, tlog.Tile{H: 8, L: 0, N: 1, W: 256})
	if err != nil || len(data) != 256*32 {
		t.Fatalf("ReadTile(0/001) = %d bytes, %v", len(data), err)
	}
	if _, err := l.ReadTile(ctx, tlog.Tile{H: 8, L: 0, N: 2, W: 256}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadTile(0/002 full) err = %v, want ErrNotFound", err)
	}
	data, err = l.ReadTile(ctx, tlog.Tile{H: 8, L: 0, N: 2, W: 88})
	if err != nil || len(data) != 88*32 {
		t.Fatalf("ReadTile(0/002.p/88) = %d bytes, %v", len(data), err)
	}
	data, err = l.ReadTile(ctx, tlog.Tile{H: 8, L: 1, N: 0, W: 2})
	if err != nil || len(data) != 2*32 {
		t.Fatalf("ReadTile(1/000.p/2) = %d bytes, %v", len(data), err)
	}
	ent, err := l.ReadTile(ctx, tlog.Tile{H: 8, L: LevelEntries, N: 2, W: 88})
	if err != nil {
		t.Fatal(err)
	}
	first := ent[2 : 2+int(binary.BigEndian.Uint16(ent))]
	if e, err := ParseEntry(first); err != nil || e.Hash != sub(512).Hash {
		t.Fatalf("entry bundle first entry = %+v, %v", e, err)
	}
}

// A tile index whose first entry overflows int64 is beyond the tree, not
// the tile at the wrapped-around index.
func TestReadTileHugeIndex(t *testing.T) {
	k := newTestKeys(t, testOrigin)
	l := openTestLog(t, filepath.Join(t.TempDir(), "log.db"), k)
	appendN(t, l, 0, 3)
	for _, p := range []string{"tile/entries/x072/x057/x594/x037/x927/936.p/1", "tile/0/x072/x057/x594/x037/x927/936.p/1"} {
		tile, err := ParseTilePath(p) // N = 1<<56: N*256 wraps to 0
		if err != nil {
			t.Fatal(err)
		}
		if data, err := l.ReadTile(t.Context(), tile); !errors.Is(err, ErrNotFound) {
			t.Errorf("ReadTile(%s) = %d bytes, %v; want ErrNotFound", p, len(data), err)
		}
	}
}
