package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// These helpers write what the federation writes (ServiceImports, MCS
// EndpointSlices, mirrored Clusters), so the control plane can be tested
// before and apart from the federation.

// gatewayIP is cluster-N's gateway address on the test network.
func gatewayIP(c *testenv.Cluster) string { return fmt.Sprintf("10.244.0.%d", 81+c.Index) }

func gatewayPort(c *testenv.Cluster) int32 { return int32(81 + c.Index) }

// exportService writes the ServiceExport a user writes in an exporting
// cluster.
func exportService(ctx context.Context, t testing.TB, c *testenv.Cluster, ns, name string, rules ...fmv1alpha1.ServiceExportRule) {
	t.Helper()
	exp := &fmv1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       fmv1alpha1.ServiceExportSpec{Rules: rules},
	}
	if err := c.Client.Create(ctx, exp); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// createService creates a Service selecting app=<name> with one port.
func createService(ctx context.Context, t testing.TB, c *testenv.Cluster, ns, name, portName string, port int32) {
	t.Helper()
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: portName, Port: port, Protocol: corev1.ProtocolTCP}},
		},
	}
	if err := c.Client.Create(ctx, svc); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// readySliceAddresses waits until the cluster's EndpointSlices for the
// service (written by the real EndpointSlice controller) list n ready
// addresses, and returns the slices.
func readySlices(ctx context.Context, t testing.TB, c *testenv.Cluster, ns, name string, n int) []discoveryv1.EndpointSlice {
	t.Helper()
	var out []discoveryv1.EndpointSlice
	err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
		var list discoveryv1.EndpointSliceList
		if err := c.Client.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: name}); err != nil {
			return false, err
		}
		ready := 0
		for _, s := range list.Items {
			for _, e := range s.Endpoints {
				if ptr.Deref(e.Conditions.Ready, true) {
					ready += len(e.Addresses)
				}
			}
		}
		out = list.Items
		return ready == n, nil
	})
	if err != nil {
		t.Fatalf("%s: %s/%s never had %d ready endpoints: %v", c.Name, ns, name, n, err)
	}
	return out
}

// importService writes, into the consumer, the ServiceImport of ns/name
// exported by the exporters and, for exporters on the consumer's network,
// copies of their EndpointSlices labelled as the MCS API does.
func importService(ctx context.Context, t testing.TB, consumer *testenv.Cluster, ns, name, portName string, port int32, exporters ...*testenv.Cluster) {
	t.Helper()
	if err := consumer.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	imp := &fmv1alpha1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}},
		Spec:       fmv1alpha1.ServiceImportSpec{Type: fmv1alpha1.ClusterSetIP, Ports: []fmv1alpha1.ServicePort{{Name: portName, Port: port, Protocol: corev1.ProtocolTCP}}},
	}
	for _, ex := range exporters {
		imp.Spec.Ports[0].Endpoints = append(imp.Spec.Ports[0].Endpoints, fmv1alpha1.Endpoint{
			ClusterKey: string(fmv1alpha1.NewClusterKey("", "", "", ex.Name)),
			Target:     fmv1alpha1.Target{Host: gatewayIP(ex), IP: gatewayIP(ex), Port: gatewayPort(ex)},
		})
		if network[ex.Name] == "" || network[ex.Name] != network[consumer.Name] {
			continue // reached through its gateway
		}
		for _, s := range readySlices(ctx, t, ex, ns, name, 1) {
			cp := &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: ns, Name: fmt.Sprintf("%s-%s-%s", name, ex.Name, s.Name[len(s.Name)-5:]),
					Labels: map[string]string{
						fmv1alpha1.LabelServiceName:   name,
						fmv1alpha1.LabelSourceCluster: ex.Name,
						discoveryv1.LabelManagedBy:    fmv1alpha1.EndpointSliceManagedByFederation,
						fmv1alpha1.ManagedByLabel:     fmv1alpha1.ManagedByValue,
					},
				},
				AddressType: s.AddressType, Endpoints: s.Endpoints, Ports: s.Ports,
			}
			for i := range cp.Endpoints {
				cp.Endpoints[i].NodeName, cp.Endpoints[i].TargetRef = nil, nil
			}
			if err := consumer.Client.Create(ctx, cp); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
	}
	if err := consumer.Client.Create(ctx, imp); err != nil {
		t.Fatal(err)
	}
}

// applyPolicy creates or replaces the consumer's GlobalTrafficPolicy.
func applyPolicy(ctx context.Context, t testing.TB, c *testenv.Cluster, ns, name string, lbType fmv1alpha1.LbType, targets ...fmv1alpha1.TrafficTarget) {
	t.Helper()
	p := &fmv1alpha1.GlobalTrafficPolicy{}
	err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p)
	switch {
	case apierrors.IsNotFound(err):
		p = &fmv1alpha1.GlobalTrafficPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       fmv1alpha1.GlobalTrafficPolicySpec{LbType: lbType, Targets: targets},
		}
		if err := c.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	case err != nil:
		t.Fatal(err)
	default:
		p.Spec = fmv1alpha1.GlobalTrafficPolicySpec{LbType: lbType, Targets: targets}
		if err := c.Client.Update(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
}

func target(c *testenv.Cluster, weight int32) fmv1alpha1.TrafficTarget {
	t := fmv1alpha1.TrafficTarget{ClusterKey: fmv1alpha1.NewClusterKey("", "", "", c.Name)}
	if weight > 0 {
		t.Weight = ptr.To(weight)
	}
	return t
}
