package xds

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"

	"github.com/fleetmesh/fleetmesh/pkg/internal/meshgen"
	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// TestIncrementalTranslationEqualsAFreshOne guards the fingerprints that
// let the server translate only the services that changed: for random
// meshes and a random single change, a server that served the first mesh
// and then the second holds, in every shared layer, exactly what a new
// server that served only the second holds.
func TestIncrementalTranslationEqualsAFreshOne(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rng := rand.New(rand.NewPCG(2026, 12))
	compared := 0
	for range 400 {
		data := make([]byte, 256)
		for i := range data {
			data[i] = byte(rng.UintN(256))
		}
		c := &meshgen.Choices{Data: data}
		before := meshgen.Mesh(c)
		if before.Validate() != nil || len(before.Services) == 0 {
			continue
		}
		after, what := changeOne(rng, before)
		if after.Validate() != nil {
			continue
		}
		incremental := NewServer(ctx, Options{Log: logr.Discard()})
		incremental.Update(before)
		incremental.Update(after)
		fresh := NewServer(ctx, Options{Log: logr.Discard()})
		fresh.Update(after)
		for layer, types := range map[string][]string{
			layerOutbound:  {resource.ClusterType, resource.EndpointType},
			layerProxyless: {resource.ListenerType, resource.RouteType},
		} {
			for _, typ := range types {
				got, want := versions(incremental.Cache(), layer, typ), versions(fresh.Cache(), layer, typ)
				for name, v := range want {
					if got[name] != v {
						t.Fatalf("after %s, %s %s in layer %s: incremental version %q, fresh %q", what, typ, name, layer, got[name], v)
					}
				}
				for name := range got {
					if _, ok := want[name]; !ok {
						t.Fatalf("after %s, %s %s in layer %s is left over from the first mesh", what, typ, name, layer)
					}
				}
			}
		}
		compared++
	}
	if compared < 100 {
		t.Fatalf("only %d mesh pairs were valid to compare", compared)
	}
	t.Logf("%d random changes compared", compared)
}

func versions(c *Cache, layer, typ string) map[string]string {
	out := map[string]string{}
	for name, e := range c.View([]string{layer}, typ) {
		out[name] = e.Version
	}
	return out
}

// changeOne returns a copy of m with one random change, and what it was.
func changeOne(rng *rand.Rand, m *model.Mesh) (*model.Mesh, string) {
	data, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	out := &model.Mesh{}
	if err := json.Unmarshal(data, out); err != nil {
		panic(err)
	}
	svc := &out.Services[rng.IntN(len(out.Services))]
	port := &svc.Ports[rng.IntN(len(svc.Ports))]
	switch rng.IntN(11) {
	case 0:
		if len(port.Endpoints) > 0 {
			e := &port.Endpoints[rng.IntN(len(port.Endpoints))]
			e.Ready = !e.Ready
			return out, "an endpoint's readiness changed"
		}
	case 1:
		if len(port.Endpoints) > 0 {
			i := rng.IntN(len(port.Endpoints))
			port.Endpoints = append(port.Endpoints[:i], port.Endpoints[i+1:]...)
			return out, "an endpoint was removed"
		}
	case 2:
		port.Protocol = []model.Protocol{model.ProtocolHTTP, model.ProtocolHTTP2, model.ProtocolGRPC, model.ProtocolTCP}[rng.IntN(4)]
		return out, "a port's protocol changed"
	case 3:
		if svc.Policy == nil {
			svc.Policy = &model.Policy{LbType: model.Locality}
		} else {
			svc.Policy = nil
		}
		return out, "a policy came or went"
	case 4:
		cl := &out.Clusters[rng.IntN(len(out.Clusters))]
		if cl.Gateway != nil {
			cl.Gateway.Port++
			return out, "a cluster's gateway port changed"
		}
		cl.Region = "moved"
		return out, "a cluster's region changed"
	case 5:
		i := rng.IntN(len(out.Services))
		out.Services = append(out.Services[:i], out.Services[i+1:]...)
		return out, "a service was removed"
	case 6:
		if svc.Export != nil {
			svc.Export = nil
			return out, "an export was withdrawn"
		}
		svc.Export = &model.Export{}
		return out, "a service was exported"
	case 7:
		if len(port.Endpoints) > 0 {
			port.Endpoints[rng.IntN(len(port.Endpoints))].Port++
			return out, "an endpoint's port changed"
		}
	case 8:
		if svc.Policy != nil && len(svc.Policy.Targets) > 0 {
			w := uint32(rng.IntN(4))
			svc.Policy.Targets[0].Weight = &w
			return out, "a target's weight changed"
		}
	case 9:
		svc.LoadBalancer = meshgen.LoadBalancers[rng.IntN(len(meshgen.LoadBalancers))]
		return out, "the fleet's load balancer changed"
	case 10:
		if len(port.Endpoints) > 0 {
			e := &port.Endpoints[rng.IntN(len(port.Endpoints))]
			e.MTLS = !e.MTLS
			return out, "an endpoint's pod began or stopped taking mTLS"
		}
	}
	svc.VIPs = append(svc.VIPs, "10.96.9.9")
	return out, "a virtual IP was added"
}
