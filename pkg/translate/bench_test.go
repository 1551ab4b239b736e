package translate

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// benchMesh is the fleet of the translator's performance target: 10,000
// services with 50 endpoints each over 5 clusters (10 per cluster; remote
// clusters 1 and 2 share the local network, 3 and 4 are reached through
// their gateways), a third without policy, a third FailOver, a third
// ActiveActive, a tenth exported.
func benchMesh(services, endpoints, clusters int) *model.Mesh {
	m := &model.Mesh{LocalCluster: "cluster-0"}
	for c := range clusters {
		cl := model.Cluster{Name: fmt.Sprintf("cluster-%d", c), Gateway: &model.Address{IP: fmt.Sprintf("192.168.0.%d", c+1), Port: 80}}
		if c < 3 {
			cl.Network = "flat"
		}
		m.Clusters = append(m.Clusters, cl)
	}
	var targets []model.Target
	for c := 1; c < clusters; c++ {
		targets = append(targets, model.Target{ClusterKey: m.Clusters[c].Key()})
	}
	for s := range services {
		svc := model.Service{
			Namespace: fmt.Sprintf("ns-%d", s%100),
			Name:      fmt.Sprintf("svc-%d", s),
			VIPs:      []string{fmt.Sprintf("10.96.%d.%d", s/250, s%250+1)},
		}
		port := model.Port{Port: 8080, Protocol: model.ProtocolHTTP}
		for e := range endpoints {
			c := e % clusters
			cl := &m.Clusters[c]
			idx := s*endpoints + e/clusters
			addr := fmt.Sprintf("10.%d.%d.%d", 100+2*c+idx>>16, (idx>>8)&255, idx&255)
			ep := model.Endpoint{Cluster: cl.Name, Address: addr, Port: 8080, Ready: e%17 != 0}
			if !cl.SharesNetworkWith(&m.Clusters[0]) {
				if e >= clusters { // one gateway endpoint per remote cluster
					continue
				}
				ep = model.Endpoint{Cluster: cl.Name, Address: cl.Gateway.IP, Port: cl.Gateway.Port, Ready: true, Gateway: true}
			}
			port.Endpoints = append(port.Endpoints, ep)
		}
		svc.Ports = []model.Port{port}
		for c := 1; c < clusters; c++ {
			svc.ImportedFrom = append(svc.ImportedFrom, m.Clusters[c].Name)
		}
		switch s % 3 {
		case 1:
			svc.Policy = &model.Policy{LbType: model.FailOver, Targets: targets}
		case 2:
			svc.Policy = &model.Policy{LbType: model.ActiveActive, Targets: targets}
		}
		if s%10 == 0 {
			svc.Export = &model.Export{Rules: []model.ExportRule{{Port: 8080, Path: "/" + svc.Name}}}
		}
		m.Services = append(m.Services, svc)
	}
	return m
}

func marshalAll(b *testing.B, r *Resources) (bytes int) {
	for _, list := range [][]proto.Message{asMessages(r.Listeners), asMessages(r.Routes), asMessages(r.Clusters), asMessages(r.Endpoints)} {
		for _, m := range list {
			data, err := proto.Marshal(m)
			if err != nil {
				b.Fatal(err)
			}
			bytes += len(data)
		}
	}
	return bytes
}

// BenchmarkTranslate translates the 10,000-service fleet for each role and
// reports, beside ns/op, B/op and allocs/op, the time proto.Marshal takes
// over the same output (marshal-ns/op) and the ratio of the two.
func BenchmarkTranslate(b *testing.B) {
	m := benchMesh(10_000, 50, 5)
	if err := m.Validate(); err != nil {
		b.Fatal(err)
	}
	for _, p := range []*model.Proxy{
		{ID: "sidecar", Role: model.RoleSidecar, Namespace: "ns-1", IP: "10.100.0.200"},
		{ID: "gateway", Role: model.RoleGateway, IP: "192.168.0.1"},
		{ID: "grpc", Role: model.RoleGRPC, Namespace: "ns-1"},
	} {
		b.Run(string(p.Role), func(b *testing.B) {
			var marshal time.Duration
			var size int
			b.ReportAllocs()
			for b.Loop() {
				r, err := Translate(m, p)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				start := time.Now()
				size = marshalAll(b, r)
				marshal += time.Since(start)
				b.StartTimer()
			}
			perOp := float64(marshal.Nanoseconds()) / float64(b.N)
			b.ReportMetric(perOp, "marshal-ns/op")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/perOp, "translate/marshal")
			b.ReportMetric(float64(size), "wire-bytes")
		})
	}
}

// BenchmarkPlace measures the policy decision alone for one service port.
func BenchmarkPlace(b *testing.B) {
	m := benchMesh(3, 50, 5)
	ix := newIndex(m)
	for _, svc := range m.Services {
		b.Run(string(policyName(svc.Policy)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ix.place(&svc, &svc.Ports[0])
			}
		})
	}
}

func policyName(p *model.Policy) model.LbType {
	if p == nil {
		return model.Locality
	}
	return p.LbType
}

// ownLayerProxies are sidecars at the addresses of the local cluster's
// endpoints of benchMesh, n of them.
func ownLayerProxies(m *model.Mesh, n int) []*model.Proxy {
	var out []*model.Proxy
	for i := range m.Services {
		for _, e := range m.Services[i].Ports[0].Endpoints {
			if e.Cluster == m.LocalCluster && len(out) < n {
				out = append(out, &model.Proxy{ID: fmt.Sprintf("pod-%d.ns", len(out)), Role: model.RoleSidecar, Namespace: "ns", IP: e.Address})
			}
		}
	}
	return out
}

// BenchmarkOwnLayersOf1000Sidecars translates the own layer (inbound) of
// 1,000 sidecars from one mesh of 1,000 services, as the server does at
// every mesh change: scanning the mesh's endpoints for each proxy, or
// through one Translator's index of them by pod address.
func BenchmarkOwnLayersOf1000Sidecars(b *testing.B) {
	m := benchMesh(1_000, 10, 5)
	proxies := ownLayerProxies(m, 1_000)
	b.Run("scan per proxy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, p := range proxies {
				if _, err := SidecarOwn(m, p); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("translator index", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			t := NewTranslator(m)
			for _, p := range proxies {
				if _, err := t.SidecarOwn(p); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
