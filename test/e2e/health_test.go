package e2e

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// startClient runs a client pod, client-1 in the namespace ns of cluster c,
// with a real Envoy sidecar (delta ADS) on its address, stopped when the
// test ends.
func startClient(ctx context.Context, t *testing.T, c *testenv.Cluster, ns string) (*testenv.Pod, *testenv.Envoy, string) {
	t.Helper()
	createService(ctx, t, c, ns, "client", "http", 80)
	pod, err := c.RunPod(ctx, testenv.PodOptions{Namespace: ns, Name: "client-1", Labels: map[string]string{"app": "client"}})
	if err != nil {
		t.Fatal(err)
	}
	id := "client-1." + ns
	sidecar, err := startEnvoy(ctx, bootstrap.Options{
		NodeID: id, Role: "sidecar", Namespace: ns, Pod: "client-1", ServiceAccount: "default", Cluster: c.Name, Delta: true,
	}, controlPlanes[c.Name])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sidecar.Stop() })
	return pod, sidecar, id
}

// TestFailingEndpointsAreRoutedAround spreads calls ActiveActive from a
// real Envoy sidecar in cluster-2 over cluster-2's own pod, cluster-1's
// (same network: pod to pod) and cluster-3's (through its gateway), and
// then breaks things that readiness does not show:
//   - cluster-1's pod is Ready but answers 503: its failed attempts are
//     retried on other endpoints and it is ejected, so no call fails;
//   - cluster-3's gateway dies: the calls it would have carried move to
//     the other clusters.
func TestFailingEndpointsAreRoutedAround(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c1, c2, c3 := fleet.Cluster("cluster-1"), fleet.Cluster("cluster-2"), fleet.Cluster("cluster-3")
	const ns, name = "health", "flaky"
	for _, c := range []*testenv.Cluster{c1, c2, c3} {
		createService(ctx, t, c, ns, name, "", 8080)
		backend := &testenv.HTTPBackend{Port: 8080, Body: "Hi, I am from " + c.Name + "!\n"}
		if c == c1 {
			backend.Status = 503
		}
		if _, err := c.RunPod(ctx, testenv.PodOptions{
			Namespace: ns, Name: name + "-1", Labels: map[string]string{"app": name},
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}}, Backend: backend,
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []*testenv.Cluster{c1, c3} {
		exportService(ctx, t, c, ns, name)
	}
	importService(ctx, t, c2, ns, name, "", 8080, c1, c3)

	cp := controlPlanes["cluster-2"]
	client, sidecar, sidecarID := startClient(ctx, t, c2, "health-client")
	to, host := client.IP+":8080", name+"."+ns+":8080"
	changePolicy(ctx, t, cp, c2, sidecarID, ns, name, fmv1alpha1.ActiveActiveLbType, target(c1, 0), target(c3, 0))

	t.Run("a Ready endpoint answering 503 is retried around and ejected", func(t *testing.T) {
		eventuallyHTTP(ctx, t, "calls reach cluster-2 and cluster-3", to, host, func(c map[string]int) bool { return c["cluster-2"] > 0 && c["cluster-3"] > 0 })
		counts := httpCalls(ctx, to, host, "/", envoyCalls)
		t.Logf("%d calls with cluster-1's pod answering 503: %s", envoyCalls, describe(counts))
		if counts["failed"] != 0 {
			t.Errorf("%d calls failed: each failed attempt should be retried on another endpoint", counts["failed"])
		}
		assertShare(t, counts, "cluster-2", 0.35, 0.65)
		assertShare(t, counts, "cluster-3", 0.35, 0.65)
		ejected, err := sidecar.Stat("cluster.outbound|8080||" + name + "." + ns + ".svc.cluster.local.outlier_detection.ejections_enforced_total")
		if err != nil {
			t.Fatal(err)
		}
		retried, err := sidecar.Stat("cluster.outbound|8080||" + name + "." + ns + ".svc.cluster.local.upstream_rq_retry")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("ejections %d, retries %d", ejected, retried)
		if ejected == 0 {
			t.Errorf("cluster-1's failing pod was never ejected")
		}
	})

	t.Run("a proxyless grpc-go client ejects a Ready backend that fails", func(t *testing.T) {
		const gname = "flaky-grpc"
		for _, c := range []*testenv.Cluster{c1, c2, c3} {
			createService(ctx, t, c, ns, gname, "grpc", 9090)
			if _, err := c.RunPod(ctx, testenv.PodOptions{
				Namespace: ns, Name: gname + "-1", Labels: map[string]string{"app": gname},
				Ports:   []corev1.ContainerPort{{ContainerPort: 9090}},
				Backend: &testenv.GRPCBackend{Cluster: c.Name, Port: 9090, Fail: c == c1},
			}); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []*testenv.Cluster{c1, c3} {
			exportService(ctx, t, c, ns, gname)
		}
		importService(ctx, t, c2, ns, gname, "grpc", 9090, c1, c3)
		client := xdsClient(t, cp.XDSAddress, "cluster-2", "grpc-health-1", gname+"."+ns+".svc.cluster.local:9090")
		changePolicy(ctx, t, cp, c2, "grpc-health-1", ns, gname, fmv1alpha1.ActiveActiveLbType, target(c1, 0), target(c3, 0))
		eventually(ctx, t, "calls reach cluster-2 and cluster-3", client, func(c map[string]int) bool { return c["cluster-2"] > 0 && c["cluster-3"] > 0 })
		// The failures it takes to find the failing backend, then none.
		first := calls(ctx, client, 100)
		var settled map[string]int
		err := testenv.Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
			settled = calls(ctx, client, 100)
			return settled["UNAVAILABLE"] == 0, nil
		})
		t.Logf("first 100 calls: %s; once ejected, 100 calls: %s", describe(first), describe(settled))
		if err != nil {
			t.Fatalf("cluster-1's failing backend was never ejected: %s", describe(settled))
		}
		if settled["cluster-2"] == 0 || settled["cluster-3"] == 0 {
			t.Errorf("after the ejection the calls should spread over cluster-2 and cluster-3: %s", describe(settled))
		}
	})

	t.Run("a remote gateway that dies: its share moves to the others", func(t *testing.T) {
		gw := gateways["cluster-3"]
		if err := gw.Stop(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			restarted, err := startEnvoy(ctx, bootstrap.Options{
				NodeID: "gateway.cluster-3", Role: "gateway", Namespace: "fleetmesh", Cluster: "cluster-3", IP: gatewayIP(c3),
			}, controlPlanes["cluster-3"])
			if err != nil {
				t.Fatalf("restart cluster-3's gateway: %v", err)
			}
			gateways["cluster-3"] = restarted
		}()
		counts := httpCalls(ctx, to, host, "/", envoyCalls)
		t.Logf("%d calls with cluster-3's gateway down: %s", envoyCalls, describe(counts))
		if counts["failed"] > 0 || counts["cluster-2"] != envoyCalls {
			t.Errorf("with cluster-3's gateway down (and cluster-1 failing), every call should land in cluster-2: %s", describe(counts))
		}
	})
}
