package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// TestABadPathOnAGatewayLeavesTheOtherExportsWorking puts, beside an
// export of cluster-1, an Ingress of class fleetmesh whose path Envoy
// would refuse ("/bad?x": the API server admits it on an Ingress, where
// the ServiceExport refuses it): cluster-1's real Envoy gateway still
// serves the export's path, and never refuses a route configuration.
func TestABadPathOnAGatewayLeavesTheOtherExportsWorking(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c1 := fleet.Cluster("cluster-1")
	const ns = "paths"
	for _, name := range []string{"good", "careless"} {
		createService(ctx, t, c1, ns, name, "", 8080)
		if _, err := c1.RunPod(ctx, testenv.PodOptions{
			Namespace: ns, Name: name + "-1", Labels: map[string]string{"app": name},
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}}, Backend: &testenv.HTTPBackend{Port: 8080, Body: "Hi, I am " + name + " from cluster-1!\n"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	exportService(ctx, t, c1, ns, "good", fmv1alpha1.ServiceExportRule{PortNumber: 8080, Path: "/paths/good", PathType: fmv1alpha1.PathTypePrefix})
	// Admission refuses the path on a ServiceExport, naming the field.
	bad := &fmv1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "careless"},
		Spec:       fmv1alpha1.ServiceExportSpec{Rules: []fmv1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/bad?x"}}},
	}
	if err := c1.Client.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), "spec.rules[0].path") {
		t.Fatalf("a ServiceExport with path /bad?x: %v, want a refusal naming spec.rules[0].path", err)
	}
	// An Ingress of the gateway's class takes it.
	prefix := networkingv1.PathTypePrefix
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "careless"},
		Spec: networkingv1.IngressSpec{
			IngressClassName: ptr.To("fleetmesh"),
			Rules: []networkingv1.IngressRule{{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{
					Path: "/bad?x", PathType: &prefix,
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "careless", Port: networkingv1.ServiceBackendPort{Number: 8080}}},
				}},
			}}}},
		},
	}
	if err := c1.Client.Create(ctx, ing); err != nil {
		t.Skipf("the API server refuses the path on an Ingress too (%v): nothing gets past admission", err)
	}
	gw := gateways["cluster-1"]
	rejected := func() int {
		n, err := gw.Stat("http.gateway|" + fmt.Sprint(gatewayPort(c1)) + ".rds.gateway|" + fmt.Sprint(gatewayPort(c1)) + ".update_rejected")
		if err != nil {
			return -1
		}
		return n
	}
	addr := fmt.Sprintf("%s:%d", gatewayIP(c1), gatewayPort(c1))
	deadline := time.Now().Add(20 * time.Second)
	for {
		counts := httpCalls(ctx, addr, addr, "/paths/good/x", 1)
		if counts["cluster-1"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("curl http://%s/paths/good/x: %s; route configurations refused by the gateway: %d", addr, describe(counts), rejected())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := rejected(); n != 0 {
		t.Errorf("the gateway refused %d route configurations", n)
	}
}
