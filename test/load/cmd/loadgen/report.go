package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/passerelle/passerelle/test/load"
)

// Goals from issue 9.
const (
	goalVsNginx    = 0.25 // pair throughput ÷ nginx pair throughput, at least
	goalAddedP99   = 5 * time.Millisecond
	goalRSS1000    = 150 << 20 // bytes, sandbox process holding 1,000 connections
	goalBodyGrowth = 64 << 20  // bytes of RSS growth for a 200 MiB body
)

type report struct {
	concs      []int
	systems    []system
	closed     map[cell]load.Result
	open       [][]load.Result // per rate, per system
	openDur    time.Duration
	conns      int
	holdFlight int
	mem        []memResult

	stream            *streamResult
	fsync             []time.Duration // fsync probe on the sandbox's disk
	diskPerExchange   float64         // bytes written to storage by the sandbox process per pair exchange
	writesPerExchange float64         // write system calls per pair exchange
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func lat(r load.Result) string {
	return fmt.Sprintf("%.2f / %.2f / %.2f", ms(r.Quantile(0.50)), ms(r.Quantile(0.99)), ms(r.Quantile(0.999)))
}

func (rep *report) write(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	direct, nginx, pair := rep.systems[0].name, rep.systems[1].name, rep.systems[2].name
	var errs []string

	p("### Exchange throughput (closed loop)\n\n")
	p("Requests/s answered 200, each system measured in turn in the same run; the ratios are the figures to read.\n\n")
	tmpfs := ""
	if len(rep.systems) > 3 {
		tmpfs = rep.systems[3].name
	}
	p("| message | concurrency | direct req/s | nginx pair req/s | Passerelle pair req/s | **pair ÷ nginx pair** | pair ÷ direct | nginx pair ÷ direct |")
	if tmpfs != "" {
		p(" %s req/s | %s ÷ nginx pair |", tmpfs, tmpfs)
	}
	p("\n|---|--:|--:|--:|--:|--:|--:|--:|")
	if tmpfs != "" {
		p("--:|--:|")
	}
	p("\n")
	worst, worstAt := 0.0, ""
	for _, k := range load.Kinds {
		for _, c := range rep.concs {
			d, n, s := rep.closed[cell{k, c, direct}], rep.closed[cell{k, c, nginx}], rep.closed[cell{k, c, pair}]
			p("| %s | %d | %.0f | %.0f | %.0f | **%s** | %s | %s |", k, c, d.Throughput(), n.Throughput(), s.Throughput(),
				ratio(s.Throughput(), n.Throughput()), ratio(s.Throughput(), d.Throughput()), ratio(n.Throughput(), d.Throughput()))
			if tmpfs != "" {
				t := rep.closed[cell{k, c, tmpfs}]
				p(" %.0f | %s |", t.Throughput(), ratio(t.Throughput(), n.Throughput()))
				if t.Errors > 0 {
					errs = append(errs, fmt.Sprintf("%s, %s, concurrency %d: %d errors (first: %s)", t.Target, k, c, t.Errors, t.FirstError))
				}
			}
			p("\n")
			if n.Throughput() > 0 {
				if r := s.Throughput() / n.Throughput(); worstAt == "" || r < worst {
					worst, worstAt = r, fmt.Sprintf("%s at %d", k, c)
				}
			}
			for _, r := range []load.Result{d, n, s} {
				if r.Errors > 0 {
					errs = append(errs, fmt.Sprintf("%s, %s, concurrency %d: %d errors (first: %s)", r.Target, k, c, r.Errors, r.FirstError))
				}
			}
		}
	}
	p("\n### Exchange latency (closed loop), ms: p50 / p99 / p99.9\n\n")
	p("| message | concurrency | direct | nginx pair | Passerelle pair | pair p50 ÷ nginx p50 | pair p99 ÷ nginx p99 |")
	if tmpfs != "" {
		p(" %s |", tmpfs)
	}
	p("\n|---|--:|--:|--:|--:|--:|--:|")
	if tmpfs != "" {
		p("--:|")
	}
	p("\n")
	for _, k := range load.Kinds {
		for _, c := range rep.concs {
			d, n, s := rep.closed[cell{k, c, direct}], rep.closed[cell{k, c, nginx}], rep.closed[cell{k, c, pair}]
			p("| %s | %d | %s | %s | %s | %s | %s |", k, c, lat(d), lat(n), lat(s),
				ratio(float64(s.Quantile(0.5)), float64(n.Quantile(0.5))), ratio(float64(s.Quantile(0.99)), float64(n.Quantile(0.99))))
			if tmpfs != "" {
				p(" %s |", lat(rep.closed[cell{k, c, tmpfs}]))
			}
			p("\n")
		}
	}

	if len(rep.fsync) > 0 {
		f50 := load.Quantile(rep.fsync, 0.5)
		p("\n### Durability baseline\n\n")
		p("One 4 KiB write + fsync on the sandbox's disk, measured in this run (200 times): p50 %.3f ms, p99 %.3f ms.\n", ms(f50), ms(load.Quantile(rep.fsync, 0.99)))
		if len(rep.concs) > 0 && rep.concs[0] == 1 && f50 > 0 {
			r := rep.closed[cell{load.RESTPost, 1, pair}]
			p("The pair's %s p50 at concurrency 1 is %.1f fsync p50s.", load.RESTPost, float64(r.Quantile(0.5))/float64(f50))
		}
		if rep.diskPerExchange > 0 {
			p(" The sandbox process wrote %.1f KiB to storage and made %.0f write calls per pair exchange.", rep.diskPerExchange/1024, rep.writesPerExchange)
		}
		p("\n")
	}

	var addedP99 time.Duration
	var openPair load.Result
	goalRate := 0.0
	for ri, rs := range rep.open {
		if len(rs) == 0 {
			continue
		}
		p("\n### Added latency at a fixed arrival rate (open loop, %s, %.0f req/s for %v)\n\n", load.RESTPost, rs[0].Rate, rep.openDur)
		if ri == 0 {
			p("Latency runs from each request's scheduled time (no coordinated omission). Added = system − direct, same run.\n\n")
		}
		p("| system | p50 ms | p99 ms | p99.9 ms | added p50 ms | added p99 ms | added p99.9 ms | answered / errors / dropped |\n")
		p("|---|--:|--:|--:|--:|--:|--:|--:|\n")
		base := rs[0]
		for _, r := range rs {
			a50, a99, a999 := r.Quantile(0.5)-base.Quantile(0.5), r.Quantile(0.99)-base.Quantile(0.99), r.Quantile(0.999)-base.Quantile(0.999)
			if ri == 0 && r.Target == pair {
				addedP99, openPair, goalRate = a99, r, r.Rate
			}
			p("| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %d / %d / %d |\n", r.Target, ms(r.Quantile(0.5)), ms(r.Quantile(0.99)), ms(r.Quantile(0.999)),
				ms(a50), ms(a99), ms(a999), r.Requests, r.Errors, r.Dropped)
			if r.Errors > 0 {
				errs = append(errs, fmt.Sprintf("%s, open loop at %.0f req/s: %d errors (first: %s)", r.Target, r.Rate, r.Errors, r.FirstError))
			}
		}
	}

	p("\n### Memory: %d concurrent keep-alive connections\n\n", rep.conns)
	p("All connections are opened at once; each sends one %s (at most %d in flight at a time: the security server admits 100 per client by default), reads the answer and stays open. RSS from /proc (VmRSS, summed over the process tree), sampled every 50 ms.\n\n", load.RESTGet, rep.holdFlight)
	p("Measured first, on fresh processes.\n\n")
	p("| processes | connections answered | idle RSS MiB | peak RSS MiB | RSS holding MiB | growth (peak − idle) MiB | **peak ÷ nginx pair peak** |\n")
	p("|---|--:|--:|--:|--:|--:|--:|\n")
	var ngPeak, pairPeak int64
	for _, m := range rep.mem {
		if strings.HasPrefix(m.name, "nginx") {
			ngPeak = m.peak
		}
	}
	for i, m := range rep.mem {
		if i == 0 {
			pairPeak = m.peak
		}
		p("| %s | %d | %.1f | %.1f | %.1f | %.1f | **%s** |\n", m.name, m.ok, mib(m.idle), mib(m.peak), mib(m.after), mib(m.peak-m.idle),
			ratio(float64(m.peak), float64(ngPeak)))
		if m.err != nil {
			errs = append(errs, fmt.Sprintf("memory %s: %v", m.name, m.err))
		}
	}

	if len(errs) > 0 {
		p("\nErrors seen:\n\n")
		for _, e := range errs {
			p("- %s\n", e)
		}
	}

	p("\n### Goals (issue 9)\n\n| goal | measured | holds |\n|---|---|---|\n")
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "**no**"
	}
	p("| pair ≥ %.0f%% of the nginx pair's throughput (every message and concurrency) | worst %.0f%% (%s) | %s |\n", goalVsNginx*100, worst*100, worstAt, yes(worstAt != "" && worst >= goalVsNginx))
	p("| added p99 ≤ %v at %.0f req/s | %.2f ms (%d errors) | %s |\n", goalAddedP99, goalRate, ms(addedP99), openPair.Errors, yes(openPair.Requests > 0 && openPair.Errors == 0 && openPair.Dropped == 0 && addedP99 <= goalAddedP99))
	if len(rep.mem) > 0 {
		p("| ≤ %d MiB RSS holding %d connections | %.1f MiB peak (whole sandbox process) | %s |\n", goalRSS1000>>20, rep.conns, mib(pairPeak), yes(pairPeak <= goalRSS1000 && rep.mem[0].ok == rep.conns))
	}
	if st := rep.stream; st != nil {
		p("| %d MiB body with ≤ %d MiB RSS growth | %.1f MiB worst growth (upload and download; see below) | %s |\n", st.Size>>20, goalBodyGrowth>>20, mib(st.WorstGrowth), yes(!st.Failed && st.WorstGrowth <= goalBodyGrowth))
	} else {
		p("| 200 MiB body with ≤ %d MiB RSS growth | not measured (`loadgen stream` did not run) | – |\n", goalBodyGrowth>>20)
	}
}
