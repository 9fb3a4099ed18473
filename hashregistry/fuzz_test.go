package hashregistry

import (
	"bytes"
	"crypto/sha256"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/passerelle/passerelle/pki"
)

func FuzzParseEntry(f *testing.F) {
	for i, m := range []string{"EE/GOV/70000001", "FI/COM/1234-5/sub", "A/B/C"} {
		id, err := pki.ParseClientID(m)
		if err != nil {
			f.Fatal(err)
		}
		b, err := Entry{Member: id, Hash: sha256.Sum256([]byte(m)), Kind: Kind(1 + i%2), Time: time.UnixMilli(1700000000123)}.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEntry(b)
		if err != nil {
			return
		}
		// One entry, one encoding: whatever parses re-encodes to the same bytes.
		again, err := e.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("Marshal(ParseEntry(%x)) = %x, %v", b, again, err)
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add(Checkpoint{Origin: "example.com/log", Size: 12, Hash: tlog.RecordHash([]byte("x"))}.Body())
	f.Add("example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nextension\n")
	f.Add("a\n01\nAAAA\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCheckpoint(s)
		if err != nil {
			return
		}
		c2, err := ParseCheckpoint(c.Body())
		if err != nil || c2 != c {
			t.Fatalf("ParseCheckpoint(Body()) = %+v, %v; want %+v", c2, err, c)
		}
	})
}

func FuzzParseProofFile(f *testing.F) {
	k := newTestKeys(f, testOrigin)
	l := openTestLog(f, filepath.Join(f.TempDir(), "log.db"), k)
	rs := appendN(f, l, 0, 5)
	for _, r := range rs {
		f.Add(r.Proof)
	}
	f.Add([]byte(ProofHeader + "\nindex 0\n\nx\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProofFile(data)
		if err == nil {
			if q, err := ParseProofFile(p.Marshal()); err != nil || q.Index != p.Index || len(q.Proof) != len(p.Proof) {
				t.Fatalf("ParseProofFile(Marshal()) = %+v, %v", q, err)
			}
		}
		// Altered receipts must not verify as something else: anything that
		// verifies must be one of the genuine receipts' entries.
		r, err := VerifyReceipt(data, k.verifier)
		if err != nil {
			return
		}
		if r.Index < 0 || r.Index >= 5 || r.Entry.Hash != sub(int(r.Index)).Hash {
			t.Fatalf("altered receipt verified: %+v", r)
		}
	})
}

func FuzzParseTilePath(f *testing.F) {
	for _, s := range []string{"tile/0/000", "tile/1/x001/x234/067.p/8", "tile/entries/123", "tile/entries/x000/001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tile, err := ParseTilePath(s)
		if err != nil {
			return
		}
		if got := TilePath(tile); got != s {
			t.Fatalf("TilePath(ParseTilePath(%q)) = %q", s, got)
		}
	})
}

func TestTilePath(t *testing.T) {
	tests := []struct {
		tile tlog.Tile
		want string
	}{
		{tlog.Tile{H: 8, L: 0, N: 0, W: 256}, "tile/0/000"},
		{tlog.Tile{H: 8, L: 0, N: 1234067, W: 256}, "tile/0/x001/x234/067"},
		{tlog.Tile{H: 8, L: 2, N: 5, W: 17}, "tile/2/005.p/17"},
		{tlog.Tile{H: 8, L: LevelEntries, N: 1000, W: 256}, "tile/entries/x001/000"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := TilePath(tc.tile); got != tc.want {
				t.Fatalf("TilePath(%+v) = %q, want %q", tc.tile, got, tc.want)
			}
			if got, err := ParseTilePath(tc.want); err != nil || got != tc.tile {
				t.Fatalf("ParseTilePath(%q) = %+v, %v; want %+v", tc.want, got, err, tc.tile)
			}
		})
	}
}

func TestEntryRoundTrip(t *testing.T) {
	e := Entry{Member: testMember, Hash: sha256.Sum256([]byte("m")), Kind: KindResponse, Time: time.UnixMilli(1700000000123).UTC()}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseEntry(b)
	if err != nil || got != e {
		t.Fatalf("ParseEntry(Marshal(e)) = %+v, %v; want %+v", got, err, e)
	}
	for _, bad := range [][]byte{append(b, 0), b[:len(b)-1], append([]byte{2}, b[1:]...)} {
		if _, err := ParseEntry(bad); err == nil {
			t.Fatalf("ParseEntry(%x) accepted", bad)
		}
	}
}
