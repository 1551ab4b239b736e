package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// shareCalls is how many calls a share assertion counts: grpc-go picks a
// locality at random by weight, so bands need hundreds of calls.
const shareCalls = 600

// xdsClient is a real grpc-go client of xds:///<target>, with its own node
// id and xDS client.
func xdsClient(t testing.TB, xdsAddr, cluster, nodeID, target string) testgrpc.TestServiceClient {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "metadata": {"role": "grpc", "namespace": "client", "cluster": %q}}
	}`, xdsAddr, nodeID, cluster)
	builder, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(builder), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.Connect() // resolve now: the xDS client subscribes before the first call
	return testgrpc.NewTestServiceClient(conn)
}

// calls makes n calls and counts the answering cluster, or the status code
// of a failed call ("UNAVAILABLE").
func calls(ctx context.Context, c testgrpc.TestServiceClient, n int) map[string]int {
	return grpcCalls(ctx, c, n, (*testgrpc.SimpleResponse).GetHostname)
}

// grpcCalls makes n calls and counts what answer makes of each response, or
// the status code of a failed call ("UNAVAILABLE").
func grpcCalls(ctx context.Context, c testgrpc.TestServiceClient, n int, answer func(*testgrpc.SimpleResponse) string) map[string]int {
	counts := map[string]int{}
	for range n {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := c.UnaryCall(cctx, &testgrpc.SimpleRequest{})
		cancel()
		if err != nil {
			counts[strings.ToUpper(status.Code(err).String())]++
			continue
		}
		counts[answer(resp)]++
	}
	return counts
}

func describe(counts map[string]int) string { return testenv.Describe(counts) }

// eventually polls batches of 20 calls until ok holds for one (10 s).
func eventually(ctx context.Context, t *testing.T, what string, c testgrpc.TestServiceClient, ok func(map[string]int) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last map[string]int
	for time.Now().Before(deadline) {
		last = calls(ctx, c, 20)
		if ok(last) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within 10s; last 20 calls: %s", what, describe(last))
}

func only(cluster string) func(map[string]int) bool {
	return func(c map[string]int) bool { return c[cluster] == 20 }
}

func assertShare(t *testing.T, counts map[string]int, cluster string, lo, hi float64) {
	t.Helper()
	t.Logf("%s: %s", cluster, describe(counts))
	total := 0
	for _, n := range counts {
		total += n
	}
	share := float64(counts[cluster]) / float64(total)
	if share < lo || share > hi {
		t.Errorf("%s got %.0f%% of %d calls, want %.0f–%.0f%% (%s)", cluster, 100*share, total, 100*lo, 100*hi, describe(counts))
	}
}

// TestProxylessGRPCClientFollowsThePolicy is the article's story for a
// proxyless grpc-go client in cluster-2: httpbin runs in cluster-1 (same
// network: pod to pod) and cluster-3 (its own network: through its Envoy
// gateway, HTTP/2 end to end) as gRPC backends on pod addresses (Pods kept
// true, EndpointSlices by the real controller), and the client's calls land
// where each policy says, switching as the policy object changes, without
// restarting the client.
func TestProxylessGRPCClientFollowsThePolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c1, c2, c3 := fleet.Cluster("cluster-1"), fleet.Cluster("cluster-2"), fleet.Cluster("cluster-3")
	const ns, name = "grpcbin", "httpbin"

	for _, c := range []*testenv.Cluster{c1, c3} {
		createService(ctx, t, c, ns, name, "grpc", 8080)
		exportService(ctx, t, c, ns, name)
		if _, err := c.RunPod(ctx, testenv.PodOptions{
			Namespace: ns, Name: name + "-1", Labels: map[string]string{"app": name},
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}}, Backend: &testenv.GRPCBackend{Cluster: c.Name, Port: 8080},
		}); err != nil {
			t.Fatal(err)
		}
	}
	createService(ctx, t, c2, ns, name, "grpc", 8080) // selects no pod yet
	importService(ctx, t, c2, ns, name, "grpc", 8080, c1, c3)

	run := controlPlanes["cluster-2"]
	client := xdsClient(t, run.XDSAddress, "cluster-2", "grpc-client-1", name+"."+ns+".svc.cluster.local:8080")

	t.Run("Locality without a local backend: calls fail UNAVAILABLE", func(t *testing.T) {
		waitAcked(ctx, t, run, "grpc-client-1")
		counts := calls(ctx, client, 20)
		if counts[strings.ToUpper(codes.Unavailable.String())] != 20 {
			t.Fatalf("want every call UNAVAILABLE, got %s", describe(counts))
		}
	})

	var local *testenv.Pod
	t.Run("Locality with a local backend: every call stays in cluster-2", func(t *testing.T) {
		var err error
		local, err = c2.RunPod(ctx, testenv.PodOptions{
			Namespace: ns, Name: name + "-1", Labels: map[string]string{"app": name},
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}}, Backend: &testenv.GRPCBackend{Cluster: "cluster-2", Port: 8080},
		})
		if err != nil {
			t.Fatal(err)
		}
		eventually(ctx, t, "calls reach cluster-2", client, only("cluster-2"))
		if counts := calls(ctx, client, shareCalls); counts["cluster-2"] != shareCalls {
			t.Fatalf("want 100%% cluster-2, got %s", describe(counts))
		}
	})

	t.Run("FailOver with a local backend: every call stays in cluster-2", func(t *testing.T) {
		changePolicy(ctx, t, run, c2, "grpc-client-1", ns, name, fmv1alpha1.FailOverLbType, target(c1, 0), target(c3, 0))
		if counts := calls(ctx, client, shareCalls); counts["cluster-2"] != shareCalls {
			t.Fatalf("want 100%% cluster-2, got %s", describe(counts))
		}
	})

	t.Run("FailOver with the local backend not ready: calls alternate between cluster-1 and cluster-3", func(t *testing.T) {
		if err := local.SetReady(ctx, false); err != nil {
			t.Fatal(err)
		}
		eventually(ctx, t, "calls leave cluster-2", client, func(c map[string]int) bool { return c["cluster-1"]+c["cluster-3"] == 20 })
		counts := calls(ctx, client, shareCalls)
		assertShare(t, counts, "cluster-1", 0.40, 0.60)
		assertShare(t, counts, "cluster-3", 0.40, 0.60)
	})

	t.Run("FailOver with the local backend back, then removed", func(t *testing.T) {
		if err := local.SetReady(ctx, true); err != nil {
			t.Fatal(err)
		}
		eventually(ctx, t, "calls come back to cluster-2", client, only("cluster-2"))
		if err := local.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(ctx, t, "calls leave cluster-2", client, func(c map[string]int) bool { return c["cluster-1"]+c["cluster-3"] == 20 })
	})

	t.Run("ActiveActive over the three clusters: each gets a third", func(t *testing.T) {
		var err error
		local, err = c2.RunPod(ctx, testenv.PodOptions{
			Namespace: ns, Name: name + "-2", Labels: map[string]string{"app": name},
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}}, Backend: &testenv.GRPCBackend{Cluster: "cluster-2", Port: 8080},
		})
		if err != nil {
			t.Fatal(err)
		}
		changePolicy(ctx, t, run, c2, "grpc-client-1", ns, name, fmv1alpha1.ActiveActiveLbType, target(c1, 0), target(c3, 0))
		eventually(ctx, t, "calls reach all three clusters", client, func(c map[string]int) bool {
			return c["cluster-1"] > 0 && c["cluster-2"] > 0 && c["cluster-3"] > 0
		})
		counts := calls(ctx, client, shareCalls)
		for _, c := range []string{"cluster-1", "cluster-2", "cluster-3"} {
			assertShare(t, counts, c, 0.25, 0.42)
		}
	})

	t.Run("ActiveActive with cluster-1 at weight 2: 25/50/25", func(t *testing.T) {
		changePolicy(ctx, t, run, c2, "grpc-client-1", ns, name, fmv1alpha1.ActiveActiveLbType, target(c1, 2), target(c3, 0))
		counts := calls(ctx, client, shareCalls)
		assertShare(t, counts, "cluster-1", 0.40, 0.60)
		assertShare(t, counts, "cluster-2", 0.15, 0.35)
		assertShare(t, counts, "cluster-3", 0.15, 0.35)
	})
}

// ackedEndpoints returns the endpoints version the proxy last acknowledged.
func ackedEndpoints(run *testenv.ControlPlane, id string) string {
	for _, p := range proxiesOf(run) {
		if st := p.Types["ClusterLoadAssignment"]; p.ID == id && st != nil {
			return st.Acked
		}
	}
	return ""
}

// changePolicy applies a policy and waits until the control plane has read
// it and the client has acknowledged endpoints newer than before, so calls
// counted afterwards see the new policy.
func changePolicy(ctx context.Context, t testing.TB, run *testenv.ControlPlane, c *testenv.Cluster, id, ns, name string, lbType fmv1alpha1.LbType, targets ...fmv1alpha1.TrafficTarget) {
	t.Helper()
	before := ackedEndpoints(run, id)
	applyPolicy(ctx, t, c, ns, name, lbType, targets...)
	waitPolicyStatus(ctx, t, c, ns, name)
	err := testenv.Eventually(ctx, 10*time.Second, func(context.Context) (bool, error) {
		for _, p := range proxiesOf(run) {
			if st := p.Types["ClusterLoadAssignment"]; p.ID == id && st != nil {
				return st.Acked != before && st.State() == "SYNCED", nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("%s never acknowledged the endpoints of the new policy: %v; syncz: %+v", id, err, proxiesOf(run))
	}
}

// waitAcked waits until the proxy has acknowledged its endpoints.
func waitAcked(ctx context.Context, t testing.TB, run *testenv.ControlPlane, id string) {
	t.Helper()
	err := testenv.Eventually(ctx, 10*time.Second, func(context.Context) (bool, error) {
		for _, p := range proxiesOf(run) {
			if st := p.Types["ClusterLoadAssignment"]; p.ID == id && st != nil && st.Acked != "" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("%s never acknowledged its endpoints: %v; syncz: %+v", id, err, proxiesOf(run))
	}
}

// waitPolicyStatus waits until the control plane has read the policy's
// current generation.
func waitPolicyStatus(ctx context.Context, t testing.TB, c *testenv.Cluster, ns, name string) {
	t.Helper()
	err := testenv.Eventually(ctx, 10*time.Second, func(ctx context.Context) (bool, error) {
		p := &fmv1alpha1.GlobalTrafficPolicy{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
			return false, err
		}
		return p.Status.ObservedGeneration == p.Generation && len(p.Status.Conditions) > 0, nil
	})
	if err != nil {
		t.Fatalf("the policy's status never caught up: %v", err)
	}
}
