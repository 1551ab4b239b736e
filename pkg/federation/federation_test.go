package federation_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/controller"
	"github.com/fleetmesh/fleetmesh/pkg/kubeauth"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

var (
	fleet *testenv.Fleet
	hub   *testenv.Cluster
)

func TestMain(m *testing.M) {
	testenv.Main(m, func() int {
		var err error
		fleet, err = testenv.StartFleet(context.Background(), testenv.FleetOptions{Clusters: []string{"control-plane", "cluster-1", "cluster-2", "cluster-3"}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = fleet.Stop() }()
		hub = fleet.Cluster("control-plane")
		return m.Run()
	})
}

// startFederation runs fleetmesh-controller --federation against the
// control-plane cluster, in this process.
func startFederation(t testing.TB) (stop func()) {
	stop, _ = startFederationRun(t)
	return stop
}

func startFederationRun(t testing.TB, options ...func(*controller.Options)) (stop func(), run *controller.Running) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	o := controller.Options{ClusterName: "control-plane", Federation: true, XDSAddress: controller.XDSOff, DebugAddress: "127.0.0.1:0"}
	for _, option := range options {
		option(&o)
	}
	run, err := controller.RunWithConfig(ctx, o, hub.Config, logr.Discard())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return func() { cancel(); _ = run.Wait() }, run
}

func gatewayPort(c *testenv.Cluster) int32 { return int32(80 + c.Index) }

// join writes a member's Cluster object with its kubeconfig inline, as the
// article does.
func join(ctx context.Context, t *testing.T, c *testenv.Cluster) {
	t.Helper()
	obj := &fmv1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: c.Name},
		Spec:       fmv1alpha1.ClusterSpec{GatewayHost: "10.244.0.1", GatewayPort: gatewayPort(c), Kubeconfig: string(c.Kubeconfig)},
	}
	if err := hub.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func eventually(ctx context.Context, t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	if err := testenv.Eventually(ctx, 20*time.Second, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func createService(ctx context.Context, t *testing.T, c *testenv.Cluster, ns, name string, ports ...corev1.ServicePort) {
	t.Helper()
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: ports}}
	if err := c.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
}

func createExport(ctx context.Context, t *testing.T, c *testenv.Cluster, ns, name string, rules ...fmv1alpha1.ServiceExportRule) {
	t.Helper()
	e := &fmv1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       fmv1alpha1.ServiceExportSpec{ServiceAccountName: "*", Rules: rules},
	}
	if err := c.Client.Create(ctx, e); err != nil {
		t.Fatal(err)
	}
}

func getImport(ctx context.Context, c *testenv.Cluster, ns, name string) (*fmv1alpha1.ServiceImport, error) {
	imp := &fmv1alpha1.ServiceImport{}
	err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, imp)
	return imp, err
}

