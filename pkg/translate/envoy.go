package translate

import (
	"cmp"
	"fmt"
	"regexp"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	previoushosts "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	previouspriorities "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// Tunables of the generated configuration.
const (
	connectTimeout = 2 * time.Second
	// FailOver ejects an endpoint after this many consecutive 5xx or
	// gateway errors (Envoy), or at this failure percentage (gRPC).
	consecutiveErrors = 2
	failurePercentage = 50
	ejectionInterval  = time.Second
	baseEjectionTime  = 10 * time.Second
)

// ads is the config source of every dynamic resource: the ADS stream.
func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		// Only an unregistered type fails, which is a programming error.
		panic(fmt.Sprintf("marshal %T into Any: %v", m, err))
	}
	return a
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func routerFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{
		Name:       "envoy.filters.http.router",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
	}
}

// hcmFilter is an HTTP connection manager taking its routes over RDS, or
// inline when routes is set.
func hcmFilter(statPrefix, rdsName string, routes *routev3.RouteConfiguration) *listenerv3.Filter {
	return networkHCM(newHCM(statPrefix, rdsName, routes))
}

// newHCM is an HTTP connection manager. Every one normalizes a request's
// path before routes and RBAC see it (RFC 3986: dot segments and
// percent-encoded unreserved characters; merged slashes; escaped slashes
// unescaped by a redirect), so no path matches a route's prefix and then
// climbs out of it at the app.
func newHCM(statPrefix, rdsName string, routes *routev3.RouteConfiguration) *hcmv3.HttpConnectionManager {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:                   statPrefix,
		CodecType:                    hcmv3.HttpConnectionManager_AUTO,
		HttpFilters:                  []*hcmv3.HttpFilter{routerFilter()},
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT,
	}
	if routes != nil {
		hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: routes}
	} else {
		hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: rdsName}}
	}
	return hcm
}

func networkHCM(hcm *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	return &listenerv3.Filter{
		Name:       "envoy.filters.network.http_connection_manager",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
	}
}

// inboundHCM is a serving HTTP connection manager (a sidecar's for one
// app port, a gateway's ending mTLS, a proxyless server's): its routes
// inline, the callers allowed (nil: anyone), and, over mesh mTLS, the
// caller's identity for the app in x-forwarded-client-cert (whatever a
// client sent in that header is dropped either way).
func inboundHCM(statPrefix string, routes *routev3.RouteConfiguration, allowed callers, mtls bool) *listenerv3.Filter {
	hcm := newHCM(statPrefix, "", routes)
	if allowed != nil {
		hcm.HttpFilters = append([]*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.rbac",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&httprbacv3.RBAC{Rules: allowed.rbacPolicy()})},
		}}, hcm.HttpFilters...)
	}
	if mtls {
		hcm.ForwardClientCertDetails = hcmv3.HttpConnectionManager_SANITIZE_SET
		hcm.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Uri: true}
	}
	return networkHCM(hcm)
}

// tcpProxyFilter sends connections to cluster; to a hashing cluster, by
// the client's address.
func tcpProxyFilter(statPrefix, cluster string, hash bool) *listenerv3.Filter {
	tp := &tcpproxyv3.TcpProxy{
		StatPrefix:       statPrefix,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
	}
	if hash {
		tp.HashPolicy = []*typev3.HashPolicy{{PolicySpecifier: &typev3.HashPolicy_SourceIp_{SourceIp: &typev3.HashPolicy_SourceIp{}}}}
	}
	return &listenerv3.Filter{
		Name:       "envoy.filters.network.tcp_proxy",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)},
	}
}

func listener(name, ip string, port uint32, filter *listenerv3.Filter) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:         name,
		Address:      socketAddress(ip, port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{filter}}},
	}
}

// clusterOptions say how an upstream cluster is built.
type clusterOptions struct {
	http2   bool
	outlier bool   // outlier detection, so failing endpoints move traffic on
	lb      string // the load balancer type: model.HashingLoadBalancer, ...
}

