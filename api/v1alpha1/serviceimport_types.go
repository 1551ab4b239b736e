package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceImportType is how an imported service is addressed, as in the MCS
// API.
//
// +kubebuilder:validation:Enum=ClusterSetIP;Headless
type ServiceImportType string

// Types of a ServiceImport.
const (
	ClusterSetIP ServiceImportType = "ClusterSetIP"
	Headless     ServiceImportType = "Headless"
)

// ServiceImportSpec is the fleet's view of a service exported by other
// clusters. The federation writes it; users read it.
type ServiceImportSpec struct {
	// Type is ClusterSetIP for a service with a virtual IP, Headless
	// otherwise.
	// +kubebuilder:default=ClusterSetIP
	// +optional
	Type ServiceImportType `json:"type,omitempty"`
	// Ports are the union of the exporters' ports.
	// +kubebuilder:validation:MaxItems=128
	// +listType=atomic
	// +optional
	Ports []ServicePort `json:"ports,omitempty"`
	// ServiceAccountName is the exporters' serviceAccountName.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// LoadBalancer is the exporters' load balancer type.
	// +optional
	LoadBalancer LoadBalancerType `json:"loadBalancer,omitempty"`
	// IPs are the cluster-set virtual IPs of the service, if any.
	// +kubebuilder:validation:MaxItems=2
	// +kubebuilder:validation:items:MaxLength=45
	// +listType=atomic
	// +optional
	IPs []string `json:"ips,omitempty"`
}

// ServicePort is one port of an imported service with the clusters that
// serve it.
type ServicePort struct {
	// Name of the port, as in the exporters' Service.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Name string `json:"name,omitempty"`
	// Protocol of the port: TCP, UDP or SCTP.
	// +kubebuilder:default=TCP
	// +kubebuilder:validation:Enum=TCP;UDP;SCTP
	// +optional
	Protocol corev1.Protocol `json:"protocol,omitempty"`
	// AppProtocol of the port, as in the exporters' Service.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	AppProtocol *string `json:"appProtocol,omitempty"`
	// Port number.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// Endpoints list one entry per exporting cluster.
	// +kubebuilder:validation:MaxItems=256
	// +listType=atomic
	// +optional
	Endpoints []Endpoint `json:"endpoints,omitempty"`
}

// Endpoint is where one exporting cluster serves an imported port.
type Endpoint struct {
	// ClusterKey of the exporting cluster, region/zone/group/name. (A
	// pattern rather than ClusterKey's CEL rule: an import may list many
	// endpoints, and patterns cost nothing of the CEL budget.)
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	ClusterKey string `json:"clusterKey"`
	// Target is the exporting cluster's gateway address for the port.
	// +optional
	Target Target `json:"target,omitempty"`
}

// Target is an address and path at which an exporting cluster serves a port.
type Target struct {
	// Host is the gateway's DNS name or IP, from the Cluster's gatewayHost.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Host string `json:"host,omitempty"`
	// IP is Host resolved to an address.
	// +kubebuilder:validation:MaxLength=45
	// +optional
	IP string `json:"ip,omitempty"`
	// Port of the gateway.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`
	// Path of the export rule at that gateway.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Path string `json:"path,omitempty"`
}

// ServiceImportStatus lists the clusters the service is imported from.
type ServiceImportStatus struct {
	// Clusters that export the service.
	// +kubebuilder:validation:MaxItems=256
	// +listType=map
	// +listMapKey=cluster
	// +optional
	Clusters []ClusterStatusRef `json:"clusters,omitempty"`
	// Conditions are written by the control plane of the cluster the
	// import is in (MCS API): Ready says whether the import is served to
	// the cluster's proxies; Conflict, whether part of it is left out for
	// clashing with the cluster's own Service of that name.
	// +kubebuilder:validation:MaxItems=8
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ClusterStatusRef names one exporting cluster.
type ClusterStatusRef struct {
	// Cluster is the exporting cluster's name.
	Cluster string `json:"cluster"`
}

// ServiceImport is a service exported by other clusters of the fleet, as the
// federation sees it. It is always the federation's: one that exists under
// the same name is adopted and rewritten.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=simp;fmsimp,categories=fleetmesh
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Clusters",type=string,JSONPath=`.status.clusters`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ServiceImport struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec   ServiceImportSpec   `json:"spec,omitempty"`
	Status ServiceImportStatus `json:"status,omitempty"`
}

// ServiceImportList is a list of ServiceImports.
//
// +kubebuilder:object:root=true
type ServiceImportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceImport `json:"items"`
}
