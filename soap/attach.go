package soap

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
)

// ErrAttachment reports a malformed multipart message.
var ErrAttachment = errors.New("soap: malformed multipart message")

// Message is a SOAP request or response as POSTed: the SOAP part's bytes and
// media type, and the digests of its attachments (SwA or MTOM), in order.
type Message struct {
	Envelope    []byte // the SOAP part, bounded by Limits.MaxSize
	ContentType string // the SOAP part's media type (for ParseEnvelope)
	Multipart   bool
	MTOM        bool // root part is application/xop+xml
	Attachments []AttachmentDigest
}

// Spool receives one attachment's body as transmitted (still in its
// Content-Transfer-Encoding) while ReadMessage digests it; it returns where to
// copy the bytes. A nil Spool discards them (digest only).
type Spool func(i int, h textproto.MIMEHeader) (io.WriteCloser, error)

// ReadMessage reads a POST body of media type contentType: a bare envelope
// (text/xml, application/soap+xml) or multipart/related with the SOAP part
// first (SwA) or an application/xop+xml root (MTOM). The SOAP part is held
// in memory up to lim.MaxSize; attachments stream through a 32 KiB buffer
// to their digest and to spool, so memory stays bounded for any size.
func ReadMessage(contentType string, body io.Reader, lim Limits, spool Spool) (*Message, error) {
	lim = lim.withDefaults()
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, errorf(CodeInvalidContentType, err, "invalid content type")
	}
	if mt != "multipart/related" {
		if _, err := VersionFromContentType(contentType); err != nil {
			return nil, err
		}
		env, err := readLimited(body, lim.MaxSize)
		if err != nil {
			return nil, err
		}
		return &Message{Envelope: env, ContentType: contentType}, nil
	}
	boundary := params["boundary"]
	if boundary == "" {
		return nil, errorf(CodeInvalidContentType, nil, "multipart/related without boundary")
	}
	mr := multipart.NewReader(body, boundary)
	root, err := mr.NextRawPart()
	if err != nil {
		return nil, errorf(CodeInvalidMessage, fmt.Errorf("%w: %v", ErrAttachment, err), "malformed multipart message")
	}
	if start := params["start"]; start != "" && root.Header.Get("Content-ID") != start {
		return nil, errorf(CodeInvalidMessage, ErrAttachment, "the SOAP part must come first")
	}
	msg := &Message{Multipart: true, ContentType: root.Header.Get("Content-Type")}
	rmt, _, err := mime.ParseMediaType(msg.ContentType)
	if err != nil {
		return nil, errorf(CodeInvalidContentType, err, "invalid SOAP part content type")
	}
	msg.MTOM = rmt == "application/xop+xml"
	if _, err := VersionFromContentType(msg.ContentType); err != nil {
		return nil, err
	}
	if cte := root.Header.Get("Content-Transfer-Encoding"); cte != "" && cte != "8bit" && cte != "binary" && cte != "7bit" {
		return nil, errorf(CodeInvalidMessage, ErrAttachment, "SOAP part transfer encoding %q not supported", truncate(cte))
	}
	if msg.Envelope, err = readLimited(root, lim.MaxSize); err != nil {
		return nil, err
	}
	buf := make([]byte, 32<<10)
	for i := 0; ; i++ {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, errorf(CodeInvalidMessage, fmt.Errorf("%w: %v", ErrAttachment, err), "malformed multipart message")
		}
		if i >= lim.MaxAttachments {
			return nil, errorf(CodeInvalidMessage, ErrLimit, "more than %d attachments", lim.MaxAttachments)
		}
		d, err := digestPart(i, p, spool, buf)
		if err != nil {
			return nil, err
		}
		msg.Attachments = append(msg.Attachments, d)
	}
	return msg, nil
}

func digestPart(i int, p *multipart.Part, spool Spool, buf []byte) (AttachmentDigest, error) {
	h := sha256.New()
	var w io.Writer = h
	var sink io.WriteCloser
	if spool != nil {
		var err error
		if sink, err = spool(i, p.Header); err != nil {
			return AttachmentDigest{}, fmt.Errorf("soap: spool attachment %d: %w", i+1, err)
		}
		w = io.MultiWriter(h, sink)
	}
	n, err := io.CopyBuffer(w, p, buf)
	if sink != nil {
		if cerr := sink.Close(); err == nil && cerr != nil {
			return AttachmentDigest{}, fmt.Errorf("soap: spool attachment %d: %w", i+1, cerr)
		}
	}
	if err != nil {
		return AttachmentDigest{}, errorf(CodeInvalidMessage, fmt.Errorf("%w: %v", ErrAttachment, err), "malformed multipart message")
	}
	return AttachmentDigest{
		ContentID:        p.Header.Get("Content-ID"),
		ContentType:      p.Header.Get("Content-Type"),
		TransferEncoding: p.Header.Get("Content-Transfer-Encoding"),
		Size:             n,
		SHA256:           h.Sum(nil),
	}, nil
}

func readLimited(r io.Reader, max int64) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(int(min(max+1, 8<<10))) // most envelopes in one allocation
	n, err := b.ReadFrom(io.LimitReader(r, max+1))
	if err != nil {
		return nil, errorf(CodeInvalidMessage, err, "cannot read message")
	}
	if n > max {
		return nil, errorf(CodeInvalidMessage, ErrTooLarge, "message too large")
	}
	return b.Bytes(), nil
}
