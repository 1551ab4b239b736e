// Package article replays the reference article end to end: a control-plane
// cluster running the real federation over three member clusters, each
// with its own fleetmesh control plane and Envoy gateway; httpbin in
// cluster-1 and cluster-3 behind inbound Envoy sidecars; a curl pod in
// cluster-2 whose Envoy sidecar carries the article's requests.
package article

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/pkg/controller"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

var (
	fleet    *testenv.Fleet
	planes   = map[string]*controller.Running{}
	envoys   []*testenv.Envoy
	stopAll  context.CancelFunc
	members  = []string{"cluster-1", "cluster-2", "cluster-3"}
	gwIP     = func(c *testenv.Cluster) string { return fmt.Sprintf("10.244.0.%d", 80+c.Index) }
	gwPort   = func(c *testenv.Cluster) int32 { return int32(80 + c.Index) }
	clusterN = regexp.MustCompile(`Hi, I am from (cluster-\d)`)
)

func TestMain(m *testing.M) {
	testenv.Main(m, func() int {
		ctx, cancel := context.WithCancel(context.Background())
		stopAll = cancel
		var err error
		fleet, err = testenv.StartFleet(ctx, testenv.FleetOptions{Clusters: append([]string{"control-plane"}, members...)})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = fleet.Stop() }()
		code := 1
		if err := start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
		} else {
			code = m.Run()
		}
		for _, e := range envoys {
			_ = e.Stop()
		}
		cancel()
		for _, p := range planes {
			_ = p.Wait()
		}
		return code
	})
}

// start runs the federation in the control plane, joins the members as the
// article does (a Cluster with an inline kubeconfig, gateway host and
// port), and starts each member's control plane and gateway.
func start(ctx context.Context) error {
	hub := fleet.Cluster("control-plane")
	run, err := controller.RunWithConfig(ctx, controller.Options{
		ClusterName: "control-plane", Federation: true, XDSAddress: "127.0.0.1:0", DebugAddress: "127.0.0.1:0",
	}, hub.Config, logr.Discard())
	if err != nil {
		return err
	}
	planes["control-plane"] = run
	for _, name := range members {
		c := fleet.Cluster(name)
		if err := hub.Client.Create(ctx, &fmv1alpha1.Cluster{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       fmv1alpha1.ClusterSpec{GatewayHost: gwIP(c), GatewayPort: gwPort(c), Kubeconfig: string(c.Kubeconfig)},
		}); err != nil {
			return err
		}
		cp, err := controller.RunWithConfig(ctx, controller.Options{
			ClusterName: name, XDSAddress: "127.0.0.1:0", DebugAddress: "127.0.0.1:0",
			DebounceAfter: 50 * time.Millisecond, DebounceMax: 500 * time.Millisecond,
		}, c.Config, logr.Discard())
		if err != nil {
			return err
		}
		planes[name] = cp
		if err := testenv.AddAddress(gwIP(c)); err != nil {
			return err
		}
		if _, err := envoy(ctx, bootstrap.Options{NodeID: "gateway." + name, Role: "gateway", Namespace: "fleetmesh", Cluster: name, IP: gwIP(c)}, cp); err != nil {
			return err
		}
	}
	return nil
}

func envoy(ctx context.Context, o bootstrap.Options, cp *controller.Running) (*testenv.Envoy, error) {
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	o.XDSAddress, o.AdminAddress = cp.XDSAddress.String(), fmt.Sprintf("127.0.0.1:%d", port)
	cfg, err := bootstrap.JSON(o)
	if err != nil {
		return nil, err
	}
	e, err := testenv.StartEnvoy(o.NodeID, cfg, port)
	if err != nil {
		return nil, err
	}
	envoys = append(envoys, e)
	if err := e.WaitReady(ctx, 30*time.Second); err != nil {
		return nil, fmt.Errorf("envoy %s: %w\n%s", o.NodeID, err, e.Log())
	}
	return e, nil
}

// appBackend is the app of a pod with an inbound sidecar: it listens on the
// pod's own loopback address, the sidecar on the pod IP.
type appBackend struct {
	testenv.HTTPBackend
	appIP string
}

