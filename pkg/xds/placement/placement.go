// Package placement says where a consumer cluster's calls to a service
// go, as the control plane places them (translate.Place): which clusters
// serve each port, at which priority, through what, with what share, and
// why each other exporter gets nothing. The control plane serves it on
// its debug API (/debug/explain); fleetmesh explain prints it.
package placement

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/fleetmesh/fleetmesh/pkg/model"
	"github.com/fleetmesh/fleetmesh/pkg/translate"
)

// Explanation is where a consumer cluster's traffic for a service goes.
type Explanation struct {
	Service     string `json:"service"`
	Namespace   string `json:"namespace"`
	FromCluster string `json:"fromCluster"`
	// LbType is the consumer's policy for the service (Locality without
	// a GlobalTrafficPolicy).
	LbType    model.LbType `json:"lbType"`
	HasPolicy bool         `json:"hasPolicy"`
	// Exporters are the clusters that serve the service to FromCluster,
	// itself included when it runs the service.
	Exporters        []string        `json:"exporters"`
	Ports            []ExplainedPort `json:"ports"`
	UnmatchedTargets []string        `json:"unmatchedTargets,omitempty"`
	// Callers are the ServiceAccounts (namespace/name) the exporters let
	// call the service, from the serviceAccountName the fleet carries
	// (the oldest export's); empty is anyone.
	Callers []string `json:"callers,omitempty"`
	// MTLSMode is the mode of the service's namespace in FromCluster
	// (the same in every member, by namespace sameness).
	MTLSMode model.MTLSMode `json:"mtlsMode"`
	// Access says, in a sentence, who may call and how.
	Access  string            `json:"access"`
	Summary string            `json:"summary"`
	Objects map[string]string `json:"objects"`
}

// ExplainedPort is one service port's placement.
type ExplainedPort struct {
	Port     uint32         `json:"port"`
	Protocol model.Protocol `json:"protocol"`
	Serving  []Share        `json:"serving"`
	// Unused are exporters that get none of this port's traffic, and why.
	Unused []Unused `json:"unused,omitempty"`
}

// Share is one cluster's part of a port's traffic.
type Share struct {
	Priority   int    `json:"priority"`
	Cluster    string `json:"cluster"`
	ClusterKey string `json:"clusterKey"`
	Via        string `json:"via"`
	Endpoints  int    `json:"endpoints"`
	Weight     uint32 `json:"weight"`
	// Percent of the port's calls the cluster gets while every tier
	// above it is healthy: its share of priority 0, 0 for standby tiers.
	Percent float64 `json:"percent"`
}

// Unused is an exporter left out, and why.
type Unused struct {
	Cluster string `json:"cluster"`
	Reason  string `json:"reason"`
}

// Explain places the service's traffic from the mesh's local cluster with
// the control plane's own placement (translate.Place).
func Explain(mesh *model.Mesh, ns, name string) (*Explanation, error) {
	var svc *model.Service
	for i := range mesh.Services {
		if s := &mesh.Services[i]; s.Namespace == ns && s.Name == name {
			svc = s
		}
	}
	if svc == nil {
		return nil, fmt.Errorf("service %s.%s is neither a Service nor a ServiceImport in cluster %s", name, ns, mesh.LocalCluster)
	}
	byName := map[string]*model.Cluster{}
	for i := range mesh.Clusters {
		byName[mesh.Clusters[i].Name] = &mesh.Clusters[i]
	}
	ex := &Explanation{
		Service: name, Namespace: ns, FromCluster: mesh.LocalCluster, LbType: model.Locality,
		Objects: map[string]string{}, MTLSMode: mesh.MTLSMode(ns, ""),
	}
	if svc.Export != nil {
		ex.Callers = svc.Export.Callers
	}
	if svc.Policy != nil {
		ex.LbType, ex.HasPolicy = svc.Policy.LbType, true
		ex.Objects["globalTrafficPolicy"] = ns + "/" + name
	}
	if len(svc.ImportedFrom) > 0 {
		ex.Objects["serviceImport"] = ns + "/" + name
	}
	for _, p := range svc.Ports {
		for _, e := range p.Endpoints {
			if e.Cluster == mesh.LocalCluster && !e.Gateway {
				ex.Objects["service"] = ns + "/" + name
			}
		}
	}
	exporters := map[string]bool{}
	if ex.Objects["service"] != "" {
		exporters[mesh.LocalCluster] = true
	}
	for _, c := range svc.ImportedFrom {
		exporters[c] = true
	}
	ex.Exporters = slices.Sorted(maps.Keys(exporters))

	for i := range svc.Ports {
		port := &svc.Ports[i]
		pl := translate.Place(mesh, svc, port)
		ex.UnmatchedTargets = pl.Unmatched
		ep := ExplainedPort{Port: port.Port, Protocol: port.Protocol}
		serving := map[string]bool{}
		var total uint32
		if len(pl.Tiers) > 0 {
			for _, l := range pl.Tiers[0] {
				total += l.Weight
			}
		}
		for prio, tier := range pl.Tiers {
			for _, l := range tier {
				serving[l.Cluster.Name] = true
				s := Share{
					Priority: prio, Cluster: l.Cluster.Name, ClusterKey: l.Cluster.Key(),
					Via: via(mesh, l), Endpoints: len(l.Endpoints), Weight: l.Weight,
				}
				if prio == 0 && total > 0 {
					s.Percent = 100 * float64(l.Weight) / float64(total)
				}
				ep.Serving = append(ep.Serving, s)
			}
		}
		for _, c := range ex.Exporters {
			if !serving[c] {
				ep.Unused = append(ep.Unused, Unused{Cluster: c, Reason: unusedReason(mesh, svc, port, c, ex.LbType)})
			}
		}
		ex.Ports = append(ex.Ports, ep)
	}
	ex.Summary = summary(ex)
	return ex, nil
}

