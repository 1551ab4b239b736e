package translate

import (
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// Mesh mTLS. A proxy with a workload certificate (model.Proxy.IdentityDir)
// reads it, and the roots it checks peers with, from the SDS files of its
// identity directory (pkg/bootstrap writes them; Envoy watches the
// directory, so a renewed certificate is used at once). Peers must be
// identities of the mesh's trust domain; which of them may call what is
// the RBAC of the serving side.
const (
	// MTLSALPN is the protocol a mesh client offers: a sidecar takes a
	// TLS connection as mesh mTLS only when it offers it, so an app's
	// own TLS on a PERMISSIVE port is passed on untouched.
	MTLSALPN = "fleetmesh-mtls"
	// transportSocketMatch is the endpoint metadata an outbound cluster
	// picks its mTLS transport socket by.
	transportSocketMatch = "envoy.transport_socket_match"
	mtlsMatchKey         = "fleetmesh.io/tls"
	mtlsMatchValue       = "mtls"
)

// SNI is the TLS server name a mesh client asks for when it calls a
// service port: a remote gateway passes the connection through, by this
// name, to the service's pods (their sidecars end the TLS).
func SNI(svc *model.Service, port uint32) string {
	return "outbound_." + strconv.FormatUint(uint64(port), 10) + "_._." + svc.FQDN()
}

// commonTLS is the proxy's certificate, and peers checked against the
// roots for an identity of the trust domain. (The roots file also names
// the xDS server's identity; the names a peer may have are the union.)
func commonTLS(dir, trustDomain string, alpn []string) *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		AlpnProtocols:                  alpn,
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{bootstrap.IdentitySDS(dir)},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
				SanType: tlsv3.SubjectAltNameMatcher_URI,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://" + trustDomain + "/"}},
			}}},
			ValidationContextSdsSecretConfig: bootstrap.RootsSDS(dir),
		}},
	}
}

func tlsSocket(tlsContext proto.Message) *corev3.TransportSocket {
	ts, err := bootstrap.TLSTransportSocket(tlsContext)
	if err != nil {
		// Only an unregistered type fails, which is a programming error.
		panic(err)
	}
	return ts
}

// upstreamMTLS is a mesh client's TLS to a service port, sni naming it.
// It offers MTLSALPN, and h2 too for an HTTP/2 port: a proxyless gRPC
// server takes only h2.
func upstreamMTLS(dir, trustDomain, sni string, http2 bool) *corev3.TransportSocket {
	alpn := []string{MTLSALPN}
	if http2 {
		alpn = append(alpn, "h2")
	}
	return tlsSocket(&tlsv3.UpstreamTlsContext{Sni: sni, CommonTlsContext: commonTLS(dir, trustDomain, alpn)})
}

// downstreamMTLS is a mesh server's TLS: a client certificate is required.
func downstreamMTLS(dir, trustDomain string) *corev3.TransportSocket {
	return tlsSocket(&tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext:         commonTLS(dir, trustDomain, nil),
	})
}

// mtlsMatch is what marks an endpoint that takes mesh mTLS, and what an
// outbound cluster's mTLS transport socket matches.
func mtlsMatch() *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{mtlsMatchKey: structpb.NewStringValue(mtlsMatchValue)}}
}

// mtlsEndpointMetadata marks an endpoint that takes mesh mTLS.
func mtlsEndpointMetadata() *corev3.Metadata {
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{transportSocketMatch: mtlsMatch()}}
}

// WithMTLS is a copy of an EDS cluster whose endpoints that take mesh mTLS
// (local pods with a certificate, remote gateways) are reached over it,
// with the proxy's certificate from dir, asking for sni; the others stay
// plaintext.
func WithMTLS(c *clusterv3.Cluster, dir, trustDomain, sni string) *clusterv3.Cluster {
	out := proto.Clone(c).(*clusterv3.Cluster)
	http2 := c.GetTypedExtensionProtocolOptions()[httpProtocolOptions] != nil
	out.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{{
		Name: mtlsMatchValue, Match: mtlsMatch(), TransportSocket: upstreamMTLS(dir, trustDomain, sni, http2),
	}}
	return out
}

