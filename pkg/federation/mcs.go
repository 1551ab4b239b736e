package federation

import (
	"cmp"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
)

// The Kubernetes MCS API (KEP-1645, multicluster.x-k8s.io) is spoken
// beside fleetmesh.io, with one meaning: an MCS ServiceExport exports its
// Service as a fleetmesh.io ServiceExport without a spec does (every port,
// no Ingress, any caller, all members), and every member that serves the
// MCS API holds a standard ServiceImport of every service exported to it
// or by it. When a member exports one Service in both groups, the
// fleetmesh.io export's spec governs, the MCS export adds its exported
// labels and annotations, the service counts as exported since the older
// of the two, and both carry the same conditions.

// exports are the member's exports of either group, one per service; an
// MCS export without a fleetmesh.io twin stands in as a fleetmesh.io
// export without a spec.
func (m *Member) exports() []*fmv1alpha1.ServiceExport {
	out := make([]*fmv1alpha1.ServiceExport, 0, len(m.Exports)+len(m.MCSExports))
	for i := range m.Exports {
		out = append(out, &m.Exports[i])
	}
	for i := range m.MCSExports {
		e := &m.MCSExports[i]
		if m.fmExports[e.Namespace+"/"+e.Name] != nil {
			continue
		}
		out = append(out, &fmv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{
			Namespace: e.Namespace, Name: e.Name, UID: e.UID, Generation: e.Generation, CreationTimestamp: e.CreationTimestamp,
		}})
	}
	return out
}

// withMCS joins the member's MCS export of the service, if any, to the
// exporter: the service is exported since the older export.
func (ex *exporter) withMCS(e *mcsv1beta1.ServiceExport) {
	if e == nil {
		return
	}
	ex.mcs = e
	if e.CreationTimestamp.Before(&ex.created) {
		ex.created = e.CreationTimestamp
	}
}

// serviceProperties are what the MCS API carries from the exported
// Services into the ServiceImport, and on which exporters must agree.
type serviceProperties struct {
	sessionAffinity       corev1.ServiceAffinity
	sessionAffinityConfig *corev1.SessionAffinityConfig
	internalTrafficPolicy *corev1.ServiceInternalTrafficPolicy
	trafficDistribution   *string
	labels, annotations   map[string]string
}

// properties are the exporter's; false for an unreachable member's
// carried-over export, whose Service is not known.
func (ex *exporter) properties() (serviceProperties, bool) {
	if ex.service == nil {
		return serviceProperties{}, false
	}
	s := ex.service.Spec
	p := serviceProperties{
		sessionAffinity:       cmp.Or(s.SessionAffinity, corev1.ServiceAffinityNone),
		sessionAffinityConfig: s.SessionAffinityConfig,
		internalTrafficPolicy: s.InternalTrafficPolicy,
		trafficDistribution:   s.TrafficDistribution,
	}
	if ex.mcs != nil {
		p.labels, p.annotations = ex.mcs.Spec.ExportedLabels, ex.mcs.Spec.ExportedAnnotations
	}
	return p, true
}

// fleetProperties are the properties of the oldest exporter whose Service
// is known: the MCS API's conflict resolution.
func fleetProperties(exporters []*exporter) (*exporter, serviceProperties, bool) {
	for _, ex := range exporters {
		if p, ok := ex.properties(); ok {
			return ex, p, true
		}
	}
	return nil, serviceProperties{}, false
}

