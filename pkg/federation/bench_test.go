package federation_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
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
	extra, err := testenv.StartFleet(ctx, testenv.FleetOptions{Clusters: []string{"cluster-4", "cluster-5"}, NoControllerManager: true})
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
	countImports := func(c *testenv.Cluster) int {
		var list fmv1alpha1.ServiceImportList
		if err := c.Client.List(ctx, &list); err != nil {
			return -1
		}
		n := 0
		for _, imp := range list.Items {
			if len(imp.Name) > 4 && imp.Name[:4] == "svc-" && len(imp.Spec.Ports) == 1 {
				n++
			}
		}
		return n
	}

	b.ResetTimer()
	start := time.Now()
	stop, _ := startFederationRun(b)
	defer stop()
	// Converged: every member holds every import and derived Service it
	// should, and every export's status is written.
	countDerived := func(c *testenv.Cluster) int {
		var list corev1.ServiceList
		if err := c.Client.List(ctx, &list, client.MatchingLabels{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}); err != nil {
			return -1
		}
		return len(list.Items)
	}
	countValid := func(c *testenv.Cluster) int {
		var list fmv1alpha1.ServiceExportList
		if err := c.Client.List(ctx, &list); err != nil {
			return -1
		}
		n := 0
		for _, e := range list.Items {
			if meta.IsStatusConditionTrue(e.Status.Conditions, fmv1alpha1.ConditionValid) {
				n++
			}
		}
		return n
	}
	// The MCS API's imports too (every member serves it): one per service
	// in every member, exporters included, each with its clusterset IP.
	countMCS := func(c *testenv.Cluster) int {
		var list mcsv1beta1.ServiceImportList
		if err := c.Client.List(ctx, &list); err != nil {
			return -1
		}
		n := 0
		for _, imp := range list.Items {
			if strings.HasPrefix(imp.Name, "svc-") && len(imp.Spec.IPs) == 1 && meta.IsStatusConditionTrue(imp.Status.Conditions, "Ready") {
				n++
			}
		}
		return n
	}
	for _, c := range all {
		for countImports(c) < wantImports(c) || countDerived(c) < wantImports(c) || countMCS(c) < services {
			if ctx.Err() != nil {
				b.Fatalf("%s has %d of %d imports, %d derived Services, %d of %d MCS imports", c.Name, countImports(c), wantImports(c), countDerived(c), countMCS(c), services)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for _, c := range exporters {
		for countValid(c) < services/len(exporters) {
			if ctx.Err() != nil {
				b.Fatalf("%s has %d valid exports", c.Name, countValid(c))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	converge := time.Since(start)

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
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "export-to-import-p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "export-to-import-p99-ms")
}

func isExists(err error) bool {
	return err != nil && (client.IgnoreAlreadyExists(err) == nil)
}