// ProxylessCertificateProvider is the certificate provider instance a
// proxyless gRPC client with a workload certificate names in its
// bootstrap (a file_watcher over its identity volume): its clusters'
// mTLS takes the certificate and the roots from it.
const ProxylessCertificateProvider = "fleetmesh"

// certificateProvider is a certificate of the proxyless client's or
// server's ProxylessCertificateProvider: "default" (its own) or "ROOTCA".
func certificateProvider(name string) *tlsv3.CertificateProviderPluginInstance {
	return &tlsv3.CertificateProviderPluginInstance{InstanceName: ProxylessCertificateProvider, CertificateName: name}
}

// ProxylessTakesMTLS reports whether every endpoint of a port takes mesh
// mTLS (meshed pods, remote gateways): grpc-go takes one transport socket
// per cluster, not one per endpoint, so a proxyless client speaks mTLS to
// a port only then, and plaintext otherwise.
func ProxylessTakesMTLS(port *model.Port) bool {
	if len(port.Endpoints) == 0 {
		return false
	}
	for _, e := range port.Endpoints {
		if !e.MTLS && !e.Gateway {
			return false
		}
	}
	return true
}

// WithProxylessMTLS is a copy of an outbound cluster with mesh mTLS for a
// proxyless gRPC client: its certificate and roots from the bootstrap's
// ProxylessCertificateProvider, the server checked for an identity of the
// trust domain, sni asked for (grpc-go sends it with
// GRPC_EXPERIMENTAL_XDS_SNI=true; a remote gateway needs it).
func WithProxylessMTLS(c *clusterv3.Cluster, trustDomain, sni string) *clusterv3.Cluster {
	out := proto.Clone(c).(*clusterv3.Cluster)
	out.TransportSocket = tlsSocket(&tlsv3.UpstreamTlsContext{Sni: sni, CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: certificateProvider("default"),
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			CaCertificateProviderInstance: certificateProvider("ROOTCA"),
			// grpc-go reads only this field, not its replacement.
			MatchSubjectAltNames: []*matcherv3.StringMatcher{{ //nolint:staticcheck // see above
				MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://" + trustDomain + "/"},
			}},
		}},
	}})
	return out
}

// MeshMTLSCluster is the outbound cluster c of a service port as a proxy
// with a workload certificate gets it: for a sidecar, with mTLS to the
// endpoints that take it (WithMTLS); for a proxyless gRPC client, with
// mTLS when all of them do (WithProxylessMTLS), else nil (plaintext, as
// every proxy without a certificate gets it).
func MeshMTLSCluster(p *model.Proxy, trustDomain string, c *clusterv3.Cluster, sni string, allTakeMTLS bool) *clusterv3.Cluster {
	switch {
	case p.IdentityDir == "":
		return nil
	case p.Role == model.RoleGRPC:
		if !allTakeMTLS {
			return nil
		}
		return WithProxylessMTLS(c, trustDomain, sni)
	}
	return WithMTLS(c, p.IdentityDir, trustDomain, sni)
}

// withMeshMTLS replaces the outbound clusters of r as MeshMTLSCluster
// has them for p.
func withMeshMTLS(m *model.Mesh, p *model.Proxy, r *Resources) {
	if p.IdentityDir == "" {
		return
	}
	type portOf struct {
		sni string
		all bool
	}
	ports := map[string]portOf{}
	for i := range m.Services {
		svc := &m.Services[i]
		for j := range svc.Ports {
			port := &svc.Ports[j]
			ports[OutboundClusterName(svc, port.Port)] = portOf{SNI(svc, port.Port), ProxylessTakesMTLS(port)}
		}
	}
	for i, c := range r.Clusters {
		if po, ok := ports[c.GetName()]; ok {
			if mc := MeshMTLSCluster(p, m.TrustDomain, c, po.sni, po.all); mc != nil {
				r.Clusters[i] = mc
			}
		}
	}
}