// propertyConflicts are the ways the exporters' Services (and MCS
// exports) disagree beyond ports and type; the oldest's win.
func propertyConflicts(exporters []*exporter) []conflict {
	winner, want, ok := fleetProperties(exporters)
	if !ok {
		return nil
	}
	var out []conflict
	for _, ex := range exporters {
		got, ok := ex.properties()
		if !ok || ex == winner {
			continue
		}
		differ := func(reason, field string, a, b any) {
			if !equality.Semantic.DeepEqual(a, b) {
				out = append(out, conflict{reason, fmt.Sprintf("%s differs between %s and %s; the oldest export's (%s) wins",
					field, winner.member.name(), ex.member.name(), winner.member.name())})
			}
		}
		differ(string(mcsv1beta1.ServiceExportReasonSessionAffinityConflict), "sessionAffinity", want.sessionAffinity, got.sessionAffinity)
		differ(string(mcsv1beta1.ServiceExportReasonSessionAffinityConfigConflict), "sessionAffinityConfig", want.sessionAffinityConfig, got.sessionAffinityConfig)
		differ(string(mcsv1beta1.ServiceExportReasonInternalTrafficPolicyConflict), "internalTrafficPolicy", want.internalTrafficPolicy, got.internalTrafficPolicy)
		differ(string(mcsv1beta1.ServiceExportReasonTrafficDistributionConflict), "trafficDistribution", want.trafficDistribution, got.trafficDistribution)
		differ(string(mcsv1beta1.ServiceExportReasonLabelsConflict), "exportedLabels", emptyNil(want.labels), emptyNil(got.labels))
		differ(string(mcsv1beta1.ServiceExportReasonAnnotationsConflict), "exportedAnnotations", emptyNil(want.annotations), emptyNil(got.annotations))
	}
	return out
}

