package federation

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// Member is what the federation knows of one member cluster.
type Member struct {
	// Cluster is the member's Cluster object in the control-plane cluster.
	Cluster fmv1alpha1.Cluster
	// GatewayIP is the Cluster's gatewayHost resolved to an address.
	GatewayIP string
	// Known is true when the objects below are the member's current ones.
	// An unknown member (unreachable, not yet synced) contributes to the
	// fleet what the other members' imports last said it did, and is
	// written nothing.
	Known          bool
	Namespaces     []corev1.Namespace
	Services       []corev1.Service
	Exports        []fmv1alpha1.ServiceExport
	EndpointSlices []discoveryv1.EndpointSlice
	Imports        []fmv1alpha1.ServiceImport
	Ingresses      []networkingv1.Ingress
	// MCS is true when the member serves the MCS API
	// (multicluster.x-k8s.io/v1beta1); its MCS exports and imports are
	// then read, and imports written.
	MCS        bool
	MCSExports []mcsv1beta1.ServiceExport
	MCSImports []mcsv1beta1.ServiceImport
	// Roots are the member's workload roots (its signer's), if any, and
	// TrustDomain the trust domain it issues identities in.
	Roots       []byte
	TrustDomain string

	// scope, when set, are the only services (namespace/name) whose
	// objects were read, and which are written: a sync of the services
	// that changed. Ingresses are all read even then.
	scope map[string]bool

	// services and slices index Services and the member's own
	// EndpointSlices by namespace/name (of their Service), for Compute;
	// fmExports and mcsExports its exports of either group, mcsImports its
	// MCS imports.
	services   map[string]*corev1.Service
	slices     map[string][]*discoveryv1.EndpointSlice
	fmExports  map[string]*fmv1alpha1.ServiceExport
	mcsExports map[string]*mcsv1beta1.ServiceExport
	mcsImports map[string]*mcsv1beta1.ServiceImport
}

// indexed is a copy of every member, with its lookups built; the lookups
// point into the objects the members hold.
func indexed(members []*Member) []*Member {
	out := make([]*Member, len(members))
	for i, m := range members {
		c := *m
		c.index()
		out[i] = &c
	}
	return out
}

// index builds the member's lookups from its objects.
func (m *Member) index() {
	m.services = make(map[string]*corev1.Service, len(m.Services))
	for i := range m.Services {
		s := &m.Services[i]
		m.services[s.Namespace+"/"+s.Name] = s
	}
	m.slices = make(map[string][]*discoveryv1.EndpointSlice)
	for i := range m.EndpointSlices {
		s := &m.EndpointSlices[i]
		if s.Labels[fmv1alpha1.LabelSourceCluster] == "" {
			key := s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]
			m.slices[key] = append(m.slices[key], s)
		}
	}
	m.fmExports = byKey(pointers(m.Exports), nil)
	m.mcsExports = byKey(pointers(m.MCSExports), nil)
	m.mcsImports = byKey(pointers(m.MCSImports), nil)
}

func (m *Member) name() string { return m.Cluster.Name }

func (m *Member) key() string { return string(m.Cluster.Key()) }

// Desired is what fleetmesh wants one member to hold, by namespace/name
// (Clusters by name).
type Desired struct {
	Namespaces []string
	Imports    map[string]*fmv1alpha1.ServiceImport
	MCSImports map[string]*mcsv1beta1.ServiceImport
	Services   map[string]*corev1.Service
	Slices     map[string]*discoveryv1.EndpointSlice
	Ingresses  map[string]*networkingv1.Ingress
	Clusters   map[string]*fmv1alpha1.Cluster

	// sliced are the services (namespace/name) Slices holds copies of.
	sliced map[string]bool
}

// Plan is what every member should hold, and the conditions of every
// export, by member and namespace/name.
type Plan struct {
	Members map[string]*Desired
	Exports map[string]map[string][]metav1.Condition
}

