package realnode

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// TestPodsRunOnTheNodeAndServicesRouteToThem is the node itself: the
// scheduler binds a Deployment's pods, containerd runs the image built
// here, they get addresses of the node's pod range, the test network
// reaches them, and from a pod kube-proxy routes the Service's ClusterIP
// to both and the cluster DNS names it.
func TestPodsRunOnTheNodeAndServicesRouteToThem(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := realFleet(t).Clusters[0]
	ns := "node-basics"
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	dep, svc := echoApp(ns, "echo", 2)
	dep.Spec.Template.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}},
		PeriodSeconds: 1,
	}
	start := time.Now()
	for _, o := range []client.Object{dep, svc} {
		if err := c.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	var pods corev1.PodList
	err := testenv.Eventually(ctx, 2*time.Minute, func(ctx context.Context) (bool, error) {
		if err := c.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels(dep.Spec.Selector.MatchLabels)); err != nil {
			return false, err
		}
		ready := 0
		for _, p := range pods.Items {
			if testenv.PodReady(&p) {
				ready++
			}
		}
		return ready == 2, fmt.Errorf("%d of %d pods Ready", ready, len(pods.Items))
	})
	if err != nil {
		out, _ := c.Kubectl(nil, "-n", ns, "describe", "pods")
		t.Fatalf("the Deployment's pods: %v\n%s\nkubelet:\n%s", err, out, c.Node.Log("kubelet"))
	}
	t.Logf("2 pods Ready %v after the Deployment was created", time.Since(start).Round(time.Millisecond))
	podRange := netip.MustParsePrefix(c.Node.PodCIDR)
	for _, p := range pods.Items {
		if p.Spec.NodeName != c.Node.Name {
			t.Errorf("pod %s: on node %q, want %q (bound by kube-scheduler)", p.Name, p.Spec.NodeName, c.Node.Name)
		}
		if ip, err := netip.ParseAddr(p.Status.PodIP); err != nil || !podRange.Contains(ip) {
			t.Errorf("pod %s: address %q, want one of %s", p.Name, p.Status.PodIP, podRange)
		}
		if got := get(t, "http://"+p.Status.PodIP+":8080/direct"); got != p.Name+" /direct\n" {
			t.Errorf("pod %s answered %q", p.Name, got)
		}
	}
	// kubectl logs and exec go through the API server to the kubelet.
	if out, err := c.Kubectl(nil, "-n", ns, "logs", pods.Items[0].Name); err != nil {
		t.Errorf("kubectl logs: %v: %s", err, out)
	}

	if err := c.Client.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
		t.Fatal(err)
	}
	// The ClusterIP is served by kube-proxy on the node: a pod calls it
	// until both pods have answered.
	seen := map[string]bool{}
	err = testenv.Eventually(ctx, 30*time.Second, func(context.Context) (bool, error) {
		out, err := c.Kubectl(nil, "-n", ns, "exec", pods.Items[0].Name, "--", "/echo", "get", "http://"+svc.Spec.ClusterIP+"/svc")
		if err != nil {
			return false, fmt.Errorf("%w: %s", err, out)
		}
		seen[strings.Fields(out)[0]] = true
		return len(seen) == 2, fmt.Errorf("answered by %v", seen)
	})
	if err != nil {
		t.Fatalf("the Service's ClusterIP from a pod: %v\nkube-proxy:\n%s", err, c.Node.Log("kube-proxy"))
	}
	// The cluster DNS (CoreDNS) names it, with the namespace's search path.
	for _, host := range []string{"echo", "echo.node-basics.svc.cluster.local"} {
		out, err := c.Kubectl(nil, "-n", ns, "exec", pods.Items[0].Name, "--", "/echo", "get", "http://"+host+"/dns")
		if err != nil || !strings.HasSuffix(strings.TrimSpace(out), " /dns") {
			t.Errorf("http://%s/dns from a pod: %v: %s", host, err, out)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(body)) + "\n"
}