func emptyNil(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// planMCSImport adds to a member that serves the MCS API the standard
// ServiceImport of ns/name, if the service is exported to it or by it:
// the ports of the exporters that reach it, the fleet's properties, the
// addresses of its clusterset Service as the clusterset IPs (sidecars and
// gateways route them by the member's GlobalTrafficPolicy), and the
// exporting clusters. The member's own exported pods are copied into MCS
// EndpointSlices of its own, for its DNS.
func planMCSImport(d *Desired, importer *Member, ns, name string, exporters []*exporter, ports []fmv1alpha1.ServicePort, typ fmv1alpha1.ServiceImportType) {
	if !importer.MCS || !importer.Known {
		return
	}
	key := ns + "/" + name
	var from []*exporter
	for _, ex := range exporters {
		if ex.member == importer || reaches(ex, importer) {
			from = append(from, ex)
		}
	}
	if len(from) == 0 {
		return
	}
	imp := &mcsv1beta1.ServiceImport{
		TypeMeta:   metav1.TypeMeta{APIVersion: mcsv1beta1.GroupVersion.String(), Kind: "ServiceImport"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.ServiceImportType(typ)},
	}
	for _, p := range ports {
		if slices.ContainsFunc(from, func(ex *exporter) bool {
			return slices.ContainsFunc(ex.ports, func(q fmv1alpha1.ServicePort) bool { return portID(q) == portID(p) })
		}) {
			imp.Spec.Ports = append(imp.Spec.Ports, mcsv1beta1.ServicePort{Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol, Port: p.Port})
		}
	}
	winner, props, ok := fleetProperties(exporters)
	if !ok {
		// Every exporter is unreachable: what the import said stays.
		if cur := importer.mcsImports[key]; cur != nil {
			props = importedProperties(cur)
		}
	}
	imp.Labels = maps.Clone(props.labels)
	if imp.Labels == nil {
		imp.Labels = map[string]string{}
	}
	imp.Labels[fmv1alpha1.ManagedByLabel] = fmv1alpha1.ManagedByValue
	imp.Annotations = maps.Clone(props.annotations)
	imp.Spec.SessionAffinity = cmp.Or(props.sessionAffinity, corev1.ServiceAffinityNone)
	imp.Spec.SessionAffinityConfig = props.sessionAffinityConfig
	imp.Spec.InternalTrafficPolicy = props.internalTrafficPolicy
	imp.Spec.TrafficDistribution = props.trafficDistribution

	// The clusterset Service, which the member's own exported pods join
	// too; one derived under the MCS API's name is made here.
	clusterset := clustersetService(d, importer, ns, name)
	if clusterset != name {
		d.Services[ns+"/"+clusterset] = derivedService(ns, clusterset, map[string]string{fmv1alpha1.LabelServiceName: name}, typ, ports)
	}
	if imp.Annotations == nil {
		imp.Annotations = map[string]string{}
	}
	imp.Annotations[DerivedServiceAnnotation] = clusterset
	if winner != nil {
		imp.Spec.IPFamilies = winner.service.Spec.IPFamilies
	}
	clustersetAddresses(imp, importer.services[ns+"/"+clusterset])

	slices.SortFunc(from, func(a, b *exporter) int { return cmp.Compare(a.member.name(), b.member.name()) })
	for _, ex := range from {
		imp.Status.Clusters = append(imp.Status.Clusters, mcsv1beta1.ClusterStatus{Cluster: ex.member.name()})
		if ex.member == importer {
			copySlices(d, ex, ports, ns, name, clusterset)
		}
	}
	imp.Status.EndpointSliceObjects = mcsv1beta1.EndpointSliceObjectsAbsent
	if d.sliced[key] {
		imp.Status.EndpointSliceObjects = mcsv1beta1.EndpointSliceObjectsPresent
	}
	d.MCSImports[key] = imp
}

// clustersetService names the Service whose addresses are ns/name's
// clusterset IPs in importer, and which the MCS EndpointSlices there join:
// the derived Service of the name where planImport made one (the importer
// of a fleetmesh.io export), else, where the MCS API is served, one
// derived under the MCS API's name for it (DerivedName); "" for none.
func clustersetService(d *Desired, importer *Member, ns, name string) string {
	switch {
	case d.Services[ns+"/"+name] != nil:
		return name
	case importer.MCS:
		return DerivedName(ns, name)
	}
	return ""
}

// clustersetAddresses sets an MCS import's clusterset IPs and IP families
// from its clusterset Service, svc (nil when it does not exist yet), and
// its Ready condition by them: a ClusterSetIP import without an address
// is Pending. The plan calls it with what the member holds, the writer
// again with the Service it has just created, so an import gets its
// address in the sync that creates the Service.
func clustersetAddresses(imp *mcsv1beta1.ServiceImport, svc *corev1.Service) {
	ready := metav1.Condition{
		Type: string(mcsv1beta1.ServiceImportConditionReady), Status: metav1.ConditionTrue,
		Reason: string(mcsv1beta1.ServiceImportReasonReady), Message: "the service is imported",
	}
	if imp.Spec.Type == mcsv1beta1.ClusterSetIP {
		// A headless import keeps the exported Service's families: its
		// selector-less derived Service is given both families by the API
		// server, whatever the pods have.
		if svc != nil && len(svc.Spec.IPFamilies) > 0 {
			imp.Spec.IPFamilies = svc.Spec.IPFamilies
		}
		imp.Spec.IPs = nil
		if svc != nil {
			for _, ip := range svc.Spec.ClusterIPs {
				if ip != corev1.ClusterIPNone && ip != "" {
					imp.Spec.IPs = append(imp.Spec.IPs, ip)
				}
			}
		}
		// ips and ipFamilies go together, one IP per family.
		if len(imp.Spec.IPs) == 0 {
			imp.Spec.IPFamilies = nil
			ready.Status, ready.Reason = metav1.ConditionFalse, string(mcsv1beta1.ServiceImportReasonPending)
			ready.Message = fmt.Sprintf("waiting for Service %s/%s to have a cluster IP, the clusterset IP here", imp.Namespace, imp.Annotations[DerivedServiceAnnotation])
		}
	}
	imp.Status.Conditions = []metav1.Condition{ready}
}

// DerivedServiceAnnotation is the annotation of an MCS ServiceImport that
// names the Service whose addresses are its clusterset IPs (the MCS API's
// own controllers name it so).
const DerivedServiceAnnotation = "multicluster.kubernetes.io/derived-service"

// DerivedName is the name of the Service derived for the clusterset IP of
// ns/name where the name itself is not fleetmesh's to take: as the MCS
// API's own controllers name it, "derived-" and a hash of ns/name.
func DerivedName(ns, name string) string {
	sum := sha256.Sum256([]byte(ns + "/" + name))
	return "derived-" + strings.ToLower(base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))[:10]
}

// importedProperties are the properties an MCS import carries.
func importedProperties(imp *mcsv1beta1.ServiceImport) serviceProperties {
	p := serviceProperties{
		sessionAffinity: imp.Spec.SessionAffinity, sessionAffinityConfig: imp.Spec.SessionAffinityConfig,
		internalTrafficPolicy: imp.Spec.InternalTrafficPolicy, trafficDistribution: imp.Spec.TrafficDistribution,
		labels: maps.Clone(imp.Labels), annotations: imp.Annotations,
	}
	delete(p.labels, fmv1alpha1.ManagedByLabel)
	return p
}

