package hashregistry

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passerelle/passerelle/pki"
	pb "github.com/passerelle/passerelle/proto/hashregistry/v1"
)

// BenchmarkAppendBatch256 measures durable appends/s (fsync per commit)
// with one submitter sending batches of 256. Goal: ≥ 50,000 appends/s.
func BenchmarkAppendBatch256(b *testing.B) {
	k := newTestKeys(b, testOrigin)
	l := openTestLog(b, filepath.Join(b.TempDir(), "log.db"), k)
	subs := make([]Submission, 256)
	for i := range subs {
		subs[i] = sub(i)
	}
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if _, err := l.Append(context.Background(), testMember, subs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*256)/time.Since(start).Seconds(), "appends/s")
}

// BenchmarkAppendBatch256GRPC is BenchmarkAppendBatch256 through the real
// gRPC service over mTLS on loopback: what a security server's outbox sees.
func BenchmarkAppendBatch256GRPC(b *testing.B) {
	k := newTestKeys(b, testOrigin)
	r := startRegistry(b, filepath.Join(b.TempDir(), "log.db"), k)
	c := r.dial(b, r.ca.Issue(b, testMember, pki.UsageAuth).TLSCertificate())
	req := pbSubs(0, 256)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if _, err := c.Append(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*256)/time.Since(start).Seconds(), "appends/s")
}

// BenchmarkAppendConcurrent measures durable appends/s with W concurrent
// submitters sending one entry each. Goal: ≥ 1,000/s at W = 64. The ratio
// to the one-fsync-per-entry baseline (W = 1) shows what group commit buys.
func BenchmarkAppendConcurrent(b *testing.B) {
	var base float64
	for _, w := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("submitters=%d", w), func(b *testing.B) {
			k := newTestKeys(b, testOrigin)
			l := openTestLog(b, filepath.Join(b.TempDir(), "log.db"), k)
			var next atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range w {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						if _, err := l.Append(context.Background(), testMember, []Submission{sub(int(i))}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			rate := float64(b.N) / time.Since(start).Seconds()
			b.ReportMetric(rate, "appends/s")
			if w == 1 {
				base = rate
			} else if base > 0 {
				b.ReportMetric(rate/base, "x-vs-1-submitter")
			}
		})
	}
}

// BenchmarkAppendToCheckpoint measures the time from a lone Append to the
// signed checkpoint covering it (Append returns with it). Goal: ≤ 1 s.
func BenchmarkAppendToCheckpoint(b *testing.B) {
	k := newTestKeys(b, testOrigin)
	l := openTestLog(b, filepath.Join(b.TempDir(), "log.db"), k)
	i := 0
	for b.Loop() {
		i++
		rs, err := l.Append(context.Background(), testMember, []Submission{sub(i)})
		if err != nil {
			b.Fatal(err)
		}
		if cp, _ := l.Checkpoint(); cp.Size <= rs[0].Index {
			b.Fatal("checkpoint does not cover the entry")
		}
	}
}

var (
	bigOnce sync.Once
	bigDir  string
	bigErr  error
)

const bigSize = 1 << 20

// bigLog returns a path to a log of bigSize entries, built once per test
// binary run (only benchmarks call it, so `go test` stays fast).
func bigLog(b *testing.B, k testKeys) string {
	bigOnce.Do(func() {
		bigDir, bigErr = os.MkdirTemp("", "hashregistry-bench")
		if bigErr != nil {
			return
		}
		l, err := Open(context.Background(), Config{Path: filepath.Join(bigDir, "log.db"), Signer: k.signer, Verifier: k.verifier, NoSync: true})
		if err != nil {
			bigErr = err
			return
		}
		defer l.Close()
		for n := 0; n < bigSize; n += DefaultMaxBatch {
			es := make([][]byte, DefaultMaxBatch)
			for i := range es {
				s := sub(n + i)
				es[i], _ = Entry{Member: testMember, Hash: s.Hash, Kind: s.Kind, Time: time.UnixMilli(1700000000000)}.Marshal()
			}
			req := &appendReq{entries: es, done: make(chan appendResult, 1)}
			l.commit([]*appendReq{req})
			if res := <-req.done; res.err != nil {
				bigErr = res.err
				return
			}
		}
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return filepath.Join(bigDir, "log.db")
}

var bigKeys = sync.OnceValue(func() testKeys { return newTestKeys(&testing.B{}, testOrigin) })

func TestMain(m *testing.M) {
	code := m.Run()
	if bigDir != "" {
		os.RemoveAll(bigDir)
	}
	os.Exit(code)
}

// BenchmarkProveInclusion1M measures an in-process inclusion proof in a
// log of 2^20 entries. Goal: ≤ 100 µs.
func BenchmarkProveInclusion1M(b *testing.B) {
	k := bigKeys()
	path := bigLog(b, k)
	l := openTestLog(b, path, k)
	ctx := context.Background()
	i := int64(0)
	for b.Loop() {
		i = (i + 7919) % bigSize
		if _, _, err := l.ProveInclusion(ctx, i, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen1M measures Open of a 2^20-entry log: the start-up check
// that recomputes every stored hash and the root from the entries.
func BenchmarkOpen1M(b *testing.B) {
	k := bigKeys()
	path := bigLog(b, k)
	for b.Loop() {
		l, err := Open(context.Background(), Config{Path: path, Signer: k.signer, Verifier: k.verifier})
		if err != nil {
			b.Fatal(err)
		}
		l.Close()
	}
}

// BenchmarkProveInclusionGRPC1M measures GetInclusionProof over gRPC with
// mTLS on loopback in a log of 2^20 entries and reports the p99. Goal:
// p99 ≤ 1 ms.
func BenchmarkProveInclusionGRPC1M(b *testing.B) {
	k := bigKeys()
	path := bigLog(b, k)
	r := startRegistry(b, path, k)
	c := r.dial(b, r.ca.Issue(b, testMember, pki.UsageAuth).TLSCertificate())
	ctx := context.Background()
	if _, err := c.GetCheckpoint(ctx, &pb.GetCheckpointRequest{}); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, 1024)
	i := int64(0)
	for b.Loop() {
		i = (i + 7919) % bigSize
		t0 := time.Now()
		if _, err := c.GetInclusionProof(ctx, &pb.GetInclusionProofRequest{Leaf: &pb.GetInclusionProofRequest_Index{Index: i}}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
}
