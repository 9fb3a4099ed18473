package directory

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// NewHandler serves dir/directory.jws (GET /directory in `passerelle
// directory serve`), re-read on every request so that a new `sign` is
// served at once. The response carries an ETag (the SHA-256 of the file) and
// honours If-None-Match; 503 until a document has been signed. log may be nil.
func NewHandler(dir string, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	path := filepath.Join(dir, SignedFile)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := readLimited(path)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				log.Error("read signed directory", "path", path, "err", err)
			}
			http.Error(w, "no signed directory yet", http.StatusServiceUnavailable)
			return
		}
		mod := fileModTime(path)
		sum := sha256.Sum256(data)
		w.Header().Set("Content-Type", MediaType)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "", mod, bytes.NewReader(data))
	})
}

func fileModTime(path string) (t time.Time) {
	if fi, err := os.Stat(path); err == nil {
		t = fi.ModTime()
	}
	return t
}
