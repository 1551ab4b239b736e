package federation

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

func member(name string, gwPort int32, network string) *Member {
	return &Member{
		Cluster: fmv1alpha1.Cluster{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: fmv1alpha1.ClusterSpec{
				Region: "default", Zone: "default", Group: "default",
				GatewayHost: "192.168.1.110", GatewayPort: gwPort, Network: network, Kubeconfig: "secret",
			},
		},
		GatewayIP: "192.168.1.110",
		Known:     true,
	}
}

func service(ns, name string, ports ...corev1.ServicePort) corev1.Service {
	return corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "pipy"}, Ports: ports, ClusterIP: "10.96.0.10"},
	}
}

func export(ns, name string, age time.Duration, rules ...fmv1alpha1.ServiceExportRule) fmv1alpha1.ServiceExport {
	return fmv1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(t0.Add(age)), Generation: 1},
		Spec:       fmv1alpha1.ServiceExportSpec{ServiceAccountName: "*", LoadBalancer: fmv1alpha1.RoundRobinLoadBalancer, Rules: rules},
	}
}

func rule(port int32, path string) fmv1alpha1.ServiceExportRule {
	return fmv1alpha1.ServiceExportRule{PortNumber: port, Path: path, PathType: fmv1alpha1.PathTypePrefix}
}

var port8080 = corev1.ServicePort{Port: 8080, Protocol: corev1.ProtocolTCP}

// articleFleet is the article's state after its export step.
func articleFleet() []*Member {
	c1, c2, c3 := member("cluster-1", 81, ""), member("cluster-2", 82, ""), member("cluster-3", 83, "")
	for i, c := range []*Member{c1, c3} {
		n := c.name()
		c.Services = []corev1.Service{service("httpbin", "httpbin", port8080), service("httpbin", "httpbin-"+n, port8080)}
		c.Exports = []fmv1alpha1.ServiceExport{
			export("httpbin", "httpbin", time.Duration(i)*time.Minute, rule(8080, "/"+n+"/httpbin-mesh")),
			export("httpbin", "httpbin-"+n, time.Duration(i)*time.Minute, rule(8080, "/"+n+"/httpbin-mesh-"+n)),
		}
	}
	c2.Services = []corev1.Service{service("curl", "curl", corev1.ServicePort{Name: "http", Port: 80})}
	return []*Member{c1, c2, c3}
}

func importSpec(t *testing.T, p *Plan, member, key string) *fmv1alpha1.ServiceImport {
	t.Helper()
	imp := p.Members[member].Imports[key]
	if imp == nil {
		t.Fatalf("%s has no import %s; it has %v", member, key, keys(p.Members[member].Imports))
	}
	return imp
}

