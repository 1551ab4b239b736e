package translate

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/types/known/wrapperspb"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	origdstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// Sidecar builds a sidecar's resources: the outbound clusters and endpoints
// (see Outbound; with a certificate, its clusters take mesh mTLS: see
// WithMTLS) and its own listeners and routes (see SidecarListeners).
func Sidecar(m *model.Mesh, p *model.Proxy) (*Resources, error) {
	r := Outbound(m)
	withMeshMTLS(m, p, r)
	own, err := SidecarListeners(m, p)
	if err != nil {
		return nil, err
	}
	r.merge(own)
	r.sort()
	return r, nil
}

// merge appends o's resources to r (callers sort once they are done).
func (r *Resources) merge(o *Resources) {
	r.Listeners = append(r.Listeners, o.Listeners...)
	r.Routes = append(r.Routes, o.Routes...)
	r.Clusters = append(r.Clusters, o.Clusters...)
	r.Endpoints = append(r.Endpoints, o.Endpoints...)
	r.Warnings = append(r.Warnings, o.Warnings...)
}

type servicePort struct {
	svc  *model.Service
	port *model.Port
}

// SidecarListeners builds what is the sidecar's own: one outbound listener
// per service port number, bound to the pod's address, whose routes answer
// every name form of every service on that port; and an inbound listener
// per port of the pod's own app, with the cluster that reaches the app.
// It is SidecarShared and SidecarOwn together.
func SidecarListeners(m *model.Mesh, p *model.Proxy) (*Resources, error) {
	r, err := SidecarShared(m, p)
	if err != nil {
		return nil, err
	}
	own, err := SidecarOwn(m, p)
	if err != nil {
		return nil, err
	}
	r.merge(own)
	r.sort()
	return r, nil
}

// SidecarShared builds the outbound side of a sidecar: a listener per service port number whose
// routes answer every name form of every service on that port, and, for
// an intercepting sidecar, the capture listener of outbound connections
// and the cluster that passes connections through. For an intercepting
// sidecar it depends on the sidecar's namespace only (the bare service
// names in its routes), so every intercepting sidecar of a namespace can
// share it; a sidecar that binds its listeners to its pod's address has
// its own.
func SidecarShared(m *model.Mesh, p *model.Proxy) (*Resources, error) {
	return sidecarShared(m, p, inboundPorts)
}

// inboundLookup is where a translation finds the ports a pod serves on: a
// scan of the mesh for one proxy, or a Translator's index for many.
type inboundLookup func(m *model.Mesh, p *model.Proxy) map[uint32]*inboundPort

func sidecarShared(m *model.Mesh, p *model.Proxy, inboundPorts inboundLookup) (*Resources, error) {
	if p.Role != model.RoleSidecar {
		return nil, fmt.Errorf("proxy %s: role %q is not a sidecar", p.ID, p.Role)
	}
	r := &Resources{}
	ip := p.IP
	if ip == "" || p.Intercept {
		ip = "0.0.0.0"
	}
	// A sidecar that binds cannot also proxy outbound traffic to a port
	// its own app serves on.
	var inbound map[uint32]*inboundPort
	if !p.Intercept {
		inbound = inboundPorts(m, p)
	}
	byPort := map[uint32][]servicePort{}
	for i := range m.Services {
		svc := &m.Services[i]
		for j := range svc.Ports {
			port := &svc.Ports[j]
			byPort[port.Port] = append(byPort[port.Port], servicePort{svc, port})
		}
	}

	for _, portNumber := range slices.Sorted(maps.Keys(byPort)) {
		if _, taken := inbound[portNumber]; taken {
			r.Warnings = append(r.Warnings, fmt.Sprintf("outbound port %d: the pod itself serves on %s:%d; outbound traffic to that port is not proxied", portNumber, ip, portNumber))
			continue
		}
		var httpPorts, tcpPorts []servicePort
		for _, sp := range byPort[portNumber] {
			if sp.port.Protocol.IsHTTP() {
				httpPorts = append(httpPorts, sp)
			} else {
				tcpPorts = append(tcpPorts, sp)
			}
		}
		name := outboundListenerName(portNumber)
		switch {
		case len(httpPorts) > 0:
			routeName := outboundRouteName(portNumber, p.Namespace)
			r.Listeners = append(r.Listeners, outboundListener(p, name, ip, portNumber, hcmFilter(name, routeName, nil)))
			r.Routes = append(r.Routes, outboundRoutes(routeName, httpPorts, p.Namespace, r))
			for _, sp := range tcpPorts {
				r.Warnings = append(r.Warnings, fmt.Sprintf("service %s port %d: TCP shares the port with HTTP services; it is not proxied", sp.svc.Key(), portNumber))
			}
		case len(tcpPorts) == 1:
			sp := tcpPorts[0]
			r.Listeners = append(r.Listeners, outboundListener(p, name, ip, portNumber, tcpProxyFilter(name, OutboundClusterName(sp.svc, portNumber), sp.svc.LoadBalancer == model.HashingLoadBalancer)))
		default:
			for _, sp := range tcpPorts {
				r.Warnings = append(r.Warnings, fmt.Sprintf("service %s port %d: several TCP services share the port and TCP has no name to tell them apart; it is not proxied", sp.svc.Key(), portNumber))
			}
		}
	}
	if p.Intercept {
		virtualOutbound := listener(VirtualOutboundName, "0.0.0.0", model.OutboundCapturePort, tcpProxyFilter(VirtualOutboundName, PassthroughClusterName, false))
		virtualOutbound.UseOriginalDst = wrapperspb.Bool(true)
		r.Listeners = append(r.Listeners, virtualOutbound)
		r.Clusters = append(r.Clusters, passthroughCluster())
	}
	r.sort()
	return r, nil
}

