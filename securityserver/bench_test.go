package securityserver_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/passerelle/passerelle/rest"
	"github.com/passerelle/passerelle/sandbox"
)

// BenchmarkExchange measures one whole REST exchange through the two
// in-process security servers of a sandbox (sign, log durably, mTLS,
// verify, call the service, sign, log, verify, log), with a 1 KiB payload:
// a POST of 1 KiB echoed back, and a GET whose 1 KiB query the hello
// service echoes. In the same run it measures the baseline – the same
// request sent to the hello service directly – and reports
//
//	direct-ns/op   the baseline's time per request
//	x-direct       exchange time / direct time
//
// ns/op is the exchange's. Fsyncs dominate: each exchange commits four
// message-log records, and the timestamp and registry queues, on two servers.
func BenchmarkExchange(b *testing.B) {
	sb := restSandbox(b)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB
	query := "q=" + strings.Repeat("x", 1024-2)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	b.Cleanup(client.CloseIdleConnections)

	for _, bc := range []struct {
		name, method, resource, contentType string
		body                                []byte
	}{
		{"GET", "GET", "/bench?" + query, "", nil},
		{"POST", "POST", "/bench", "application/json", payload},
	} {
		send := func(b *testing.B, url string, xroad bool) {
			req, err := http.NewRequestWithContext(b.Context(), bc.method, url, bytes.NewReader(bc.body))
			if err != nil {
				b.Fatal(err)
			}
			if bc.body == nil {
				req.Body = http.NoBody
			}
			if bc.contentType != "" {
				req.Header.Set("Content-Type", bc.contentType)
			}
			if xroad {
				req.Header.Set(rest.HeaderClient, sandbox.ClientID)
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || n < 1024 {
				b.Fatalf("%s %s = %d, %d bytes (%v)", bc.method, url, resp.StatusCode, n, err)
			}
		}
		through := sb.Info.ConsumerURL + "/r1/" + sandbox.RESTService + bc.resource
		direct := sb.Hello.URL() + bc.resource

		b.Run(bc.name, func(b *testing.B) {
			// Warm both paths (connections, OCSP cache, verifier).
			send(b, through, true)
			send(b, direct, false)

			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				send(b, through, true)
			}
			exchange := time.Since(start)
			b.StopTimer()

			// Baseline, as many requests, outside the timer.
			start = time.Now()
			for range b.N {
				send(b, direct, false)
			}
			baseline := time.Since(start)
			b.ReportMetric(float64(baseline.Nanoseconds())/float64(b.N), "direct-ns/op")
			b.ReportMetric(float64(exchange)/float64(baseline), "x-direct")
		})
	}
}