// tlsInspector lets filter chains match on TLS, its SNI and ALPN.
func tlsInspector() *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{
		Name:       "envoy.filters.listener.tls_inspector",
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})},
	}
}

// callers is who may call a port: nil is anyone; else the SPIFFE IDs of
// the allowed ServiceAccounts (a plaintext caller has none).
type callers []string

// principals are the RBAC principals of the allowed callers.
func (c callers) principals() []*rbacv3.Principal {
	out := make([]*rbacv3.Principal, 0, len(c))
	for _, id := range c {
		out = append(out, &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{
			PrincipalName: principalMatcher(id),
		}}})
	}
	return out
}

// principalMatcher matches one SPIFFE ID exactly: no caller is let in
// by a pattern.
func principalMatcher(id string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: id}}
}

// rbacPolicy allows the callers; no callers at all allows nobody.
func (c callers) rbacPolicy() *rbacv3.RBAC {
	r := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{}}
	if len(c) > 0 {
		r.Policies["export-callers"] = &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  c.principals(),
		}
	}
	return r
}

// networkRBAC is the RBAC of a TCP filter chain; with no callers it
// closes every connection (a STRICT port's plaintext chain).
func networkRBAC(statPrefix string, c callers) *listenerv3.Filter {
	return &listenerv3.Filter{
		Name: "envoy.filters.network.rbac",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&netrbacv3.RBAC{
			StatPrefix: statPrefix + ".", Rules: c.rbacPolicy(),
		})},
	}
}

// exportCallers are the SPIFFE IDs that may call the services a pod
// serves on a port, or nil for anyone. A port is restricted only when
// every service that reaches it is exported with callers named; then the
// callers of all of them may.
func exportCallers(m *model.Mesh, svcs []*model.Service) callers {
	if len(svcs) == 0 {
		return nil
	}
	var out callers
	for _, svc := range svcs {
		if !svc.Export.Restricted() {
			return nil
		}
		// (discovery.Callers leaves out "*", which is anyone: no callers.)
		for _, c := range svc.Export.Callers {
			ns, sa, ok := strings.Cut(c, "/")
			if !ok {
				ns, sa = svc.Namespace, c
			}
			if id := m.SPIFFEID(ns, sa); id != "" {
				out = append(out, id)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// inboundCallers are who a pod lets call a port its app serves on: the
// export's callers (exportCallers) and, only where the local gateway
// ends the mTLS of those callers itself (gatewayEndsMTLS), the gateway's
// own identity: it let in the same callers before it calls as itself.
// Nowhere else does a gateway call a restricted port: it has no
// plaintext east-west route and no north-south path for a restricted
// export.
func inboundCallers(m *model.Mesh, svcs []*model.Service) callers {
	out := exportCallers(m, svcs)
	if out == nil {
		return nil
	}
	gateway := m.GatewayIdentity()
	if gateway == "" {
		return out
	}
	for _, svc := range svcs {
		for i := range svc.Ports {
			if port := &svc.Ports[i]; port.Protocol.IsHTTP() && gatewayEndsMTLS(m, port) {
				out = append(out, gateway)
				slices.Sort(out)
				return slices.Compact(out)
			}
		}
	}
	return out
}

// localMTLS counts a port's ready pods in the local cluster, and those
// of them that take mesh mTLS.
func localMTLS(m *model.Mesh, port *model.Port) (pods, meshed int) {
	for _, e := range port.Endpoints {
		if e.Cluster != m.LocalCluster || e.Gateway || !e.Ready {
			continue
		}
		pods++
		if e.MTLS {
			meshed++
		}
	}
	return pods, meshed
}

// gatewayEndsMTLS says whether the local gateway ends the mesh mTLS of
// an exported port's remote callers (and checks them) rather than pass
// it through to the pods: it does when some ready pod takes no mTLS.
func gatewayEndsMTLS(m *model.Mesh, port *model.Port) bool {
	return endsMTLS(localMTLS(m, port))
}

// endsMTLS is gatewayEndsMTLS of a port's counts (localMTLS).
func endsMTLS(pods, meshed int) bool { return pods > 0 && meshed < pods }
