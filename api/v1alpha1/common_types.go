package v1alpha1

import (
	"fmt"
	"strings"
)

// ClusterKey names a member cluster across the fleet as
// region/zone/group/name, for example "default/default/default/cluster-1".
//
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",message="clusterKey must have the form region/zone/group/name, e.g. default/default/default/cluster-1"
type ClusterKey string

// DefaultTopology is the region, zone and group of a Cluster that names none.
const DefaultTopology = "default"

// NewClusterKey builds the clusterKey of a cluster from its parts; empty
// region, zone or group count as DefaultTopology.
func NewClusterKey(region, zone, group, name string) ClusterKey {
	return ClusterKey(orDefault(region) + "/" + orDefault(zone) + "/" + orDefault(group) + "/" + name)
}

// ParseClusterKey splits a clusterKey into its region, zone, group and name.
func ParseClusterKey(key string) (region, zone, group, name string, err error) {
	parts := strings.Split(key, "/")
	if len(parts) != 4 {
		return "", "", "", "", fmt.Errorf("clusterKey %q: want region/zone/group/name", key)
	}
	for i, p := range parts {
		if p == "" {
			return "", "", "", "", fmt.Errorf("clusterKey %q: part %d is empty", key, i+1)
		}
	}
	return parts[0], parts[1], parts[2], parts[3], nil
}

// Name returns the cluster name, the last part of the key.
func (k ClusterKey) Name() string {
	return string(k)[strings.LastIndexByte(string(k), '/')+1:]
}

func orDefault(s string) string {
	if s == "" {
		return DefaultTopology
	}
	return s
}

// LoadBalancerType is how a gateway balances requests among the endpoints of
// an exported service in its own cluster.
//
// +kubebuilder:validation:Enum=RoundRobinLoadBalancer;HashingLoadBalancer;LeastWorkLoadBalancer
type LoadBalancerType string

// Load balancer types of a ServiceExport.
const (
	RoundRobinLoadBalancer LoadBalancerType = "RoundRobinLoadBalancer"
	HashingLoadBalancer    LoadBalancerType = "HashingLoadBalancer"
	LeastWorkLoadBalancer  LoadBalancerType = "LeastWorkLoadBalancer"
)

// Condition types and reasons written by fleetmesh. Conditions follow the MCS
// API (KEP-1645) where it defines them.
const (
	// ConditionReady says a Cluster's API server is reachable with its
	// credentials, or that a ServiceExport is imported where it should be.
	ConditionReady = "Ready"
	// ConditionJoined says a Cluster takes part in the federation.
	ConditionJoined = "Joined"
	// ConditionValid says a ServiceExport can be exported.
	ConditionValid = "Valid"
	// ConditionConflict says exporters of one service disagree.
	ConditionConflict = "Conflict"
	// ConditionAccepted says a GlobalTrafficPolicy was read by the control plane.
	ConditionAccepted = "Accepted"
	// ConditionMCSAPI says whether a Cluster serves the Kubernetes MCS API
	// (multicluster.x-k8s.io/v1beta1), whose exports the federation then
	// reads and whose imports it writes there (reasons Served, NotServed).
	ConditionMCSAPI = "MCSAPI"
	// ConditionPodCertificates says whether a Cluster issues pod
	// certificates (PodCertificateRequests: Kubernetes 1.35 and later
	// with the API on); without them its proxies need ServiceAccount
	// tokens (manifests/member-token). Reasons Served, NotServed.
	ConditionPodCertificates = "PodCertificates"
	// ConditionNativeSidecars says whether a Cluster runs native sidecars
	// (Kubernetes 1.29 and later), which the injected proxy is. Reasons
	// Supported, Unsupported.
	ConditionNativeSidecars = "NativeSidecars"

	ReasonUnreachable = "Unreachable"
	ReasonConnecting  = "Connecting"
	// ReasonInconsistent: an import is not served as it is (the last
	// valid configuration is kept, or it is left out).
	ReasonInconsistent = "Inconsistent"
	// ReasonLeftOut: part of a service (an imported port) is left out.
	ReasonLeftOut            = "LeftOut"
	ReasonUnauthorized       = "Unauthorized"
	ReasonBadKubeconfig      = "BadKubeconfig"
	ReasonForbidden          = "Forbidden"
	ReasonUnresolvableHost   = "UnresolvableGatewayHost"
	ReasonNoService          = "NoService"
	ReasonInvalidServiceType = "InvalidServiceType"
	ReasonInvalidRule        = "InvalidRule"
	ReasonPathCollision      = "PathCollision"
	ReasonPortConflict       = "PortConflict"
	ReasonTypeConflict       = "TypeConflict"
	ReasonNoConflict         = "NoConflict"
	ReasonExported           = "Exported"
	ReasonImportFailed       = "ImportFailed"
	ReasonUnknownTargets     = "UnknownTargets"
	ReasonServed             = "Served"
	ReasonNotServed          = "NotServed"
	ReasonSupported          = "Supported"
	ReasonUnsupported        = "Unsupported"
)

// LocalClusterLabel marks, among the Cluster copies the federation writes
// into a member, the member's own (value "true"): a control plane started
// without --cluster-name learns its name from it.
const LocalClusterLabel = "fleetmesh.io/local"

// Annotations of a member's credentials Secret written by `fleetmesh
// cluster join`: the ServiceAccount (namespace/name) whose token it holds,
// when the token expires (RFC 3339), and the Secret in the member
// (namespace/name) the token is bound to: deleting it revokes the token.
// The federation renews such a token before it expires and revokes the
// one it replaced.
const (
	AnnotationServiceAccount = "fleetmesh.io/service-account"
	AnnotationTokenExpires   = "fleetmesh.io/token-expires"
	AnnotationTokenBoundTo   = "fleetmesh.io/token-bound-to"
)

// IngressClass is the class of the Ingresses fleetmesh's gateways serve:
// those the federation writes for export rules, and users' own.
const IngressClass = "fleetmesh"

// ManagedByLabel marks objects fleetmesh owns; its value is ManagedByValue.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "fleetmesh"
)

// Labels of the MCS API (KEP-1645) on the EndpointSlices the federation
// copies from one cluster into another, and the managed-by value marking
// them as the federation's: the EndpointSlice controller leaves them alone.
// (A label value cannot hold "/", so it is not "fleetmesh.io/federation".)
const (
	LabelServiceName                 = "multicluster.kubernetes.io/service-name"
	LabelSourceCluster               = "multicluster.kubernetes.io/source-cluster"
	EndpointSliceManagedByFederation = "federation.fleetmesh.io"
)
