package hashregistry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type logMetrics struct {
	entries   prometheus.Counter
	batches   prometheus.Counter
	batchSize prometheus.Histogram
	commit    prometheus.Histogram

	leafFlushErrors prometheus.Counter
}

func newLogMetrics(reg prometheus.Registerer, l *Log) (*logMetrics, error) {
	m := &logMetrics{
		entries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "passerelle_registry_appended_entries_total", Help: "Entries integrated into the log.",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "passerelle_registry_commits_total", Help: "Committed batches (one signed checkpoint each).",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "passerelle_registry_batch_entries", Help: "Entries per committed batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "passerelle_registry_commit_seconds", Help: "Time to write, fsync and sign one batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		leafFlushErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "passerelle_registry_leaf_index_errors_total",
			Help: "Failed writes of the leaf-hash index (derived data; the hashes stay pending in memory).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "passerelle_registry_tree_size", Help: "Size of the latest signed checkpoint.",
	}, func() float64 { return float64(l.Size()) })
	for _, c := range []prometheus.Collector{m.entries, m.batches, m.batchSize, m.commit, m.leafFlushErrors, size} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *logMetrics) observeCommit(n int, d time.Duration) {
	m.entries.Add(float64(n))
	m.batches.Inc()
	m.batchSize.Observe(float64(n))
	m.commit.Observe(d.Seconds())
}
