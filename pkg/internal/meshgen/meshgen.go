// Package meshgen makes random valid meshes from fuzz input, for the
// tests of the packages that translate and serve them: their output for
// any mesh must hold the same invariants.
package meshgen

import (
	"fmt"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// Choices draws small numbers from fuzz input, zeros once it runs out.
type Choices struct {
	Data []byte
}

// N is a number in [0, max).
func (c *Choices) N(max int) int {
	if len(c.Data) == 0 || max <= 0 {
		return 0
	}
	v := int(c.Data[0])
	c.Data = c.Data[1:]
	return v % max
}

// Bool is a coin toss.
func (c *Choices) Bool() bool { return c.N(2) == 1 }

// LoadBalancers are the values of a load balancer type, unset first.
var LoadBalancers = []string{"", model.RoundRobinLoadBalancer, model.HashingLoadBalancer, model.LeastWorkLoadBalancer}

// Mesh builds a valid mesh from fuzz input: up to 5 clusters on
// shared or separate networks, services with HTTP, gRPC and TCP ports,
// endpoints ready or not, local, remote and gateways, every kind of
// policy (targets known and unknown, weights 0..3, priorities) and export
// rules.
func Mesh(c *Choices) *model.Mesh {
	m := &model.Mesh{}
	nClusters := 1 + c.N(5)
	for i := range nClusters {
		cl := model.Cluster{Name: fmt.Sprintf("c%d", i), Region: []string{"", "eu", "us"}[c.N(3)]}
		if c.Bool() {
			cl.Network = []string{"a", "b"}[c.N(2)]
		}
		if c.N(4) != 0 {
			cl.Gateway = &model.Address{IP: fmt.Sprintf("10.0.%d.1", i), Port: uint32(80 + c.N(3))}
		}
		m.Clusters = append(m.Clusters, cl)
	}
	m.LocalCluster = m.Clusters[c.N(nClusters)].Name
	protocols := []model.Protocol{model.ProtocolHTTP, model.ProtocolHTTP2, model.ProtocolGRPC, model.ProtocolTCP}
	for s := range c.N(6) {
		svc := model.Service{Namespace: []string{"a", "b"}[c.N(2)], Name: fmt.Sprintf("s%d", s), Headless: c.N(5) == 0}
		if c.Bool() {
			svc.VIPs = []string{fmt.Sprintf("10.96.0.%d", s+1)}
		}
		imported := map[string]bool{}
		for p := range 1 + c.N(3) {
			port := model.Port{Port: uint32([]int{80, 8080, 9090}[p]), Protocol: protocols[c.N(4)]}
			for e := range c.N(6) {
				cl := &m.Clusters[c.N(nClusters)]
				ep := model.Endpoint{Cluster: cl.Name, Address: fmt.Sprintf("10.%d.%d.%d", c.N(3)+1, c.N(2), e+1), Port: uint32(8000 + c.N(3)), Ready: c.N(4) != 0}
				if cl.Name != m.LocalCluster && cl.Gateway != nil && c.Bool() {
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
		if kind := c.N(4); kind > 0 {
			svc.Policy = &model.Policy{LbType: []model.LbType{model.Locality, model.FailOver, model.ActiveActive}[kind-1]}
			if svc.Policy.LbType != model.Locality {
				seen := map[string]bool{}
				for range 1 + c.N(4) {
					key := "x/y/z/unknown"
					if c.N(5) != 0 {
						key = m.Clusters[c.N(nClusters)].Key()
					}
					if seen[key] {
						continue
					}
					seen[key] = true
					t := model.Target{ClusterKey: key}
					if c.Bool() {
						w := uint32(c.N(4))
						t.Weight = &w
					}
					if svc.Policy.LbType == model.FailOver && c.Bool() {
						t.Priority = uint32(1 + c.N(3))
					}
					svc.Policy.Targets = append(svc.Policy.Targets, t)
				}
			}
		}
		svc.LoadBalancer = LoadBalancers[c.N(4)]
		if c.Bool() {
			svc.Export = &model.Export{LoadBalancer: LoadBalancers[c.N(4)]}
			if c.Bool() {
				svc.Export.PathRewrite = []string{"/", "/api", "/api/"}[c.N(3)]
			}
			for i, p := range svc.Ports {
				if c.Bool() {
					svc.Export.Rules = append(svc.Export.Rules, model.ExportRule{
						Port:     p.Port,
						Path:     fmt.Sprintf("/%s/%s/%d%s", svc.Namespace, svc.Name, i, []string{"", "/"}[c.N(2)]),
						PathType: []model.PathType{"", model.PathPrefix, model.PathExact}[c.N(3)],
					})
				}
			}
		}
		m.Services = append(m.Services, svc)
	}
	return m
}
