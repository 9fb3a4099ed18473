// Package load is Passerelle's HTTP load generator: what `make bench`
// (scripts/bench.sh) uses to drive the security-server pair and its
// baselines, and what the Benchmark* functions under test/ reuse.
//
// Entry points:
//   - Closed runs a closed loop: N workers, each sending its next request as
//     soon as the previous answer is read (throughput at concurrency N).
//   - Open runs an open loop at a fixed arrival rate. Latency is measured from
//     each request's scheduled start, not from when it was sent, so a slow
//     answer is charged for the requests it held up (no coordinated omission).
//   - Result holds the counts and the latency distribution (p50/p99/p99.9).
//   - NewClient gives a keep-alive HTTP client sized for a concurrency.
//   - RSS and TreeRSS read a process's resident set from /proc; Sampler
//     samples it while a run goes on and keeps the peak.
//   - Hold opens many keep-alive connections at once (the memory test).
//
// A Target says how to build the i-th request; the body of each request is
// read to the end and closed, and any status other than 200 counts as an
// error (its latency is not recorded).
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Target is one thing to load: a name for the report and a request factory.
type Target struct {
	Name string
	// New builds the i-th request (i counts from 0 across all workers). It
	// must be safe for concurrent use.
	New func(i uint64) (*http.Request, error)
	// Client sends the requests (nil: NewClient(64)).
	Client *http.Client
}

// Result is what a run measured.
type Result struct {
	Target      string
	Concurrency int     // closed loop: workers; open loop: 0
	Rate        float64 // open loop: requests per second scheduled; closed loop: 0
	Requests    int     // answered with 200
	Errors      int     // transport errors and non-200 answers
	Dropped     int     // open loop: requests not sent because MaxInFlight was reached
	Elapsed     time.Duration
	Latencies   []time.Duration // sorted
	FirstError  string          // the first error seen, for the log
}

// Throughput is successful requests per second.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of the recorded latencies,
// nearest rank; 0 when nothing was recorded.
func (r *Result) Quantile(q float64) time.Duration {
	return Quantile(r.Latencies, q)
}

// Quantile is the nearest-rank q-quantile of sorted latencies.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	switch {
	case q <= 0:
		return sorted[0]
	case q >= 1:
		return sorted[n-1]
	}
	// nearest rank: ceil(q*n), 1-based
	rank := int(q*float64(n) + 0.999999999)
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	return sorted[rank-1]
}

// String is a one-line summary for logs.
func (r *Result) String() string {
	return fmt.Sprintf("%s c=%d rate=%.0f: %d ok, %d errors, %d dropped, %.0f req/s, p50 %v p99 %v p99.9 %v",
		r.Target, r.Concurrency, r.Rate, r.Requests, r.Errors, r.Dropped, r.Throughput(),
		r.Quantile(0.50), r.Quantile(0.99), r.Quantile(0.999))
}

// NewClient returns an HTTP/1.1 client that keeps up to conns connections
// alive to each host and opens no more than conns at once.
func NewClient(conns int) *http.Client {
	if conns < 1 {
		conns = 1
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// recorder collects latencies from concurrent workers.
type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	ok, errs int
	first    string
}

func (rec *recorder) done(d time.Duration, err error) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if err != nil {
		rec.errs++
		if rec.first == "" {
			rec.first = err.Error()
		}
		return
	}
	rec.ok++
	rec.lat = append(rec.lat, d)
}

func (rec *recorder) result(name string, elapsed time.Duration) Result {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	slices.Sort(rec.lat)
	return Result{Target: name, Requests: rec.ok, Errors: rec.errs, Elapsed: elapsed, Latencies: rec.lat, FirstError: rec.first}
}

// ErrStatus reports an answer whose status is not 200.
var ErrStatus = errors.New("load: unexpected status")

// do sends one request and reads its answer to the end.
func do(ctx context.Context, t *Target, c *http.Client, i uint64) error {
	req, err := t.New(i)
	if err != nil {
		return err
	}
	resp, err := c.Do(req.WithContext(ctx))
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w %d", ErrStatus, resp.StatusCode)
	}
	return nil
}

func client(t *Target, conns int) *http.Client {
	if t.Client != nil {
		return t.Client
	}
	return NewClient(conns)
}

// Closed runs t with conc workers, each sending its next request as soon as
// it has read the previous answer, for warmup and then d. The result holds
// the answers that arrived during d (throughput = those ÷ d). At the end no
// new request is sent and Closed waits for those in flight, unrecorded, so
// that the next run starts on an idle system.
func Closed(ctx context.Context, t Target, conc int, warmup, d time.Duration) Result {
	c := client(&t, conc)
	var next atomic.Uint64
	rec := &recorder{}
	begin := time.Now()
	from, until := begin.Add(warmup), begin.Add(warmup+d)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(until) {
				start := time.Now()
				err := do(ctx, &t, c, next.Add(1)-1)
				end := time.Now()
				if ctx.Err() != nil {
					return // interrupted: not an answer
				}
				if !end.Before(from) && !end.After(until) {
					rec.done(end.Sub(start), err)
				}
			}
		})
	}
	wg.Wait()
	r := rec.result(t.Name, d)
	r.Concurrency = conc
	return r
}

// OpenConfig shapes an open-loop run.
type OpenConfig struct {
	Rate        float64       // requests per second
	Duration    time.Duration // how long requests are scheduled
	Warmup      time.Duration // scheduled at Rate first, not recorded
	MaxInFlight int           // requests outstanding at once (default 1000); beyond, a request is dropped and counted
}

// Open sends t's requests at a fixed rate: request i is due at
// start + i/Rate whatever happened to the previous ones, and its latency runs
// from that due time to the end of its answer. A request that cannot be sent
// because MaxInFlight are outstanding is counted in Dropped.
func Open(ctx context.Context, t Target, cfg OpenConfig) Result {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 1000
	}
	c := client(&t, cfg.MaxInFlight)
	var next atomic.Uint64
	run := func(d time.Duration, rec *recorder) (time.Duration, int) {
		n := int(cfg.Rate * d.Seconds())
		interval := time.Duration(float64(time.Second) / cfg.Rate)
		sem := make(chan struct{}, cfg.MaxInFlight)
		var wg sync.WaitGroup
		dropped := 0
		start := time.Now()
		for i := range n {
			due := start.Add(time.Duration(i) * interval)
			if wait := time.Until(due); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
				}
			}
			if ctx.Err() != nil {
				break
			}
			select {
			case sem <- struct{}{}:
			default:
				dropped++
				continue
			}
			wg.Go(func() {
				defer func() { <-sem }()
				err := do(ctx, &t, c, next.Add(1)-1)
				rec.done(time.Since(due), err)
			})
		}
		wg.Wait()
		return time.Since(start), dropped
	}
	if cfg.Warmup > 0 {
		run(cfg.Warmup, &recorder{})
	}
	rec := &recorder{}
	elapsed, dropped := run(cfg.Duration, rec)
	r := rec.result(t.Name, elapsed)
	r.Rate = cfg.Rate
	r.Dropped = dropped
	return r
}