// inboundPort is a port the pod's app serves on: its protocol (HTTP/2
// over HTTP over TCP when services disagree) and the services that reach
// it.
type inboundPort struct {
	proto    model.Protocol
	services []*model.Service
}

// inboundPorts are the ports the local cluster's endpoints have at the
// pod's address.
func inboundPorts(m *model.Mesh, p *model.Proxy) map[uint32]*inboundPort {
	if p.IP == "" {
		return nil
	}
	return inboundByAddress(m, p.IP)[p.IP]
}

// inboundByAddress is, by pod address, the ports the local cluster's
// endpoints have there: at ip only, or at every address when ip is "" (a
// Translator's index, built once for every proxy of a mesh). What it
// returns is read, never changed.
func inboundByAddress(m *model.Mesh, ip string) map[string]map[uint32]*inboundPort {
	byIP := map[string]map[uint32]*inboundPort{}
	for i := range m.Services {
		svc := &m.Services[i]
		for j := range svc.Ports {
			port := &svc.Ports[j]
			for _, e := range port.Endpoints {
				if e.Cluster != m.LocalCluster || e.Gateway || (ip != "" && e.Address != ip) {
					continue
				}
				inbound := byIP[e.Address]
				if inbound == nil {
					inbound = map[uint32]*inboundPort{}
					byIP[e.Address] = inbound
				}
				in := inbound[e.Port]
				if in == nil {
					in = &inboundPort{proto: port.Protocol}
					inbound[e.Port] = in
				} else if port.Protocol.IsHTTP2() || in.proto == model.ProtocolTCP {
					in.proto = port.Protocol
				}
				if !slices.Contains(in.services, svc) {
					in.services = append(in.services, svc)
				}
			}
		}
	}
	return byIP
}

// SidecarOwn builds the inbound side of a sidecar, its own: a listener
// (or, intercepting, filter chains of the inbound capture listener) per
// port of the pod's own app, and the cluster that reaches the app there.
//
// A sidecar with a workload certificate takes mesh mTLS on each port
// (clients offering MTLSALPN), tells the app the caller's identity
// (x-forwarded-client-cert), and, PERMISSIVE, plaintext too; STRICT, a
// plaintext connection is closed, on every port: an intercepting
// sidecar closes what reaches a port its app serves no Service on, where
// PERMISSIVE passes it through. A port whose services are all exported
// to named ServiceAccounts lets only those call: others get 403 (TCP: the
// connection is closed).
func SidecarOwn(m *model.Mesh, p *model.Proxy) (*Resources, error) {
	return sidecarOwn(m, p, inboundPorts)
}

