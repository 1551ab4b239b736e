package federation_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/controller"
	"github.com/fleetmesh/fleetmesh/pkg/kubeauth"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// BenchmarkFederation1000Services: 1,000 Services exported across 3
// exporting clusters (cluster-1..3), federated into 5 members (plus
// cluster-4 and cluster-5, two more real API servers). It reports the
// time the federation takes, started from scratch, until every member
// holds every import it should (the MCS API's too, each with its
// clusterset IP); then the time from one ServiceExport
// create to its import being visible in another member, p50 and p99 over
// 100 runs.
func BenchmarkFederation1000Services(b *testing.B) {
	const services, namespaces, runs = 1000, 10, 100
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	opts := testenv.FleetOptions{Clusters: []string{"cluster-4", "cluster-5"}, NoControllerManager: true}
	if os.Getenv("FLEETMESH_BENCH_PROFILES") != "" {
		opts.APIServerFlags = map[string]string{"profiling": "true"}
	}
	extra, err := testenv.StartFleet(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = extra.Stop() }()
	exporters := []*testenv.Cluster{fleet.Cluster("cluster-1"), fleet.Cluster("cluster-2"), fleet.Cluster("cluster-3")}
	all := append(slices.Clone(exporters), extra.Clusters...)
	for _, c := range all {
		obj := &fmv1alpha1.Cluster{
			ObjectMeta: metav1.ObjectMeta{Name: c.Name},
			Spec:       fmv1alpha1.ClusterSpec{GatewayHost: "10.244.0.1", GatewayPort: 80, Kubeconfig: string(c.Kubeconfig)},
		}
		if err := hub.Client.Create(ctx, obj); err != nil && !isExists(err) {
			b.Fatal(err)
		}
		defer func() { _ = hub.Client.Delete(context.Background(), obj) }()
	}
	// The fleet's objects exist before the federation starts.
	for i := range services {
		c := exporters[i%len(exporters)]
		ns := fmt.Sprintf("bench-%d", i%namespaces)
		if err := c.EnsureNamespace(ctx, ns); err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("svc-%d", i)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		}}
		if err := c.Client.Create(ctx, svc); err != nil && !isExists(err) {
			b.Fatal(err)
		}
		exp := &fmv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if err := c.Client.Create(ctx, exp); err != nil && !isExists(err) {
			b.Fatal(err)
		}
	}
	wantImports := func(c *testenv.Cluster) int {
		n := 0
		for i := range services {
			if exporters[i%len(exporters)] != c {
				n++
			}
		}
		return n
	}
	b.ResetTimer()
	start := time.Now()
	b.Logf("the federation starts at %s", start.Format(time.TimeOnly))
	stop, run := startFederationRun(b)
	defer stop()
	if dir := os.Getenv("FLEETMESH_BENCH_PROFILES"); dir != "" {
		// Where an importing member's API server spends the cold
		// writes: go tool pprof <file>
		go profileAPIServer(b, extra.Clusters[0], filepath.Join(dir, "apiserver-cold.pprof"))
	}
	// Converged: every member holds every import and derived Service it
	// should, and every export's status is written. The benchmark watches
	// for it, as a user's tools would: listing a thousand objects from
	// every API server several times a second would load the machine
	// the federation shares.
	for _, c := range all {
		w, err := watchMember(ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		for {
			imports, derived, mcs, valid := w.counts(ctx)
			want := wantImports(c)
			validWant := 0
			if slices.Contains(exporters, c) {
				validWant = services / len(exporters)
			}
			if imports >= want && derived >= want && mcs >= services && valid >= validWant {
				break
			}
			if ctx.Err() != nil {
				b.Fatalf("%s has %d of %d imports, %d derived Services, %d of %d MCS imports, %d of %d valid exports", c.Name, imports, want, derived, mcs, services, valid, validWant)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	converge := time.Since(start)
	b.Logf("converged at %s", time.Now().Format(time.TimeOnly))
	coldWrites, coldSyncs := federationCounters(b, run)

	target := extra.Clusters[0]
	var lat []time.Duration
	for i := range runs {
		ns, name := "bench-latency", fmt.Sprintf("new-%d", i)
		c := exporters[0]
		if err := c.EnsureNamespace(ctx, ns); err != nil {
			b.Fatal(err)
		}
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}},
		}}
		if err := c.Client.Create(ctx, svc); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := c.Client.Create(ctx, &fmv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
			b.Fatal(err)
		}
		for {
			imp := &fmv1alpha1.ServiceImport{}
			if err := target.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, imp); err == nil {
				break
			}
			if ctx.Err() != nil {
				b.Fatal("an import never appeared")
			}
			time.Sleep(5 * time.Millisecond)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(converge.Seconds(), "converge-s")
	b.ReportMetric(coldWrites, "cold-writes")
	b.ReportMetric(coldSyncs, "cold-syncs")
	for _, line := range writesByKind(b, run) {
		b.Log(line)
	}
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "export-to-import-p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "export-to-import-p99-ms")
}

