package load

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	lat := make([]time.Duration, 1000)
	for i := range lat {
		lat[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", []time.Duration{7}, 0.99, 7},
		{"p50", lat, 0.50, 500 * time.Millisecond},
		{"p99", lat, 0.99, 990 * time.Millisecond},
		{"p99.9", lat, 0.999, 999 * time.Millisecond},
		{"max", lat, 1, 1000 * time.Millisecond},
		{"min", lat, 0, time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Quantile(tc.in, tc.q); got != tc.want {
				t.Errorf("Quantile(%d values, %v) = %v, want %v", len(tc.in), tc.q, got, tc.want)
			}
		})
	}
}

func testServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func TestClosed(t *testing.T) {
	var n atomic.Int64
	s := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%10 == 0 {
			http.Error(w, "no", http.StatusTeapot)
			return
		}
		w.Write([]byte("ok"))
	})
	tg := Target{Name: "t", New: func(uint64) (*http.Request, error) { return http.NewRequest(http.MethodGet, s.URL, nil) }}
	r := Closed(t.Context(), tg, 4, 50*time.Millisecond, 200*time.Millisecond)
	if r.Requests == 0 || r.Errors == 0 {
		t.Fatalf("Closed = %d ok, %d errors; want both > 0", r.Requests, r.Errors)
	}
	if !strings.Contains(r.FirstError, "418") {
		t.Errorf("FirstError = %q, want the 418 status", r.FirstError)
	}
	if len(r.Latencies) != r.Requests || r.Concurrency != 4 || r.Throughput() <= 0 {
		t.Errorf("Closed = %+v: inconsistent", r.String())
	}
}

// TestOpenNoCoordinatedOmission: a server that stalls once for 300 ms
// while requests keep being due every 10 ms must show the stall in many
// latencies (those scheduled during it), not in one.
func TestOpenNoCoordinatedOmission(t *testing.T) {
	var stalled atomic.Bool
	gate := make(chan struct{})
	s := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		if stalled.CompareAndSwap(false, true) {
			time.Sleep(300 * time.Millisecond)
			close(gate)
		} else {
			<-gate // every request waits behind the stalled one: a one-at-a-time server
		}
		w.Write([]byte("ok"))
	})
	tg := Target{Name: "t", New: func(uint64) (*http.Request, error) { return http.NewRequest(http.MethodGet, s.URL, nil) }}
	r := Open(t.Context(), tg, OpenConfig{Rate: 100, Duration: 500 * time.Millisecond})
	if r.Requests != 50 {
		t.Fatalf("Open answered %d, want 50 (errors %d: %s)", r.Requests, r.Errors, r.FirstError)
	}
	slow := 0
	for _, l := range r.Latencies {
		if l >= 100*time.Millisecond {
			slow++
		}
	}
	if slow < 15 {
		t.Errorf("Open: %d of 50 latencies ≥ 100 ms, want ≥ 15 (the stall must count for every request due during it)", slow)
	}
}

func TestOpenDrops(t *testing.T) {
	block := make(chan struct{})
	s := testServer(t, func(w http.ResponseWriter, r *http.Request) { <-block })
	defer close(block)
	tg := Target{Name: "t", New: func(uint64) (*http.Request, error) { return http.NewRequest(http.MethodGet, s.URL, nil) }}
	done := make(chan Result)
	go func() {
		done <- Open(t.Context(), tg, OpenConfig{Rate: 200, Duration: 100 * time.Millisecond, MaxInFlight: 5})
	}()
	time.Sleep(300 * time.Millisecond)
	block <- struct{}{}
	for range 4 {
		block <- struct{}{}
	}
	r := <-done
	if r.Dropped != 15 || r.Requests != 5 {
		t.Errorf("Open with MaxInFlight 5 = %d answered, %d dropped; want 5, 15", r.Requests, r.Dropped)
	}
}

