package discovery

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// Objects are the objects of one cluster's API server that the mesh is made
// of.
type Objects struct {
	// ClusterName is the local cluster's name, as in its Cluster object.
	ClusterName    string                      `json:"clusterName"`
	Clusters       []fmv1alpha1.Cluster        `json:"clusters,omitempty"`
	Services       []corev1.Service            `json:"services,omitempty"`
	EndpointSlices []discoveryv1.EndpointSlice `json:"endpointSlices,omitempty"`
	Imports        []fmv1alpha1.ServiceImport  `json:"serviceImports,omitempty"`
	Exports        []fmv1alpha1.ServiceExport  `json:"serviceExports,omitempty"`
	// MCSExports are the cluster's Kubernetes MCS API exports
	// (multicluster.x-k8s.io), where it serves that API.
	MCSExports []mcsv1beta1.ServiceExport       `json:"mcsServiceExports,omitempty"`
	Policies   []fmv1alpha1.GlobalTrafficPolicy `json:"globalTrafficPolicies,omitempty"`
	Ingresses  []networkingv1.Ingress           `json:"ingresses,omitempty"`
	Pods       []corev1.Pod                     `json:"pods,omitempty"`
	// Namespaces are read for their mTLS mode label.
	Namespaces []corev1.Namespace `json:"namespaces,omitempty"`
	// TrustDomain is the fleet's SPIFFE trust domain; GatewayNamespace
	// and GatewayServiceAccount who the cluster's gateways run as (the
	// control plane's namespace).
	TrustDomain           string `json:"trustDomain,omitempty"`
	GatewayNamespace      string `json:"gatewayNamespace,omitempty"`
	GatewayServiceAccount string `json:"gatewayServiceAccount,omitempty"`
}

// MTLSModeKey is the label of a Namespace, or the annotation of a pod
// (which wins), that sets its mTLS mode: STRICT or PERMISSIVE.
const MTLSModeKey = "fleetmesh.io/mtls-mode"

// MeshedAnnotation marks a pod whose sidecar has a workload certificate:
// the injector sets it (it holds the sidecar's SDS file) only then, so
// the pod takes mesh mTLS.
const MeshedAnnotation = "fleetmesh.io/sds-identity"

// TakesMTLSAnnotation set to "true" marks a pod that takes mesh mTLS
// without a sidecar: a proxyless gRPC server with a workload certificate (grpc-go's
// xDS server serves mTLS only).
const TakesMTLSAnnotation = "fleetmesh.io/takes-mtls"

// Build turns the objects into the mesh model, the pods' IPs by
// namespace/name included (for binding sidecar listeners). It is pure:
// the same objects always give the same mesh.
//
//   - The fleet is the Cluster objects (the federation copies every one into
//     each member); the local cluster is added if it has none.
//   - A local service is a Service that fleetmesh did not derive; its
//     endpoints are its EndpointSlices' (not-ready ones kept, marked so).
//     A Service the federation derived for a service's clusterset IP
//     (labelled multicluster.kubernetes.io/service-name) adds its
//     addresses to that service's.
//   - An imported service is a ServiceImport: each exporting cluster on the
//     local network contributes the pod endpoints of the MCS EndpointSlices
//     from it; any other contributes its gateway.
//   - The policy is the GlobalTrafficPolicy of the same namespace and name,
//     the export the local ServiceExport of a local service (an MCS
//     ServiceExport without a fleetmesh.io one exports it as one without a
//     spec would: every port, no paths, any caller).
//   - Ingresses of class fleetmesh (the federation writes one per export
//     with rules; users may write their own) add their paths to the
//     gateway's north-south routes of the services they name.
//   - An export that names its callers has no north-south paths: the
//     gateway's edge is plain HTTP and cannot tell who calls.
func Build(in *Objects) *model.Mesh {
	b := &builder{
		in: in,
		m: &model.Mesh{
			LocalCluster: in.ClusterName, TrustDomain: in.TrustDomain,
			GatewayNamespace: in.GatewayNamespace, GatewayServiceAccount: in.GatewayServiceAccount,
		},
		services:      map[string]*model.Service{},
		localServices: map[string]bool{},
	}
	b.clusters()
	b.indexSlices()
	b.mtls()
	b.ownServices()
	b.imports()
	b.policies()
	b.exports()
	b.ingressPaths()
	b.restrictedEdges()
	b.collect()
	b.pods()
	return b.m
}

