package federation

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/scheme"
)

// richFleet is the article's fleet with what makes planning a service
// depend on more than its export: members on one network with MCS API and
// pod addresses, an MCS export, a port conflict, an unknown member whose
// contribution is carried over, and objects the federation wrote before.
func richFleet() []*Member {
	fleet := articleFleet()
	c1, c2, c3 := fleet[0], fleet[1], fleet[2]
	c4 := member("cluster-4", 84, "east")
	c4.Known = false
	c1.Cluster.Spec.Network, c2.Cluster.Spec.Network = "east", "east"
	c1.MCS, c2.MCS = true, true
	c1.EndpointSlices = []discoveryv1.EndpointSlice{{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin-x7k2p", Labels: map[string]string{discoveryv1.LabelServiceName: "httpbin"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(""), Port: ptr.To[int32](8080)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.11"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}}
	// cluster-3's httpbin has another port too: a conflict.
	c3.Services[0].Spec.Ports = append(c3.Services[0].Spec.Ports, corev1.ServicePort{Name: "admin", Port: 9000, Protocol: corev1.ProtocolTCP})
	// cluster-2 exports curl through the MCS API alone.
	c2.MCSExports = []mcsv1beta1.ServiceExport{{ObjectMeta: metav1.ObjectMeta{Namespace: "curl", Name: "curl", CreationTimestamp: metav1.NewTime(t0), Generation: 1}}}
	// What the federation wrote before: cluster-2's import of a service
	// of the unknown cluster-4, and its derived Services.
	ours := map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}
	c2.Imports = []fmv1alpha1.ServiceImport{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "legacy", Name: "db", Labels: ours},
		Spec: fmv1alpha1.ServiceImportSpec{Type: fmv1alpha1.ClusterSetIP, Ports: []fmv1alpha1.ServicePort{{
			Port: 5432, Protocol: corev1.ProtocolTCP,
			Endpoints: []fmv1alpha1.Endpoint{{ClusterKey: c4.key(), Target: fmv1alpha1.Target{Host: "192.168.1.110", IP: "192.168.1.110", Port: 84}}},
		}}},
		Status: fmv1alpha1.ServiceImportStatus{Clusters: []fmv1alpha1.ClusterStatusRef{{Cluster: "cluster-4"}}},
	}}
	derived := service("httpbin", "httpbin", port8080)
	derived.Labels, derived.Spec.Selector, derived.Spec.ClusterIPs = ours, nil, []string{"10.96.0.10"}
	clusterset := service("curl", DerivedName("curl", "curl"), corev1.ServicePort{Name: "http", Port: 80})
	clusterset.Labels = map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue, fmv1alpha1.LabelServiceName: "curl"}
	clusterset.Spec.Selector, clusterset.Spec.ClusterIPs = nil, []string{"10.96.0.20"}
	c2.Services = append(c2.Services, derived, clusterset)
	c2.Namespaces = []corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "curl"}}}
	// An Ingress of cluster-1's own, which an export's rule must not take.
	c1.Ingresses = []networkingv1.Ingress{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "site", CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))},
		Spec: networkingv1.IngressSpec{IngressClassName: ptr.To(fmv1alpha1.IngressClass), Rules: []networkingv1.IngressRule{{IngressRuleValue: networkingv1.IngressRuleValue{
			HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: "/cluster-1/httpbin-mesh-cluster-1"}}},
		}}}},
	}}
	return append(fleet, c4)
}

// memberReader is a reader of the member's objects, indexed as the
// federation's member caches are.
func memberReader(t *testing.T, m *Member) client.Reader {
	t.Helper()
	var objs []client.Object
	add := func(items ...client.Object) { objs = append(objs, items...) }
	add(objects(m.Namespaces)...)
	add(objects(m.Services)...)
	add(objects(m.EndpointSlices)...)
	add(objects(m.Ingresses)...)
	add(objects(m.Exports)...)
	add(objects(m.Imports)...)
	add(objects(m.MCSExports)...)
	add(objects(m.MCSImports)...)
	return fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).
		WithIndex(&discoveryv1.EndpointSlice{}, sliceServiceField, indexSliceService).Build()
}

// objects are a slice's elements as client objects (pointers to them).
func objects[T any, PT interface {
	*T
	client.Object
}](items []T) []client.Object {
	var out []client.Object
	for _, p := range pointers(items) {
		out = append(out, PT(p))
	}
	return out
}

// TestAServicePlannedAloneIsPlannedAsInTheWholeFleet: a sync of the
// services that changed reads each member's objects of those services
// (readScope) and plans them; for every service, what it plans is what
// planning the whole fleet plans for that service, in every member.
func TestAServicePlannedAloneIsPlannedAsInTheWholeFleet(t *testing.T) {
	fleet := richFleet()
	whole := Compute(fleet)
	services := map[string]bool{}
	for _, d := range whole.Members {
		for _, m := range []map[string]bool{keySet(d.Imports), keySet(d.MCSImports), keySet(d.Ingresses)} {
			maps.Copy(services, m)
		}
	}
	for _, exports := range whole.Exports {
		maps.Copy(services, keySet(exports))
	}
	if len(services) < 5 {
		t.Fatalf("the fleet plans too little to compare: %v", slices.Sorted(maps.Keys(services)))
	}
	for key := range services {
		scope := map[string]bool{key: true}
		var scoped []*Member
		for _, m := range fleet {
			sm := &Member{Cluster: m.Cluster, GatewayIP: m.GatewayIP, Known: m.Known, MCS: m.MCS, scope: scope}
			if m.Known {
				if err := readScope(context.Background(), memberReader(t, m), sm, scope); err != nil {
					t.Fatal(err)
				}
			}
			scoped = append(scoped, sm)
		}
		alone := Compute(scoped)
		for _, m := range fleet {
			name := m.name()
			if diff := cmp.Diff(ofService(whole, name, key), ofService(alone, name, key)); diff != "" {
				t.Errorf("%s in %s, planned alone (-in the whole fleet +alone):\n%s", key, name, diff)
			}
		}
	}
}

