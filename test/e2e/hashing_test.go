package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/model"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// TestHashingLoadBalancerKeepsAClientOnOnePod runs a service with two pods
// in cluster-2 and two in cluster-3 (its own network: through its
// gateway), exported by cluster-3 and called ActiveActive from cluster-2
// by a real Envoy sidecar and a proxyless grpc-go client. Round robin
// spreads one client's calls over the pods; once the export and the
// import say HashingLoadBalancer, each hash key (the x-fleetmesh-hash-key
// header, else the client's address or gRPC channel) sticks to one pod,
// across the remote gateway too, while different keys still spread by the
// policy's weights.
func TestHashingLoadBalancerKeepsAClientOnOnePod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c2, c3 := fleet.Cluster("cluster-2"), fleet.Cluster("cluster-3")
	const ns, name, gname = "hashing", "sticky", "sticky-grpc"
	for _, c := range []*testenv.Cluster{c2, c3} {
		createService(ctx, t, c, ns, name, "http", 8080)
		createService(ctx, t, c, ns, gname, "grpc", 9090)
		for i := 1; i <= 2; i++ {
			pod := fmt.Sprintf("%s-%d", name, i)
			if _, err := c.RunPod(ctx, testenv.PodOptions{
				Namespace: ns, Name: pod, Labels: map[string]string{"app": name},
				Ports:   []corev1.ContainerPort{{ContainerPort: 8080}},
				Backend: &testenv.HTTPBackend{Port: 8080, Body: "Hi, I am " + pod + " from " + c.Name + "!\n"},
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.RunPod(ctx, testenv.PodOptions{
				Namespace: ns, Name: fmt.Sprintf("%s-%d", gname, i), Labels: map[string]string{"app": gname},
				Ports:   []corev1.ContainerPort{{ContainerPort: 9090}},
				Backend: &testenv.GRPCBackend{Cluster: c.Name, Port: 9090},
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	exportService(ctx, t, c3, ns, name)
	importService(ctx, t, c2, ns, name, "http", 8080, c3)

	cp := controlPlanes["cluster-2"]
	clientPod, _, sidecarID := startClient(ctx, t, c2, "hashing-client")
	to, host := clientPod.IP+":8080", name+"."+ns+":8080"
	changePolicy(ctx, t, cp, c2, sidecarID, ns, name, fmv1alpha1.ActiveActiveLbType, target(c3, 0))
	keyed := func(key string) http.Header { return http.Header{model.HashKeyHeader: {key}} }

	t.Run("round robin spreads one key over the pods", func(t *testing.T) {
		eventuallyHTTP(ctx, t, "calls reach cluster-2 and cluster-3", to, host, func(c map[string]int) bool { return c["cluster-2"] > 0 && c["cluster-3"] > 0 })
		pods := httpAnswers(ctx, to, host, "/", keyed("alice"), 40, strings.TrimSpace)
		t.Logf("40 calls keyed alice: %s", describe(pods))
		if len(pods) < 3 {
			t.Errorf("round robin should spread one key over the four pods: %s", describe(pods))
		}
	})

	setLoadBalancer(ctx, t, c3, &fmv1alpha1.ServiceExport{}, ns, name)
	setLoadBalancer(ctx, t, c2, &fmv1alpha1.ServiceImport{}, ns, name)
	err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
		for _, key := range []string{"a", "b", "c", "d"} {
			if len(httpAnswers(ctx, to, host, "/", keyed(key), 8, strings.TrimSpace)) != 1 {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("calls never stuck to one pod per key after the switch to HashingLoadBalancer: %v", err)
	}

	t.Run("a key sticks to one pod, through the remote gateway too", func(t *testing.T) {
		stickyPerKey(t, 10, func(key string, n int) map[string]int {
			return httpAnswers(ctx, to, host, "/", keyed(key), n, strings.TrimSpace)
		})
	})

	t.Run("without a key a client sticks by its address", func(t *testing.T) {
		pods := httpAnswers(ctx, to, host, "/", nil, 30, strings.TrimSpace)
		t.Logf("30 calls without a key: %s", describe(pods))
		if len(pods) != 1 || pods["failed"] > 0 {
			t.Errorf("one client's calls should all reach one pod: %s", describe(pods))
		}
	})

	t.Run("hashing keeps the policy's weights", func(t *testing.T) {
		changePolicy(ctx, t, cp, c2, sidecarID, ns, name, fmv1alpha1.ActiveActiveLbType, target(c3, 3))
		clusters := map[string]int{}
		for k := range 200 {
			for c, n := range httpAnswers(ctx, to, host, "/", keyed(fmt.Sprintf("weighed-%d", k)), 1, fromCluster.FindString) {
				clusters[c] += n
			}
		}
		t.Logf("200 keys with cluster-3 at weight 3 (cluster-2 at 1): %s", describe(clusters))
		// Ring hash without locality weights would give cluster-3's one
		// gateway endpoint a third of the keys.
		assertShare(t, clusters, "cluster-3", 0.6, 0.9)
	})

	t.Run("a proxyless grpc-go client sticks by its channel or a key", func(t *testing.T) {
		exp := &fmv1alpha1.ServiceExport{}
		exportService(ctx, t, c3, ns, gname)
		setLoadBalancer(ctx, t, c3, exp, ns, gname)
		importService(ctx, t, c2, ns, gname, "grpc", 9090, c3)
		setLoadBalancer(ctx, t, c2, &fmv1alpha1.ServiceImport{}, ns, gname)
		const id = "grpc-hashing-1"
		grpcClient := xdsClient(t, cp.XDSAddress, "cluster-2", id, gname+"."+ns+".svc.cluster.local:9090")
		changePolicy(ctx, t, cp, c2, id, ns, gname, fmv1alpha1.ActiveActiveLbType, target(c3, 0))

		servers := grpcCalls(ctx, grpcClient, 30, (*testgrpc.SimpleResponse).GetServerId)
		t.Logf("30 calls on one channel: %s", describe(servers))
		if len(servers) != 1 || servers["UNAVAILABLE"] > 0 {
			t.Errorf("one channel's calls should all reach one pod: %s", describe(servers))
		}
		stickyPerKey(t, 5, func(key string, n int) map[string]int {
			return grpcCalls(metadata.AppendToOutgoingContext(ctx, model.HashKeyHeader, key), grpcClient, n, (*testgrpc.SimpleResponse).GetServerId)
		})
	})
}

// stickyPerKey makes n calls with each of 20 hash keys: each key's calls
// must all reach one pod, and the keys together at least three of the
// four pods.
func stickyPerKey(t *testing.T, n int, call func(key string, n int) map[string]int) {
	t.Helper()
	seen := map[string]int{}
	for k := range 20 {
		key := fmt.Sprintf("user-%d", k)
		pods := call(key, n)
		if len(pods) != 1 || pods["failed"] > 0 || pods["UNAVAILABLE"] > 0 {
			t.Errorf("key %s: %d calls should all reach one pod: %s", key, n, describe(pods))
		}
		for pod := range pods {
			seen[pod]++
		}
	}
	t.Logf("20 keys landed on: %s", describe(seen))
	if len(seen) < 3 {
		t.Errorf("20 keys should spread over at least three of the four pods: %s", describe(seen))
	}
}

// setLoadBalancer makes the export or import ns/name say
// HashingLoadBalancer.
func setLoadBalancer(ctx context.Context, t *testing.T, c *testenv.Cluster, obj client.Object, ns, name string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
			return err
		}
		switch o := obj.(type) {
		case *fmv1alpha1.ServiceExport:
			o.Spec.LoadBalancer = fmv1alpha1.HashingLoadBalancer
		case *fmv1alpha1.ServiceImport:
			o.Spec.LoadBalancer = fmv1alpha1.HashingLoadBalancer
		}
		return c.Client.Update(ctx, obj)
	})
	if err != nil {
		t.Fatalf("%s: set %s/%s's load balancer: %v", c.Name, ns, name, err)
	}
}
