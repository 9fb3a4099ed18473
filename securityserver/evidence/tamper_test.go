package evidence_test

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/passerelle/passerelle/securityserver/evidence"
)

// unpack returns a bundle's files and its manifest.
func unpack(t *testing.T, b []byte) (map[string][]byte, *evidence.Manifest) {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name], err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	m, err := evidence.ParseManifest(files[evidence.ManifestName])
	if err != nil {
		t.Fatal(err)
	}
	delete(files, evidence.ManifestName)
	return files, m
}

// repack writes files and m as a bundle; with fix, the manifest's sizes and
// digests are recomputed, as a careful forger would.
func repack(t *testing.T, files map[string][]byte, m *evidence.Manifest, fix bool) []byte {
	t.Helper()
	if fix {
		for i, f := range m.Files {
			sum := sha256.Sum256(files[f.Name])
			m.Files[i].Size, m.Files[i].SHA256 = int64(len(files[f.Name])), hex.EncodeToString(sum[:])
		}
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, data := range files {
		w, _ := zw.Create(name)
		w.Write(data)
	}
	mj, _ := json.Marshal(m)
	w, _ := zw.Create(evidence.ManifestName)
	w.Write(mj)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func flipLast(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)-1] ^= 1
	return b
}

func fileOf(m *evidence.Manifest, message string, role evidence.Role) string {
	for _, f := range m.Files {
		if f.Message == message && f.Role == role {
			return f.Name
		}
	}
	return ""
}

