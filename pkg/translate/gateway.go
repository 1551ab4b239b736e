package translate

import (
	"cmp"
	"fmt"
	"slices"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// Gateway builds a gateway's resources: one listener on the cluster's
// gateway port with east-west virtual hosts (by authority, for every
// exported service port, reached from sidecars and gRPC clients in other
// clusters) and a north-south virtual host (the export rules' paths). Both
// lead to this cluster's own endpoints only, so a request that crossed
// once never crosses again.
//
// Mesh mTLS from other clusters comes in by SNI (see SNI), one filter
// chain per exported HTTP port:
//   - when every ready pod of the port takes mesh mTLS, the connection is
//     passed through to them, still encrypted: the pod's sidecar sees the
//     caller's own identity and decides (as Istio's AUTO_PASSTHROUGH);
//   - otherwise a gateway with a certificate ends the TLS, lets in only the
//     export's callers and sends the request on; one without refuses.
//
// Plaintext east-west is served only for exports open to anyone ("*")
// of PERMISSIVE namespaces: a plaintext caller has no identity to check
// against an export's callers. The north-south routes stay plain HTTP at
// the edge, for the same reason only of exports open to anyone
// (discovery leaves a restricted export's paths out); a gateway with a
// certificate reaches pods that take mesh mTLS over it.
func Gateway(m *model.Mesh, p *model.Proxy) (*Resources, error) {
	if p.Role != model.RoleGateway {
		return nil, fmt.Errorf("proxy %s: role %q is not a gateway", p.ID, p.Role)
	}
	ix := newIndex(m)
	if ix.local == nil {
		return nil, fmt.Errorf("proxy %s: local cluster %q is not in the mesh", p.ID, m.LocalCluster)
	}
	listenPort := uint32(fmv1alpha1.DefaultGatewayPort)
	switch {
	case p.ListenPort != 0:
		listenPort = p.ListenPort
	case ix.local.Gateway != nil:
		listenPort = ix.local.Gateway.Port
	}
	ip := p.IP
	if ip == "" {
		ip = "0.0.0.0"
	}
	name := gatewayName(listenPort)
	g := &gatewayBuild{m: m, p: p, ix: ix, r: &Resources{}, rc: &routev3.RouteConfiguration{Name: name}}
	for i := range m.Services {
		if svc := &m.Services[i]; svc.Export != nil {
			g.eastWest(svc)
			g.exportRules(svc)
		}
	}
	slices.SortFunc(g.rc.VirtualHosts, func(a, b *routev3.VirtualHost) int { return cmp.Compare(a.Name, b.Name) })
	if vh := northSouthHost(g.northSouth); vh != nil {
		g.rc.VirtualHosts = append(g.rc.VirtualHosts, vh)
	}
	r := g.r
	r.Routes = append(r.Routes, g.rc)
	l := listener(name, ip, listenPort, hcmFilter(name, name, nil))
	if len(g.meshChains) > 0 {
		// TLS that names no exported port matches no chain: closed.
		l.ListenerFilters = []*listenerv3.ListenerFilter{tlsInspector()}
		l.FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"}
		slices.SortFunc(g.meshChains, func(a, b *listenerv3.FilterChain) int { return cmp.Compare(a.Name, b.Name) })
		l.FilterChains = append(l.FilterChains, g.meshChains...)
	}
	r.Listeners = append(r.Listeners, l)
	r.sort()
	return r, nil
}

// gatewayBuild is a gateway's configuration as it is built, one export
// after another.
type gatewayBuild struct {
	m  *model.Mesh
	p  *model.Proxy
	ix *index
	r  *Resources
	// rc is the plaintext listener's routes; meshChains the listener's
	// mTLS chains, one per exported port; northSouth the export rules'
	// routes.
	rc         *routev3.RouteConfiguration
	meshChains []*listenerv3.FilterChain
	northSouth []nsRoute
}

// nsRoute is an export rule's route; exact says its path is matched
// exactly.
type nsRoute struct {
	route *routev3.Route
	exact bool
}

// eastWest serves an export's HTTP ports to the other clusters: a local
// cluster of the port's endpoints here, a plaintext virtual host where
// plaintext callers may come, and the mTLS chain.
func (g *gatewayBuild) eastWest(svc *model.Service) {
	var httpPorts int
	for _, port := range svc.Ports {
		if port.Protocol.IsHTTP() {
			httpPorts++
		}
	}
	for j := range svc.Ports {
		port := &svc.Ports[j]
		if !port.Protocol.IsHTTP() {
			g.r.Warnings = append(g.r.Warnings, fmt.Sprintf("service %s port %d: TCP is not served by the gateway; it crosses clusters only on a shared network", svc.Key(), port.Port))
			continue
		}
		cluster := LocalClusterName(svc, port.Port)
		c := edsCluster(cluster, clusterOptions{http2: port.Protocol.IsHTTP2(), lb: svc.Export.LoadBalancer, outlier: true})
		if g.p.IdentityDir != "" {
			c = WithMTLS(c, g.p.IdentityDir, g.m.TrustDomain, SNI(svc, port.Port))
		}
		g.r.Clusters = append(g.r.Clusters, c)
		local := g.ix.localOnly(svc, port)
		g.r.Endpoints = append(g.r.Endpoints, assignment(cluster, local, ""))
		vh := &routev3.VirtualHost{
			Name:   ProxylessName(svc, port.Port),
			Routes: []*routev3.Route{prefixRoute(routeAction(cluster, port, routing{retry: otherEndpoint, hash: hashingFor(svc.Export.LoadBalancer, byClient)}))},
		}
		// Without a port, a name is the service's only when it has one
		// HTTP port.
		vh.Domains = hostnames(svc, port.Port, "", httpPorts == 1)
		// Plaintext callers have no identity: they get exports open
		// to anyone, of PERMISSIVE namespaces, and nothing else.
		if g.m.MTLSMode(svc.Namespace, "") == model.MTLSPermissive && !svc.Export.Restricted() {
			g.rc.VirtualHosts = append(g.rc.VirtualHosts, vh)
		}
		chain, warning := gatewayMeshChain(g.m, g.p, svc, port, local, vh, g.r)
		if chain != nil {
			g.meshChains = append(g.meshChains, chain)
		}
		if warning != "" {
			g.r.Warnings = append(g.r.Warnings, warning)
		}
	}
}

// exportRules are an export's north-south routes, one per rule of an
// HTTP port; one Envoy would refuse is left out with a warning.
func (g *gatewayBuild) exportRules(svc *model.Service) {
	for _, rule := range svc.Export.Rules {
		port := svc.Port(rule.Port)
		if port == nil || !port.Protocol.IsHTTP() {
			continue
		}
		route := exportRoute(rule, svc.Export, LocalClusterName(svc, rule.Port), port)
		// One route Envoy would refuse would take the whole shared
		// route configuration with it: leave it out instead.
		if err := route.ValidateAll(); err != nil {
			g.r.Warnings = append(g.r.Warnings, fmt.Sprintf("service %s: the route for path %q is left out of the gateway: %v", svc.Key(), rule.Path, err))
			continue
		}
		g.northSouth = append(g.northSouth, nsRoute{route: route, exact: rule.PathType == model.PathExact})
	}
}

// northSouthHost is the virtual host of the export rules' routes, for
// any host: exact paths first, then longer prefixes before shorter ones;
// nil without routes.
func northSouthHost(routes []nsRoute) *routev3.VirtualHost {
	if len(routes) == 0 {
		return nil
	}
	slices.SortFunc(routes, func(a, b nsRoute) int {
		if a.exact != b.exact {
			if a.exact {
				return -1
			}
			return 1
		}
		return cmp.Or(-cmp.Compare(len(a.route.Name), len(b.route.Name)), cmp.Compare(a.route.Name, b.route.Name))
	})
	vh := &routev3.VirtualHost{Name: "north-south", Domains: []string{"*"}}
	for _, ns := range routes {
		vh.Routes = append(vh.Routes, ns.route)
	}
	return vh
}

// gatewayMeshChain is the filter chain of an exported port's mesh mTLS,
// by its SNI: passed through to pods that all take it, else ended here
// (with a certificate) and routed as vh. Resources it needs go into r.
func gatewayMeshChain(m *model.Mesh, p *model.Proxy, svc *model.Service, port *model.Port, local Placement, vh *routev3.VirtualHost, r *Resources) (*listenerv3.FilterChain, string) {
	sni := SNI(svc, port.Port)
	eps, meshed := localMTLS(m, port)
	match := &listenerv3.FilterChainMatch{TransportProtocol: "tls", ServerNames: []string{sni}}
	if eps > 0 && !endsMTLS(eps, meshed) {
		cluster := PassthroughClusterNameFor(svc, port.Port)
		r.Clusters = append(r.Clusters, edsCluster(cluster, clusterOptions{lb: svc.Export.LoadBalancer}))
		r.Endpoints = append(r.Endpoints, assignment(cluster, local, ""))
		return &listenerv3.FilterChain{Name: sni, FilterChainMatch: match, Filters: []*listenerv3.Filter{
			tcpProxyFilter(sni, cluster, svc.Export.LoadBalancer == model.HashingLoadBalancer),
		}}, ""
	}
	if p.IdentityDir == "" {
		if meshed == 0 {
			return nil, "" // the mesh's mTLS is not in use here
		}
		return nil, fmt.Sprintf("service %s port %d: %d of its %d pods take no mesh mTLS and the gateway has no certificate to end it with: mesh mTLS from other clusters is refused", svc.Key(), port.Port, eps-meshed, eps)
	}
	routes := &routev3.RouteConfiguration{Name: sni, VirtualHosts: []*routev3.VirtualHost{{Name: vh.Name, Domains: []string{"*"}, Routes: vh.Routes}}}
	return &listenerv3.FilterChain{
		Name: sni, FilterChainMatch: match,
		TransportSocket: downstreamMTLS(p.IdentityDir, m.TrustDomain),
		Filters:         []*listenerv3.Filter{inboundHCM(sni, routes, exportCallers(m, []*model.Service{svc}), true)},
	}, ""
}
