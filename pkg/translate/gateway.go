package translate

import (
	"cmp"
	"fmt"
	"slices"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// DefaultGatewayPort is the gateway port of a cluster that sets none.
const DefaultGatewayPort = 80

// Gateway builds a gateway's resources: one listener on the cluster's
// gateway port with east-west virtual hosts (by authority, for every
// exported service port, reached from sidecars and gRPC clients in other
// clusters) and a north-south virtual host (the export rules' paths). Both
// lead to this cluster's own endpoints only, so a request that crossed
// once never crosses again.
func Gateway(m *model.Mesh, p *model.Proxy) (*Resources, error) {
	if p.Role != model.RoleGateway {
		return nil, fmt.Errorf("proxy %s: role %q is not a gateway", p.ID, p.Role)
	}
	ix := newIndex(m)
	if ix.local == nil {
		return nil, fmt.Errorf("proxy %s: local cluster %q is not in the mesh", p.ID, m.LocalCluster)
	}
	listenPort := uint32(DefaultGatewayPort)
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
	r := &Resources{}
	rc := &routev3.RouteConfiguration{Name: name}

	type nsRoute struct {
		route *routev3.Route
		exact bool
	}
	var northSouth []nsRoute
	for i := range m.Services {
		svc := &m.Services[i]
		if svc.Export == nil {
			continue
		}
		var httpPorts int
		for _, port := range svc.Ports {
			if port.Protocol.IsHTTP() {
				httpPorts++
			}
		}
		for j := range svc.Ports {
			port := &svc.Ports[j]
			if !port.Protocol.IsHTTP() {
				r.Warnings = append(r.Warnings, fmt.Sprintf("service %s port %d: TCP is not served by the gateway; it crosses clusters only on a shared network", svc.Key(), port.Port))
				continue
			}
			cluster := LocalClusterName(svc, port.Port)
			r.Clusters = append(r.Clusters, edsCluster(cluster, clusterOptions{http2: port.Protocol.IsHTTP2(), lb: svc.Export.LoadBalancer, outlier: true}))
			r.Endpoints = append(r.Endpoints, assignment(cluster, ix.localOnly(svc, port), ""))
			vh := &routev3.VirtualHost{
				Name:   ProxylessName(svc, port.Port),
				Routes: []*routev3.Route{prefixRoute(routeAction(cluster, port, routing{retry: otherEndpoint, hash: hashingFor(svc.Export.LoadBalancer, byClient)}))},
			}
			// Without a port, a name is the service's only when it has one
			// HTTP port.
			vh.Domains = hostnames(svc, port.Port, "", httpPorts == 1)
			rc.VirtualHosts = append(rc.VirtualHosts, vh)
		}
		for _, rule := range svc.Export.Rules {
			port := svc.Port(rule.Port)
			if port == nil || !port.Protocol.IsHTTP() {
				continue
			}
			route := exportRoute(rule, svc.Export, LocalClusterName(svc, rule.Port), port)
			// One route Envoy would refuse would take the whole shared
			// route configuration with it: leave it out instead.
			if err := route.ValidateAll(); err != nil {
				r.Warnings = append(r.Warnings, fmt.Sprintf("service %s: the route for path %q is left out of the gateway: %v", svc.Key(), rule.Path, err))
				continue
			}
			northSouth = append(northSouth, nsRoute{route: route, exact: rule.PathType == model.PathExact})
		}
	}
	slices.SortFunc(rc.VirtualHosts, func(a, b *routev3.VirtualHost) int { return cmp.Compare(a.Name, b.Name) })
	if len(northSouth) > 0 {
		// Exact paths first, then longer prefixes before shorter ones.
		slices.SortFunc(northSouth, func(a, b nsRoute) int {
			if a.exact != b.exact {
				if a.exact {
					return -1
				}
				return 1
			}
			return cmp.Or(-cmp.Compare(len(a.route.Name), len(b.route.Name)), cmp.Compare(a.route.Name, b.route.Name))
		})
		vh := &routev3.VirtualHost{Name: "north-south", Domains: []string{"*"}}
		for _, ns := range northSouth {
			vh.Routes = append(vh.Routes, ns.route)
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	r.Routes = append(r.Routes, rc)
	r.Listeners = append(r.Listeners, listener(name, ip, listenPort, hcmFilter(name, name, nil)))
	r.sort()
	return r, nil
}
