package messagelog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/passerelle/passerelle/pki"
)

var (
	testClient  = pki.ClientID{Instance: "EE", Class: "GOV", Member: "70000001", Subsystem: "client"}
	testClient2 = pki.ClientID{Instance: "EE", Class: "GOV", Member: "70000002", Subsystem: "other"}
	testService = pki.ServiceID{Client: pki.ClientID{Instance: "EE", Class: "GOV", Member: "70000003", Subsystem: "provider"}, Code: "getPerson"}
)

func openLog(t testing.TB, cfg Config) *Log {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// request returns a valid request record whose signed message and body are
// derived from n, with sizes signedLen and bodyLen.
func request(n int, signedLen, bodyLen int) Record {
	return Record{
		MessageID:   fmt.Sprintf("msg-%d", n),
		Kind:        KindRequest,
		Direction:   Sent,
		Side:        Consumer,
		Protocol:    REST,
		Client:      testClient,
		Service:     testService,
		Time:        time.Date(2026, 3, 1, 12, 0, 0, n, time.UTC),
		Signed:      fill(fmt.Sprintf("jws-%d.", n), signedLen),
		SignerChain: [][]byte{[]byte("leaf-der"), []byte("ca-der")},
		OCSP:        []byte("ocsp-der"),
		Body:        fill(fmt.Sprintf("body-%d.", n), bodyLen),
	}
}

func fill(seed string, n int) []byte {
	if n == 0 {
		return nil
	}
	return bytes.Repeat([]byte(seed), n/len(seed)+1)[:n]
}

func mustAppend(t testing.TB, l *Log, r Record) uint64 {
	t.Helper()
	id, err := l.Append(t.Context(), r)
	if err != nil {
		t.Fatalf("Append(%s): %v", r.MessageID, err)
	}
	return id
}

func readBody(t testing.TB, l *Log, r *Record) []byte {
	t.Helper()
	rc, err := l.OpenBody(t.Context(), r)
	if err != nil {
		t.Fatalf("OpenBody(%d): %v", r.ID, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func blobFiles(t testing.TB, l *Log) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(l.blobDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAppendGetRoundTrip(t *testing.T) {
	const threshold = 1024
	reqHash := HashOf([]byte("the request"))
	tests := []struct {
		name        string
		rec         func() Record
		bodyStorage Storage
		signed      Storage
	}{
		{"rest request, small body", func() Record { return request(1, 300, 200) }, StoredInline, StoredInline},
		{"no body", func() Record { return request(2, 300, 0) }, StoredNone, StoredInline},
		{"large body", func() Record { return request(3, 300, threshold*5+7) }, StoredFile, StoredInline},
		{"large signed soap envelope", func() Record {
			r := request(4, threshold*3, 10)
			r.Protocol = SOAP
			r.Service.Version = "v1"
			return r
		}, StoredInline, StoredFile},
		{"body at threshold", func() Record { return request(5, 100, threshold) }, StoredInline, StoredInline},
		{"body past threshold", func() Record { return request(6, 100, threshold+1) }, StoredFile, StoredInline},
		{"provider response", func() Record {
			r := request(7, 500, 64)
			r.Kind, r.Direction, r.Side, r.Status, r.RequestHash = KindResponse, Sent, Provider, 201, &reqHash
			return r
		}, StoredInline, StoredInline},
		{"member service", func() Record {
			r := request(8, 50, 1)
			r.Service = pki.ServiceID{Client: testClient2.MemberID(), Code: "x", Version: "v2"}
			return r
		}, StoredInline, StoredInline},
	}
	l := openLog(t, Config{InlineThreshold: threshold})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.rec()
			id := mustAppend(t, l, in)
			got, err := l.Get(t.Context(), id)
			if err != nil {
				t.Fatalf("Get(%d): %v", id, err)
			}
			wantDigest := sha256.Sum256(in.Body)
			checks := []struct {
				field     string
				got, want any
			}{
				{"ID", got.ID, id},
				{"MessageID", got.MessageID, in.MessageID},
				{"Kind", got.Kind, in.Kind},
				{"Direction", got.Direction, in.Direction},
				{"Side", got.Side, in.Side},
				{"Protocol", got.Protocol, in.Protocol},
				{"Client", got.Client, in.Client},
				{"Service", got.Service, in.Service},
				{"Time", got.Time, in.Time},
				{"Hash", got.Hash, HashOf(in.Signed)},
				{"Signed", string(got.Signed), string(in.Signed)},
				{"SignedStorage", got.SignedStorage, tt.signed},
				{"SignerChain", fmt.Sprint(got.SignerChain), fmt.Sprint(in.SignerChain)},
				{"OCSP", string(got.OCSP), string(in.OCSP)},
				{"Status", got.Status, in.Status},
				{"RequestHash", fmt.Sprint(got.RequestHash), fmt.Sprint(in.RequestHash)},
				{"BodyStorage", got.BodyStorage, tt.bodyStorage},
				{"BodyLen", got.BodyLen, int64(len(in.Body))},
				{"BodyDigest", string(got.BodyDigest), string(wantDigest[:])},
				{"Timestamped", got.Timestamped(), false},
				{"Registered", got.Registered(), false},
			}
			for _, c := range checks {
				if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
					t.Errorf("Get(%d).%s = %v, want %v", id, c.field, c.got, c.want)
				}
			}
			if tt.bodyStorage != StoredNone {
				if b := readBody(t, l, got); !bytes.Equal(b, in.Body) {
					t.Errorf("body of %d: %d bytes differ from the %d appended", id, len(b), len(in.Body))
				}
			} else if _, err := l.OpenBody(t.Context(), got); !errors.Is(err, ErrNoBody) {
				t.Errorf("OpenBody(no body) = %v, want ErrNoBody", err)
			}
			byHash, err := l.ByHash(t.Context(), got.Hash)
			if err != nil || len(byHash) != 1 || byHash[0].ID != id {
				t.Errorf("ByHash = %v, %v; want record %d", byHash, err, id)
			}
		})
	}
}

func TestBodyFiles(t *testing.T) {
	l := openLog(t, Config{InlineThreshold: 100})
	small := mustAppend(t, l, request(1, 50, 100))
	if f := blobFiles(t, l); len(f) != 0 {
		t.Fatalf("after a small append, blob files = %v, want none", f)
	}
	large := mustAppend(t, l, request(2, 50, 101))
	want := filepath.Join(l.blobDir, fmt.Sprintf("%016x.body", large))
	if f := blobFiles(t, l); len(f) != 1 || f[0] != want {
		t.Fatalf("after a large append, blob files = %v, want [%s]", f, want)
	}
	fi, err := os.Stat(want)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("body file mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	r, _ := l.Get(t.Context(), small)
	if r.Body == nil || r.BodyStorage != StoredInline {
		t.Errorf("small record: Body %d bytes, storage %s; want inline", len(r.Body), r.BodyStorage)
	}
	r, _ = l.Get(t.Context(), large)
	if r.Body != nil || r.BodyStorage != StoredFile {
		t.Errorf("large record: Body %d bytes, storage %s; want file", len(r.Body), r.BodyStorage)
	}
	st := l.Stats()
	if st.FileBytes != 101 || st.Records != 2 {
		t.Errorf("Stats() = %+v, want 2 records and 101 file bytes", st)
	}
}

func TestAppendStream(t *testing.T) {
	l := openLog(t, Config{InlineThreshold: 1000})
	rec := request(1, 50, 0)
	body := fill("streamed", 1<<20)
	id, err := l.AppendStream(t.Context(), rec, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, l, r); !bytes.Equal(got, body) || r.BodyLen != int64(len(body)) {
		t.Errorf("streamed body: got %d bytes (BodyLen %d), want %d", len(got), r.BodyLen, len(body))
	}
}

func TestMetadataOnly(t *testing.T) {
	l := openLog(t, Config{InlineThreshold: 100})
	tests := []struct {
		name string
		rec  func() Record
	}{
		{"small body", func() Record { return request(1, 50, 50) }},
		{"large body", func() Record { return request(2, 50, 5000) }},
		{"digest given, no body", func() Record {
			r := request(3, 50, 777)
			d := sha256.Sum256(r.Body)
			r.BodyDigest, r.BodyLen, r.Body = d[:], 777, nil
			return r
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.rec()
			in.BodyMode = BodyMetadataOnly
			want := sha256.Sum256(request(i+1, 50, []int{50, 5000, 777}[i]).Body)
			id := mustAppend(t, l, in)
			r, err := l.Get(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if r.BodyMode != BodyMetadataOnly || r.BodyStorage != StoredNone || r.Body != nil {
				t.Errorf("mode %s storage %s body %d bytes; want metadata, none, nil", r.BodyMode, r.BodyStorage, len(r.Body))
			}
			if !bytes.Equal(r.BodyDigest, want[:]) || r.BodyLen != int64([]int{50, 5000, 777}[i]) {
				t.Errorf("BodyLen %d digest %x; want %d %x", r.BodyLen, r.BodyDigest, []int{50, 5000, 777}[i], want)
			}
			if _, err := l.OpenBody(t.Context(), r); !errors.Is(err, ErrNoBody) {
				t.Errorf("OpenBody = %v, want ErrNoBody", err)
			}
		})
	}
	if f := blobFiles(t, l); len(f) != 0 {
		t.Errorf("metadata-only appends left blob files %v", f)
	}
}

func TestAppendInvalid(t *testing.T) {
	l := openLog(t, Config{})
	wrong := sha256.Sum256([]byte("not the body"))
	tests := []struct {
		name   string
		mutate func(*Record)
	}{
		{"no message id", func(r *Record) { r.MessageID = "" }},
		{"no kind", func(r *Record) { r.Kind = 0 }},
		{"bad direction", func(r *Record) { r.Direction = 9 }},
		{"no side", func(r *Record) { r.Side = 0 }},
		{"no protocol", func(r *Record) { r.Protocol = 0 }},
		{"no client", func(r *Record) { r.Client = pki.ClientID{} }},
		{"no service", func(r *Record) { r.Service = pki.ServiceID{} }},
		{"no signed message", func(r *Record) { r.Signed = nil }},
		{"wrong hash", func(r *Record) { r.Hash = HashOf([]byte("other")) }},
		{"request with status", func(r *Record) { r.Status = 200 }},
		{"response without status", func(r *Record) { r.Kind = KindResponse }},
		{"body digest mismatch", func(r *Record) { r.BodyDigest = wrong[:] }},
		{"short body digest", func(r *Record) { r.BodyDigest = []byte{1, 2} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request(1, 10, 10)
			tt.mutate(&r)
			if id, err := l.Append(t.Context(), r); !errors.Is(err, ErrInvalid) {
				t.Errorf("Append = %d, %v; want ErrInvalid", id, err)
			}
		})
	}
	if st := l.Stats(); st.Records != 0 || st.AppendFailures != uint64(len(tests)) {
		t.Errorf("Stats() = %+v, want no records and %d failures", st, len(tests))
	}
}

func TestByMessageID(t *testing.T) {
	l := openLog(t, Config{})
	req := request(1, 40, 10)
	reqID := mustAppend(t, l, req)
	resp := request(2, 40, 10)
	resp.MessageID, resp.Kind, resp.Direction, resp.Status = req.MessageID, KindResponse, Received, 200
	respID := mustAppend(t, l, resp)
	other := request(3, 40, 10)
	other.MessageID, other.Client = req.MessageID, testClient2
	otherID := mustAppend(t, l, other)
	mustAppend(t, l, request(4, 40, 10)) // another message id
	// A prefix of the id must not match.
	pre := request(5, 40, 10)
	pre.MessageID = req.MessageID + "x"
	mustAppend(t, l, pre)

	tests := []struct {
		name   string
		client pki.ClientID
		want   []uint64
	}{
		{"any client", pki.ClientID{}, []uint64{reqID, respID, otherID}},
		{"client qualifier", testClient, []uint64{reqID, respID}},
		{"other client", testClient2, []uint64{otherID}},
		{"unknown client", testService.Client, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := l.ByMessageID(t.Context(), req.MessageID, tt.client)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, r := range rs {
				got = append(got, r.ID)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("ByMessageID(%q, %v) = %v, want %v", req.MessageID, tt.client, got, tt.want)
			}
		})
	}
}

func TestAttach(t *testing.T) {
	l := openLog(t, Config{})
	a := request(1, 40, 10)
	aID := mustAppend(t, l, a)
	// The same signed message logged twice (sent by our consumer side,
	// received by our provider side): both records share the evidence.
	a2 := a
	a2.Direction, a2.Side = Received, Provider
	a2ID := mustAppend(t, l, a2)
	b := request(2, 40, 10)
	bID := mustAppend(t, l, b)
	ha, hb := HashOf(a.Signed), HashOf(b.Signed)

	pending := func() map[uint64]PendingEntry {
		m := map[uint64]PendingEntry{}
		if err := l.Pending(t.Context(), func(e PendingEntry) error { m[e.ID] = e; return nil }); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if p := pending(); len(p) != 3 || !p[aID].NeedsTimestamp || !p[aID].NeedsReceipt || p[bID].Hash != hb || !p[bID].Time.Equal(b.Time) {
		t.Fatalf("Pending before attach = %+v", p)
	}

	ts := Timestamp{Token: []byte("tst"), Path: [][]byte{bytes.Repeat([]byte{1}, 32)}, BatchSize: 2, Index: 1, Time: time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC)}
	for i := range 2 { // idempotent
		if err := l.AttachTimestamp(t.Context(), ha, ts); err != nil {
			t.Fatalf("AttachTimestamp #%d: %v", i, err)
		}
	}
	if err := l.AttachTimestamp(t.Context(), ha, Timestamp{Token: []byte("another")}); err != nil {
		t.Fatalf("AttachTimestamp(different) = %v, want nil (first wins)", err)
	}
	if err := l.AttachTimestamp(t.Context(), HashOf([]byte("unknown")), ts); !errors.Is(err, ErrNotFound) {
		t.Errorf("AttachTimestamp(unknown hash) = %v, want ErrNotFound", err)
	}
	if err := l.AttachReceipt(t.Context(), HashOf([]byte("unknown")), Receipt{Proof: []byte("p")}); !errors.Is(err, ErrNotFound) {
		t.Errorf("AttachReceipt(unknown hash) = %v, want ErrNotFound", err)
	}
	if err := l.AttachTimestamp(t.Context(), ha, Timestamp{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("AttachTimestamp(no token) = %v, want ErrInvalid", err)
	}
	if p := pending(); p[aID].NeedsTimestamp || !p[aID].NeedsReceipt || p[a2ID].NeedsTimestamp || !p[bID].NeedsTimestamp {
		t.Errorf("Pending after timestamp = %+v", p)
	}
	rc := Receipt{Proof: []byte("c2sp proof"), Index: 42}
	for range 2 {
		if err := l.AttachReceipt(t.Context(), ha, rc); err != nil {
			t.Fatal(err)
		}
	}
	if p := pending(); len(p) != 1 || !p[bID].NeedsTimestamp || !p[bID].NeedsReceipt {
		t.Errorf("Pending after receipt = %+v, want only %d", p, bID)
	}
	for _, id := range []uint64{aID, a2ID} {
		r, err := l.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Timestamp == nil || string(r.Timestamp.Token) != "tst" || r.Timestamp.Index != 1 || r.Timestamp.BatchSize != 2 ||
			!r.Timestamp.Time.Equal(ts.Time) || len(r.Timestamp.Path) != 1 {
			t.Errorf("Get(%d).Timestamp = %+v, want %+v", id, r.Timestamp, ts)
		}
		if r.Receipt == nil || string(r.Receipt.Proof) != "c2sp proof" || r.Receipt.Index != 42 {
			t.Errorf("Get(%d).Receipt = %+v, want %+v", id, r.Receipt, rc)
		}
	}
	st := l.Stats()
	if st.PendingTimestamp != 1 || st.PendingReceipt != 1 || st.Records != 3 {
		t.Errorf("Stats() = %+v, want 3 records, 1 pending timestamp, 1 pending receipt", st)
	}
	// A record appended after its hash was stamped is born complete.
	a3 := a
	a3.MessageID = "again"
	a3ID := mustAppend(t, l, a3)
	if p := pending(); len(p) != 1 {
		t.Errorf("Pending after appending a stamped hash = %+v (record %d)", p, a3ID)
	}
}

func TestCleanup(t *testing.T) {
	l := openLog(t, Config{InlineThreshold: 100})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type rec struct {
		age       time.Duration
		stamped   bool
		receipted bool
		large     bool
	}
	recs := []rec{
		{age: 100 * time.Hour, stamped: true, receipted: true, large: true}, // deleted
		{age: 90 * time.Hour, stamped: true, receipted: true},               // deleted
		{age: 80 * time.Hour, stamped: true},                                // kept: not registered
		{age: 70 * time.Hour, receipted: true},                              // kept: not timestamped
		{age: 60 * time.Hour, large: true},                                  // kept: neither
		{age: 1 * time.Hour, stamped: true, receipted: true},                // kept: recent
	}
	ids := make([]uint64, len(recs))
	for i, rc := range recs {
		r := request(i, 50, 10)
		if rc.large {
			r.Body = fill("large", 1000)
		}
		r.Time = base.Add(-rc.age)
		ids[i] = mustAppend(t, l, r)
		if rc.stamped {
			if err := l.AttachTimestamp(t.Context(), HashOf(r.Signed), Timestamp{Token: []byte("t")}); err != nil {
				t.Fatal(err)
			}
		}
		if rc.receipted {
			if err := l.AttachReceipt(t.Context(), HashOf(r.Signed), Receipt{Proof: []byte("p")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := len(blobFiles(t, l)); n != 2 {
		t.Fatalf("blob files = %d, want 2", n)
	}
	st, err := l.Cleanup(t.Context(), base.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if want := (CleanupStats{Deleted: 2, Kept: 3, Files: 1}); st != want {
		t.Errorf("Cleanup = %+v, want %+v", st, want)
	}
	for i, id := range ids {
		_, err := l.Get(t.Context(), id)
		if gone := i < 2; gone != errors.Is(err, ErrNotFound) {
			t.Errorf("record %d (age %v): Get err = %v, want deleted %v", i, recs[i].age, err, gone)
		}
	}
	if n := len(blobFiles(t, l)); n != 1 {
		t.Errorf("blob files after cleanup = %d, want 1", n)
	}
	if s := l.Stats(); s.Records != 4 || s.FileBytes != 1000 || s.Deleted != 2 {
		t.Errorf("Stats() = %+v, want 4 records, 1000 file bytes, 2 deleted", s)
	}
	// Once complete, the kept records go too.
	for i := 2; i <= 4; i++ {
		h := HashOf(request(i, 50, 10).Signed)
		if err := l.AttachTimestamp(t.Context(), h, Timestamp{Token: []byte("t")}); err != nil {
			t.Fatal(err)
		}
		if err := l.AttachReceipt(t.Context(), h, Receipt{Proof: []byte("p")}); err != nil {
			t.Fatal(err)
		}
	}
	st, err = l.Cleanup(t.Context(), base.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if want := (CleanupStats{Deleted: 3, Files: 1}); st != want {
		t.Errorf("second Cleanup = %+v, want %+v", st, want)
	}
	if n := len(blobFiles(t, l)); n != 0 {
		t.Errorf("blob files after second cleanup = %d, want 0", n)
	}
	if s := l.Stats(); s.Records != 1 || s.PendingTimestamp != 0 || s.PendingReceipt != 0 || s.FileBytes != 0 {
		t.Errorf("Stats() = %+v, want 1 record, nothing pending", s)
	}
}

func TestCleanupManyChunks(t *testing.T) {
	l := openLog(t, Config{})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 2*cleanupChunk + 17
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := request(i, 30, 5)
			r.Time = base.Add(time.Duration(i) * time.Second)
			if _, err := l.Append(t.Context(), r); err != nil {
				t.Error(err)
				return
			}
			if i%3 != 0 { // every third stays pending
				l.AttachTimestamp(t.Context(), HashOf(r.Signed), Timestamp{Token: []byte("t")})
				l.AttachReceipt(t.Context(), HashOf(r.Signed), Receipt{Proof: []byte("p")})
			}
		})
	}
	wg.Wait()
	st, err := l.Cleanup(t.Context(), base.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pending := (n + 2) / 3
	if st.Deleted != n-pending || st.Kept != pending {
		t.Errorf("Cleanup = %+v, want %d deleted, %d kept", st, n-pending, pending)
	}
	if s := l.Stats(); s.Records != uint64(pending) || s.PendingTimestamp != uint64(pending) {
		t.Errorf("Stats() = %+v, want %d records, all pending", s, pending)
	}
}

func TestIDsNotReusedAfterCleanup(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(t.Context(), Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	r := request(1, 10, 10)
	id := mustAppend(t, l, r)
	l.AttachTimestamp(t.Context(), r.Hash, Timestamp{Token: []byte("t")})
	l.AttachTimestamp(t.Context(), HashOf(r.Signed), Timestamp{Token: []byte("t")})
	l.AttachReceipt(t.Context(), HashOf(r.Signed), Receipt{Proof: []byte("p")})
	if st, err := l.Cleanup(t.Context(), time.Now()); err != nil || st.Deleted != 1 {
		t.Fatalf("Cleanup = %+v, %v", st, err)
	}
	l.Close()
	l = openLog(t, Config{Dir: dir})
	if id2 := mustAppend(t, l, request(2, 10, 10)); id2 <= id {
		t.Errorf("id after cleanup and reopen = %d, want > %d", id2, id)
	}
}

func TestReopenAndOrphans(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(t.Context(), Config{Dir: dir, InlineThreshold: 10})
	if err != nil {
		t.Fatal(err)
	}
	id := mustAppend(t, l, request(1, 20, 50))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), request(2, 10, 10)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	if _, err := l.Get(t.Context(), id); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close = %v, want ErrClosed", err)
	}
	// A crash between writing a blob and committing its record leaves a file.
	orphan := filepath.Join(dir, blobDirName, fmt.Sprintf("%016x.body", id+5))
	if err := os.WriteFile(orphan, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, Config{Dir: dir, InlineThreshold: 10})
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan blob still there after Open: %v", err)
	}
	r, err := l.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if b := readBody(t, l, r); !bytes.Equal(b, request(1, 20, 50).Body) {
		t.Errorf("body after reopen differs")
	}
	if next := mustAppend(t, l, request(3, 10, 10)); next <= id+5 {
		t.Errorf("id after orphan %d = %d, want larger", id+5, next)
	}
	if st := l.Stats(); st.Records != 2 {
		t.Errorf("Stats().Records after reopen = %d, want 2", st.Records)
	}
}

func TestList(t *testing.T) {
	l := openLog(t, Config{InlineThreshold: 10})
	var ids []uint64
	for i := range 7 {
		ids = append(ids, mustAppend(t, l, request(i, 5+i*2, 0)))
	}
	var got []uint64
	var after uint64
	for {
		page, err := l.List(t.Context(), after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			got = append(got, r.ID)
			if (r.SignedStorage == StoredInline) != (r.Signed != nil) {
				t.Errorf("List: record %d storage %s with %d signed bytes", r.ID, r.SignedStorage, len(r.Signed))
			}
		}
		after = page[len(page)-1].ID
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Errorf("List pages = %v, want %v", got, ids)
	}
}

func TestConcurrentAppends(t *testing.T) {
	tests := []struct {
		name     string
		maxBatch int
		writers  int
		each     int
	}{
		{"default batch", 0, 64, 20},
		{"batch of 3", 3, 16, 10},
		{"no batching", 1, 8, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testConcurrentAppends(t, tt.maxBatch, tt.writers, tt.each)
		})
	}
}

func testConcurrentAppends(t *testing.T, maxBatch, writers, each int) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, InlineThreshold: 512, MaxBatch: maxBatch, Logger: slog.New(slog.DiscardHandler)}
	l, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([][]uint64, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				n := w*each + i
				id, err := l.Append(t.Context(), request(n, 100, (n%7)*100))
				if err != nil {
					t.Errorf("Append(%d): %v", n, err)
					return
				}
				ids[w] = append(ids[w], id)
			}
		})
	}
	wg.Wait()
	st := l.Stats()
	t.Logf("%d appends in %d commits (%v)", st.Appended, st.Commits, st.CommitTime)
	switch {
	case st.Appended != uint64(writers*each):
		t.Errorf("Stats().Appended = %d, want %d", st.Appended, writers*each)
	case maxBatch == 1 && st.Commits != st.Appended:
		t.Errorf("MaxBatch 1: %d commits for %d appends", st.Commits, st.Appended)
	case maxBatch != 1 && st.Commits >= st.Appended:
		t.Errorf("%d commits for %d appends: no batching", st.Commits, st.Appended)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, cfg)
	seen := map[uint64]bool{}
	for w := range writers {
		for i, id := range ids[w] {
			n := w*each + i
			if seen[id] {
				t.Fatalf("id %d handed out twice", id)
			}
			seen[id] = true
			r, err := l.Get(t.Context(), id)
			if err != nil {
				t.Fatalf("Get(%d): %v", id, err)
			}
			want := request(n, 100, (n%7)*100)
			if r.MessageID != want.MessageID || !bytes.Equal(r.Signed, want.Signed) {
				t.Errorf("record %d = %s, want %s", id, r.MessageID, want.MessageID)
			}
		}
	}
}

