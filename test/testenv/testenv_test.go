package testenv_test

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

var fleet *testenv.Fleet

func TestMain(m *testing.M) {
	testenv.MainWithFleet(m, testenv.FleetOptions{Clusters: []string{"cluster-1", "cluster-2"}}, &fleet)
}

func TestEachClusterIsItsOwnAPIServerWithTheCRDs(t *testing.T) {
	ctx := context.Background()
	c1, c2 := fleet.Cluster("cluster-1"), fleet.Cluster("cluster-2")
	if c1.Config.Host == c2.Config.Host {
		t.Fatalf("both clusters share %s", c1.Config.Host)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "only-in-1", Namespace: "default"}}
	if err := c1.Client.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c1.Client.Delete(ctx, cm) })
	if err := c2.Client.Get(ctx, client.ObjectKeyFromObject(cm), &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Fatalf("cluster-2 sees cluster-1's ConfigMap: %v", err)
	}
	for _, c := range fleet.Clusters {
		if err := c.Client.List(ctx, &fmv1alpha1.GlobalTrafficPolicyList{}); err != nil {
			t.Errorf("%s has no fleetmesh CRDs: %v", c.Name, err)
		}
	}
}

// TestPodsGetEndpointSlicesFromTheRealController runs a pod behind a Service
// and watches the real EndpointSlice controller follow its readiness, and
// the backend answer on the pod's address.
func TestPodsGetEndpointSlicesFromTheRealController(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := fleet.Cluster("cluster-1")
	if err := c.EnsureNamespace(ctx, "httpbin"); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "httpbin", Namespace: "httpbin"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "pipy"},
			Ports:    []corev1.ServicePort{{Port: 8080, Protocol: corev1.ProtocolTCP}},
		},
	}
	if err := c.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	pod, err := c.RunPod(ctx, testenv.PodOptions{
		Namespace: "httpbin", Name: "httpbin-1", Labels: map[string]string{"app": "pipy"},
		Ports:   []corev1.ContainerPort{{ContainerPort: 8080}},
		Backend: &testenv.HTTPBackend{Port: 8080, Body: "Hi, I am from cluster-1!\n"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pod.Delete(context.Background()) })

	waitForEndpoint(ctx, t, c, pod.IP, ptr.To(true))
	resp, err := http.Get("http://" + pod.IP + ":8080/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "Hi, I am from cluster-1!\n" {
		t.Fatalf("backend said %q", body)
	}

	if err := pod.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitForEndpoint(ctx, t, c, pod.IP, ptr.To(false))
	if _, err := http.Get("http://" + pod.IP + ":8080/"); err == nil {
		t.Fatal("a stopped pod still answers")
	}

	if err := pod.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	waitForEndpoint(ctx, t, c, pod.IP, nil)
}

// waitForEndpoint waits until the Service's slices list ip with that
// readiness, or (ready nil) no longer list it.
func waitForEndpoint(ctx context.Context, t *testing.T, c *testenv.Cluster, ip string, ready *bool) {
	t.Helper()
	err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
		var slices discoveryv1.EndpointSliceList
		if err := c.Client.List(ctx, &slices, client.InNamespace("httpbin"), client.MatchingLabels{discoveryv1.LabelServiceName: "httpbin"}); err != nil {
			return false, err
		}
		for _, s := range slices.Items {
			for _, ep := range s.Endpoints {
				if len(ep.Addresses) > 0 && ep.Addresses[0] == ip {
					return ready != nil && ptr.Deref(ep.Conditions.Ready, false) == *ready, nil
				}
			}
		}
		return ready == nil, nil
	})
	if err != nil {
		t.Fatalf("endpoint %s never reached ready=%v: %v", ip, ready, err)
	}
}

func TestTheGarbageCollectorAndNamespaceControllerRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := fleet.Cluster("cluster-2")
	if err := c.EnsureNamespace(ctx, "gc"); err != nil {
		t.Fatal(err)
	}
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner", Namespace: "gc"}}
	if err := c.Client.Create(ctx, owner); err != nil {
		t.Fatal(err)
	}
	owned := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: "owned", Namespace: "gc",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID}},
	}}
	if err := c.Client.Create(ctx, owned); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Delete(ctx, owner); err != nil {
		t.Fatal(err)
	}
	if err := testenv.Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		err := c.Client.Get(ctx, client.ObjectKeyFromObject(owned), &corev1.ConfigMap{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		t.Fatalf("the garbage collector did not delete the owned ConfigMap: %v", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gc"}}
	if err := c.Client.Delete(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := testenv.Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		err := c.Client.Get(ctx, client.ObjectKeyFromObject(ns), &corev1.Namespace{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		t.Fatalf("the namespace controller did not finish deleting the namespace: %v", err)
	}
}

func TestTrafficStaysInTheTestNetwork(t *testing.T) {
	out, err := exec.Command("ip", "route", "show", "default").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "dev lo") {
		t.Fatalf("the default route leaves loopback: %s", out)
	}
	if err := testenv.AddAddress("10.244.9.9"); err != nil {
		t.Fatal(err)
	}
}

func TestEnvoyIsInstalled(t *testing.T) {
	out, err := exec.Command(testenv.EnvoyBinary(), "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s (run `make envoy`)", testenv.EnvoyBinary(), err, out)
	}
	if !strings.Contains(string(out), "1.40.") {
		t.Fatalf("want Envoy 1.40, got %s", out)
	}
}
