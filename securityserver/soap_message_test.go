package securityserver

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestReadSOAPMessageBoundsPartHeaders: attachments' MIME headers are kept
// with the message until it is forwarded, so they count against
// limits.maxBodyBytes like the attachments' bytes; otherwise each of up to
// 100 parts could hold 10 MiB of headers (Go's per-part cap).
func TestReadSOAPMessageBoundsPartHeaders(t *testing.T) {
	const limit = 64 << 10
	s := &Server{cfg: &Config{DataDir: t.TempDir(), Limits: LimitsConfig{MaxBodyBytes: limit}}}
	env := `<?xml version="1.0"?><e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>`
	big := strings.Repeat("x", 8<<10)
	var b bytes.Buffer
	fmt.Fprintf(&b, "--B\r\nContent-Type: text/xml; charset=utf-8\r\n\r\n%s\r\n", env)
	for i := range 16 { // 16 parts of 8 KiB of headers each: twice the limit
		fmt.Fprintf(&b, "--B\r\nContent-Type: text/plain\r\nContent-ID: <a%d>\r\nX-Pad: %s\r\n\r\nhi\r\n", i, big)
	}
	b.WriteString("--B--\r\n")
	msg, err := s.readSOAPMessage(`multipart/related; type="text/xml"; boundary=B`, &b)
	if err == nil {
		msg.Close()
		t.Fatalf("a message whose attachment headers total %d bytes was accepted (limit %d)", 16*len(big), limit)
	}
	if !errors.Is(err, errTooLarge) {
		t.Fatalf("err = %v, want errTooLarge", err)
	}

	// Within the limit, headers and all, it is read.
	b.Reset()
	fmt.Fprintf(&b, "--B\r\nContent-Type: text/xml; charset=utf-8\r\n\r\n%s\r\n", env)
	fmt.Fprintf(&b, "--B\r\nContent-Type: text/plain\r\nContent-ID: <a>\r\nX-Pad: %s\r\n\r\nhi\r\n--B--\r\n", big)
	msg, err = s.readSOAPMessage(`multipart/related; type="text/xml"; boundary=B`, &b)
	if err != nil {
		t.Fatal(err)
	}
	defer msg.Close()
	if len(msg.parts) != 1 || msg.parts[0].len != 2 {
		t.Fatalf("parts = %+v", msg.parts)
	}
}
