package load

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// BenchLine is one result line of `go test -bench` output.
type BenchLine struct {
	Pkg     string             // from the preceding "pkg:" line, if any
	Name    string             // e.g. "BenchmarkSignVerify/ES256-P256", GOMAXPROCS suffix removed
	Iters   int64              // iterations
	Metrics map[string]float64 // unit → value: "ns/op", "B/op", "appends/s", …
}

// Metric returns the value of unit and whether the line has it.
func (l BenchLine) Metric(unit string) (float64, bool) {
	v, ok := l.Metrics[unit]
	return v, ok
}

// ParseBench reads `go test -bench` output and returns its result lines in
// order; other lines (goos, PASS, logs) are skipped. A line that starts
// with "Benchmark" but is not a well-formed result (a benchmark's own log
// line) is skipped too.
func ParseBench(r io.Reader) ([]BenchLine, error) {
	var out []BenchLine
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if l, ok := parseBenchLine(line); ok {
			l.Pkg = pkg
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("load: reading benchmark output: %w", err)
	}
	return out, nil
}

func parseBenchLine(line string) (BenchLine, bool) {
	f := strings.Fields(line)
	// name, iterations, then (value, unit) pairs
	if len(f) < 4 || len(f)%2 != 0 || !strings.HasPrefix(f[0], "Benchmark") {
		return BenchLine{}, false
	}
	iters, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || iters <= 0 {
		return BenchLine{}, false
	}
	l := BenchLine{Name: trimProcs(f[0]), Iters: iters, Metrics: map[string]float64{}}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return BenchLine{}, false
		}
		l.Metrics[f[i+1]] = v
	}
	return l, true
}

// trimProcs removes the "-N" GOMAXPROCS suffix go test appends.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}
