package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/test/article"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// envoyCalls is how many requests a share assertion through Envoy counts.
const envoyCalls = 300

var fromCluster = regexp.MustCompile(`cluster-\d`)

// httpCalls sends n GETs to addr with the Host header host and counts the
// cluster named in each answer, or "failed" for a non-2xx answer or a
// connection error.
func httpCalls(ctx context.Context, addr, host, path string, n int) map[string]int {
	return httpAnswers(ctx, addr, host, path, nil, n, fromCluster.FindString)
}

// httpAnswers sends n GETs to addr with the Host header host and the
// header, and counts what answer makes of each body, or "failed" for a
// non-2xx answer or a connection error.
func httpAnswers(ctx context.Context, addr, host, path string, header http.Header, n int, answer func(body string) string) map[string]int {
	counts := map[string]int{}
	client := &http.Client{Timeout: 5 * time.Second}
	for range n {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		req.Host = host
		maps.Copy(req.Header, header)
		resp, err := client.Do(req)
		if err != nil {
			counts["failed"]++
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			counts["failed"]++
			continue
		}
		counts[answer(string(body))]++
	}
	return counts
}

func eventuallyHTTP(ctx context.Context, t *testing.T, what, addr, host string, ok func(map[string]int) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last map[string]int
	for time.Now().Before(deadline) {
		last = httpCalls(ctx, addr, host, "/", 20)
		if ok(last) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within 10s; last 20 calls: %s", what, describe(last))
}

// TestEnvoySidecarAndGatewaysFollowThePolicy is the article's story through
// real Envoy: the curl pod's sidecar in cluster-2 (delta ADS) sends
// `Host: httpbin.httpbin:8080` to httpbin, which runs in cluster-1 (same
// network: pod to pod) and cluster-3 (its own network: through cluster-3's
// Envoy gateway, east-west by authority), answering "Hi, I am from
// <cluster>!". The gateways also serve the export paths north-south.
func TestEnvoySidecarAndGatewaysFollowThePolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c1, c2, c3 := fleet.Cluster("cluster-1"), fleet.Cluster("cluster-2"), fleet.Cluster("cluster-3")
	const ns, name = "httpbin", "httpbin"

	for _, c := range []*testenv.Cluster{c1, c3} {
		createService(ctx, t, c, ns, name, "", 8080)
		exportService(ctx, t, c, ns, name, fmv1alpha1.ServiceExportRule{PortNumber: 8080, Path: "/" + c.Name + "/httpbin-mesh", PathType: fmv1alpha1.PathTypePrefix})
		if _, err := c.RunPod(ctx, testenv.PodOptions{
			Namespace: ns, Name: name + "-1", Labels: map[string]string{"app": name},
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}}, Backend: &testenv.HTTPBackend{Port: 8080, Body: "Hi, I am from " + c.Name + "!\n"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	createService(ctx, t, c2, ns, name, "", 8080) // selects no pod yet
	importService(ctx, t, c2, ns, name, "", 8080, c1, c3)

	// The article's curl Deployment and Service (port 80).
	createService(ctx, t, c2, "curl", "curl", "http", 80)
	curl, err := c2.RunPod(ctx, testenv.PodOptions{Namespace: "curl", Name: "curl-1", Labels: map[string]string{"app": "curl"}})
	if err != nil {
		t.Fatal(err)
	}
	cp := controlPlanes["cluster-2"]
	sidecar, err := startEnvoy(ctx, bootstrap.Options{
		NodeID: "curl-1.curl", Role: "sidecar", Namespace: "curl", Pod: "curl-1", ServiceAccount: "default", Cluster: "cluster-2", Delta: true,
	}, cp)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sidecar.Stop() }()
	to := curl.IP + ":8080"
	const host = "httpbin.httpbin:8080"
	sidecarID := "curl-1.curl"

	t.Run("north-south: the export paths reach each cluster's own httpbin", func(t *testing.T) {
		for _, c := range []*testenv.Cluster{c1, c3} {
			addr := fmt.Sprintf("%s:%d", gatewayIP(c), gatewayPort(c))
			path := "/" + c.Name + "/httpbin-mesh"
			eventuallyOK := func(m map[string]int) bool { return m[c.Name] == 1 }
			deadline := time.Now().Add(10 * time.Second)
			for counts := httpCalls(ctx, addr, addr, path, 1); !eventuallyOK(counts); counts = httpCalls(ctx, addr, addr, path, 1) {
				if time.Now().After(deadline) {
					t.Fatalf("curl http://%s%s: %s", addr, path, describe(counts))
				}
				time.Sleep(50 * time.Millisecond)
			}
			if counts := httpCalls(ctx, addr, addr, path+"/get", 10); counts[c.Name] != 10 {
				t.Errorf("curl http://%s%s/get: %s", addr, path, describe(counts))
			}
		}
	})

	t.Run("Locality without a local httpbin: calls fail", func(t *testing.T) {
		waitSynced(ctx, t, cp, sidecarID)
		if counts := httpCalls(ctx, to, host, "/", 20); counts["failed"] != 20 {
			t.Fatalf("want every call to fail, got %s", describe(counts))
		}
	})

	t.Run("FailOver without a local httpbin: calls alternate between cluster-1 and cluster-3", func(t *testing.T) {
		changePolicy(ctx, t, cp, c2, sidecarID, ns, name, fmv1alpha1.FailOverLbType, target(c1, 0), target(c3, 0))
		eventuallyHTTP(ctx, t, "calls reach cluster-1 and cluster-3", to, host, func(c map[string]int) bool { return c["cluster-1"]+c["cluster-3"] == 20 })
		counts := httpCalls(ctx, to, host, "/", envoyCalls)
		assertShare(t, counts, "cluster-1", 0.40, 0.60)
		assertShare(t, counts, "cluster-3", 0.40, 0.60)
	})

	var local *testenv.Pod
	t.Run("FailOver with httpbin deployed in cluster-2: every call stays local", func(t *testing.T) {
		local, err = c2.RunPod(ctx, testenv.PodOptions{
			Namespace: ns, Name: name + "-1", Labels: map[string]string{"app": name},
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}}, Backend: &testenv.HTTPBackend{Port: 8080, Body: "Hi, I am from cluster-2!\n"},
		})
		if err != nil {
			t.Fatal(err)
		}
		eventuallyHTTP(ctx, t, "calls stay in cluster-2", to, host, func(c map[string]int) bool { return c["cluster-2"] == 20 })
		if counts := httpCalls(ctx, to, host, "/", envoyCalls); counts["cluster-2"] != envoyCalls {
			t.Fatalf("want 100%% cluster-2, got %s", describe(counts))
		}
	})

	t.Run("one endpoint change sends one ClusterLoadAssignment, no cluster or listener update", func(t *testing.T) {
		cluster := "outbound|8080||httpbin.httpbin.svc.cluster.local"
		stat := func(name string) int {
			n, err := sidecar.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		cds, lds := stat("cluster_manager.cds.update_success"), stat("listener_manager.lds.update_success")
		eds, other := stat("cluster."+cluster+".update_success"), stat("cluster.outbound|80||curl.curl.svc.cluster.local.update_success")
		if err := local.SetReady(ctx, false); err != nil {
			t.Fatal(err)
		}
		eventuallyHTTP(ctx, t, "calls leave cluster-2", to, host, func(c map[string]int) bool { return c["cluster-1"]+c["cluster-3"] == 20 })
		if got := stat("cluster." + cluster + ".update_success"); got != eds+1 {
			t.Errorf("httpbin's endpoints were updated %d times, want once", got-eds)
		}
		if stat("cluster_manager.cds.update_success") != cds || stat("listener_manager.lds.update_success") != lds {
			t.Errorf("an endpoint change updated clusters (%d→%d) or listeners (%d→%d)", cds, stat("cluster_manager.cds.update_success"), lds, stat("listener_manager.lds.update_success"))
		}
		if got := stat("cluster.outbound|80||curl.curl.svc.cluster.local.update_success"); got != other {
			t.Errorf("another service's endpoints were sent again (%d→%d)", other, got)
		}
		if err := local.SetReady(ctx, true); err != nil {
			t.Fatal(err)
		}
		eventuallyHTTP(ctx, t, "calls come back to cluster-2", to, host, func(c map[string]int) bool { return c["cluster-2"] == 20 })
	})

	t.Run("the control plane's config dump shows what the sidecar holds", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz", "/metrics", "/debug/syncz"} {
			if _, err := cp.Get(path); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		}
		body, err := cp.Get("/debug/config_dump?proxy=" + sidecarID)
		if err != nil {
			t.Fatal(err)
		}
		cla, err := article.DumpedAssignment([]byte(body), "outbound|8080||httpbin.httpbin.svc.cluster.local")
		if err != nil {
			t.Fatal(err)
		}
		var localities []string
		for _, l := range cla.GetEndpoints() {
			localities = append(localities, fmt.Sprintf("%s@%d", l.GetLocality().GetSubZone(), l.GetPriority()))
			for _, lb := range l.GetLbEndpoints() {
				via := lb.GetEndpoint().GetHostname() != ""
				if want := l.GetLocality().GetSubZone() == "cluster-3"; via != want {
					t.Errorf("%s endpoint %v: through a gateway = %v, want %v", l.GetLocality().GetSubZone(), lb.GetEndpoint().GetAddress(), via, want)
				}
			}
		}
		if want := []string{"cluster-2@0", "cluster-1@1", "cluster-3@1"}; fmt.Sprint(localities) != fmt.Sprint(want) {
			t.Errorf("FailOver localities in the dump = %v, want %v", localities, want)
		}
		if _, err := cp.Get("/debug/config_dump?proxy=nobody"); err == nil {
			t.Error("a dump of an unknown proxy did not fail")
		}
	})

	t.Run("ActiveActive: calls spread over all three clusters", func(t *testing.T) {
		changePolicy(ctx, t, cp, c2, sidecarID, ns, name, fmv1alpha1.ActiveActiveLbType, target(c1, 0), target(c3, 0))
		counts := httpCalls(ctx, to, host, "/", envoyCalls)
		for _, c := range []string{"cluster-1", "cluster-2", "cluster-3"} {
			assertShare(t, counts, c, 0.25, 0.42)
		}
	})

	t.Run("ActiveActive with cluster-1 at weight 2: 25/50/25", func(t *testing.T) {
		changePolicy(ctx, t, cp, c2, sidecarID, ns, name, fmv1alpha1.ActiveActiveLbType, target(c1, 2), target(c3, 0))
		counts := httpCalls(ctx, to, host, "/", envoyCalls)
		assertShare(t, counts, "cluster-1", 0.40, 0.60)
		assertShare(t, counts, "cluster-2", 0.15, 0.35)
		assertShare(t, counts, "cluster-3", 0.15, 0.35)
	})
}

// waitSynced waits until the proxy has acknowledged everything it was sent.
func waitSynced(ctx context.Context, t *testing.T, cp *testenv.ControlPlane, id string) {
	t.Helper()
	err := testenv.Eventually(ctx, 10*time.Second, func(context.Context) (bool, error) {
		for _, p := range proxiesOf(cp) {
			if p.ID != id || len(p.Types) < 4 {
				continue
			}
			for _, st := range p.Types {
				if st.State() != "SYNCED" || st.Acked == "" {
					return false, nil
				}
			}
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		for _, p := range proxiesOf(cp) {
			for typ, st := range p.Types {
				t.Logf("%s %s: %s %+v", p.ID, typ, st.State(), *st)
			}
		}
		t.Fatalf("%s never synced: %v", id, err)
	}
}
