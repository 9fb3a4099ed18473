package messagelog

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// runWriters performs n appends from the given number of goroutines.
func runWriters(tb testing.TB, writers, n int, appendOne func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := appendOne(i); err != nil {
					tb.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkAppend measures durable appends (fsync included) of a typical
// REST record (600-byte JWS, 1 KiB body) with 1 and 64 concurrent writers.
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l := openLog(b, Config{})
			ctx := b.Context()
			b.ResetTimer()
			runWriters(b, writers, b.N, func(i int) error {
				_, err := l.Append(ctx, request(i, 600, 1024))
				return err
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			st := l.Stats()
			b.ReportMetric(float64(st.CommittedOps)/float64(max(st.Commits, 1)), "records/commit")
		})
	}
}

// BenchmarkBatchEffect appends the same records from 64 writers through the
// group committer and through a baseline of one bbolt Update (one fsync)
// per record, in the same run, and reports the ratio.
func BenchmarkBatchEffect(b *testing.B) {
	const writers, n = 64, 1000
	var batched, solo time.Duration
	for b.Loop() {
		l := openLog(b, Config{})
		ctx := b.Context()
		start := time.Now()
		runWriters(b, writers, n, func(i int) error {
			_, err := l.Append(ctx, request(i, 600, 1024))
			return err
		})
		batched += time.Since(start)

		l = openLog(b, Config{})
		start = time.Now()
		runWriters(b, writers, n, func(i int) error {
			rec := request(i, 600, 1024)
			o, _, err := l.prepare(&rec, bytes.NewReader(rec.Body))
			if err != nil {
				return err
			}
			return l.update([]*op{o})
		})
		solo += time.Since(start)
	}
	batchedRate := float64(n*b.N) / batched.Seconds()
	soloRate := float64(n*b.N) / solo.Seconds()
	b.ReportMetric(batchedRate, "batched-records/s")
	b.ReportMetric(soloRate, "solo-records/s")
	b.ReportMetric(batchedRate/soloRate, "x-batched/solo")
}
