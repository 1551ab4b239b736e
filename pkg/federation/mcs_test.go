package federation

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
)

func mcsMember(name string, gwPort int32) *Member {
	m := member(name, gwPort, "")
	m.MCS = true
	return m
}

func mcsExport(ns, name string, age time.Duration) mcsv1beta1.ServiceExport {
	return mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(t0.Add(age)), Generation: 1}}
}

// withIP gives a Service its cluster IP, as the API server does.
func withIP(s corev1.Service, ip string) corev1.Service {
	s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.IPFamilies = ip, []string{ip}, []corev1.IPFamily{corev1.IPv4Protocol}
	return s
}

func mcsImport(t *testing.T, p *Plan, member, key string) *mcsv1beta1.ServiceImport {
	t.Helper()
	imp := p.Members[member].MCSImports[key]
	if imp == nil {
		t.Fatalf("%s has no MCS import %s; it has %v", member, key, keys(p.Members[member].MCSImports))
	}
	return imp
}

func TestAnMCSExportIsImportedInEveryMemberWithItsOwnClustersetIP(t *testing.T) {
	c1, c2, c3 := mcsMember("cluster-1", 81), mcsMember("cluster-2", 82), mcsMember("cluster-3", 83)
	web := withIP(service("shop", "web", corev1.ServicePort{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}), "10.96.1.1")
	web.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	web.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
	web.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyCluster)
	web.Spec.TrafficDistribution = ptr.To(corev1.ServiceTrafficDistributionPreferClose)
	c1.Services = []corev1.Service{web}
	exp := mcsExport("shop", "web", 0)
	exp.Spec.ExportedLabels = map[string]string{"tier": "front"}
	exp.Spec.ExportedAnnotations = map[string]string{"owner": "shop-team"}
	c1.MCSExports = []mcsv1beta1.ServiceExport{exp}
	// cluster-1 and cluster-2 have the clusterset Service from an
	// earlier sync; cluster-3 does not yet.
	clusterset := func(ip string) corev1.Service {
		return withIP(corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: DerivedName("shop", "web"), Labels: map[string]string{
			fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue, fmv1alpha1.LabelServiceName: "web",
		}}}, ip)
	}
	c1.Services = append(c1.Services, clusterset("10.96.1.100"))
	c2.Services = []corev1.Service{clusterset("10.96.2.2")}
	p := Compute([]*Member{c1, c2, c3})

	// Exported as a fleetmesh.io export without a spec would be: every
	// port, through the gateway, no Ingress.
	fm := importSpec(t, p, "cluster-2", "shop/web")
	if len(fm.Spec.Ports) != 1 || len(fm.Spec.Ports[0].Endpoints) != 1 || fm.Spec.Ports[0].Endpoints[0].Target.Port != 81 || fm.Spec.ServiceAccountName != "" {
		t.Errorf("cluster-2's fleetmesh.io import: %+v", fm.Spec)
	}
	if len(p.Members["cluster-1"].Ingresses) != 0 {
		t.Errorf("an MCS export made an Ingress: %v", keys(p.Members["cluster-1"].Ingresses))
	}
	// The name stays the importers' users' (the MCS API derives no
	// Service of it); every member gets the clusterset Service.
	for _, m := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		if p.Members[m].Services["shop/web"] != nil {
			t.Errorf("%s: a Service of the exported name was derived", m)
		}
		cs := p.Members[m].Services["shop/"+DerivedName("shop", "web")]
		if cs == nil || cs.Labels[fmv1alpha1.LabelServiceName] != "web" || !isOurs(cs.Labels) || cs.Spec.Selector != nil || len(cs.Spec.Ports) != 1 {
			t.Errorf("%s: clusterset Service %+v", m, cs)
		}
	}
	if DerivedName("shop", "web") != "derived-isrlchlhrq" {
		t.Errorf("DerivedName(shop, web) = %s, not the MCS API controllers' name", DerivedName("shop", "web"))
	}
	wantSpec := func(ip string) mcsv1beta1.ServiceImportSpec {
		s := mcsv1beta1.ServiceImportSpec{
			Type:  mcsv1beta1.ClusterSetIP,
			Ports: []mcsv1beta1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 8080}},
			IPs:   []string{ip}, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			SessionAffinity: corev1.ServiceAffinityClientIP, SessionAffinityConfig: web.Spec.SessionAffinityConfig,
			InternalTrafficPolicy: web.Spec.InternalTrafficPolicy, TrafficDistribution: web.Spec.TrafficDistribution,
		}
		if ip == "" {
			s.IPs, s.IPFamilies = nil, nil
		}
		return s
	}
	// Every member, the exporter too, holds the standard import; its
	// clusterset IP is its own Service's address.
	for member, ip := range map[string]string{"cluster-1": "10.96.1.100", "cluster-2": "10.96.2.2", "cluster-3": ""} {
		imp := mcsImport(t, p, member, "shop/web")
		if diff := cmp.Diff(wantSpec(ip), imp.Spec); diff != "" {
			t.Errorf("%s's MCS import (-want +got):\n%s", member, diff)
		}
		if imp.Labels["tier"] != "front" || !isOurs(imp.Labels) || imp.Annotations["owner"] != "shop-team" || imp.Annotations[DerivedServiceAnnotation] != DerivedName("shop", "web") {
			t.Errorf("%s's MCS import labels %v annotations %v", member, imp.Labels, imp.Annotations)
		}
		if diff := cmp.Diff([]mcsv1beta1.ClusterStatus{{Cluster: "cluster-1"}}, imp.Status.Clusters); diff != "" {
			t.Errorf("%s's MCS import clusters: %s", member, diff)
		}
		ready := meta.FindStatusCondition(imp.Status.Conditions, string(mcsv1beta1.ServiceImportConditionReady))
		if wantReady := ip != ""; ready == nil || (ready.Status == metav1.ConditionTrue) != wantReady {
			t.Errorf("%s's MCS import Ready = %+v, want %v (a clusterset IP or not)", member, ready, wantReady)
		}
	}
	conds := mcsConditions(p.Exports["cluster-1"]["shop/web"], 1)
	for typ, reason := range map[string]mcsv1beta1.ServiceExportConditionReason{
		fmv1alpha1.ConditionValid: mcsv1beta1.ServiceExportReasonValid, fmv1alpha1.ConditionConflict: mcsv1beta1.ServiceExportReasonNoConflicts,
		fmv1alpha1.ConditionReady: mcsv1beta1.ServiceExportReasonExported,
	} {
		if c := meta.FindStatusCondition(conds, typ); c == nil || c.Reason != string(reason) {
			t.Errorf("MCS export condition %s = %+v, want reason %s", typ, c, reason)
		}
	}
}