// exporter is one valid export of a service by one member.
type exporter struct {
	member  *Member
	export  *fmv1alpha1.ServiceExport
	service *corev1.Service // nil for an unknown member's carried-over export
	// mcs is the member's MCS export of the service, if any; fleetmesh
	// says it has a fleetmesh.io one.
	mcs       *mcsv1beta1.ServiceExport
	fleetmesh bool
	ports     []fmv1alpha1.ServicePort
	typ       fmv1alpha1.ServiceImportType
	created   metav1.Time
	// carried are an unknown member's last import endpoints, by port
	// identity.
	carried map[string]fmv1alpha1.Endpoint
}

// portID is how the MCS API matches ports across exporters: by name, else
// by protocol and number.
func portID(p fmv1alpha1.ServicePort) string {
	if p.Name != "" {
		return "name:" + p.Name
	}
	return fmt.Sprintf("%s/%d", cmp.Or(p.Protocol, corev1.ProtocolTCP), p.Port)
}

// describePort is a port as its users know it: name (number/protocol).
func describePort(p fmv1alpha1.ServicePort) string {
	if p.Name == "" {
		return fmt.Sprintf("%d/%s", p.Port, cmp.Or(p.Protocol, corev1.ProtocolTCP))
	}
	return fmt.Sprintf("%s (%d/%s)", p.Name, p.Port, cmp.Or(p.Protocol, corev1.ProtocolTCP))
}

func samePort(a, b fmv1alpha1.ServicePort) bool {
	return a.Port == b.Port && cmp.Or(a.Protocol, corev1.ProtocolTCP) == cmp.Or(b.Protocol, corev1.ProtocolTCP) &&
		ptr.Deref(a.AppProtocol, "") == ptr.Deref(b.AppProtocol, "") && a.Name == b.Name
}

// isOurs reports whether fleetmesh wrote the object.
func isOurs(labels map[string]string) bool {
	return labels[fmv1alpha1.ManagedByLabel] == fmv1alpha1.ManagedByValue
}

func condition(typ string, ok bool, reason, message string, generation int64) metav1.Condition {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: generation}
}

// Compute is the federation's plan for the members, a pure function: it
// changes neither the members nor anything they hold.
func Compute(members []*Member) *Plan {
	members = indexed(members)
	plan := &Plan{Members: map[string]*Desired{}, Exports: map[string]map[string][]metav1.Condition{}}
	for _, m := range members {
		plan.Members[m.name()] = &Desired{
			Imports: map[string]*fmv1alpha1.ServiceImport{}, MCSImports: map[string]*mcsv1beta1.ServiceImport{}, Services: map[string]*corev1.Service{},
			Slices: map[string]*discoveryv1.EndpointSlice{}, Ingresses: map[string]*networkingv1.Ingress{},
			Clusters: map[string]*fmv1alpha1.Cluster{}, sliced: map[string]bool{},
		}
		plan.Exports[m.name()] = map[string][]metav1.Condition{}
	}

	// Exports, validated, grouped by service.
	groups := map[string][]*exporter{}
	for _, m := range members {
		if !m.Known {
			continue
		}
		for _, e := range m.exports() {
			key := e.Namespace + "/" + e.Name
			ex, conds := validate(m, e)
			plan.Exports[m.name()][key] = conds
			if ex != nil {
				ex.withMCS(m.mcsExports[key])
				ex.fleetmesh = m.fmExports[key] != nil
				groups[key] = append(groups[key], ex)
				if ing := exportIngress(m, e); ing != nil {
					plan.Members[m.name()].Ingresses[key] = ing
				}
			}
		}
	}
	carryOver(members, groups)

	for key, exporters := range groups {
		// The oldest export wins conflicts; an unreachable member's
		// carried-over export (its age unknown) only when it is alone.
		slices.SortFunc(exporters, func(a, b *exporter) int {
			return cmp.Or(cmp.Compare(carriedRank(a), carriedRank(b)), a.created.Compare(b.created.Time), cmp.Compare(a.member.name(), b.member.name()))
		})
		ports, typ, conflicts := merge(exporters)
		conflicts = append(conflicts, propertyConflicts(exporters)...)
		for _, ex := range exporters {
			if !ex.member.Known {
				continue
			}
			cond := condition(fmv1alpha1.ConditionConflict, len(conflicts) > 0, fmv1alpha1.ReasonNoConflict, "no conflict with the other exporters", ex.export.Generation)
			if len(conflicts) > 0 {
				// As the MCS API says: the reasons joined by commas.
				var reasons, messages []string
				for _, c := range conflicts {
					if !slices.Contains(reasons, c.reason) {
						reasons = append(reasons, c.reason)
					}
					messages = append(messages, c.message)
				}
				cond.Reason, cond.Message = strings.Join(reasons, ","), strings.Join(messages, "; ")
			}
			plan.Exports[ex.member.name()][key] = append(plan.Exports[ex.member.name()][key], cond)
		}
		ns, name, _ := strings.Cut(key, "/")
		for _, importer := range members {
			d := plan.Members[importer.name()]
			planImport(d, importer, ns, name, exporters, ports, typ)
			planMCSImport(d, importer, ns, name, exporters, ports, typ)
		}
	}

	for _, m := range members {
		d := plan.Members[m.name()]
		for _, o := range members {
			d.Clusters[o.name()] = mirror(o, o == m)
		}
		nsSet := map[string]bool{}
		for _, imp := range d.Imports {
			nsSet[imp.Namespace] = true
		}
		for _, imp := range d.MCSImports {
			nsSet[imp.Namespace] = true
		}
		for ns := range nsSet {
			d.Namespaces = append(d.Namespaces, ns)
		}
		slices.Sort(d.Namespaces)
	}
	return plan
}

