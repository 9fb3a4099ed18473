package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/passerelle/passerelle/test/load"
)

func TestParseInts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		ok   bool
	}{
		{"1,16,64", []int{1, 16, 64}, true},
		{" 200 , 50 ", []int{200, 50}, true},
		{"", nil, true},
		{"1,x", nil, false},
		{"0", nil, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseInts(tc.in)
			if (err == nil) != tc.ok || (tc.ok && !equal(got, tc.want)) {
				t.Errorf("parseInts(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestUsage(t *testing.T) {
	var out, errw bytes.Buffer
	for _, args := range [][]string{nil, {"nope"}, {"components"}} {
		if err := run(t.Context(), args, &out, &errw); !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v, want errUsage", args, err)
		}
	}
	if err := run(t.Context(), []string{"freeport", "-n", "2"}, &out, &errw); err != nil || len(strings.Fields(out.String())) != 2 {
		t.Errorf("freeport -n 2 = %q, %v", out.String(), err)
	}
}

func TestComponents(t *testing.T) {
	in := `pkg: github.com/passerelle/passerelle/test/load
BenchmarkKeyAlgorithms/ES256-P256/sign-2         	   10000	    100000 ns/op
BenchmarkKeyAlgorithms/ES256-P256/verify-2       	    5000	    300000 ns/op
BenchmarkKeyAlgorithms/ES256-P256/sign+verify-2  	    2500	    400000 ns/op
BenchmarkKeyAlgorithms/PS256-RSA2048/sign+verify-2  	     500	   1600000 ns/op
pkg: github.com/passerelle/passerelle/hashregistry
BenchmarkAppendConcurrent/submitters=16-2        	   24056	     78136 ns/op	     12798 appends/s	         5.650 x-vs-1-submitter
pkg: github.com/passerelle/passerelle/timestamp
BenchmarkBatchVsPerMessage-2   	       3	1027122226 ns/op	      4778 batched-msgs/s	         8.585 batched/per-message	       556.5 per-message-msgs/s
`
	f := filepath.Join(t.TempDir(), "bench.txt")
	if err := os.WriteFile(f, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"components", f}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| ES256-P256 | 10000 | 3333 | 2500 | 1.00 | 0.800 |",
		"| PS256-RSA2048 | 0 | 0 | 625 | 0.25 | 3.200 |",
		"| AppendConcurrent/submitters=16 | 5.65 x-vs-1-submitter, 12798 appends/s, 78136 ns/op |",
		"8.59 batched/per-message",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("components output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestReportGoals(t *testing.T) {
	res := func(name string, rps float64, lat time.Duration) load.Result {
		n := int(rps)
		l := make([]time.Duration, n)
		for i := range l {
			l[i] = lat
		}
		return load.Result{Target: name, Requests: n, Elapsed: time.Second, Latencies: l}
	}
	systems := []system{{name: "direct"}, {name: "nginx pair"}, {name: "Passerelle pair"}}
	rep := &report{concs: []int{1}, systems: systems, closed: map[cell]load.Result{}, conns: 10, holdFlight: 5}
	for _, k := range load.Kinds {
		rep.closed[cell{k, 1, "direct"}] = res("direct", 1000, time.Millisecond)
		rep.closed[cell{k, 1, "nginx pair"}] = res("nginx pair", 400, 2*time.Millisecond)
		rep.closed[cell{k, 1, "Passerelle pair"}] = res("Passerelle pair", 120, 3*time.Millisecond)
	}
	open := func(name string, lat time.Duration) load.Result {
		r := res(name, 200, lat)
		r.Rate = 200
		return r
	}
	rep.open = [][]load.Result{{open("direct", time.Millisecond), open("nginx pair", 2*time.Millisecond), open("Passerelle pair", 4*time.Millisecond)}}
	rep.mem = []memResult{{name: "pair", idle: 40 << 20, peak: 100 << 20, ok: 10}, {name: "nginx pair", idle: 50 << 20, peak: 50 << 20, ok: 10}}
	rep.stream = &streamResult{Size: 200 << 20, WorstGrowth: 70 << 20}
	var out bytes.Buffer
	rep.write(&out)
	for _, want := range []string{
		"| REST POST 1 KiB | 1 | 1000 | 400 | 120 | **0.30** | 0.12 | 0.40 |",
		"| pair ≥ 25% of the nginx pair's throughput (every message and concurrency) | worst 30% (REST GET 1 KiB at 1) | yes |",
		"| added p99 ≤ 5ms at 200 req/s | 3.00 ms (0 errors) | yes |",
		"| ≤ 150 MiB RSS holding 10 connections | 100.0 MiB peak (whole sandbox process) | yes |",
		"| 200 MiB body with ≤ 64 MiB RSS growth | 70.0 MiB worst growth (upload and download; see below) | **no** |",
		"**2.00**",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestEditConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "server.yaml")
	in := "services:\n    - id: A/B/C/D/hello\n      url: http://127.0.0.1:1\nlimits:\n    maxBodyBytes: 10485760\n"
	if err := os.WriteFile(p, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := editConfig(p, 1<<30, "http://127.0.0.1:1", "http://127.0.0.1:2"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	want := "services:\n    - id: A/B/C/D/hello\n      url: http://127.0.0.1:2\nlimits:\n    maxBodyBytes: 1073741824\n"
	if string(b) != want {
		t.Errorf("editConfig gave\n%s\nwant\n%s", b, want)
	}
}

func TestPattern(t *testing.T) {
	a, b := make([]byte, 5000), make([]byte, 5000)
	(&pattern{}).Read(a)
	p := &pattern{}
	p.Read(b[:1234])
	p.Read(b[1234:])
	if !bytes.Equal(a, b) {
		t.Error("pattern depends on how it is read")
	}
}
