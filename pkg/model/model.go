// Package model is the mesh model one cluster's control plane works from:
// the fleet's clusters, the services reachable from this cluster with their
// endpoints in every cluster, the traffic policy per service, and the export
// rules this cluster's gateway serves. It is pure data: discovery fills it
// from the API servers, the translator turns it into Envoy resources, and
// tests write it as YAML files.
//
// A Mesh is immutable once published: nothing may change it after it is
// handed to a translator.
package model

import (
	"fmt"
	"slices"
	"strings"
)

// Mesh is everything one cluster's control plane knows, at one moment.
type Mesh struct {
	// LocalCluster names the cluster this control plane serves: the
	// consumer of every policy in the mesh.
	LocalCluster string `json:"localCluster"`
	// Clusters are the fleet's clusters, the local one included.
	Clusters []Cluster `json:"clusters"`
	// Services are the services reachable from the local cluster: its own,
	// the imported ones, or both.
	Services []Service `json:"services,omitempty"`
	// Pods are the IPs of the local cluster's pods, by namespace/name:
	// where a sidecar binds its listeners when its node does not say.
	Pods map[string]string `json:"pods,omitempty"`
	// TrustDomain is the SPIFFE trust domain of the fleet's workload
	// identities: a sidecar accepts mTLS from any identity in it, and
	// exports name their callers in it.
	TrustDomain string `json:"trustDomain,omitempty"`
	// GatewayNamespace and GatewayServiceAccount are who the local
	// cluster's gateways run as. A pod admits that identity only where
	// the gateway checked the export's callers itself (it ends their mTLS
	// for pods without a sidecar): see GatewayIdentity.
	GatewayNamespace      string `json:"gatewayNamespace,omitempty"`
	GatewayServiceAccount string `json:"gatewayServiceAccount,omitempty"`
	// MTLSModes are the mTLS modes set in the local cluster, by namespace
	// (a Namespace's label) and by namespace/pod (a pod's annotation,
	// which wins). Where none is set the mode is PERMISSIVE.
	MTLSModes map[string]MTLSMode `json:"mtlsModes,omitempty"`
}

// MTLSMode is what a meshed workload's sidecar accepts on its app's ports.
type MTLSMode string

// The mTLS modes.
const (
	// MTLSPermissive accepts mesh mTLS and plaintext: a workload being
	// moved onto the mesh keeps its plaintext callers.
	MTLSPermissive MTLSMode = "PERMISSIVE"
	// MTLSStrict accepts mesh mTLS only.
	MTLSStrict MTLSMode = "STRICT"
)

// MTLSMode is the mode of a pod (pod empty: of the namespace).
func (m *Mesh) MTLSMode(namespace, pod string) MTLSMode {
	if pod != "" {
		if mode, ok := m.MTLSModes[namespace+"/"+pod]; ok {
			return mode
		}
	}
	if mode, ok := m.MTLSModes[namespace]; ok {
		return mode
	}
	return MTLSPermissive
}

// SPIFFEID is the identity of a ServiceAccount in the mesh's trust
// domain (WorkloadID), or "" when no identity can name it (no
// certificate can then hold it).
func (m *Mesh) SPIFFEID(namespace, serviceAccount string) string {
	id, err := WorkloadID(m.TrustDomain, namespace, serviceAccount)
	if err != nil {
		return ""
	}
	return id.String()
}

// GatewayIdentity is the SPIFFE ID of the local cluster's gateways, or ""
// when the mesh does not know who they run as.
func (m *Mesh) GatewayIdentity() string {
	if m.GatewayNamespace == "" || m.GatewayServiceAccount == "" {
		return ""
	}
	return m.SPIFFEID(m.GatewayNamespace, m.GatewayServiceAccount)
}

// The ports an intercepting sidecar's captured connections arrive on:
// the redirection (pkg/redirect) sends them there, and the sidecar's
// capture listeners (pkg/translate) take them.
const (
	OutboundCapturePort = 15001
	InboundCapturePort  = 15006
)

