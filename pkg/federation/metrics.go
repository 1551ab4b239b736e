package federation

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
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

// count updates the membership and export gauges.
func (f *Federation) count(members []*Member, plan *Plan) {
	f.mu.Lock()
	states := map[string]float64{"joined": 0, "unreachable": 0, "failed": 0}
	for _, m := range members {
		conn := f.members[m.name()]
		switch {
		case m.Known:
			states["joined"]++
		case conn != nil && conn.cluster != nil:
			states["unreachable"]++
		default:
			states["failed"]++
		}
	}
	f.mu.Unlock()
	for state, n := range states {
		f.metrics.members.WithLabelValues(state).Set(n)
	}
	exports := map[string]float64{"valid": 0, "invalid": 0, "conflict": 0}
	for _, byKey := range plan.Exports {
		for _, conds := range byKey {
			switch {
			case !meta.IsStatusConditionTrue(conds, fmv1alpha1.ConditionValid):
				exports["invalid"]++
			case meta.IsStatusConditionTrue(conds, fmv1alpha1.ConditionConflict):
				exports["conflict"]++
			default:
				exports["valid"]++
			}
		}
	}
	for state, n := range exports {
		f.metrics.exports.WithLabelValues(state).Set(n)
	}
}
