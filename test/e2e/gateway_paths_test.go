package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
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

// TestTheGatewayNormalizesPathsBeforeItMatchesThem: an export's path is a
// prefix the gateway rewrites (here /norm to /public/). A request whose
// path climbs out of the prefix with dot segments, or with escaped
// slashes the app would decode, must not reach the app as a path outside
// /public/: the real Envoy gateway normalizes the path (RFC 3986), merges
// slashes and redirects escaped ones before it matches the routes.
func TestTheGatewayNormalizesPathsBeforeItMatchesThem(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c1 := fleet.Cluster("cluster-1")
	const ns = "normalize"
	createService(ctx, t, c1, ns, "public", "", 8080)
	if _, err := c1.RunPod(ctx, testenv.PodOptions{
		Namespace: ns, Name: "public-1", Labels: map[string]string{"app": "public"},
		Ports: []corev1.ContainerPort{{ContainerPort: 8080}}, Backend: &testenv.HTTPBackend{Port: 8080, Body: "public\n", ShowPath: true},
	}); err != nil {
		t.Fatal(err)
	}
	if err := c1.Client.Create(ctx, &fmv1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "public"},
		Spec: fmv1alpha1.ServiceExportSpec{PathRewrite: "/public/", Rules: []fmv1alpha1.ServiceExportRule{
			{PortNumber: 8080, Path: "/norm", PathType: fmv1alpha1.PathTypePrefix},
		}},
	}); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(gatewayIP(c1), fmt.Sprint(gatewayPort(c1)))
	// raw sends the request line as written: a client library would
	// clean the path first.
	raw := func(path string) (int, string) {
		conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return 0, err.Error()
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, addr); err != nil {
			return 0, err.Error()
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Location") + " " + string(body)
	}
	var code int
	var got string
	err := testenv.Eventually(ctx, 20*time.Second, func(context.Context) (bool, error) {
		code, got = raw("/norm/x")
		return code == 200 && strings.Contains(got, "path: /public/x"), nil
	})
	if err != nil {
		t.Fatalf("GET /norm/x: %d %q, want the app at /public/x", code, got)
	}
	for _, path := range []string{"/norm/../secret", "/norm/./../secret", "/norm/..%2Fsecret", "/norm/..%2fsecret", "/norm/%2E%2E/secret", "/norm//../secret"} {
		code, got := raw(path)
		t.Logf("GET %s: %d %q", path, code, got)
		if code == 200 && !strings.Contains(got, "path: /public/") {
			t.Errorf("GET %s reached the app outside /public/: %q", path, got)
		}
		if upper := strings.ToUpper(got); (strings.Contains(upper, "..") || strings.Contains(upper, "%2E") || strings.Contains(upper, "%2F")) && strings.Contains(got, "path: ") {
			t.Errorf("GET %s reached the app with a dot segment or an escaped slash: %q", path, got)
		}
	}
}