// Exporter is the cluster clusterKey names when it serves svc to the
// local cluster (the local cluster itself, or one svc is imported from),
// else nil.
func (m *Mesh) Exporter(svc *Service, clusterKey string) *Cluster {
	for i := range m.Clusters {
		c := &m.Clusters[i]
		if c.Key() != clusterKey {
			continue
		}
		if m.Serves(svc, c) {
			return c
		}
		return nil
	}
	return nil
}

// Serves reports whether cluster c serves svc to the local cluster: it is
// the local cluster, or svc is imported from it.
func (m *Mesh) Serves(svc *Service, c *Cluster) bool {
	return c.Name == m.LocalCluster || slices.Contains(svc.ImportedFrom, c.Name)
}

// UnmatchedTargets are the clusterKeys of svc's policy targets that name
// no cluster serving svc to the local cluster: the policy ignores them,
// and its status says so.
func (m *Mesh) UnmatchedTargets(svc *Service) []string {
	if svc.Policy == nil {
		return nil
	}
	var out []string
	for _, t := range svc.Policy.Targets {
		if m.Exporter(svc, t.ClusterKey) == nil {
			out = append(out, t.ClusterKey)
		}
	}
	return out
}

// Cluster is one cluster of the fleet.
type Cluster struct {
	Name   string `json:"name"`
	Region string `json:"region,omitempty"`
	Zone   string `json:"zone,omitempty"`
	Group  string `json:"group,omitempty"`
	// Network is the pod network; clusters on the same non-empty network
	// reach each other's pods directly.
	Network string `json:"network,omitempty"`
	// Gateway is the cluster's gateway, its host resolved to an IP.
	Gateway *Address `json:"gateway,omitempty"`
}

// Address is an IP address and port.
type Address struct {
	IP   string `json:"ip"`
	Port uint32 `json:"port"`
}

// String returns ip:port.
func (a Address) String() string {
	if strings.Contains(a.IP, ":") {
		return fmt.Sprintf("[%s]:%d", a.IP, a.Port)
	}
	return fmt.Sprintf("%s:%d", a.IP, a.Port)
}

// DefaultTopology is the region, zone and group of a cluster that names none.
const DefaultTopology = "default"

// Key returns the cluster's clusterKey, region/zone/group/name.
func (c *Cluster) Key() string {
	return or(c.Region) + "/" + or(c.Zone) + "/" + or(c.Group) + "/" + c.Name
}

func or(s string) string {
	if s == "" {
		return DefaultTopology
	}
	return s
}

// SharesNetworkWith reports whether pods of c reach pods of o directly.
func (c *Cluster) SharesNetworkWith(o *Cluster) bool {
	return c.Name == o.Name || (c.Network != "" && c.Network == o.Network)
}

// Protocol is how a service port is proxied.
type Protocol string

// Protocols of a service port, from its appProtocol or its name's prefix.
const (
	ProtocolHTTP  Protocol = "http"
	ProtocolHTTP2 Protocol = "http2"
	ProtocolGRPC  Protocol = "grpc"
	ProtocolTCP   Protocol = "tcp"
)

// IsHTTP reports whether the port goes through the HTTP connection manager.
func (p Protocol) IsHTTP() bool { return p != ProtocolTCP }

// IsHTTP2 reports whether the port needs HTTP/2 upstream.
func (p Protocol) IsHTTP2() bool { return p == ProtocolHTTP2 || p == ProtocolGRPC }

// ProtocolFor decides a port's protocol: its appProtocol,
// else the prefix of its name (grpc, http2, http, tcp), else HTTP.
func ProtocolFor(name string, appProtocol *string) Protocol {
	if appProtocol != nil {
		switch strings.ToLower(*appProtocol) {
		case "grpc":
			return ProtocolGRPC
		case "http2", "h2c", "kubernetes.io/h2c":
			return ProtocolHTTP2
		case "tcp":
			return ProtocolTCP
		case "http", "http1", "https":
			return ProtocolHTTP
		}
	}
	prefix := strings.ToLower(name)
	if i := strings.IndexByte(prefix, '-'); i >= 0 {
		prefix = prefix[:i]
	}
	switch prefix {
	case "grpc":
		return ProtocolGRPC
	case "http2", "h2c":
		return ProtocolHTTP2
	case "tcp":
		return ProtocolTCP
	}
	return ProtocolHTTP
}

