package main

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/passerelle/passerelle/securityserver/evidence"
)

// TestDemo runs the whole demo, then audits the bundles it kept with
// `passerelle audit evidence`, untouched and tampered.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := runDemo(t.Context(), dir, &out, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	for _, want := range []string{"demo passed", "ocsp: revoked", "evidence soap", "registry audit --full"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	trust := filepath.Join(dir, "sandbox", "trust")

	for _, name := range []string{"rest-get", "rest-post", "soap"} {
		t.Run("audit evidence "+name, func(t *testing.T) {
			out, err := runCmd(t, newAuditEvidenceCmd(), filepath.Join(dir, "evidence", name+".zip"), "--trust", trust)
			if err != nil || !strings.Contains(out, "VERIFIED") || strings.Contains(out, "FAIL") {
				t.Errorf("audit evidence: %v\n%s", err, out)
			}
		})
	}

	tampered := []struct {
		name, bundle, file string
		edit               func([]byte) []byte
		want               string
	}{
		{"response body", "rest-post", "response.body", func(b []byte) []byte { return bytes.Replace(b, []byte("Rex"), []byte("Max"), 1) }, "FAIL response body"},
		{"request signature", "rest-get", "request.jws", func(b []byte) []byte { b = bytes.Clone(b); b[len(b)-2] ^= 1; return b }, "FAIL request  signature"},
		{"soap envelope", "soap", "response.xml", func(b []byte) []byte { return bytes.Replace(b, []byte("<data>"), []byte("<data>1"), 1) }, "FAIL response signature"},
		{"registry proof", "rest-get", "response.registry.proof", func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 2; return b }, "FAIL response registry"},
	}
	for _, tt := range tampered {
		t.Run("audit evidence tampered "+tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tampered.zip")
			tamper(t, filepath.Join(dir, "evidence", tt.bundle+".zip"), path, tt.file, tt.edit)
			out, err := runCmd(t, newAuditEvidenceCmd(), path, "--trust", trust)
			if err == nil || !strings.Contains(out, tt.want) || !strings.Contains(out, "FAILED") {
				t.Errorf("audit evidence of a tampered bundle: err %v, want a failure with %q\n%s", err, tt.want, out)
			}
		})
	}

	t.Run("audit evidence without --trust", func(t *testing.T) {
		if _, err := runCmd(t, newAuditEvidenceCmd(), filepath.Join(dir, "evidence", "soap.zip")); err == nil {
			t.Error("no error without --trust")
		}
	})
	t.Run("evidence export without flags", func(t *testing.T) {
		if _, err := runCmd(t, newEvidenceCmd(), "export", "--id", "x"); err == nil {
			t.Error("no error without --admin-url, --token-file, --out")
		}
	})
}

func runCmd(t *testing.T, cmd interface {
	SetArgs([]string)
	SetOut(io.Writer)
	SetErr(io.Writer)
	Execute() error
}, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	err := cmd.Execute()
	return out.String(), err
}

// tamper copies the bundle at src to dst with file edited and the
// manifest's size and digest of it updated, as a careful forger would.
func tamper(t *testing.T, src, dst, file string, edit func([]byte) []byte) {
	t.Helper()
	zr, err := zip.OpenReader(src)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	files := map[string][]byte{}
	var order []string
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name], _ = io.ReadAll(rc)
		rc.Close()
		order = append(order, f.Name)
	}
	if files[file] == nil {
		t.Fatalf("%s has no %s", src, file)
	}
	files[file] = edit(files[file])
	var m map[string]any
	if err := json.Unmarshal(files[evidence.ManifestName], &m); err != nil {
		t.Fatal(err)
	}
	for _, f := range m["files"].([]any) {
		f := f.(map[string]any)
		if f["name"] == file {
			sum := sha256.Sum256(files[file])
			f["size"], f["sha256"] = len(files[file]), hex.EncodeToString(sum[:])
		}
	}
	files[evidence.ManifestName], _ = json.Marshal(m)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range order {
		w, _ := zw.Create(name)
		w.Write(files[name])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}