func carriedRank(e *exporter) int {
	if e.carried != nil {
		return 1
	}
	return 0
}

// validate checks an export against its member's Service (MCS: Valid).
func validate(m *Member, e *fmv1alpha1.ServiceExport) (*exporter, []metav1.Condition) {
	gen := e.Generation
	svc := m.services[e.Namespace+"/"+e.Name]
	if svc != nil && isOurs(svc.Labels) {
		svc = nil // a Service fleetmesh derived is not the user's
	}
	if svc == nil {
		return nil, []metav1.Condition{condition(fmv1alpha1.ConditionValid, false, fmv1alpha1.ReasonNoService,
			fmt.Sprintf("no Service %s/%s in %s", e.Namespace, e.Name, m.name()), gen)}
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, []metav1.Condition{condition(fmv1alpha1.ConditionValid, false, fmv1alpha1.ReasonInvalidServiceType,
			"an ExternalName Service cannot be exported", gen)}
	}
	for _, r := range e.Spec.Rules {
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == r.PortNumber }) {
			return nil, []metav1.Condition{condition(fmv1alpha1.ConditionValid, false, fmv1alpha1.ReasonInvalidRule,
				fmt.Sprintf("rule %s: port %d is not a port of Service %s/%s", r.Path, r.PortNumber, e.Namespace, e.Name), gen)}
		}
		if owner := pathOwner(m, r.Path, e); owner != "" {
			return nil, []metav1.Condition{condition(fmv1alpha1.ConditionValid, false, fmv1alpha1.ReasonPathCollision,
				fmt.Sprintf("rule %s: the path is already served by Ingress %s", r.Path, owner), gen)}
		}
	}
	ex := &exporter{member: m, export: e, service: svc, created: e.CreationTimestamp, typ: fmv1alpha1.ClusterSetIP}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		ex.typ = fmv1alpha1.Headless
	}
	for _, p := range svc.Spec.Ports {
		ex.ports = append(ex.ports, fmv1alpha1.ServicePort{Name: p.Name, Protocol: cmp.Or(p.Protocol, corev1.ProtocolTCP), AppProtocol: p.AppProtocol, Port: p.Port})
	}
	return ex, []metav1.Condition{
		condition(fmv1alpha1.ConditionValid, true, fmv1alpha1.ReasonExported, "the Service is exported", gen),
		condition(fmv1alpha1.ConditionReady, true, fmv1alpha1.ReasonExported, "imports are written in the other members", gen),
	}
}

