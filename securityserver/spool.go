package securityserver

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"

	"github.com/passerelle/passerelle/rest"
)

// memSpoolLimit is how much of a body is kept in memory; the rest of a
// larger body goes to a temporary file in the data directory, so memory stays
// bounded whatever the body size.
const memSpoolLimit = 1 << 20

// copyBufs holds the buffers of large copies.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// errTooLarge reports a body over the configured limit.
var errTooLarge = errors.New("body exceeds the size limit")

// spool holds a body that must be digested before it is signed, then read
// again to be logged and forwarded.
type spool struct {
	mem  []byte
	file *os.File
	n    int64
}

// spoolBody reads r (at most limit bytes) while digesting it.
func spoolBody(r io.Reader, limit int64, dir string) (*spool, rest.BodyDigest, error) {
	d := rest.NewDigester()
	sp := &spool{}
	if r == nil || r == http.NoBody {
		return sp, d.Sum(), nil
	}
	lr := &io.LimitedReader{R: r, N: limit + 1}
	// Read straight into the buffer (io.Copy would allocate a 32 KiB copy
	// buffer per body), then digest it.
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(lr, memSpoolLimit))
	if err != nil {
		return nil, rest.BodyDigest{}, err
	}
	d.Write(buf.Bytes())
	sp.n = n
	if n == memSpoolLimit {
		f, err := os.CreateTemp(dir, "spool-*")
		if err != nil {
			return nil, rest.BodyDigest{}, err
		}
		os.Remove(f.Name()) // anonymous: gone when closed, even after a crash
		sp.file = f
		if _, err := f.Write(buf.Bytes()); err != nil {
			sp.Close()
			return nil, rest.BodyDigest{}, err
		}
		cb := copyBufs.Get().(*[]byte)
		m, err := io.CopyBuffer(io.MultiWriter(f, d), lr, *cb)
		copyBufs.Put(cb)
		if err != nil {
			sp.Close()
			return nil, rest.BodyDigest{}, err
		}
		sp.n += m
	} else {
		sp.mem = buf.Bytes()
	}
	if sp.n > limit {
		sp.Close()
		return nil, rest.BodyDigest{}, errTooLarge
	}
	return sp, d.Sum(), nil
}

// Len is the body's length.
func (s *spool) Len() int64 { return s.n }

// Reader returns a new reader over the whole body.
func (s *spool) Reader() io.Reader {
	if s.file != nil {
		return io.NewSectionReader(s.file, 0, s.n)
	}
	return bytes.NewReader(s.mem)
}

// Bytes returns the body when it is held in memory (nil otherwise).
func (s *spool) Bytes() []byte { return s.mem }

// Close removes the spool file, if any.
func (s *spool) Close() {
	if s != nil && s.file != nil {
		s.file.Close()
		s.file = nil
	}
}
