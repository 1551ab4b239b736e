// Package bootstrap writes the Envoy bootstrap that points a sidecar or a
// gateway at fleetmesh's ADS server, with the node identity (id and
// metadata: role, namespace, pod, serviceAccount, cluster) the server
// reads. Injection puts it in the sidecar; tests and the demo start Envoy
// with it.
package bootstrap

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Options describe one proxy.
type Options struct {
	// NodeID is unique per proxy, e.g. <pod>.<namespace>.
	NodeID string
	// Role is sidecar or gateway.
	Role           string
	Namespace      string
	Pod            string
	ServiceAccount string
	Cluster        string
	// IP and AppIP are optional node metadata: the address to bind
	// listeners to when the proxy has no Pod, and where a sidecar's
	// inbound traffic goes.
	IP    string
	AppIP string
	// XDSAddress is fleetmesh's ADS server, host:port.
	XDSAddress string
	// AdminAddress is Envoy's admin listener, host:port (keep it on
	// localhost).
	AdminAddress string
	// Delta selects incremental xDS.
	Delta bool
	// Intercept marks a sidecar whose pod's traffic is redirected to it by
	// iptables (metadata interception: iptables).
	Intercept bool
	// IdentityDir, when set, makes the proxy speak TLS to the xDS server
	// with its workload certificate: the directory holds key.pem,
	// cert.pem and roots.pem (the pod's projected identity volume) and
	// the SDS files that point Envoy at them (SDSFiles).
	IdentityDir string
	// XDSServerName is the name the proxy asks the xDS server for (TLS
	// SNI); the server's certificate is checked for its SPIFFE ID, which
	// is in the roots SDS file.
	XDSServerName string
	// Token, with IdentityDir, authenticates the proxy with a
	// ServiceAccount token instead of a certificate, where pods cannot
	// get one: IdentityDir holds TokenFile (a projected serviceAccountToken
	// of audience fleetmesh, bound to the pod) and RootsFile. Envoy's
	// Google gRPC client speaks TLS to the server, checks its certificate
	// for XDSServerName against the roots, and sends the token, read
	// again for every stream (the kubelet renews it), as
	// "authorization: Bearer <token>".
	Token bool
	// HealthPort, when set, serves GET /healthz/ready on all addresses:
	// Envoy's admin /ready, 200 once Envoy has its first configuration.
	// Kubelet probes reach it; the admin API stays on localhost.
	HealthPort uint32
}

// HealthPath is what the health port answers.
const HealthPath = "/healthz/ready"

const xdsCluster = "fleetmesh-xds"

// Build returns the bootstrap.
func Build(o Options) (*bootstrapv3.Bootstrap, error) {
	if o.NodeID == "" {
		return nil, errors.New("bootstrap: NodeID is required")
	}
	if o.Role != "sidecar" && o.Role != "gateway" {
		return nil, fmt.Errorf("bootstrap: role %q is not sidecar or gateway", o.Role)
	}
	xdsHost, xdsPort, err := splitHostPort(o.XDSAddress)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: XDSAddress: %w", err)
	}
	adminHost, adminPort, err := splitHostPort(o.AdminAddress)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: AdminAddress: %w", err)
	}
	metadata, err := o.metadata().Struct()
	if err != nil {
		return nil, err
	}
	apiType := corev3.ApiConfigSource_GRPC
	if o.Delta {
		apiType = corev3.ApiConfigSource_DELTA_GRPC
	}
	ads := &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
	xds, err := xdsStaticCluster(xdsHost, xdsPort)
	if err != nil {
		return nil, err
	}
	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: o.NodeID, Cluster: o.Cluster, Metadata: metadata},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:                   apiType,
				TransportApiVersion:       corev3.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: xdsCluster},
				}}},
			},
			LdsConfig: ads,
			CdsConfig: ads,
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{xds}},
		Admin:           &bootstrapv3.Admin{Address: socket(adminHost, adminPort)},
	}
	if o.Token {
		if o.IdentityDir == "" || o.XDSServerName == "" {
			return nil, errors.New("bootstrap: Token needs IdentityDir and XDSServerName")
		}
		b.DynamicResources.AdsConfig.GrpcServices = []*corev3.GrpcService{tokenGRPCService(o.IdentityDir, o.XDSServerName, o.XDSAddress)}
		b.StaticResources.Clusters = nil
	} else if o.IdentityDir != "" {
		ts, err := xdsTransportSocket(o.IdentityDir, o.XDSServerName)
		if err != nil {
			return nil, err
		}
		b.StaticResources.Clusters[0].TransportSocket = ts
	}
	if o.HealthPort != 0 {
		if err := addHealth(b, o.HealthPort, adminHost, adminPort); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// metadata is the node metadata the proxy tells the control plane.
func (o Options) metadata() NodeMetadata {
	md := NodeMetadata{
		Role: o.Role, Namespace: o.Namespace, Pod: o.Pod, ServiceAccount: o.ServiceAccount,
		Cluster: o.Cluster, IP: o.IP, AppIP: o.AppIP,
	}
	if o.Intercept {
		md.Interception = InterceptionIPTables
	}
	if o.IdentityDir != "" && !o.Token {
		// The certificate serves the data plane too: the control plane
		// points the proxy's mesh mTLS at the same SDS files.
		md.IdentityDir = o.IdentityDir
	}
	return md
}

// xdsStaticCluster is the cluster of the control plane, over HTTP/2: a
// static address, or a name resolved by DNS (a Service in a real
// cluster).
func xdsStaticCluster(host string, port uint32) (*clusterv3.Cluster, error) {
	discovery := clusterv3.Cluster_STATIC
	if _, err := netip.ParseAddr(host); err != nil {
		discovery = clusterv3.Cluster_STRICT_DNS
	}
	h2, err := anypb.New(&upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		},
	})
	if err != nil {
		return nil, err
	}
	return &clusterv3.Cluster{
		Name:                          xdsCluster,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: discovery},
		ConnectTimeout:                durationpb.New(2 * time.Second),
		TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: xdsCluster,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socket(host, port)}},
			}}}},
		},
	}, nil
}