// pathOwner names the Ingress of the gateway's class in the member whose
// earlier claim keeps path from the export (model.PathClaim: the same
// path, or a prefix above it from another namespace), the oldest if
// several do: a path belongs to its first claimer, so a newer Ingress
// (from any namespace) never takes it from an export. An export's claim
// dates from its own Ingress, else from the export.
func pathOwner(m *Member, path string, e *fmv1alpha1.ServiceExport) string {
	claim := model.PathClaim{Namespace: e.Namespace, Name: e.Name, Path: path, Since: e.CreationTimestamp.Time}
	for _, ing := range m.Ingresses {
		if ing.Namespace == e.Namespace && ing.Name == e.Name && isOurs(ing.Labels) {
			claim.Since = ing.CreationTimestamp.Time
		}
	}
	var owner *model.PathClaim
	for _, ing := range m.Ingresses {
		if ptr.Deref(ing.Spec.IngressClassName, "") != fmv1alpha1.IngressClass || (ing.Namespace == e.Namespace && ing.Name == e.Name && isOurs(ing.Labels)) {
			continue
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				other := model.PathClaim{
					Namespace: ing.Namespace, Name: ing.Name, Path: p.Path, Since: ing.CreationTimestamp.Time,
					Prefix: p.PathType == nil || *p.PathType != networkingv1.PathTypeExact,
				}
				if other.Compare(claim) < 0 && other.Keeps(e.Namespace, path) && (owner == nil || other.Compare(*owner) < 0) {
					owner = &other
				}
			}
		}
	}
	if owner == nil {
		return ""
	}
	return owner.Owner()
}

// carryOver adds, for every member that is not known now, the exports its
// peers' imports last listed for it, so an unreachable member keeps its
// contributions.
func carryOver(members []*Member, groups map[string][]*exporter) {
	byKey := map[string]*Member{}
	for _, m := range members {
		byKey[m.key()] = m
	}
	for _, m := range members {
		if !m.Known {
			continue
		}
		for _, imp := range m.Imports {
			if !isOurs(imp.Labels) {
				continue
			}
			key := imp.Namespace + "/" + imp.Name
			for _, p := range imp.Spec.Ports {
				for _, ep := range p.Endpoints {
					src := byKey[ep.ClusterKey]
					if src == nil || src.Known {
						continue
					}
					ex := findExporter(groups[key], src)
					if ex == nil {
						ex = &exporter{
							member: src, typ: cmp.Or(imp.Spec.Type, fmv1alpha1.ClusterSetIP), carried: map[string]fmv1alpha1.Endpoint{},
							export: &fmv1alpha1.ServiceExport{
								ObjectMeta: metav1.ObjectMeta{Namespace: imp.Namespace, Name: imp.Name},
								Spec:       fmv1alpha1.ServiceExportSpec{ServiceAccountName: imp.Spec.ServiceAccountName, LoadBalancer: imp.Spec.LoadBalancer},
							},
						}
						groups[key] = append(groups[key], ex)
					}
					port := p
					port.Endpoints = nil
					if _, dup := ex.carried[portID(port)]; !dup {
						ex.ports = append(ex.ports, port)
						ex.carried[portID(port)] = ep
					}
				}
			}
		}
	}
}

func findExporter(exs []*exporter, m *Member) *exporter {
	for _, ex := range exs {
		if ex.member == m {
			return ex
		}
	}
	return nil
}

// conflict is one way a service's exporters disagree: an MCS reason
// (PortConflict, TypeConflict, ...) and what to tell their users.
type conflict struct{ reason, message string }