// edsCluster is a cluster whose endpoints come over ADS, balanced round
// robin across weighted localities (grpc-go honours locality weights only
// with ROUND_ROBIN).
func edsCluster(name string, o clusterOptions) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads(), ServiceName: name},
		ConnectTimeout:       durationpb.New(connectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{
			LocalityConfigSpecifier: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
				LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{},
			},
		},
	}
	switch o.lb {
	case model.LeastWorkLoadBalancer:
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	case model.HashingLoadBalancer:
		// Ring hash keeps the locality weights (Envoy with the
		// locality-weighted config, grpc-go always) and the priorities:
		// a client sticks to one endpoint of the tier and the
		// localities its hash falls in.
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
			HashFunction: clusterv3.Cluster_RingHashLbConfig_XX_HASH,
		}}
	}
	if o.http2 {
		setHTTP2(c)
	}
	if o.outlier {
		c.OutlierDetection = &clusterv3.OutlierDetection{
			Consecutive_5Xx:                    wrapperspb.UInt32(consecutiveErrors),
			ConsecutiveGatewayFailure:          wrapperspb.UInt32(consecutiveErrors),
			EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
			Interval:                           durationpb.New(ejectionInterval),
			BaseEjectionTime:                   durationpb.New(baseEjectionTime),
			MaxEjectionPercent:                 wrapperspb.UInt32(100),
			// grpc-go knows only success-rate and failure-percentage
			// ejection; these serve it and Envoy alike.
			FailurePercentageThreshold:     wrapperspb.UInt32(failurePercentage),
			EnforcingFailurePercentage:     wrapperspb.UInt32(100),
			FailurePercentageMinimumHosts:  wrapperspb.UInt32(1),
			FailurePercentageRequestVolume: wrapperspb.UInt32(5),
			EnforcingSuccessRate:           wrapperspb.UInt32(0),
		}
	}
	return c
}

// passthroughCluster sends a connection on to where it was headed: the
// intercepting sidecar's traffic for destinations outside the mesh. The
// proxy's own connections are not redirected, so nothing loops.
func passthroughCluster() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 PassthroughClusterName,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(connectTimeout),
	}
}

// staticCluster is a cluster of one fixed address: a sidecar's own app.
func staticCluster(name, ip string, port uint32, http2 bool) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(connectTimeout),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint(ip, port, "")},
			}},
		},
	}
	if http2 {
		setHTTP2(c)
	}
	return c
}

// httpProtocolOptions is the key of a cluster's HTTP protocol options.
const httpProtocolOptions = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// setHTTP2 makes a cluster speak HTTP/2 upstream (it is the only reason
// it has HTTP protocol options).
func setHTTP2(c *clusterv3.Cluster) {
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
		httpProtocolOptions: mustAny(&upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
						Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
					},
				},
			},
		}),
	}
}

func lbEndpoint(ip string, port uint32, hostname string) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address:  socketAddress(ip, port),
		Hostname: hostname,
	}}}
}

// assignment turns a placement into a ClusterLoadAssignment. Every locality
// carries its cluster's region and zone, and the cluster name as sub-zone.
// Gateway endpoints carry the authority the remote gateway routes by, which
// sidecar routes put in the Host header (auto_host_rewrite).
func assignment(name string, pl Placement, authority string) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for priority, tier := range pl.Tiers {
		for _, loc := range tier {
			lle := &endpointv3.LocalityLbEndpoints{
				Locality: &corev3.Locality{
					Region:  orDefault(loc.Cluster.Region),
					Zone:    orDefault(loc.Cluster.Zone),
					SubZone: loc.Cluster.Name,
				},
				LoadBalancingWeight: wrapperspb.UInt32(loc.Weight),
				Priority:            uint32(priority),
			}
			for _, e := range loc.Endpoints {
				host := ""
				if e.Gateway {
					host = authority
				}
				le := lbEndpoint(e.Address, e.Port, host)
				if e.Gateway || e.MTLS {
					// A consumer with a certificate reaches it over mTLS.
					le.Metadata = mtlsEndpointMetadata()
				}
				lle.LbEndpoints = append(lle.LbEndpoints, le)
			}
			cla.Endpoints = append(cla.Endpoints, lle)
		}
	}
	return cla
}

func orDefault(s string) string {
	if s == "" {
		return model.DefaultTopology
	}
	return s
}

// retries says how a route retries a request that failed (a refused or
// reset connection, a 502/503/504, gRPC UNAVAILABLE).
type retries int

const (
	noRetries retries = iota
	// otherEndpoint retries on endpoints not tried yet: a failing pod or
	// remote gateway costs a retry, not a failed call.
	otherEndpoint
	// otherPriority also moves the retry to the next priority once the
	// failing one's endpoints are all tried (FailOver).
	otherPriority
)

