package hashregistry

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// TileHeight is the C2SP tlog-tiles height: 256 hashes per full tile.
const TileHeight = 8

// TileWidth is the number of hashes (or entries) in a full tile.
const TileWidth = 1 << TileHeight

// LevelEntries is the pseudo-level of entry bundles in a tlog.Tile
// (tlog uses -1 for record data).
const LevelEntries = -1

// ErrBadTilePath reports a path that is not a C2SP tile path.
var ErrBadTilePath = errors.New("hashregistry: bad tile path")

// TilePath returns the C2SP tlog-tiles path of t (height 8), without a
// leading slash: "tile/<L>/<N>[.p/<W>]" or "tile/entries/<N>[.p/<W>]",
// where N is written in 3-digit groups, all but the last prefixed "x".
func TilePath(t tlog.Tile) string {
	level := strconv.Itoa(t.L)
	if t.L == LevelEntries {
		level = "entries"
	}
	p := "tile/" + level + "/" + tileIndexPath(t.N)
	if t.W != TileWidth {
		p += ".p/" + strconv.Itoa(t.W)
	}
	return p
}

func tileIndexPath(n int64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		s = fmt.Sprintf("x%03d/%s", n%1000, s)
	}
	return s
}

// ParseTilePath parses a path written by TilePath. The result has H = 8.
func ParseTilePath(path string) (tlog.Tile, error) {
	bad := func() (tlog.Tile, error) { return tlog.Tile{}, fmt.Errorf("%w: %q", ErrBadTilePath, truncate(path)) }
	rest, ok := strings.CutPrefix(path, "tile/")
	if !ok {
		return bad()
	}
	level, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return bad()
	}
	t := tlog.Tile{H: TileHeight, W: TileWidth}
	if level == "entries" {
		t.L = LevelEntries
	} else {
		l, err := parseDecimal(level)
		if err != nil || l > 63 {
			return bad()
		}
		t.L = int(l)
	}
	if idx, w, partial := strings.Cut(rest, ".p/"); partial {
		wn, err := parseDecimal(w)
		if err != nil || wn < 1 || wn >= TileWidth {
			return bad()
		}
		t.W = int(wn)
		rest = idx
	}
	parts := strings.Split(rest, "/")
	var n int64
	for i, p := range parts {
		last := i == len(parts)-1
		if !last {
			var ok bool
			if p, ok = strings.CutPrefix(p, "x"); !ok {
				return bad()
			}
		}
		if len(p) != 3 || p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9' {
			return bad()
		}
		d, _ := strconv.Atoi(p)
		if n > (1<<62)/1000 {
			return bad()
		}
		n = n*1000 + int64(d)
	}
	// Reject non-canonical groupings such as x000/123.
	if len(parts) > 1 && strings.TrimPrefix(parts[0], "x") == "000" {
		return bad()
	}
	t.N = n
	return t, nil
}
