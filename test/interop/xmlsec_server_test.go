package interop

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/sandbox"
)

// TestXmlsec1VerifiesExchangedEnvelopes: a SOAP exchange through the
// sandbox's two security servers; every signed envelope they exchanged (the
// request and the response, as logged on each side) verifies with xmlsec1
// against the federation's root alone, and a tampered copy does not.
func TestXmlsec1VerifiesExchangedEnvelopes(t *testing.T) {
	bin := xmlsec1(t)
	sb, err := sandbox.Start(t.Context(), sandbox.Config{Dir: filepath.Join(t.TempDir(), "sb")})
	if err != nil {
		t.Fatalf("sandbox.Start: %v", err)
	}
	defer sb.Close()

	id := uuid.NewString()
	req := bytes.Replace([]byte(soapRequest), []byte("4894e35d-bf0f-44a6-867a-8e51f1daa7e0"), []byte(id), 1)
	req = []byte(strings.NewReplacer(
		"<id:xRoadInstance>PAS</id:xRoadInstance>", "<id:xRoadInstance>SANDBOX</id:xRoadInstance>",
		"<id:memberCode>MEMBER1</id:memberCode>", "<id:memberCode>CONSUMER</id:memberCode>",
		"<id:subsystemCode>SUBSYSTEM1</id:subsystemCode>", "<id:subsystemCode>client</id:subsystemCode>",
		"<id:memberCode>MEMBER2</id:memberCode>", "<id:memberCode>PROVIDER</id:memberCode>",
		"<id:subsystemCode>SUBSYSTEM2</id:subsystemCode>", "<id:subsystemCode>services</id:subsystemCode>",
		"<id:serviceCode>exampleService</id:serviceCode>", "<id:serviceCode>getRandom</id:serviceCode>",
		"ns1:exampleService>", "ns1:getRandom>",
	).Replace(string(req)))
	hreq, err := http.NewRequestWithContext(t.Context(), http.MethodPost, sb.Info.ConsumerURL+"/", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Content-Type", "text/xml; charset=utf-8")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("exchange: status %d\n%s", resp.StatusCode, body)
	}

	caPEM := filepath.Join(sb.TrustDir, "ca.pem")
	client, _ := pki.ParseSubsystemID(sandbox.ClientID)
	dir := t.TempDir()
	n := 0
	for _, in := range []*sandbox.Institution{sb.Consumer, sb.Provider} {
		recs, err := in.Server().Log().ByMessageID(t.Context(), id, client)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2 {
			t.Fatalf("%s logged %d records, want a request and a response", in.Member, len(recs))
		}
		for _, rec := range recs {
			tampered := bytes.Replace(rec.Signed, []byte("EE12345678901"), []byte("EE12345678900"), 1)
			if bytes.Equal(tampered, rec.Signed) {
				t.Fatal("tampering changed nothing")
			}
			for _, tc := range []struct {
				name string
				doc  []byte
				ok   bool
			}{{"signed", rec.Signed, true}, {"tampered", tampered, false}} {
				n++
				name := in.Member.Member + "-" + rec.Kind.String() + "-" + tc.name
				t.Run(name, func(t *testing.T) {
					f := filepath.Join(dir, name+".xml")
					if err := os.WriteFile(f, tc.doc, 0o644); err != nil {
						t.Fatal(err)
					}
					out, err := exec.CommandContext(t.Context(), bin, "--verify", "--trusted-pem", caPEM,
						"--enabled-reference-uris", "empty", f).CombinedOutput()
					if ok := err == nil; ok != tc.ok {
						t.Errorf("xmlsec1 --verify: ok = %v, want %v\n%s", ok, tc.ok, out)
					}
				})
			}
		}
	}
	if n != 8 {
		t.Errorf("checked %d documents, want 8", n)
	}
}
