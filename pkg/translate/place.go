package translate

import (
	"cmp"
	"slices"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// Placement is where the local cluster's traffic for one service port goes:
// tiers of localities by priority (0 first), each locality one cluster with
// its weight and its ready endpoints. Empty localities and tiers are left
// out and priorities run 0..N without gaps, as Envoy and gRPC require.
type Placement struct {
	Tiers [][]Locality
	// Unmatched are the policy's target clusterKeys that name no cluster
	// exporting the service; they are ignored.
	Unmatched []string
}

// Locality is one cluster's share of a tier.
type Locality struct {
	Cluster   *model.Cluster
	Weight    uint32
	Endpoints []model.Endpoint
}

// index holds lookups over one mesh, built once per translation.
type index struct {
	mesh   *model.Mesh
	local  *model.Cluster
	byName map[string]*model.Cluster
	byKey  map[string]*model.Cluster
}

func newIndex(m *model.Mesh) *index {
	ix := &index{
		mesh:   m,
		byName: make(map[string]*model.Cluster, len(m.Clusters)),
		byKey:  make(map[string]*model.Cluster, len(m.Clusters)),
	}
	for i := range m.Clusters {
		c := &m.Clusters[i]
		ix.byName[c.Name] = c
		ix.byKey[c.Key()] = c
	}
	ix.local = ix.byName[m.LocalCluster]
	return ix
}

// Place decides where traffic for the service port goes from the local
// cluster, exactly as the README's policy table says.
func Place(m *model.Mesh, svc *model.Service, port *model.Port) Placement {
	return newIndex(m).place(svc, port)
}

type candidate struct {
	cluster  *model.Cluster
	weight   uint32
	priority uint32
}

func (ix *index) place(svc *model.Service, port *model.Port) Placement {
	var pl Placement
	lbType := model.Locality
	var targets []model.Target
	if svc.Policy != nil {
		lbType, targets = svc.Policy.LbType, svc.Policy.Targets
	}

	// The consumer's own cluster weighs 1 unless a target sets its weight.
	local := candidate{cluster: ix.local, weight: 1}
	var remote []candidate
	for i := range targets {
		t := &targets[i]
		c := ix.byKey[t.ClusterKey]
		if c == nil || !ix.mesh.Serves(svc, c) {
			// The same rule as model.Mesh.UnmatchedTargets, which the
			// policy's status reports.
			pl.Unmatched = append(pl.Unmatched, t.ClusterKey)
			continue
		}
		if c == ix.local {
			local.weight = t.EffectiveWeight()
			continue
		}
		remote = append(remote, candidate{cluster: c, weight: t.EffectiveWeight(), priority: t.EffectivePriority()})
	}

	var tiers [][]candidate
	switch lbType {
	case model.FailOver:
		tiers = append(tiers, []candidate{local})
		slices.SortStableFunc(remote, func(a, b candidate) int { return cmp.Compare(a.priority, b.priority) })
		for i, c := range remote {
			if i == 0 || c.priority != remote[i-1].priority {
				tiers = append(tiers, nil)
			}
			tiers[len(tiers)-1] = append(tiers[len(tiers)-1], c)
		}
	case model.ActiveActive:
		tiers = append(tiers, append([]candidate{local}, remote...))
	default: // Locality
		tiers = append(tiers, []candidate{local})
	}

	ready := ix.readyEndpoints(svc, port)
	type addr struct {
		ip   string
		port uint32
	}
	seen := make(map[addr]bool, len(port.Endpoints))
	for _, tier := range tiers {
		var out []Locality
		for _, c := range tier {
			if c.cluster == nil || c.weight == 0 {
				continue
			}
			var eps []model.Endpoint
			for _, e := range ready[c.cluster.Name] {
				// An address serves once: gRPC refuses duplicates across
				// the whole assignment, so the higher priority keeps it.
				a := addr{e.Address, e.Port}
				if seen[a] {
					continue
				}
				seen[a] = true
				eps = append(eps, e)
			}
			if len(eps) > 0 {
				out = append(out, Locality{Cluster: c.cluster, Weight: c.weight, Endpoints: eps})
			}
		}
		if len(out) > 0 {
			pl.Tiers = append(pl.Tiers, out)
		}
	}
	return pl
}

// readyEndpoints groups the port's ready endpoints by cluster, sorted by
// address. Gateways are left out where a request cannot be routed by its
// authority: headless services and TCP ports cross only on a shared network.
func (ix *index) readyEndpoints(svc *model.Service, port *model.Port) map[string][]model.Endpoint {
	noGateways := svc.Headless || port.Protocol == model.ProtocolTCP
	out := map[string][]model.Endpoint{}
	for _, e := range port.Endpoints {
		if !e.Ready || (e.Gateway && noGateways) {
			continue
		}
		out[e.Cluster] = append(out[e.Cluster], e)
	}
	for _, eps := range out {
		slices.SortFunc(eps, func(a, b model.Endpoint) int {
			return cmp.Or(cmp.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port))
		})
	}
	return out
}

// localOnly is the placement a gateway uses: the local cluster's ready pod
// endpoints, never another gateway, so requests cannot loop between
// clusters.
func (ix *index) localOnly(svc *model.Service, port *model.Port) Placement {
	var eps []model.Endpoint
	for _, e := range ix.readyEndpoints(svc, port)[ix.mesh.LocalCluster] {
		if !e.Gateway {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 || ix.local == nil {
		return Placement{}
	}
	return Placement{Tiers: [][]Locality{{{Cluster: ix.local, Weight: 1, Endpoints: eps}}}}
}