func TestParseHash(t *testing.T) {
	h := HashOf([]byte("x"))
	if got, err := ParseHash(h.String()); err != nil || got != h {
		t.Errorf("ParseHash(%s) = %v, %v", h, got, err)
	}
	for _, s := range []string{"", "zz", h.String()[:62], h.String() + "00"} {
		if _, err := ParseHash(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseHash(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestFull(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(t.Context(), Config{Dir: dir, MaxDBSize: 1 << 20, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var acked []uint64
	var full error
	for i := range 1000 {
		id, err := l.Append(t.Context(), request(i, 1000, 30<<10))
		if err != nil {
			full = err
			break
		}
		acked = append(acked, id)
	}
	if !errors.Is(full, ErrFull) || !errors.Is(full, ErrStorage) {
		t.Fatalf("Append past MaxDBSize = %v, want ErrFull and ErrStorage", full)
	}
	t.Logf("full after %d records: %v", len(acked), full)
	// Still full, still refusing, still readable.
	if _, err := l.Append(t.Context(), request(5000, 1000, 30<<10)); !errors.Is(err, ErrFull) {
		t.Errorf("second Append when full = %v, want ErrFull", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, Config{Dir: dir, MaxDBSize: 1 << 20})
	for i, id := range acked {
		r, err := l.Get(t.Context(), id)
		if err != nil || r.MessageID != request(i, 0, 0).MessageID {
			t.Fatalf("Get(%d) after full = %v, %v", id, r, err)
		}
	}
	if s := l.Stats(); s.Records != uint64(len(acked)) {
		t.Errorf("Stats().Records = %d, want %d", s.Records, len(acked))
	}
}

func TestBlobWriteError(t *testing.T) {
	l := openLog(t, Config{InlineThreshold: 100})
	// Make the blob directory unusable, even for root: replace it by a file.
	if err := os.RemoveAll(l.blobDir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.blobDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), request(1, 50, 1000)); !errors.Is(err, ErrStorage) {
		t.Errorf("Append with a large body and a broken blob dir = %v, want ErrStorage", err)
	}
	if s := l.Stats(); s.Records != 0 {
		t.Errorf("Stats().Records = %d after a failed append, want 0", s.Records)
	}
	// Small records do not touch the blob directory.
	mustAppend(t, l, request(2, 50, 10))
}

func TestAppendCancelled(t *testing.T) {
	l := openLog(t, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.Append(ctx, request(1, 10, 10)); !errors.Is(err, context.Canceled) {
		t.Errorf("Append(cancelled) = %v, want context.Canceled", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"ok", Config{Dir: "x"}, true},
		{"no dir", Config{}, false},
		{"negative threshold", Config{Dir: "x", InlineThreshold: -1}, false},
		{"negative batch", Config{Dir: "x", MaxBatch: -1}, false},
		{"negative size", Config{Dir: "x", MaxDBSize: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func TestFullRemovesBlobFiles(t *testing.T) {
	l := openLog(t, Config{MaxDBSize: 64 << 10, InlineThreshold: 512})
	var acked int
	var err error
	for i := range 1000 {
		if _, err = l.Append(t.Context(), request(i, 400, 2000)); err != nil {
			break
		}
		acked++
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Append past MaxDBSize = %v, want ErrFull", err)
	}
	if n := len(blobFiles(t, l)); n != acked {
		t.Errorf("blob files = %d after %d acknowledged appends and a refused one, want %d", n, acked, acked)
	}
}

type failingReader struct{ n int }

var errClientGone = errors.New("client gone")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errClientGone
	}
	n := min(len(p), f.n)
	f.n -= n
	return n, nil
}

func TestAppendStreamReadError(t *testing.T) {
	l := openLog(t, Config{InlineThreshold: 100})
	for _, size := range []int{50, 5000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			_, err := l.AppendStream(t.Context(), request(1, 10, 0), &failingReader{n: size})
			if !errors.Is(err, errClientGone) || errors.Is(err, ErrStorage) {
				t.Errorf("AppendStream(failing body) = %v, want the read error, not ErrStorage", err)
			}
		})
	}
	if n := len(blobFiles(t, l)); n != 0 {
		t.Errorf("blob files after failed appends = %d, want 0", n)
	}
}

// countingHandler counts the log records with a given message.
type countingHandler struct {
	msg string
	n   *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// TestStuckApplierWaitsToRetry: an applier that cannot index acknowledged
// records retries every applyRetry, however many are waiting (it used to
// retry at once, in a loop, once applyBatchFactor*MaxBatch were waiting).
func TestStuckApplierWaitsToRetry(t *testing.T) {
	var failures atomic.Int64
	l := openLog(t, Config{MaxBatch: 1, Logger: slog.New(countingHandler{"message log: commit failed", &failures})})
	first := request(1, 50, 10)
	completeRecord(t, l, mustAppend(t, l, first))
	// The stored token goes missing: a twin of the record, which copies
	// its timestamp, can no longer be indexed.
	if err := l.db.Update(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bTokens).Cursor().First()
		return tx.Bucket(bTokens).Delete(k)
	}); err != nil {
		t.Fatal(err)
	}
	for range applyBatchFactor {
		if _, err := l.Append(t.Context(), first); err != nil {
			t.Fatal(err) // acknowledged: the applier has not tried yet
		}
	}
	time.Sleep(applyLinger + 300*time.Millisecond)
	// One attempt (a transaction, then the first record alone), perhaps a
	// second one after applyRetry.
	if n := failures.Load(); n == 0 || n > 4 {
		t.Errorf("failed commits of a stuck applier within %v = %d, want 1 to 4", applyLinger+300*time.Millisecond, n)
	}
	if _, err := l.Append(t.Context(), request(2, 50, 10)); !errors.Is(err, ErrStorage) {
		t.Errorf("Append with a stuck applier = %v, want ErrStorage", err)
	}
}

// TestStatsPublishedInCommitOrder: Cleanup and the applier commit
// concurrently and each publishes its counters after its commit, so the
// counters of an earlier transaction may arrive after those of a later one;
// they must not replace them (Stats would report them until the next
// commit). The two publications are made here in that order.
func TestStatsPublishedInCommitOrder(t *testing.T) {
	l := openLog(t, Config{})
	mustAppend(t, l, request(1, 50, 10))
	l.sync(t.Context())
	var before, after counters
	var beforeTx, afterTx int
	for _, p := range []struct {
		c  *counters
		id *int
	}{{&before, &beforeTx}, {&after, &afterTx}} {
		mustAppend(t, l, request(2+beforeTx, 50, 10))
		l.sync(t.Context())
		l.db.View(func(tx *bolt.Tx) error {
			*p.c, *p.id = readCounters(tx.Bucket(bMeta)), tx.ID()
			return nil
		})
	}
	l.setState(after, afterTx)
	l.setState(before, beforeTx) // the earlier commit's publication, late
	if st := l.Stats(); st.Records != after.Records {
		t.Errorf("Stats().Records after a late publication of earlier counters = %d, want %d", st.Records, after.Records)
	}
}
