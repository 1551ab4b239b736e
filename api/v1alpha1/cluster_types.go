package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterSpec registers a member cluster with the federation.
//
// +kubebuilder:validation:XValidation:rule="(has(self.mirrored) && self.mirrored) || (has(self.kubeconfig) != has(self.kubeconfigSecretRef))",message="exactly one of spec.kubeconfig and spec.kubeconfigSecretRef must be set"
// +kubebuilder:validation:XValidation:rule="!(has(self.mirrored) && self.mirrored) || (!has(self.kubeconfig) && !has(self.kubeconfigSecretRef))",message="a mirrored Cluster carries no credentials: spec.kubeconfig and spec.kubeconfigSecretRef must be empty"
type ClusterSpec struct {
	// Region of the cluster, the first part of its clusterKey.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	// +optional
	Region string `json:"region,omitempty"`
	// Zone of the cluster, the second part of its clusterKey.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	// +optional
	Zone string `json:"zone,omitempty"`
	// Group of the cluster, the third part of its clusterKey.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	// +optional
	Group string `json:"group,omitempty"`

	// GatewayHost is the DNS name or IP address at which the cluster's
	// fleetmesh gateway is reached from other clusters. Empty means the
	// cluster is reachable only pod to pod, on a shared network.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="isIP(self) || self.matches('^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?([.][A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$')",message="gatewayHost must be a DNS name or an IP address"
	// +optional
	GatewayHost string `json:"gatewayHost,omitempty"`
	// GatewayPort is the port of the cluster's gateway.
	// +kubebuilder:default=80
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	GatewayPort int32 `json:"gatewayPort,omitempty"`

	// Kubeconfig is the member's kubeconfig, inline. Prefer
	// kubeconfigSecretRef, which keeps credentials out of the object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=262144
	// +optional
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// KubeconfigSecretRef points at a Secret key holding the member's
	// kubeconfig.
	// +optional
	KubeconfigSecretRef *SecretKeyRef `json:"kubeconfigSecretRef,omitempty"`

	// Network names the pod network the cluster is on. Clusters with the
	// same non-empty network reach each other's pod IPs directly; an empty
	// network is the cluster's own.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`
	// +optional
	Network string `json:"network,omitempty"`

	// Mirrored marks the copy of a Cluster that the federation writes into
	// each member, so that the member's control plane knows the fleet's
	// localities and gateways. A mirrored Cluster carries no credentials.
	// +optional
	Mirrored bool `json:"mirrored,omitempty"`
}

// SecretKeyRef names one key of a Secret.
type SecretKeyRef struct {
	// Namespace of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key in the Secret's data.
	// +kubebuilder:default=kubeconfig
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Key string `json:"key,omitempty"`
}

// ClusterStatus is what the federation last saw of a member.
type ClusterStatus struct {
	// ClusterKey is the cluster's region/zone/group/name.
	// +optional
	ClusterKey string `json:"clusterKey,omitempty"`
	// GatewayIP is spec.gatewayHost resolved to an address.
	// +optional
	GatewayIP string `json:"gatewayIP,omitempty"`
	// KubernetesVersion is the member's API server's version, as it
	// reports it.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// Conditions: Ready (API server reachable with these credentials),
	// Joined (taking part in the federation), GatewayResolved, and what
	// the member's Kubernetes offers: MCSAPI, PodCertificates,
	// NativeSidecars (each False with what to do when it lacks it).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// LastSyncTime is when the federation last synced the member.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
	// StaleSince is set while the member is unreachable: its contributions
	// to the fleet are the last ones known since then.
	// +optional
	StaleSince *metav1.Time `json:"staleSince,omitempty"`
}

// Cluster registers a member cluster of the fleet.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=fmcluster;fmc,categories=fleetmesh
// +kubebuilder:printcolumn:name="Region",type=string,JSONPath=`.spec.region`
// +kubebuilder:printcolumn:name="Zone",type=string,JSONPath=`.spec.zone`
// +kubebuilder:printcolumn:name="Group",type=string,JSONPath=`.spec.group`
// +kubebuilder:printcolumn:name="Gateway-Host",type=string,JSONPath=`.spec.gatewayHost`
// +kubebuilder:printcolumn:name="Gateway-Port",type=integer,JSONPath=`.spec.gatewayPort`
// +kubebuilder:printcolumn:name="Network",type=string,JSONPath=`.spec.network`,priority=1
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.kubernetesVersion`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Last-Sync",type=date,JSONPath=`.status.lastSyncTime`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Cluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is required: a Cluster needs credentials (or to be mirrored).
	// +required
	Spec   ClusterSpec   `json:"spec"`
	Status ClusterStatus `json:"status,omitempty"`
}

// Key returns the cluster's clusterKey, region/zone/group/name, with the
// defaults applied to parts that are empty.
func (c *Cluster) Key() ClusterKey {
	return NewClusterKey(c.Spec.Region, c.Spec.Zone, c.Spec.Group, c.Name)
}

// DefaultGatewayPort is the gateway port of a cluster that names none
// (the CRD's default, for objects that came before it or without it).
const DefaultGatewayPort = 80

// EffectiveGatewayPort is the cluster's gateway port, DefaultGatewayPort
// when it names none.
func (c *Cluster) EffectiveGatewayPort() int32 {
	if c.Spec.GatewayPort == 0 {
		return DefaultGatewayPort
	}
	return c.Spec.GatewayPort
}

// ClusterList is a list of Clusters.
//
// +kubebuilder:object:root=true
type ClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Cluster `json:"items"`
}
