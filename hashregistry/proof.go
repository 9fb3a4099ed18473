package hashregistry

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ProofHeader is the first line of a c2sp.org/tlog-proof@v1 file.
const ProofHeader = "c2sp.org/tlog-proof@v1"

// MaxProofFile bounds the size of a proof file we parse.
const MaxProofFile = 64 << 10

// ErrBadProof reports a proof file that does not parse or does not verify.
var ErrBadProof = errors.New("hashregistry: bad proof")

// ProofFile is a c2sp.org/tlog-proof@v1 file: an offline receipt that the
// entry at Index is in the tree of the signed Checkpoint. The registry puts
// the canonical entry in Extra so the receipt is self-contained; Extra is
// not authenticated by itself, but VerifyReceipt checks it hashes to the
// proven leaf.
type ProofFile struct {
	Extra      []byte // nil when absent
	Index      int64
	Proof      tlog.RecordProof
	Checkpoint []byte // the signed note, verbatim
}

// Marshal encodes p.
func (p ProofFile) Marshal() []byte {
	return p.AppendTo(make([]byte, 0, p.size()))
}

func (p ProofFile) size() int {
	return len(ProofHeader) + 30 + 4*(len(p.Extra)+2)/3 + 45*len(p.Proof) + len(p.Checkpoint)
}

// AppendTo appends the encoding of p to b.
func (p ProofFile) AppendTo(b []byte) []byte {
	b = slices.Grow(b, p.size())
	b = append(b, ProofHeader+"\n"...)
	if p.Extra != nil {
		b = append(b, "extra "...)
		b = base64.StdEncoding.AppendEncode(b, p.Extra)
		b = append(b, '\n')
	}
	b = append(b, "index "...)
	b = strconv.AppendInt(b, p.Index, 10)
	b = append(b, '\n')
	for _, h := range p.Proof {
		b = base64.StdEncoding.AppendEncode(b, h[:])
		b = append(b, '\n')
	}
	b = append(b, '\n')
	return append(b, p.Checkpoint...)
}

// ParseProofFile decodes a proof file. It checks the syntax only; use
// VerifyReceipt to check it.
func ParseProofFile(data []byte) (ProofFile, error) {
	var p ProofFile
	if len(data) > MaxProofFile {
		return p, fmt.Errorf("%w: %d bytes", ErrBadProof, len(data))
	}
	head, cp, ok := bytes.Cut(data, []byte("\n\n"))
	if !ok || len(cp) == 0 {
		return p, fmt.Errorf("%w: no checkpoint after a blank line", ErrBadProof)
	}
	lines := strings.Split(string(head), "\n")
	if lines[0] != ProofHeader {
		return p, fmt.Errorf("%w: first line is not %q", ErrBadProof, ProofHeader)
	}
	lines = lines[1:]
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		x, err := base64.StdEncoding.Strict().DecodeString(strings.TrimPrefix(lines[0], "extra "))
		if err != nil {
			return p, fmt.Errorf("%w: extra: %w", ErrBadProof, err)
		}
		p.Extra = x
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		return p, fmt.Errorf("%w: no index line", ErrBadProof)
	}
	idx, err := parseDecimal(strings.TrimPrefix(lines[0], "index "))
	if err != nil {
		return p, fmt.Errorf("%w: index: %w", ErrBadProof, err)
	}
	p.Index = idx
	if len(lines)-1 > 64 {
		return p, fmt.Errorf("%w: %d proof hashes", ErrBadProof, len(lines)-1)
	}
	for _, l := range lines[1:] {
		h, err := parseHash(l)
		if err != nil {
			return p, fmt.Errorf("%w: proof: %w", ErrBadProof, err)
		}
		p.Proof = append(p.Proof, h)
	}
	p.Checkpoint = cp
	return p, nil
}

// Receipt is what VerifyReceipt proved: the entry is at Index in the log
// Checkpoint describes, whose signature verified.
type Receipt struct {
	Index      int64
	Entry      Entry
	Checkpoint Checkpoint
}

// VerifyReceipt checks a proof file offline against the log's verifier
// key: the checkpoint's signature, the entry in Extra, and the inclusion
// proof of that entry's leaf hash at Index in the checkpoint's tree.
func VerifyReceipt(data []byte, v note.Verifier) (Receipt, error) {
	p, err := ParseProofFile(data)
	if err != nil {
		return Receipt{}, err
	}
	c, err := OpenCheckpoint(p.Checkpoint, v)
	if err != nil {
		return Receipt{}, err
	}
	if p.Extra == nil {
		return Receipt{}, fmt.Errorf("%w: no entry in the extra line", ErrBadProof)
	}
	e, err := ParseEntry(p.Extra)
	if err != nil {
		return Receipt{}, fmt.Errorf("%w: %w", ErrBadProof, err)
	}
	if p.Index >= c.Size {
		return Receipt{}, fmt.Errorf("%w: index %d outside a tree of %d entries", ErrBadProof, p.Index, c.Size)
	}
	if err := tlog.CheckRecord(p.Proof, c.Size, c.Hash, p.Index, tlog.RecordHash(p.Extra)); err != nil {
		return Receipt{}, fmt.Errorf("%w: inclusion: %w", ErrBadProof, err)
	}
	return Receipt{Index: p.Index, Entry: e, Checkpoint: c}, nil
}
