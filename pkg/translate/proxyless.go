package translate

import (
	"fmt"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// Proxyless builds a proxyless gRPC client's resources: for every service
// port, a Listener named as the client dials it
// (xds:///<svc>.<ns>.svc.cluster.local:<port>) with an ApiListener taking
// its routes over RDS, those routes, and the same outbound clusters and
// endpoint assignments sidecars get (a client with a workload certificate:
// with mTLS where every endpoint takes it, see MeshMTLSCluster).
func Proxyless(m *model.Mesh, p *model.Proxy) (*Resources, error) {
	if p.Role != model.RoleGRPC {
		return nil, fmt.Errorf("proxy %s: role %q is not a proxyless gRPC client", p.ID, p.Role)
	}
	r := Outbound(m)
	withMeshMTLS(m, p, r)
	r.merge(ProxylessListeners(m))
	r.sort()
	return r, nil
}

// ProxylessListeners builds the listeners and routes of proxyless clients,
// which are the same for every client of the local cluster.
func ProxylessListeners(m *model.Mesh) *Resources {
	r := &Resources{}
	for i := range m.Services {
		r.merge(ProxylessService(&m.Services[i]))
	}
	r.sort()
	return r
}

// ProxylessService builds one service's proxyless listeners and routes, one
// per HTTP port.
func ProxylessService(svc *model.Service) *Resources {
	r := &Resources{}
	for j := range svc.Ports {
		port := &svc.Ports[j]
		if !port.Protocol.IsHTTP() {
			continue
		}
		name := ProxylessName(svc, port.Port)
		hcm := &hcmv3.HttpConnectionManager{
			HttpFilters: []*hcmv3.HttpFilter{routerFilter()},
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
				ConfigSource: ads(), RouteConfigName: name,
			}},
		}
		r.Listeners = append(r.Listeners, &listenerv3.Listener{
			Name:        name,
			ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(hcm)},
		})
		r.Routes = append(r.Routes, &routev3.RouteConfiguration{
			Name: name,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    name,
				Domains: []string{name},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: ""}},
					Action: routeAction(OutboundClusterName(svc, port.Port), port, routing{retry: retriesFor(svc), hash: hashingFor(svc.LoadBalancer, byChannel)}),
				}},
			}},
		})
	}
	return r
}