func keys[T any](m map[string]T) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestTheArticlesExportsBecomeImportsInCluster2(t *testing.T) {
	p := Compute(articleFleet())
	imp := importSpec(t, p, "cluster-2", "httpbin/httpbin")
	want := fmv1alpha1.ServiceImportSpec{
		Type: fmv1alpha1.ClusterSetIP, ServiceAccountName: "*", LoadBalancer: fmv1alpha1.RoundRobinLoadBalancer,
		Ports: []fmv1alpha1.ServicePort{{
			Port: 8080, Protocol: corev1.ProtocolTCP,
			Endpoints: []fmv1alpha1.Endpoint{
				{ClusterKey: "default/default/default/cluster-1", Target: fmv1alpha1.Target{Host: "192.168.1.110", IP: "192.168.1.110", Port: 81, Path: "/cluster-1/httpbin-mesh"}},
				{ClusterKey: "default/default/default/cluster-3", Target: fmv1alpha1.Target{Host: "192.168.1.110", IP: "192.168.1.110", Port: 83, Path: "/cluster-3/httpbin-mesh"}},
			},
		}},
	}
	if diff := cmp.Diff(want, imp.Spec); diff != "" {
		t.Errorf("cluster-2's import of httpbin (-the article +got):\n%s", diff)
	}
	for _, key := range []string{"httpbin/httpbin-cluster-1", "httpbin/httpbin-cluster-3"} {
		imp := importSpec(t, p, "cluster-2", key)
		if n := len(imp.Spec.Ports[0].Endpoints); n != 1 || !strings.HasSuffix(imp.Spec.Ports[0].Endpoints[0].ClusterKey, strings.TrimPrefix(key, "httpbin/httpbin-")) {
			t.Errorf("%s lists %v", key, imp.Spec.Ports[0].Endpoints)
		}
	}
	if got := keys(p.Members["cluster-2"].Services); len(got) != 3 {
		t.Errorf("derived Services in cluster-2: %v, want httpbin, httpbin-cluster-1, httpbin-cluster-3", got)
	}
	if svc := p.Members["cluster-2"].Services["httpbin/httpbin"]; svc == nil || svc.Spec.Selector != nil || !isOurs(svc.Labels) {
		t.Errorf("derived httpbin: %+v", svc)
	}
	if diff := cmp.Diff([]string{"httpbin"}, p.Members["cluster-2"].Namespaces); diff != "" {
		t.Errorf("namespaces to create in cluster-2: %s", diff)
	}
	// cluster-1 imports what cluster-3 exports, not its own.
	imp1 := importSpec(t, p, "cluster-1", "httpbin/httpbin")
	if eps := imp1.Spec.Ports[0].Endpoints; len(eps) != 1 || eps[0].ClusterKey != "default/default/default/cluster-3" {
		t.Errorf("cluster-1's import lists %v, want cluster-3 only", eps)
	}
	if p.Members["cluster-1"].Services["httpbin/httpbin"] != nil {
		t.Error("cluster-1 has its own httpbin, yet a derived one is planned")
	}
	// Each exporter gets an Ingress for its rules.
	ing := p.Members["cluster-1"].Ingresses["httpbin/httpbin"]
	if ing == nil || ing.Spec.Rules[0].HTTP.Paths[0].Path != "/cluster-1/httpbin-mesh" || *ing.Spec.IngressClassName != fmv1alpha1.IngressClass {
		t.Errorf("cluster-1's Ingress: %+v", ing)
	}
	// Every member mirrors every Cluster, without credentials.
	for _, m := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		for _, c := range []string{"cluster-1", "cluster-2", "cluster-3"} {
			mc := p.Members[m].Clusters[c]
			if mc == nil || !mc.Spec.Mirrored || mc.Spec.Kubeconfig != "" || mc.Status.GatewayIP != "192.168.1.110" {
				t.Errorf("mirror of %s in %s: %+v", c, m, mc)
			}
		}
	}
	for _, key := range []string{"httpbin/httpbin", "httpbin/httpbin-cluster-1"} {
		conds := p.Exports["cluster-1"][key]
		if !meta.IsStatusConditionTrue(conds, fmv1alpha1.ConditionValid) || meta.IsStatusConditionTrue(conds, fmv1alpha1.ConditionConflict) {
			t.Errorf("cluster-1 export %s: %+v", key, conds)
		}
	}
}

func TestExportsThatCannotBeExportedSayWhy(t *testing.T) {
	c1 := member("cluster-1", 81, "")
	c2 := member("cluster-2", 82, "")
	external := service("shop", "ext")
	external.Spec.Type = corev1.ServiceTypeExternalName
	c1.Services = []corev1.Service{service("shop", "web", port8080), external}
	c1.Ingresses = []networkingv1.Ingress{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "theirs"},
		Spec: networkingv1.IngressSpec{IngressClassName: ptr.To(fmv1alpha1.IngressClass), Rules: []networkingv1.IngressRule{{IngressRuleValue: networkingv1.IngressRuleValue{
			HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: "/taken"}}},
		}}}},
	}}
	c1.Exports = []fmv1alpha1.ServiceExport{
		export("shop", "missing", 0), export("shop", "ext", 0),
		export("shop", "web", 0, rule(9090, "/web")),
	}
	second := export("shop", "web", 0, rule(8080, "/taken"))
	second.Namespace = "shop2"
	c1.Services = append(c1.Services, service("shop2", "web", port8080))
	c1.Exports = append(c1.Exports, second)
	p := Compute([]*Member{c1, c2})
	for key, reason := range map[string]string{
		"shop/missing": fmv1alpha1.ReasonNoService, "shop/ext": fmv1alpha1.ReasonInvalidServiceType,
		"shop/web": fmv1alpha1.ReasonInvalidRule, "shop2/web": fmv1alpha1.ReasonPathCollision,
	} {
		c := meta.FindStatusCondition(p.Exports["cluster-1"][key], fmv1alpha1.ConditionValid)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != reason {
			t.Errorf("%s: Valid = %+v, want False/%s", key, c, reason)
		}
	}
	if len(p.Members["cluster-2"].Imports) != 0 {
		t.Errorf("invalid exports were imported: %v", keys(p.Members["cluster-2"].Imports))
	}
}

