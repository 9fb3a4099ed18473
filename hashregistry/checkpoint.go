package hashregistry

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ErrBadCheckpoint reports a checkpoint that does not parse or whose
// signature does not verify.
var ErrBadCheckpoint = errors.New("hashregistry: bad checkpoint")

// Checkpoint is a C2SP tlog-checkpoint body: the log's origin, its size and
// its RFC 6962 root hash. It is not tlog.FormatTree's checksum-database text.
type Checkpoint struct {
	Origin string
	Size   int64
	Hash   tlog.Hash
}

// Tree returns c as a tlog.Tree.
func (c Checkpoint) Tree() tlog.Tree { return tlog.Tree{N: c.Size, Hash: c.Hash} }

// Body returns the note text: "<origin>\n<size>\n<base64 root>\n".
func (c Checkpoint) Body() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Hash[:]))
}

// ValidOrigin reports whether s can be a log origin and note key name:
// non-empty, printable, without spaces or '+'.
func ValidOrigin(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == '+' || r == 0x7f || r > 0x7e {
			return false
		}
	}
	return true
}

// ParseCheckpoint parses a checkpoint body (the note text, without
// signatures). Extension lines after the root are allowed and ignored.
func ParseCheckpoint(text string) (Checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return Checkpoint{}, fmt.Errorf("%w: body does not end in a newline", ErrBadCheckpoint)
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, fmt.Errorf("%w: %d lines, want at least 3", ErrBadCheckpoint, len(lines))
	}
	for _, l := range lines[3:] {
		if l == "" {
			return Checkpoint{}, fmt.Errorf("%w: empty extension line", ErrBadCheckpoint)
		}
	}
	c := Checkpoint{Origin: lines[0]}
	if !ValidOrigin(c.Origin) {
		return Checkpoint{}, fmt.Errorf("%w: invalid origin", ErrBadCheckpoint)
	}
	n, err := parseDecimal(lines[1])
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: size: %w", ErrBadCheckpoint, err)
	}
	c.Size = n
	h, err := parseHash(lines[2])
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: root: %w", ErrBadCheckpoint, err)
	}
	c.Hash = h
	return c, nil
}

// parseDecimal parses a non-negative decimal without sign or leading zeros.
func parseDecimal(s string) (int64, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("not a canonical decimal: %q", truncate(s))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a canonical decimal: %q", truncate(s))
	}
	return n, nil
}

func parseHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		return h, fmt.Errorf("not a base64 SHA-256 hash: %q", truncate(s))
	}
	copy(h[:], b)
	return h, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// SignCheckpoint signs c's body with s, whose key name must be c's origin.
func SignCheckpoint(c Checkpoint, s note.Signer) ([]byte, error) {
	if s.Name() != c.Origin {
		return nil, fmt.Errorf("%w: signer %q is not origin %q", ErrBadCheckpoint, s.Name(), c.Origin)
	}
	return note.Sign(&note.Note{Text: c.Body()}, s)
}

// OpenCheckpoint verifies a signed checkpoint note with v (whose name is the
// log's origin) and parses its body. Signatures by other keys (witnesses)
// are ignored.
func OpenCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %w", ErrBadCheckpoint, err)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("%w: origin %q is not the key's name %q", ErrBadCheckpoint, c.Origin, v.Name())
	}
	return c, nil
}

// NewVerifier parses a note verifier key ("<name>+<hash>+<key>"), the
// content of registry.vkey (surrounding space is trimmed).
func NewVerifier(vkey []byte) (note.Verifier, error) {
	v, err := note.NewVerifier(string(bytes.TrimSpace(vkey)))
	if err != nil {
		return nil, fmt.Errorf("hashregistry: verifier key: %w", err)
	}
	return v, nil
}