// planned is what a plan holds of one service in one member.
type planned struct {
	Import     *fmv1alpha1.ServiceImport
	MCSImport  *mcsv1beta1.ServiceImport
	Services   []*corev1.Service
	Slices     []*discoveryv1.EndpointSlice
	Ingress    *networkingv1.Ingress
	Conditions []metav1.Condition
	// NamespaceMade: the namespace is made where an import needs it.
	NamespaceMade bool
}

func ofService(p *Plan, member, key string) planned {
	d := p.Members[member]
	ns, name, _ := strings.Cut(key, "/")
	out := planned{
		Import: d.Imports[key], MCSImport: d.MCSImports[key], Ingress: d.Ingresses[key], Conditions: p.Exports[member][key],
		NamespaceMade: (d.Imports[key] == nil && d.MCSImports[key] == nil) || slices.Contains(d.Namespaces, ns),
	}
	for _, svc := range []string{name, DerivedName(ns, name)} {
		if s := d.Services[ns+"/"+svc]; s != nil {
			out.Services = append(out.Services, s)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(d.Slices)) {
		if s := d.Slices[k]; s.Namespace == ns && sliceService(s) == name {
			out.Slices = append(out.Slices, s)
		}
	}
	return out
}

func keySet[T any](m map[string]T) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

func TestAnObjectChangesTheServiceItBelongsTo(t *testing.T) {
	ours := map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}
	for _, tc := range []struct {
		what string
		obj  any
		key  string
		all  bool
	}{
		{"a user's Service", &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}, "shop/web", false},
		{"a Service derived under the MCS API's name", &corev1.Service{ObjectMeta: metav1.ObjectMeta{
			Namespace: "shop", Name: DerivedName("shop", "web"), Labels: map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue, fmv1alpha1.LabelServiceName: "web"},
		}}, "shop/web", false},
		{"a user's Service that carries the label", &corev1.Service{ObjectMeta: metav1.ObjectMeta{
			Namespace: "shop", Name: "api", Labels: map[string]string{fmv1alpha1.LabelServiceName: "web"},
		}}, "shop/api", false},
		{"a Service's EndpointSlice", &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{
			Namespace: "shop", Name: "web-abcde", Labels: map[string]string{discoveryv1.LabelServiceName: "web"},
		}}, "shop/web", false},
		{"an MCS copy, joined to the clusterset Service", &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{
			Namespace: "shop", Name: "web-cluster-1-abcde", Labels: map[string]string{
				discoveryv1.LabelServiceName: DerivedName("shop", "web"), fmv1alpha1.LabelServiceName: "web",
				discoveryv1.LabelManagedBy: fmv1alpha1.EndpointSliceManagedByFederation,
			},
		}}, "shop/web", false},
		{"an EndpointSlice of no Service", &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "manual"}}, "", false},
		{"an export", &fmv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}, "shop/web", false},
		{"an import", &fmv1alpha1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}, "shop/web", false},
		{"an MCS export", &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}, "shop/web", false},
		{"an MCS import", &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}, "shop/web", false},
		{"a deleted export seen late", toolscache.DeletedFinalStateUnknown{Obj: &fmv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}}, "shop/web", false},
		{"an Ingress (any export's rules may collide with it)", &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Labels: ours}}, "", true},
		{"a namespace", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, "", true},
		{"a mirrored Cluster", &fmv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "cluster-1"}}, "", true},
		{"something unknown", "?", "", true},
	} {
		key, all := serviceOf(tc.obj)
		if key != tc.key || all != tc.all {
			t.Errorf("%s: changes service %q, everything %v; want %q, %v", tc.what, key, all, tc.key, tc.all)
		}
	}
}

func TestABatchIsScopedToItsServicesUnlessOneAsksForTheFleet(t *testing.T) {
	if got := scopeOf([]request{{"shop/web"}, {"shop/api"}, {"shop/web"}}); len(got) != 2 || !got["shop/web"] || !got["shop/api"] {
		t.Errorf("scope = %v, want shop/web and shop/api", got)
	}
	if got := scopeOf([]request{{"shop/web"}, fleet}); got != nil {
		t.Errorf("scope = %v, want the fleet (nil)", got)
	}
	many := make([]request, maxScoped+1)
	for i := range many {
		many[i] = request{fmt.Sprintf("shop/svc-%d", i)}
	}
	if got := scopeOf(many); got != nil {
		t.Errorf("%d services scoped alone, want the fleet beyond %d", len(got), maxScoped)
	}
}
