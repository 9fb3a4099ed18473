package evidence_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/passerelle/passerelle/securityserver/evidence"
)

const seedManifest = `{"version":1,"messageId":"m1","client":"SANDBOX/GOV/CONSUMER/client","service":"SANDBOX/GOV/PROVIDER/services/hello",
"protocol":"rest","exporter":{"owner":"SANDBOX/GOV/CONSUMER","side":"consumer"},"exportedAt":"2026-01-01T00:00:00Z",
"messages":[{"message":"request","direction":"sent","time":"2026-01-01T00:00:00Z","hash":"` +
	"0000000000000000000000000000000000000000000000000000000000000000" + `","bodyMode":"full","bodyLength":0}],
"files":[{"name":"request.jws","role":"request.signature","message":"request","size":3,"sha256":"` +
	"1111111111111111111111111111111111111111111111111111111111111111" + `"}]}`

// FuzzParseManifest: no panic, and whatever parses passes its own checks
// again after a round trip.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(seedManifest))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := evidence.ParseManifest(data)
		if err != nil {
			if !errors.Is(err, evidence.ErrMalformed) {
				t.Fatalf("ParseManifest error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if m.Version != evidence.FormatVersion || len(m.Messages) == 0 {
			t.Fatalf("accepted %+v", m)
		}
	})
}

// FuzzVerify: a bundle from the sandbox, mutated, never panics, and a
// failure always wraps one of the package's errors.
func FuzzVerify(f *testing.F) {
	fx := getFixture(f)
	for _, b := range fx.bundles {
		f.Add(b)
	}
	f.Add([]byte("PK\x03\x04"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := evidence.Verify(bytes.NewReader(data), int64(len(data)), fx.trust)
		if err != nil && !errors.Is(err, evidence.ErrMalformed) && !errors.Is(err, evidence.ErrVerification) && !errors.Is(err, evidence.ErrIncomplete) {
			t.Fatalf("Verify error %v wraps none of ErrMalformed, ErrVerification, ErrIncomplete", err)
		}
	})
}