// builder holds what Build's steps share.
type builder struct {
	in *Objects
	m  *model.Mesh
	// byKey and local are the mesh's clusters by clusterKey, and the
	// local one.
	byKey map[string]*model.Cluster
	local *model.Cluster
	// localSlices are the EndpointSlices of the cluster's own Services,
	// by namespace/service; remoteSlices the MCS ones copied from other
	// clusters, by namespace/service and source cluster.
	localSlices  map[string][]*discoveryv1.EndpointSlice
	remoteSlices map[string]map[string][]*discoveryv1.EndpointSlice
	// services are the mesh's services as they are built, by
	// namespace/name; localServices those a user made here (not derived
	// by fleetmesh): they are exported and served by the gateway.
	services      map[string]*model.Service
	localServices map[string]bool
	// meshed are the pods that take mesh mTLS, by namespace/name.
	meshed map[string]bool
}

// mtls: the mTLS modes of namespaces and pods, and the pods that take
// mesh mTLS. A mode that is neither STRICT nor PERMISSIVE is ignored
// (the rebuild logs it: MTLSModeProblems).
func (b *builder) mtls() {
	b.meshed = map[string]bool{}
	eachMTLSMode(b.in, func(key, _, value string) {
		if mode, ok := parseMTLSMode(value); ok {
			if b.m.MTLSModes == nil {
				b.m.MTLSModes = map[string]model.MTLSMode{}
			}
			b.m.MTLSModes[key] = mode
		}
	})
	for _, p := range b.in.Pods {
		if _, ok := p.Annotations[MeshedAnnotation]; ok || p.Annotations[TakesMTLSAnnotation] == "true" {
			b.meshed[p.Namespace+"/"+p.Name] = true
		}
	}
}

// eachMTLSMode calls f with every mTLS mode set, as written: key is the
// namespace or namespace/pod it is set for, what names the label or
// annotation that sets it.
func eachMTLSMode(in *Objects, f func(key, what, value string)) {
	for _, ns := range in.Namespaces {
		if v, ok := ns.Labels[MTLSModeKey]; ok {
			f(ns.Name, "Namespace "+ns.Name+": label", v)
		}
	}
	for _, p := range in.Pods {
		if v, ok := p.Annotations[MTLSModeKey]; ok {
			f(p.Namespace+"/"+p.Name, "Pod "+p.Namespace+"/"+p.Name+": annotation", v)
		}
	}
}

func parseMTLSMode(v string) (model.MTLSMode, bool) {
	switch mode := model.MTLSMode(strings.ToUpper(v)); mode {
	case model.MTLSStrict, model.MTLSPermissive:
		return mode, true
	}
	return "", false
}

// MTLSModeProblems name each namespace label and pod annotation whose
// mTLS mode is not one: it is ignored.
func MTLSModeProblems(in *Objects) []string {
	var out []string
	eachMTLSMode(in, func(_, what, value string) {
		if _, valid := parseMTLSMode(value); !valid {
			out = append(out, fmt.Sprintf("%s %s is %q, not STRICT or PERMISSIVE; ignored", what, MTLSModeKey, value))
		}
	})
	return out
}

// clusters: the fleet from the Cluster objects, the local cluster added
// if it has none.
func (b *builder) clusters() {
	m, in := b.m, b.in
	for _, c := range in.Clusters {
		mc := model.Cluster{Name: c.Name, Region: c.Spec.Region, Zone: c.Spec.Zone, Group: c.Spec.Group, Network: c.Spec.Network}
		if ip := gatewayIP(&c); ip != "" {
			mc.Gateway = &model.Address{IP: ip, Port: uint32(c.EffectiveGatewayPort())}
		}
		m.Clusters = append(m.Clusters, mc)
	}
	if !slices.ContainsFunc(m.Clusters, func(c model.Cluster) bool { return c.Name == in.ClusterName }) {
		m.Clusters = append(m.Clusters, model.Cluster{Name: in.ClusterName})
	}
	slices.SortFunc(m.Clusters, func(a, b model.Cluster) int { return cmp.Compare(a.Name, b.Name) })
	b.byKey = make(map[string]*model.Cluster, len(m.Clusters))
	for i := range m.Clusters {
		b.byKey[m.Clusters[i].Key()] = &m.Clusters[i]
		if m.Clusters[i].Name == in.ClusterName {
			b.local = &m.Clusters[i]
		}
	}
}

