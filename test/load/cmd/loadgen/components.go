package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/passerelle/passerelle/test/load"
)

// components renders the component benchmarks' output (key algorithms,
// hash registry, TSA) as markdown, with ratios against the baseline each
// benchmark names.
func components(r io.Reader, w io.Writer) error {
	lines, err := load.ParseBench(r)
	if err != nil {
		return err
	}
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }

	// Key algorithms: BenchmarkKeyAlgorithms/ALG/{sign,verify,sign+verify}.
	type row struct{ sign, verify, both float64 }
	algs := map[string]*row{}
	var order []string
	for _, l := range lines {
		rest, ok := strings.CutPrefix(l.Name, "BenchmarkKeyAlgorithms/")
		if !ok {
			continue
		}
		alg, op, ok := strings.Cut(rest, "/")
		ns, ok2 := l.Metric("ns/op")
		if !ok || !ok2 || ns == 0 {
			continue
		}
		if algs[alg] == nil {
			algs[alg] = &row{}
			order = append(order, alg)
		}
		perSec := 1e9 / ns
		switch op {
		case "sign":
			algs[alg].sign = perSec
		case "verify":
			algs[alg].verify = perSec
		case "sign+verify":
			algs[alg].both = perSec
		}
	}
	if len(order) > 0 {
		base := algs[order[0]]
		p("### Key algorithms: JWS request signature (rest.Signer) on one core\n\n")
		p("| algorithm | sign/s | verify/s | sign+verify/s | sign+verify ÷ %s | CPU ms per exchange (2 signs + 2 verifies) |\n", order[0])
		p("|---|--:|--:|--:|--:|--:|\n")
		for _, a := range order {
			r := algs[a]
			cpu := 0.0
			if r.both > 0 {
				cpu = 2 * 1000 / r.both
			}
			p("| %s | %.0f | %.0f | %.0f | %s | %.3f |\n", a, r.sign, r.verify, r.both, ratio(r.both, base.both), cpu)
		}
		p("\n")
	}

	section := func(title, pkgSuffix string) {
		var rows []load.BenchLine
		for _, l := range lines {
			if strings.HasSuffix(l.Pkg, pkgSuffix) {
				rows = append(rows, l)
			}
		}
		if len(rows) == 0 {
			return
		}
		p("### %s\n\n| benchmark | figures |\n|---|---|\n", title)
		for _, l := range rows {
			var figs []string
			for _, u := range sortedUnits(l.Metrics) {
				figs = append(figs, fmt.Sprintf("%s %s", fmtNum(l.Metrics[u]), u))
			}
			p("| %s | %s |\n", strings.TrimPrefix(l.Name, "Benchmark"), strings.Join(figs, ", "))
		}
		p("\n")
	}
	section("Hash registry (`hashregistry` benchmarks; ratio x-vs-1-submitter = group commit against one fsync per entry)", "/hashregistry")
	section("Timestamping (`timestamp` benchmarks; batched/per-message = the batcher against one TSA request per message)", "/timestamp")
	return nil
}

// sortedUnits puts the ratios and rates first, then ns/op, then the rest.
func sortedUnits(m map[string]float64) []string {
	var ratios, rates, other []string
	for u := range m {
		switch {
		case strings.Contains(u, "/") && !strings.HasSuffix(u, "/op") && !strings.HasSuffix(u, "/s"):
			ratios = append(ratios, u)
		case strings.Contains(u, "x-vs"):
			ratios = append(ratios, u)
		case strings.HasSuffix(u, "/s"):
			rates = append(rates, u)
		default:
			other = append(other, u)
		}
	}
	for _, s := range [][]string{ratios, rates, other} {
		slices.Sort(s)
	}
	return append(append(ratios, rates...), other...)
}

func fmtNum(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}