func TestAServiceExportedInBothGroupsFollowsTheFleetmeshExportAndCarriesTheMCSLabels(t *testing.T) {
	c1, c2 := mcsMember("cluster-1", 81), mcsMember("cluster-2", 82)
	c1.Services = []corev1.Service{withIP(service("shop", "web", port8080), "10.96.1.1")}
	c1.Exports = []fmv1alpha1.ServiceExport{export("shop", "web", time.Hour, rule(8080, "/web"))}
	both := mcsExport("shop", "web", 0) // older than the fleetmesh.io one
	both.Spec.ExportedLabels = map[string]string{"tier": "front"}
	c1.MCSExports = []mcsv1beta1.ServiceExport{both}
	// cluster-2 exports the same service later, in fleetmesh.io only.
	c2.Services = []corev1.Service{withIP(service("shop", "web", port8080), "10.96.2.2")}
	c2.Exports = []fmv1alpha1.ServiceExport{export("shop", "web", 30*time.Minute)}
	p := Compute([]*Member{c1, c2})

	if ing := p.Members["cluster-1"].Ingresses["shop/web"]; ing == nil || ing.Spec.Rules[0].HTTP.Paths[0].Path != "/web" {
		t.Errorf("the fleetmesh.io export's rule made no Ingress: %+v", ing)
	}
	if eps := importSpec(t, p, "cluster-2", "shop/web").Spec.Ports[0].Endpoints; len(eps) != 1 || eps[0].Target.Path != "/web" {
		t.Errorf("cluster-2 imports %+v, want cluster-1's /web", eps)
	}
	// cluster-1's service dates from its MCS export, so it is the oldest:
	// its exported labels win, and cluster-2's export (no labels) is in
	// conflict with it.
	if imp := mcsImport(t, p, "cluster-2", "shop/web"); imp.Labels["tier"] != "front" || len(imp.Status.Clusters) != 2 {
		t.Errorf("cluster-2's MCS import: labels %v, clusters %v", imp.Labels, imp.Status.Clusters)
	}
	for _, m := range []string{"cluster-1", "cluster-2"} {
		c := meta.FindStatusCondition(p.Exports[m]["shop/web"], fmv1alpha1.ConditionConflict)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != string(mcsv1beta1.ServiceExportReasonLabelsConflict) {
			t.Errorf("%s: Conflict = %+v, want True/LabelsConflict", m, c)
		}
	}
}

