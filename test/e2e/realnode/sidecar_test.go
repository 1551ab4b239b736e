package realnode

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// TestInjectedPodsTalkThroughTheirSidecars runs meshed applications in
// real pods: the webhook adds the init container (the fleetmesh-init
// image: iptables in the pod's network namespace) and the Envoy sidecar;
// both pods become Ready; each sidecar finds the controller by its
// Service's DNS name and holds every resource type it was sent; a call
// from one application to the other's Service by name goes out through
// the caller's sidecar (its Envoy counts the request).
func TestInjectedPodsTalkThroughTheirSidecars(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := realFleet(t).Clusters[0]
	installMember(ctx, t, c)
	clientPod := meshedPair(ctx, t, c, appNamespace)
	t.Logf("the client's Envoy counted %d 2xx responses from web", callThroughTheMesh(ctx, t, c, appNamespace, clientPod))
	t.Run("fleetmesh proxy-config reaches the controllers by port-forward, with the caller's own rights", func(t *testing.T) {
		checkCLIThroughPortForward(ctx, t, c, clientPod)
	})
}

// meshedPair deploys the echo apps web and client into the injected
// namespace ns, waits until they are Ready and their sidecars are
// connected to a controller replica and hold what they were sent, and
// returns the client pod.
func meshedPair(ctx context.Context, t *testing.T, c *testenv.Cluster, ns string) corev1.Pod {
	t.Helper()
	for _, name := range []string{"web", "client"} {
		dep, svc := echoApp(ns, name, 1, corev1.EnvVar{Name: "MESSAGE", Value: name})
		for _, o := range []client.Object{dep, svc} {
			if err := c.Client.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := time.Now()
	waitAvailable(ctx, t, c, ns, "web", 1)
	waitAvailable(ctx, t, c, ns, "client", 1)
	t.Logf("injected pods Ready %v after their Deployments were created", time.Since(start).Round(time.Millisecond))
	var clientPod corev1.Pod
	{
		var pods corev1.PodList
		if err := c.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": "client"}); err != nil || len(pods.Items) != 1 {
			t.Fatalf("the client pod: %v (%d pods)", err, len(pods.Items))
		}
		clientPod = pods.Items[0]
	}
	names := containerNames(&clientPod)
	if !strings.Contains(names, "envoy") && !strings.Contains(names, "proxy") {
		t.Fatalf("client pod containers %s: no sidecar", names)
	}

	// Every sidecar is connected to a controller replica and holds what
	// it was sent.
	err := testenv.Eventually(ctx, time.Minute, func(ctx context.Context) (bool, error) {
		synced := map[string]bool{}
		for _, p := range controllerPods(ctx, t, c) {
			if !testenv.PodReady(&p) {
				continue
			}
			proxies, err := c.Syncz(p.Status.PodIP + ":15014")
			if err != nil {
				return false, err
			}
			for _, px := range proxies {
				all := len(px.Types) > 0
				for _, ts := range px.Types {
					all = all && ts.State() == "SYNCED"
				}
				synced[px.Namespace+"/"+px.Pod] = synced[px.Namespace+"/"+px.Pod] || all
			}
		}
		ok := 0
		for pod, s := range synced {
			if s && strings.HasPrefix(pod, ns+"/") {
				ok++
			}
		}
		return ok == 2, fmt.Errorf("proxies synced: %v", synced)
	})
	if err != nil {
		t.Fatal(err)
	}

	return clientPod
}

// callThroughTheMesh has the client pod of ns call web by its Service's
// name, and returns the 2xx responses from web its sidecar counted.
func callThroughTheMesh(ctx context.Context, t *testing.T, c *testenv.Cluster, ns string, clientPod corev1.Pod) int {
	t.Helper()
	// The client calls web by its Service's name; the call goes through
	// the client's sidecar.
	err := testenv.Eventually(ctx, time.Minute, func(context.Context) (bool, error) {
		out, err := c.Kubectl(nil, "-n", ns, "exec", clientPod.Name, "-c", "app", "--", "/echo", "get", "http://web/through-the-mesh")
		if err != nil {
			return false, fmt.Errorf("%w: %s", err, out)
		}
		return strings.TrimSpace(out) == "web /through-the-mesh", fmt.Errorf("answered %q", out)
	})
	if err != nil {
		t.Fatal(err)
	}
	stats, err := c.Kubectl(nil, "-n", ns, "exec", clientPod.Name, "-c", "app", "--", "/echo", "get", "http://127.0.0.1:15000/stats?filter=upstream_rq_2xx")
	if err != nil {
		t.Fatalf("the client sidecar's stats: %v: %s", err, stats)
	}
	served := 0
	for _, line := range strings.Split(stats, "\n") {
		name, value, ok := strings.Cut(line, ": ")
		if n, _ := strconv.Atoi(strings.TrimSpace(value)); ok && strings.Contains(name, "web") && strings.HasPrefix(name, "cluster.") {
			served += n
		}
	}
	if served == 0 {
		t.Errorf("the client's Envoy counted no 2xx from web: the call did not go through the sidecar\n%s", stats)
	}
	return served
}
