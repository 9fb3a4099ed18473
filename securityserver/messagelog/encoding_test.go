package messagelog

import (
	"bytes"
	"errors"
	"testing"
)

func sampleEncoded(t testing.TB) [][]byte {
	t.Helper()
	h := HashOf([]byte("req"))
	var out [][]byte
	for i, r := range []Record{request(1, 40, 10), request(2, 40, 0)} {
		r.ID = uint64(i + 1)
		r.Hash = HashOf(r.Signed)
		r.SignedLen = int64(len(r.Signed))
		r.SignedStorage = StoredInline
		if len(r.Body) > 0 {
			r.BodyStorage, r.BodyLen = StoredInline, int64(len(r.Body))
			d := HashOf(r.Body)
			r.BodyDigest = d[:]
		}
		if i == 1 {
			r.Kind, r.Status, r.RequestHash = KindResponse, 200, &h
		}
		enc, err := encodeRecord(&r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, enc)
	}
	return out
}

// encodeRecordV1 writes r in the JSON format of version 1, which the
// message log no longer writes but still reads.
func encodeRecordV1(t testing.TB, r *Record) []byte {
	t.Helper()
	v := recordFields(r)
	enc, err := marshalV1(v)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

func TestDecodeRecordV1(t *testing.T) {
	r := request(1, 40, 10)
	r.ID, r.Hash, r.SignedLen, r.SignedStorage = 1, HashOf(r.Signed), int64(len(r.Signed)), StoredInline
	r.BodyStorage, r.BodyLen = StoredInline, int64(len(r.Body))
	d := HashOf(r.Body)
	r.BodyDigest = d[:]
	got, err := decodeRecord(encodeRecordV1(t, &r))
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := encodeRecord(&r)
	if enc, _ := encodeRecord(got); !bytes.Equal(enc, v2) {
		t.Errorf("a v1 record decodes to %+v, want %+v", got, r)
	}
}

func TestDecodeRecordRejectsV2(t *testing.T) {
	good := sampleEncoded(t)[0]
	tests := []struct {
		name string
		data []byte
	}{
		{"unknown version", append([]byte{0x03}, good[1:]...)},
		{"truncated", good[:len(good)-3]},
		{"trailing data", append(bytes.Clone(good), 0)},
		{"bad kind", bytes.Replace(good, []byte("\x07request"), []byte("\x07requesx"), 1)},
		{"signed altered", bytes.Replace(good, []byte("jws-1."), []byte("jws-2."), 1)},
		{"bad client", bytes.Replace(good, []byte("\x16EE/GOV/70000001/client"), []byte("\x16EE/GOV/70000001/clie/t"), 1)},
		{"huge length", append(bytes.Clone(good[:3]), 0xff, 0xff, 0xff, 0xff, 0x0f)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if bytes.Equal(tt.data, good) {
				t.Fatal("the test case does not change the record")
			}
			if _, err := decodeRecord(tt.data); !errors.Is(err, ErrCorrupt) {
				t.Errorf("decodeRecord(%q) = %v, want ErrCorrupt", tt.data, err)
			}
		})
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	recs := sampleEncoded(t)
	r, err := decodeRecord(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	good := encodeRecordV1(t, r)
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{0x04}, good[1:]...)},
		{"not json", []byte("\x01{")},
		{"unknown field", bytes.Replace(good, []byte(`"id":`), []byte(`"evil":1,"id":`), 1)},
		{"bad kind", bytes.Replace(good, []byte(`"request"`), []byte(`"query"`), 1)},
		{"signed altered", bytes.Replace(good, []byte(`"signed":"`), []byte(`"signed":"AAAA`), 1)},
		{"bad client", bytes.Replace(good, []byte(`"client":"EE/GOV/70000001/client"`), []byte(`"client":"EE/GOV"`), 1)},
		{"trailing data", append(bytes.Clone(good), "{}"...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeRecord(tt.data); !errors.Is(err, ErrCorrupt) {
				t.Errorf("decodeRecord(%q) = %v, want ErrCorrupt", tt.data, err)
			}
		})
	}
	if _, err := decodeRecord(good); err != nil {
		t.Errorf("decodeRecord(good) = %v", err)
	}
}

// FuzzDecodeRecord: the stored-record parser never panics, and whatever it
// accepts re-encodes to a value it decodes to the same encoding.
func FuzzDecodeRecord(f *testing.F) {
	for _, enc := range sampleEncoded(f) {
		f.Add(enc)
		r, _ := decodeRecord(enc)
		f.Add(encodeRecordV1(f, r))
	}
	f.Add([]byte{formatV1})
	f.Add([]byte{formatV2})
	f.Add([]byte("\x01{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeRecord(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeRecord error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		enc, err := encodeRecord(r)
		if err != nil {
			t.Fatalf("encodeRecord(decoded) = %v", err)
		}
		r2, err := decodeRecord(enc)
		if err != nil {
			t.Fatalf("decodeRecord(encodeRecord(decoded)) = %v", err)
		}
		enc2, _ := encodeRecord(r2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding differs:\n%s\n%s", enc, enc2)
		}
	})
}

func FuzzDecodeAttachments(f *testing.F) {
	ts, _ := encodeTimestamp(&Timestamp{Token: []byte("t"), Path: [][]byte{{1, 2}}, BatchSize: 3, Index: 1})
	rc, _ := encodeReceipt(&Receipt{Proof: []byte("p"), Index: 9})
	f.Add(ts)
	f.Add(rc)
	f.Fuzz(func(t *testing.T, data []byte) {
		if v, err := decodeTimestamp(data); err == nil {
			enc, _ := encodeTimestamp(v)
			if _, err := decodeTimestamp(enc); err != nil {
				t.Fatalf("timestamp round trip: %v", err)
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatal(err)
		}
		if v, err := decodeReceipt(data); err == nil {
			enc, _ := encodeReceipt(v)
			if _, err := decodeReceipt(enc); err != nil {
				t.Fatalf("receipt round trip: %v", err)
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatal(err)
		}
	})
}