// indexSlices sorts the EndpointSlices into the local ones and the
// imported ones.
func (b *builder) indexSlices() {
	b.localSlices = map[string][]*discoveryv1.EndpointSlice{}
	b.remoteSlices = map[string]map[string][]*discoveryv1.EndpointSlice{}
	for i := range b.in.EndpointSlices {
		s := &b.in.EndpointSlices[i]
		if src := s.Labels[fmv1alpha1.LabelSourceCluster]; src != "" && src != b.in.ClusterName {
			key := s.Namespace + "/" + s.Labels[fmv1alpha1.LabelServiceName]
			if b.remoteSlices[key] == nil {
				b.remoteSlices[key] = map[string][]*discoveryv1.EndpointSlice{}
			}
			b.remoteSlices[key][src] = append(b.remoteSlices[key][src], s)
			continue
		}
		if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
			b.localSlices[s.Namespace+"/"+name] = append(b.localSlices[s.Namespace+"/"+name], s)
		}
	}
}

// service is the service ns/name, made on first use.
func (b *builder) service(ns, name string) *model.Service {
	key := ns + "/" + name
	if b.services[key] == nil {
		b.services[key] = &model.Service{Namespace: ns, Name: name}
	}
	return b.services[key]
}

// portOf is svc's port number, added (named name) on first use.
func portOf(svc *model.Service, number uint32, name string, appProtocol *string) *model.Port {
	for i := range svc.Ports {
		if svc.Ports[i].Port == number {
			return &svc.Ports[i]
		}
	}
	svc.Ports = append(svc.Ports, model.Port{Name: name, Port: number, Protocol: model.ProtocolFor(name, appProtocol)})
	return &svc.Ports[len(svc.Ports)-1]
}

// ownServices: the cluster's Services, with their addresses and, for
// those a user made, their ports and endpoints. A derived Service only
// names its import.
func (b *builder) ownServices() {
	for i := range b.in.Services {
		s := &b.in.Services[i]
		if s.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		derived := s.Labels[fmv1alpha1.ManagedByLabel] == fmv1alpha1.ManagedByValue
		if !derived {
			b.localServices[s.Namespace+"/"+s.Name] = true
		}
		// A clusterset Service the federation derived under the MCS
		// API's name for it gives the service its clusterset IPs.
		clusterset := s.Labels[fmv1alpha1.LabelServiceName]
		if !derived {
			clusterset = ""
		}
		svc := b.service(s.Namespace, cmp.Or(clusterset, s.Name))
		for _, ip := range s.Spec.ClusterIPs {
			if _, err := netip.ParseAddr(ip); err == nil {
				svc.VIPs = append(svc.VIPs, ip)
			}
		}
		if clusterset == "" {
			svc.Headless = s.Spec.ClusterIP == corev1.ClusterIPNone
		}
		if derived {
			continue
		}
		for _, sp := range s.Spec.Ports {
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
				continue
			}
			port := portOf(svc, uint32(sp.Port), sp.Name, sp.AppProtocol)
			port.Endpoints = append(port.Endpoints, sliceEndpoints(b.localSlices[s.Namespace+"/"+s.Name], sp.Name, b.in.ClusterName, b.meshed)...)
		}
	}
}

