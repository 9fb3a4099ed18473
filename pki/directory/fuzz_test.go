package directory

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// FuzzVerify: no input other than the signed document verifies to a
// different content, and nothing panics.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	good := fx.sign(f)
	want, err := fx.verifier().Verify(good)
	if err != nil {
		f.Fatal(err)
	}
	wantJSON, err := want.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(bytes.Replace(good, []byte("."), []byte(".."), 1))
	f.Add(good[:len(good)/2])
	f.Add([]byte("e30.e30."))
	f.Add([]byte(`{"payload":"e30","signatures":[]}`))
	v := fx.verifier()
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := v.Verify(data)
		if err != nil {
			return
		}
		got, err := d.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, wantJSON) {
			t.Errorf("altered input verified to a different document:\n%s", got)
		}
	})
}

// FuzzParseDocument: the strict parser never panics, and what it accepts
// re-encodes to a document it accepts again, unchanged.
func FuzzParseDocument(f *testing.F) {
	fx := newFixture(f)
	doc := fx.draft.Document
	doc.Serial = 1
	doc.IssuedAt = time.Unix(1_700_000_000, 0).UTC()
	doc.ExpiresAt = doc.IssuedAt.Add(time.Hour)
	seed, err := doc.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"version":1,"instance":"PAS","serial":1,"issuedAt":"2025-01-01T00:00:00Z","expiresAt":"2025-01-02T00:00:00Z"}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"instance":"PAS","members":[{"id":"PAS/GOV/1"},{"id":"PAS/GOV/1"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDocument(data)
		if err != nil {
			return
		}
		enc, err := d.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		d2, err := ParseDocument(enc)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", enc, err)
		}
		enc2, _ := d2.Marshal()
		if !bytes.Equal(enc, enc2) {
			t.Errorf("not stable:\n%s\n%s", enc, enc2)
		}
	})
}

// FuzzParseDraft: the draft parser never panics, and a draft it accepts
// saves to JSON it accepts again.
func FuzzParseDraft(f *testing.F) {
	fx := newFixture(f)
	seed, err := json.Marshal(fx.draft)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"version":1,"instance":"PAS","validity":"24h"}`))
	f.Add([]byte(`{"version":1,"instance":"PAS","validity":"-1h"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDraft(data)
		if err != nil {
			return
		}
		enc, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseDraft(enc); err != nil {
			t.Fatalf("re-parse of %s: %v", enc, err)
		}
	})
}
