// Package realarticle replays the reference article in real pods: four
// clusters with a real node each, fleetmesh installed with `kubectl apply
// -k` from the images built here, the members joined with `fleetmesh
// cluster join`, and the article's httpbin and curl applied from its YAML.
// Every call is made by the curl pod in cluster-2 and captured by its
// sidecar; the remote clusters are reached through their gateways'
// LoadBalancer addresses, their pods being on other networks.
package realarticle

import (
	"context"
	"encoding/json"
	"fmt"
	neturl "net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/cli"
	"github.com/fleetmesh/fleetmesh/pkg/redirect"
	"github.com/fleetmesh/fleetmesh/test/article"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

var fleet *article.RealFleet

// skipReason says why the suite cannot run here (testenv.NoRealNodes).
var skipReason = testenv.NoRealNodes()

func TestMain(m *testing.M) {
	testenv.MainWithRealNodes(m, func() int {
		start := time.Now()
		f, err := article.StartReal(context.Background(), article.RealOptions{
			Progress: func(format string, args ...any) { fmt.Printf(format+"\n", args...) },
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = f.Stop() }()
		fleet = f
		code := m.Run()
		mem := testenv.MemoryInUse()
		fmt.Printf("the article in real pods: %s from the first build to the last step; RSS %d MiB (control planes %d MiB, nodes and pods %d MiB)\n",
			time.Since(start).Round(100*time.Millisecond), (mem.ControlPlanes+mem.Nodes)/1024, mem.ControlPlanes/1024, mem.Nodes/1024)
		return code
	})
}

func realFleet(t *testing.T) *article.RealFleet {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	return fleet
}

// TestTheArticleInRealPods is the article's story, step by step, in real
// pods.
func TestTheArticleInRealPods(t *testing.T) {
	f := realFleet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	within := func(t *testing.T, ok func(map[string]int) bool) map[string]int {
		t.Helper()
		got, err := f.Within(ctx, time.Minute, ok)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("30 calls from curl in cluster-2: %v", got)
		return got
	}
	// grpc checks the gRPC calls of the same step: 200 from the
	// proxyless client (at least shares of them by cluster, its choice
	// being random by weight) and 30 through curl's sidecar; ok must hold
	// for 20 calls of each.
	grpc := func(t *testing.T, ok func(map[string]int) bool, shares map[string]float64) {
		t.Helper()
		got, err := f.WithinGRPC(ctx, time.Minute, 200, ok)
		if err != nil {
			t.Fatalf("proxyless grpc-go client: %v", err)
		}
		t.Logf("200 proxyless gRPC calls: %v", got)
		for c, min := range shares {
			if share := float64(got[c]) / 200; share < min {
				t.Errorf("proxyless grpc-go client: %s got %.0f%%, want at least %.0f%%", c, 100*share, 100*min)
			}
		}
		var side map[string]int
		err = testenv.Eventually(ctx, time.Minute, func(ctx context.Context) (bool, error) {
			side = f.SidecarGRPCCalls(ctx, 20)
			return ok(side), nil
		})
		if err != nil {
			t.Fatalf("gRPC through curl's sidecar: %v", side)
		}
		t.Logf("20 gRPC calls through curl's sidecar: %v", side)
	}
	fleetmesh := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := f.Fleetmesh(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	t.Run("httpbin in cluster-1 and cluster-3, exported; curl in cluster-2", func(t *testing.T) {
		start := time.Now()
		if err := article.DeployTheArticle(ctx, f); err != nil {
			t.Fatal(err)
		}
		t.Logf("httpbin (2 clusters) and curl Ready, injected, in %s", time.Since(start).Round(100*time.Millisecond))
		// grpcbin follows httpbin through every step, called by a
		// proxyless client and through curl's sidecar.
		for _, c := range []string{"cluster-1", "cluster-3"} {
			if _, err := f.DeployGRPCBin(ctx, c, true); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.StartGRPCClient(); err != nil {
			t.Fatal(err)
		}
		want := []string{"httpbin/grpcbin", "httpbin/httpbin", "httpbin/httpbin-cluster-1", "httpbin/httpbin-cluster-3"}
		err := testenv.Eventually(ctx, time.Minute, func(ctx context.Context) (bool, error) {
			imports, err := f.Imports(ctx)
			return slices.Equal(imports, want), fmt.Errorf("imports %v, %w", imports, err)
		})
		if err != nil {
			t.Fatalf("cluster-2's imports: %v", err)
		}
	})
	t.Run("north-south through each exporter's gateway (its LoadBalancer address)", func(t *testing.T) {
		for _, c := range []string{"cluster-1", "cluster-3"} {
			addr := f.GatewayAddress(c)
			var body string
			err := testenv.Eventually(ctx, time.Minute, func(ctx context.Context) (bool, error) {
				var err error
				body, err = article.Get(ctx, addr, addr, "/"+c+"/httpbin-mesh")
				return err == nil, err
			})
			if err != nil || body != "Hi, I am from "+c+" and controlled by mesh!\n" {
				t.Fatalf("curl http://%s/%s/httpbin-mesh: %q %v", addr, c, body, err)
			}
		}
	})
	t.Run("the clusters' pods are on different networks: only the gateways cross", func(t *testing.T) {
		// From a pod of cluster-2 without a sidecar: cluster-1's httpbin
		// pod is out of reach by its address, cluster-1's gateway is not.
		c2 := f.Cluster("cluster-2")
		dep, err := c2.Kubectl(strings.NewReader(probeYAML), "apply", "-n", "default", "-f", "-")
		if err != nil {
			t.Fatalf("%v: %s", err, dep)
		}
		if err := c2.WaitAvailable(ctx, "default", "probe", 1); err != nil {
			t.Fatal(err)
		}
		var probes corev1.PodList
		if err := c2.Client.List(ctx, &probes, client.InNamespace("default"), client.MatchingLabels{"app": "probe"}); err != nil || len(probes.Items) != 1 {
			t.Fatalf("probe pods in cluster-2: %v %d", err, len(probes.Items))
		}
		var pods corev1.PodList
		if err := f.Cluster("cluster-1").Client.List(ctx, &pods, client.InNamespace("httpbin"), client.MatchingLabels{"app": "pipy"}); err != nil || len(pods.Items) != 1 {
			t.Fatalf("httpbin pods in cluster-1: %v %d", err, len(pods.Items))
		}
		probe := probes.Items[0].Name
		lines, err := article.Calls(c2, "default", probe, "app", "http://"+f.GatewayAddress("cluster-1")+"/cluster-1/httpbin-mesh", 1, 0)
		if err != nil || !strings.HasPrefix(lines[0], "200 Hi, I am from cluster-1") {
			t.Errorf("a pod of cluster-2 calling cluster-1's gateway: %q %v", lines, err)
		}
		lines, err = article.Calls(c2, "default", probe, "app", "http://"+pods.Items[0].Status.PodIP+":8080/", 1, 0)
		if err != nil || !strings.HasPrefix(lines[0], "error ") {
			t.Errorf("a pod of cluster-2 reached cluster-1's httpbin pod %s directly: %q %v", pods.Items[0].Status.PodIP, lines, err)
		}
	})
	t.Run("Locality: calls fail", func(t *testing.T) {
		if err := f.WaitRouted(ctx); err != nil {
			t.Fatalf("the sidecar never answered 503 for httpbin: %v", err)
		}
		within(t, func(c map[string]int) bool { return c["failed"] == 30 })
		grpc(t, func(c map[string]int) bool { return c["UNAVAILABLE"] == 20 }, nil)
	})
	t.Run("FailOver: calls alternate between cluster-1 and cluster-3", func(t *testing.T) {
		if err := f.Policy(ctx, fmv1alpha1.FailOverLbType); err != nil {
			t.Fatal(err)
		}
		within(t, func(c map[string]int) bool { return c["cluster-1"] >= 10 && c["cluster-3"] >= 10 && c["failed"] == 0 })
		grpc(t, func(c map[string]int) bool { return c["cluster-1"]+c["cluster-3"] == 20 }, map[string]float64{"cluster-1": 0.25, "cluster-3": 0.25})
	})
	t.Run("mesh mTLS from curl's sidecar, through the gateways, to httpbin's", func(t *testing.T) {
		// Each sidecar's Envoy admin, from its pod's app container.
		stat := func(c, ns, label, container, name string) int {
			var pods corev1.PodList
			if err := f.Cluster(c).Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": label}); err != nil || len(pods.Items) == 0 {
				t.Fatalf("%s pods in %s: %v", label, c, err)
			}
			url := fmt.Sprintf("http://127.0.0.1:%d/stats?filter=%s", redirect.DefaultAdminPort, neturl.QueryEscape("^"+regexp.QuoteMeta(name)+"$"))
			lines, err := article.Calls(f.Cluster(c), ns, pods.Items[0].Name, container, url, 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			var n int
			if _, err := fmt.Sscanf(lines[0], "200 "+name+": %d", &n); err != nil {
				t.Fatalf("%s's Envoy in %s: %q: %v", label, c, lines[0], err)
			}
			return n
		}
		if n := stat("cluster-2", "curl", "curl", "curl", "cluster.outbound|8080||httpbin.httpbin.svc.cluster.local.ssl.handshake"); n == 0 {
			t.Error("curl's sidecar made no TLS handshake to httpbin")
		}
		// httpbin's app is told the caller's own identity by its sidecar,
		// through the gateway that passed the mTLS on.
		lines, err := f.Curl(ctx, "http://httpbin.httpbin:8080/header/x-forwarded-client-cert", 1, 0)
		if want := "URI=spiffe://cluster.local/ns/curl/sa/curl"; err != nil || !strings.Contains(lines[0], want) {
			t.Errorf("httpbin was told %q (%v), want curl's identity %s", lines, err, want)
		} else {
			t.Logf("httpbin in another cluster was told: %s", lines[0])
		}
		for _, c := range []string{"cluster-1", "cluster-3"} {
			if n := stat(c, "httpbin", "pipy", "pipy", "listener.0.0.0.0_15006.ssl.handshake"); n == 0 {
				t.Errorf("httpbin's sidecar in %s ended no TLS handshake", c)
			}
			if n := stat(c, "httpbin", "pipy", "pipy", "listener.0.0.0.0_15006.ssl.no_certificate"); n != 0 {
				t.Errorf("httpbin's sidecar in %s took %d TLS connections without a client certificate", c, n)
			}
		}
	})
	t.Run("the per-cluster imports reach only their own cluster", func(t *testing.T) {
		for _, c := range []string{"cluster-1", "cluster-3"} {
			// Both clusters are targets; the one that does not export
			// httpbin-<c> is ignored.
			if err := f.PolicyFor(ctx, "httpbin-"+c, fmv1alpha1.ActiveActiveLbType); err != nil {
				t.Fatal(err)
			}
			var got map[string]int
			err := testenv.Eventually(ctx, time.Minute, func(ctx context.Context) (bool, error) {
				got = f.CurlService(ctx, "httpbin-"+c, 30)
				return got[c] == 30, nil
			})
			if err != nil {
				t.Fatalf("httpbin-%s: %v", c, got)
			}
		}
	})
	var local, localGRPC article.Stopper
	t.Run("httpbin deployed in cluster-2: every call stays local", func(t *testing.T) {
		var err error
		if local, err = f.DeployLocalHTTPBin(ctx); err != nil {
			t.Fatal(err)
		}
		if localGRPC, err = f.DeployGRPCBin(ctx, "cluster-2", false); err != nil {
			t.Fatal(err)
		}
		within(t, func(c map[string]int) bool { return c["cluster-2"] == 30 })
		grpc(t, func(c map[string]int) bool { return c["cluster-2"] == 20 }, map[string]float64{"cluster-2": 1})
	})
	t.Run("ActiveActive: calls spread over all three", func(t *testing.T) {
		if err := f.Policy(ctx, fmv1alpha1.ActiveActiveLbType); err != nil {
			t.Fatal(err)
		}
		within(t, func(c map[string]int) bool {
			return c["cluster-1"] >= 6 && c["cluster-2"] >= 6 && c["cluster-3"] >= 6 && c["failed"] == 0
		})
		grpc(t, func(c map[string]int) bool { return c["cluster-1"] > 0 && c["cluster-2"] > 0 && c["cluster-3"] > 0 },
			map[string]float64{"cluster-1": 0.15, "cluster-2": 0.15, "cluster-3": 0.15})
	})
	t.Run("the CLI against the running pods: proxy-status, proxy-config, explain", func(t *testing.T) {
		curl := f.CurlPod + ".curl"
		status := fleetmesh(t, "--context", "cluster-2", "proxy-status")
		for _, want := range [][]string{{curl, "cluster-2", "sidecar"}, {"fleetmesh-gateway-", "gateway"}} {
			lines := testenv.TableLines(status, want...)
			if len(lines) == 0 || strings.Count(lines[0], "SYNCED")+strings.Count(lines[0], "NOT SENT") != 4 {
				t.Errorf("proxy-status has no line with %q and every type SYNCED:\n%s", want, status)
			}
		}
		var rows []cli.EndpointRow
		if err := json.Unmarshal([]byte(fleetmesh(t, "--context", "cluster-2", "proxy-config", "endpoints", curl, "--fqdn", "httpbin.httpbin", "-o", "json")), &rows); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rows {
			if r.EnvoyCluster == "outbound|8080||httpbin.httpbin.svc.cluster.local" {
				got = append(got, fmt.Sprintf("%s priority=%d weight=%d", r.Cluster, r.Priority, r.Weight))
			}
		}
		slices.Sort(got)
		if want := []string{"cluster-1 priority=0 weight=1", "cluster-2 priority=0 weight=1", "cluster-3 priority=0 weight=1"}; !slices.Equal(got, want) {
			t.Errorf("proxy-config endpoints under ActiveActive:\n got %q\nwant %q", got, want)
		}
		// What curl's Envoy holds, read from its admin API through the API
		// server and the node's kubelet (port-forward).
		held := fleetmesh(t, "--context", "cluster-2", "proxy-config", "endpoints", curl, "--from-envoy", "--fqdn", "httpbin.httpbin")
		for _, c := range []string{"cluster-1", "cluster-2", "cluster-3"} {
			if len(testenv.TableLines(held, c, "outbound|8080||httpbin.httpbin")) == 0 {
				t.Errorf("curl's Envoy holds no endpoint of %s:\n%s", c, held)
			}
		}
		// The federation's ServiceAccount in cluster-2 may not read its
		// policies, so explain runs with cluster-2's own context.
		explain := fleetmesh(t, "--context", "cluster-2", "explain", "httpbin.httpbin", "--from-cluster", "cluster-2")
		for _, c := range []string{"cluster-1", "cluster-3"} {
			if !strings.Contains(explain, f.GatewayAddress(c)) {
				t.Errorf("explain does not route %s through its gateway %s:\n%s", c, f.GatewayAddress(c), explain)
			}
		}
		t.Logf("fleetmesh --context cluster-2 explain httpbin.httpbin --from-cluster cluster-2\n%s", explain)
	})
	t.Run("a controller pod killed mid-traffic: the other replica takes over, no call fails", func(t *testing.T) {
		c2 := f.Cluster("cluster-2")
		// How often curl's sidecar has connected to a controller.
		xdsConnects := func() string {
			lines, err := f.Curl(ctx, "http://127.0.0.1:15000/stats?filter=^cluster%5C.fleetmesh-xds%5C.upstream_cx_total$", 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			return lines[0]
		}
		before := xdsConnects()
		var (
			lines []string
			err   error
			wg    sync.WaitGroup
		)
		wg.Go(func() {
			lines, err = f.Curl(ctx, "http://httpbin.httpbin:8080/", 400, 50*time.Millisecond)
		})
		var replicas corev1.PodList
		if err := c2.Client.List(ctx, &replicas, client.InNamespace(article.SystemNamespace), client.MatchingLabels{"app.kubernetes.io/name": "fleetmesh-controller"}); err != nil {
			t.Fatal(err)
		}
		// Both replicas the sidecar may be connected to, one after the
		// other.
		for _, victim := range replicas.Items {
			time.Sleep(2 * time.Second)
			if err := c2.Client.Delete(ctx, &victim); err != nil {
				t.Fatal(err)
			}
			t.Logf("deleted %s", victim.Name)
			if err := c2.WaitAvailable(ctx, article.SystemNamespace, "fleetmesh-controller", 2); err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		// The sidecar lost its controller and found the other replica.
		if after := xdsConnects(); after == before {
			t.Errorf("curl's sidecar never reconnected to a controller: %q, then %q", before, after)
		} else {
			t.Logf("curl's sidecar's connections to the controllers: %q, then %q", before, after)
		}
		counts := article.CountAnswers(lines)
		t.Logf("400 calls while both controller replicas were replaced: %v", counts)
		if counts["failed"] != 0 || counts["cluster-1"] == 0 || counts["cluster-2"] == 0 || counts["cluster-3"] == 0 {
			t.Errorf("calls while the controllers were replaced: %v", counts)
		}
	})
	t.Run("FailOver with cluster-2's httpbin deleted: calls move to the others", func(t *testing.T) {
		if err := f.Policy(ctx, fmv1alpha1.FailOverLbType); err != nil {
			t.Fatal(err)
		}
		within(t, func(c map[string]int) bool { return c["cluster-2"] == 30 })
		if err := local.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if err := localGRPC.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		within(t, func(c map[string]int) bool { return c["cluster-1"]+c["cluster-3"] == 30 })
		grpc(t, func(c map[string]int) bool { return c["cluster-1"]+c["cluster-3"] == 20 }, map[string]float64{"cluster-1": 0.25, "cluster-3": 0.25})
	})
}

// probeYAML is a pod of the echo image outside the mesh.
const probeYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: probe
spec:
  replicas: 1
  selector:
    matchLabels:
      app: probe
  template:
    metadata:
      labels:
        app: probe
    spec:
      containers:
      - name: app
        image: ` + testenv.EchoImage + `
`
