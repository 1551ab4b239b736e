package xds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/pkg/model"
	"github.com/fleetmesh/fleetmesh/pkg/translate"
	"github.com/fleetmesh/fleetmesh/pkg/xds/syncz"
)

// Layer names of the shared parts of views.
const (
	layerOutbound  = "outbound"
	layerProxyless = "proxyless"
)

func proxyLayer(id string) string { return "proxy/" + id }

// mtlsLayer holds the outbound clusters with mesh mTLS of the proxies
// with a certificate of one kind (every injected sidecar's, whose
// certificate is in the same directory; every proxyless client's): it
// hides the outbound layer's plaintext ones.
func mtlsLayer(p model.Proxy) string {
	if p.IdentityDir == "" || p.Role == model.RoleGateway {
		return "" // none: a gateway's clusters are its own
	}
	if p.Role == model.RoleGRPC {
		return "mtls-grpc"
	}
	return "mtls/" + p.IdentityDir
}

// sharedLayer is the layer of a sidecar's outbound side
// (translate.SidecarShared): one per namespace for intercepting sidecars,
// which need nothing of their own there, else one per proxy (it binds to
// its pod's address).
func sharedLayer(p model.Proxy) string {
	if p.Intercept {
		return "sidecar/" + p.Namespace
	}
	return "sidecar-bind/" + p.ID
}

// Registry is where metrics are registered and gathered from.
type Registry interface {
	prometheus.Registerer
	prometheus.Gatherer
}

// Options configure a Server.
type Options struct {
	// ClusterName is the cluster this control plane serves; a proxy whose
	// node metadata names another cluster is refused.
	ClusterName string
	Log         logr.Logger
	// Registry receives the server's metrics, and /metrics serves what it
	// gathers; nil makes a new one.
	Registry Registry
	// Authenticate, when set, lets in only clients it identifies, and
	// only as nodes their identity may be (StreamInterceptor).
	Authenticate Authenticator
	// GatewayNamespace and GatewayServiceAccount are the only namespace
	// and ServiceAccount gateways may run as, when clients are
	// authenticated.
	GatewayNamespace      string
	GatewayServiceAccount string
	// ServesTLS, when set, says whether the TLS that carries ADS can
	// take handshakes (its CA loaded); /readyz waits for it.
	ServesTLS func() error
}

// Server is fleetmesh's ADS server for one cluster.
type Server struct {
	opts     Options
	cache    *Cache
	tracker  *tracker
	metrics  *metrics
	registry Registry
	xds      discoveryv3.AggregatedDiscoveryServiceServer

	owners owners

	mu   sync.Mutex
	mesh *model.Mesh
	// translator is mesh's: its lookups serve every proxy's translation.
	translator *translate.Translator
	proxies    map[string]*proxyEntry
	// shared are the sidecars' shared layers in use, by layer name.
	shared map[string]*sharedEntry
	// mtlsUsers are the mTLS layers in use, by layer name.
	mtlsUsers map[string]*sharedEntry
	memo      map[string]memoEntry
	ready     bool
}

// sharedEntry is a shared layer and the proxies that use it.
type sharedEntry struct {
	// proxy is one of them, to translate for.
	proxy model.Proxy
	users int
	// warnings of the layer's last translation
	warnings []string
}

type proxyEntry struct {
	proxy   model.Proxy
	streams int
	// warnings of the proxy's last translation
	warnings []string
}

type memoEntry struct {
	fingerprint uint64
	outbound    Resources
	proxyless   Resources
	// clusters are the outbound clusters, with the SNI of each, to make
	// the mTLS ones from; mtls are those made, by identity directory.
	clusters []sniCluster
	mtls     map[string]Resources
}

type sniCluster struct {
	cluster *clusterv3.Cluster
	sni     string
	// all says every endpoint of the port takes mTLS.
	all bool
}

