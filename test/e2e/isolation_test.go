package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// TestOneBadServiceLeavesTheOthersServed runs cluster-2's built control
// plane with two services gone wrong beside a healthy one:
//   - ledger is imported with port grpc:8080 while cluster-2's own Service
//     ledger has grpc:9090: the cluster's own Service wins, the imported
//     port is left out (an event says so) and ledger is served;
//   - broken is imported with the port name grpc listed twice (the
//     federation would never write it; a hand-made import can): it is
//     left out, with an event on the import and a metric;
//
// and every other service keeps being served and changing: healthy, made
// and then given a second port afterwards, reaches a sidecar both times.
func TestOneBadServiceLeavesTheOthersServed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := fleet.Cluster("cluster-2")
	const ns = "isolation"
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	imported := func(name string, ports ...fmv1alpha1.ServicePort) *fmv1alpha1.ServiceImport {
		return &fmv1alpha1.ServiceImport{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       fmv1alpha1.ServiceImportSpec{Type: fmv1alpha1.ClusterSetIP, Ports: ports},
		}
	}
	fromCluster3 := []fmv1alpha1.Endpoint{{
		ClusterKey: "default/default/default/cluster-3",
		Target:     fmv1alpha1.Target{Host: gatewayIP(fleet.Cluster("cluster-3")), IP: gatewayIP(fleet.Cluster("cluster-3")), Port: gatewayPort(fleet.Cluster("cluster-3"))},
	}}
	for _, o := range []client.Object{
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ledger"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 9090}}},
		},
		imported("ledger", fmv1alpha1.ServicePort{Name: "grpc", Port: 8080, Protocol: corev1.ProtocolTCP, Endpoints: fromCluster3}),
		imported("broken",
			fmv1alpha1.ServicePort{Name: "grpc", Port: 8080, Protocol: corev1.ProtocolTCP, Endpoints: fromCluster3},
			fmv1alpha1.ServicePort{Name: "grpc", Port: 8081, Protocol: corev1.ProtocolTCP, Endpoints: fromCluster3}),
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "healthy"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		},
	} {
		if err := c.Client.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}

	clusters := sidecarClusters(ctx, t, controlPlanes["cluster-2"].XDSAddress, ns)
	want := func(have ...string) func([]string) bool {
		return func(names []string) bool {
			for _, h := range have {
				if !slices.Contains(names, h) {
					return false
				}
			}
			return !slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, "broken."+ns) })
		}
	}
	healthy80 := "outbound|80||healthy." + ns + ".svc.cluster.local"
	ledger9090 := "outbound|9090||ledger." + ns + ".svc.cluster.local"
	if got, ok := clusters(want(healthy80, ledger9090)); !ok {
		t.Fatalf("the sidecar's clusters in %s: %q; want %s and %s, nothing of broken", ns, got, healthy80, ledger9090)
	}

	// Still changing: a new port of healthy is served.
	var svc corev1.Service
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "healthy"}, &svc); err != nil {
		t.Fatal(err)
	}
	svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "http-admin", Port: 81})
	if err := c.Client.Update(ctx, &svc); err != nil {
		t.Fatal(err)
	}
	healthy81 := "outbound|81||healthy." + ns + ".svc.cluster.local"
	if got, ok := clusters(want(healthy80, healthy81, ledger9090)); !ok {
		t.Fatalf("after healthy gained port 81, the sidecar's clusters: %q", got)
	}

	// The causes, where the owners see them.
	for obj, reason := range map[string]string{"Service/ledger": "LeftOut", "ServiceImport/broken": "Inconsistent"} {
		kind, name, _ := strings.Cut(obj, "/")
		err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
			var list eventsv1.EventList
			if err := c.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
				return false, err
			}
			for _, e := range list.Items {
				if e.Regarding.Kind == kind && e.Regarding.Name == name && e.Reason == reason && e.Type == corev1.EventTypeWarning {
					t.Logf("event on %s: %s", obj, e.Note)
					return true, nil
				}
			}
			return false, fmt.Errorf("no %s event on %s among %d", reason, obj, len(list.Items))
		})
		if err != nil {
			t.Error(err)
		}
	}
	for name, want := range map[string]map[string]string{
		"ledger": {fmv1alpha1.ConditionReady: "True/Ready", fmv1alpha1.ConditionConflict: "True/" + fmv1alpha1.ReasonPortConflict},
		"broken": {fmv1alpha1.ConditionReady: "False/" + fmv1alpha1.ReasonInconsistent, fmv1alpha1.ConditionConflict: "False/" + fmv1alpha1.ReasonNoConflict},
	} {
		var got map[string]string
		err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
			var imp fmv1alpha1.ServiceImport
			if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &imp); err != nil {
				return false, err
			}
			got = map[string]string{}
			for _, cond := range imp.Status.Conditions {
				got[cond.Type] = string(cond.Status) + "/" + cond.Reason
				if bad := cond.Reason != "Ready" && cond.Reason != fmv1alpha1.ReasonNoConflict; bad && want[cond.Type] == got[cond.Type] {
					t.Logf("ServiceImport %s: %s=%s %s: %s", name, cond.Type, cond.Status, cond.Reason, cond.Message)
				}
			}
			return maps.Equal(got, want), nil
		})
		if err != nil {
			t.Errorf("ServiceImport %s's conditions: %v, want %v (%v)", name, got, want, err)
		}
	}
	metrics, err := controlPlanes["cluster-2"].Get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(metrics, `fleetmesh_discovery_inconsistent_services{published="left out"} 1`) {
		t.Errorf("/metrics does not count broken as left out:\n%s", testenv.Grep(metrics, "fleetmesh_discovery_inconsistent"))
	}
}

// sidecarClusters connects to a control plane as a sidecar of namespace
// ns over state-of-the-world ADS and returns a function that waits (up to
// 20 s) until the clusters it is sent satisfy ok, acknowledging every
// response; it returns the last cluster names and whether ok held.
func sidecarClusters(ctx context.Context, t *testing.T, xdsAddress, ns string) func(ok func([]string) bool) ([]string, bool) {
	t.Helper()
	conn, err := grpc.NewClient(xdsAddress, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, err := structpb.NewStruct(map[string]any{"role": "sidecar", "namespace": ns, "pod": "probe", "cluster": "cluster-2"})
	if err != nil {
		t.Fatal(err)
	}
	const clusterType = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "probe." + ns, Metadata: md}, TypeUrl: clusterType}); err != nil {
		t.Fatal(err)
	}
	responses := make(chan *discoveryv3.DiscoveryResponse, 16)
	go func() {
		defer close(responses)
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			_ = stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: clusterType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()})
			responses <- resp
		}
	}()
	var names []string
	return func(ok func([]string) bool) ([]string, bool) {
		if names != nil && ok(names) {
			return names, true
		}
		timeout := time.After(20 * time.Second)
		for {
			select {
			case resp, open := <-responses:
				if !open {
					return names, false
				}
				names = names[:0]
				for _, a := range resp.GetResources() {
					cl := &clusterv3.Cluster{}
					if err := a.UnmarshalTo(cl); err == nil {
						names = append(names, cl.GetName())
					}
				}
				if ok(names) {
					return names, true
				}
			case <-timeout:
				return names, false
			}
		}
	}
}
