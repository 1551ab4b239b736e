package federation_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/controller"
	"github.com/fleetmesh/fleetmesh/pkg/federation"
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
	cold := federationMetrics(b, run)
	b.Log("at convergence:")
	cold.log(b)

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
	afterRuns := federationMetrics(b, run)
	b.Log("after the latency runs:")
	afterRuns.log(b)

	// One full sync of the converged fleet, as the periodic resync makes:
	// a change to a Cluster asks for it.
	touched := &fmv1alpha1.Cluster{}
	if err := hub.Client.Get(ctx, client.ObjectKey{Name: exporters[0].Name}, touched); err != nil {
		b.Fatal(err)
	}
	if dir := os.Getenv("FLEETMESH_BENCH_PROFILES"); dir != "" {
		// Where a full sync's time goes: go tool pprof <file>
		profile, err := os.Create(filepath.Join(dir, "federation-full-sync.pprof"))
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(profile); err != nil {
			b.Fatal(err)
		}
		defer profile.Close()
		defer pprof.StopCPUProfile()
	}
	touched.Labels = map[string]string{"bench.fleetmesh.io/touched": "true"}
	if err := hub.Client.Update(ctx, touched); err != nil {
		b.Fatal(err)
	}
	const fullSyncs = `fleetmesh_federation_syncs_total{kind="full"}`
	var steady federationSeries
	for {
		steady = federationMetrics(b, run)
		if steady.sum(fullSyncs) > afterRuns.sum(fullSyncs) {
			break
		}
		if ctx.Err() != nil {
			b.Fatal("no full sync after a Cluster changed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(converge.Seconds(), "converge-s")
	b.ReportMetric(cold.sum("fleetmesh_federation_writes_total{"), "cold-writes")
	b.ReportMetric(cold.sum("fleetmesh_federation_syncs_total{"), "cold-syncs")
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "export-to-import-p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "export-to-import-p99-ms")
	// What a sync of the services that changed took in the latency runs,
	// and a full sync of the converged fleet.
	b.ReportMetric(afterRuns.mean("fleetmesh_federation_sync_seconds", `{kind="services"}`, cold)*1000, "services-sync-ms")
	b.ReportMetric(steady.mean("fleetmesh_federation_sync_seconds", `{kind="full"}`, afterRuns)*1000, "full-sync-ms")
}

// federationSeries are the federation's series of the controller's
// /metrics, by name and labels.
type federationSeries map[string]float64

func federationMetrics(b testing.TB, run *controller.Running) federationSeries {
	out := federationSeries{}
	for _, line := range strings.Split(debugGet(b, run, "/metrics"), "\n") {
		if !strings.HasPrefix(line, "fleetmesh_federation_") {
			continue
		}
		name, value, _ := strings.Cut(line, " ")
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out
}

// sum adds the series whose name starts with prefix.
func (s federationSeries) sum(prefix string) float64 {
	total := 0.0
	for name, v := range s {
		if strings.HasPrefix(name, prefix) {
			total += v
		}
	}
	return total
}

// mean is the mean of a histogram's observations since before.
func (s federationSeries) mean(histogram, labels string, before federationSeries) float64 {
	sum := s[histogram+"_sum"+labels] - before[histogram+"_sum"+labels]
	count := s[histogram+"_count"+labels] - before[histogram+"_count"+labels]
	if count == 0 {
		return 0
	}
	return sum / count
}

// log writes the write and sync counters, one line per kind.
func (s federationSeries) log(b *testing.B) {
	for _, name := range slices.Sorted(maps.Keys(s)) {
		if strings.HasPrefix(name, "fleetmesh_federation_writes_total{") || strings.HasPrefix(name, "fleetmesh_federation_syncs_total{") {
			b.Logf("%s %v", name, s[name])
		}
	}
}

// profileAPIServer writes a 20 s CPU profile of c's API server, taken 10 s
// from now, to file.
func profileAPIServer(b *testing.B, c *testenv.Cluster, file string) {
	time.Sleep(10 * time.Second)
	cs, err := kubernetes.NewForConfig(c.Config)
	if err == nil {
		var profile []byte
		profile, err = cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", "20").DoRaw(context.Background())
		if err == nil {
			err = os.WriteFile(file, profile, 0o644)
		}
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

// BenchmarkMemberWriteCost: what each kind of request the federation makes
// in a member costs that member's API server and etcd, in CPU time per
// request: 300 of each, 8 at a time (as the federation writes), against
// cluster-3 (a real API server with its controller manager). With the
// federation's count of each kind, it bounds from below how fast a fleet
// can be written on a given machine, however well the federation does.
func BenchmarkMemberWriteCost(b *testing.B) {
	const n, ns, owner = 300, "write-cost", "fleetmesh-bench"
	ctx := context.Background()
	c := fleet.Cluster("cluster-3")
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = c.Client.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}()
	ours := map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}
	name := func(i int) string { return fmt.Sprintf("svc-%d", i) }
	imp := func(i int) *fmv1alpha1.ServiceImport {
		return &fmv1alpha1.ServiceImport{
			TypeMeta:   metav1.TypeMeta{APIVersion: fmv1alpha1.GroupVersion.String(), Kind: "ServiceImport"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name(i), Labels: ours},
			Spec: fmv1alpha1.ServiceImportSpec{
				Type: fmv1alpha1.ClusterSetIP, ServiceAccountName: "*", LoadBalancer: fmv1alpha1.RoundRobinLoadBalancer,
				Ports: []fmv1alpha1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, Endpoints: []fmv1alpha1.Endpoint{{
					ClusterKey: "default/default/default/cluster-1", Target: fmv1alpha1.Target{Host: "10.244.0.1", IP: "10.244.0.1", Port: 80},
				}}}},
			},
			Status: fmv1alpha1.ServiceImportStatus{Clusters: []fmv1alpha1.ClusterStatusRef{{Cluster: "cluster-1"}}},
		}
	}
	mcsImp := func(i int) *mcsv1beta1.ServiceImport {
		return &mcsv1beta1.ServiceImport{
			TypeMeta: metav1.TypeMeta{APIVersion: mcsv1beta1.GroupVersion.String(), Kind: "ServiceImport"},
			ObjectMeta: metav1.ObjectMeta{
				Namespace: ns, Name: name(i), Labels: ours,
				Annotations: map[string]string{federation.DerivedServiceAnnotation: name(i)},
			},
			Spec: mcsv1beta1.ServiceImportSpec{
				Type: mcsv1beta1.ClusterSetIP, SessionAffinity: corev1.ServiceAffinityNone, IPs: []string{"10.96.0.1"}, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
				Ports: []mcsv1beta1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
			},
			Status: mcsv1beta1.ServiceImportStatus{
				Clusters: []mcsv1beta1.ClusterStatus{{Cluster: "cluster-1"}},
				Conditions: []metav1.Condition{{
					Type: string(mcsv1beta1.ServiceImportConditionReady), Status: metav1.ConditionTrue,
					Reason: string(mcsv1beta1.ServiceImportReasonReady), Message: "the service is imported", LastTransitionTime: metav1.Now(),
				}},
			},
		}
	}
	svc := func(i int) *corev1.Service {
		return &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name(i), Labels: ours},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
		}
	}
	for _, kind := range []struct {
		name  string
		write func(i int) error
	}{
		{"get", func(i int) error { return c.Client.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}) }},
		{"import", func(i int) error { return federation.Apply(ctx, c.Client, imp(i), owner) }},
		{"import-unchanged", func(i int) error { return federation.Apply(ctx, c.Client, imp(i), owner) }},
		{"import-status", func(i int) error { return federation.ApplyStatus(ctx, c.Client, imp(i), owner) }},
		{"mcs-import", func(i int) error { return federation.Apply(ctx, c.Client, mcsImp(i), owner) }},
		{"mcs-import-status", func(i int) error { return federation.ApplyStatus(ctx, c.Client, mcsImp(i), owner) }},
		{"derived-service", func(i int) error { return federation.Apply(ctx, c.Client, svc(i), owner) }},
	} {
		apiServer0, etcd0, err := c.ControlPlaneCPU()
		if err != nil {
			b.Fatal(err)
		}
		work := make(chan int)
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for i := range work {
					if err := kind.write(i); err != nil {
						errs <- err
					}
				}
			})
		}
		for i := range n {
			work <- i
		}
		close(work)
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatalf("%s: %v", kind.name, err)
		}
		// The watchers' share of the last writes.
		time.Sleep(time.Second)
		apiServer, etcd, err := c.ControlPlaneCPU()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64((apiServer-apiServer0).Microseconds())/1000/n, kind.name+"-apiserver-ms")
		b.ReportMetric(float64((etcd-etcd0).Microseconds())/1000/n, kind.name+"-etcd-ms")
	}
}