// imports: each exporting cluster on the local network contributes its
// pods (the MCS EndpointSlices from it), any other its gateway.
func (b *builder) imports() {
	for i := range b.in.Imports {
		imp := &b.in.Imports[i]
		svc := b.service(imp.Namespace, imp.Name)
		if imp.Spec.Type == fmv1alpha1.Headless {
			svc.Headless = true
		}
		svc.LoadBalancer = string(imp.Spec.LoadBalancer)
		from := map[string]bool{}
		own := b.localServices[imp.Namespace+"/"+imp.Name]
		for _, ip := range imp.Spec.Ports {
			if ip.Protocol != "" && ip.Protocol != corev1.ProtocolTCP {
				continue
			}
			// The cluster's own Service is its own: an imported port
			// joins its port of the same number (under the local
			// name); one that reuses the name of a local port with
			// another number is left out.
			if clash := namedPort(svc, ip.Name); own && ip.Name != "" && clash != nil && clash.Port != uint32(ip.Port) {
				svc.LeftOut = append(svc.LeftOut, fmt.Sprintf(
					"the imported port %s:%d is left out: this cluster's Service %s has port %s:%d",
					ip.Name, ip.Port, imp.Name, clash.Name, clash.Port))
				continue
			}
			port := portOf(svc, uint32(ip.Port), ip.Name, ip.AppProtocol)
			for _, ep := range ip.Endpoints {
				c := b.byKey[ep.ClusterKey]
				if c == nil || c.Name == b.in.ClusterName {
					continue
				}
				from[c.Name] = true
				if c.SharesNetworkWith(b.local) {
					port.Endpoints = append(port.Endpoints, sliceEndpoints(b.remoteSlices[imp.Namespace+"/"+imp.Name][c.Name], ip.Name, c.Name, nil)...)
					continue
				}
				addr, gwPort := ep.Target.IP, uint32(ep.Target.Port)
				if addr == "" && c.Gateway != nil {
					addr = c.Gateway.IP
				}
				if gwPort == 0 && c.Gateway != nil {
					gwPort = c.Gateway.Port
				}
				if _, err := netip.ParseAddr(addr); err != nil || gwPort == 0 {
					continue // no gateway address known yet
				}
				port.Endpoints = append(port.Endpoints, model.Endpoint{Cluster: c.Name, Address: addr, Port: gwPort, Ready: true, Gateway: true})
			}
		}
		for _, c := range b.m.Clusters {
			if from[c.Name] {
				svc.ImportedFrom = append(svc.ImportedFrom, c.Name)
			}
		}
	}
}

// policies: each GlobalTrafficPolicy applies to the service of its name.
func (b *builder) policies() {
	for i := range b.in.Policies {
		p := &b.in.Policies[i]
		svc := b.services[p.Namespace+"/"+p.Name]
		if svc == nil {
			continue
		}
		mp := &model.Policy{LbType: model.LbType(p.EffectiveLbType())}
		for _, t := range p.Spec.Targets {
			mt := model.Target{ClusterKey: string(t.ClusterKey)}
			if t.Weight != nil && *t.Weight >= 0 {
				w := uint32(*t.Weight)
				mt.Weight = &w
			}
			if t.Priority != nil && *t.Priority > 0 {
				mt.Priority = uint32(*t.Priority)
			}
			mp.Targets = append(mp.Targets, mt)
		}
		svc.Policy = mp
	}
}

// exports: the local ServiceExport of a Service a user made here, with
// its rules for ports the Service has.
func (b *builder) exports() {
	for i := range b.in.Exports {
		e := &b.in.Exports[i]
		svc := b.services[e.Namespace+"/"+e.Name]
		if svc == nil || !b.localServices[e.Namespace+"/"+e.Name] {
			continue
		}
		me := &model.Export{PathRewrite: e.Spec.PathRewrite, LoadBalancer: string(e.Spec.LoadBalancer), Callers: Callers(e.Spec.ServiceAccountName)}
		for _, r := range e.Spec.Rules {
			if svc.Port(uint32(r.PortNumber)) != nil {
				me.Rules = append(me.Rules, model.ExportRule{Port: uint32(r.PortNumber), Path: r.Path, PathType: model.PathType(r.PathType)})
			}
		}
		svc.Export = me
		if svc.LoadBalancer == "" {
			svc.LoadBalancer = me.LoadBalancer
		}
	}
	for i := range b.in.MCSExports {
		e := &b.in.MCSExports[i]
		key := e.Namespace + "/" + e.Name
		if svc := b.services[key]; svc != nil && b.localServices[key] && svc.Export == nil {
			svc.Export = &model.Export{}
		}
	}
}

