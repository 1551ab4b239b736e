package translate

import (
	"fmt"
	"sort"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
)

// checkResources fails the test unless every resource passes Envoy's proto
// validation and the set is consistent (see consistency).
func checkResources(t testing.TB, r *Resources) {
	t.Helper()
	if err := r.Validate(); err != nil {
		t.Fatalf("Envoy's validation refused a resource: %v", err)
	}
	for _, problem := range consistency(r) {
		t.Error(problem)
	}
}

// consistency lists what would make Envoy or grpc-go refuse or misroute:
// names twice, a listener's routes or a route's cluster missing, an EDS
// cluster without its assignment, priorities with gaps, localities without
// weight, an address twice in one assignment, a domain twice in one
// route configuration.
func consistency(r *Resources) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	clusters := map[string]bool{}
	for _, c := range r.Clusters {
		if clusters[c.GetName()] {
			add("cluster %s is emitted twice", c.GetName())
		}
		clusters[c.GetName()] = true
	}
	cla := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, e := range r.Endpoints {
		if cla[e.GetClusterName()] != nil {
			add("assignment %s is emitted twice", e.GetClusterName())
		}
		cla[e.GetClusterName()] = e
		if !clusters[e.GetClusterName()] {
			add("assignment %s has no cluster", e.GetClusterName())
		}
		priorities := map[uint32]bool{}
		addrs := map[string]bool{}
		for _, l := range e.GetEndpoints() {
			priorities[l.GetPriority()] = true
			if l.GetLoadBalancingWeight().GetValue() == 0 {
				add("assignment %s: locality %v has no weight", e.GetClusterName(), l.GetLocality())
			}
			if len(l.GetLbEndpoints()) == 0 {
				add("assignment %s: locality %v is empty", e.GetClusterName(), l.GetLocality())
			}
			for _, lb := range l.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				a := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
				if addrs[a] {
					add("assignment %s: address %s twice", e.GetClusterName(), a)
				}
				addrs[a] = true
			}
		}
		for p := range uint32(len(priorities)) {
			if !priorities[p] {
				add("assignment %s: priorities %v have a gap at %d", e.GetClusterName(), sortedKeys(priorities), p)
			}
		}
	}
	for _, c := range r.Clusters {
		if c.GetEdsClusterConfig() != nil && cla[c.GetName()] == nil {
			add("EDS cluster %s has no assignment", c.GetName())
		}
	}

	routes := map[string]*routev3.RouteConfiguration{}
	for _, rc := range r.Routes {
		if routes[rc.GetName()] != nil {
			add("route configuration %s is emitted twice", rc.GetName())
		}
		routes[rc.GetName()] = rc
		checkRoutes(rc, clusters, add)
	}
	listeners := map[string]bool{}
	for _, l := range r.Listeners {
		if listeners[l.GetName()] {
			add("listener %s is emitted twice", l.GetName())
		}
		listeners[l.GetName()] = true
		hcm, tcp := listenerFilters(l)
		switch {
		case hcm != nil && hcm.GetRds() != nil:
			if routes[hcm.GetRds().GetRouteConfigName()] == nil {
				add("listener %s: routes %s are not emitted", l.GetName(), hcm.GetRds().GetRouteConfigName())
			}
		case hcm != nil && hcm.GetRouteConfig() != nil:
			checkRoutes(hcm.GetRouteConfig(), clusters, add)
		case tcp != nil:
			if !clusters[tcp.GetCluster()] {
				add("listener %s: cluster %s is not emitted", l.GetName(), tcp.GetCluster())
			}
		default:
			add("listener %s has neither routes nor a TCP proxy", l.GetName())
		}
	}
	return problems
}

func checkRoutes(rc *routev3.RouteConfiguration, clusters map[string]bool, add func(string, ...any)) {
	domains := map[string]string{}
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			if other, dup := domains[d]; dup {
				add("route configuration %s: domain %s in %s and %s", rc.GetName(), d, other, vh.GetName())
			}
			domains[d] = vh.GetName()
		}
		for _, route := range vh.GetRoutes() {
			if route.GetNonForwardingAction() != nil {
				continue // a proxyless server's: it serves the call itself
			}
			if c := route.GetRoute().GetCluster(); !clusters[c] {
				add("route configuration %s: virtual host %s routes to %s, which is not emitted", rc.GetName(), vh.GetName(), c)
			}
		}
	}
}

// listenerFilters returns the listener's HTTP connection manager or TCP
// proxy (an ApiListener's HCM for proxyless listeners).
func listenerFilters(l *listenerv3.Listener) (*hcmv3.HttpConnectionManager, *tcpproxyv3.TcpProxy) {
	if api := l.GetApiListener().GetApiListener(); api != nil {
		hcm := &hcmv3.HttpConnectionManager{}
		if api.UnmarshalTo(hcm) == nil {
			return hcm, nil
		}
	}
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			hcm := &hcmv3.HttpConnectionManager{}
			if f.GetTypedConfig().UnmarshalTo(hcm) == nil {
				return hcm, nil
			}
			tcp := &tcpproxyv3.TcpProxy{}
			if f.GetTypedConfig().UnmarshalTo(tcp) == nil {
				return nil, tcp
			}
		}
	}
	return nil, nil
}

func sortedKeys(m map[uint32]bool) []uint32 {
	out := make([]uint32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
