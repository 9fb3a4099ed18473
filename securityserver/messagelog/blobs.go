package messagelog

import (
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Blob files live in Dir/blobs, named by record id (16 hex digits) and what
// they hold: "<id>.body" or "<id>.signed".

func (l *Log) blobPath(id uint64, kind string) string {
	return filepath.Join(l.blobDir, fmt.Sprintf("%016x.%s", id, kind))
}

// parseBlobName returns the record id a blob file belongs to.
func parseBlobName(name string) (uint64, bool) {
	base, kind, ok := strings.Cut(name, ".")
	if !ok || (kind != "body" && kind != "signed") || len(base) != 16 {
		return 0, false
	}
	id, err := strconv.ParseUint(base, 16, 64)
	return id, err == nil
}

// writeBlob writes r to a new file at path (0600), feeding h too when not
// nil, and fsyncs it. The caller fsyncs the directory.
func writeBlob(path string, r io.Reader, h hash.Hash) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	w := io.Writer(f)
	if h != nil {
		w = io.MultiWriter(f, h)
	}
	n, err := io.Copy(w, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// syncDir fsyncs a directory so that new entries in it survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