// portConflict is app/api exported by cluster-1 (http 8080, the older
// export) and cluster-3 (http 9090 and metrics 9100), with cluster-2 the
// importer, all on network.
func portConflict(network string) (c1, c2, c3 *Member) {
	c1, c2, c3 = member("cluster-1", 81, network), member("cluster-2", 82, network), member("cluster-3", 83, network)
	c1.Services = []corev1.Service{service("app", "api", corev1.ServicePort{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP})}
	c3.Services = []corev1.Service{service("app", "api",
		corev1.ServicePort{Name: "http", Port: 9090, Protocol: corev1.ProtocolTCP},
		corev1.ServicePort{Name: "metrics", Port: 9100, Protocol: corev1.ProtocolTCP})}
	c1.Exports = []fmv1alpha1.ServiceExport{export("app", "api", 0)}           // older
	c3.Exports = []fmv1alpha1.ServiceExport{export("app", "api", time.Minute)} // newer
	return c1, c2, c3
}

func TestPortConflictsMarkEveryExporterAndTheOldestWins(t *testing.T) {
	c1, c2, c3 := portConflict("")
	p := Compute([]*Member{c1, c2, c3})
	for _, m := range []string{"cluster-1", "cluster-3"} {
		c := meta.FindStatusCondition(p.Exports[m]["app/api"], fmv1alpha1.ConditionConflict)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != fmv1alpha1.ReasonPortConflict {
			t.Errorf("%s: Conflict = %+v", m, c)
		}
	}
	imp := importSpec(t, p, "cluster-2", "app/api")
	var got []string
	for _, port := range imp.Spec.Ports {
		got = append(got, fmt.Sprintf("%s:%d", port.Name, port.Port))
	}
	if diff := cmp.Diff([]string{"http:8080", "metrics:9100"}, got); diff != "" {
		t.Errorf("ports are the union with the oldest definition of http (-want +got):\n%s", diff)
	}
}

// The loser of a port conflict gets no traffic on that port: neither
// through its gateway nor at its pods' addresses, which reach importers on
// its network in MCS EndpointSlices of only the ports it serves as the
// import defines them.
func TestTheLoserOfAPortConflictGetsNoTrafficOnThatPort(t *testing.T) {
	c1, c2, c3 := portConflict("flat")
	slice := func(name, addr string, ports ...string) discoveryv1.EndpointSlice {
		s := discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "app", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "api"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		}
		for _, p := range ports {
			s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr.To(p), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)})
		}
		return s
	}
	c1.EndpointSlices = []discoveryv1.EndpointSlice{slice("api-aaaaa", "10.244.1.11", "http")}
	c3.EndpointSlices = []discoveryv1.EndpointSlice{slice("api-bbbbb", "10.244.3.11", "http", "metrics"), slice("api-ccccc", "10.244.3.12", "http")}
	p := Compute([]*Member{c1, c2, c3})

	imp := importSpec(t, p, "cluster-2", "app/api")
	got := map[string][]string{}
	for _, port := range imp.Spec.Ports {
		for _, e := range port.Endpoints {
			got[port.Name] = append(got[port.Name], e.ClusterKey)
		}
	}
	want := map[string][]string{"http": {c1.key()}, "metrics": {c3.key()}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("exporters of each port (-want +got):\n%s", diff)
	}
	slicePorts := map[string][]string{}
	for name, s := range p.Members["cluster-2"].Slices {
		for _, sp := range s.Ports {
			slicePorts[name] = append(slicePorts[name], *sp.Name)
		}
	}
	wantSlices := map[string][]string{"app/api-cluster-1-aaaaa": {"http"}, "app/api-cluster-3-bbbbb": {"metrics"}}
	if diff := cmp.Diff(wantSlices, slicePorts); diff != "" {
		t.Errorf("cluster-2's MCS slices and their ports (-want +got); a slice of only the lost port is not copied:\n%s", diff)
	}
}