func TestTamperedBundles(t *testing.T) {
	f := getFixture(t)
	type mutation func(t *testing.T, files map[string][]byte, m *evidence.Manifest)
	// set replaces the file of (message, role).
	set := func(message string, role evidence.Role, fn func(old []byte, files map[string][]byte, m *evidence.Manifest) []byte) mutation {
		return func(t *testing.T, files map[string][]byte, m *evidence.Manifest) {
			name := fileOf(m, message, role)
			if name == "" {
				t.Fatalf("no %s file for the %s", role, message)
			}
			files[name] = fn(files[name], files, m)
		}
	}
	flip := func(message string, role evidence.Role) mutation {
		return set(message, role, func(old []byte, _ map[string][]byte, _ *evidence.Manifest) []byte { return flipLast(old) })
	}
	replace := func(message string, role evidence.Role, from, to string) mutation {
		return set(message, role, func(old []byte, _ map[string][]byte, _ *evidence.Manifest) []byte {
			if !bytes.Contains(old, []byte(from)) {
				t.Fatalf("%s of the %s does not contain %q", role, message, from)
			}
			return bytes.Replace(old, []byte(from), []byte(to), 1)
		})
	}
	// other takes the file of the same role from the other message: valid
	// evidence, about something else.
	other := func(message string, role evidence.Role, otherMsg string, otherRole evidence.Role) mutation {
		return set(message, role, func(_ []byte, files map[string][]byte, m *evidence.Manifest) []byte {
			return files[fileOf(m, otherMsg, otherRole)]
		})
	}
	tests := []struct {
		name    string
		bundle  string
		mutate  mutation
		fix     bool   // recompute the manifest's digests
		subject string // the failed check
		check   string
		want    error
	}{
		{"rest body", "rest-post", replace(evidence.Request, evidence.RoleRequestBody, "Rex", "Max"), true, "request", "body", evidence.ErrVerification},
		{"rest response body", "rest-post", replace(evidence.Response, evidence.RoleResponseBody, "Rex", "Max"), true, "response", "body", evidence.ErrVerification},
		{"rest body, manifest not fixed", "rest-post", replace(evidence.Request, evidence.RoleRequestBody, "Rex", "Max"), false, "bundle", "files", evidence.ErrVerification},
		{"rest signature", "rest-get", flip(evidence.Request, evidence.RoleRequestSignature), true, "request", "signature", evidence.ErrVerification},
		{"rest response signature", "rest-get", flip(evidence.Response, evidence.RoleResponseSignature), true, "response", "signature", evidence.ErrVerification},
		{"rest ocsp", "rest-get", flip(evidence.Request, evidence.RoleRequestOCSP), true, "request", "ocsp", evidence.ErrVerification},
		{"rest ocsp of the other signer", "rest-get", other(evidence.Request, evidence.RoleRequestOCSP, evidence.Response, evidence.RoleResponseOCSP), true, "request", "ocsp", evidence.ErrVerification},
		{"rest signer chain", "rest-get", other(evidence.Request, evidence.RoleRequestSignerChain, evidence.Response, evidence.RoleResponseSignerChain), true, "request", "signer chain", evidence.ErrVerification},
		{"rest timestamp token", "rest-get", flip(evidence.Request, evidence.RoleTimestampToken), true, "request", "timestamp", evidence.ErrVerification},
		{"rest timestamp path index", "rest-get", replace(evidence.Request, evidence.RoleTimestampPath, "index 0", "index 1"), true, "request", "timestamp", evidence.ErrVerification},
		{"rest timestamp path of the response", "rest-get", other(evidence.Request, evidence.RoleTimestampPath, evidence.Response, evidence.RoleTimestampPath), true, "request", "timestamp", evidence.ErrVerification},
		{"rest registry proof", "rest-get", flip(evidence.Request, evidence.RoleRegistryProof), true, "request", "registry", evidence.ErrVerification},
		{"rest registry proof of the response", "rest-get", other(evidence.Request, evidence.RoleRegistryProof, evidence.Response, evidence.RoleRegistryProof), true, "request", "registry", evidence.ErrVerification},
		{"rest manifest client", "rest-get", func(_ *testing.T, _ map[string][]byte, m *evidence.Manifest) { m.Client = "SANDBOX/GOV/OTHER/client" }, true, "request", "identifiers", evidence.ErrVerification},
		{"rest manifest message id", "rest-get", func(_ *testing.T, _ map[string][]byte, m *evidence.Manifest) { m.MessageID = "forged" }, true, "request", "identifiers", evidence.ErrVerification},
		{"rest manifest hash", "rest-get", func(_ *testing.T, _ map[string][]byte, m *evidence.Manifest) {
			m.Messages[0].Hash = strings.Repeat("0", 64)
		}, true, "request", "hash", evidence.ErrVerification},
		{"rest manifest exporter", "rest-get", func(_ *testing.T, _ map[string][]byte, m *evidence.Manifest) {
			m.Exporter.Owner = "SANDBOX/GOV/PROVIDER"
		}, true, "request", "registry", evidence.ErrVerification},
		{"rest responses swapped", "rest-get", func(t *testing.T, files map[string][]byte, m *evidence.Manifest) {
			// the response of another exchange, with all its evidence
			of, om := unpack(t, f.bundles["rest-post"])
			for _, fl := range om.Files {
				if fl.Message == evidence.Response {
					files[fileOf(m, evidence.Response, fl.Role)] = of[fl.Name]
				}
			}
			m.Messages[1] = om.Messages[1]
		}, true, "response", "identifiers", evidence.ErrVerification},
		{"rest response removed, timestamp removed", "rest-get", func(_ *testing.T, files map[string][]byte, m *evidence.Manifest) {
			var kept []evidence.File
			for _, fl := range m.Files {
				if fl.Message == evidence.Request && fl.Role == evidence.RoleTimestampToken {
					delete(files, fl.Name)
					continue
				}
				kept = append(kept, fl)
			}
			m.Files = kept
		}, true, "request", "timestamp", evidence.ErrIncomplete},

		{"soap body", "soap", replace(evidence.Request, evidence.RoleRequestSignature, "getRandom", "getRandomX"), true, "request", "signature", evidence.ErrVerification},
		{"soap header", "soap", replace(evidence.Response, evidence.RoleResponseSignature, "CONSUMER", "CONSUMEX"), true, "response", "signature", evidence.ErrVerification},
		{"soap signature value", "soap", func(t *testing.T, files map[string][]byte, m *evidence.Manifest) {
			name := fileOf(m, evidence.Request, evidence.RoleRequestSignature)
			s := files[name]
			i := bytes.Index(s, []byte("SignatureValue>"))
			if i < 0 {
				t.Fatal("no SignatureValue")
			}
			s = bytes.Clone(s)
			j := i + len("SignatureValue>") + 4
			if s[j] == 'A' {
				s[j] = 'B'
			} else {
				s[j] = 'A'
			}
			files[name] = s
		}, true, "request", "signature", evidence.ErrVerification},
		{"soap ocsp", "soap", flip(evidence.Response, evidence.RoleResponseOCSP), true, "response", "ocsp", evidence.ErrVerification},
		{"soap timestamp token", "soap", flip(evidence.Response, evidence.RoleTimestampToken), true, "response", "timestamp", evidence.ErrVerification},
		{"soap timestamp path", "soap", other(evidence.Response, evidence.RoleTimestampPath, evidence.Request, evidence.RoleTimestampPath), true, "response", "timestamp", evidence.ErrVerification},
		{"soap registry proof", "soap", flip(evidence.Response, evidence.RoleRegistryProof), true, "response", "registry", evidence.ErrVerification},
		{"soap manifest service", "soap", func(_ *testing.T, _ map[string][]byte, m *evidence.Manifest) {
			m.Service = "SANDBOX/GOV/PROVIDER/services/other"
		}, true, "request", "identifiers", evidence.ErrVerification},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, m := unpack(t, f.bundles[tt.bundle])
			tt.mutate(t, files, m)
			b := repack(t, files, m, tt.fix)
			rep, err := evidence.Verify(bytes.NewReader(b), int64(len(b)), f.trust)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			found := false
			for _, c := range rep.Failed() {
				t.Log(c)
				if c.Subject == tt.subject && c.Name == tt.check {
					found = true
				}
			}
			if !found {
				t.Errorf("no failed %s %s check", tt.subject, tt.check)
			}
		})
	}
}