// mtlsFor returns the entry's outbound clusters with mesh mTLS for the
// proxies of layer, one of which is p.
func (s *Server) mtlsFor(e memoEntry, layer string, p model.Proxy) Resources {
	if r, ok := e.mtls[layer]; ok {
		return r
	}
	res := &translate.Resources{}
	for _, c := range e.clusters {
		if mc := translate.MeshMTLSCluster(&p, s.mesh.TrustDomain, c.cluster, c.sni, c.all); mc != nil {
			res.Clusters = append(res.Clusters, mc)
		}
	}
	r := s.entries(res, resource.ClusterType)
	e.mtls[layer] = r
	return r
}

// updateMTLS builds an mTLS layer anew.
func (s *Server) updateMTLS(name string, sh *sharedEntry) {
	if s.mesh != nil {
		s.cache.SetLayer(name, s.mtlsLayerOf(name, sh.proxy))
	}
}

// mtlsLayerOf builds an mTLS layer, for its proxies, one of which is p.
func (s *Server) mtlsLayerOf(layer string, p model.Proxy) Resources {
	out := Resources{resource.ClusterType: {}}
	for _, e := range s.memo {
		mergeInto(out, s.mtlsFor(e, layer, p))
	}
	return out
}

// NewServer returns a server with an empty mesh; Update publishes one.
func NewServer(ctx context.Context, opts Options) *Server {
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	s := &Server{
		opts:      opts,
		registry:  opts.Registry,
		metrics:   newMetrics(opts.Registry),
		proxies:   map[string]*proxyEntry{},
		shared:    map[string]*sharedEntry{},
		mtlsUsers: map[string]*sharedEntry{},
		memo:      map[string]memoEntry{},
	}
	s.tracker = newTracker(opts.Log, s.metrics)
	s.cache = NewCache(s.views)
	callbacks := s.tracker.callbacks(s.connected, s.disconnected)
	s.xds = adsServer{sotw: serverv3.NewServer(ctx, s.cache, callbacks), delta: newDeltaServer(s.cache, callbacks)}
	return s
}

// StreamInterceptor is what the gRPC server must run on every stream for
// the server's authentication, or nil when clients are not authenticated.
func (s *Server) StreamInterceptor() grpc.StreamServerInterceptor {
	if s.opts.Authenticate == nil {
		return nil
	}
	return s.authenticate(s.opts.Authenticate)
}

// Register serves ADS (state of the world and delta) on a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
}

// Cache returns the server's cache (for tests and the debug API).
func (s *Server) Cache() *Cache { return s.cache }

// Identify reads a proxy's identity from its node: node.id, and the
// metadata keys role (sidecar, gateway or grpc), namespace, pod,
// serviceAccount and cluster (README, "The control plane"), plus the optional ip (the
// address to bind listeners to, when the proxy has no Pod) and appIP
// (where a sidecar's inbound traffic goes; 127.0.0.1 by default),
// interception ("iptables" for an injected sidecar whose traffic is
// redirected to it), listenPort (the port a gateway listens on, when a
// Service maps the Cluster's gatewayPort to it) and identityDir (where the
// proxy's workload certificate is: it then speaks mesh mTLS).
func (s *Server) Identify(node *corev3.Node) (model.Proxy, error) {
	md, err := bootstrap.ReadNodeMetadata(node.GetMetadata())
	p := model.Proxy{
		ID: node.GetId(), Role: model.Role(md.Role), Namespace: md.Namespace, Pod: md.Pod,
		ServiceAccount: md.ServiceAccount, Cluster: md.Cluster, IP: md.IP, AppIP: md.AppIP,
		Intercept: md.Interception == bootstrap.InterceptionIPTables, IdentityDir: md.IdentityDir,
	}
	if err != nil {
		return p, fmt.Errorf("node %s: %w", node.GetId(), err)
	}
	if v := md.ListenPort; v != "" {
		port, err := strconv.ParseUint(v, 10, 16)
		if err != nil || port == 0 {
			return p, fmt.Errorf("node %s: metadata.listenPort %q is not a port", node.GetId(), v)
		}
		p.ListenPort = uint32(port)
	}
	if p.ID == "" {
		return p, errors.New("node.id is empty: every proxy needs an id unique to it")
	}
	switch p.Role {
	case model.RoleSidecar, model.RoleGateway, model.RoleGRPC:
	case "":
		return p, fmt.Errorf("node %s: metadata.role is missing; want sidecar, gateway or grpc", p.ID)
	default:
		return p, fmt.Errorf("node %s: metadata.role %q is not sidecar, gateway or grpc", p.ID, p.Role)
	}
	if p.Cluster == "" {
		p.Cluster = s.opts.ClusterName
	} else if s.opts.ClusterName != "" && p.Cluster != s.opts.ClusterName {
		return p, fmt.Errorf("node %s: metadata.cluster is %q, but this control plane serves %q", p.ID, p.Cluster, s.opts.ClusterName)
	}
	return p, nil
}

