package securityserver

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/rest"
)

// TestErrorTypesBounded: error types passed on from peers and services
// (X-Road-Error, SOAP faultcode) are chosen by their sender; each new one
// must not add a series forever.
func TestErrorTypesBounded(t *testing.T) {
	s := &Server{reg: prometheus.NewRegistry(), store: &configStore{}}
	m, err := newMetrics(s)
	if err != nil {
		t.Fatal(err)
	}
	m.result(rest.OriginClientProxy, "Server.ClientProxy.NetworkError")
	for i := range 10 * maxErrorTypes {
		m.result(rest.OriginServerProxy, fmt.Sprintf("Server.ServerProxy.Peer%d", i))
	}
	ch := make(chan prometheus.Metric, 20*maxErrorTypes)
	m.errors.Collect(ch)
	close(ch)
	if n := len(ch); n > maxErrorTypes+1 {
		t.Errorf("%d error series, want at most %d", n, maxErrorTypes+1)
	}
}
