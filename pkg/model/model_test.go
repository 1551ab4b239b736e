package model

import (
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

func validMesh() *Mesh {
	return &Mesh{
		LocalCluster: "cluster-2",
		Clusters: []Cluster{
			{Name: "cluster-1", Gateway: &Address{IP: "192.168.1.110", Port: 81}},
			{Name: "cluster-2", Gateway: &Address{IP: "192.168.1.110", Port: 82}},
		},
		Services: []Service{{
			Namespace: "httpbin", Name: "httpbin",
			Ports: []Port{{Port: 8080, Protocol: ProtocolHTTP, Endpoints: []Endpoint{
				{Cluster: "cluster-1", Address: "192.168.1.110", Port: 81, Ready: true, Gateway: true},
				{Cluster: "cluster-2", Address: "10.244.2.11", Port: 8080, Ready: true},
			}}},
			ImportedFrom: []string{"cluster-1"},
			Policy:       &Policy{LbType: FailOver, Targets: []Target{{ClusterKey: "default/default/default/cluster-1"}}},
			Export:       &Export{Rules: []ExportRule{{Port: 8080, Path: "/cluster-2/httpbin", PathType: PathPrefix}}},
		}},
	}
}

func TestAValidMeshValidates(t *testing.T) {
	if err := validMesh().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m *Mesh)
		want   string
	}{
		{"the local cluster must be known", func(m *Mesh) { m.LocalCluster = "cluster-9" }, `localCluster: "cluster-9" is not among clusters`},
		{"cluster names are unique", func(m *Mesh) { m.Clusters[1].Name = "cluster-1" }, `clusters[1].name: "cluster-1" is listed twice`},
		{"a gateway has an IP", func(m *Mesh) { m.Clusters[0].Gateway.IP = "cluster-A.host" }, `clusters[0].gateway.ip: "cluster-A.host" is not an IP address`},
		{"an endpoint's cluster is known", func(m *Mesh) { m.Services[0].Ports[0].Endpoints[0].Cluster = "x" }, `services[0].ports[0].endpoints[0].cluster: "x" is not among clusters`},
		{"an endpoint has an IP", func(m *Mesh) { m.Services[0].Ports[0].Endpoints[1].Address = "pod" }, `services[0].ports[0].endpoints[1].address: "pod" is not an IP address`},
		{"the local cluster has no gateway endpoint", func(m *Mesh) { m.Services[0].Ports[0].Endpoints[1].Gateway = true }, `services[0].ports[0].endpoints[1].gateway`},
		{"a port is 1-65535", func(m *Mesh) { m.Services[0].Ports[0].Port = 0 }, `services[0].ports[0].port: 0 is not a port`},
		{"a protocol is known", func(m *Mesh) { m.Services[0].Ports[0].Protocol = "udp" }, `services[0].ports[0].protocol: "udp"`},
		{"FailOver needs targets", func(m *Mesh) { m.Services[0].Policy.Targets = nil }, `services[0].policy.targets: FailOver needs at least one target`},
		{"Locality takes none", func(m *Mesh) { m.Services[0].Policy.LbType = Locality }, `services[0].policy.targets: must be empty for Locality`},
		{"a clusterKey has four parts", func(m *Mesh) { m.Services[0].Policy.Targets[0].ClusterKey = "cluster-1" }, `services[0].policy.targets[0].clusterKey: "cluster-1" is not region/zone/group/name`},
		{"priority is FailOver's", func(m *Mesh) {
			m.Services[0].Policy.LbType = ActiveActive
			m.Services[0].Policy.Targets[0].Priority = 2
		}, `services[0].policy.targets[0].priority: is only for FailOver`},
		{"weights are bounded", func(m *Mesh) { m.Services[0].Policy.Targets[0].Weight = ptr(uint32(5000)) }, `services[0].policy.targets[0].weight: 5000 is more than 1000`},
		{"an export rule's port is the service's", func(m *Mesh) { m.Services[0].Export.Rules[0].Port = 9090 }, `services[0].export.rules[0].port: 9090 is not a port of the service`},
		{"an export rule's path starts with /", func(m *Mesh) { m.Services[0].Export.Rules[0].Path = "x" }, `services[0].export.rules[0].path: "x" must start with /`},
		{"imports come from other clusters", func(m *Mesh) { m.Services[0].ImportedFrom = []string{"cluster-2"} }, `services[0].importedFrom[0]: "cluster-2" is the local cluster`},
		{"services are unique", func(m *Mesh) { m.Services = append(m.Services, m.Services[0]) }, `services[1]: service httpbin/httpbin is listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validMesh()
			tt.mutate(m)
			err := m.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestProtocolFor(t *testing.T) {
	tests := []struct {
		name        string
		appProtocol *string
		want        Protocol
	}{
		{"", nil, ProtocolHTTP}, // the article's httpbin:8080 has no name
		{"http", nil, ProtocolHTTP},
		{"grpc", nil, ProtocolGRPC},
		{"grpc-web", nil, ProtocolGRPC},
		{"http2-api", nil, ProtocolHTTP2},
		{"tcp-postgres", nil, ProtocolTCP},
		{"postgres", nil, ProtocolHTTP},
		{"web", ptr("grpc"), ProtocolGRPC},
		{"grpc", ptr("kubernetes.io/h2c"), ProtocolHTTP2},
		{"http", ptr("tcp"), ProtocolTCP},
	}
	for _, tt := range tests {
		if got := ProtocolFor(tt.name, tt.appProtocol); got != tt.want {
			t.Errorf("ProtocolFor(%q, %v) = %q, want %q", tt.name, tt.appProtocol, got, tt.want)
		}
	}
}

func TestClusterKeyAndNetworks(t *testing.T) {
	a := Cluster{Name: "cluster-1"}
	b := Cluster{Name: "cluster-2", Region: "eu", Zone: "eu-1", Group: "prod", Network: "n"}
	c := Cluster{Name: "cluster-3", Network: "n"}
	if a.Key() != "default/default/default/cluster-1" || b.Key() != "eu/eu-1/prod/cluster-2" {
		t.Fatalf("keys %q %q", a.Key(), b.Key())
	}
	if !b.SharesNetworkWith(&c) || a.SharesNetworkWith(&b) || !a.SharesNetworkWith(&a) {
		t.Fatal("network sharing is wrong")
	}
	if (&Cluster{Name: "x"}).SharesNetworkWith(&Cluster{Name: "y"}) {
		t.Fatal("two clusters without a network share one")
	}
}

func TestABadServiceIsItsOwnProblem(t *testing.T) {
	m := validMesh()
	bad := m.Services[0]
	bad.Name = "ledger"
	bad.Ports = append(bad.Ports, Port{Name: "grpc", Port: 9090, Protocol: ProtocolGRPC}, Port{Name: "grpc", Port: 9091, Protocol: ProtocolGRPC})
	m.Services = append(m.Services, bad)
	p := m.Problems()
	if p.Mesh != nil {
		t.Errorf("the mesh as a whole: %v", p.Mesh)
	}
	if err := p.Services["httpbin/ledger"]; err == nil || !strings.Contains(err.Error(), `services[1].ports[2].name: "grpc" is listed twice`) {
		t.Errorf("ledger's problem: %v", err)
	}
	if err := p.Services["httpbin/httpbin"]; err != nil {
		t.Errorf("httpbin, which is fine: %v", err)
	}
	m.LocalCluster = "nowhere"
	if p := m.Problems(); p.Mesh == nil || !strings.Contains(p.Mesh.Error(), "localCluster") {
		t.Errorf("an unknown local cluster concerns the whole mesh: %v", p.Mesh)
	}
}