func via(mesh *model.Mesh, l translate.Locality) string {
	if l.Cluster.Name == mesh.LocalCluster {
		return "local pods"
	}
	for _, e := range l.Endpoints {
		if e.Gateway {
			return fmt.Sprintf("gateway %s:%d", e.Address, e.Port)
		}
	}
	return "pods (shared network)"
}

// unusedReason says why an exporter gets none of a port's traffic.
func unusedReason(mesh *model.Mesh, svc *model.Service, port *model.Port, cluster string, lb model.LbType) string {
	ready, gateway := 0, false
	for _, e := range port.Endpoints {
		if e.Cluster == cluster && e.Ready {
			ready++
			gateway = gateway || e.Gateway
		}
	}
	switch {
	case ready == 0:
		return "no ready endpoints"
	case gateway && (svc.Headless || port.Protocol == model.ProtocolTCP):
		return "only reachable through its gateway, which cannot route headless services or TCP ports"
	case lb == model.Locality && cluster != mesh.LocalCluster:
		return "the policy is Locality: traffic stays in " + mesh.LocalCluster
	}
	return "not a target of the GlobalTrafficPolicy (or weight 0)"
}

func summary(ex *Explanation) string {
	var b strings.Builder
	policy := "no GlobalTrafficPolicy: Locality"
	if ex.HasPolicy {
		policy = "GlobalTrafficPolicy " + ex.Namespace + "/" + ex.Service + ": " + string(ex.LbType)
	}
	fmt.Fprintf(&b, "%s.%s from %s (%s). ", ex.Service, ex.Namespace, ex.FromCluster, policy)
	served := false
	for _, p := range ex.Ports {
		served = served || len(p.Serving) > 0
	}
	switch {
	case !served && ex.LbType == model.Locality:
		fmt.Fprintf(&b, "%s has no ready endpoint of its own and the policy keeps traffic local: calls fail (HTTP 503, gRPC UNAVAILABLE).", ex.FromCluster)
	case !served:
		b.WriteString("No cluster the policy allows has a ready endpoint: calls fail (HTTP 503, gRPC UNAVAILABLE).")
	case ex.LbType == model.FailOver:
		b.WriteString("Priority 0 takes every call while it has healthy endpoints; when they fail or go, the next priority takes over, its clusters sharing by weight.")
	case ex.LbType == model.ActiveActive:
		b.WriteString("Every call goes to one of the clusters at priority 0, in proportion to their weights.")
	default:
		fmt.Fprintf(&b, "Calls stay in %s.", ex.FromCluster)
	}
	if len(ex.UnmatchedTargets) > 0 {
		fmt.Fprintf(&b, " Ignored targets (no cluster exporting the service): %s.", strings.Join(ex.UnmatchedTargets, ", "))
	}
	return b.String()
}