func TestConflictsBeyondPortsAreReportedTogetherAndTheOldestWins(t *testing.T) {
	c1, c2 := mcsMember("cluster-1", 81), mcsMember("cluster-2", 82)
	older := withIP(service("shop", "web", port8080), "10.96.1.1")
	newer := withIP(service("shop", "web", corev1.ServicePort{Port: 9090, Protocol: corev1.ProtocolTCP}), "10.96.2.2")
	newer.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	newer.Spec.ClusterIP, newer.Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
	c1.Services, c2.Services = []corev1.Service{older}, []corev1.Service{newer}
	annotated := mcsExport("shop", "web", time.Minute)
	annotated.Spec.ExportedAnnotations = map[string]string{"a": "b"}
	c1.MCSExports = []mcsv1beta1.ServiceExport{mcsExport("shop", "web", 0)}
	c2.MCSExports = []mcsv1beta1.ServiceExport{annotated}
	p := Compute([]*Member{c1, c2})
	want := "TypeConflict,PortConflict,SessionAffinityConflict,AnnotationsConflict"
	for _, m := range []string{"cluster-1", "cluster-2"} {
		c := meta.FindStatusCondition(p.Exports[m]["shop/web"], fmv1alpha1.ConditionConflict)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != want {
			t.Errorf("%s: Conflict = %+v, want True/%s", m, c, want)
		}
	}
	imp := mcsImport(t, p, "cluster-2", "shop/web")
	if imp.Spec.Type != mcsv1beta1.ClusterSetIP || imp.Spec.SessionAffinity != corev1.ServiceAffinityNone || imp.Annotations["a"] != "" {
		t.Errorf("the newer export's properties won: %+v annotations %v", imp.Spec, imp.Annotations)
	}
	// The union of the ports (by protocol and number: both unnamed).
	if len(imp.Spec.Ports) != 2 {
		t.Errorf("ports %+v, want 8080 and 9090", imp.Spec.Ports)
	}
}