// Callers are the ServiceAccounts a serviceAccountName lets call: "*" or
// empty is anyone (nil); else a comma-separated list of namespace/name,
// or name for one of the export's own namespace.
func Callers(serviceAccountName string) []string {
	var out []string
	for _, c := range strings.Split(serviceAccountName, ",") {
		c = strings.TrimSpace(c)
		if c == "*" {
			return nil
		}
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

// ingressPaths: the gateway's paths from Ingresses of class fleetmesh.
// They belong to their first claimers: Ingresses are read oldest first,
// and a path already claimed, or one under a prefix another namespace
// claimed, is left out.
func (b *builder) ingressPaths() {
	ingresses := make([]*networkingv1.Ingress, 0, len(b.in.Ingresses))
	for i := range b.in.Ingresses {
		ingresses = append(ingresses, &b.in.Ingresses[i])
	}
	slices.SortStableFunc(ingresses, func(x, y *networkingv1.Ingress) int {
		return ingressClaim(x, networkingv1.HTTPIngressPath{}).Compare(ingressClaim(y, networkingv1.HTTPIngressPath{}))
	})
	var claims []model.PathClaim
	for _, ing := range ingresses {
		if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != fmv1alpha1.IngressClass {
			continue
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				backend := p.Backend.Service
				if backend == nil || !b.localServices[ing.Namespace+"/"+backend.Name] {
					continue
				}
				svc := b.services[ing.Namespace+"/"+backend.Name]
				if owner := claimedBy(claims, ing, p.Path); owner != "" {
					svc.LeftOut = append(svc.LeftOut, fmt.Sprintf("the gateway path %s of Ingress %s/%s is left out: Ingress %s claimed it first", p.Path, ing.Namespace, ing.Name, owner))
					continue
				}
				claims = append(claims, ingressClaim(ing, p))
				addIngressRule(svc, backend, p)
			}
		}
	}
}

// restrictedEdges: the north-south paths of an export that names its
// callers are left out, each said on the service. The gateway's edge is
// plain HTTP, so a path would let anyone in; the API server refuses
// rules beside callers in a new ServiceExport, and an Ingress of class
// fleetmesh may still name such a service.
func (b *builder) restrictedEdges() {
	for _, svc := range b.services {
		if !svc.Export.Restricted() || len(svc.Export.Rules) == 0 {
			continue
		}
		for _, r := range svc.Export.Rules {
			svc.LeftOut = append(svc.LeftOut, fmt.Sprintf("the gateway path %s is left out: the export names its callers (spec.serviceAccountName %s), and a caller at the gateway's edge has no identity to check", r.Path, strings.Join(svc.Export.Callers, ",")))
		}
		svc.Export.Rules = nil
	}
}

// addIngressRule adds an Ingress path to the export rules of svc, its
// backend.
func addIngressRule(svc *model.Service, backend *networkingv1.IngressServiceBackend, p networkingv1.HTTPIngressPath) {
	number := uint32(backend.Port.Number)
	if backend.Port.Name != "" {
		number = 0
		for _, port := range svc.Ports {
			if port.Name == backend.Port.Name {
				number = port.Port
			}
		}
	}
	if svc.Port(number) == nil || !strings.HasPrefix(p.Path, "/") {
		return
	}
	pathType := model.PathPrefix
	if p.PathType != nil && *p.PathType == networkingv1.PathTypeExact {
		pathType = model.PathExact
	}
	if svc.Export == nil {
		svc.Export = &model.Export{}
	}
	if !slices.ContainsFunc(svc.Export.Rules, func(r model.ExportRule) bool { return r.Path == p.Path }) {
		svc.Export.Rules = append(svc.Export.Rules, model.ExportRule{Port: number, Path: p.Path, PathType: pathType})
	}
}

// collect puts the services with ports into the mesh, in order, each
// port's endpoints sorted and without duplicates.
func (b *builder) collect() {
	for _, svc := range b.services {
		if len(svc.Ports) == 0 {
			continue
		}
		for i := range svc.Ports {
			slices.SortFunc(svc.Ports[i].Endpoints, func(x, y model.Endpoint) int {
				return cmp.Or(cmp.Compare(x.Cluster, y.Cluster), cmp.Compare(x.Address, y.Address), cmp.Compare(x.Port, y.Port))
			})
			svc.Ports[i].Endpoints = slices.CompactFunc(svc.Ports[i].Endpoints, func(x, y model.Endpoint) bool {
				return x.Cluster == y.Cluster && x.Address == y.Address && x.Port == y.Port
			})
		}
		slices.SortFunc(svc.Ports, func(x, y model.Port) int { return cmp.Compare(x.Port, y.Port) })
		b.m.Services = append(b.m.Services, *svc)
	}
	slices.SortFunc(b.m.Services, func(x, y model.Service) int {
		return cmp.Or(cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
	})
}

// pods: the addresses of the pods, for sidecars to bind to.
func (b *builder) pods() {
	for _, p := range b.in.Pods {
		if p.Status.PodIP != "" {
			if b.m.Pods == nil {
				b.m.Pods = make(map[string]string, len(b.in.Pods))
			}
			b.m.Pods[p.Namespace+"/"+p.Name] = p.Status.PodIP
		}
	}
}

// gatewayIP is the Cluster's gateway address: status.gatewayIP, which the
// federation resolves, else spec.gatewayHost when it is an IP already.
// ingressClaim is the claim an Ingress makes to one of its paths.
func ingressClaim(ing *networkingv1.Ingress, p networkingv1.HTTPIngressPath) model.PathClaim {
	return model.PathClaim{
		Namespace: ing.Namespace, Name: ing.Name, Path: p.Path, Since: ing.CreationTimestamp.Time,
		Prefix: p.PathType == nil || *p.PathType != networkingv1.PathTypeExact,
	}
}

// claimedBy names the Ingress that claimed path before ing (the claims
// are the paths given so far, oldest first), if one keeps it.
func claimedBy(claims []model.PathClaim, ing *networkingv1.Ingress, path string) string {
	for _, c := range claims {
		if c.Namespace == ing.Namespace && c.Name == ing.Name {
			continue
		}
		if c.Keeps(ing.Namespace, path) {
			return c.Owner()
		}
	}
	return ""
}

// namedPort is the service's port of that name, or nil.
func namedPort(svc *model.Service, name string) *model.Port {
	for i := range svc.Ports {
		if svc.Ports[i].Name == name {
			return &svc.Ports[i]
		}
	}
	return nil
}

func gatewayIP(c *fmv1alpha1.Cluster) string {
	if c.Status.GatewayIP != "" {
		return c.Status.GatewayIP
	}
	if _, err := netip.ParseAddr(c.Spec.GatewayHost); err == nil {
		return c.Spec.GatewayHost
	}
	return ""
}

// sliceEndpoints reads the endpoints of the slices' port of that name, in
// the given cluster. An endpoint whose ready condition is unset is ready,
// as the EndpointSlice API says; a terminating one is not. One whose pod
// is meshed (namespace/name) takes mesh mTLS.
func sliceEndpoints(slices []*discoveryv1.EndpointSlice, portName, cluster string, meshed map[string]bool) []model.Endpoint {
	var out []model.Endpoint
	for _, s := range slices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var number int32
		for _, p := range s.Ports {
			if p.Name != nil && *p.Name == portName && p.Port != nil {
				number = *p.Port
			}
			if p.Name == nil && portName == "" && p.Port != nil {
				number = *p.Port
			}
		}
		if number == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			if e.Conditions.Terminating != nil && *e.Conditions.Terminating {
				ready = false
			}
			mtls := e.TargetRef != nil && e.TargetRef.Kind == "Pod" && meshed[s.Namespace+"/"+e.TargetRef.Name]
			for _, addr := range e.Addresses {
				out = append(out, model.Endpoint{Cluster: cluster, Address: addr, Port: uint32(number), Ready: ready, MTLS: mtls})
			}
		}
	}
	return out
}
