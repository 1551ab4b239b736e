package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PathType says how an export rule's path matches a request path.
//
// +kubebuilder:validation:Enum=Prefix;Exact
type PathType string

// Path types of a ServiceExport rule, as in networking.k8s.io Ingress.
const (
	PathTypePrefix PathType = "Prefix"
	PathTypeExact  PathType = "Exact"
)

// ServiceExportSpec offers the Service of the same namespace and name to the
// rest of the fleet.
//
// +kubebuilder:validation:XValidation:rule="!has(self.rules) || size(self.rules) == 0 || !has(self.serviceAccountName) || self.serviceAccountName == '*'",message="rules publish paths at the gateway's plain-HTTP edge, where a caller has no identity to check: an export whose spec.serviceAccountName names callers cannot have rules (drop the rules, or set serviceAccountName to \"*\")",fieldPath=".rules"
type ServiceExportSpec struct {
	// Rules expose Service ports at paths of the cluster's gateway, to
	// anyone who reaches it: only an export open to any caller
	// (serviceAccountName "*" or empty) may have them. Without rules every
	// port is exported and no Ingress is written.
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=path
	// +optional
	Rules []ServiceExportRule `json:"rules,omitempty"`
	// ServiceAccountName names who may call the service: "*" (or empty)
	// is anyone; else a comma-separated list of ServiceAccounts,
	// namespace/name or, for one of the export's own namespace, name. The
	// serving sidecars enforce it on every caller with mesh mTLS (a
	// caller not listed gets 403, or its TCP connection closed); a
	// plaintext caller has no identity and is let in only by "*", at a
	// sidecar or at the gateway.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self == '*' || self.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?(, ?([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?)*$')",message="serviceAccountName must be \"*\" or a comma-separated list of service accounts, namespace/name or name"
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// LoadBalancer balances requests among the service's endpoints in this
	// cluster; it is carried into the ServiceImports.
	// +kubebuilder:default=RoundRobinLoadBalancer
	// +optional
	LoadBalancer LoadBalancerType `json:"loadBalancer,omitempty"`
	// TargetClusters restricts the export to these clusterKeys; empty means
	// every member.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	TargetClusters []ClusterKey `json:"targetClusters,omitempty"`
	// PathRewrite is what the matched path prefix becomes upstream; "/" when
	// empty.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="pathRewrite must start with /"
	// +optional
	PathRewrite string `json:"pathRewrite,omitempty"`
}

// ServiceExportRule exposes one Service port at a path of the gateway.
type ServiceExportRule struct {
	// PortNumber is the Service port (spec.ports[].port) to expose.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	PortNumber int32 `json:"portNumber"`
	// Path is the request path at the gateway.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="path must start with /"
	// +kubebuilder:validation:XValidation:rule="!self.contains('//') && !self.contains('/../') && !self.endsWith('/..')",message="path must not contain // or .. segments"
	// +kubebuilder:validation:XValidation:rule="self.matches('^/[^?#[:space:]]*$')",message="path must not contain ?, # or whitespace: it is matched against the request path alone"
	Path string `json:"path"`
	// PathType is how Path matches: Prefix (by path segments) or Exact.
	// +kubebuilder:default=Prefix
	// +optional
	PathType PathType `json:"pathType,omitempty"`
}

// ServiceExportStatus reports whether and how the service is exported.
type ServiceExportStatus struct {
	// Conditions: Valid, Conflict and Ready, as in the MCS API (KEP-1645).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ServiceExport offers the Service of the same namespace and name to the other
// clusters of the fleet.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sexp;fmsexp,categories=fleetmesh
// +kubebuilder:printcolumn:name="Valid",type=string,JSONPath=`.status.conditions[?(@.type=="Valid")].status`
// +kubebuilder:printcolumn:name="Conflict",type=string,JSONPath=`.status.conditions[?(@.type=="Conflict")].status`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Valid")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ServiceExport struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec   ServiceExportSpec   `json:"spec,omitempty"`
	Status ServiceExportStatus `json:"status,omitempty"`
}

// ServiceExportList is a list of ServiceExports.
//
// +kubebuilder:object:root=true
type ServiceExportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceExport `json:"items"`
}
