package translate

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

func translateCase(t *testing.T, name string) *Resources {
	t.Helper()
	c := loadCase(t, filepath.Join("testdata", name+".in.yaml"))
	res, err := Translate(&c.Mesh, &c.Proxy)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func mustWalk(t *testing.T, r *Resources, req request) walk {
	t.Helper()
	w, err := walkRequest(r, req)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// curlHTTPBin is the article's `curl http://httpbin.httpbin:8080/` from the
// curl pod in cluster-2.
var curlHTTPBin = request{port: 8080, authority: "httpbin.httpbin:8080", path: "/"}

func TestArticleRequestsLandWhereTheArticleSays(t *testing.T) {
	approx := cmpopts.EquateApprox(0, 1e-9)
	tests := []struct {
		name       string
		golden     string
		req        request
		wantTiers  [][]string
		wantShares map[string]float64
	}{
		{
			name:   "Locality with no httpbin in cluster-2: no endpoint, the call fails",
			golden: "article-1-locality", req: curlHTTPBin,
		},
		{
			name:   "FailOver with no httpbin in cluster-2: calls alternate between cluster-1 and cluster-3",
			golden: "article-2-failover", req: curlHTTPBin,
			wantTiers:  [][]string{{"cluster-1", "cluster-3"}},
			wantShares: map[string]float64{"cluster-1": 0.5, "cluster-3": 0.5},
		},
		{
			name:   "FailOver with httpbin deployed in cluster-2: every call stays local, the others wait in tier 1",
			golden: "article-3-failover-local", req: curlHTTPBin,
			wantTiers:  [][]string{{"cluster-2"}, {"cluster-1", "cluster-3"}},
			wantShares: map[string]float64{"cluster-2": 1},
		},
		{
			name:   "ActiveActive: calls spread over all three clusters",
			golden: "article-4-activeactive", req: curlHTTPBin,
			wantTiers:  [][]string{{"cluster-2", "cluster-1", "cluster-3"}},
			wantShares: map[string]float64{"cluster-1": 1.0 / 3, "cluster-2": 1.0 / 3, "cluster-3": 1.0 / 3},
		},
		{
			name:   "ActiveActive with weights: cluster-2 3, cluster-1 2, cluster-3 dropped",
			golden: "activeactive-weights", req: curlHTTPBin,
			wantTiers:  [][]string{{"cluster-2", "cluster-1"}},
			wantShares: map[string]float64{"cluster-2": 0.6, "cluster-1": 0.4},
		},
		{
			name:   "FailOver tiers follow the targets' priorities",
			golden: "failover-priority-tiers", req: curlHTTPBin,
			wantTiers:  [][]string{{"cluster-2"}, {"cluster-1"}, {"cluster-3"}, {"cluster-4"}},
			wantShares: map[string]float64{"cluster-2": 1},
		},
		{
			name:   "FailOver whose local pod is not ready goes straight to the targets",
			golden: "failover-no-ready-local", req: curlHTTPBin,
			wantTiers:  [][]string{{"cluster-1", "cluster-3"}},
			wantShares: map[string]float64{"cluster-1": 0.5, "cluster-3": 0.5},
		},
		{
			name:   "a proxyless gRPC client under ActiveActive with cluster-1 at weight 2 splits 25/50/25",
			golden: "proxyless-activeactive", req: request{target: "greeter.greeter.svc.cluster.local:50051", authority: "greeter.greeter.svc.cluster.local:50051", path: "/helloworld.Greeter/SayHello"},
			wantTiers:  [][]string{{"cluster-2", "cluster-1", "cluster-3"}},
			wantShares: map[string]float64{"cluster-2": 0.25, "cluster-1": 0.5, "cluster-3": 0.25},
		},
		{
			name:   "a proxyless gRPC client under Locality with no local backend gets an empty assignment",
			golden: "proxyless-locality", req: request{target: "greeter.greeter.svc.cluster.local:50051", authority: "greeter.greeter.svc.cluster.local:50051", path: "/"},
		},
		{
			name:   "a headless TCP service fails over to a shared-network pod, never a gateway",
			golden: "headless", req: request{port: 5432},
			wantTiers:  [][]string{{"cluster-2"}, {"cluster-1"}},
			wantShares: map[string]float64{"cluster-2": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := mustWalk(t, translateCase(t, tt.golden), tt.req)
			if diff := cmp.Diff(tt.wantTiers, w.ClustersByTier()); diff != "" {
				t.Errorf("tiers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantShares, w.Shares(), approx); diff != "" {
				t.Errorf("shares (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFailOverCrossesToTheRemoteGatewayAndOnToItsPod follows the article's
// FailOver call end to end: the sidecar in cluster-2 sends it to cluster-1's
// gateway with the Host it routes by, and cluster-1's gateway sends it to
// cluster-1's ready httpbin pod, never onwards.
func TestFailOverCrossesToTheRemoteGatewayAndOnToItsPod(t *testing.T) {
	w := mustWalk(t, translateCase(t, "article-2-failover"), curlHTTPBin)
	if !w.AutoHost {
		t.Fatal("the sidecar route does not rewrite Host to the gateway endpoint's hostname")
	}
	var hop walkEndpoint
	for _, l := range w.Tiers[0] {
		if l.Cluster == "cluster-1" {
			hop = l.Endpoints[0]
		}
	}
	if hop.Address != "192.168.1.110:81" || hop.Hostname != "httpbin.httpbin.svc.cluster.local:8080" {
		t.Fatalf("cluster-1 is reached at %+v, want its gateway 192.168.1.110:81 with Host httpbin.httpbin.svc.cluster.local:8080", hop)
	}
	gw := mustWalk(t, translateCase(t, "gateway-north-south"), request{port: 81, authority: hop.Hostname, path: "/get"})
	if gw.Cluster != "local|8080||httpbin.httpbin.svc.cluster.local" || gw.Path != "/get" {
		t.Fatalf("cluster-1's gateway sent it to %s %s", gw.Cluster, gw.Path)
	}
	want := [][]walkLocality{{{Cluster: "cluster-1", Weight: 1, Endpoints: []walkEndpoint{{Address: "10.244.1.11:8080"}}}}}
	if diff := cmp.Diff(want, gw.Tiers); diff != "" {
		t.Fatalf("cluster-1's gateway must reach only cluster-1's ready pod (-want +got):\n%s", diff)
	}
}

func TestGatewayNorthSouthPaths(t *testing.T) {
	r := translateCase(t, "gateway-north-south")
	tests := []struct {
		path, wantCluster, wantPath string
	}{
		{"/cluster-1/httpbin-mesh", "local|8080||httpbin.httpbin.svc.cluster.local", "/"},
		{"/cluster-1/httpbin-mesh/", "local|8080||httpbin.httpbin.svc.cluster.local", "/"},
		{"/cluster-1/httpbin-mesh/get?x=1", "local|8080||httpbin.httpbin.svc.cluster.local", "/get?x=1"},
		{"/cluster-1/httpbin-mesh-cluster-1", "local|8080||httpbin-cluster-1.httpbin.svc.cluster.local", "/"},
		{"/shop/health", "local|80||api.shop.svc.cluster.local", "/api/"},
		{"/shop/orders/7", "local|80||api.shop.svc.cluster.local", "/api/orders/7"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			w := mustWalk(t, r, request{port: 81, authority: "192.168.1.110:81", path: tt.path})
			if w.Cluster != tt.wantCluster || w.Path != tt.wantPath {
				t.Fatalf("got %s %s, want %s %s", w.Cluster, w.Path, tt.wantCluster, tt.wantPath)
			}
		})
	}
	for _, path := range []string{"/cluster-1/httpbin-meshx", "/cluster-2/httpbin-mesh", "/"} {
		if w, err := walkRequest(r, request{port: 81, authority: "192.168.1.110:81", path: path}); err == nil {
			t.Errorf("%s reached %s; want 404", path, w.Cluster)
		}
	}
}

func TestSidecarAnswersEveryNameFormOfAService(t *testing.T) {
	r := translateCase(t, "article-2-failover")
	for _, authority := range []string{
		"httpbin.httpbin", "httpbin.httpbin:8080", "httpbin.httpbin.svc", "httpbin.httpbin.svc:8080",
		"httpbin.httpbin.svc.cluster.local", "HTTPBIN.httpbin.svc.cluster.local:8080", "10.96.0.30:8080",
	} {
		w, err := walkRequest(r, request{port: 8080, authority: authority, path: "/"})
		if err != nil || w.Cluster != "outbound|8080||httpbin.httpbin.svc.cluster.local" {
			t.Errorf("%s: got %q, %v", authority, w.Cluster, err)
		}
	}
	// The bare name is the curl namespace's own only.
	if w, err := walkRequest(r, request{port: 8080, authority: "httpbin:8080", path: "/"}); err == nil {
		t.Errorf("the bare name of another namespace's service reached %s", w.Cluster)
	}
	if w, err := walkRequest(r, request{port: 80, authority: "curl", path: "/"}); err == nil {
		t.Errorf("port 80 is the curl pod's own, yet an outbound route took it to %s", w.Cluster)
	}
}

func TestUnmatchedTargetsAreReported(t *testing.T) {
	c := loadCase(t, filepath.Join("testdata", "unknown-target.in.yaml"))
	i := slices.IndexFunc(c.Mesh.Services, func(s model.Service) bool { return s.Key() == "httpbin/httpbin" })
	if i < 0 {
		t.Fatal("no httpbin in the case")
	}
	svc := &c.Mesh.Services[i]
	want := []string{"default/default/default/cluster-9", "us/east/default/cluster-3"}
	if diff := cmp.Diff(want, c.Mesh.UnmatchedTargets(svc)); diff != "" {
		t.Fatalf("the policy's status (-want +got):\n%s", diff)
	}
	// Placement ignores exactly those (one rule for both).
	if diff := cmp.Diff(want, Place(&c.Mesh, svc, &svc.Ports[0]).Unmatched); diff != "" {
		t.Fatalf("placement (-want +got):\n%s", diff)
	}
	w := mustWalk(t, translateCase(t, "unknown-target"), curlHTTPBin)
	if diff := cmp.Diff([][]string{{"cluster-1"}}, w.ClustersByTier()); diff != "" {
		t.Fatalf("only the matched target serves (-want +got):\n%s", diff)
	}
}

func TestSharedNetworkRemoteIsReachedPodToPod(t *testing.T) {
	w := mustWalk(t, translateCase(t, "shared-network-remote"), curlHTTPBin)
	for _, l := range w.Tiers[0] {
		for _, e := range l.Endpoints {
			viaGateway := e.Hostname != ""
			if wantGateway := l.Cluster == "cluster-3"; viaGateway != wantGateway {
				t.Errorf("%s endpoint %s: through a gateway = %v, want %v", l.Cluster, e.Address, viaGateway, wantGateway)
			}
			if l.Cluster == "cluster-1" && !strings.HasPrefix(e.Address, "10.244.1.") {
				t.Errorf("cluster-1 endpoint %s is not a pod address", e.Address)
			}
		}
	}
}

// TestABadPathLeavesTheGatewaysOtherRoutes adds a path Envoy refuses
// (as an Ingress of class fleetmesh could, past the ServiceExport's
// admission): that one route is left out with a warning, and the shared
// route configuration, which Envoy would otherwise refuse whole, keeps
// every other export's paths.
func TestABadPathLeavesTheGatewaysOtherRoutes(t *testing.T) {
	c := loadCase(t, filepath.Join("testdata", "gateway-north-south.in.yaml"))
	for i := range c.Mesh.Services {
		if s := &c.Mesh.Services[i]; s.Export != nil && len(s.Export.Rules) > 0 {
			bad := s.Export.Rules[0]
			bad.Path = "/x?y"
			s.Export.Rules = append(s.Export.Rules, bad)
			break
		}
	}
	r, err := Translate(&c.Mesh, &c.Proxy)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatalf("the gateway's resources do not validate: %v", err)
	}
	if !slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, `"/x?y" is left out`) }) {
		t.Errorf("no warning names the bad path: %q", r.Warnings)
	}
	for _, path := range []string{"/cluster-1/httpbin-mesh", "/shop/health"} {
		if _, err := walkRequest(r, request{port: 81, authority: "192.168.1.110:81", path: path}); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}
