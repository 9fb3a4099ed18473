package hashregistry

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/passerelle/passerelle/pki"
)

// Errors an audit reports; callers branch on them with errors.Is.
var (
	// ErrFork: the log signed two checkpoints that no consistency proof
	// joins (same size and different roots, a tree that shrank, or a proof
	// that fails). The two signed notes are the evidence.
	ErrFork = errors.New("hashregistry: fork: the log signed two inconsistent checkpoints")
	// ErrInconsistent: what the log serves (tiles, entries) does not match
	// the checkpoint it signed.
	ErrInconsistent = errors.New("hashregistry: log data does not match its signed checkpoint")
	// ErrFetch: the log could not be read.
	ErrFetch = errors.New("hashregistry: fetching from the log")
)

// StateFile is the file in an auditor's state directory that keeps the last
// verified checkpoint (a signed note).
const StateFile = "checkpoint"

// Auditor checks a registry through its HTTP tile API. It keeps, in
// StateDir, the last checkpoint it verified, and proves each new one
// consistent with it.
type Auditor struct {
	URL      string // the log's HTTP prefix, e.g. http://127.0.0.1:8081
	Verifier note.Verifier
	StateDir string
	Client   *http.Client // http.DefaultClient when nil
}

// AuditReport says what an audit proved.
type AuditReport struct {
	Checkpoint Checkpoint
	// Previous is the checkpoint kept from the last audit (nil on the first).
	Previous *Checkpoint
	// ConsistencyHashes is the length of the consistency proof checked.
	ConsistencyHashes int
	// EntriesChecked is how many entries a full audit fetched and hashed.
	EntriesChecked int64
	// ForkEvidence names the file holding both signed notes when a fork was found.
	ForkEvidence string
}

