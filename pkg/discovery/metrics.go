package discovery

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	inconsistent *prometheus.GaugeVec
	rebuilds     prometheus.Counter
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		inconsistent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleetmesh_discovery_inconsistent_services",
			Help: "Services whose definition is inconsistent (e.g. a port name listed twice), by what was published for them: their last valid definition (kept) or nothing (left out).",
		}, []string{"published"}),
	}
	m.rebuilds = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fleetmesh_discovery_rebuilds_total",
		Help: "Meshes built and published (each also decides the status of the imports and policies it read).",
	})
	r.MustRegister(m.inconsistent, m.rebuilds)
	return m
}