func TestTheOldestExportsLoadBalancerIsTheFleets(t *testing.T) {
	fleet := articleFleet()
	fleet[0].Exports[0].Spec.LoadBalancer = fmv1alpha1.HashingLoadBalancer   // cluster-1's, older
	fleet[2].Exports[0].Spec.LoadBalancer = fmv1alpha1.LeastWorkLoadBalancer // cluster-3's, newer
	p := Compute(fleet)
	for member, want := range map[string]fmv1alpha1.LoadBalancerType{
		"cluster-2": fmv1alpha1.HashingLoadBalancer,
		// cluster-1 imports only cluster-3's export, but the fleet's
		// value is the oldest export's all the same.
		"cluster-1": fmv1alpha1.HashingLoadBalancer,
		"cluster-3": fmv1alpha1.HashingLoadBalancer,
	} {
		if got := importSpec(t, p, member, "httpbin/httpbin").Spec.LoadBalancer; got != want {
			t.Errorf("%s imports httpbin with %s, want the oldest export's %s", member, got, want)
		}
	}
}

func TestAnUnreachableExporterKeepsItsContribution(t *testing.T) {
	fleet := articleFleet()
	before := Compute(fleet)
	// cluster-2 now holds what the federation wrote; cluster-3 goes away.
	c2 := fleet[1]
	for _, imp := range before.Members["cluster-2"].Imports {
		c2.Imports = append(c2.Imports, *imp)
	}
	fleet[2].Known, fleet[2].Services, fleet[2].Exports = false, nil, nil
	after := Compute(fleet)
	if diff := cmp.Diff(before.Members["cluster-2"].Imports["httpbin/httpbin"].Spec, after.Members["cluster-2"].Imports["httpbin/httpbin"].Spec); diff != "" {
		t.Errorf("cluster-3's endpoint changed while it was unreachable (-before +after):\n%s", diff)
	}
	if after.Members["cluster-2"].Imports["httpbin/httpbin-cluster-3"] == nil {
		t.Error("the import that only cluster-3 exports was dropped while cluster-3 was unreachable")
	}
}

func TestTargetClustersRestrictWhereAServiceIsImported(t *testing.T) {
	fleet := articleFleet()
	fleet[0].Exports[1].Spec.TargetClusters = []fmv1alpha1.ClusterKey{"default/default/default/cluster-3"}
	p := Compute(fleet)
	if p.Members["cluster-2"].Imports["httpbin/httpbin-cluster-1"] != nil {
		t.Error("cluster-2 imports httpbin-cluster-1, which targets cluster-3 only")
	}
	if p.Members["cluster-3"].Imports["httpbin/httpbin-cluster-1"] == nil {
		t.Error("cluster-3, the target, does not import httpbin-cluster-1")
	}
}

func TestMembersOnOneNetworkGetThePodAddresses(t *testing.T) {
	fleet := articleFleet()
	fleet[0].Cluster.Spec.Network, fleet[1].Cluster.Spec.Network = "east", "east"
	fleet[0].EndpointSlices = []discoveryv1.EndpointSlice{{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin-x7k2p", Labels: map[string]string{discoveryv1.LabelServiceName: "httpbin"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(""), Port: ptr.To[int32](8080)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.1.11"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}, NodeName: ptr.To("node-1")},
			{Addresses: []string{"10.244.1.12"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		},
	}}
	p := Compute(fleet)
	s := p.Members["cluster-2"].Slices["httpbin/httpbin-cluster-1-x7k2p"]
	if s == nil {
		t.Fatalf("no copy of cluster-1's slice in cluster-2: %v", keys(p.Members["cluster-2"].Slices))
	}
	if s.Labels[fmv1alpha1.LabelSourceCluster] != "cluster-1" || s.Labels[fmv1alpha1.LabelServiceName] != "httpbin" ||
		s.Labels[discoveryv1.LabelManagedBy] != fmv1alpha1.EndpointSliceManagedByFederation {
		t.Errorf("labels: %v", s.Labels)
	}
	if len(s.Endpoints) != 2 || s.Endpoints[0].NodeName != nil || *s.Endpoints[1].Conditions.Ready {
		t.Errorf("endpoints: %+v", s.Endpoints)
	}
	if len(p.Members["cluster-2"].Slices) != 1 || len(p.Members["cluster-3"].Slices) != 0 {
		t.Errorf("slices go only between members of one network: cluster-2 %v, cluster-3 %v", keys(p.Members["cluster-2"].Slices), keys(p.Members["cluster-3"].Slices))
	}
}