const adminCluster = "fleetmesh-admin"

// addHealth adds the listener that answers kubelet probes from Envoy's
// admin /ready.
func addHealth(b *bootstrapv3.Bootstrap, port uint32, adminHost string, adminPort uint32) error {
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return err
	}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: "fleetmesh-health",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "fleetmesh-health",
			VirtualHosts: []*routev3.VirtualHost{{
				Name: "fleetmesh-health", Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: HealthPath}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: adminCluster},
						PrefixRewrite:    "/ready",
					}},
				}},
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}}},
	})
	if err != nil {
		return err
	}
	b.StaticResources.Listeners = append(b.StaticResources.Listeners, &listenerv3.Listener{
		Name:    "fleetmesh-health",
		Address: socket("0.0.0.0", port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
		}}}},
	})
	b.StaticResources.Clusters = append(b.StaticResources.Clusters, &clusterv3.Cluster{
		Name:                 adminCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: adminCluster,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socket(adminHost, adminPort)}},
			}}}},
		},
	})
	return nil
}

// JSON returns the bootstrap as Envoy reads it from -c.
func JSON(o Options) ([]byte, error) {
	b, err := Build(o)
	if err != nil {
		return nil, err
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return protojson.Marshal(b)
}

func socket(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func splitHostPort(addr string) (string, uint32, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", 0, fmt.Errorf("%q: port must be 1-65535", addr)
	}
	return host, uint32(p), nil
}

// NodeMetadata is what a proxy says of itself in its node's metadata, and
// what the xDS server reads of it: one type for both sides, so a key
// cannot be spelt two ways. Every value is a string.
type NodeMetadata struct {
	// Role is sidecar, gateway or grpc.
	Role           string `json:"role"`
	Namespace      string `json:"namespace,omitempty"`
	Pod            string `json:"pod,omitempty"`
	ServiceAccount string `json:"serviceAccount,omitempty"`
	Cluster        string `json:"cluster,omitempty"`
	// IP is the address to bind listeners to when the proxy has no pod;
	// AppIP where a sidecar's inbound traffic goes.
	IP    string `json:"ip,omitempty"`
	AppIP string `json:"appIP,omitempty"`
	// Interception is "iptables" for a sidecar whose pod's traffic is
	// redirected to it.
	Interception string `json:"interception,omitempty"`
	// IdentityDir is where the proxy's workload certificate is: it then
	// speaks mesh mTLS.
	IdentityDir string `json:"identityDir,omitempty"`
	// ListenPort is the port a gateway listens on, when a Service maps
	// the Cluster's gatewayPort to it.
	ListenPort string `json:"listenPort,omitempty"`
}

// InterceptionIPTables is NodeMetadata.Interception of a sidecar whose
// traffic iptables redirects to it.
const InterceptionIPTables = "iptables"

// Struct is the metadata as a node carries it.
func (m NodeMetadata) Struct() (*structpb.Struct, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	st := &structpb.Struct{}
	return st, protojson.Unmarshal(data, st)
}

// ReadNodeMetadata reads a node's metadata; a key of NodeMetadata whose
// value is not a string is an error naming it (other keys are ignored).
func ReadNodeMetadata(s *structpb.Struct) (NodeMetadata, error) {
	var m NodeMetadata
	data, err := protojson.Marshal(s)
	if err != nil {
		return m, err
	}
	var typeErr *json.UnmarshalTypeError
	if err := json.Unmarshal(data, &m); errors.As(err, &typeErr) {
		return m, fmt.Errorf("metadata.%s is not a string", typeErr.Field)
	} else if err != nil {
		return m, err
	}
	return m, nil
}