// merge unites the exporters' ports as the MCS API says: by name (else
// protocol and number), the union of them; the oldest exporter's
// definition wins a conflict (a port defined differently, or one some
// exporter lacks), and every exporter of a conflicting service is told
// why.
func merge(exporters []*exporter) ([]fmv1alpha1.ServicePort, fmv1alpha1.ServiceImportType, []conflict) {
	var conflicts []conflict
	winner := exporters[0]
	var ports []fmv1alpha1.ServicePort
	byID := map[string]int{}
	for _, ex := range exporters {
		if ex.typ != winner.typ {
			conflicts = append(conflicts, conflict{fmv1alpha1.ReasonTypeConflict, fmt.Sprintf("%s exports it as %s, %s as %s; the oldest export (%s) wins",
				winner.member.name(), winner.typ, ex.member.name(), ex.typ, winner.member.name())})
		}
		for _, p := range ex.ports {
			id := portID(p)
			i, ok := byID[id]
			if !ok {
				byID[id] = len(ports)
				ports = append(ports, p)
				continue
			}
			if !samePort(ports[i], p) {
				conflicts = append(conflicts, conflict{fmv1alpha1.ReasonPortConflict, fmt.Sprintf("port %s is %d/%s in one exporter and %d/%s in %s; the oldest export's definition wins",
					strings.TrimPrefix(id, "name:"), ports[i].Port, ports[i].Protocol, p.Port, p.Protocol, ex.member.name())})
			}
		}
	}
	// Ports one exporter has and another lacks are exported too (the
	// union), and said: the MCS API calls any difference a conflict.
	for _, ex := range exporters {
		for _, p := range ports {
			if ex.service != nil && !slices.ContainsFunc(ex.ports, func(q fmv1alpha1.ServicePort) bool { return portID(q) == portID(p) }) {
				conflicts = append(conflicts, conflict{fmv1alpha1.ReasonPortConflict, fmt.Sprintf("port %s is not a port of %s's Service; the union of the ports is exported",
					describePort(p), ex.member.name())})
			}
		}
	}
	slices.SortFunc(ports, func(a, b fmv1alpha1.ServicePort) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Name, b.Name))
	})
	return ports, winner.typ, conflicts
}

// reaches reports whether ex's export is imported by importer: its
// targetClusters (none: all) name it. An exporter is not its own importer.
func reaches(ex *exporter, importer *Member) bool {
	if ex.member == importer {
		return false
	}
	targets := ex.export.Spec.TargetClusters
	return len(targets) == 0 || slices.Contains(targets, importer.Cluster.Key())
}