func (b *appBackend) Start(string) error { return b.HTTPBackend.Start(b.appIP) }

// deployHTTPBin is the article's httpbin Deployment and its Services in a
// mesh-managed namespace: the pod's sidecar takes :8080 on the pod IP and
// hands requests to pipy on the pod's loopback.
func deployHTTPBin(ctx context.Context, t *testing.T, c *testenv.Cluster, body string) {
	t.Helper()
	for _, name := range []string{"httpbin", "httpbin-" + c.Name} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: name},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "pipy"}, Ports: []corev1.ServicePort{{Port: 8080, Protocol: corev1.ProtocolTCP}}},
		}
		if err := c.EnsureNamespace(ctx, "httpbin"); err != nil {
			t.Fatal(err)
		}
		if err := c.Client.Create(ctx, svc); err != nil {
			t.Fatal(err)
		}
	}
	appIP := fmt.Sprintf("127.0.%d.10", c.Index)
	pod, err := c.RunPod(ctx, testenv.PodOptions{
		Namespace: "httpbin", Name: "httpbin-1", Labels: map[string]string{"app": "pipy"},
		Ports:   []corev1.ContainerPort{{ContainerPort: 8080}},
		Backend: &appBackend{HTTPBackend: testenv.HTTPBackend{Port: 8080, Body: body}, appIP: appIP},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envoy(ctx, bootstrap.Options{
		NodeID: "httpbin-1.httpbin", Role: "sidecar", Namespace: "httpbin", Pod: "httpbin-1", Cluster: c.Name, AppIP: appIP, Delta: true,
	}, planes[c.Name]); err != nil {
		t.Fatal(err)
	}
	_ = pod // the pod IP is the sidecar's: the app answers only through it
}

func get(ctx context.Context, addr, host, path string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	req.Host = host
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return string(body), fmt.Errorf("%s", resp.Status)
	}
	return string(body), nil
}

// curl30 is the article's `curl http://httpbin.httpbin:8080/` thirty times
// from the curl pod, counting the answering cluster or "failed".
func curl30(ctx context.Context, curlIP string) map[string]int {
	counts := map[string]int{}
	for range 30 {
		body, err := get(ctx, net.JoinHostPort(curlIP, "8080"), "httpbin.httpbin:8080", "/")
		if m := clusterN.FindStringSubmatch(body); err == nil && m != nil {
			counts[m[1]]++
		} else {
			counts["failed"]++
		}
	}
	return counts
}

