package translate

import (
	"fmt"
	"testing"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// choices draws small numbers from fuzz input, zeros once it runs out.
type choices struct {
	data []byte
}

func (c *choices) n(max int) int {
	if len(c.data) == 0 || max <= 0 {
		return 0
	}
	v := int(c.data[0])
	c.data = c.data[1:]
	return v % max
}

func (c *choices) bool() bool { return c.n(2) == 1 }

// randomMesh builds a valid mesh from fuzz input: up to 5 clusters on
// shared or separate networks, services with HTTP, gRPC and TCP ports,
// endpoints ready or not, local, remote and gateways, every kind of
// policy (targets known and unknown, weights 0..3, priorities) and export
// rules.
func randomMesh(c *choices) *model.Mesh {
	m := &model.Mesh{}
	nClusters := 1 + c.n(5)
	for i := range nClusters {
		cl := model.Cluster{Name: fmt.Sprintf("c%d", i), Region: []string{"", "eu", "us"}[c.n(3)]}
		if c.bool() {
			cl.Network = []string{"a", "b"}[c.n(2)]
		}
		if c.n(4) != 0 {
			cl.Gateway = &model.Address{IP: fmt.Sprintf("10.0.%d.1", i), Port: uint32(80 + c.n(3))}
		}
		m.Clusters = append(m.Clusters, cl)
	}
	m.LocalCluster = m.Clusters[c.n(nClusters)].Name
	protocols := []model.Protocol{model.ProtocolHTTP, model.ProtocolHTTP2, model.ProtocolGRPC, model.ProtocolTCP}
	for s := range c.n(6) {
		svc := model.Service{Namespace: []string{"a", "b"}[c.n(2)], Name: fmt.Sprintf("s%d", s), Headless: c.n(5) == 0}
		if c.bool() {
			svc.VIPs = []string{fmt.Sprintf("10.96.0.%d", s+1)}
		}
		imported := map[string]bool{}
		for p := range 1 + c.n(3) {
			port := model.Port{Port: uint32([]int{80, 8080, 9090}[p]), Protocol: protocols[c.n(4)]}
			for e := range c.n(6) {
				cl := &m.Clusters[c.n(nClusters)]
				ep := model.Endpoint{Cluster: cl.Name, Address: fmt.Sprintf("10.%d.%d.%d", c.n(3)+1, c.n(2), e+1), Port: uint32(8000 + c.n(3)), Ready: c.n(4) != 0}
				if cl.Name != m.LocalCluster && cl.Gateway != nil && c.bool() {
					ep.Address, ep.Port, ep.Gateway = cl.Gateway.IP, cl.Gateway.Port, true
				}
				if cl.Name != m.LocalCluster {
					imported[cl.Name] = true
				}
				port.Endpoints = append(port.Endpoints, ep)
			}
			svc.Ports = append(svc.Ports, port)
		}
		for _, cl := range m.Clusters {
			if imported[cl.Name] {
				svc.ImportedFrom = append(svc.ImportedFrom, cl.Name)
			}
		}
		if kind := c.n(4); kind > 0 {
			svc.Policy = &model.Policy{LbType: []model.LbType{model.Locality, model.FailOver, model.ActiveActive}[kind-1]}
			if svc.Policy.LbType != model.Locality {
				seen := map[string]bool{}
				for range 1 + c.n(4) {
					key := "x/y/z/unknown"
					if c.n(5) != 0 {
						key = m.Clusters[c.n(nClusters)].Key()
					}
					if seen[key] {
						continue
					}
					seen[key] = true
					t := model.Target{ClusterKey: key}
					if c.bool() {
						w := uint32(c.n(4))
						t.Weight = &w
					}
					if svc.Policy.LbType == model.FailOver && c.bool() {
						t.Priority = uint32(1 + c.n(3))
					}
					svc.Policy.Targets = append(svc.Policy.Targets, t)
				}
			}
		}
		if c.bool() {
			svc.Export = &model.Export{LoadBalancer: []string{"", "RoundRobinLoadBalancer", "HashingLoadBalancer", "LeastWorkLoadBalancer"}[c.n(4)]}
			if c.bool() {
				svc.Export.PathRewrite = []string{"/", "/api", "/api/"}[c.n(3)]
			}
			for i, p := range svc.Ports {
				if c.bool() {
					svc.Export.Rules = append(svc.Export.Rules, model.ExportRule{
						Port:     p.Port,
						Path:     fmt.Sprintf("/%s/%s/%d%s", svc.Namespace, svc.Name, i, []string{"", "/"}[c.n(2)]),
						PathType: []model.PathType{"", model.PathPrefix, model.PathExact}[c.n(3)],
					})
				}
			}
		}
		m.Services = append(m.Services, svc)
	}
	return m
}

func FuzzTranslate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{4, 1, 1, 0, 1, 2, 2, 5, 3, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte("the article: three clusters, httpbin exported from two, FailOver and ActiveActive"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &choices{data: data}
		m := randomMesh(c)
		if err := m.Validate(); err != nil {
			t.Skip("generated an invalid mesh:", err)
		}
		ns := []string{"a", "b"}[c.n(2)]
		for _, p := range []*model.Proxy{
			{ID: "sidecar", Role: model.RoleSidecar, Namespace: ns, IP: fmt.Sprintf("10.1.0.%d", c.n(4))},
			{ID: "gateway", Role: model.RoleGateway, IP: "10.0.0.1"},
			{ID: "grpc", Role: model.RoleGRPC, Namespace: ns},
		} {
			res, err := Translate(m, p)
			if err != nil {
				t.Fatalf("%s: %v", p.Role, err)
			}
			checkResources(t, res)
		}
		// Placement invariants: no endpoint that is not ready, weights
		// above zero, the local cluster only in the first tier.
		for i := range m.Services {
			for j := range m.Services[i].Ports {
				pl := Place(m, &m.Services[i], &m.Services[i].Ports[j])
				for tier, locs := range pl.Tiers {
					for _, l := range locs {
						if l.Weight == 0 {
							t.Errorf("a locality of weight 0 in tier %d", tier)
						}
						if tier > 0 && l.Cluster.Name == m.LocalCluster {
							t.Errorf("the local cluster in tier %d", tier)
						}
						for _, e := range l.Endpoints {
							if !e.Ready {
								t.Errorf("endpoint %s is not ready", e.Address)
							}
						}
					}
				}
			}
		}
	})
}