// federationCounters reads, from the controller's /metrics, the writes
// the federation has made in members and the syncs it has run.
func federationCounters(b *testing.B, run *controller.Running) (writes, syncs float64) {
	for _, line := range metricLines(b, run) {
		name, value, _ := strings.Cut(line, " ")
		v, _ := strconv.ParseFloat(value, 64)
		switch {
		case strings.HasPrefix(name, "fleetmesh_federation_writes_total{"):
			writes += v
		case strings.HasPrefix(name, "fleetmesh_federation_syncs_total{"):
			syncs += v
		}
	}
	return writes, syncs
}

// writesByKind are the federation's write counters, one line per kind and
// operation.
func writesByKind(b *testing.B, run *controller.Running) []string {
	var out []string
	for _, line := range metricLines(b, run) {
		if strings.HasPrefix(line, "fleetmesh_federation_writes_total{") || strings.HasPrefix(line, "fleetmesh_federation_syncs_total{") {
			out = append(out, line)
		}
	}
	return out
}

func metricLines(b *testing.B, run *controller.Running) []string {
	// The debug API, over HTTPS with the control plane's admin.
	hc, err := kubeauth.Client(hub.Config, nil)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := hc.Get("https://" + run.DebugAddress.String() + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return strings.Split(string(body), "\n")
}

// profileAPIServer writes a 20 s CPU profile of c's API server, taken 10 s
// from now, to file.
func profileAPIServer(b *testing.B, c *testenv.Cluster, file string) {
	time.Sleep(10 * time.Second)
	hc, err := kubeauth.Client(c.Config, nil)
	if err != nil {
		b.Error(err)
		return
	}
	resp, err := hc.Get(strings.TrimSuffix(c.Config.Host, "/") + "/debug/pprof/profile?seconds=20")
	if err != nil {
		b.Error(err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(file, body, 0o644)
	}
	if err != nil {
		b.Error(err)
	}
}

// memberWatch counts, from a cache of the member's objects, what the
// benchmark waits for.
type memberWatch struct{ cache cache.Cache }

func watchMember(ctx context.Context, c *testenv.Cluster) (*memberWatch, error) {
	ca, err := cache.New(c.Config, cache.Options{Scheme: c.Client.Scheme()})
	if err != nil {
		return nil, err
	}
	for _, obj := range []client.Object{&fmv1alpha1.ServiceImport{}, &corev1.Service{}, &mcsv1beta1.ServiceImport{}, &fmv1alpha1.ServiceExport{}} {
		if _, err := ca.GetInformer(ctx, obj); err != nil {
			return nil, err
		}
	}
	go func() { _ = ca.Start(ctx) }()
	if !ca.WaitForCacheSync(ctx) {
		return nil, fmt.Errorf("%s: the cache did not sync", c.Name)
	}
	return &memberWatch{cache: ca}, nil
}

// counts are the member's fleetmesh.io imports of the benchmark's
// services, its derived Services, its MCS imports with a clusterset IP
// and Ready, and its valid exports.
func (w *memberWatch) counts(ctx context.Context) (imports, derived, mcs, valid int) {
	var imps fmv1alpha1.ServiceImportList
	var svcs corev1.ServiceList
	var mcsImps mcsv1beta1.ServiceImportList
	var exps fmv1alpha1.ServiceExportList
	for _, l := range []client.ObjectList{&imps, &svcs, &mcsImps, &exps} {
		if err := w.cache.List(ctx, l, client.UnsafeDisableDeepCopy); err != nil {
			return -1, -1, -1, -1
		}
	}
	for _, imp := range imps.Items {
		if strings.HasPrefix(imp.Name, "svc-") && len(imp.Spec.Ports) == 1 {
			imports++
		}
	}
	for _, svc := range svcs.Items {
		if svc.Labels[fmv1alpha1.ManagedByLabel] == fmv1alpha1.ManagedByValue {
			derived++
		}
	}
	for _, imp := range mcsImps.Items {
		if strings.HasPrefix(imp.Name, "svc-") && len(imp.Spec.IPs) == 1 && meta.IsStatusConditionTrue(imp.Status.Conditions, "Ready") {
			mcs++
		}
	}
	for _, e := range exps.Items {
		if meta.IsStatusConditionTrue(e.Status.Conditions, fmv1alpha1.ConditionValid) {
			valid++
		}
	}
	return imports, derived, mcs, valid
}

func isExists(err error) bool {
	return err != nil && (client.IgnoreAlreadyExists(err) == nil)
}
