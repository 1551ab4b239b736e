package translate

import (
	"fmt"
	"regexp"
	"strings"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// The config walker follows one request through generated resources as
// Envoy (or grpc-go) would: listener → routes → virtual host → route →
// cluster → endpoints by priority and weight. It is test-only, like
// Istio's xDS simulation.

// request is what a client sends.
type request struct {
	// port the client connects to (sidecar or gateway listener), or the
	// listener name a proxyless client dials (target without xds:///).
	port      uint32
	target    string
	authority string
	path      string
}

// walk is where the request lands.
type walk struct {
	VirtualHost string
	Cluster     string
	Path        string // after rewrite
	AutoHost    bool
	// Tiers are the localities by priority; traffic goes to the first
	// tier while it has healthy endpoints.
	Tiers [][]walkLocality
}

type walkLocality struct {
	Cluster   string // the locality's sub-zone: the cluster it lives in
	Weight    uint32
	Endpoints []walkEndpoint
}

type walkEndpoint struct {
	Address  string // ip:port
	Hostname string // set for a remote gateway: the Host it is sent with
}

// Shares returns the fraction of requests each cluster gets while every
// endpoint is healthy: the first tier's locality weights.
func (w walk) Shares() map[string]float64 {
	if len(w.Tiers) == 0 {
		return nil
	}
	var total float64
	for _, l := range w.Tiers[0] {
		total += float64(l.Weight)
	}
	out := map[string]float64{}
	for _, l := range w.Tiers[0] {
		out[l.Cluster] += float64(l.Weight) / total
	}
	return out
}

// ClustersByTier lists the clusters of each tier, e.g. [[cluster-2] [cluster-1 cluster-3]].
func (w walk) ClustersByTier() [][]string {
	var out [][]string
	for _, tier := range w.Tiers {
		var names []string
		for _, l := range tier {
			names = append(names, l.Cluster)
		}
		out = append(out, names)
	}
	return out
}

func walkRequest(r *Resources, req request) (walk, error) {
	var l *listenerv3.Listener
	for _, cand := range r.Listeners {
		if req.target != "" && cand.GetName() == req.target && cand.GetApiListener() != nil {
			l = cand
		}
		if req.target == "" && cand.GetApiListener() == nil && cand.GetAddress().GetSocketAddress().GetPortValue() == req.port &&
			!strings.HasPrefix(cand.GetName(), "inbound|") {
			l = cand
		}
	}
	if l == nil {
		return walk{}, fmt.Errorf("no listener for port %d / target %q", req.port, req.target)
	}
	hcm, tcp := listenerFilters(l)
	if tcp != nil {
		return finish(r, walk{Cluster: tcp.GetCluster()})
	}
	rc := hcm.GetRouteConfig()
	if rds := hcm.GetRds(); rds != nil {
		for _, cand := range r.Routes {
			if cand.GetName() == rds.GetRouteConfigName() {
				rc = cand
			}
		}
	}
	if rc == nil {
		return walk{}, fmt.Errorf("listener %s: no routes", l.GetName())
	}
	vh := matchVirtualHost(rc, req.authority)
	if vh == nil {
		return walk{}, fmt.Errorf("routes %s: no virtual host for %q (404)", rc.GetName(), req.authority)
	}
	for _, route := range vh.GetRoutes() {
		if !matchPath(route.GetMatch(), req.path) {
			continue
		}
		a := route.GetRoute()
		w := walk{VirtualHost: vh.GetName(), Cluster: a.GetCluster(), Path: req.path, AutoHost: a.GetAutoHostRewrite().GetValue()}
		if rr := a.GetRegexRewrite(); rr != nil {
			re, err := regexp.Compile(rr.GetPattern().GetRegex())
			if err != nil {
				return walk{}, err
			}
			w.Path = re.ReplaceAllLiteralString(req.path, rr.GetSubstitution())
		}
		return finish(r, w)
	}
	return walk{}, fmt.Errorf("virtual host %s: no route for path %q (404)", vh.GetName(), req.path)
}

func finish(r *Resources, w walk) (walk, error) {
	var cla *endpointv3.ClusterLoadAssignment
	for _, c := range r.Clusters {
		if c.GetName() == w.Cluster {
			if c.GetLoadAssignment() != nil {
				cla = c.GetLoadAssignment()
			}
		}
	}
	for _, e := range r.Endpoints {
		if e.GetClusterName() == w.Cluster {
			cla = e
		}
	}
	if cla == nil {
		return walk{}, fmt.Errorf("cluster %s: no endpoints resource", w.Cluster)
	}
	for _, l := range cla.GetEndpoints() {
		for int(l.GetPriority()) >= len(w.Tiers) {
			w.Tiers = append(w.Tiers, nil)
		}
		wl := walkLocality{Cluster: l.GetLocality().GetSubZone(), Weight: l.GetLoadBalancingWeight().GetValue()}
		for _, lb := range l.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			wl.Endpoints = append(wl.Endpoints, walkEndpoint{
				Address:  fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()),
				Hostname: lb.GetEndpoint().GetHostname(),
			})
		}
		w.Tiers[l.GetPriority()] = append(w.Tiers[l.GetPriority()], wl)
	}
	return w, nil
}

// matchVirtualHost picks the virtual host as Envoy does: an exact domain
// first, then the longest suffix or prefix wildcard, then "*".
func matchVirtualHost(rc *routev3.RouteConfiguration, authority string) *routev3.VirtualHost {
	host := strings.ToLower(authority)
	var best *routev3.VirtualHost
	bestLen := -1
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			switch {
			case d == host:
				return vh
			case d == "*":
				if bestLen < 0 {
					best, bestLen = vh, 0
				}
			case strings.HasPrefix(d, "*") && strings.HasSuffix(host, d[1:]) && len(d) > bestLen:
				best, bestLen = vh, len(d)
			case strings.HasSuffix(d, "*") && strings.HasPrefix(host, d[:len(d)-1]) && len(d) > bestLen:
				best, bestLen = vh, len(d)
			}
		}
	}
	return best
}

func matchPath(m *routev3.RouteMatch, path string) bool {
	p := path
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	switch {
	case m.GetPath() != "":
		return p == m.GetPath()
	case m.GetPathSeparatedPrefix() != "":
		prefix := m.GetPathSeparatedPrefix()
		return p == prefix || strings.HasPrefix(p, prefix+"/")
	default:
		return strings.HasPrefix(p, m.GetPrefix())
	}
}
