package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

var benchRuns int

// BenchmarkEndpointSliceWriteToClient measures, through the real API
// server, the time from an EndpointSlice write (the readiness of an
// endpoint imported from cluster-1 flips) to a proxyless grpc-go client in
// cluster-2 acknowledging the new assignment: watch, debounce (the
// harness's control planes wait 50 ms of quiet), rebuild, translation,
// push and the client's processing.
func BenchmarkEndpointSliceWriteToClient(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t := b
	c1, c2 := fleet.Cluster("cluster-1"), fleet.Cluster("cluster-2")
	// Go runs a benchmark once before its measured run: each run gets a
	// service of its own.
	benchRuns++
	ns, name := "bench", fmt.Sprintf("echo-%d", benchRuns)
	if err := c2.EnsureNamespace(ctx, ns); err != nil {
		b.Fatal(err)
	}
	imp := &fmv1alpha1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: fmv1alpha1.ServiceImportSpec{Ports: []fmv1alpha1.ServicePort{{Name: "grpc", Port: 8080, Endpoints: []fmv1alpha1.Endpoint{{
			ClusterKey: string(fmv1alpha1.NewClusterKey("", "", "", c1.Name)),
		}}}}},
	}
	if err := c2.Client.Create(ctx, imp); err != nil {
		b.Fatal(err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-cluster-1", Labels: map[string]string{
			fmv1alpha1.LabelServiceName: name, fmv1alpha1.LabelSourceCluster: c1.Name,
			discoveryv1.LabelManagedBy: fmv1alpha1.EndpointSliceManagedByFederation,
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To[int32](8080)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.1.201"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.244.1.202"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
		},
	}
	if err := c2.Client.Create(ctx, slice); err != nil {
		b.Fatal(err)
	}
	applyPolicy(ctx, t, c2, ns, name, fmv1alpha1.FailOverLbType, target(c1, 0))
	cp := controlPlanes["cluster-2"]
	id := "bench-client-" + name
	xdsClient(t, cp.XDSAddress, "cluster-2", id, name+"."+ns+".svc.cluster.local:8080")
	waitAcked(ctx, t, cp, id)

	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		prev := ackedEndpoints(cp, id)
		slice.Endpoints[1].Conditions.Ready = ptr.To(i%2 == 1)
		start := time.Now()
		if err := c2.Client.Update(ctx, slice); err != nil {
			b.Fatal(err)
		}
		var at time.Time
		err := testenv.Eventually(ctx, 10*time.Second, func(context.Context) (bool, error) {
			for _, p := range proxiesOf(cp) {
				if st := p.Types["ClusterLoadAssignment"]; p.ID == id && st != nil && st.Acked != prev && st.Acked != "" {
					at = st.AckedAt
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, at.Sub(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