// TestTheArticlesFlow: httpbin exported from cluster-1 and cluster-3
// becomes, in cluster-2, the ServiceImports httpbin/httpbin,
// httpbin/httpbin-cluster-1 and httpbin/httpbin-cluster-3 with the
// endpoints the article prints; the httpbin namespace and derived Services
// are created in cluster-2; the exporters get Ingresses for their paths;
// every member gets the fleet's Clusters; the Clusters report Ready.
func TestTheArticlesFlow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stop, run := startFederationRun(t)
	defer stop()
	c1, c2, c3 := fleet.Cluster("cluster-1"), fleet.Cluster("cluster-2"), fleet.Cluster("cluster-3")
	for _, c := range []*testenv.Cluster{c1, c2, c3} {
		join(ctx, t, c)
	}
	for _, c := range []*testenv.Cluster{c1, c3} {
		createService(ctx, t, c, "httpbin", "httpbin", corev1.ServicePort{Port: 8080, Protocol: corev1.ProtocolTCP})
		createService(ctx, t, c, "httpbin", "httpbin-"+c.Name, corev1.ServicePort{Port: 8080, Protocol: corev1.ProtocolTCP})
		createExport(ctx, t, c, "httpbin", "httpbin", fmv1alpha1.ServiceExportRule{PortNumber: 8080, Path: "/" + c.Name + "/httpbin-mesh", PathType: fmv1alpha1.PathTypePrefix})
		createExport(ctx, t, c, "httpbin", "httpbin-"+c.Name, fmv1alpha1.ServiceExportRule{PortNumber: 8080, Path: "/" + c.Name + "/httpbin-mesh-" + c.Name, PathType: fmv1alpha1.PathTypePrefix})
	}

	want := fmv1alpha1.ServiceImportSpec{
		Type: fmv1alpha1.ClusterSetIP, ServiceAccountName: "*", LoadBalancer: fmv1alpha1.RoundRobinLoadBalancer,
		Ports: []fmv1alpha1.ServicePort{{Port: 8080, Protocol: corev1.ProtocolTCP, Endpoints: []fmv1alpha1.Endpoint{
			{ClusterKey: "default/default/default/cluster-1", Target: fmv1alpha1.Target{Host: "10.244.0.1", IP: "10.244.0.1", Port: 81, Path: "/cluster-1/httpbin-mesh"}},
			{ClusterKey: "default/default/default/cluster-3", Target: fmv1alpha1.Target{Host: "10.244.0.1", IP: "10.244.0.1", Port: 83, Path: "/cluster-3/httpbin-mesh"}},
		}}},
	}
	var diff string
	eventually(ctx, t, "cluster-2 imports httpbin as the article prints", func(ctx context.Context) (bool, error) {
		imp, err := getImport(ctx, c2, "httpbin", "httpbin")
		if err != nil {
			return false, client.IgnoreNotFound(err)
		}
		diff = cmp.Diff(want, imp.Spec)
		return diff == "", nil
	})
	for _, name := range []string{"httpbin-cluster-1", "httpbin-cluster-3"} {
		eventually(ctx, t, "cluster-2 imports "+name, func(ctx context.Context) (bool, error) {
			_, err := getImport(ctx, c2, "httpbin", name)
			return err == nil, client.IgnoreNotFound(err)
		})
	}
	// The rest of the state settles within the same sync or the next.
	var problems []string
	err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
		problems = articleProblems(ctx, c1, c2, c3)
		return len(problems) == 0, nil
	})
	if err != nil {
		for _, p := range problems {
			t.Error(p)
		}
	}
	body := debugGet(t, run, "/metrics")
	for _, want := range []string{`fleetmesh_federation_members{state="joined"} 3`, "fleetmesh_federation_syncs_total", `fleetmesh_federation_writes_total{kind="ServiceImport",op="apply"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// debugGet reads a path of the federation's debug API, over HTTPS as the
// control plane's admin (its client certificate).
func debugGet(t testing.TB, run *controller.Running, path string) string {
	t.Helper()
	hc, err := kubeauth.Client(hub.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get("https://" + run.DebugAddress.String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return string(body)
}

func articleProblems(ctx context.Context, c1, c2, c3 *testenv.Cluster) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	imp, _ := getImport(ctx, c2, "httpbin", "httpbin")
	if got := imp.Status.Clusters; len(got) != 2 || got[0].Cluster != "cluster-1" || got[1].Cluster != "cluster-3" {
		bad("status.clusters = %v", got)
	}
	svc := &corev1.Service{}
	if err := c2.Client.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "httpbin"}, svc); err != nil || svc.Spec.Selector != nil || svc.Labels[fmv1alpha1.ManagedByLabel] != "fleetmesh" {
		bad("derived Service httpbin in cluster-2: %v %+v", err, svc.Labels)
	}
	for _, c := range []*testenv.Cluster{c1, c3} {
		ing := &networkingv1.Ingress{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "httpbin"}, ing); err != nil {
			bad("%s has no Ingress for its export: %v", c.Name, err)
		} else if p := ing.Spec.Rules[0].HTTP.Paths[0]; p.Path != "/"+c.Name+"/httpbin-mesh" || p.Backend.Service.Port.Number != 8080 {
			bad("%s's Ingress: %+v", c.Name, p)
		}
		e := &fmv1alpha1.ServiceExport{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "httpbin"}, e); err != nil || !meta.IsStatusConditionTrue(e.Status.Conditions, fmv1alpha1.ConditionValid) ||
			meta.IsStatusConditionTrue(e.Status.Conditions, fmv1alpha1.ConditionConflict) {
			bad("%s's export is not Valid without conflict: %v %+v", c.Name, err, e.Status.Conditions)
		}
	}
	for _, c := range []*testenv.Cluster{c1, c2, c3} {
		var clusters fmv1alpha1.ClusterList
		if err := c.Client.List(ctx, &clusters); err != nil || len(clusters.Items) != 3 {
			bad("%s mirrors %d Clusters (%v), want 3", c.Name, len(clusters.Items), err)
		}
		for _, mc := range clusters.Items {
			if !mc.Spec.Mirrored || mc.Spec.Kubeconfig != "" || mc.Status.GatewayIP != "10.244.0.1" {
				bad("%s's copy of %s: mirrored=%v kubeconfig=%d bytes gatewayIP=%q", c.Name, mc.Name, mc.Spec.Mirrored, len(mc.Spec.Kubeconfig), mc.Status.GatewayIP)
			}
			// The member's own copy says so: its control plane learns its name.
			if local := mc.Labels[fmv1alpha1.LocalClusterLabel] == "true"; local != (mc.Name == c.Name) {
				bad("%s's copy of %s is labelled local=%v", c.Name, mc.Name, local)
			}
		}
		hc := &fmv1alpha1.Cluster{}
		if err := hub.Client.Get(ctx, client.ObjectKey{Name: c.Name}, hc); err != nil || !meta.IsStatusConditionTrue(hc.Status.Conditions, fmv1alpha1.ConditionReady) ||
			!meta.IsStatusConditionTrue(hc.Status.Conditions, fmv1alpha1.ConditionJoined) || hc.Status.LastSyncTime == nil {
			bad("Cluster %s: %v %+v", c.Name, err, hc.Status)
		}
	}
	return problems
}