func TestParseVmRSS(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int64
		ok       bool
	}{
		{"real", "Name:\tx\nVmPeak:\t  9 kB\nVmRSS:\t    1234 kB\nThreads: 1\n", 1234 << 10, true},
		{"missing", "Name:\tx\n", 0, false},
		{"bad unit", "VmRSS:\t1 MB\n", 0, false},
		{"negative", "VmRSS:\t-1 kB\n", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseVmRSS([]byte(tc.in))
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("ParseVmRSS(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestRSSSelf(t *testing.T) {
	r, err := RSS(os.Getpid())
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if r < 1<<20 {
		t.Errorf("RSS(self) = %d, want at least 1 MiB", r)
	}
	s := StartSampler(10*time.Millisecond, os.Getpid())
	time.Sleep(30 * time.Millisecond)
	peak, last, err := s.Stop()
	if err != nil || peak < last || last <= 0 {
		t.Errorf("Sampler = peak %d, last %d, %v", peak, last, err)
	}
}

func TestHold(t *testing.T) {
	var conns atomic.Int64
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	defer s.Close()
	h := Hold(t.Context(), s.Listener.Addr().String(), 50, 8, func(uint64) (*http.Request, error) {
		return http.NewRequest(http.MethodGet, s.URL+"/x", nil)
	})
	defer h.Close()
	if h.OK != 50 || h.First != nil || conns.Load() != 50 {
		t.Errorf("Hold(50) = %d ok (%v), server saw %d connections", h.OK, h.First, conns.Load())
	}
}

func TestParseBench(t *testing.T) {
	out := `goos: linux
pkg: github.com/passerelle/passerelle/hashregistry
BenchmarkAppendBatch256-2   	     100	  10000 ns/op	  51200 appends/s
BenchmarkAppendConcurrent/submitters=16-2         	    5000	    300 ns/op	  3000 appends/s	  8.5 x-vs-1-submitter
BenchmarkLog line that is not a result
PASS
`
	ls, err := ParseBench(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 {
		t.Fatalf("ParseBench = %d lines, want 2: %+v", len(ls), ls)
	}
	if ls[1].Name != "BenchmarkAppendConcurrent/submitters=16" || ls[1].Metrics["x-vs-1-submitter"] != 8.5 || ls[0].Pkg != "github.com/passerelle/passerelle/hashregistry" {
		t.Errorf("ParseBench = %+v", ls)
	}
}

func FuzzParseBench(f *testing.F) {
	f.Add("BenchmarkX-2 10 5 ns/op\n")
	f.Add("pkg: a\nBenchmarkY/z=1-8 1 1.5e3 ns/op 2 B/op\nPASS\n")
	f.Add("Benchmark 0 x y\n")
	f.Fuzz(func(t *testing.T, s string) {
		ls, _ := ParseBench(strings.NewReader(s))
		for _, l := range ls {
			if l.Iters <= 0 || !strings.HasPrefix(l.Name, "Benchmark") || len(l.Metrics) == 0 {
				t.Fatalf("ParseBench(%q) gave %+v", s, l)
			}
		}
	})
}

func FuzzParseVmRSS(f *testing.F) {
	f.Add([]byte("VmRSS:\t 12 kB\n"))
	f.Add([]byte("Name: x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := ParseVmRSS(b); err == nil && v < 0 {
			t.Fatalf("ParseVmRSS(%q) = %d", b, v)
		}
	})
}

func ExampleQuantile() {
	lat := []time.Duration{1 * time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond}
	fmt.Println(Quantile(lat, 0.5), Quantile(lat, 0.99))
	// Output: 2ms 4ms
}

func TestParseIO(t *testing.T) {
	got, err := ParseIO([]byte("rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 5\nwrite_bytes: 4096\ncancelled_write_bytes: 0\n"))
	if err != nil || got != (IOStats{WriteBytes: 4096, SyscW: 4}) {
		t.Errorf("ParseIO = %+v, %v", got, err)
	}
	if _, err := ParseIO([]byte("rchar: 1\n")); err == nil {
		t.Error("ParseIO without the fields: no error")
	}
}

func FuzzParseIO(f *testing.F) {
	f.Add([]byte("syscw: 4\nwrite_bytes: 4096\n"))
	f.Add([]byte("write_bytes: x\n"))
	f.Fuzz(func(t *testing.T, b []byte) { ParseIO(b) })
}

func TestFsyncProbe(t *testing.T) {
	lat, err := FsyncProbe(t.TempDir(), 5)
	if err != nil || len(lat) != 5 || lat[0] > lat[4] {
		t.Errorf("FsyncProbe = %v, %v", lat, err)
	}
}
