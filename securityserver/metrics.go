package securityserver

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/rest"
)

// metrics are the security server's own Prometheus metrics; labels are
// bounded (services come from the configuration, error types from the code,
// or for errors passed on from peers and services, at most maxErrorTypes).
type metrics struct {
	exchanges *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	errors    *prometheus.CounterVec

	mu    sync.Mutex
	types map[string]struct{} // error types counted under their own name
}

// maxErrorTypes bounds the error types counted by name: a provider's
// X-Road-Error or a service's SOAP faultcode is any string its sender
// chooses; beyond the bound, types are counted as "other".
const maxErrorTypes = 256

func newMetrics(s *Server) (*metrics, error) {
	m := &metrics{
		types: map[string]struct{}{},
		exchanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_exchanges_total", Help: "Exchanges completed, by side, service and HTTP status class.",
		}, []string{"side", "service", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "passerelle_exchange_seconds", Help: "Time to complete an exchange, by side.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"side"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_errors_total", Help: "Requests refused, by origin and X-Road error type.",
		}, []string{"origin", "type"}),
	}
	gauges := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_timestamp_pending", Help: "Message hashes waiting for a timestamp."},
			func() float64 { return float64(s.batcher.Pending()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_timestamp_pending_age_seconds", Help: "Age of the oldest message hash waiting for a timestamp."},
			func() float64 { return s.batcher.PendingAge().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_registry_backlog", Help: "Message hashes waiting for the hash registry."},
			func() float64 { n, _ := s.outbox.Backlog(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_registry_backlog_age_seconds", Help: "Age of the oldest message hash waiting for the hash registry."},
			func() float64 {
				if _, t := s.outbox.Backlog(); !t.IsZero() {
					return time.Since(t).Seconds()
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_ocsp_sign_age_seconds", Help: "Age of the OCSP response stapled to signatures (-1: none)."},
			func() float64 { return s.signStapler.Age().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_ocsp_auth_age_seconds", Help: "Age of the OCSP response stapled to TLS (-1: none)."},
			func() float64 { return s.authStapler.Age().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_certificate_sign_expiry_seconds", Help: "Time until the signing certificate expires."},
			func() float64 { return time.Until(s.sign.chain[0].NotAfter).Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_certificate_auth_expiry_seconds", Help: "Time until the TLS certificate expires."},
			func() float64 { return time.Until(s.auth.chain[0].NotAfter).Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_messagelog_records", Help: "Records in the message log."},
			func() float64 { return float64(s.mlog.Stats().Records) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_requests_in_flight", Help: "Requests in flight over all clients (limits.maxConcurrentPerClient bounds each client)."},
			func() float64 { return float64(s.limiter.inFlight()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_clients", Help: "Client subsystems in effect."},
			func() float64 { return float64(len(s.store.load().clientIDs)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_services", Help: "Services in effect."},
			func() float64 { return float64(len(s.store.load().serviceIDs)) }),
	}
	changes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "passerelle_config_changes_total", Help: "Changes made through the admin API, by action.",
	}, []string{"action"})
	for _, a := range adminActions {
		changes.WithLabelValues(a)
	}
	s.store.changes = changes
	gauges = append(gauges, changes)
	for _, c := range append(gauges, m.exchanges, m.latency, m.errors) {
		if err := s.reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) exchange(side, service string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.exchanges.WithLabelValues(side, service, strconv.Itoa(status/100)+"xx").Inc()
	m.latency.WithLabelValues(side).Observe(d.Seconds())
}

func (m *metrics) result(origin rest.Origin, typ string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	if _, ok := m.types[typ]; !ok {
		if len(m.types) >= maxErrorTypes {
			typ = "other"
		} else {
			m.types[typ] = struct{}{}
		}
	}
	m.mu.Unlock()
	m.errors.WithLabelValues(string(origin), typ).Inc()
}
