package xds

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/fleetmesh/fleetmesh/pkg/version"
	"github.com/fleetmesh/fleetmesh/pkg/xds/placement"
	"github.com/fleetmesh/fleetmesh/pkg/xds/syncz"
)

// DebugAccess says which proxies a debug API caller may read.
type DebugAccess interface {
	// MayRead reports whether the request's caller may read the proxy
	// name of namespace; name "" asks to list the namespace's proxies,
	// namespace "" every namespace's.
	MayRead(r *http.Request, namespace, name string) (bool, error)
}

// DebugHandler serves the debug API:
//
//	/debug/config_dump?proxy=<node id>  what the proxy is served, in Envoy's ConfigDump JSON
//	/debug/syncz[?namespace=<ns>]        every connected proxy (of ns) with its versions sent, acked and nacked
//	/debug/explain?namespace=<ns>&service=<name>
//	                                     where this cluster's calls to the service go, as placed for its proxies
//	/metrics                             Prometheus metrics
//	/healthz                             the process is up
//	/readyz                              a mesh has been published (and ADS's TLS takes handshakes)
//	/version                             the control plane's version
//
// With access, /debug/syncz lists only the proxies the caller may list,
// /debug/config_dump serves only a proxy the caller may read, and
// /debug/explain only a service of a namespace whose proxies the caller
// may list (their configuration says as much); a nil access lets everyone
// read everything.
func (s *Server) DebugHandler(access DebugAccess) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/config_dump", func(w http.ResponseWriter, r *http.Request) { s.serveConfigDump(w, r, access) })
	mux.HandleFunc("/debug/syncz", func(w http.ResponseWriter, r *http.Request) {
		proxies, err := readable(r, access, s.Proxies(), r.URL.Query().Get("namespace"))
		if err != nil {
			http.Error(w, err.Error(), statusOf(err))
			return
		}
		writeJSON(w, proxies)
	})
	mux.HandleFunc("/debug/explain", func(w http.ResponseWriter, r *http.Request) { s.serveExplain(w, r, access) })
	mux.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	// Go's profiles: /debug/pprof/heap?gc=1 is the heap after a
	// collection.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/version", func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprintln(w, version.String()) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if why := s.notReady(); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
	return mux
}

// forbidden is a caller asking for what it may not read.
type forbidden string

func (f forbidden) Error() string { return string(f) }