// planImport adds to one importer its import of ns/name, the derived
// Service it needs, and the exporters' pod addresses on its network.
func planImport(d *Desired, importer *Member, ns, name string, exporters []*exporter, ports []fmv1alpha1.ServicePort, typ fmv1alpha1.ServiceImportType) {
	var from []*exporter
	for _, ex := range exporters {
		if reaches(ex, importer) {
			from = append(from, ex)
		}
	}
	if len(from) == 0 {
		return
	}
	// The import's properties are the fleet's, as its ports are: the
	// oldest export's, whether or not it is one this importer imports.
	winner := exporters[0]
	// Endpoints are listed by cluster name, whatever the exporters' ages.
	from = slices.Clone(from)
	slices.SortFunc(from, func(a, b *exporter) int { return cmp.Compare(a.member.name(), b.member.name()) })
	imp := &fmv1alpha1.ServiceImport{
		TypeMeta:   metav1.TypeMeta{APIVersion: fmv1alpha1.GroupVersion.String(), Kind: "ServiceImport"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}},
		Spec: fmv1alpha1.ServiceImportSpec{
			Type: typ, ServiceAccountName: winner.export.Spec.ServiceAccountName,
			LoadBalancer: cmp.Or(winner.export.Spec.LoadBalancer, fmv1alpha1.RoundRobinLoadBalancer),
		},
	}
	for _, p := range ports {
		ip := p
		ip.Endpoints = nil
		for _, ex := range from {
			if ep, ok := ex.carried[portID(p)]; ok {
				ip.Endpoints = append(ip.Endpoints, ep)
				continue
			}
			if !ex.serves(p) || ex.service == nil {
				continue
			}
			target := fmv1alpha1.Target{Host: ex.member.Cluster.Spec.GatewayHost, IP: ex.member.GatewayIP, Port: gatewayPort(ex.member)}
			for _, r := range ex.export.Spec.Rules {
				if r.PortNumber == p.Port {
					target.Path = r.Path
					break
				}
			}
			ip.Endpoints = append(ip.Endpoints, fmv1alpha1.Endpoint{ClusterKey: ex.member.key(), Target: target})
		}
		if len(ip.Endpoints) > 0 {
			imp.Spec.Ports = append(imp.Spec.Ports, ip)
		}
	}
	if len(imp.Spec.Ports) == 0 {
		return
	}
	for _, ex := range from {
		imp.Status.Clusters = append(imp.Status.Clusters, fmv1alpha1.ClusterStatusRef{Cluster: ex.member.name()})
	}
	d.Imports[ns+"/"+name] = imp

	// A service exported through fleetmesh.io gets a derived Service of
	// its name, so the name resolves in the importer's own DNS; one
	// exported through the MCS API alone leaves the name to the
	// importer's users, as the MCS API does (its clusterset Service is
	// derived under another name, planMCSImport).
	own := importer.services[ns+"/"+name]
	derived := sameNameDerived(exporters, own) && (own == nil || (isOurs(own.Labels) && own.Spec.Selector == nil))
	if derived {
		d.Services[ns+"/"+name] = derivedService(ns, name, nil, typ, imp.Spec.Ports)
	}

	// The copies join the Service through which the importer's own DNS
	// and service proxy reach the pods.
	join := clustersetService(d, importer, ns, name)
	for _, ex := range from {
		if ex.member.Known && ex.member.Cluster.Spec.Network != "" && ex.member.Cluster.Spec.Network == importer.Cluster.Spec.Network {
			copySlices(d, ex, ports, ns, name, join)
		}
	}
}

// sameNameDerived reports whether importers get a derived Service of the
// service's own name: some exporter exports it through fleetmesh.io (when
// no exporter is known now, what the importer holds, own, says).
func sameNameDerived(exporters []*exporter, own *corev1.Service) bool {
	known := false
	for _, ex := range exporters {
		if ex.carried == nil {
			known = true
			if ex.fleetmesh {
				return true
			}
		}
	}
	return !known && own != nil && isOurs(own.Labels) && own.Spec.Selector == nil
}

// derivedService is a selector-less Service fleetmesh derives for an
// import: its ports, headless as the import is.
func derivedService(ns, name string, labels map[string]string, typ fmv1alpha1.ServiceImportType, ports []fmv1alpha1.ServicePort) *corev1.Service {
	l := map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}
	maps.Copy(l, labels)
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
	}
	if typ == fmv1alpha1.Headless {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	for _, p := range ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol, Port: p.Port})
	}
	return svc
}

// serves reports whether the exporter's Service has port p as the import
// defines it: an exporter whose port of that name (or protocol and
// number) differs lost the conflict, and gets no traffic on it.
func (ex *exporter) serves(p fmv1alpha1.ServicePort) bool {
	return slices.ContainsFunc(ex.ports, func(q fmv1alpha1.ServicePort) bool { return samePort(q, p) })
}

