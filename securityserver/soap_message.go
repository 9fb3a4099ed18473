package securityserver

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/textproto"
	"os"

	"github.com/passerelle/passerelle/soap"
)

// soapMessage is a SOAP message in transit through the server: the SOAP part
// in memory (bounded by the envelope limit) and the attachments, if any,
// spooled once as received — in memory up to memSpoolLimit, in an anonymous
// file beyond — then streamed out from there, so that a large attachment is
// never held in memory.
type soapMessage struct {
	*soap.Message
	params map[string]string // the multipart/related parameters (boundary excepted)
	parts  []spooledPart
	store  *attachStore
}

// spooledPart is one attachment: its MIME headers as received and where its
// bytes (still in their transfer encoding) lie in the store.
type spooledPart struct {
	header   textproto.MIMEHeader
	off, len int64
}

// soapLimits are the hardened-XML limits with the configured envelope size.
func (s *Server) soapLimits() soap.Limits {
	return soap.Limits{MaxSize: s.cfg.Limits.MaxBodyBytes}
}

// readSOAPMessage reads a SOAP POST body (bare envelope, SwA or MTOM). The
// envelope is bounded by limits.maxBodyBytes, and so is the attachments'
// total (their MIME headers included). Close the message when done.
func (s *Server) readSOAPMessage(contentType string, body io.Reader) (*soapMessage, error) {
	st := &attachStore{dir: s.cfg.DataDir, limit: s.cfg.Limits.MaxBodyBytes}
	m := &soapMessage{store: st}
	spool := func(i int, h textproto.MIMEHeader) (io.WriteCloser, error) {
		// The headers stay with the message: they count against the limit.
		for k, vv := range h {
			for _, v := range vv {
				st.hdr += int64(len(k) + len(v))
			}
		}
		if st.n+st.hdr > st.limit {
			st.tooLarge = true
			return nil, errTooLarge
		}
		m.parts = append(m.parts, spooledPart{header: h, off: st.n})
		return &partWriter{m: m, i: len(m.parts) - 1}, nil
	}
	msg, err := soap.ReadMessage(contentType, body, s.soapLimits(), spool)
	if err != nil {
		st.Close()
		if st.tooLarge {
			return nil, soapError(soap.CodeInvalidMessage, errTooLarge, "the attachments exceed %d bytes", s.cfg.Limits.MaxBodyBytes)
		}
		return nil, err
	}
	m.Message = msg
	if msg.Multipart {
		_, params, _ := mime.ParseMediaType(contentType) // parsed by ReadMessage
		delete(params, "boundary")
		m.params = params
	}
	return m, nil
}

// Close releases the attachments' spool.
func (m *soapMessage) Close() {
	if m != nil {
		m.store.Close()
	}
}

// attachments is every attachment's bytes, in order: what the message log
// keeps as the body of a SOAP message (the signed properties give each
// attachment's size, headers and digest, so the parts can be told apart).
func (m *soapMessage) attachments() io.Reader { return m.store.section(0, m.store.n) }

// contentType is the media type to send the message with: the SOAP part's
// own for a bare envelope; for multipart/related the parameters received
// with a new boundary.
func (m *soapMessage) contentType(boundary string) string {
	if !m.Multipart {
		return m.ContentType
	}
	p := maps.Clone(m.params)
	if p == nil {
		p = map[string]string{}
	}
	p["boundary"] = boundary
	return mime.FormatMediaType("multipart/related", p)
}

// write writes the message with envelope as its SOAP part: the envelope
// alone, or a multipart/related body with the envelope first and the
// attachments as received (same headers, same bytes).
func (m *soapMessage) write(w io.Writer, envelope []byte, boundary string) error {
	if !m.Multipart {
		_, err := w.Write(envelope)
		return err
	}
	mw := multipart.NewWriter(w)
	if err := mw.SetBoundary(boundary); err != nil {
		return err
	}
	h := textproto.MIMEHeader{"Content-Type": {m.ContentType}}
	if id := m.params["start"]; id != "" {
		h.Set("Content-ID", id)
	}
	pw, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := pw.Write(envelope); err != nil {
		return err
	}
	for _, p := range m.parts {
		pw, err := mw.CreatePart(p.header)
		if err != nil {
			return err
		}
		if _, err := io.Copy(pw, m.store.section(p.off, p.len)); err != nil {
			return err
		}
	}
	return mw.Close()
}

// body returns the message as an HTTP body: its content type, a reader, its
// length (-1 when streamed) and a function to call once the body is no
// longer read, before the message is closed.
func (m *soapMessage) body(envelope []byte) (ct string, r io.Reader, n int64, done func()) {
	if !m.Multipart {
		return m.ContentType, bytes.NewReader(envelope), int64(len(envelope)), func() {}
	}
	b := newBoundary()
	pr, pw := io.Pipe()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		pw.CloseWithError(m.write(pw, envelope, b))
	}()
	return m.contentType(b), pr, -1, func() {
		pr.Close()
		<-finished
	}
}

func newBoundary() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "passerelle-" + hex.EncodeToString(b[:])
}

type partWriter struct {
	m *soapMessage
	i int
}

func (w *partWriter) Write(p []byte) (int, error) { return w.m.store.Write(p) }

func (w *partWriter) Close() error {
	part := &w.m.parts[w.i]
	part.len = w.m.store.n - part.off
	return nil
}

// attachStore holds attachments back to back: in memory up to memSpoolLimit,
// then in an anonymous file in the data directory.
type attachStore struct {
	dir      string
	limit    int64
	mem      []byte
	f        *os.File
	n        int64
	hdr      int64 // bytes of the attachments' MIME headers, held in parts
	tooLarge bool
}

func (a *attachStore) Write(p []byte) (int, error) {
	if a.n+a.hdr+int64(len(p)) > a.limit {
		a.tooLarge = true
		return 0, errTooLarge
	}
	if a.f == nil && a.n+int64(len(p)) > memSpoolLimit {
		f, err := os.CreateTemp(a.dir, "spool-*")
		if err != nil {
			return 0, err
		}
		os.Remove(f.Name()) // anonymous: gone when closed, even after a crash
		a.f = f
		if _, err := f.Write(a.mem); err != nil {
			return 0, err
		}
		a.mem = nil
	}
	if a.f != nil {
		n, err := a.f.Write(p)
		a.n += int64(n)
		return n, err
	}
	a.mem = append(a.mem, p...)
	a.n += int64(len(p))
	return len(p), nil
}

// section reads n bytes from off; sections may be read concurrently once
// the writes are over.
func (a *attachStore) section(off, n int64) io.Reader {
	if a.f != nil {
		return io.NewSectionReader(a.f, off, n)
	}
	return bytes.NewReader(a.mem[off : off+n])
}

func (a *attachStore) Close() {
	if a != nil && a.f != nil {
		a.f.Close()
		a.f = nil
	}
}

// soapError is a protocol error with an X-Road code and a public message;
// cause is logged, never sent.
func soapError(code string, cause error, format string, args ...any) *soap.Error {
	return &soap.Error{Code: code, Msg: fmt.Sprintf(format, args...), Err: cause}
}
