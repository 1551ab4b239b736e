package translate

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// Proxyless builds a proxyless gRPC client's resources: for every service
// port, a Listener named as the client dials it
// (xds:///<svc>.<ns>.svc.cluster.local:<port>, and for a service of the
// clusterset also <svc>.<ns>.svc.clusterset.local) with an ApiListener taking
// its routes over RDS, those routes, and the same outbound clusters and
// endpoint assignments sidecars get (a client with a workload certificate:
// with mTLS where every endpoint takes it, see MeshMTLSCluster); and, for
// one with a certificate that serves, its server listeners
// (ProxylessServer).
func Proxyless(m *model.Mesh, p *model.Proxy) (*Resources, error) {
	if p.Role != model.RoleGRPC {
		return nil, fmt.Errorf("proxy %s: role %q is not a proxyless gRPC client", p.ID, p.Role)
	}
	r := Outbound(m)
	withMeshMTLS(m, p, r)
	r.merge(ProxylessListeners(m))
	server, err := ProxylessServer(m, p)
	if err != nil {
		return nil, err
	}
	r.merge(server)
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
		names := []string{ProxylessName(svc, port.Port)}
		if svc.InClusterset() {
			// The MCS name means the same: the same cluster, by the
			// local policy.
			names = append(names, ProxylessClustersetName(svc, port.Port))
		}
		for _, name := range names {
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
	}
	return r
}

// ProxylessServerListenerName is the listener a proxyless gRPC server asks
// for when it serves on ip:port (grpc-go's default
// server_listener_resource_name_template).
func ProxylessServerListenerName(ip string, port uint32) string {
	return "grpc/server?xds.resource.listening_address=" + net.JoinHostPort(ip, strconv.FormatUint(uint64(port), 10))
}

// ProxylessServer builds what a proxyless gRPC server with a workload
// certificate serves with (grpc-go's xDS server): a listener per port its
// pod serves on, taking mesh mTLS only, its certificate and roots from the
// bootstrap's ProxylessCertificateProvider, and the export's callers as
// RBAC. grpc-go cannot tell TLS from plaintext on a port (it drops filter
// chains that match on the transport protocol), so such a server is STRICT
// whatever its mode: its pod takes mTLS (TakesMTLSAnnotation) and mesh
// clients speak it.
func ProxylessServer(m *model.Mesh, p *model.Proxy) (*Resources, error) {
	return proxylessServer(m, p, inboundPorts)
}

func proxylessServer(m *model.Mesh, p *model.Proxy, inboundPorts inboundLookup) (*Resources, error) {
	if p.Role != model.RoleGRPC {
		return nil, fmt.Errorf("proxy %s: role %q is not a proxyless gRPC server", p.ID, p.Role)
	}
	r := &Resources{}
	if p.IdentityDir == "" || p.IP == "" {
		return r, nil
	}
	inbound := inboundPorts(m, p)
	for _, portNumber := range slices.Sorted(maps.Keys(inbound)) {
		in := inbound[portNumber]
		name := ProxylessServerListenerName(p.IP, portNumber)
		routes := &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
			Name: name, Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
			}},
		}}}
		r.Listeners = append(r.Listeners, &listenerv3.Listener{
			Name:    name,
			Address: socketAddress(p.IP, portNumber),
			FilterChains: []*listenerv3.FilterChain{{
				Name: name,
				TransportSocket: tlsSocket(&tlsv3.DownstreamTlsContext{
					RequireClientCertificate: wrapperspb.Bool(true),
					CommonTlsContext: &tlsv3.CommonTlsContext{
						TlsCertificateProviderInstance: certificateProvider("default"),
						ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
							CaCertificateProviderInstance: certificateProvider("ROOTCA"),
						}},
					},
				}),
				Filters: []*listenerv3.Filter{inboundHCM(name, routes, inboundCallers(m, in.services), false)},
			}},
		})
	}
	return r, nil
}
