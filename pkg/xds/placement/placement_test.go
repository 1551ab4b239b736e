package placement

import (
	"strings"
	"testing"

	"k8s.io/utils/ptr"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// explainMesh is cluster-2's view of a service exported by cluster-1
// (through its gateway) and cluster-3 (on cluster-2's network), with an
// HTTP and a TCP port.
func explainMesh(policy *model.Policy) *model.Mesh {
	return &model.Mesh{
		LocalCluster: "cluster-2",
		Clusters: []model.Cluster{
			{Name: "cluster-1", Gateway: &model.Address{IP: "10.0.0.81", Port: 81}},
			{Name: "cluster-2", Network: "lan"},
			{Name: "cluster-3", Network: "lan"},
		},
		Services: []model.Service{{
			Namespace: "shop", Name: "cart", ImportedFrom: []string{"cluster-1", "cluster-3"}, Policy: policy,
			Ports: []model.Port{
				{Port: 8080, Protocol: model.ProtocolHTTP, Endpoints: []model.Endpoint{
					{Cluster: "cluster-1", Address: "10.0.0.81", Port: 81, Ready: true, Gateway: true},
					{Cluster: "cluster-3", Address: "10.3.0.5", Port: 8080, Ready: true},
					{Cluster: "cluster-3", Address: "10.3.0.6", Port: 8080, Ready: false},
				}},
				{Port: 6379, Protocol: model.ProtocolTCP, Endpoints: []model.Endpoint{
					{Cluster: "cluster-1", Address: "10.0.0.81", Port: 81, Ready: true, Gateway: true},
					{Cluster: "cluster-3", Address: "10.3.0.5", Port: 6379, Ready: true},
				}},
			},
		}},
	}
}

func shares(p ExplainedPort) string {
	var out []string
	for _, s := range p.Serving {
		out = append(out, s.Cluster+"@"+string(rune('0'+s.Priority))+" via "+s.Via)
	}
	for _, u := range p.Unused {
		out = append(out, u.Cluster+" unused: "+u.Reason)
	}
	return strings.Join(out, "; ")
}

func TestExplainSaysWhereEachPortGoesAndWhyAClusterIsLeftOut(t *testing.T) {
	for _, tc := range []struct {
		name        string
		policy      *model.Policy
		http, tcp   string
		summarySays string
	}{
		{
			"no policy: Locality, and cluster-2 runs nothing", nil,
			"cluster-1 unused: the policy is Locality: traffic stays in cluster-2; cluster-3 unused: the policy is Locality: traffic stays in cluster-2",
			// Through a gateway a TCP port could not go, whatever the policy.
			"cluster-1 unused: only reachable through its gateway, which cannot route headless services or TCP ports; cluster-3 unused: the policy is Locality: traffic stays in cluster-2",
			"calls fail",
		},
		{
			"ActiveActive with cluster-3 weighed 0", &model.Policy{LbType: model.ActiveActive, Targets: []model.Target{
				{ClusterKey: "default/default/default/cluster-1"}, {ClusterKey: "default/default/default/cluster-3", Weight: ptr.To[uint32](0)},
			}},
			"cluster-1@0 via gateway 10.0.0.81:81; cluster-3 unused: not a target of the GlobalTrafficPolicy (or weight 0)",
			// A TCP port cannot cross through a gateway: cluster-1 is out.
			"cluster-1 unused: only reachable through its gateway, which cannot route headless services or TCP ports; cluster-3 unused: not a target of the GlobalTrafficPolicy (or weight 0)",
			"in proportion to their weights",
		},
		{
			"FailOver with an unknown target", &model.Policy{LbType: model.FailOver, Targets: []model.Target{
				{ClusterKey: "default/default/default/cluster-3"},
				{ClusterKey: "default/default/default/cluster-1", Priority: 2},
				{ClusterKey: "eu/x/y/nowhere"},
			}},
			"cluster-3@0 via pods (shared network); cluster-1@1 via gateway 10.0.0.81:81",
			"cluster-3@0 via pods (shared network); cluster-1 unused: only reachable through its gateway, which cannot route headless services or TCP ports",
			"Ignored targets (no cluster exporting the service): eu/x/y/nowhere",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex, err := Explain(explainMesh(tc.policy), "shop", "cart")
			if err != nil {
				t.Fatal(err)
			}
			if got := shares(ex.Ports[0]); got != tc.http {
				t.Errorf("port 8080:\n got %s\nwant %s", got, tc.http)
			}
			if got := shares(ex.Ports[1]); got != tc.tcp {
				t.Errorf("port 6379:\n got %s\nwant %s", got, tc.tcp)
			}
			if !strings.Contains(ex.Summary, tc.summarySays) {
				t.Errorf("summary %q lacks %q", ex.Summary, tc.summarySays)
			}
		})
	}
	if _, err := Explain(explainMesh(nil), "shop", "checkout"); err == nil || !strings.Contains(err.Error(), "service checkout.shop is neither a Service nor a ServiceImport in cluster cluster-2") {
		t.Errorf("an unknown service: %v", err)
	}
}
