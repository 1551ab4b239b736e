package discovery

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	inconsistent *prometheus.GaugeVec
}

func newMetrics(r *prometheus.Registry) *metrics {
	m := &metrics{
		inconsistent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleetmesh_discovery_inconsistent_services",
			Help: "Services whose definition is inconsistent (e.g. a port name listed twice), by what was published for them: their last valid definition (kept) or nothing (left out).",
		}, []string{"published"}),
	}
	r.MustRegister(m.inconsistent)
	return m
}
