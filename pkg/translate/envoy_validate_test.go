package translate

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/pkg/pki"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// TestGoldenOutputsLoadInEnvoy loads every golden translation into the real
// Envoy (`envoy --mode validate`): proto validation alone misses what Envoy
// refuses at load time (unknown extensions, conflicting options). Dynamic
// resources become static ones in a bootstrap: EDS clusters carry their
// assignment, RDS listeners their routes. Proxyless ApiListeners are left
// out (Envoy takes them only as its own client listener; grpc-go checks
// them), but their routes are loaded through a listener of their own.
func TestGoldenOutputsLoadInEnvoy(t *testing.T) {
	envoy := testenv.EnvoyBinary()
	if _, err := os.Stat(envoy); err != nil {
		t.Fatalf("no Envoy at %s (run `make envoy`): %v", envoy, err)
	}
	for _, in := range goldenCases(t) {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := loadCase(t, in)
			if c.Proxy.IdentityDir != "" {
				// Envoy checks that the SDS files exist.
				c.Proxy.IdentityDir = writeIdentity(t)
			}
			res, err := Translate(&c.Mesh, &c.Proxy)
			if err != nil {
				t.Fatal(err)
			}
			data, err := protojson.Marshal(staticBootstrap(t, res))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "bootstrap.json")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(envoy, "--mode", "validate", "--use-dynamic-base-id", "--log-level", "warn", "-c", path).CombinedOutput()
			if err != nil {
				t.Fatalf("Envoy refused the translation: %v\n%s", err, out)
			}
		})
	}
}

// writeIdentity writes an identity directory as a pod's volume holds it,
// with a certificate of a CA made for the test.
func writeIdentity(t *testing.T) string {
	t.Helper()
	now := time.Now()
	ca, caKey, err := pki.IssueCA("test", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	der, key, err := pki.IssueServing("workload", []string{"localhost"}, now, time.Hour, ca, caKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files, err := bootstrap.IdentityFiles(dir, "spiffe://cluster.local/ns/fleetmesh-system/sa/fleetmesh-controller", pki.PEMKey(key), pki.PEMCert(der), pki.PEMCert(ca.Raw))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// staticBootstrap turns resources into an Envoy bootstrap of static
// resources only.
func staticBootstrap(t *testing.T, r *Resources) *bootstrapv3.Bootstrap {
	t.Helper()
	routes := map[string]*routev3.RouteConfiguration{}
	for _, rc := range r.Routes {
		routes[rc.GetName()] = rc
	}
	cla := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, e := range r.Endpoints {
		cla[e.GetClusterName()] = e
	}
	b := &bootstrapv3.Bootstrap{
		Node:            &corev3.Node{Id: "validate", Cluster: "validate"},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{},
	}
	used := map[string]bool{}
	for _, l := range r.Listeners {
		if l.GetApiListener() != nil || strings.HasPrefix(l.GetName(), "grpc/server?") {
			// A proxyless client's or server's: grpc-go's, not Envoy's.
			continue
		}
		l = proto.Clone(l).(*listenerv3.Listener)
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig().UnmarshalTo(hcm) != nil || hcm.GetRds() == nil {
					continue
				}
				name := hcm.GetRds().GetRouteConfigName()
				used[name] = true
				hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: routes[name]}
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}
			}
		}
		b.StaticResources.Listeners = append(b.StaticResources.Listeners, l)
	}
	port := uint32(20000)
	for _, rc := range r.Routes {
		if used[rc.GetName()] {
			continue
		}
		port++
		b.StaticResources.Listeners = append(b.StaticResources.Listeners,
			listener("routes-"+rc.GetName(), "127.0.0.1", port, hcmFilter("routes", "", rc)))
	}
	for _, c := range r.Clusters {
		c = proto.Clone(c).(*clusterv3.Cluster)
		if upstream := (&tlsv3.UpstreamTlsContext{}); c.GetTransportSocket().GetTypedConfig().UnmarshalTo(upstream) == nil &&
			upstream.GetCommonTlsContext().GetTlsCertificateProviderInstance() != nil {
			// A proxyless client's mTLS, from grpc-go's certificate
			// providers, which Envoy has not: grpc-go is its judge
			// (TestProxylessGoldensAreAcceptedByGRPC).
			c.TransportSocket = nil
		}
		if c.GetEdsClusterConfig() != nil {
			c.EdsClusterConfig = nil
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
			c.LoadAssignment = cla[c.GetName()]
		}
		b.StaticResources.Clusters = append(b.StaticResources.Clusters, c)
	}
	return b
}