func layersOf(p model.Proxy) []string {
	switch p.Role {
	case model.RoleGRPC:
		if p.IdentityDir != "" {
			return withMTLSLayer(p, []string{layerOutbound, layerProxyless, proxyLayer(p.ID)})
		}
		return []string{layerOutbound, layerProxyless}
	case model.RoleSidecar:
		return withMTLSLayer(p, []string{layerOutbound, sharedLayer(p), proxyLayer(p.ID)})
	default:
		return []string{proxyLayer(p.ID)}
	}
}

// withMTLSLayer puts p's mTLS layer, if it has one, right after the
// outbound layer (layers[0]), whose clusters it hides.
func withMTLSLayer(p model.Proxy, layers []string) []string {
	if name := mtlsLayer(p); name != "" {
		return slices.Insert(layers, 1, name)
	}
	return layers
}

// views is the cache's resolver: a node's layers.
func (s *Server) views(node *corev3.Node) ([]string, error) {
	p, err := s.Identify(node)
	if err != nil {
		return nil, err
	}
	return layersOf(p), nil
}

// connected runs once per stream, when its node is first seen: a proxy's
// first stream builds its own layer.
func (s *Server) connected(node *corev3.Node) (*syncz.ProxyStatus, error) {
	p, err := s.Identify(node)
	if err != nil {
		s.opts.Log.Info("refusing proxy", "node", node.GetId(), "error", err.Error())
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.proxies[p.ID]
	if e == nil {
		e = &proxyEntry{proxy: p}
		s.proxies[p.ID] = e
		s.opts.Log.Info("proxy connected", "proxy", p.ID, "role", p.Role, "namespace", p.Namespace, "pod", p.Pod)
		if p.Role == model.RoleSidecar {
			acquire(s.shared, sharedLayer(p), p, s.updateShared)
		}
		if name := mtlsLayer(p); name != "" {
			acquire(s.mtlsUsers, name, p, s.updateMTLS)
		}
		s.updateProxy(e)
	}
	e.streams++
	return &syncz.ProxyStatus{ID: p.ID, Role: string(p.Role), Cluster: p.Cluster, Namespace: p.Namespace, Pod: p.Pod}, nil
}

// acquire counts p as a user of the shared layer name, made (by build)
// when p is its first.
func acquire(layers map[string]*sharedEntry, name string, p model.Proxy, build func(string, *sharedEntry)) {
	sh := layers[name]
	if sh == nil {
		sh = &sharedEntry{proxy: p}
		layers[name] = sh
		build(name, sh)
	}
	sh.users++
}

// release counts one user of the shared layer name fewer, and drops the
// layer with its last.
func (s *Server) release(layers map[string]*sharedEntry, name string) {
	if sh := layers[name]; sh != nil {
		if sh.users--; sh.users <= 0 {
			delete(layers, name)
			s.cache.DeleteLayer(name)
		}
	}
}

// disconnected drops a proxy's own layer when its last stream closes.
func (s *Server) disconnected(st *syncz.ProxyStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.proxies[st.ID]
	if e == nil {
		return
	}
	if e.streams--; e.streams <= 0 {
		delete(s.proxies, st.ID)
		s.cache.DeleteLayer(proxyLayer(st.ID))
		if e.proxy.Role == model.RoleSidecar {
			s.release(s.shared, sharedLayer(e.proxy))
		}
		if name := mtlsLayer(e.proxy); name != "" {
			s.release(s.mtlsUsers, name)
		}
		s.opts.Log.Info("proxy disconnected", "proxy", st.ID)
	}
}

// Update publishes a mesh: the services that changed since the last one are
// translated again, and every connected proxy's own layer is rebuilt.
func (s *Server) Update(m *model.Mesh) {
	start := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mesh = m
	// Every proxy's layers are translated from it, through one index.
	t := translate.NewTranslator(m)
	s.translator = t

	fleet := fleetFingerprint(m)
	memo := make(map[string]memoEntry, len(m.Services))
	outbound := Resources{resource.ClusterType: {}, resource.EndpointType: {}}
	proxyless := Resources{resource.ListenerType: {}, resource.RouteType: {}}
	translated := 0
	for i := range m.Services {
		svc := &m.Services[i]
		fp := fingerprint(svc, fleet)
		e, ok := s.memo[svc.Key()]
		if !ok || e.fingerprint != fp {
			translated++
			out := t.OutboundService(svc)
			e = memoEntry{
				fingerprint: fp,
				outbound:    s.entries(out, resource.ClusterType, resource.EndpointType),
				proxyless:   s.entries(translate.ProxylessService(svc), resource.ListenerType, resource.RouteType),
				mtls:        map[string]Resources{},
			}
			// OutboundService makes one cluster per port, in order.
			for j, c := range out.Clusters {
				port := &svc.Ports[j]
				e.clusters = append(e.clusters, sniCluster{cluster: c, sni: translate.SNI(svc, port.Port), all: translate.ProxylessTakesMTLS(port)})
			}
		}
		memo[svc.Key()] = e
		mergeInto(outbound, e.outbound)
		mergeInto(proxyless, e.proxyless)
	}
	s.memo = memo
	// The mTLS layers hide the outbound layer's clusters: they change
	// with it, or a proxy could be answered a plaintext cluster meant to
	// be hidden.
	layers := map[string]Resources{layerOutbound: outbound, layerProxyless: proxyless}
	for name, sh := range s.mtlsUsers {
		layers[name] = s.mtlsLayerOf(name, sh.proxy)
	}
	s.cache.SetLayers(layers)
	for name, sh := range s.shared {
		s.updateShared(name, sh)
	}
	for _, e := range s.proxies {
		s.updateProxy(e)
	}
	// The first complete mesh is in: streams are answered from now on.
	s.cache.Serve()
	s.ready = true
	s.metrics.translations.Inc()
	s.metrics.translated.Add(float64(translated))
	s.metrics.translateTime.Observe(time.Since(start).Seconds())
}

// withPodIP is p with its pod's address, when its node does not say it.
func (s *Server) withPodIP(p model.Proxy) model.Proxy {
	if p.IP == "" && p.Pod != "" {
		p.IP = s.mesh.Pods[p.Namespace+"/"+p.Pod]
	}
	return p
}

// updateShared rebuilds a sidecars' shared layer.
func (s *Server) updateShared(name string, sh *sharedEntry) {
	if s.mesh == nil {
		return
	}
	p := s.withPodIP(sh.proxy)
	res, err := s.translator.SidecarShared(&p)
	if err != nil {
		s.opts.Log.Error(err, "translate shared layer", "layer", name)
		return
	}
	sh.warnings = s.logNewWarnings(sh.warnings, res.Warnings, "layer", name)
	s.cache.SetLayer(name, s.entries(res, resource.ListenerType, resource.RouteType, resource.ClusterType))
}

// logNewWarnings logs the warnings of a translation that the previous one
// did not have, and returns them all.
func (s *Server) logNewWarnings(prev, now []string, key, value string) []string {
	for _, w := range now {
		if !slices.Contains(prev, w) {
			s.opts.Log.Info("translation warning", key, value, "warning", w)
		}
	}
	return now
}

// updateProxy rebuilds a proxy's own layer (sidecars and gateways).
func (s *Server) updateProxy(e *proxyEntry) {
	if s.mesh == nil || (e.proxy.Role == model.RoleGRPC && e.proxy.IdentityDir == "") {
		return
	}
	p := s.withPodIP(e.proxy)
	var res *translate.Resources
	var err error
	switch p.Role {
	case model.RoleSidecar:
		res, err = s.translator.SidecarOwn(&p)
	case model.RoleGRPC:
		// A proxyless client with a certificate may serve: its server
		// listeners.
		res, err = s.translator.ProxylessServer(&p)
	default:
		res, err = translate.Gateway(s.mesh, &p)
	}
	if err != nil {
		s.opts.Log.Error(err, "translate proxy", "proxy", p.ID)
		return
	}
	e.warnings = s.logNewWarnings(e.warnings, res.Warnings, "proxy", p.ID)
	layer := s.entries(res, resource.ListenerType, resource.RouteType, resource.ClusterType)
	if p.Role == model.RoleGateway {
		mergeInto(layer, s.entries(res, resource.EndpointType))
	}
	s.cache.SetLayer(proxyLayer(p.ID), layer)
}

// entries turns translated resources of the given types into cache
// entries. Types without resources get an empty set, so that what a
// previous translation had is removed.
func (s *Server) entries(r *translate.Resources, types ...string) Resources {
	out := Resources{}
	add := func(typeURL, name string, m proto.Message) {
		e, err := NewEntry(name, m)
		if err != nil {
			// Translation emits only well-formed protos; a failure here
			// is a programming error worth a loud log, not a crash.
			s.opts.Log.Error(err, "marshal resource", "type", typeURL, "name", name)
			return
		}
		out[typeURL][name] = e
	}
	for _, typ := range types {
		out[typ] = map[string]*Entry{}
		switch typ {
		case resource.ListenerType:
			for _, l := range r.Listeners {
				add(typ, l.GetName(), l)
			}
		case resource.RouteType:
			for _, rc := range r.Routes {
				add(typ, rc.GetName(), rc)
			}
		case resource.ClusterType:
			for _, c := range r.Clusters {
				add(typ, c.GetName(), c)
			}
		case resource.EndpointType:
			for _, cla := range r.Endpoints {
				add(typ, cla.GetClusterName(), cla)
			}
		}
	}
	return out
}

func mergeInto(dst, src Resources) {
	for typ, entries := range src {
		if dst[typ] == nil {
			dst[typ] = map[string]*Entry{}
		}
		for name, e := range entries {
			dst[typ][name] = e
		}
	}
}

// Ready reports whether a mesh has been published (and the TLS that
// carries ADS can take handshakes).
func (s *Server) Ready() bool {
	return s.notReady() == ""
}

// notReady says why the server is not ready, or "".
func (s *Server) notReady() string {
	s.mu.Lock()
	ready := s.ready
	s.mu.Unlock()
	if !ready {
		return "no mesh published yet"
	}
	if s.opts.ServesTLS != nil {
		if err := s.opts.ServesTLS(); err != nil {
			return err.Error()
		}
	}
	return ""
}

// Proxies returns the sync status of every connected proxy.
func (s *Server) Proxies() []syncz.ProxyStatus { return s.tracker.snapshot() }

// proxyLayers returns the layers of a connected proxy.
func (s *Server) proxyLayers(id string) ([]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.proxies[id]
	if !ok {
		return nil, false
	}
	return layersOf(e.proxy), true
}