func TestMalformedBundles(t *testing.T) {
	f := getFixture(t)
	good := f.bundles["rest-get"]
	tests := []struct {
		name   string
		bundle func(t *testing.T) []byte
	}{
		{"not a zip", func(*testing.T) []byte { return []byte("PK not really") }},
		{"truncated", func(*testing.T) []byte { return good[:len(good)/2] }},
		{"no manifest", func(t *testing.T) []byte {
			files, _ := unpack(t, good)
			var buf bytes.Buffer
			zw := zip.NewWriter(&buf)
			for n, d := range files {
				w, _ := zw.Create(n)
				w.Write(d)
			}
			zw.Close()
			return buf.Bytes()
		}},
		{"unlisted file", func(t *testing.T) []byte {
			files, m := unpack(t, good)
			files["extra.bin"] = []byte("x")
			return repack(t, files, m, true)
		}},
		{"listed file missing", func(t *testing.T) []byte {
			files, m := unpack(t, good)
			delete(files, m.Files[0].Name)
			return repack(t, files, m, false)
		}},
		{"path in a name", func(t *testing.T) []byte {
			files, m := unpack(t, good)
			files["../evil"] = files[m.Files[0].Name]
			delete(files, m.Files[0].Name)
			m.Files[0].Name = "../evil"
			return repack(t, files, m, true)
		}},
		{"unknown role", func(t *testing.T) []byte {
			files, m := unpack(t, good)
			m.Files[0].Role = "request.secret"
			return repack(t, files, m, true)
		}},
		{"version 2", func(t *testing.T) []byte {
			files, m := unpack(t, good)
			m.Version = 2
			return repack(t, files, m, true)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.bundle(t)
			_, err := evidence.Verify(bytes.NewReader(b), int64(len(b)), f.trust)
			if !errors.Is(err, evidence.ErrMalformed) {
				t.Errorf("Verify = %v, want ErrMalformed", err)
			}
		})
	}
}
