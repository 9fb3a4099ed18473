package messagelog

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestSharedToken: the stamps of one batch share one stored token, which
// stays while a stamp refers to it and goes with the last one.
func TestSharedToken(t *testing.T) {
	l := openLog(t, Config{})
	token := bytes.Repeat([]byte("token"), 400)
	var ids []uint64
	for i := range 3 {
		r := request(i, 50, 10)
		r.Time = time.Date(2020, 1, 1, 0, 0, i, 0, time.UTC)
		id := mustAppend(t, l, r)
		ids = append(ids, id)
		got, err := l.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		ts := Timestamp{Token: token, Path: [][]byte{bytes.Repeat([]byte{byte(i)}, 32)}, BatchSize: 3, Index: uint64(i), Time: time.Date(2020, 1, 1, 0, 0, 9, 0, time.UTC)}
		if err := l.AttachTimestamp(t.Context(), got.Hash, ts); err != nil {
			t.Fatal(err)
		}
		if err := l.AttachReceipt(t.Context(), got.Hash, Receipt{Proof: []byte("p")}); err != nil {
			t.Fatal(err)
		}
	}
	tokens := func() (n int, refs uint64) {
		t.Helper()
		l.sync(t.Context())
		l.db.View(func(tx *bolt.Tx) error {
			tx.Bucket(bTokens).ForEach(func(k, v []byte) error {
				n++
				refs = uint64(v[7]) // small counts
				return nil
			})
			return nil
		})
		return n, refs
	}
	if n, refs := tokens(); n != 1 || refs != 3 {
		t.Fatalf("tokens stored = %d with %d references, want 1 with 3", n, refs)
	}
	for i, id := range ids {
		r, err := l.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Timestamp == nil || !bytes.Equal(r.Timestamp.Token, token) || r.Timestamp.Index != uint64(i) || r.Timestamp.Path[0][0] != byte(i) || r.Timestamp.BatchSize != 3 {
			t.Errorf("record %d timestamp = %+v", i, r.Timestamp)
		}
	}
	if _, err := l.Cleanup(t.Context(), time.Date(2020, 1, 1, 0, 0, 2, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if n, refs := tokens(); n != 1 || refs != 1 {
		t.Errorf("after deleting two records: tokens = %d with %d references, want 1 with 1", n, refs)
	}
	if r, err := l.Get(t.Context(), ids[2]); err != nil || !bytes.Equal(r.Timestamp.Token, token) {
		t.Errorf("the remaining record's timestamp: %v, %v", r, err)
	}
	if _, err := l.Cleanup(t.Context(), time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if n, _ := tokens(); n != 0 {
		t.Errorf("tokens after deleting every record = %d, want 0", n)
	}
	if st := l.Stats(); st.DBBytes != 0 {
		t.Errorf("Stats().DBBytes after deleting everything = %d, want 0", st.DBBytes)
	}
}

func TestStampRefCorrupt(t *testing.T) {
	l := openLog(t, Config{})
	var v []byte
	d := sha256.Sum256([]byte("absent"))
	v = append(append(v, stampRefTag), d[:]...)
	v = append(v, marshalTimestampV2(&timestampV1{})...)
	err := l.db.View(func(tx *bolt.Tx) error {
		_, err := getStamp(tx, v)
		return err
	})
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("a stamp whose token is missing = %v, want ErrCorrupt", err)
	}
}

func TestAttachMany(t *testing.T) {
	l := openLog(t, Config{})
	var hs []Hash
	for i := range 3 {
		r := request(i, 50, 10)
		mustAppend(t, l, r)
		hs = append(hs, HashOf(r.Signed))
	}
	token := []byte("one token for the batch")
	var as []Attachment
	for i, h := range hs {
		as = append(as, Attachment{Hash: h, Timestamp: &Timestamp{Token: token, BatchSize: 3, Index: uint64(i)}})
	}
	as = append(as, Attachment{Hash: HashOf([]byte("unknown")), Receipt: &Receipt{Proof: []byte("p")}})
	as = append(as, Attachment{Hash: hs[0], Receipt: &Receipt{Proof: []byte("proof-0"), Index: 7}})
	missed, err := l.AttachMany(t.Context(), as)
	if err != nil || missed != 1 {
		t.Fatalf("AttachMany = %d missed, %v; want 1, nil", missed, err)
	}
	for i, h := range hs {
		recs, err := l.ByHash(t.Context(), h)
		if err != nil || len(recs) != 1 {
			t.Fatalf("ByHash(%d) = %v, %v", i, recs, err)
		}
		r := recs[0]
		if r.Timestamp == nil || !bytes.Equal(r.Timestamp.Token, token) || r.Timestamp.Index != uint64(i) {
			t.Errorf("record %d timestamp = %+v", i, r.Timestamp)
		}
		if (i == 0) != (r.Receipt != nil) || (i == 0 && (string(r.Receipt.Proof) != "proof-0" || r.Receipt.Index != 7)) {
			t.Errorf("record %d receipt = %+v", i, r.Receipt)
		}
	}
	if st := l.Stats(); st.PendingTimestamp != 0 || st.PendingReceipt != 2 {
		t.Errorf("Stats() = %+v, want no pending timestamp, 2 pending receipts", st)
	}
	for _, bad := range [][]Attachment{
		{{Hash: hs[1]}},
		{{Hash: hs[1], Timestamp: &Timestamp{Token: token}, Receipt: &Receipt{Proof: []byte("p")}}},
		{{Hash: hs[1], Timestamp: &Timestamp{}}},
		{{Hash: hs[1], Receipt: &Receipt{}}},
	} {
		if _, err := l.AttachMany(t.Context(), bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("AttachMany(%+v) = %v, want ErrInvalid", bad[0], err)
		}
	}
}