// Audit fetches the latest checkpoint, verifies its signature, proves it
// consistent with the previous one (from the tiles), and with full fetches
// every entry, checks it decodes and hashes to the leaf the tree commits to,
// and recomputes the root. On success the new checkpoint replaces the kept
// one. A fork is reported as ErrFork and its evidence written to StateDir.
func (a *Auditor) Audit(ctx context.Context, full bool) (AuditReport, error) {
	var rep AuditReport
	signed, err := a.get(ctx, "checkpoint", 64<<10)
	if err != nil {
		return rep, err
	}
	cp, err := OpenCheckpoint(signed, a.Verifier)
	if err != nil {
		return rep, err
	}
	rep.Checkpoint = cp
	tr := &httpTileReader{a: a, ctx: ctx}
	thr := tlog.TileHashReader(cp.Tree(), tr)

	prevSigned, err := os.ReadFile(filepath.Join(a.StateDir, StateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return rep, err
	default:
		prev, err := OpenCheckpoint(prevSigned, a.Verifier)
		if err != nil {
			return rep, fmt.Errorf("kept checkpoint %s: %w", filepath.Join(a.StateDir, StateFile), err)
		}
		rep.Previous = &prev
		if ferr := a.checkConsistent(prev, cp, thr, &rep); ferr != nil {
			if err := tr.err(); err != nil {
				return rep, err
			}
			if errors.Is(ferr, ErrFork) {
				rep.ForkEvidence, _ = a.saveFork(prevSigned, signed)
			}
			return rep, ferr
		}
	}
	if err := tr.err(); err != nil {
		return rep, err
	}
	if full {
		n, err := a.checkEntries(ctx, cp, thr)
		rep.EntriesChecked = n
		if err != nil {
			return rep, err
		}
	}
	if err := os.MkdirAll(a.StateDir, 0o700); err != nil {
		return rep, err
	}
	return rep, pki.WriteFileAtomic(filepath.Join(a.StateDir, StateFile), signed, 0o600)
}

func (a *Auditor) checkConsistent(prev, cp Checkpoint, thr tlog.HashReader, rep *AuditReport) error {
	switch {
	case cp.Size == prev.Size && cp.Hash != prev.Hash:
		return fmt.Errorf("%w: two checkpoints of size %d with roots %s and %s", ErrFork, cp.Size, prev.Hash, cp.Hash)
	case cp.Size < prev.Size:
		return fmt.Errorf("%w: the tree shrank from %d to %d entries", ErrFork, prev.Size, cp.Size)
	case cp.Size == prev.Size || prev.Size == 0:
		return nil
	}
	p, err := tlog.ProveTree(cp.Size, prev.Size, thr)
	if err != nil {
		return fmt.Errorf("%w: building the consistency proof %d → %d from the tiles: %w", ErrInconsistent, prev.Size, cp.Size, err)
	}
	if err := tlog.CheckTree(p, cp.Size, cp.Hash, prev.Size, prev.Hash); err != nil {
		return fmt.Errorf("%w: checkpoint of size %d is not an extension of the one of size %d: %w", ErrFork, cp.Size, prev.Size, err)
	}
	rep.ConsistencyHashes = len(p)
	return nil
}

func (a *Auditor) saveFork(prev, cur []byte) (string, error) {
	path := filepath.Join(a.StateDir, "fork-"+time.Now().UTC().Format("20060102T150405Z")+".txt")
	var b bytes.Buffer
	b.WriteString("# Two checkpoints signed by the same log key that no consistency proof joins.\n# previously verified:\n")
	b.Write(prev)
	b.WriteString("# served now:\n")
	b.Write(cur)
	return path, pki.WriteFileAtomic(path, b.Bytes(), 0o600)
}

// checkEntries fetches every entry bundle, checks each entry against the
// authenticated level-0 tiles, and recomputes the root from the entries.
func (a *Auditor) checkEntries(ctx context.Context, cp Checkpoint, thr tlog.HashReader) (int64, error) {
	var stack []tlog.Hash // roots of perfect subtrees, largest first
	var sizes []int64
	var n int64
	for n < cp.Size {
		t := tlog.Tile{H: TileHeight, L: LevelEntries, N: n / TileWidth, W: int(min(cp.Size-n, TileWidth))}
		data, err := a.get(ctx, TilePath(t), TileWidth*(2+entryFixed+MaxMemberLen))
		if err != nil {
			return n, err
		}
		entries, err := splitBundle(data, t.W)
		if err != nil {
			return n, fmt.Errorf("%w: %s: %w", ErrInconsistent, TilePath(t), err)
		}
		idx := make([]int64, t.W)
		for i := range idx {
			idx[i] = tlog.StoredHashIndex(0, n+int64(i))
		}
		leaves, err := thr.ReadHashes(idx)
		if err != nil {
			return n, fmt.Errorf("%w: level-0 tile for entries %d-%d: %w", ErrInconsistent, n, n+int64(t.W)-1, err)
		}
		for i, e := range entries {
			if _, err := ParseEntry(e); err != nil {
				return n, fmt.Errorf("%w: entry %d: %w", ErrInconsistent, n, err)
			}
			h := tlog.RecordHash(e)
			if h != leaves[i] {
				return n, fmt.Errorf("%w: entry %d does not hash to the leaf the tree commits to", ErrInconsistent, n)
			}
			stack, sizes = append(stack, h), append(sizes, 1)
			for len(sizes) > 1 && sizes[len(sizes)-1] == sizes[len(sizes)-2] {
				k := len(stack) - 2
				stack[k] = tlog.NodeHash(stack[k], stack[k+1])
				sizes[k] *= 2
				stack, sizes = stack[:k+1], sizes[:k+1]
			}
			n++
		}
	}
	root := emptyTreeHash()
	if len(stack) > 0 {
		root = stack[len(stack)-1]
		for i := len(stack) - 2; i >= 0; i-- {
			root = tlog.NodeHash(stack[i], root)
		}
	}
	if root != cp.Hash {
		return n, fmt.Errorf("%w: the %d entries hash to root %s, checkpoint says %s", ErrInconsistent, n, root, cp.Hash)
	}
	return n, nil
}

// splitBundle splits a C2SP entry bundle into want entries.
func splitBundle(data []byte, want int) ([][]byte, error) {
	var out [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, errors.New("truncated length")
		}
		l := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+l {
			return nil, errors.New("truncated entry")
		}
		out = append(out, data[2:2+l])
		data = data[2+l:]
	}
	if len(out) != want {
		return nil, fmt.Errorf("%d entries, want %d", len(out), want)
	}
	return out, nil
}

func (a *Auditor) get(ctx context.Context, path string, limit int64) ([]byte, error) {
	u := strings.TrimSuffix(a.URL, "/") + "/" + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	c := a.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: GET %s: %s", ErrFetch, u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s: %w", ErrFetch, u, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: GET %s: response over %d bytes", ErrFetch, u, limit)
	}
	return data, nil
}

// httpTileReader is a tlog.TileReader over the C2SP tile API.
type httpTileReader struct {
	a       *Auditor
	ctx     context.Context
	lastErr error
}

func (r *httpTileReader) Height() int { return TileHeight }

func (r *httpTileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := r.a.get(r.ctx, TilePath(t), TileWidth*tlog.HashSize)
		if err != nil {
			r.lastErr = err
			return nil, err
		}
		if len(data) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("%w: %s has %d bytes, want %d", ErrInconsistent, TilePath(t), len(data), t.W*tlog.HashSize)
		}
		out[i] = data
	}
	return out, nil
}

func (r *httpTileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// err returns a fetch error hidden behind a tlog error, if any.
func (r *httpTileReader) err() error { return r.lastErr }
