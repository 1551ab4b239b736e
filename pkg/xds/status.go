package xds

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetmesh/fleetmesh/pkg/xds/syncz"
)

// tracker follows every stream: which node it is, the nonces sent and the
// versions they carried, and the clients' acknowledgements.
type tracker struct {
	log     logr.Logger
	metrics *metrics

	mu      sync.Mutex
	streams map[streamKey]*streamState
}

// streamKey names a stream: go-control-plane numbers sotw and delta
// streams separately.
type streamKey struct {
	delta bool
	id    int64
}

type streamState struct {
	status *syncz.ProxyStatus
	// sent is the last response of each type: its nonce and version (an
	// answer to an older one is stale).
	sent map[string]sentResponse
}

type sentResponse struct{ nonce, version string }

func newTracker(log logr.Logger, m *metrics) *tracker {
	return &tracker{log: log, metrics: m, streams: map[streamKey]*streamState{}}
}

// shortType turns a type URL into its message name, e.g. Cluster.
func shortType(typeURL string) string {
	return typeURL[strings.LastIndexByte(typeURL, '.')+1:]
}

func (t *tracker) open(k streamKey, credential *syncz.Credential) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streams[k] = &streamState{
		status: &syncz.ProxyStatus{Delta: k.delta, ConnectedAt: time.Now(), Types: map[string]*syncz.TypeStatus{}, Credential: credential},
		sent:   map[string]sentResponse{},
	}
}

func (t *tracker) close(k streamKey) *syncz.ProxyStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streams[k]
	delete(t.streams, k)
	if s == nil {
		return nil
	}
	if s.status.ID != "" {
		t.metrics.connected.WithLabelValues(s.status.Role).Dec()
	}
	return s.status
}