func within(ctx context.Context, t *testing.T, what string, curlIP string, ok func(map[string]int) bool) map[string]int {
	t.Helper()
	var last map[string]int
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if last = curl30(ctx, curlIP); ok(last) {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within 20s; last 30 calls: %v", what, last)
	return nil
}

func policy(ctx context.Context, t *testing.T, c *testenv.Cluster, lb fmv1alpha1.LbType) {
	t.Helper()
	p := &fmv1alpha1.GlobalTrafficPolicy{}
	err := c.Client.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "httpbin"}, p)
	p.Namespace, p.Name = "httpbin", "httpbin"
	p.Spec = fmv1alpha1.GlobalTrafficPolicySpec{LbType: lb, Targets: []fmv1alpha1.TrafficTarget{
		{ClusterKey: "default/default/default/cluster-1"}, {ClusterKey: "default/default/default/cluster-3"},
	}}
	if err == nil {
		err = c.Client.Update(ctx, p)
	} else {
		err = c.Client.Create(ctx, p)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestTheArticle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c1, c2, c3 := fleet.Cluster("cluster-1"), fleet.Cluster("cluster-2"), fleet.Cluster("cluster-3")

	// httpbin in cluster-1 and cluster-3, mesh-managed, exported as the
	// article exports it.
	for _, c := range []*testenv.Cluster{c1, c3} {
		deployHTTPBin(ctx, t, c, "Hi, I am from "+c.Name+" and controlled by mesh!\n")
		for _, name := range []string{"httpbin", "httpbin-" + c.Name} {
			path := "/" + c.Name + "/httpbin-mesh"
			if name != "httpbin" {
				path += "-" + c.Name
			}
			if err := c.Client.Create(ctx, &fmv1alpha1.ServiceExport{
				ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: name},
				Spec: fmv1alpha1.ServiceExportSpec{ServiceAccountName: "*", Rules: []fmv1alpha1.ServiceExportRule{
					{PortNumber: 8080, Path: path, PathType: fmv1alpha1.PathTypePrefix},
				}},
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The curl pod in cluster-2 with its sidecar.
	curl, err := c2.RunPod(ctx, testenv.PodOptions{Namespace: "curl", Name: "curl-1", Labels: map[string]string{"app": "curl"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envoy(ctx, bootstrap.Options{NodeID: "curl-1.curl", Role: "sidecar", Namespace: "curl", Pod: "curl-1", Cluster: "cluster-2", Delta: true}, planes["cluster-2"]); err != nil {
		t.Fatal(err)
	}

	t.Run("exports become imports in cluster-2", func(t *testing.T) {
		err := testenv.Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
			var list fmv1alpha1.ServiceImportList
			if err := c2.Client.List(ctx, &list, client.InNamespace("httpbin")); err != nil {
				return false, err
			}
			return len(list.Items) == 3, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("north-south through each exporter's gateway", func(t *testing.T) {
		for _, c := range []*testenv.Cluster{c1, c3} {
			addr := net.JoinHostPort(gwIP(c), strconv.Itoa(int(gwPort(c))))
			var body string
			err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
				var err error
				body, err = get(ctx, addr, addr, "/"+c.Name+"/httpbin-mesh")
				return err == nil, nil
			})
			if err != nil || body != "Hi, I am from "+c.Name+" and controlled by mesh!\n" {
				t.Fatalf("curl http://%s/%s/httpbin-mesh: %q %v", addr, c.Name, body, err)
			}
		}
	})
	t.Run("Locality: calls fail", func(t *testing.T) {
		// Failing because the sidecar has httpbin's route and no local
		// endpoint (503), not because it is not configured yet.
		err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
			_, err := get(ctx, net.JoinHostPort(curl.IP, "8080"), "httpbin.httpbin:8080", "/")
			return err != nil && err.Error() == "503 Service Unavailable", nil
		})
		if err != nil {
			t.Fatalf("the sidecar never answered 503 for httpbin: %v", err)
		}
		within(ctx, t, "every call fails", curl.IP, func(c map[string]int) bool { return c["failed"] == 30 })
	})
	t.Run("FailOver: calls alternate between cluster-1 and cluster-3", func(t *testing.T) {
		policy(ctx, t, c2, fmv1alpha1.FailOverLbType)
		got := within(ctx, t, "calls alternate", curl.IP, func(c map[string]int) bool { return c["cluster-1"] == 15 && c["cluster-3"] == 15 })
		t.Logf("30 calls: %v", got)
	})
	t.Run("httpbin deployed in cluster-2: every call stays local", func(t *testing.T) {
		// As in the article, the user applies httpbin's Service with a
		// selector over the one fleetmesh derived, and runs a pod.
		svc := &corev1.Service{}
		if err := c2.Client.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "httpbin"}, svc); err != nil {
			t.Fatal(err)
		}
		svc.Spec.Selector = map[string]string{"app": "pipy"}
		if err := c2.Client.Update(ctx, svc); err != nil {
			t.Fatal(err)
		}
		if _, err := c2.RunPod(ctx, testenv.PodOptions{
			Namespace: "httpbin", Name: "httpbin-1", Labels: map[string]string{"app": "pipy"},
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}}, Backend: &testenv.HTTPBackend{Port: 8080, Body: "Hi, I am from cluster-2!\n"},
		}); err != nil {
			t.Fatal(err)
		}
		within(ctx, t, "every call stays in cluster-2", curl.IP, func(c map[string]int) bool { return c["cluster-2"] == 30 })
	})
	t.Run("ActiveActive: calls spread over all three", func(t *testing.T) {
		policy(ctx, t, c2, fmv1alpha1.ActiveActiveLbType)
		got := within(ctx, t, "calls spread", curl.IP, func(c map[string]int) bool {
			return c["cluster-1"] == 10 && c["cluster-2"] == 10 && c["cluster-3"] == 10
		})
		t.Logf("30 calls: %v", got)
	})
}