// copySlices adds to d, as MCS EndpointSlices, the copies of the
// exporter's slices of Service ns/name: hostnames and readiness kept, what
// only means something in the exporter (nodes, zones, pods) left out, and
// only the ports the exporter serves as the import's ports (ports) define
// them; a slice left with none of its ports is not copied. They join the
// Service named join, if any (kubernetes.io/service-name).
func copySlices(d *Desired, ex *exporter, ports []fmv1alpha1.ServicePort, ns, name, join string) {
	exporter := ex.member
	for _, s := range exporter.slices[ns+"/"+name] {
		var kept []discoveryv1.EndpointPort
		for _, sp := range s.Ports {
			if slices.ContainsFunc(ports, func(p fmv1alpha1.ServicePort) bool {
				return p.Name == ptr.Deref(sp.Name, "") && cmp.Or(p.Protocol, corev1.ProtocolTCP) == ptr.Deref(sp.Protocol, corev1.ProtocolTCP) && ex.serves(p)
			}) {
				kept = append(kept, sp)
			}
		}
		if len(kept) == 0 && len(s.Ports) > 0 {
			continue
		}
		cp := &discoveryv1.EndpointSlice{
			TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sliceName(name, exporter.name(), s.Name), Labels: map[string]string{
				fmv1alpha1.LabelServiceName:   name,
				fmv1alpha1.LabelSourceCluster: exporter.name(),
				discoveryv1.LabelManagedBy:    fmv1alpha1.EndpointSliceManagedByFederation,
				fmv1alpha1.ManagedByLabel:     fmv1alpha1.ManagedByValue,
			}},
			AddressType: s.AddressType, Ports: kept,
		}
		if join != "" {
			cp.Labels[discoveryv1.LabelServiceName] = join
		}
		d.sliced[ns+"/"+name] = true
		for _, e := range s.Endpoints {
			e.NodeName, e.TargetRef, e.Hints, e.Zone = nil, nil, nil, nil
			cp.Endpoints = append(cp.Endpoints, e)
		}
		d.Slices[ns+"/"+cp.Name] = cp
	}
}

// sliceName is the name of the copy of an exporter's slice.
func sliceName(svc, cluster, slice string) string {
	suffix := slice[strings.LastIndexByte(slice, '-')+1:]
	name := fmt.Sprintf("%s-%s-%s", svc, cluster, suffix)
	if len(name) > 253 {
		name = name[:253]
	}
	return name
}

func gatewayPort(m *Member) int32 {
	return m.Cluster.EffectiveGatewayPort()
}

// exportIngress is the Ingress of an export's rules, owned by the export.
func exportIngress(m *Member, e *fmv1alpha1.ServiceExport) *networkingv1.Ingress {
	if len(e.Spec.Rules) == 0 {
		return nil
	}
	ing := &networkingv1.Ingress{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: e.Namespace, Name: e.Name,
			Labels: map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: fmv1alpha1.GroupVersion.String(), Kind: "ServiceExport", Name: e.Name, UID: e.UID,
			}},
		},
		Spec: networkingv1.IngressSpec{IngressClassName: ptr.To(fmv1alpha1.IngressClass), Rules: []networkingv1.IngressRule{{
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}},
		}}},
	}
	for _, r := range e.Spec.Rules {
		pt := networkingv1.PathTypePrefix
		if r.PathType == fmv1alpha1.PathTypeExact {
			pt = networkingv1.PathTypeExact
		}
		ing.Spec.Rules[0].HTTP.Paths = append(ing.Spec.Rules[0].HTTP.Paths, networkingv1.HTTPIngressPath{
			Path: r.Path, PathType: &pt,
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
				Name: e.Name, Port: networkingv1.ServiceBackendPort{Number: r.PortNumber},
			}},
		})
	}
	return ing
}

// mirror is a member's Cluster as copied into every member: no
// credentials, marked mirrored, with the resolved gateway address; the
// copy in the member itself is labelled local.
func mirror(m *Member, local bool) *fmv1alpha1.Cluster {
	spec := m.Cluster.Spec
	spec.Kubeconfig, spec.KubeconfigSecretRef, spec.Mirrored = "", nil, true
	labels := map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}
	if local {
		labels[fmv1alpha1.LocalClusterLabel] = "true"
	}
	return &fmv1alpha1.Cluster{
		TypeMeta:   metav1.TypeMeta{APIVersion: fmv1alpha1.GroupVersion.String(), Kind: "Cluster"},
		ObjectMeta: metav1.ObjectMeta{Name: m.name(), Labels: labels},
		Spec:       spec,
		Status:     fmv1alpha1.ClusterStatus{ClusterKey: m.key(), GatewayIP: m.GatewayIP},
	}
}