// Service is one service reachable from the local cluster.
type Service struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Headless services have no virtual IP; they cross clusters only on a
	// shared network.
	Headless bool `json:"headless,omitempty"`
	// VIPs are the service's virtual IPs in the local cluster.
	VIPs  []string `json:"vips,omitempty"`
	Ports []Port   `json:"ports"`
	// ImportedFrom names the other clusters that export the service to the
	// local cluster.
	ImportedFrom []string `json:"importedFrom,omitempty"`
	// Policy is the local cluster's GlobalTrafficPolicy for the service;
	// nil is Locality.
	Policy *Policy `json:"policy,omitempty"`
	// Export is set when the local cluster exports the service: its
	// gateway then serves it to other clusters.
	Export *Export `json:"export,omitempty"`
	// LoadBalancer is how the local cluster's consumers balance among the
	// service's endpoints: the fleet's (the oldest export's, carried by
	// the ServiceImport), else the local export's; empty is round robin.
	LoadBalancer string `json:"loadBalancer,omitempty"`
	// LeftOut says what of the service's sources was not used, and why:
	// an imported port that clashes with a port of the cluster's own
	// Service of that name (the cluster's own Service is its own).
	LeftOut []string `json:"leftOut,omitempty"`
}

// FQDN returns name.namespace.svc.cluster.local.
func (s *Service) FQDN() string {
	return s.Name + "." + s.Namespace + ".svc.cluster.local"
}

// ClustersetFQDN returns name.namespace.svc.clusterset.local, the MCS
// API's name of a service of the clusterset.
func (s *Service) ClustersetFQDN() string {
	return s.Name + "." + s.Namespace + ".svc.clusterset.local"
}

// InClusterset reports whether the service is one of the clusterset's:
// imported, or exported by the local cluster. Its clusterset.local name
// then means the same as its cluster.local one: the local cluster's
// policy decides where its calls go.
func (s *Service) InClusterset() bool { return len(s.ImportedFrom) > 0 || s.Export != nil }

// Key returns namespace/name.
func (s *Service) Key() string { return s.Namespace + "/" + s.Name }

// Port returns the service's port of that number, or nil.
func (s *Service) Port(number uint32) *Port {
	for i := range s.Ports {
		if s.Ports[i].Port == number {
			return &s.Ports[i]
		}
	}
	return nil
}

// Port is one port of a service with its endpoints in every cluster.
type Port struct {
	Name     string   `json:"name,omitempty"`
	Port     uint32   `json:"port"`
	Protocol Protocol `json:"protocol"`
	// Endpoints are where the port is served: local pods, remote pods on a
	// shared network, and remote gateways.
	Endpoints []Endpoint `json:"endpoints,omitempty"`
}

// Endpoint is one address serving a service port.
type Endpoint struct {
	// Cluster is the name of the cluster the endpoint lives in.
	Cluster string `json:"cluster"`
	Address string `json:"address"`
	Port    uint32 `json:"port"`
	Ready   bool   `json:"ready"`
	// Gateway marks the remote cluster's gateway, which routes the request
	// by its authority to the service in that cluster.
	Gateway bool `json:"gateway,omitempty"`
	// MTLS marks a pod whose sidecar takes mesh mTLS (it has a workload
	// certificate): a consumer with a certificate of its own speaks mTLS
	// to it. Remote gateways always take it.
	MTLS bool `json:"mtls,omitempty"`
}

// LbType is how the local cluster lets traffic for a service leave it.
type LbType string

// The global load-balancing types (README, "GlobalTrafficPolicy").
const (
	Locality     LbType = "Locality"
	FailOver     LbType = "FailOver"
	ActiveActive LbType = "ActiveActive"
)

// Policy is the local cluster's GlobalTrafficPolicy for a service.
type Policy struct {
	LbType  LbType   `json:"lbType"`
	Targets []Target `json:"targets,omitempty"`
}

