package translate

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// Resources are the Envoy resources for one proxy, each list sorted by name.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	// Warnings are what translation left out and why.
	Warnings []string
}

// Translate builds the resources for the proxy, by its role.
func Translate(m *model.Mesh, p *model.Proxy) (*Resources, error) {
	switch p.Role {
	case model.RoleSidecar:
		return Sidecar(m, p)
	case model.RoleGateway:
		return Gateway(m, p)
	case model.RoleGRPC:
		return Proxyless(m, p)
	}
	return nil, fmt.Errorf("proxy %s: unknown role %q (want sidecar, gateway or grpc)", p.ID, p.Role)
}

// Validate runs Envoy's own proto validation on every resource.
func (r *Resources) Validate() error {
	var errs []error
	for _, l := range r.Listeners {
		if err := l.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("listener %s: %w", l.GetName(), err))
		}
	}
	for _, rc := range r.Routes {
		if err := rc.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("route configuration %s: %w", rc.GetName(), err))
		}
	}
	for _, c := range r.Clusters {
		if err := c.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", c.GetName(), err))
		}
	}
	for _, e := range r.Endpoints {
		if err := e.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("cluster load assignment %s: %w", e.GetClusterName(), err))
		}
	}
	return errors.Join(errs...)
}

func (r *Resources) sort() {
	slices.SortFunc(r.Listeners, func(a, b *listenerv3.Listener) int { return cmp.Compare(a.GetName(), b.GetName()) })
	slices.SortFunc(r.Routes, func(a, b *routev3.RouteConfiguration) int { return cmp.Compare(a.GetName(), b.GetName()) })
	slices.SortFunc(r.Clusters, func(a, b *clusterv3.Cluster) int { return cmp.Compare(a.GetName(), b.GetName()) })
	slices.SortFunc(r.Endpoints, func(a, b *endpointv3.ClusterLoadAssignment) int {
		return cmp.Compare(a.GetClusterName(), b.GetClusterName())
	})
}

// Outbound builds the clusters and endpoint assignments through which the
// local cluster's consumers (sidecars and proxyless clients alike) reach
// every service port, each under the service's policy.
func Outbound(m *model.Mesh) *Resources {
	t := NewTranslator(m)
	r := &Resources{
		Clusters:  make([]*clusterv3.Cluster, 0, len(m.Services)),
		Endpoints: make([]*endpointv3.ClusterLoadAssignment, 0, len(m.Services)),
	}
	for i := range m.Services {
		r.merge(t.OutboundService(&m.Services[i]))
	}
	r.sort()
	return r
}

// Translator translates one mesh service by service, so that a caller who
// knows which services changed (the xDS server) translates only those.
type Translator struct {
	ix *index
	// inbound is, by pod address, the ports the local cluster's endpoints
	// have there: found once for every proxy of the mesh, not by a scan
	// of every endpoint for each.
	inbound map[string]map[uint32]*inboundPort
}

// NewTranslator prepares the lookups of one mesh.
func NewTranslator(m *model.Mesh) *Translator {
	return &Translator{ix: newIndex(m), inbound: inboundByAddress(m, "")}
}

func (t *Translator) inboundPorts(_ *model.Mesh, p *model.Proxy) map[uint32]*inboundPort {
	if p.IP == "" {
		return nil
	}
	return t.inbound[p.IP]
}

// SidecarShared is SidecarShared of the Translator's mesh.
func (t *Translator) SidecarShared(p *model.Proxy) (*Resources, error) {
	return sidecarShared(t.ix.mesh, p, t.inboundPorts)
}

// SidecarOwn is SidecarOwn of the Translator's mesh.
func (t *Translator) SidecarOwn(p *model.Proxy) (*Resources, error) {
	return sidecarOwn(t.ix.mesh, p, t.inboundPorts)
}

// ProxylessServer is ProxylessServer of the Translator's mesh.
func (t *Translator) ProxylessServer(p *model.Proxy) (*Resources, error) {
	return proxylessServer(t.ix.mesh, p, t.inboundPorts)
}

// OutboundService builds the outbound clusters and endpoint assignments of
// one service, one per port.
func (t *Translator) OutboundService(svc *model.Service) *Resources {
	r := &Resources{
		Clusters:  make([]*clusterv3.Cluster, 0, len(svc.Ports)),
		Endpoints: make([]*endpointv3.ClusterLoadAssignment, 0, len(svc.Ports)),
	}
	for j := range svc.Ports {
		port := &svc.Ports[j]
		name := OutboundClusterName(svc, port.Port)
		pl := t.ix.place(svc, port)
		r.Clusters = append(r.Clusters, edsCluster(name, clusterOptions{http2: port.Protocol.IsHTTP2(), lb: svc.LoadBalancer, outlier: true}))
		r.Endpoints = append(r.Endpoints, assignment(name, pl, ProxylessName(svc, port.Port)))
	}
	return r
}