func sidecarOwn(m *model.Mesh, p *model.Proxy, inboundPorts inboundLookup) (*Resources, error) {
	if p.Role != model.RoleSidecar {
		return nil, fmt.Errorf("proxy %s: role %q is not a sidecar", p.ID, p.Role)
	}
	r := &Resources{}
	ip := p.IP
	if ip == "" {
		ip = "0.0.0.0"
	}
	inbound := inboundPorts(m, p)
	appIP := p.AppIP
	if appIP == "" {
		appIP = "127.0.0.1"
	}
	mode := m.MTLSMode(p.Namespace, p.Pod)
	if mode == model.MTLSStrict && p.IdentityDir == "" && len(inbound) > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("proxy %s: mTLS mode STRICT, but the sidecar has no workload certificate: it takes plaintext", p.ID))
	}
	var virtualInbound *listenerv3.Listener
	if p.Intercept {
		// Its filter chains (one per app port) come below; what matches none
		// passes through.
		virtualInbound = &listenerv3.Listener{
			Name:               VirtualInboundName,
			Address:            socketAddress("0.0.0.0", model.InboundCapturePort),
			ListenerFilters:    []*listenerv3.ListenerFilter{originalDstFilter()},
			DefaultFilterChain: &listenerv3.FilterChain{Filters: []*listenerv3.Filter{tcpProxyFilter(VirtualInboundName, PassthroughClusterName, false)}},
		}
		if p.IdentityDir != "" {
			virtualInbound.ListenerFilters = append(virtualInbound.ListenerFilters, tlsInspector())
			// A protocol whose server speaks first sends the inspector
			// nothing: it goes on after the timeout instead of closing.
			virtualInbound.ContinueOnListenerFiltersTimeout = true
			if mode == model.MTLSStrict {
				// STRICT closes every port to plaintext, those no
				// Service names (and, before discovery knows the pod's
				// address, every port) included: what matches no app
				// port's chain is closed, not passed through.
				virtualInbound.DefaultFilterChain = &listenerv3.FilterChain{Name: VirtualInboundName + "_strict", Filters: []*listenerv3.Filter{
					networkRBAC(VirtualInboundName+"_strict", callers{}), tcpProxyFilter(VirtualInboundName, PassthroughClusterName, false),
				}}
			}
		}
		r.Listeners = append(r.Listeners, virtualInbound)
	}
	for _, portNumber := range slices.Sorted(maps.Keys(inbound)) {
		in := inbound[portNumber]
		name := inboundListenerName(portNumber)
		cluster := InboundClusterName(portNumber)
		chains := inboundChains(m, p, mode, name, cluster, in)
		if p.Intercept {
			// The inbound capture port serves the app's ports by the
			// connection's original destination port; the default chain
			// passes anything else through.
			for _, chain := range chains {
				if chain.FilterChainMatch == nil {
					chain.FilterChainMatch = &listenerv3.FilterChainMatch{}
				}
				chain.FilterChainMatch.DestinationPort = wrapperspb.UInt32(portNumber)
			}
			virtualInbound.FilterChains = append(virtualInbound.FilterChains, chains...)
		} else {
			l := &listenerv3.Listener{Name: name, Address: socketAddress(ip, portNumber), FilterChains: chains}
			if p.IdentityDir != "" {
				l.ListenerFilters = []*listenerv3.ListenerFilter{tlsInspector()}
				l.ContinueOnListenerFiltersTimeout = true
			}
			r.Listeners = append(r.Listeners, l)
		}
		r.Clusters = append(r.Clusters, staticCluster(cluster, appIP, portNumber, in.proto.IsHTTP2()))
	}
	r.sort()
	return r, nil
}