// Target is a cluster a policy lets traffic go to.
type Target struct {
	ClusterKey string `json:"clusterKey"`
	// Weight of the cluster's locality; nil is 1, 0 drops the target.
	Weight *uint32 `json:"weight,omitempty"`
	// Priority is the FailOver tier, from 1; 0 is 1.
	Priority uint32 `json:"priority,omitempty"`
}

// EffectiveWeight returns the weight, 1 when unset.
func (t *Target) EffectiveWeight() uint32 {
	if t.Weight == nil {
		return 1
	}
	return *t.Weight
}

// EffectivePriority returns the FailOver tier, 1 when unset.
func (t *Target) EffectivePriority() uint32 {
	if t.Priority == 0 {
		return 1
	}
	return t.Priority
}

// PathType is how an export rule's path matches.
type PathType string

// Path types of an export rule.
const (
	PathPrefix PathType = "Prefix"
	PathExact  PathType = "Exact"
)

// Load balancer types, as a ServiceExport names them; empty is round robin.
const (
	RoundRobinLoadBalancer = "RoundRobinLoadBalancer"
	HashingLoadBalancer    = "HashingLoadBalancer"
	LeastWorkLoadBalancer  = "LeastWorkLoadBalancer"
)

// HashKeyHeader is the request header a HashingLoadBalancer hashes on
// first: a client that sets it picks its own affinity key (a user or a
// session). Without it, a request hashes on its client's address (gRPC:
// its channel), and a sidecar passes that address on in this header, so
// a remote gateway that hashes too keeps the client on one pod.
const HashKeyHeader = "x-fleetmesh-hash-key"

// Export is the local cluster's export of a service.
type Export struct {
	Rules []ExportRule `json:"rules,omitempty"`
	// PathRewrite is what a matched path becomes upstream; "/" when empty.
	PathRewrite string `json:"pathRewrite,omitempty"`
	// LoadBalancer is the export's load balancer type for the gateway.
	LoadBalancer string `json:"loadBalancer,omitempty"`
	// Callers are the ServiceAccounts, as namespace/name, that may call
	// the service: the export's serviceAccountName. Empty is anyone.
	Callers []string `json:"callers,omitempty"`
}

// Restricted reports whether the export lets only named callers in: it
// is then served to callers with a mesh identity only, never to a
// plaintext caller (which has none), at a sidecar or at the gateway.
func (e *Export) Restricted() bool { return e != nil && len(e.Callers) > 0 }

// ExportRule serves a service port at a path of the gateway.
type ExportRule struct {
	Port     uint32   `json:"port"`
	Path     string   `json:"path"`
	PathType PathType `json:"pathType,omitempty"`
}

// Role is what kind of proxy asks for configuration.
type Role string

// Proxy roles, from the node metadata key "role".
const (
	RoleSidecar Role = "sidecar"
	RoleGateway Role = "gateway"
	RoleGRPC    Role = "grpc"
)

// Proxy is the identity of one proxy or proxyless client.
type Proxy struct {
	ID             string `json:"id"`
	Role           Role   `json:"role"`
	Namespace      string `json:"namespace,omitempty"`
	Pod            string `json:"pod,omitempty"`
	ServiceAccount string `json:"serviceAccount,omitempty"`
	Cluster        string `json:"cluster,omitempty"`
	// IP is the address the proxy's listeners bind to: the pod's address
	// for a sidecar, the gateway's for a gateway.
	IP string `json:"ip,omitempty"`
	// AppIP is where a sidecar sends inbound traffic for its own pod's
	// app; 127.0.0.1 when empty.
	AppIP string `json:"appIP,omitempty"`
	// ListenPort is the port a gateway listens on, when it is not the
	// Cluster's gatewayPort (a gateway Pod behind a Service that maps the
	// gatewayPort to it).
	ListenPort uint32 `json:"listenPort,omitempty"`
	// Intercept says the pod's traffic reaches the sidecar through
	// iptables redirection (an injected sidecar): its listeners do not
	// bind, the capture ports hand connections to them by their original
	// destination.
	Intercept bool `json:"intercept,omitempty"`
	// IdentityDir is where a sidecar's or gateway's workload certificate
	// is (its SDS files, pkg/bootstrap): set, the proxy speaks mesh mTLS.
	IdentityDir string `json:"identityDir,omitempty"`
}