// request records a client request: the node on first sight, then an ACK
// or NACK of the response whose nonce it carries.
func (t *tracker) request(k streamKey, node *corev3.Node, typeURL, nonce string, subscribed int, errDetail string, identify func(*corev3.Node) (*syncz.ProxyStatus, error)) {
	t.mu.Lock()
	s := t.streams[k]
	unidentified := s != nil && s.status.ID == "" && node != nil
	t.mu.Unlock()
	if s == nil {
		return
	}
	if unidentified {
		// Identifying builds the proxy's configuration: not under our lock.
		p, err := identify(node)
		if err == nil {
			t.mu.Lock()
			s.status.ID, s.status.Role, s.status.Cluster, s.status.Namespace, s.status.Pod = p.ID, p.Role, p.Cluster, p.Namespace, p.Pod
			t.mu.Unlock()
			t.metrics.connected.WithLabelValues(p.Role).Inc()
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	typ := shortType(typeURL)
	ts := s.status.Types[typ]
	if ts == nil {
		ts = &syncz.TypeStatus{}
		s.status.Types[typ] = ts
	}
	if subscribed >= 0 {
		ts.Subscribed = subscribed
	}
	if nonce == "" {
		return
	}
	last, ok := s.sent[typ]
	if !ok || last.nonce != nonce {
		return
	}
	delete(s.sent, typ)
	version := last.version
	if errDetail != "" {
		ts.Nacked, ts.NackedAt, ts.NackError = version, time.Now(), errDetail
		t.metrics.nacks.WithLabelValues(typ).Inc()
		t.log.Info("proxy refused configuration", "proxy", s.status.ID, "type", typ, "version", version, "error", errDetail)
		return
	}
	ts.Acked, ts.AckedAt = version, time.Now()
	t.metrics.acks.WithLabelValues(typ).Inc()
}

// response records a response about to be sent.
func (t *tracker) response(k streamKey, typeURL, nonce, version string, resources int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streams[k]
	if s == nil {
		return
	}
	typ := shortType(typeURL)
	ts := s.status.Types[typ]
	if ts == nil {
		ts = &syncz.TypeStatus{}
		s.status.Types[typ] = ts
	}
	ts.Sent, ts.SentAt, ts.Resources = version, time.Now(), resources
	s.sent[typ] = sentResponse{nonce, version}
	t.metrics.pushes.WithLabelValues(typ).Inc()
	t.metrics.pushedResources.WithLabelValues(typ).Add(float64(resources))
}

// check refuses a request beyond the server's bounds (checkRequest),
// counting it, before anything of it is kept.
func (t *tracker) check(typeURL string, names int) error {
	if err := checkRequest(typeURL, names); err != nil {
		t.metrics.refused.WithLabelValues("limit").Inc()
		return err
	}
	return nil
}

// snapshot returns a copy of every identified stream's status, by proxy ID.
func (t *tracker) snapshot() []syncz.ProxyStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]syncz.ProxyStatus, 0, len(t.streams))
	for _, s := range t.streams {
		if s.status.ID == "" {
			continue
		}
		cp := *s.status
		cp.Types = make(map[string]*syncz.TypeStatus, len(s.status.Types))
		for k, v := range s.status.Types {
			v := *v
			cp.Types[k] = &v
		}
		out = append(out, cp)
	}
	slices.SortFunc(out, func(a, b syncz.ProxyStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// callbacks connects the tracker to go-control-plane's servers.
func (t *tracker) callbacks(identify func(*corev3.Node) (*syncz.ProxyStatus, error), closed func(status *syncz.ProxyStatus)) callbackFuncs {
	return callbackFuncs{
		open: func(ctx context.Context, id int64, delta bool) { t.open(streamKey{delta, id}, credentialOf(ctx)) },
		closed: func(id int64, delta bool) {
			if st := t.close(streamKey{delta, id}); st != nil {
				closed(st)
			}
		},
		sotwRequest: func(id int64, req *discoveryv3.DiscoveryRequest) error {
			if err := t.check(req.GetTypeUrl(), len(req.GetResourceNames())); err != nil {
				return err
			}
			t.request(streamKey{false, id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), len(req.GetResourceNames()), req.GetErrorDetail().GetMessage(), identify)
			return nil
		},
		sotwResponse: func(id int64, resp *discoveryv3.DiscoveryResponse) {
			t.response(streamKey{false, id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo(), len(resp.GetResources()))
		},
		deltaRequest: func(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
			if err := t.check(req.GetTypeUrl(), len(req.GetResourceNamesSubscribe())); err != nil {
				return err
			}
			t.request(streamKey{true, id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), -1, req.GetErrorDetail().GetMessage(), identify)
			return nil
		},
		deltaResponse: func(id int64, resp *discoveryv3.DeltaDiscoveryResponse) {
			t.response(streamKey{true, id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo(), len(resp.GetResources())+len(resp.GetRemovedResources()))
		},
	}
}

type metrics struct {
	connected       *prometheus.GaugeVec
	pushes          *prometheus.CounterVec
	pushedResources *prometheus.CounterVec
	acks            *prometheus.CounterVec
	nacks           *prometheus.CounterVec
	translations    prometheus.Counter
	translated      prometheus.Counter
	translateTime   prometheus.Histogram
	refused         *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleetmesh_xds_connected_proxies", Help: "Proxies connected over ADS, by role.",
		}, []string{"role"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetmesh_xds_refused_streams_total", Help: "ADS streams refused: unauthenticated (no valid workload certificate), denied (a node its identity may not be) or limit (a type the server does not serve, too many names).",
		}, []string{"reason"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetmesh_xds_pushes_total", Help: "xDS responses sent, by resource type.",
		}, []string{"type"}),
		pushedResources: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetmesh_xds_pushed_resources_total", Help: "Resources sent in xDS responses, by resource type.",
		}, []string{"type"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetmesh_xds_acks_total", Help: "Responses proxies acknowledged, by resource type.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetmesh_xds_nacks_total", Help: "Responses proxies refused, by resource type.",
		}, []string{"type"}),
		translations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleetmesh_xds_mesh_updates_total", Help: "Mesh snapshots translated.",
		}),
		translated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleetmesh_xds_services_translated_total", Help: "Services translated again because they changed.",
		}),
		translateTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fleetmesh_xds_update_seconds", Help: "Time from a mesh snapshot to its resources in the cache.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.refused, m.connected, m.pushes, m.pushedResources, m.acks, m.nacks, m.translations, m.translated, m.translateTime)
	}
	return m
}
