// Package article replays the reference article end to end on the fleet
// of test/article: the real federation, member control planes, Envoy
// gateways, httpbin behind inbound sidecars, and the curl pod's sidecar.
package article

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/cli"
	"github.com/fleetmesh/fleetmesh/pkg/xds/placement"
	"github.com/fleetmesh/fleetmesh/test/article"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

var fleet *article.Fleet

// wantImports are cluster-2's imports: the article's three, and grpcbin for
// the proxyless client.
var wantImports = []string{"httpbin/grpcbin", "httpbin/httpbin", "httpbin/httpbin-cluster-1", "httpbin/httpbin-cluster-3"}

func TestMain(m *testing.M) {
	testenv.Main(m, func() int {
		var err error
		fleet, err = article.Start(context.Background(), article.Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer fleet.Stop()
		return m.Run()
	})
}

func TestTheArticle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := article.DeployTheArticle(ctx, fleet); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"cluster-1", "cluster-3"} {
		if _, err := fleet.DeployGRPCBin(ctx, c, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := fleet.StartGRPCClient(); err != nil {
		t.Fatal(err)
	}
	// grpc checks the proxyless client's share of 600 calls beside curl.
	grpc := func(t *testing.T, ok func(map[string]int) bool, shares map[string]float64) {
		t.Helper()
		got, err := fleet.WithinGRPC(ctx, 20*time.Second, 600, ok)
		if err != nil {
			t.Fatalf("grpc-go client: %v", err)
		}
		t.Logf("600 gRPC calls: %v", got)
		for c, min := range shares {
			if share := float64(got[c]) / 600; share < min {
				t.Errorf("grpc-go client: %s got %.0f%%, want at least %.0f%%", c, 100*share, 100*min)
			}
		}
	}
	within := func(t *testing.T, ok func(map[string]int) bool) map[string]int {
		t.Helper()
		got, err := fleet.Within(ctx, 20*time.Second, ok)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("30 calls: %v", got)
		return got
	}

	t.Run("exports become imports in cluster-2", func(t *testing.T) {
		err := testenv.Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
			imports, err := fleet.Imports(ctx)
			return slices.Equal(imports, wantImports), err
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("north-south through each exporter's gateway", func(t *testing.T) {
		for _, c := range []string{"cluster-1", "cluster-3"} {
			addr := article.GatewayAddress(fleet.Cluster(c))
			var body string
			err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
				var err error
				body, err = article.Get(ctx, addr, addr, "/"+c+"/httpbin-mesh")
				return err == nil, nil
			})
			if err != nil || body != "Hi, I am from "+c+" and controlled by mesh!\n" {
				t.Fatalf("curl http://%s/%s/httpbin-mesh: %q %v", addr, c, body, err)
			}
		}
	})
	t.Run("Locality: calls fail", func(t *testing.T) {
		// Failing because the sidecar has httpbin's route and no local
		// endpoint (503), not because it is not configured yet.
		if err := fleet.WaitRouted(ctx); err != nil {
			t.Fatalf("the sidecar never answered 503 for httpbin: %v", err)
		}
		within(t, func(c map[string]int) bool { return c["failed"] == 30 })
		grpc(t, func(c map[string]int) bool { return c["UNAVAILABLE"] == 20 }, nil)

		ex := fleetmeshJSON[placement.Explanation](t, ctx, "control-plane", "explain", "httpbin.httpbin", "--from-cluster", "cluster-2")
		if ex.LbType != "Locality" || len(ex.Ports) != 1 || len(ex.Ports[0].Serving) != 0 || len(ex.Ports[0].Unused) != 2 {
			t.Errorf("explain under Locality: %+v", ex)
		}
		if out := fleetmesh(t, ctx, "control-plane", "explain", "httpbin.httpbin", "--from-cluster", "cluster-2"); !strings.Contains(out, "calls fail") {
			t.Errorf("explain under Locality does not say calls fail:\n%s", out)
		}
	})
	t.Run("FailOver: calls alternate between cluster-1 and cluster-3", func(t *testing.T) {
		if err := fleet.Policy(ctx, fmv1alpha1.FailOverLbType); err != nil {
			t.Fatal(err)
		}
		within(t, func(c map[string]int) bool { return c["cluster-1"] == 15 && c["cluster-3"] == 15 })
		grpc(t, func(c map[string]int) bool { return c["cluster-1"]+c["cluster-3"] == 20 }, map[string]float64{"cluster-1": 0.25, "cluster-3": 0.25})
	})
	t.Run("the MCS API: clusterset.local names, answered by cluster-2's CoreDNS, follow the policy", func(t *testing.T) {
		// The fleetmesh.io exports are the MCS API's too: cluster-2 holds
		// standard ServiceImports, and its CoreDNS, with the Corefile
		// change `fleetmesh dns enable` makes, answers their names with
		// its own Service's address (derived here).
		c2 := fleet.Cluster("cluster-2")
		port, err := testenv.FreeDNSPort()
		if err != nil {
			t.Fatal(err)
		}
		corefile, err := cli.ClustersetCorefile(c2.Corefile(port), cli.ClustersetZone)
		if err != nil {
			t.Fatal(err)
		}
		resolver, err := testenv.StartCoreDNS(ctx, corefile, port)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resolver.Stop() }()
		svc := &corev1.Service{}
		if err := c2.Client.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "httpbin"}, svc); err != nil {
			t.Fatal(err)
		}
		var answer string
		err = testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
			r, err := resolver.Query(ctx, "httpbin.httpbin.svc.clusterset.local.", dns.TypeA)
			if err != nil || len(r.Answer) != 1 {
				return false, err
			}
			answer = r.Answer[0].(*dns.A).A.String()
			return answer == svc.Spec.ClusterIP, nil
		})
		if err != nil {
			t.Fatalf("cluster-2's CoreDNS answers httpbin.httpbin.svc.clusterset.local with %q, want its Service's %s: %v", answer, svc.Spec.ClusterIP, err)
		}
		// curl's sidecar routes the MCS name, and the address it
		// resolves to, by cluster-2's FailOver policy.
		for _, host := range []string{"httpbin.httpbin.svc.clusterset.local:8080", answer + ":8080"} {
			got, err := fleet.WithinHost(ctx, 20*time.Second, host, func(c map[string]int) bool { return c["cluster-1"] == 15 && c["cluster-3"] == 15 })
			if err != nil {
				t.Fatalf("curl http://%s/: %v", host, err)
			}
			t.Logf("30 calls to %s: %v", host, got)
		}
		// A proxyless client dials grpcbin by its MCS name.
		calls, closeClient, err := fleet.GRPCClient("grpc-clusterset-1", article.ClustersetGRPCTarget)
		if err != nil {
			t.Fatal(err)
		}
		defer closeClient()
		got, err := article.WithinGRPCCalls(ctx, 20*time.Second, 200, calls, func(c map[string]int) bool { return c["cluster-1"]+c["cluster-3"] == 20 })
		if err != nil {
			t.Fatalf("grpc-go client of xds:///%s: %v", article.ClustersetGRPCTarget, err)
		}
		if got["cluster-1"] < 50 || got["cluster-3"] < 50 {
			t.Errorf("200 gRPC calls to xds:///%s: %v, want both exporters", article.ClustersetGRPCTarget, got)
		}
	})
	var local, localGRPC article.Stopper
	t.Run("httpbin deployed in cluster-2: every call stays local", func(t *testing.T) {
		var err error
		if local, err = fleet.DeployLocalHTTPBin(ctx); err != nil {
			t.Fatal(err)
		}
		if localGRPC, err = fleet.DeployGRPCBin(ctx, "cluster-2", false); err != nil {
			t.Fatal(err)
		}
		within(t, func(c map[string]int) bool { return c["cluster-2"] == 30 })
		grpc(t, func(c map[string]int) bool { return c["cluster-2"] == 20 }, map[string]float64{"cluster-2": 1})

		// Still FailOver: cluster-2 is priority 0, the exporters wait at 1.
		rows := fleetmeshJSON[[]cli.EndpointRow](t, ctx, "cluster-2", "proxy-config", "endpoints", "curl-1.curl", "--fqdn", "httpbin.httpbin")
		want := []string{
			"cluster-1 default/default priority=1 weight=1",
			"cluster-2 default/default priority=0 weight=1",
			"cluster-3 default/default priority=1 weight=1",
		}
		if got := endpointsOf(rows); !slices.Equal(got, want) {
			t.Errorf("proxy-config endpoints under FailOver:\n got %q\nwant %q", got, want)
		}
		table := fleetmesh(t, ctx, "cluster-2", "proxy-config", "endpoints", "curl-1", "-n", "curl")
		for _, c := range []string{"cluster-1", "cluster-3"} {
			if len(testenv.TableLines(table, c, "default/default", "outbound|8080||httpbin.httpbin")) != 1 {
				t.Errorf("the endpoints table has no row for %s's httpbin:\n%s", c, table)
			}
		}
		ex := fleetmeshJSON[placement.Explanation](t, ctx, "control-plane", "explain", "httpbin.httpbin", "--from-cluster", "cluster-2")
		var tiers []string
		for _, s := range ex.Ports[0].Serving {
			tiers = append(tiers, fmt.Sprintf("%d %s %.0f%% %s", s.Priority, s.Cluster, s.Percent, s.Via))
		}
		wantTiers := []string{
			"0 cluster-2 100% local pods",
			"1 cluster-1 0% gateway " + article.GatewayAddress(fleet.Cluster("cluster-1")),
			"1 cluster-3 0% gateway " + article.GatewayAddress(fleet.Cluster("cluster-3")),
		}
		if !slices.Equal(tiers, wantTiers) {
			t.Errorf("explain under FailOver:\n got %q\nwant %q", tiers, wantTiers)
		}
	})
	t.Run("ActiveActive: calls spread over all three", func(t *testing.T) {
		if err := fleet.Policy(ctx, fmv1alpha1.ActiveActiveLbType); err != nil {
			t.Fatal(err)
		}
		within(t, func(c map[string]int) bool {
			return c["cluster-1"] == 10 && c["cluster-2"] == 10 && c["cluster-3"] == 10
		})
		grpc(t, func(c map[string]int) bool { return c["cluster-1"] > 0 && c["cluster-2"] > 0 && c["cluster-3"] > 0 },
			map[string]float64{"cluster-1": 0.25, "cluster-2": 0.25, "cluster-3": 0.25})
	})
	t.Run("the CLI shows the ActiveActive spread: proxy-config, Envoy's own view, explain, proxy-status", func(t *testing.T) {
		want := []string{
			"cluster-1 default/default priority=0 weight=1",
			"cluster-2 default/default priority=0 weight=1",
			"cluster-3 default/default priority=0 weight=1",
		}
		sent := fleetmeshJSON[[]cli.EndpointRow](t, ctx, "cluster-2", "proxy-config", "endpoints", "curl-1.curl")
		if got := endpointsOf(sent); !slices.Equal(got, want) {
			t.Errorf("proxy-config endpoints under ActiveActive:\n got %q\nwant %q", got, want)
		}
		// What curl's Envoy holds, read from its admin API: directly, and
		// port-forwarded through the API server (and the node's kubelet)
		// as an operator would.
		_, adminPort, _ := strings.Cut(strings.TrimPrefix(fleet.CurlEnvoy.Admin, "http://"), ":")
		for _, how := range [][]string{{"--envoy-admin-url", fleet.CurlEnvoy.Admin}, {"--from-envoy", "--envoy-admin-port", adminPort}} {
			held := fleetmeshJSON[[]cli.EndpointRow](t, ctx, "cluster-2", append([]string{"proxy-config", "endpoints", "curl-1.curl"}, how...)...)
			if got := endpointsOf(held); !slices.Equal(got, want) {
				t.Errorf("what curl's Envoy holds under ActiveActive (%s):\n got %q\nwant %q", how[0], got, want)
			}
		}
		ex := fleetmeshJSON[placement.Explanation](t, ctx, "control-plane", "explain", "httpbin.httpbin", "--from-cluster", "cluster-2")
		for _, s := range ex.Ports[0].Serving {
			if s.Priority != 0 || s.Percent < 33 || s.Percent > 34 {
				t.Errorf("explain under ActiveActive: %+v", s)
			}
		}
		if len(ex.Ports[0].Serving) != 3 {
			t.Errorf("explain under ActiveActive serves from %+v", ex.Ports[0].Serving)
		}
		// From cluster-2's own context (its Cluster is the federation's
		// mirrored copy) the answer is the same.
		if own := fleetmeshJSON[placement.Explanation](t, ctx, "cluster-2", "explain", "httpbin", "-n", "httpbin", "--from-cluster", "cluster-2"); !reflect.DeepEqual(own, ex) {
			t.Errorf("explain from cluster-2's context:\n%+v\nfrom the control plane's:\n%+v", own, ex)
		}

		status := fleetmesh(t, ctx, "cluster-2", "proxy-status")
		for _, want := range [][]string{
			{"curl-1.curl", "cluster-2", "sidecar", "fleetmesh-controller-0"},
			{"gateway.cluster-2", "gateway", "SYNCED"},
			{"grpc-client-1.client", "grpc", "SYNCED"},
		} {
			lines := testenv.TableLines(status, want...)
			if len(lines) != 1 || strings.Count(lines[0], "SYNCED")+strings.Count(lines[0], "NOT SENT") != 4 {
				t.Errorf("proxy-status has no line with %q and every type SYNCED:\n%s", want, status)
			}
		}
		for kind, want := range map[string][]string{
			"clusters":  {"httpbin.httpbin.svc.cluster.local", "8080", "outbound", "EDS", "ROUND_ROBIN", "yes"},
			"listeners": {"outbound|8080", "HTTP", "route outbound|8080|curl"},
			"routes":    {"outbound|8080|curl", "httpbin.httpbin", "outbound|8080||httpbin.httpbin.svc.cluster.local"},
		} {
			out := fleetmesh(t, ctx, "cluster-2", "proxy-config", kind, "curl-1.curl")
			if len(testenv.TableLines(out, want...)) == 0 {
				t.Errorf("proxy-config %s has no line with %q:\n%s", kind, want, out)
			}
		}
		t.Logf("fleetmesh proxy-config endpoints curl-1.curl --fqdn httpbin.httpbin\n%s", fleetmesh(t, ctx, "cluster-2", "proxy-config", "endpoints", "curl-1.curl", "--fqdn", "httpbin.httpbin"))
		t.Logf("fleetmesh explain httpbin.httpbin --from-cluster cluster-2\n%s", fleetmesh(t, ctx, "control-plane", "explain", "httpbin.httpbin", "--from-cluster", "cluster-2"))
		all := fleetmesh(t, ctx, "cluster-2", "proxy-config", "all", "curl-1.curl", "-o", "json")
		if _, err := cli.ParseConfigDump([]byte(all)); err != nil || !strings.Contains(all, "envoy.admin.v3.ClustersConfigDump") {
			t.Errorf("proxy-config all -o json is not a config dump: %v", err)
		}
	})
	t.Run("the per-cluster imports reach only their own cluster", func(t *testing.T) {
		for _, c := range []string{"cluster-1", "cluster-3"} {
			// Both clusters are targets; the one that does not export
			// httpbin-<c> is ignored.
			if err := fleet.PolicyFor(ctx, "httpbin-"+c, fmv1alpha1.ActiveActiveLbType); err != nil {
				t.Fatal(err)
			}
			var got map[string]int
			err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
				got = fleet.CurlService(ctx, "httpbin-"+c, 30)
				return got[c] == 30, nil
			})
			if err != nil {
				t.Fatalf("httpbin-%s: %v", c, got)
			}
		}
	})
	t.Run("remote endpoints are the remote gateways, in the config dump", func(t *testing.T) {
		body, err := article.Get(ctx, fleet.Planes["cluster-2"].DebugAddress, "x", "/debug/config_dump?proxy=curl-1.curl")
		if err != nil {
			t.Fatal(err)
		}
		cla, err := article.DumpedAssignment([]byte(body), "outbound|8080||httpbin.httpbin.svc.cluster.local")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, l := range cla.GetEndpoints() {
			for _, lb := range l.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				got[l.GetLocality().GetSubZone()] = fmt.Sprintf("%s:%d %s", sa.GetAddress(), sa.GetPortValue(), lb.GetEndpoint().GetHostname())
			}
		}
		for _, c := range []string{"cluster-1", "cluster-3"} {
			want := article.GatewayAddress(fleet.Cluster(c)) + " httpbin.httpbin.svc.cluster.local:8080"
			if got[c] != want {
				t.Errorf("%s's endpoint in cluster-2's dump = %q, want its gateway %q", c, got[c], want)
			}
		}
	})
	t.Run("ActiveActive keeps serving while cluster-3's API server is down", func(t *testing.T) {
		c3 := fleet.Cluster("cluster-3")
		if err := c3.FreezeAPIServer(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c3.ThawAPIServer() }()
		err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
			c := &fmv1alpha1.Cluster{}
			if err := fleet.Cluster("control-plane").Client.Get(ctx, client.ObjectKey{Name: "cluster-3"}, c); err != nil {
				return false, err
			}
			return meta.IsStatusConditionFalse(c.Status.Conditions, fmv1alpha1.ConditionReady), nil
		})
		if err != nil {
			t.Fatalf("the federation never saw cluster-3 go: %v", err)
		}
		got := fleet.CurlHTTPBin(ctx, 30)
		if got["cluster-1"] != 10 || got["cluster-2"] != 10 || got["cluster-3"] != 10 {
			t.Errorf("with cluster-3's API server down: %v", got)
		}
		imports, err := fleet.Imports(ctx)
		if err != nil || !slices.Equal(imports, wantImports) {
			t.Errorf("imports in cluster-2 with cluster-3 down: %v %v", imports, err)
		}
		if err := c3.ThawAPIServer(); err != nil {
			t.Fatal(err)
		}
		within(t, func(c map[string]int) bool {
			return c["cluster-1"] == 10 && c["cluster-2"] == 10 && c["cluster-3"] == 10
		})
	})
	t.Run("FailOver with cluster-2's httpbin killed: calls move without failing", func(t *testing.T) {
		if err := fleet.Policy(ctx, fmv1alpha1.FailOverLbType); err != nil {
			t.Fatal(err)
		}
		within(t, func(c map[string]int) bool { return c["cluster-2"] == 30 })
		if err := local.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if err := localGRPC.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		got := within(t, func(c map[string]int) bool { return c["cluster-1"]+c["cluster-3"] == 30 })
		if got["failed"] != 0 {
			t.Fatalf("calls failed after the switch: %v", got)
		}
		grpc(t, func(c map[string]int) bool { return c["cluster-1"]+c["cluster-3"] == 20 }, map[string]float64{"cluster-1": 0.25, "cluster-3": 0.25})
	})
	t.Run("removing the policy returns to Locality", func(t *testing.T) {
		if err := fleet.DeletePolicy(ctx, "httpbin"); err != nil {
			t.Fatal(err)
		}
		within(t, func(c map[string]int) bool { return c["failed"] == 30 })
	})
}
