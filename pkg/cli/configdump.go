package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	// The resources of a dump carry the extensions fleetmesh configures;
	// decoding them needs their types registered.
	_ "github.com/fleetmesh/fleetmesh/pkg/translate"
)

// ConfigDump is what one proxy holds or was sent: the resources of an
// Envoy-shaped /config_dump (fleetmesh's /debug/config_dump, or Envoy's
// own admin /config_dump?include_eds).
type ConfigDump struct {
	Listeners []*listenerv3.Listener
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	Routes    []*routev3.RouteConfiguration
}

var unmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}

// ParseConfigDump reads a config dump in JSON. Sections other than
// listeners, clusters, endpoints and routes (bootstrap, secrets) are
// skipped, so Envoy's own dump reads too.
func ParseConfigDump(data []byte) (*ConfigDump, error) {
	var top struct {
		Configs []json.RawMessage `json:"configs"`
	}
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("read config dump: %w", err)
	}
	d := &ConfigDump{}
	for _, raw := range top.Configs {
		var head struct {
			Type string `json:"@type"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return nil, fmt.Errorf("read config dump: %w", err)
		}
		var section proto.Message
		switch strings.TrimPrefix(head.Type, "type.googleapis.com/") {
		case "envoy.admin.v3.ListenersConfigDump":
			section = &adminv3.ListenersConfigDump{}
		case "envoy.admin.v3.ClustersConfigDump":
			section = &adminv3.ClustersConfigDump{}
		case "envoy.admin.v3.EndpointsConfigDump":
			section = &adminv3.EndpointsConfigDump{}
		case "envoy.admin.v3.RoutesConfigDump":
			section = &adminv3.RoutesConfigDump{}
		default:
			continue
		}
		raw, err := withoutUnknownTypes(raw)
		if err != nil {
			return nil, fmt.Errorf("read %s of the config dump: %w", head.Type, err)
		}
		a := &anypb.Any{}
		if err := unmarshal.Unmarshal(raw, a); err != nil {
			return nil, fmt.Errorf("read %s of the config dump: %w", head.Type, err)
		}
		if err := a.UnmarshalTo(section); err != nil {
			return nil, fmt.Errorf("read %s of the config dump: %w", head.Type, err)
		}
		if err := d.add(section); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(d.Listeners, func(a, b *listenerv3.Listener) int { return strings.Compare(a.GetName(), b.GetName()) })
	slices.SortFunc(d.Clusters, func(a, b *clusterv3.Cluster) int { return strings.Compare(a.GetName(), b.GetName()) })
	slices.SortFunc(d.Endpoints, func(a, b *endpointv3.ClusterLoadAssignment) int {
		return strings.Compare(a.GetClusterName(), b.GetClusterName())
	})
	slices.SortFunc(d.Routes, func(a, b *routev3.RouteConfiguration) int { return strings.Compare(a.GetName(), b.GetName()) })
	return d, nil
}

// withoutUnknownTypes drops from a dump section every typed value (an
// object with "@type") whose type this binary does not know: a control
// plane or Envoy newer than the CLI may configure an extension the CLI has
// never heard of, and what the CLI shows does not depend on it.
func withoutUnknownTypes(raw json.RawMessage) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	v, _ = pruneUnknown(v)
	return json.Marshal(v)
}

// pruneUnknown returns v without the typed values of unknown types, and
// whether v itself is kept.
func pruneUnknown(v any) (any, bool) {
	switch x := v.(type) {
	case map[string]any:
		if t, ok := x["@type"].(string); ok {
			if _, err := protoregistry.GlobalTypes.FindMessageByURL(t); err != nil {
				return nil, false
			}
		}
		for k, e := range x {
			if kept, ok := pruneUnknown(e); ok {
				x[k] = kept
			} else {
				delete(x, k)
			}
		}
		return x, true
	case []any:
		out := x[:0]
		for _, e := range x {
			if kept, ok := pruneUnknown(e); ok {
				out = append(out, kept)
			}
		}
		return out, true
	}
	return v, true
}

func (d *ConfigDump) add(section proto.Message) error {
	var err error
	switch s := section.(type) {
	case *adminv3.ListenersConfigDump:
		for _, l := range s.GetStaticListeners() {
			d.Listeners, err = unpack(d.Listeners, l.GetListener(), err)
		}
		for _, l := range s.GetDynamicListeners() {
			d.Listeners, err = unpack(d.Listeners, l.GetActiveState().GetListener(), err)
		}
	case *adminv3.ClustersConfigDump:
		for _, c := range s.GetStaticClusters() {
			d.Clusters, err = unpack(d.Clusters, c.GetCluster(), err)
		}
		for _, c := range s.GetDynamicActiveClusters() {
			d.Clusters, err = unpack(d.Clusters, c.GetCluster(), err)
		}
	case *adminv3.EndpointsConfigDump:
		for _, e := range s.GetStaticEndpointConfigs() {
			d.Endpoints, err = unpack(d.Endpoints, e.GetEndpointConfig(), err)
		}
		for _, e := range s.GetDynamicEndpointConfigs() {
			d.Endpoints, err = unpack(d.Endpoints, e.GetEndpointConfig(), err)
		}
	case *adminv3.RoutesConfigDump:
		for _, r := range s.GetStaticRouteConfigs() {
			d.Routes, err = unpack(d.Routes, r.GetRouteConfig(), err)
		}
		for _, r := range s.GetDynamicRouteConfigs() {
			d.Routes, err = unpack(d.Routes, r.GetRouteConfig(), err)
		}
	}
	if err != nil {
		return fmt.Errorf("read config dump: %w", err)
	}
	return nil
}

// unpack appends the resource in a (none when nil) to list; the first
// error is kept.
func unpack[T any, PT interface {
	*T
	proto.Message
}](list []PT, a *anypb.Any, err error) ([]PT, error) {
	if a == nil {
		return list, err
	}
	m := PT(new(T))
	if uerr := a.UnmarshalTo(m); uerr != nil {
		if err == nil {
			err = uerr
		}
		return list, err
	}
	return append(list, m), err
}

// EnvoyClusterRow is one Envoy cluster in 'proxy-config clusters'.
type EnvoyClusterRow struct {
	Name             string `json:"name"`
	Direction        string `json:"direction,omitempty"`
	Service          string `json:"service,omitempty"`
	Port             string `json:"port,omitempty"`
	Type             string `json:"type"`
	LbPolicy         string `json:"lbPolicy"`
	LocalityWeighted bool   `json:"localityWeighted"`
	Protocol         string `json:"protocol"`
	OutlierDetection bool   `json:"outlierDetection"`
}

// splitClusterName reads fleetmesh's cluster names: direction|port||fqdn.
func splitClusterName(name string) (direction, port, service string) {
	parts := strings.Split(name, "|")
	if len(parts) != 4 {
		return "", "", ""
	}
	return parts[0], parts[1], parts[3]
}

// EnvoyClusterRows turns the dump's clusters into table rows.
func (d *ConfigDump) EnvoyClusterRows() []EnvoyClusterRow {
	var rows []EnvoyClusterRow
	for _, c := range d.Clusters {
		r := EnvoyClusterRow{Name: c.GetName(), LbPolicy: c.GetLbPolicy().String(), Protocol: "HTTP/1.1", OutlierDetection: c.GetOutlierDetection() != nil}
		r.Direction, r.Port, r.Service = splitClusterName(c.GetName())
		r.Type = c.GetType().String()
		if c.GetClusterDiscoveryType() == nil {
			r.Type = "STATIC" // the proto default
		}
		r.LocalityWeighted = c.GetCommonLbConfig().GetLocalityWeightedLbConfig() != nil
		if a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; a != nil {
			opts := &upstreamhttpv3.HttpProtocolOptions{}
			if a.UnmarshalTo(opts) == nil && opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil {
				r.Protocol = "HTTP/2"
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// EndpointRow is one endpoint in 'proxy-config endpoints'.
type EndpointRow struct {
	Endpoint string `json:"endpoint"`
	Hostname string `json:"hostname,omitempty"`
	// Cluster is the fleet cluster the endpoint lives in (the locality's
	// sub-zone).
	Cluster  string `json:"cluster"`
	Region   string `json:"region,omitempty"`
	Zone     string `json:"zone,omitempty"`
	Priority uint32 `json:"priority"`
	Weight   uint32 `json:"weight"`
	Health   string `json:"health"`
	// EnvoyCluster is the Envoy cluster (service port) the endpoint serves.
	EnvoyCluster string `json:"envoyCluster"`
}

// EndpointRows turns the dump's endpoints into table rows, in priority
// order within each Envoy cluster.
func (d *ConfigDump) EndpointRows() []EndpointRow {
	var rows []EndpointRow
	for _, cla := range d.Endpoints {
		eps := slices.Clone(cla.GetEndpoints())
		slices.SortStableFunc(eps, func(a, b *endpointv3.LocalityLbEndpoints) int {
			return int(a.GetPriority()) - int(b.GetPriority())
		})
		for _, loc := range eps {
			for _, lb := range loc.GetLbEndpoints() {
				ep := lb.GetEndpoint()
				rows = append(rows, EndpointRow{
					Endpoint:     socketAddress(ep.GetAddress()),
					Hostname:     ep.GetHostname(),
					Cluster:      loc.GetLocality().GetSubZone(),
					Region:       loc.GetLocality().GetRegion(),
					Zone:         loc.GetLocality().GetZone(),
					Priority:     loc.GetPriority(),
					Weight:       loc.GetLoadBalancingWeight().GetValue(),
					Health:       lb.GetHealthStatus().String(),
					EnvoyCluster: cla.GetClusterName(),
				})
			}
		}
	}
	return rows
}

func socketAddress(a *corev3.Address) string {
	if p := a.GetPipe(); p != nil {
		return "unix://" + p.GetPath()
	}
	s := a.GetSocketAddress()
	if s == nil {
		return "<none>"
	}
	return net.JoinHostPort(s.GetAddress(), strconv.Itoa(int(s.GetPortValue())))
}

// ListenerRow is one listener in 'proxy-config listeners'.
type ListenerRow struct {
	Name        string `json:"name"`
	Address     string `json:"address"`
	Type        string `json:"type"`
	Destination string `json:"destination"`
}

// ListenerRows turns the dump's listeners into table rows: one per filter
// chain, with where it sends traffic (a route configuration or a cluster).
func (d *ConfigDump) ListenerRows() []ListenerRow {
	var rows []ListenerRow
	for _, l := range d.Listeners {
		addr := socketAddress(l.GetAddress())
		if api := l.GetApiListener().GetApiListener(); api != nil {
			hcm := &hcmv3.HttpConnectionManager{}
			dest := "<none>"
			if api.UnmarshalTo(hcm) == nil {
				dest = hcmDestination(hcm)
			}
			rows = append(rows, ListenerRow{Name: l.GetName(), Address: "<api listener>", Type: "gRPC", Destination: dest})
			continue
		}
		for _, fc := range l.GetFilterChains() {
			r := ListenerRow{Name: l.GetName(), Address: addr, Type: "?", Destination: "<none>"}
			for _, f := range fc.GetFilters() {
				hcm, tcp := &hcmv3.HttpConnectionManager{}, &tcpproxyv3.TcpProxy{}
				switch {
				case f.GetTypedConfig().UnmarshalTo(hcm) == nil:
					r.Type, r.Destination = "HTTP", hcmDestination(hcm)
				case f.GetTypedConfig().UnmarshalTo(tcp) == nil:
					r.Type, r.Destination = "TCP", "cluster "+tcp.GetCluster()
				}
			}
			if m := fc.GetFilterChainMatch(); len(m.GetServerNames()) > 0 {
				r.Type += " (SNI " + strings.Join(m.GetServerNames(), ",") + ")"
			}
			rows = append(rows, r)
		}
	}
	return rows
}

func hcmDestination(h *hcmv3.HttpConnectionManager) string {
	if rds := h.GetRds(); rds != nil {
		return "route " + rds.GetRouteConfigName()
	}
	if rc := h.GetRouteConfig(); rc != nil {
		return "inline route " + orNone(rc.GetName())
	}
	return "<none>"
}

// RouteRow is one route in 'proxy-config routes'.
type RouteRow struct {
	RouteConfig string   `json:"routeConfig"`
	VirtualHost string   `json:"virtualHost"`
	Domains     []string `json:"domains"`
	Match       string   `json:"match"`
	Action      string   `json:"action"`
}

// RouteRows turns the dump's route configurations, and the ones inlined in
// listeners, into table rows.
func (d *ConfigDump) RouteRows() []RouteRow {
	configs := slices.Clone(d.Routes)
	for _, l := range d.Listeners {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig().UnmarshalTo(hcm) == nil && hcm.GetRouteConfig() != nil {
					configs = append(configs, hcm.GetRouteConfig())
				}
			}
		}
	}
	var rows []RouteRow
	for _, rc := range configs {
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				rows = append(rows, RouteRow{
					RouteConfig: orNone(rc.GetName()), VirtualHost: vh.GetName(), Domains: vh.GetDomains(),
					Match: routeMatch(r.GetMatch()), Action: routeAction(r),
				})
			}
		}
	}
	return rows
}

func routeMatch(m *routev3.RouteMatch) string {
	var s string
	switch {
	case m.GetPrefix() != "":
		s = m.GetPrefix() + "*"
	case m.GetPath() != "":
		s = m.GetPath()
	case m.GetPathSeparatedPrefix() != "":
		s = m.GetPathSeparatedPrefix() + "[/*]"
	case m.GetSafeRegex() != nil:
		s = "~" + m.GetSafeRegex().GetRegex()
	default:
		s = "/*"
	}
	if m.GetGrpc() != nil {
		s += " (gRPC)"
	}
	return s
}

func routeAction(r *routev3.Route) string {
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		if c := a.Route.GetCluster(); c != "" {
			return c
		}
		if wc := a.Route.GetWeightedClusters(); wc != nil {
			var parts []string
			for _, c := range wc.GetClusters() {
				parts = append(parts, fmt.Sprintf("%s:%d", c.GetName(), c.GetWeight().GetValue()))
			}
			return strings.Join(parts, ",")
		}
		return "<route>"
	case *routev3.Route_Redirect:
		return "redirect"
	case *routev3.Route_DirectResponse:
		return fmt.Sprintf("direct response %d", a.DirectResponse.GetStatus())
	}
	return "<none>"
}

// json returns the dump's resources of one kind as protojson objects.
func resourcesJSON[T proto.Message](items []T) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(items))
	for _, m := range items {
		data, err := protojson.Marshal(m)
		if err != nil {
			return nil, err
		}
		out = append(out, data)
	}
	return out, nil
}
