package timestamp

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// Hash is a message hash (SHA-256), the unit the batcher stamps.
type Hash = tlog.Hash

// Batch aggregation
//
// A batch of n message hashes m_0 … m_{n-1} is an RFC 6962 Merkle tree whose
// leaf i is RecordHash(m_i) = SHA-256(0x00 ‖ m_i), not m_i itself: the 0x00
// leaf prefix (0x01 for interior nodes) keeps an interior node from being
// passed off as a message hash. The token is over the tree root with
// SHA-256. A message's proof is its index, the tree size and the RFC 6962
// audit path (tlog.RecordProof); Verify recomputes the root from them and
// checks the token over it. What a path proves is membership: the message
// hash is a leaf of the tree the token covers. As in RFC 6962, an audit path
// does not pin the tree size by itself (leaf 3 has the same path in trees of
// 10 and 11 leaves), so Size and Index are bookkeeping, not evidence.

// Batch is a Merkle tree over message hashes.
type Batch struct {
	hashes []Hash
	stored []tlog.Hash
	root   Hash
}

// NewBatch builds the tree over msgs (at least one) in order.
func NewBatch(msgs []Hash) (*Batch, error) {
	if len(msgs) == 0 {
		return nil, errors.New("timestamp: empty batch")
	}
	b := &Batch{hashes: msgs, stored: make([]tlog.Hash, 0, 2*len(msgs))}
	for i, m := range msgs {
		hs, err := tlog.StoredHashesForRecordHash(int64(i), tlog.RecordHash(m[:]), b.reader())
		if err != nil {
			return nil, err
		}
		b.stored = append(b.stored, hs...)
	}
	root, err := tlog.TreeHash(int64(len(msgs)), b.reader())
	if err != nil {
		return nil, err
	}
	b.root = root
	return b, nil
}

func (b *Batch) reader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x < 0 || x >= int64(len(b.stored)) {
				return nil, fmt.Errorf("timestamp: stored hash %d out of range", x)
			}
			out[i] = b.stored[x]
		}
		return out, nil
	})
}

// Root is the tree root the token covers.
func (b *Batch) Root() Hash { return b.root }

// Size is the number of message hashes.
func (b *Batch) Size() int64 { return int64(len(b.hashes)) }

// Path returns the proof of message i.
func (b *Batch) Path(i int64) (BatchPath, error) {
	p, err := tlog.ProveRecord(b.Size(), i, b.reader())
	if err != nil {
		return BatchPath{}, err
	}
	return BatchPath{Index: i, Size: b.Size(), Proof: p}, nil
}

// BatchPath is one message's place in a batch: its leaf index, the batch
// size and the RFC 6962 audit path to the root. Its text form (MarshalText)
// is what the evidence bundle stores as timestamp.path.
type BatchPath struct {
	Index int64  `json:"index"`
	Size  int64  `json:"size"`
	Proof []Hash `json:"proof"`
}

const pathHeader = "passerelle-batch-path/v1"

// MaxPathHashes bounds a parsed path (a tree of 2^63 leaves needs 63).
const MaxPathHashes = 64

// MarshalText writes:
//
//	passerelle-batch-path/v1
//	index 3
//	size 10
//	<base64 hash>   (one line per audit-path hash, leaf side first)
func (p BatchPath) MarshalText() ([]byte, error) {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%s\nindex %d\nsize %d\n", pathHeader, p.Index, p.Size)
	for _, h := range p.Proof {
		buf.WriteString(h.String())
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

// UnmarshalText parses what MarshalText writes, strictly.
func (p *BatchPath) UnmarshalText(text []byte) error {
	q, err := ParseBatchPath(text)
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// ParseBatchPath parses the text form of a BatchPath.
func ParseBatchPath(text []byte) (BatchPath, error) {
	bad := func(why string) (BatchPath, error) {
		return BatchPath{}, fmt.Errorf("%w: path: %s", ErrBadProof, why)
	}
	if len(text) > 1<<13 {
		return bad("too long")
	}
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return bad("must end with a newline")
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if len(lines) < 3 || lines[0] != pathHeader {
		return bad("missing header")
	}
	num := func(line, key string) (int64, bool) {
		v, ok := strings.CutPrefix(line, key+" ")
		if !ok || v == "" || (len(v) > 1 && v[0] == '0') {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil && n >= 0
	}
	var p BatchPath
	var ok bool
	if p.Index, ok = num(lines[1], "index"); !ok {
		return bad("bad index line")
	}
	if p.Size, ok = num(lines[2], "size"); !ok || p.Size == 0 || p.Index >= p.Size {
		return bad("bad size line")
	}
	if len(lines)-3 > MaxPathHashes {
		return bad("too many hashes")
	}
	for _, l := range lines[3:] {
		h, err := tlog.ParseHash(l)
		if err != nil || h.String() != l {
			return bad("bad hash line")
		}
		p.Proof = append(p.Proof, h)
	}
	return p, nil
}

// Verify checks that messageHash is in the batch whose root token covers:
// the path leads from RecordHash(messageHash) to the token's imprint, and the
// token verifies (VerifyToken with roots and opts) over that root.
func Verify(messageHash Hash, path BatchPath, token []byte, roots *x509.CertPool, opts VerifyOptions) (*Info, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadToken, len(token))
	}
	claimed, err := safeTSParse(token)
	if err != nil {
		return nil, err
	}
	if claimed.HashAlgorithm != crypto.SHA256 || len(claimed.HashedMessage) != tlog.HashSize {
		return nil, fmt.Errorf("%w: batch token imprint is not SHA-256", ErrImprintMismatch)
	}
	var root Hash
	copy(root[:], claimed.HashedMessage)
	if path.Size <= 0 || path.Index < 0 || path.Index >= path.Size {
		return nil, fmt.Errorf("%w: index %d of %d", ErrBadProof, path.Index, path.Size)
	}
	if err := tlog.CheckRecord(path.Proof, path.Size, root, path.Index, tlog.RecordHash(messageHash[:])); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadProof, err)
	}
	opts.Hash = crypto.SHA256
	return VerifyToken(token, root[:], roots, opts)
}

// Stamp is the batcher's result for one message hash: what the message log
// stores next to the message, and the evidence bundle exports as
// timestamp.token (Token, DER) and timestamp.path (Path.MarshalText).
type Stamp struct {
	Hash    Hash      `json:"hash"`
	BatchID uint64    `json:"batchId"`
	Path    BatchPath `json:"path"`
	Token   []byte    `json:"token"`   // DER TimeStampToken over the batch root
	Time    time.Time `json:"genTime"` // the token's genTime
	TSA     string    `json:"tsa"`     // which configured TSA stamped it
}

// Verify checks s against roots (see the package-level Verify).
func (s Stamp) Verify(roots *x509.CertPool, opts VerifyOptions) (*Info, error) {
	return Verify(s.Hash, s.Path, s.Token, roots, opts)
}