func TestAUserServiceIsNeverDerived(t *testing.T) {
	fleet := articleFleet()
	// The article's step 4: httpbin deployed in cluster-2; and a derived
	// Service a user has since given a selector.
	fleet[1].Services = append(fleet[1].Services, service("httpbin", "httpbin", port8080))
	given := service("httpbin", "httpbin-cluster-1", port8080)
	given.Labels = map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}
	fleet[1].Services = append(fleet[1].Services, given)
	p := Compute(fleet)
	for _, key := range []string{"httpbin/httpbin", "httpbin/httpbin-cluster-1"} {
		if p.Members["cluster-2"].Services[key] != nil {
			t.Errorf("%s is the user's, yet planned as derived", key)
		}
		if p.Members["cluster-2"].Imports[key] == nil {
			t.Errorf("%s is still imported", key)
		}
	}
}

// TestAPathBelongsToItsFirstClaimer: an Ingress of the gateway's class
// made in another namespace after an export with the same path takes
// nothing from the export; one made before it keeps the path, and the
// export says PathCollision.
func TestAPathBelongsToItsFirstClaimer(t *testing.T) {
	ingress := func(ns, name, path string, pathType networkingv1.PathType, age time.Duration) networkingv1.Ingress {
		return networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(t0.Add(age))},
			Spec: networkingv1.IngressSpec{IngressClassName: ptr.To(fmv1alpha1.IngressClass), Rules: []networkingv1.IngressRule{{IngressRuleValue: networkingv1.IngressRuleValue{
				HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: path, PathType: &pathType}}},
			}}}},
		}
	}
	for _, tt := range []struct {
		name       string
		ingress    networkingv1.Ingress
		exportPath string
		wantValid  bool
	}{
		{"a newer Ingress in another namespace takes nothing", ingress("other", "web", "/shop", networkingv1.PathTypePrefix, time.Hour), "/shop", true},
		{"an older Ingress keeps its path", ingress("other", "web", "/shop", networkingv1.PathTypePrefix, -time.Hour), "/shop", false},
		{"an older prefix of another namespace keeps the paths under it", ingress("other", "web", "/shop", networkingv1.PathTypePrefix, -time.Hour), "/shop/cart", false},
		{"an older prefix of the same namespace leaves the paths under it to it", ingress("shop", "legacy", "/shop", networkingv1.PathTypePrefix, -time.Hour), "/shop/cart", true},
		{"an older Exact path keeps only itself", ingress("other", "web", "/shop", networkingv1.PathTypeExact, -time.Hour), "/shop/cart", true},
		{"the root prefix keeps only itself", ingress("other", "web", "/", networkingv1.PathTypePrefix, -time.Hour), "/shop", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c1, c2 := member("cluster-1", 81, ""), member("cluster-2", 82, "")
			c1.Services = []corev1.Service{service("shop", "web", port8080), service("other", "web", port8080)}
			c1.Exports = []fmv1alpha1.ServiceExport{export("shop", "web", 0, rule(8080, tt.exportPath))}
			c1.Ingresses = []networkingv1.Ingress{tt.ingress}
			p := Compute([]*Member{c1, c2})
			c := meta.FindStatusCondition(p.Exports["cluster-1"]["shop/web"], fmv1alpha1.ConditionValid)
			if c == nil || (c.Status == metav1.ConditionTrue) != tt.wantValid {
				t.Fatalf("Valid = %+v, want valid %v", c, tt.wantValid)
			}
			if !tt.wantValid && c.Reason != fmv1alpha1.ReasonPathCollision {
				t.Errorf("reason %s, want PathCollision", c.Reason)
			}
			if _, imported := p.Members["cluster-2"].Imports["shop/web"]; imported != tt.wantValid {
				t.Errorf("imported in cluster-2: %v, want %v", imported, tt.wantValid)
			}
		})
	}
}

// TestComputeLeavesItsInputAsItWas: the reconciler reuses what it read
// after planning (to write statuses, to apply), so planning must change
// nothing of it, its lookups included.
func TestComputeLeavesItsInputAsItWas(t *testing.T) {
	fleet, before := articleFleet(), articleFleet()
	Compute(fleet)
	if diff := cmp.Diff(before, fleet, cmp.AllowUnexported(Member{})); diff != "" {
		t.Errorf("Compute changed its input (-before +after):\n%s", diff)
	}
}