// retriesFor is what a service's policy retries.
func retriesFor(svc *model.Service) retries {
	if svc.Policy != nil && svc.Policy.LbType == model.FailOver {
		return otherPriority
	}
	return otherEndpoint
}

// hashing says what a route to a ring-hash cluster hashes on. Every
// policy hashes on the model.HashKeyHeader first, when a request has it.
type hashing int

const (
	noHash hashing = iota
	// byClient then hashes on the client's address (Envoy).
	byClient
	// byChannel then hashes on the client's channel (grpc-go, which has no
	// client address to hash on).
	byChannel
)

// hashingFor is how routes to a cluster balanced by lb hash.
func hashingFor(lb string, by hashing) hashing {
	if lb != model.HashingLoadBalancer {
		return noHash
	}
	return by
}

// routing says how a route sends requests to its cluster.
type routing struct {
	// autoHost rewrites Host to the endpoint's hostname, which only
	// gateway endpoints carry, so exactly the requests that go to a
	// remote gateway carry the name it routes by (sidecars).
	autoHost bool
	retry    retries
	hash     hashing
}

// routeAction sends a request to cluster.
func routeAction(cluster string, p *model.Port, o routing) *routev3.Route_Route {
	a := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}
	if o.autoHost {
		a.HostRewriteSpecifier = &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)}
	}
	if p.Protocol.IsHTTP2() {
		// Streams may live long; gRPC sets its own deadlines.
		a.Timeout = durationpb.New(0)
	}
	if o.retry != noRetries {
		a.RetryPolicy = &routev3.RetryPolicy{
			RetryOn:    "connect-failure,refused-stream,reset,gateway-error,unavailable",
			NumRetries: wrapperspb.UInt32(2),
			RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{
				Name:       "envoy.retry_host_predicates.previous_hosts",
				ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(&previoushosts.PreviousHostsPredicate{})},
			}},
			HostSelectionRetryMaxAttempts: 3,
		}
	}
	if o.retry == otherPriority {
		a.RetryPolicy.RetryPriority = &routev3.RetryPolicy_RetryPriority{
			Name:       "envoy.retry_priorities.previous_priorities",
			ConfigType: &routev3.RetryPolicy_RetryPriority_TypedConfig{TypedConfig: mustAny(&previouspriorities.PreviousPrioritiesConfig{UpdateFrequency: 2})},
		}
	}
	if o.hash != noHash {
		a.HashPolicy = []*routev3.RouteAction_HashPolicy{{
			PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: model.HashKeyHeader}},
			Terminal:        true,
		}}
		then := &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true},
		}}
		if o.hash == byChannel {
			then = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_FilterState_{
				FilterState: &routev3.RouteAction_HashPolicy_FilterState{Key: "io.grpc.channel_id"},
			}}
		}
		a.HashPolicy = append(a.HashPolicy, then)
	}
	return &routev3.Route_Route{Route: a}
}

func prefixRoute(action *routev3.Route_Route) *routev3.Route {
	return &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: action,
	}
}

// exportRoute is a gateway's north-south route for one export rule: the
// rule's path (by path segments for Prefix) rewritten to pathRewrite.
func exportRoute(rule model.ExportRule, e *model.Export, cluster string, p *model.Port) *routev3.Route {
	rewrite := cmp.Or(e.PathRewrite, "/")
	action := routeAction(cluster, p, routing{retry: otherEndpoint, hash: hashingFor(e.LoadBalancer, byClient)})
	match := &routev3.RouteMatch{}
	var pattern string
	if rule.PathType == model.PathExact {
		match.PathSpecifier = &routev3.RouteMatch_Path{Path: rule.Path}
		pattern = "^" + regexp.QuoteMeta(rule.Path) + "$"
	} else {
		trimmed := strings.TrimRight(rule.Path, "/")
		if trimmed == "" || strings.HasSuffix(rule.Path, "/") {
			match.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: rule.Path}
		} else {
			match.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: rule.Path}
		}
		// /p → rewrite and /p/rest → rewrite + rest, with exactly one
		// slash between them.
		pattern = "^" + regexp.QuoteMeta(trimmed)
		if strings.HasSuffix(rewrite, "/") {
			pattern += "/*"
		}
	}
	action.Route.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
		Pattern:      &matcherv3.RegexMatcher{Regex: pattern},
		Substitution: rewrite,
	}
	return &routev3.Route{Name: rule.Path, Match: match, Action: action}
}