func TestAHeadlessExportHasNoClustersetIPAndItsPodsInMCSSlicesInTheExporter(t *testing.T) {
	c1, c2 := mcsMember("cluster-1", 81), mcsMember("cluster-2", 82)
	db := service("data", "db", corev1.ServicePort{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP})
	db.Spec.ClusterIP, db.Spec.ClusterIPs, db.Spec.IPFamilies = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}, []corev1.IPFamily{corev1.IPv4Protocol}
	c1.Services = []corev1.Service{db}
	c1.EndpointSlices = []discoveryv1.EndpointSlice{{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "data", Name: "db-x7k2p", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses: []string{"10.244.1.5"}, Hostname: ptr.To("db-0"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			NodeName: ptr.To("node-a"), TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "db-0"},
		}},
	}}
	c1.MCSExports = []mcsv1beta1.ServiceExport{mcsExport("data", "db", 0)}
	// cluster-2's headless clusterset Service, as its API server made it:
	// selector-less, so given both families.
	derived := service("data", DerivedName("data", "db"))
	derived.Spec.Selector, derived.Spec.ClusterIP, derived.Spec.ClusterIPs = nil, corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
	derived.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	derived.Labels = map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}
	c2.Services = []corev1.Service{derived}
	p := Compute([]*Member{c1, c2})
	for _, m := range []string{"cluster-1", "cluster-2"} {
		imp := mcsImport(t, p, m, "data/db")
		if imp.Spec.Type != mcsv1beta1.Headless || len(imp.Spec.IPs) != 0 || !slices.Equal(imp.Spec.IPFamilies, []corev1.IPFamily{corev1.IPv4Protocol}) {
			t.Errorf("%s's headless import: %+v", m, imp.Spec)
		}
	}
	s := p.Members["cluster-1"].Slices["data/db-cluster-1-x7k2p"]
	if s == nil {
		t.Fatalf("no MCS slice of cluster-1's own pods: %v", keys(p.Members["cluster-1"].Slices))
	}
	if s.Labels[fmv1alpha1.LabelSourceCluster] != "cluster-1" || s.Labels[fmv1alpha1.LabelServiceName] != "db" ||
		s.Labels[discoveryv1.LabelServiceName] != DerivedName("data", "db") || s.Labels[discoveryv1.LabelManagedBy] != fmv1alpha1.EndpointSliceManagedByFederation {
		t.Errorf("labels %v: want the MCS ones, joining the clusterset Service (not the exported one, whose pods they are)", s.Labels)
	}
	if e := s.Endpoints[0]; ptr.Deref(e.Hostname, "") != "db-0" || !ptr.Deref(e.Conditions.Ready, false) || e.NodeName != nil || e.TargetRef != nil {
		t.Errorf("endpoint %+v: hostname and readiness kept, node and pod left out", e)
	}
	if got := mcsImport(t, p, "cluster-1", "data/db").Status.EndpointSliceObjects; got != mcsv1beta1.EndpointSliceObjectsPresent {
		t.Errorf("cluster-1's import says its slices are %q", got)
	}
	// cluster-2 is on a network of its own: the pod addresses are not
	// copied there.
	if got := mcsImport(t, p, "cluster-2", "data/db").Status.EndpointSliceObjects; got != mcsv1beta1.EndpointSliceObjectsAbsent || len(p.Members["cluster-2"].Slices) != 0 {
		t.Errorf("cluster-2: slices %v, status %q", keys(p.Members["cluster-2"].Slices), got)
	}
}

func TestAMemberWithoutTheMCSAPIGetsNoMCSImportAndAnInvalidMCSExportSaysWhy(t *testing.T) {
	c1, c2 := mcsMember("cluster-1", 81), member("cluster-2", 82, "")
	ext := service("shop", "ext")
	ext.Spec.Type, ext.Spec.ExternalName = corev1.ServiceTypeExternalName, "example.com"
	c1.Services = []corev1.Service{withIP(service("shop", "web", port8080), "10.96.1.1"), ext}
	c1.MCSExports = []mcsv1beta1.ServiceExport{mcsExport("shop", "web", 0), mcsExport("shop", "ext", 0)}
	p := Compute([]*Member{c1, c2})
	if len(p.Members["cluster-2"].MCSImports) != 0 {
		t.Errorf("cluster-2 serves no MCS API, yet gets %v", keys(p.Members["cluster-2"].MCSImports))
	}
	if importSpec(t, p, "cluster-2", "shop/web") == nil {
		t.Error("cluster-2 does not import the MCS export through fleetmesh.io")
	}
	c := meta.FindStatusCondition(mcsConditions(p.Exports["cluster-1"]["shop/ext"], 1), fmv1alpha1.ConditionValid)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != string(mcsv1beta1.ServiceExportReasonInvalidServiceType) {
		t.Errorf("the ExternalName export: Valid = %+v", c)
	}
	if p.Members["cluster-1"].MCSImports["shop/ext"] != nil || p.Members["cluster-2"].Imports["shop/ext"] != nil {
		t.Error("an ExternalName Service was imported")
	}
}
