package federation

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the federation's Prometheus metrics.
type metrics struct {
	members     *prometheus.GaugeVec
	exports     *prometheus.GaugeVec
	syncs       *prometheus.CounterVec
	syncErrors  prometheus.Counter
	syncSeconds *prometheus.HistogramVec
	writes      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleetmesh_federation_members", Help: "Member clusters by state: joined, unreachable (contributions kept), failed (cannot connect).",
		}, []string{"state"}),
		exports: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleetmesh_federation_exports", Help: "ServiceExports in the fleet by state: valid, invalid, conflict.",
		}, []string{"state"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetmesh_federation_syncs_total", Help: "Federation syncs run, by kind: full (the whole fleet) or services (the services that changed).",
		}, []string{"kind"}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleetmesh_federation_sync_errors_total", Help: "Federation syncs that ended with an error (retried).",
		}),
		syncSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fleetmesh_federation_sync_seconds", Help: "Time of one federation sync, all members, by kind: full or services.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"kind"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetmesh_federation_writes_total", Help: "Objects the federation wrote in members, by kind and operation.",
		}, []string{"kind", "op"}),
	}
	if reg != nil {
		reg.MustRegister(m.members, m.exports, m.syncs, m.syncErrors, m.syncSeconds, m.writes)
	}
	return m
}