// inboundChains are the filter chains of one app port: the mesh mTLS one
// (with a certificate) and the plaintext one, which STRICT closes.
func inboundChains(m *model.Mesh, p *model.Proxy, mode model.MTLSMode, name, cluster string, in *inboundPort) []*listenerv3.FilterChain {
	allowed := inboundCallers(m, in.services)
	filters := func(mtls bool) []*listenerv3.Filter {
		if !in.proto.IsHTTP() {
			fs := []*listenerv3.Filter{}
			if allowed != nil {
				fs = append(fs, networkRBAC(name, allowed))
			}
			return append(fs, tcpProxyFilter(name, cluster, false))
		}
		routes := &routev3.RouteConfiguration{
			Name: name,
			// The inbound cluster comes over CDS; a listener that
			// arrives first must not be refused for it.
			ValidateClusters: wrapperspb.Bool(false),
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    name,
				Domains: []string{"*"},
				Routes:  []*routev3.Route{prefixRoute(routeAction(cluster, &model.Port{Protocol: in.proto}, routing{}))},
			}},
		}
		return []*listenerv3.Filter{inboundHCM(name, routes, allowed, mtls)}
	}
	if p.IdentityDir == "" {
		plaintext := &listenerv3.FilterChain{Filters: filters(false)}
		if p.Intercept {
			plaintext.Name = name
		}
		return []*listenerv3.FilterChain{plaintext}
	}
	plaintext := &listenerv3.FilterChain{Name: name}
	if mode == model.MTLSStrict {
		// Plaintext (and TLS that is not the mesh's) is closed.
		// (RBAC needs a terminal filter after it; nothing reaches it.)
		plaintext.Filters = []*listenerv3.Filter{networkRBAC(name+"_strict", callers{}), tcpProxyFilter(name, cluster, false)}
	} else {
		plaintext.Filters = filters(false)
	}
	alpn := []string{MTLSALPN}
	if in.proto.IsHTTP() {
		// Proxyless gRPC clients offer h2 only. An HTTP port's app
		// cannot speak TLS of its own behind the sidecar anyway.
		alpn = append(alpn, "h2")
	}
	mtls := &listenerv3.FilterChain{
		Name:             name + "|mtls",
		FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "tls", ApplicationProtocols: alpn},
		TransportSocket:  downstreamMTLS(p.IdentityDir, m.TrustDomain),
		Filters:          filters(true),
	}
	return []*listenerv3.FilterChain{mtls, plaintext}
}

// outboundRoutes is the route configuration of one outbound port: a virtual
// host per service, answering every name form of it. Envoy rejects a whole
// RouteConfiguration with a duplicate domain, so a name already taken is
// left out with a warning.
func outboundRoutes(name string, ports []servicePort, namespace string, r *Resources) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: name, VirtualHosts: make([]*routev3.VirtualHost, 0, len(ports))}
	taken := map[string]string{}
	for _, sp := range ports {
		hash := hashingFor(sp.svc.LoadBalancer, byClient)
		vh := &routev3.VirtualHost{
			Name: ProxylessName(sp.svc, sp.port.Port),
			Routes: []*routev3.Route{prefixRoute(routeAction(
				OutboundClusterName(sp.svc, sp.port.Port), sp.port, routing{autoHost: true, retry: retriesFor(sp.svc), hash: hash}))},
		}
		if hash != noHash {
			// The key this sidecar hashed on goes on with the request,
			// so a remote gateway that hashes keeps the client on one pod.
			vh.RequestHeadersToAdd = []*corev3.HeaderValueOption{{
				Header:       &corev3.HeaderValue{Key: model.HashKeyHeader, Value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"},
				AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT,
			}}
		}
		for _, d := range hostnames(sp.svc, sp.port.Port, namespace, true) {
			if other, dup := taken[d]; dup {
				r.Warnings = append(r.Warnings, fmt.Sprintf("route %s: %s names both %s and %s; kept for %s", name, d, other, vh.Name, other))
				continue
			}
			taken[d] = vh.Name
			vh.Domains = append(vh.Domains, d)
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	slices.SortFunc(rc.VirtualHosts, func(a, b *routev3.VirtualHost) int { return cmp.Compare(a.Name, b.Name) })
	return rc
}

// Names of an intercepting sidecar's capture listeners and of the cluster
// that passes connections to their original destination.
const (
	VirtualOutboundName    = "virtualOutbound"
	VirtualInboundName     = "virtualInbound"
	PassthroughClusterName = "PassthroughCluster"
)

// outboundListener is bound to the pod's address, or, for an intercepting
// sidecar, not bound at all: the outbound capture port hands it the
// connections whose original destination port is its own.
func outboundListener(p *model.Proxy, name, ip string, port uint32, filter *listenerv3.Filter) *listenerv3.Listener {
	if !p.Intercept {
		return listener(name, ip, port, filter)
	}
	l := listener(name, "0.0.0.0", port, filter)
	l.BindToPort = wrapperspb.Bool(false)
	return l
}

func originalDstFilter() *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{
		Name:       "envoy.filters.listener.original_dst",
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&origdstv3.OriginalDst{})},
	}
}
