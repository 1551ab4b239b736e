package translate

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// TestATranslatorTranslatesEveryProxyAsTheFunctionsDo: the server
// translates proxies' own layers through one Translator per mesh (its
// index of endpoints by pod address); what it builds must be what the
// package's functions build for each proxy alone.
func TestATranslatorTranslatesEveryProxyAsTheFunctionsDo(t *testing.T) {
	m := benchMesh(30, 10, 5)
	tr := NewTranslator(m)
	proxies := ownLayerProxies(m, 40)
	if len(proxies) < 20 {
		t.Fatalf("only %d proxies", len(proxies))
	}
	for _, p := range append(proxies, &model.Proxy{ID: "nowhere.ns", Role: model.RoleSidecar, Namespace: "ns", IP: "10.255.0.1"}) {
		grpc := *p
		grpc.Role, grpc.IdentityDir = model.RoleGRPC, "/var/run/identity"
		for _, tc := range []struct {
			what      string
			want, got func() (*Resources, error)
		}{
			{"own", func() (*Resources, error) { return SidecarOwn(m, p) }, func() (*Resources, error) { return tr.SidecarOwn(p) }},
			{"shared", func() (*Resources, error) { return SidecarShared(m, p) }, func() (*Resources, error) { return tr.SidecarShared(p) }},
			{"proxyless server", func() (*Resources, error) { return ProxylessServer(m, &grpc) }, func() (*Resources, error) { return tr.ProxylessServer(&grpc) }},
		} {
			want, err := tc.want()
			if err != nil {
				t.Fatal(err)
			}
			got, err := tc.got()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("%s of %s (%s) differs through the Translator (-functions +translator):\n%s", tc.what, p.ID, p.IP, diff)
			}
		}
	}
}
