package timestamp

import (
	"bytes"
	"context"
	"crypto"
	"io"
	"math/big"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	tsp "github.com/digitorus/timestamp"
)

// BenchmarkBatchVsPerMessage stamps the same messages two ways in the same
// run, each with 16 concurrent senders: one TSA request per message, and
// through the Batcher (durable Add, then one token per batch). It reports
// both rates and their ratio (batched/per-message).
func BenchmarkBatchVsPerMessage(b *testing.B) {
	tsa := newTestTSA(b)
	c := tsa.client(b, nil)
	batcher, err := NewBatcher(BatcherConfig{
		Path: filepath.Join(b.TempDir(), "bench.db"), TSAs: []Stamper{c}, Interval: time.Hour, Log: quietLog,
		Deliver: func(context.Context, []Stamp) error { return nil },
	})
	if err != nil {
		b.Fatal(err)
	}
	defer batcher.Close()
	const n, workers = 512, 16
	ctx := b.Context()
	var perMsg, batched time.Duration
	var msgs int
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		fanOut(workers, n, func(j int) {
			h := msgHash(i*n + j)
			if _, err := c.Stamp(ctx, h[:], crypto.SHA256); err != nil {
				b.Error(err)
			}
		})
		perMsg += time.Since(start)
		start = time.Now()
		fanOut(workers, n, func(j int) {
			if err := batcher.Add(ctx, msgHash(i*n+j)); err != nil {
				b.Error(err)
			}
		})
		if err := batcher.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		batched += time.Since(start)
		msgs += n
	}
	pm := float64(msgs) / perMsg.Seconds()
	bm := float64(msgs) / batched.Seconds()
	b.ReportMetric(pm, "per-message-msgs/s")
	b.ReportMetric(bm, "batched-msgs/s")
	b.ReportMetric(bm/pm, "batched/per-message")
}

func fanOut(workers, n int, f func(j int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for j := range next {
				f(j)
			}
		})
	}
	for j := range n {
		next <- j
	}
	close(next)
	wg.Wait()
}

// BenchmarkServerRequests is the TSA's own throughput: RFC 3161 queries over
// HTTP on loopback, signing and ledger recording included (requests/s).
func BenchmarkServerRequests(b *testing.B) {
	tsa := newTestTSA(b)
	q, err := (&tsp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: Digest([]byte("bench")), Nonce: big.NewInt(1), Certificates: true}).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	start := time.Now()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(tsa.http.URL, ContentTypeQuery, bytes.NewReader(q))
			if err != nil {
				b.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if _, err := TokenFromReply(body); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "requests/s")
}

// BenchmarkVerifyToken is the offline verification cost of one token.
func BenchmarkVerifyToken(b *testing.B) {
	tsa := newTestTSA(b)
	d := Digest([]byte("bench"))
	tok, err := tsa.client(b, nil).Stamp(b.Context(), d, crypto.SHA256)
	if err != nil {
		b.Fatal(err)
	}
	roots := tsa.ca.Pool()
	for b.Loop() {
		if _, err := VerifyToken(tok.DER, d, roots, VerifyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
