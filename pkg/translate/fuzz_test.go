package translate

import (
	"fmt"
	"testing"

	"github.com/fleetmesh/fleetmesh/pkg/internal/meshgen"
	"github.com/fleetmesh/fleetmesh/pkg/model"
)

func FuzzTranslate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{4, 1, 1, 0, 1, 2, 2, 5, 3, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte("the article: three clusters, httpbin exported from two, FailOver and ActiveActive"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &meshgen.Choices{Data: data}
		m := meshgen.Mesh(c)
		if err := m.Validate(); err != nil {
			t.Skip("generated an invalid mesh:", err)
		}
		ns := []string{"a", "b"}[c.N(2)]
		for _, p := range []*model.Proxy{
			{ID: "sidecar", Role: model.RoleSidecar, Namespace: ns, IP: fmt.Sprintf("10.1.0.%d", c.N(4))},
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
