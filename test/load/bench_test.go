package load_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
	"github.com/passerelle/passerelle/rest"
	"github.com/passerelle/passerelle/sandbox"
	"github.com/passerelle/passerelle/test/load"
)

// BenchmarkKeyAlgorithms measures one JWS request signature and its
// verification (what the two security servers do per message, twice: the
// request and the response) with P-256 (the default), RSA-2048 and
// RSA-4096 keys. make bench reports each against P-256.
func BenchmarkKeyAlgorithms(b *testing.B) {
	ca := pkitest.NewCA(b, "bench CA")
	member := pki.ClientID{Instance: "BENCH", Class: "GOV", Member: "M1"}
	r := httptest.NewRequest(http.MethodPost, "/r1/BENCH/GOV/M2/services/hello/bench", bytes.NewReader(load.PostBody))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Road-Client", "BENCH/GOV/M1/client")
	r.Header.Set("X-Road-Id", "5ea48ae9-15c1-465a-be15-9b6ef2c7ef4a")
	d, _, err := rest.DescribeRequest(r, rest.DigestBytes(load.PostBody))
	if err != nil {
		b.Fatal(err)
	}
	ocsp := make([]byte, 1500) // about a real OCSP response
	for _, tc := range []struct {
		name string
		alg  pki.KeyAlgorithm
	}{{"ES256-P256", pki.ECDSAP256}, {"PS256-RSA2048", pki.RSA2048}, {"PS256-RSA4096", pki.RSA4096}} {
		leaf := ca.Issue(b, member, pki.UsageSign, pkitest.WithKey(tc.alg))
		s, err := rest.NewSigner(leaf.Key, leaf.Chain)
		if err != nil {
			b.Fatal(err)
		}
		sign := func() string {
			dd := d
			c, err := s.SignRequest(context.Background(), &dd, ocsp)
			if err != nil {
				b.Fatal(err)
			}
			return c
		}
		compact := sign()
		got := d
		b.Run(tc.name+"/sign", func(b *testing.B) {
			for b.Loop() {
				sign()
			}
		})
		b.Run(tc.name+"/verify", func(b *testing.B) {
			for b.Loop() {
				if _, err := rest.VerifyRequest(compact, &got); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/sign+verify", func(b *testing.B) {
			for b.Loop() {
				if _, err := rest.VerifyRequest(sign(), &got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// cpuTime is the CPU time (user + system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPair runs REST POST 1 KiB through an in-process sandbox at
// concurrency 16, one b.N-th of the requests per op. It exists for
// profiling the pair (make bench runs it with -cpuprofile): the exchange
// figures themselves come from `loadgen run` against a separate process.
// cpu-ms/exchange is the whole process's CPU (both security servers, the
// central services, the backend and this client) per exchange.
func BenchmarkPair(b *testing.B) {
	sb, err := sandbox.Start(b.Context(), sandbox.Config{Dir: filepath.Join(b.TempDir(), "sb")})
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Close()
	s, err := load.LoadSandbox(sb.Dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range []load.Kind{load.RESTPost, load.SOAP} {
		b.Run(string(k), func(b *testing.B) {
			newReq := load.NewRequestFunc(k, s.Pair, s.Info.ClientID, "pprof-"+time.Now().Format("150405.000"))
			c := load.NewClient(16)
			work := make(chan uint64)
			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() {
					for i := range work {
						req, err := newReq(i)
						if err != nil {
							b.Error(err)
							continue
						}
						resp, err := c.Do(req)
						if err != nil {
							b.Error(err)
							continue
						}
						var buf bytes.Buffer
						buf.ReadFrom(resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							b.Errorf("status %d: %s", resp.StatusCode, buf.Bytes())
						}
					}
				})
			}
			var i uint64
			cpu0 := cpuTime(b)
			start := time.Now()
			for b.Loop() {
				work <- i
				i++
			}
			close(work)
			wg.Wait()
			b.ReportMetric(float64(i)/time.Since(start).Seconds(), "req/s")
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Millisecond)/float64(i), "cpu-ms/exchange")
		})
	}
}