func statusOf(err error) int {
	var f forbidden
	if errors.As(err, &f) {
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

// readable is the proxies of namespace ("": every namespace) the caller
// may list. Asked for one namespace, it is all of them or a refusal. Asked
// for all, it is every one with the right to list them in every
// namespace, else those of the namespaces it may list them in.
func readable(r *http.Request, access DebugAccess, proxies []syncz.ProxyStatus, namespace string) ([]syncz.ProxyStatus, error) {
	if namespace != "" {
		proxies = slices.DeleteFunc(proxies, func(p syncz.ProxyStatus) bool { return p.Namespace != namespace })
		if access == nil {
			return proxies, nil
		}
		ok, err := access.MayRead(r, namespace, "")
		if err != nil || !ok {
			return nil, cmp.Or(err, error(forbidden("Forbidden: you may not list proxies.fleetmesh.io in namespace "+namespace)))
		}
		return proxies, nil
	}
	if access == nil {
		return proxies, nil
	}
	all, err := access.MayRead(r, "", "")
	if err != nil || all {
		return proxies, err
	}
	may := map[string]bool{}
	for _, p := range proxies {
		if _, asked := may[p.Namespace]; asked || p.Namespace == "" {
			continue
		}
		if may[p.Namespace], err = access.MayRead(r, p.Namespace, ""); err != nil {
			return nil, err
		}
	}
	out := []syncz.ProxyStatus{}
	for _, p := range proxies {
		if may[p.Namespace] {
			out = append(out, p)
		}
	}
	// Every namespace asked about has a proxy: none is readable.
	if len(out) == 0 {
		return nil, forbidden("Forbidden: you may not list proxies.fleetmesh.io in any namespace with a connected proxy (RBAC: list proxies.fleetmesh.io)")
	}
	return out, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) serveConfigDump(w http.ResponseWriter, r *http.Request, access DebugAccess) {
	id := r.URL.Query().Get("proxy")
	if id == "" {
		http.Error(w, "name a proxy: /debug/config_dump?proxy=<node id> (see /debug/syncz)", http.StatusBadRequest)
		return
	}
	if access != nil {
		// A proxy is read as proxies.fleetmesh.io named after its pod in
		// its namespace; whether an unknown one is connected is told
		// only to who may read every proxy.
		namespace, name := "", ""
		for _, p := range s.Proxies() {
			if p.ID == id && p.Namespace != "" {
				namespace, name = p.Namespace, cmp.Or(p.Pod, id)
			}
		}
		ok, err := access.MayRead(r, namespace, name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if !ok {
			what := "every proxy (the proxy is not connected or has no namespace)"
			if namespace != "" {
				what = fmt.Sprintf("proxy %s in namespace %s", name, namespace)
			}
			http.Error(w, "Forbidden: you may not get "+what+" (RBAC: get proxies.fleetmesh.io)", http.StatusForbidden)
			return
		}
	}
	dump, err := s.ConfigDump(id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	data, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(dump)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}

// ConfigDump returns what a connected proxy is served, in the shape of
// Envoy's /config_dump, so tools that read Envoy's dumps read this one.
func (s *Server) ConfigDump(id string) (*adminv3.ConfigDump, error) {
	layers, ok := s.proxyLayers(id)
	if !ok {
		return nil, fmt.Errorf("proxy %q is not connected (see /debug/syncz)", id)
	}
	sorted := func(typeURL string) []*Entry {
		entries := s.cache.View(layers, typeURL)
		out := make([]*Entry, 0, len(entries))
		for _, e := range entries {
			out = append(out, e)
		}
		slices.SortFunc(out, func(a, b *Entry) int { return strings.Compare(a.Name, b.Name) })
		return out
	}
	listeners := &adminv3.ListenersConfigDump{}
	for _, e := range sorted(resource.ListenerType) {
		listeners.DynamicListeners = append(listeners.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			Name: e.Name,
			ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{
				VersionInfo: e.Version, Listener: e.any,
			},
		})
	}
	routes := &adminv3.RoutesConfigDump{}
	for _, e := range sorted(resource.RouteType) {
		routes.DynamicRouteConfigs = append(routes.DynamicRouteConfigs, &adminv3.RoutesConfigDump_DynamicRouteConfig{
			VersionInfo: e.Version, RouteConfig: e.any,
		})
	}
	clusters := &adminv3.ClustersConfigDump{}
	for _, e := range sorted(resource.ClusterType) {
		clusters.DynamicActiveClusters = append(clusters.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{
			VersionInfo: e.Version, Cluster: e.any,
		})
	}
	endpoints := &adminv3.EndpointsConfigDump{}
	for _, e := range sorted(resource.EndpointType) {
		endpoints.DynamicEndpointConfigs = append(endpoints.DynamicEndpointConfigs, &adminv3.EndpointsConfigDump_DynamicEndpointConfig{
			VersionInfo: e.Version, EndpointConfig: e.any,
		})
	}
	return &adminv3.ConfigDump{Configs: []*anypb.Any{mustAny(listeners), mustAny(clusters), mustAny(endpoints), mustAny(routes)}}, nil
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// serveExplain answers where this cluster's calls to a service go, from
// the mesh its proxies are served.
func (s *Server) serveExplain(w http.ResponseWriter, r *http.Request, access DebugAccess) {
	ns, name := r.URL.Query().Get("namespace"), r.URL.Query().Get("service")
	if ns == "" || name == "" {
		http.Error(w, "name a service: /debug/explain?namespace=<ns>&service=<name>", http.StatusBadRequest)
		return
	}
	if access != nil {
		ok, err := access.MayRead(r, ns, "")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if !ok {
			http.Error(w, "Forbidden: you may not list proxies.fleetmesh.io in namespace "+ns+": where its services' calls go is in their configuration (RBAC: list proxies.fleetmesh.io)", http.StatusForbidden)
			return
		}
	}
	s.mu.Lock()
	mesh := s.mesh
	s.mu.Unlock()
	if mesh == nil {
		http.Error(w, "no mesh is published yet", http.StatusServiceUnavailable)
		return
	}
	ex, err := placement.Explain(mesh, ns, name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	writeJSON(w, ex)
}
