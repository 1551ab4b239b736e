package xds

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/fleetmesh/fleetmesh/pkg/version"
)

// DebugHandler serves the debug API:
//
//	/debug/config_dump?proxy=<node id>  what the proxy is served, in Envoy's ConfigDump JSON
//	/debug/syncz                         every connected proxy with its versions sent, acked and nacked
//	/metrics                             Prometheus metrics
//	/healthz                             the process is up
//	/readyz                              a mesh has been published
//	/version                             the control plane's version
func (s *Server) DebugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/config_dump", s.serveConfigDump)
	mux.HandleFunc("/debug/syncz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, s.Proxies())
	})
	mux.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/version", func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprintln(w, version.String()) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Ready() {
			http.Error(w, "no mesh published yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) serveConfigDump(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("proxy")
	if id == "" {
		http.Error(w, "name a proxy: /debug/config_dump?proxy=<node id> (see /debug/syncz)", http.StatusBadRequest)
		return
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
				VersionInfo: e.Version, Listener: mustAny(e.Resource.(*listenerv3.Listener)),
			},
		})
	}
	routes := &adminv3.RoutesConfigDump{}
	for _, e := range sorted(resource.RouteType) {
		routes.DynamicRouteConfigs = append(routes.DynamicRouteConfigs, &adminv3.RoutesConfigDump_DynamicRouteConfig{
			VersionInfo: e.Version, RouteConfig: mustAny(e.Resource.(*routev3.RouteConfiguration)),
		})
	}
	clusters := &adminv3.ClustersConfigDump{}
	for _, e := range sorted(resource.ClusterType) {
		clusters.DynamicActiveClusters = append(clusters.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{
			VersionInfo: e.Version, Cluster: mustAny(e.Resource.(*clusterv3.Cluster)),
		})
	}
	endpoints := &adminv3.EndpointsConfigDump{}
	for _, e := range sorted(resource.EndpointType) {
		endpoints.DynamicEndpointConfigs = append(endpoints.DynamicEndpointConfigs, &adminv3.EndpointsConfigDump_DynamicEndpointConfig{
			VersionInfo: e.Version, EndpointConfig: mustAny(e.Resource.(*endpointv3.ClusterLoadAssignment)),
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