// mcsConditions are an export's conditions in the MCS API's words.
func mcsConditions(conds []metav1.Condition, generation int64) []metav1.Condition {
	out := make([]metav1.Condition, 0, len(conds))
	for _, c := range conds {
		switch {
		case c.Type == fmv1alpha1.ConditionValid && c.Status == metav1.ConditionTrue:
			c.Reason = string(mcsv1beta1.ServiceExportReasonValid)
		case c.Type == fmv1alpha1.ConditionConflict && c.Status == metav1.ConditionFalse:
			c.Reason = string(mcsv1beta1.ServiceExportReasonNoConflicts)
		case c.Type == fmv1alpha1.ConditionReady && c.Status == metav1.ConditionFalse:
			c.Reason = string(mcsv1beta1.ServiceExportReasonFailed)
		}
		c.ObservedGeneration = generation
		out = append(out, c)
	}
	return out
}

// withConditions is conds set on prev as meta.SetStatusCondition does:
// a condition whose status is unchanged keeps its transition time.
func withConditions(prev, conds []metav1.Condition) []metav1.Condition {
	next := slices.Clone(prev)
	for _, c := range conds {
		meta.SetStatusCondition(&next, c)
	}
	return next
}

// ownsOnly reports whether every label and annotation the field manager
// set on obj (its managed fields say which) is one of want's: none it
// applied before is left over.
func ownsOnly(obj metav1.Object, manager string, labels, annotations map[string]string) bool {
	for _, mf := range obj.GetManagedFields() {
		if mf.Manager != manager || mf.Subresource != "" || mf.FieldsV1 == nil {
			continue
		}
		// FieldsV1 is a trie: {"f:metadata":{"f:labels":{"f:<key>":{}}}}.
		var trie struct {
			Metadata struct {
				Labels      map[string]any `json:"f:labels"`
				Annotations map[string]any `json:"f:annotations"`
			} `json:"f:metadata"`
		}
		if err := json.Unmarshal(mf.FieldsV1.GetRawBytes(), &trie); err != nil {
			return false
		}
		for _, owned := range []struct {
			keys map[string]any
			want map[string]string
		}{{trie.Metadata.Labels, labels}, {trie.Metadata.Annotations, annotations}} {
			for k := range owned.keys {
				if key, ok := strings.CutPrefix(k, "f:"); ok {
					if _, wanted := owned.want[key]; !wanted {
						return false
					}
				}
			}
		}
	}
	return true
}

// mcsImportUpToDate: the import needs no write of its metadata and spec:
// it has want's spec, labels and annotations, and none the federation set
// before and wants no more (the managed fields are read only then).
func mcsImportUpToDate(cur, want *mcsv1beta1.ServiceImport) bool {
	if !equality.Semantic.DeepEqual(cur.Spec, want.Spec) || !hasLabels(cur.Labels, want.Labels) || !hasLabels(cur.Annotations, want.Annotations) {
		return false
	}
	// Nothing is left over where the import has exactly the wanted labels
	// and annotations: the managed fields need no reading.
	return (maps.Equal(cur.Labels, want.Labels) && maps.Equal(cur.Annotations, want.Annotations)) ||
		ownsOnly(cur, FieldOwner, want.Labels, want.Annotations)
}

// mcsImportStatusUpToDate: the import's status needs no write.
func mcsImportStatusUpToDate(cur, want *mcsv1beta1.ServiceImport) bool {
	if !equality.Semantic.DeepEqual(cur.Status.Clusters, want.Status.Clusters) || cur.Status.EndpointSliceObjects != want.Status.EndpointSliceObjects {
		return false
	}
	for _, c := range want.Status.Conditions {
		prev := meta.FindStatusCondition(cur.Status.Conditions, c.Type)
		if prev == nil || prev.Status != c.Status || prev.Reason != c.Reason || prev.Message != c.Message {
			return false
		}
	}
	return true
}
